"""A stop that reaches every run: SIGTERM or Ctrl-C to `reproduce` stops the runs it
trains side by side, each saved at its next step, before the command exits.

A Ctrl-C in a terminal reaches the whole process group, but a SIGTERM (a scheduler's
preemption, `kill PID`) reaches only the command: without forwarding, its training
processes would go on as orphans holding their run folders. `ForwardStops` is the
engine's `StopRequest` that also forwards the first signal to every process of the
pool as SIGTERM; each run's own handler (ocdlib/engine/interrupt.py) saves it at the
next step. The command then waits for them and raises `RunInterrupted` with the line
that resumes the lot.
"""

from __future__ import annotations

import os
import signal

from ..engine.interrupt import StopRequest
from ..errors import RunInterrupted


class ForwardStops(StopRequest):
    """Around a ProcessPoolExecutor's use: forwards stop signals to its processes;
    `interrupted()` is the error the command raises once they have saved."""

    def __init__(self, pool, command: str = "the same command"):
        super().__init__()
        self.pool = pool
        self.command = command

    def _handle(self, signum, frame) -> None:
        super()._handle(signum, frame)  # a second Ctrl-C raises KeyboardInterrupt here
        for process in list(getattr(self.pool, "_processes", {}).values()):
            try:
                os.kill(process.pid, signal.SIGTERM)
            except (ProcessLookupError, OSError):
                pass

    def interrupted(self) -> RunInterrupted:
        name = signal.Signals(self.signum).name if self.signum else "a signal"
        return RunInterrupted(
            f"stopped on {name}: the training runs were saved at their next step; "
            f"{self.command} resumes them",
            self.signum or signal.SIGTERM,
        )
