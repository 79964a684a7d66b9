"""A run's pace against a deadline: measured on steady steps, the warm-up left out.

The first steps of a run pay for things the rest do not: loader workers starting,
kernels loaded and tuned, caches filled. A pace that counts them would stop a run
whose steady pace fits. `Pace` is told the clock at points along the run
(`mark(step)`, where the host has read the losses back, so the device has caught up)
and projects the end from the steps after the warm-up only:

    end = now + steps_left x steady seconds a step + the final evaluation's reserve

It answers `should_stop` when that end falls past the deadline, and, before the
steady pace is known, only once the deadline itself has passed (so the time box holds
on any machine). The clock is an argument, so the tests drive it by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

WARMUP_STEPS = 50  # steps of each process left out of the pace (a fifth of a shorter run)
MIN_STEADY_STEPS = 10  # steady steps before the pace is trusted (a fifth of a shorter run)
EVAL_FIXED_S = 2.0  # the final evaluation's fixed part (COCO evaluation, writing files)


@dataclass
class Pace:
    """Where a run stands against `deadline` (a value of `clock`).

    `total_steps`: the run's last step; `eval_steps`: the final evaluation's batches,
    each reserved at a training step's cost (a forward pass is cheaper; the margin
    covers the COCO evaluation)."""

    deadline: float
    total_steps: int
    eval_steps: int = 0
    warmup_steps: int = WARMUP_STEPS
    clock: Callable[[], float] = time.time
    min_steady_steps: int = MIN_STEADY_STEPS
    _first: int | None = field(default=None, init=False)  # step this process started at
    _steady: tuple[int, float] | None = field(default=None, init=False)  # (step, time)
    _last: tuple[int, float] | None = field(default=None, init=False)

    def mark(self, step: int) -> None:
        """The run has finished `step` now."""
        now = self.clock()
        if self._first is None:
            self._first = step
        if self._steady is None and step - self._first >= self.warmup_steps:
            self._steady = (step, now)
        self._last = (step, now)

    def start(self, step: int) -> None:
        """The run starts (or resumes) at `step`: the warm-up counts from here."""
        self._first, self._steady, self._last = step, None, None
        fifth = max(1, (self.total_steps - step) // 5)
        self.warmup_steps = min(self.warmup_steps, fifth)
        self.min_steady_steps = min(MIN_STEADY_STEPS, fifth)

    def seconds_per_step(self) -> float | None:
        """The steady pace, or None while too few steady steps have run."""
        if self._steady is None or self._last is None:
            return None
        steps = self._last[0] - self._steady[0]
        if steps < self.min_steady_steps:
            return None
        return (self._last[1] - self._steady[1]) / steps

    def projected_end(self, step: int) -> float | None:
        """When the run would end (its final evaluation included), from the steady pace."""
        per_step = self.seconds_per_step()
        if per_step is None:
            return None
        left = max(0, self.total_steps - step) + self.eval_steps
        return self.clock() + left * per_step + EVAL_FIXED_S

    def should_stop(self, step: int) -> bool:
        """Stop now (saved, resumable): the steady pace ends past the deadline, or, with
        no steady pace yet, the deadline has passed."""
        end = self.projected_end(step)
        if end is None:
            return self.clock() >= self.deadline
        return end > self.deadline
