"""The experiment grid's rows, and which of them a notebook and a profile run.

One definition serves the notebooks (each asks for its own rows), the results notebook
(every row), `reproduce` (it trains the grid side by side first) and the tests. Key rows
run on every seed of the profile. Functions here take a resolved `NotebookProfile`.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import UnknownNameError
from ..profiles import NotebookProfile
from .row import (
    IN_THE_FULL_GRID,
    INVESTIGATION,
    LEARNING_CURVE,
    N0_SKIP,
    Experiment,
    _e,
    budget,
    first_part_of_training,
    twice_target_sigma,
)

# 01: the baselines, each head trained alone.
# DeepPose and SimpleBaseline also score the validation set every few epochs while
# they train: the learning curves of the two representations (notebook 01).
DEEPPOSE = _e(
    "01", "DeepPose", "deeppose", LEARNING_CURVE, key=True, group="baseline", priority=(0, 0)
)
RLE = _e("01", "RLE", "rle", key=True, group="baseline", priority=(1, 2))
SIMPLEBASELINE = _e(
    "01",
    "SimpleBaseline (heatmap)",
    "simplebaseline",
    LEARNING_CURVE,
    key=True,
    group="baseline",
    priority=(0, 1),
)
REDUCED_ALONE = _e(
    "01", "Reduced heatmap head alone", "reduced_alone", group="baseline", skip=IN_THE_FULL_GRID
)
# 02: OCD, and one row per loss term.
OCD_DEEPPOSE = _e("02", "OCD-DeepPose", "ocd", key=True, group="ocd", priority=(1, 0))
OCD_RLE = _e("02", "OCD-RLE", "ocd_rle", key=True, group="ocd", priority=(1, 3))
# At lr 2e-3 OCD's heatmap head collapsed on one seed of three (9.6 AP against 28.5 on
# the others), falling behind from the first hundred steps: terms b and c pull the
# shared backbone towards a regression head that is still near the mean pose. Do
# they keep the heatmap head (and lift the student) once they start a quarter of the
# way in? The same warm-up as OCD-RLE's below, on every seed.
OCD_WARMUP = _e(
    "02",
    "OCD-DeepPose: distillation after a warm-up",
    "ocd",
    ("loss.distill_warmup_steps", first_part_of_training(0.25)),
    key=True,
    group="ocd",
    priority=(0, 2),
)
# Or is it term c pulling the shared backbone (as for OCD-RLE below)?
OCD_C_OFF_BACKBONE = _e(
    "02",
    "OCD-DeepPose: term c off the backbone",
    "ocd",
    ("loss.head_distill_backbone", False),
    key=True,
    group="ocd",
    skip=IN_THE_FULL_GRID,
)
# RLE's likelihood terms start about 25x larger than the heatmap loss: scaled down,
# do they still swamp the heatmap head that the shared backbone also serves?
OCD_RLE_SCALED = _e(
    "02",
    "OCD-RLE: RLE terms x0.1",
    "ocd_rle",
    ("loss.reg_weight", 0.1),
    ("loss.task_distill_weight", 0.1),
    key=True,
    group="ocd",
    skip=IN_THE_FULL_GRID,
)
# Or does the collapse start while the regression head is still far off, so that
# terms b and c pull the backbone before there is anything to distil?
OCD_RLE_WARMUP = _e(
    "02",
    "OCD-RLE: distillation after a warm-up",
    "ocd_rle",
    ("loss.distill_warmup_steps", first_part_of_training(0.25)),
    key=True,
    group="ocd",
    skip=IN_THE_FULL_GRID,
)
# Or does term c, pulling the shared backbone towards the regression head, cost the
# heatmap head its accuracy? Here term c trains the regression head alone.
OCD_RLE_C_OFF_BACKBONE = _e(
    "02",
    "OCD-RLE: term c off the backbone",
    "ocd_rle",
    ("loss.head_distill_backbone", False),
    group="ocd",
    skip=IN_THE_FULL_GRID,
)
OCD_TASK_ONLY = _e(
    "02",
    "OCD: task-loss distillation only (b)",
    "ocd",
    ("loss.head_distill_weight", 0.0),
    group="ablation",
    skip=IN_THE_FULL_GRID,
)
OCD_HEAD_ONLY = _e(
    "02",
    "OCD: head distillation only (c)",
    "ocd",
    ("loss.task_distill_weight", 0.0),
    group="ablation",
    skip=IN_THE_FULL_GRID,
)
OCD_NO_DISTILLATION = _e(
    "02",
    "OCD: no distillation (shared backbone only)",
    "ocd",
    ("loss.task_distill_weight", 0.0),
    ("loss.head_distill_weight", 0.0),
    group="ablation",
    skip=IN_THE_FULL_GRID,
)
OCD_SOFT_ARGMAX = _e(
    "02",
    "OCD: soft-argmax decode",
    "ocd",
    ("loss.distill_decode", "soft_argmax"),
    group="ablation",
    skip=IN_THE_FULL_GRID,
)
OCD_WIDE_RENDER = _e(
    "02",
    "OCD: render sigma x2",
    "ocd",
    ("loss.render_sigma", twice_target_sigma()),
    group="ablation",
    skip=IN_THE_FULL_GRID,
)
OCD_LIGHT_HEAD_TERM = _e(
    "02",
    "OCD: head distillation weight 0.1",
    "ocd",
    ("loss.head_distill_weight", 0.1),
    group="ablation",
    skip=IN_THE_FULL_GRID,
)
# 03: TCD with the SimpleBaseline of 01 as the frozen teacher.
TCD_DEEPPOSE = _e(
    "03", "TCD-DeepPose", "tcd", teacher=SIMPLEBASELINE, key=True, group="tcd", priority=(1, 1)
)
# TCD with a heatmap head trained online on the student's own backbone, distilling from
# it and from the frozen teacher: on every seed, so that the margin rule can judge it.
TCD_AUX = _e(
    "03",
    "TCD + online auxiliary head",
    "tcd_aux",
    teacher=SIMPLEBASELINE,
    key=True,
    group="tcd",
    skip=IN_THE_FULL_GRID,
)
TCD_CROSS_HEAD = _e(
    "03",
    "TCD + cross-head term",
    "tcd",
    ("loss.cross_head_weight", 1.0),
    teacher=SIMPLEBASELINE,
    group="tcd",
    skip=IN_THE_FULL_GRID,
)
# 04: reduced heads, alone (01) and distilled online from the full head.
REDUCED_OCD = _e(
    "04", "Reduced head + online distillation", "reduced", group="reduced", skip=IN_THE_FULL_GRID
)
REDUCED_N0_ALONE = _e(
    "04",
    "Reduced head N=0 alone",
    "reduced_alone",
    ("model.small_deconv_layers", 0),
    group="reduced",
    skip=N0_SKIP,
)
REDUCED_N0_OCD = _e(
    "04",
    "Reduced head N=0 + online distillation",
    "reduced",
    ("model.small_deconv_layers", 0),
    group="reduced",
    skip=N0_SKIP,
)
# 05: whole body (133 keypoints).
WB_DEEPPOSE = _e(
    "05",
    "DeepPose (whole-body)",
    "deeppose",
    wholebody=True,
    group="wholebody",
    skip=IN_THE_FULL_GRID,
)
WB_OCD_DEEPPOSE = _e(
    "05",
    "OCD-DeepPose (whole-body)",
    "ocd",
    wholebody=True,
    group="wholebody",
    skip=IN_THE_FULL_GRID,
)
WB_SIMPLEBASELINE = _e(
    "05", "SimpleBaseline (whole-body)", "simplebaseline", wholebody=True, group="wholebody"
)


def _tcd_probe(label: str, *overrides, teacher=None) -> Experiment:
    """A row of notebook 07: TCD with one change, on every seed; an investigation of the
    full cpu grid."""
    return _e(
        "07", label, "tcd", *overrides, teacher=teacher or SIMPLEBASELINE, key=True,
        group="tcd probe", skip=INVESTIGATION,
    )  # fmt: skip


# 07: why a frozen teacher hurts DeepPose here (TCD-DeepPose scores below DeepPose on every
# seed) while OCD's weaker online head helps: one change to TCD per row.
TCD_TASK_ONLY = _tcd_probe(
    "TCD: task-loss distillation only (b)", ("loss.head_distill_weight", 0.0)
)
TCD_HEAD_ONLY = _tcd_probe("TCD: head distillation only (c)", ("loss.task_distill_weight", 0.0))
TCD_WARMUP = _tcd_probe(
    "TCD: distillation after a warm-up", ("loss.distill_warmup_steps", first_part_of_training(0.25))
)
TCD_LABELLED_ONLY = _tcd_probe("TCD: labelled keypoints only", ("loss.distill_unlabelled", False))
# Term c is what makes TCD lose (07's rows above): through the backbone, or by its size?
TCD_C_OFF_BACKBONE = _tcd_probe(
    "TCD: term c off the backbone", ("loss.head_distill_backbone", False)
)
TCD_LIGHT_HEAD_TERM = _tcd_probe(
    "TCD: head distillation weight 0.1", ("loss.head_distill_weight", 0.1)
)
SIMPLEBASELINE_2X = _e(
    "07",
    "SimpleBaseline (heatmap), 2x budget",
    "simplebaseline",
    budget(2),
    group="tcd probe",
    skip=INVESTIGATION,
)
TCD_STRONG_TEACHER = _tcd_probe("TCD: teacher trained for 2x the budget", teacher=SIMPLEBASELINE_2X)


# 08: does OCD's gain over DeepPose survive a longer budget, once DeepPose has learned?
# The budgets are fixed multiples of the profile's, chosen before any run.
def _budget_pair(k: int) -> tuple[Experiment, Experiment]:
    """DeepPose and OCD-DeepPose after a warm-up at `k` times the profile's budget."""
    common = {"key": True, "n_seeds": 2, "group": "budget", "skip": INVESTIGATION}
    warmup = ("loss.distill_warmup_steps", first_part_of_training(0.25))
    return (
        _e("08", f"DeepPose, {k}x budget", "deeppose", budget(k), **common),
        _e("08", f"OCD-DeepPose after a warm-up, {k}x budget", "ocd", budget(k), warmup, **common),
    )


