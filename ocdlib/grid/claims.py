"""The claims made about the grid: which row beats which, the target, the floors.

A claim (`Comparison`, `Target`, `Floor`) refers to its rows as objects, so renaming a
row cannot drop a claim; judging a claim against the numbers is `ocdlib.grid.judge`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..profiles import NotebookProfile
from .catalogue import (
    DEEPPOSE,
    DEEPPOSE_2X,
    DEEPPOSE_4X,
    OCD_C_OFF_BACKBONE,
    OCD_DEEPPOSE,
    OCD_RLE,
    OCD_RLE_C_OFF_BACKBONE,
    OCD_RLE_SCALED,
    OCD_RLE_WARMUP,
    OCD_WARMUP,
    OCD_WARMUP_2X,
    OCD_WARMUP_4X,
    REDUCED_ALONE,
    REDUCED_N0_ALONE,
    REDUCED_N0_OCD,
    REDUCED_OCD,
    RLE,
    SIMPLEBASELINE,
    TCD_AUX,
    TCD_C_OFF_BACKBONE,
    TCD_DEEPPOSE,
    TCD_HEAD_ONLY,
    TCD_LABELLED_ONLY,
    TCD_LIGHT_HEAD_TERM,
    TCD_STRONG_TEACHER,
    TCD_TASK_ONLY,
    TCD_WARMUP,
    WB_DEEPPOSE,
    WB_OCD_DEEPPOSE,
    WB_SIMPLEBASELINE,
    skipped_on,
)
from .row import Experiment


@dataclass(frozen=True)
class Comparison:
    """A claim that `candidate` beats `baseline` (AP). `check`: a claim the benchmark
    itself must satisfy to be worth reading (a heatmap teacher better than DeepPose)."""

    name: str
    candidate: Experiment
    baseline: Experiment
    claim: str  # what the paper (or the benchmark's design) says
    check: bool = False

    @property
    def rows(self) -> tuple[Experiment, Experiment]:
        return (self.candidate, self.baseline)


@dataclass(frozen=True)
class Target:
    """The benchmark's target for the paper's headline claim (docs/METHOD.md, section
    'The claim')."""

    candidate: Experiment
    baseline: Experiment
    min_gain: float  # AP


@dataclass(frozen=True)
class Floor:
    """What a profile was calibrated to, on the baselines only (never on the method under
    test): a baseline row's metric (mean over seeds) at least `value`."""

    row: Experiment
    metric: str
    value: float


# COCO val2017 AP of a row's counterpart in the paper's regime (ResNet-50 from ImageNet
# weights, 256x192; docs/METHOD.md, 'Anchor numbers'): the paper's own DeepPose and OCD,
# mmpose's model zoo for the heatmap and RLE baselines.
PAPER_AP: dict[str, tuple[float, str]] = {
    DEEPPOSE.label: (52.8, "the paper"),
    OCD_DEEPPOSE.label: (62.8, "the paper"),
    RLE.label: (70.6, "mmpose model zoo"),
    SIMPLEBASELINE.label: (71.8, "mmpose model zoo"),
}


