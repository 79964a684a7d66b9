"""One row of the experiment grid: a method preset plus overrides on a notebook profile.

A row (`Experiment`) is a value: the catalogue of rows is `ocdlib.grid.catalogue`, the claims
about them `ocdlib.grid.claims`, and the runs that fill them `ocdlib.grid.gather`.
Overrides may be computed from the row's preset (`Derived`), such as a budget multiplied
by `k` (`budget`). Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..configs import Config
from ..profiles import NotebookProfile

# The cpu profile is the default reproduction (make reproduce): the key comparisons on
# every seed and the calibration floors, within an hour on two cores (cpu_scratch, the
# same cut from scratch: within two). cpu_full trains every row on the same configs
# (make reproduce-full), sharing cpu's runs, as cpu_scratch_full does cpu_scratch's.
FULL_GRID_ONLY = (
    "in the full grid only (make reproduce-full): cut from make reproduce to keep it "
    "within two hours on two cores"
)
# The profiles that train a cut of the cpu grid, and those that train all of it.
CPU_CUTS = ("cpu", "cpu_scratch")
CPU_FULLS = ("cpu_full", "cpu_scratch_full")


def _on_the_cuts(reason: str) -> tuple[tuple[str, str], ...]:
    """(cut profile, why it leaves the row out), naming the full profile that holds it."""
    return tuple(
        (cut, f"{reason}; its committed records are read with profile {full!r}")
        for cut, full in zip(CPU_CUTS, CPU_FULLS)
    )


IN_THE_FULL_GRID = _on_the_cuts(FULL_GRID_ONLY)
N0_NEEDS_A_FINER_MAP = (
    "N=0 predicts from the stride-32 backbone map (4x3 at 128x96): too coarse to localise "
    "anything, so it is left out of this profile"
)
N0_SKIP = tuple((p, N0_NEEDS_A_FINER_MAP) for p in CPU_CUTS + CPU_FULLS)
# The investigations of notebooks 07 (why a frozen teacher hurts) and 08 (does OCD's gain
# survive a longer budget) are hours of CPU training: make reproduce-full only.
INVESTIGATION_ONLY = (
    "an investigation of the full cpu grid (make reproduce-full): hours of training on two "
    "cores, cut from make reproduce"
)
INVESTIGATION = (
    *_on_the_cuts(INVESTIGATION_ONLY),
    ("gpu_synth", "an investigation of the cpu regime"),
    ("coco", "an investigation of the cpu regime"),
)


LEARNING_CURVE = ("train.eval_every", 2)


@dataclass(frozen=True)
class Derived:
    """An override computed from the row's preset, e.g. twice the profile's target sigma."""

    description: str
    compute: Callable[[Config], Any] = field(compare=False)

    def __str__(self) -> str:
        return self.description


def twice_target_sigma() -> Derived:
    return Derived("2 x data.sigma", lambda c: 2 * c.data.sigma)


def first_part_of_training(fraction: float) -> Derived:
    """A step count: `fraction` of the profile's schedule (one instance per SynthPose image)."""

    def steps(c: Config) -> int:
        per_epoch = max(1, c.data.synth.train // c.train.batch_size)
        return int(fraction * c.train.epochs * per_epoch)

    return Derived(f"{fraction:g} of the schedule", steps)


def budget(k: int) -> tuple[tuple[str, Any], ...]:
    """The overrides that train `k` times the profile's budget: `k` x the epochs with the
    learning-rate drops at the same fractions of the schedule, and an evaluation every
    `2k` epochs, so that each run has a learning curve of as many points as at 1x.
    Fixed multiples of the profile's schedule, chosen before any run (never tuned)."""

    def epochs(c: Config) -> int:
        return k * c.train.epochs

    def milestones(c: Config) -> tuple[int, ...]:
        return tuple(k * m for m in c.train.milestones)

    return (
        ("train.epochs", Derived(f"{k} x train.epochs", epochs)),
        ("train.milestones", Derived(f"{k} x train.milestones", milestones)),
        ("train.eval_every", 2 * k),
    )


@dataclass(frozen=True)
class Experiment:
    notebook: str  # "01".."05"
    label: str  # the row's name in tables
    method: str  # a method of ocdlib.configs.METHODS
    overrides: tuple[tuple[str, Any], ...] = ()
    key: bool = False  # run on every seed of the profile
    wholebody: bool = False  # built on the profile's whole-body config (133 keypoints)
    teacher: Experiment | None = None  # the row whose first run is the TCD teacher
    group: str = field(default="", compare=False)  # the comparison this row belongs to
    # Profiles that leave this row out, each with the reason (said in the notebook).
    skip: tuple[tuple[str, str], ...] = ()
    n_seeds: int = 0  # a key row on only the first `n_seeds` of the profile's seeds (0: all)
    # Where a time box (reproduce --minutes) trains this row: (0, k) k-th on every seed
    # before anything else, (1, k) k-th on the first seed next; None: with the rest.
    priority: tuple[int, int] | None = field(default=None, compare=False)

    def seeds(self, profile: NotebookProfile) -> tuple[int, ...]:
        seeds = profile.seeds
        if not self.key:
            return seeds[:1]
        return seeds[: self.n_seeds] if self.n_seeds else seeds


def _e(notebook, label, method, *overrides, **kw) -> Experiment:
    flat: list[tuple[str, Any]] = []
    for o in overrides:  # an override, or a group of them such as budget(k)
        flat.extend(o if isinstance(o[0], tuple) else [o])
    return Experiment(notebook, label, method, tuple(flat), **kw)