DEEPPOSE_2X, OCD_WARMUP_2X = _budget_pair(2)
DEEPPOSE_4X, OCD_WARMUP_4X = _budget_pair(4)
SIMPLEBASELINE_4X = _e(
    "08",
    "SimpleBaseline (heatmap), 4x budget",
    "simplebaseline",
    budget(4),
    group="budget",
    skip=INVESTIGATION,
)

EXPERIMENTS: tuple[Experiment, ...] = (
    DEEPPOSE, RLE, SIMPLEBASELINE, REDUCED_ALONE,
    OCD_DEEPPOSE, OCD_WARMUP, OCD_C_OFF_BACKBONE,
    OCD_RLE, OCD_RLE_SCALED, OCD_RLE_WARMUP, OCD_RLE_C_OFF_BACKBONE,
    OCD_TASK_ONLY, OCD_HEAD_ONLY, OCD_NO_DISTILLATION,
    OCD_SOFT_ARGMAX, OCD_WIDE_RENDER, OCD_LIGHT_HEAD_TERM,
    TCD_DEEPPOSE, TCD_AUX, TCD_CROSS_HEAD,
    REDUCED_OCD, REDUCED_N0_ALONE, REDUCED_N0_OCD,
    WB_DEEPPOSE, WB_OCD_DEEPPOSE, WB_SIMPLEBASELINE,
    TCD_TASK_ONLY, TCD_HEAD_ONLY, TCD_WARMUP, TCD_LABELLED_ONLY, TCD_C_OFF_BACKBONE,
    TCD_LIGHT_HEAD_TERM, SIMPLEBASELINE_2X, TCD_STRONG_TEACHER,
    DEEPPOSE_2X, OCD_WARMUP_2X, DEEPPOSE_4X, OCD_WARMUP_4X, SIMPLEBASELINE_4X,
)  # fmt: skip