COMPARISONS: tuple[Comparison, ...] = (
    Comparison(
        "OCD-DeepPose vs DeepPose",
        OCD_DEEPPOSE,
        DEEPPOSE,
        "OCD lifts DeepPose at equal deployed size (paper, COCO: 52.8 -> 62.8 AP)",
    ),
    Comparison(
        "OCD-DeepPose (distillation after a warm-up) vs DeepPose",
        OCD_WARMUP,
        DEEPPOSE,
        "OCD lifts DeepPose on every seed once b and c start from a trained regression head",
    ),
    Comparison(
        "OCD-DeepPose (term c off the backbone) vs DeepPose",
        OCD_C_OFF_BACKBONE,
        DEEPPOSE,
        "OCD lifts DeepPose once term c no longer pulls the backbone that the heatmap head shares",
    ),
    Comparison("OCD-RLE vs RLE", OCD_RLE, RLE, "OCD also lifts an RLE regression head"),
    Comparison(
        "OCD-RLE (RLE terms x0.1) vs RLE",
        OCD_RLE_SCALED,
        RLE,
        "OCD lifts RLE once its likelihood terms no longer swamp the heatmap loss",
    ),
    Comparison(
        "OCD-RLE (distillation after a warm-up) vs RLE",
        OCD_RLE_WARMUP,
        RLE,
        "OCD lifts RLE once b and c start from a trained regression head",
    ),
    Comparison(
        "OCD-RLE (term c off the backbone) vs RLE",
        OCD_RLE_C_OFF_BACKBONE,
        RLE,
        "OCD lifts RLE once term c no longer pulls the backbone that the heatmap head shares",
    ),
    Comparison(
        "TCD-DeepPose vs DeepPose",
        TCD_DEEPPOSE,
        DEEPPOSE,
        "a frozen heatmap teacher lifts DeepPose",
    ),
    Comparison(
        "TCD + online auxiliary head vs DeepPose",
        TCD_AUX,
        DEEPPOSE,
        "a frozen teacher and a heatmap head on the student's own backbone lift DeepPose",
    ),
    Comparison(
        "TCD + online auxiliary head vs TCD-DeepPose",
        TCD_AUX,
        TCD_DEEPPOSE,
        "the online heatmap head is what TCD lacks",
    ),
    Comparison(
        "heatmap vs DeepPose (benchmark check)",
        SIMPLEBASELINE,
        DEEPPOSE,
        "the heatmap teacher must beat DeepPose clearly, else there is nothing to distil",
        check=True,
    ),
    Comparison(
        "reduced head N=1: distilled vs alone",
        REDUCED_OCD,
        REDUCED_ALONE,
        "online distillation lets a reduced head approach the full head",
    ),
    Comparison(
        "reduced head N=0: distilled vs alone",
        REDUCED_N0_OCD,
        REDUCED_N0_ALONE,
        "online distillation lets a reduced head approach the full head",
    ),
    Comparison(
        "whole-body heatmap vs DeepPose (benchmark check)",
        WB_SIMPLEBASELINE,
        WB_DEEPPOSE,
        "on 133 keypoints too, the heatmap teacher must beat DeepPose clearly",
        check=True,
    ),
    Comparison(
        "whole-body: OCD-DeepPose vs DeepPose",
        WB_OCD_DEEPPOSE,
        WB_DEEPPOSE,
        "OCD lifts DeepPose on 133 keypoints",
    ),
)

# 07: which single change to TCD, if any, turns it into a gain over DeepPose.
TCD_VARIANTS = (
    TCD_TASK_ONLY, TCD_HEAD_ONLY, TCD_WARMUP, TCD_LABELLED_ONLY, TCD_C_OFF_BACKBONE,
    TCD_LIGHT_HEAD_TERM, TCD_STRONG_TEACHER,
)  # fmt: skip
COMPARISONS += tuple(
    Comparison(
        f"{row.label} vs DeepPose",
        row,
        DEEPPOSE,
        "this change to TCD lifts DeepPose (the paper reports TCD as a gain)",
    )
    for row in TCD_VARIANTS
)
COMPARISONS += (
    Comparison(
        "TCD with a teacher trained for 2x the budget vs TCD-DeepPose",
        TCD_STRONG_TEACHER,
        TCD_DEEPPOSE,
        "a stronger frozen teacher helps TCD",
    ),
)

# 08: OCD's gain at each budget, read against DeepPose trained as long (k x the budget).
BUDGETS: tuple[tuple[int, Experiment, Experiment], ...] = (
    (1, OCD_WARMUP, DEEPPOSE),
    (2, OCD_WARMUP_2X, DEEPPOSE_2X),
    (4, OCD_WARMUP_4X, DEEPPOSE_4X),
)
COMPARISONS += tuple(
    Comparison(
        f"OCD-DeepPose after a warm-up vs DeepPose, {k}x budget",
        ocd,
        deeppose,
        "OCD's gain survives a longer budget, once DeepPose has learned more",
    )
    for k, ocd, deeppose in BUDGETS
    if k > 1
)

TARGET = Target(OCD_DEEPPOSE, DEEPPOSE, min_gain=5.0)

# The cpu profile's calibration: models that visibly find the keypoints, and a heatmap
# model far from saturation (docs/CALIBRATION.md).
FLOORS: tuple[Floor, ...] = (
    Floor(SIMPLEBASELINE, "AP", 35.0),
    Floor(DEEPPOSE, "AP", 3.0),
    Floor(DEEPPOSE, "AP50", 15.0),
    Floor(WB_SIMPLEBASELINE, "body/AP", 20.0),
    Floor(WB_SIMPLEBASELINE, "wholebody/AP", 5.0),
)


def comparisons_among(rows: Iterable[Experiment], profile: NotebookProfile) -> list[Comparison]:
    """The comparisons between `rows` (both sides among them), less those with a row that
    `profile` leaves out: what a notebook that gathered `rows` can claim."""
    rows = set(rows)
    return [c for c in COMPARISONS if all(e in rows and not skipped_on(e, profile) for e in c.rows)]


def floors_among(rows: Iterable[Experiment]) -> list[Floor]:
    """The calibration floors of `rows`."""
    rows = set(rows)
    return [f for f in FLOORS if f.row in rows]