# The rows a notebook compares its own against that belong to another notebook.
BORROWED_ROWS: dict[str, tuple[Experiment, ...]] = {
    "02": (DEEPPOSE, RLE),
    "03": (DEEPPOSE, SIMPLEBASELINE),
    "04": (SIMPLEBASELINE, REDUCED_ALONE),
    "07": (DEEPPOSE, SIMPLEBASELINE, TCD_DEEPPOSE, OCD_WARMUP),
    "08": (DEEPPOSE, OCD_WARMUP, SIMPLEBASELINE),
}


def skipped_on(exp: Experiment, profile: NotebookProfile) -> str | None:
    """Why `exp` is left out of `profile`'s grid, or None when it runs there."""
    return dict(exp.skip).get(profile.name)


def experiments(
    notebook: str | None = None, profile: NotebookProfile | None = None
) -> list[Experiment]:
    """The rows of a notebook (all rows for None), less those `profile` leaves out."""
    rows = [e for e in EXPERIMENTS if notebook is None or e.notebook == notebook]
    if profile is not None:
        rows = [e for e in rows if skipped_on(e, profile) is None]
    if not rows:
        raise UnknownNameError(f"no experiment for notebook {notebook!r}")
    return rows


def notebook_rows(notebook: str, profile: NotebookProfile | None = None) -> list[Experiment]:
    """Every row a notebook gathers: the baselines it borrows (`BORROWED_ROWS`), then its
    own rows; less those `profile` leaves out when it is given."""
    borrowed = list(BORROWED_ROWS.get(notebook, ()))
    if profile is not None:
        borrowed = on_profile(borrowed, profile)
    return [*borrowed, *experiments(notebook, profile)]


def on_profile(rows: Iterable[Experiment], profile: NotebookProfile) -> list[Experiment]:
    """The rows among `rows` that `profile` runs (for a figure or check that needs them)."""
    return [e for e in rows if skipped_on(e, profile) is None]


def notebook_left_out(notebook: str, profile: NotebookProfile) -> str | None:
    """Why `profile` runs none of a notebook's own rows (so `reproduce` skips the notebook),
    or None when it runs some of them or the notebook has no rows (00, 06)."""
    rows = [e for e in EXPERIMENTS if e.notebook == notebook]
    reasons = dict.fromkeys(skipped_on(e, profile) for e in rows)
    if not rows or None in reasons:
        return None
    name = profile.name
    return f"none of its rows runs on the {name} profile: " + "; ".join(reasons)


def by_label(label: str) -> Experiment:
    for e in EXPERIMENTS:
        if e.label == label:
            return e
    raise UnknownNameError(f"no experiment labelled {label!r}")


def gathered_rows(results: Iterable[dict]) -> list[Experiment]:
    """The rows that have at least one run among `results` (what a notebook can claim about
    when `gather` left unfinished rows out)."""
    return list(dict.fromkeys(r["experiment"] for r in results))
