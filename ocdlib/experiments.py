"""The experiment grid and the claims made about it.

One definition serves the notebooks (each asks for its own rows and claims), the
results notebook (every row), `reproduce` (it trains the grid side by side first)
and the tests. A row is a method preset plus overrides on a notebook profile
(ocdlib.profiles); key rows run on every seed of the profile. A claim
(`Comparison`, `Target`, `Floor`) refers to its rows as objects, so renaming a row
cannot drop a claim, and a claim whose rows did not run fails with their names.

The runs that fill the grid come from the run cache (ocdlib/run_cache.py); the
scheduler that trains a grid's missing runs side by side is `reproduce`'s.
Functions that take a profile accept its name or its record (ocdlib.profiles) and
resolve it once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .configs import Config, build_config
from .errors import UnknownNameError
from .profiles import NotebookProfile, notebook_profile
from .run_cache import get_run, is_finished, run_dir
from .run_records import find_record, read_record

# The cpu profile is the default reproduction (make reproduce): the key comparisons on
# every seed and the calibration floors, within two hours on two cores. cpu_full trains
# every row on the same configs (make reproduce-full), sharing cpu's runs.
FULL_GRID_ONLY = (
    "in the full grid only (make reproduce-full): cut from make reproduce to keep it "
    "within two hours on two cores"
)
IN_THE_FULL_GRID = (("cpu", FULL_GRID_ONLY),)
N0_NEEDS_A_FINER_MAP = (
    "N=0 predicts from the stride-32 backbone map (4x3 at 128x96): too coarse to localise "
    "anything, so it is left out of this profile"
)
N0_SKIP = (("cpu", N0_NEEDS_A_FINER_MAP), ("cpu_full", N0_NEEDS_A_FINER_MAP))
# The investigations of notebooks 07 (why a frozen teacher hurts) and 08 (does OCD's gain
# survive a longer budget) are hours of CPU training: make reproduce-full only.
INVESTIGATION_ONLY = (
    "an investigation of the full cpu grid (make reproduce-full): hours of training on two "
    "cores, cut from make reproduce"
)
INVESTIGATION = (
    ("cpu", INVESTIGATION_ONLY),
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

    def seeds(self, profile: str | NotebookProfile) -> tuple[int, ...]:
        seeds = notebook_profile(profile).seeds
        if not self.key:
            return seeds[:1]
        return seeds[: self.n_seeds] if self.n_seeds else seeds


def _e(notebook, label, method, *overrides, **kw) -> Experiment:
    flat: list[tuple[str, Any]] = []
    for o in overrides:  # an override, or a group of them such as budget(k)
        flat.extend(o if isinstance(o[0], tuple) else [o])
    return Experiment(notebook, label, method, tuple(flat), **kw)


# 01: the baselines, each head trained alone.
# DeepPose and SimpleBaseline also score the validation set every few epochs while
# they train: the learning curves of the two representations (notebook 01).
DEEPPOSE = _e("01", "DeepPose", "deeppose", LEARNING_CURVE, key=True, group="baseline")
RLE = _e("01", "RLE", "rle", key=True, group="baseline")
SIMPLEBASELINE = _e(
    "01", "SimpleBaseline (heatmap)", "simplebaseline", LEARNING_CURVE, key=True, group="baseline"
)
REDUCED_ALONE = _e(
    "01", "Reduced heatmap head alone", "reduced_alone", group="baseline", skip=IN_THE_FULL_GRID
)
# 02: OCD, and one row per loss term.
OCD_DEEPPOSE = _e("02", "OCD-DeepPose", "ocd", key=True, group="ocd")
OCD_RLE = _e("02", "OCD-RLE", "ocd_rle", key=True, group="ocd")
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
TCD_DEEPPOSE = _e("03", "TCD-DeepPose", "tcd", teacher=SIMPLEBASELINE, key=True, group="tcd")
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

# 07: why a frozen teacher hurts DeepPose here (TCD-DeepPose scores below DeepPose on every
# seed) while OCD's weaker online head helps: one change to TCD per row.
TCD_TASK_ONLY = _e(
    "07",
    "TCD: task-loss distillation only (b)",
    "tcd",
    ("loss.head_distill_weight", 0.0),
    teacher=SIMPLEBASELINE,
    key=True,
    group="tcd probe",
    skip=INVESTIGATION,
)
TCD_HEAD_ONLY = _e(
    "07",
    "TCD: head distillation only (c)",
    "tcd",
    ("loss.task_distill_weight", 0.0),
    teacher=SIMPLEBASELINE,
    key=True,
    group="tcd probe",
    skip=INVESTIGATION,
)
TCD_WARMUP = _e(
    "07",
    "TCD: distillation after a warm-up",
    "tcd",
    ("loss.distill_warmup_steps", first_part_of_training(0.25)),
    teacher=SIMPLEBASELINE,
    key=True,
    group="tcd probe",
    skip=INVESTIGATION,
)
TCD_LABELLED_ONLY = _e(
    "07",
    "TCD: labelled keypoints only",
    "tcd",
    ("loss.distill_unlabelled", False),
    teacher=SIMPLEBASELINE,
    key=True,
    group="tcd probe",
    skip=INVESTIGATION,
)
# Term c is what makes TCD lose (07's rows above): through the backbone, or by its size?
TCD_C_OFF_BACKBONE = _e(
    "07",
    "TCD: term c off the backbone",
    "tcd",
    ("loss.head_distill_backbone", False),
    teacher=SIMPLEBASELINE,
    key=True,
    group="tcd probe",
    skip=INVESTIGATION,
)
TCD_LIGHT_HEAD_TERM = _e(
    "07",
    "TCD: head distillation weight 0.1",
    "tcd",
    ("loss.head_distill_weight", 0.1),
    teacher=SIMPLEBASELINE,
    key=True,
    group="tcd probe",
    skip=INVESTIGATION,
)
SIMPLEBASELINE_2X = _e(
    "07",
    "SimpleBaseline (heatmap), 2x budget",
    "simplebaseline",
    budget(2),
    group="tcd probe",
    skip=INVESTIGATION,
)
TCD_STRONG_TEACHER = _e(
    "07",
    "TCD: teacher trained for 2x the budget",
    "tcd",
    teacher=SIMPLEBASELINE_2X,
    key=True,
    group="tcd probe",
    skip=INVESTIGATION,
)


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


def skipped_on(exp: Experiment, profile: str | NotebookProfile) -> str | None:
    """Why `exp` is left out of `profile`'s grid, or None when it runs there."""
    return dict(exp.skip).get(notebook_profile(profile).name)


def experiments(
    notebook: str | None = None, profile: str | NotebookProfile | None = None
) -> list[Experiment]:
    """The rows of a notebook (all rows for None), less those `profile` leaves out."""
    rows = [e for e in EXPERIMENTS if notebook is None or e.notebook == notebook]
    if profile is not None:
        rows = [e for e in rows if skipped_on(e, profile) is None]
    if not rows:
        raise UnknownNameError(f"no experiment for notebook {notebook!r}")
    return rows


def notebook_rows(notebook: str, profile: str | NotebookProfile | None = None) -> list[Experiment]:
    """Every row a notebook gathers: the baselines it borrows (`BORROWED_ROWS`), then its
    own rows; less those `profile` leaves out when it is given."""
    borrowed = list(BORROWED_ROWS.get(notebook, ()))
    if profile is not None:
        borrowed = on_profile(borrowed, profile)
    return [*borrowed, *experiments(notebook, profile)]


def on_profile(rows: Iterable[Experiment], profile: str | NotebookProfile) -> list[Experiment]:
    """The rows among `rows` that `profile` runs (for a figure or check that needs them)."""
    return [e for e in rows if skipped_on(e, profile) is None]


def notebook_left_out(notebook: str, profile: str | NotebookProfile) -> str | None:
    """Why `profile` runs none of a notebook's own rows (so `reproduce` skips the notebook),
    or None when it runs some of them or the notebook has no rows (00, 06)."""
    rows = [e for e in EXPERIMENTS if e.notebook == notebook]
    reasons = dict.fromkeys(skipped_on(e, profile) for e in rows)
    if not rows or None in reasons:
        return None
    name = notebook_profile(profile).name
    return f"none of its rows runs on the {name} profile: " + "; ".join(reasons)


def by_label(label: str) -> Experiment:
    for e in EXPERIMENTS:
        if e.label == label:
            return e
    raise UnknownNameError(f"no experiment labelled {label!r}")


# ----------------------------------------------------------------------------- rows -> runs


def run_dirs(exp: Experiment, profile: str | NotebookProfile) -> list[Path]:
    """The run directories of every seed of `exp` on `profile` (trained or not)."""
    profile = notebook_profile(profile)
    return [run_dir(config_for(exp, profile, seed)) for seed in exp.seeds(profile)]


def config_for(exp: Experiment, profile: str | NotebookProfile, seed: int) -> Config:
    """The Config of one experiment row at one seed (TCD teachers resolved to their runs)."""
    profile = notebook_profile(profile)
    base = profile.config_base(exp.wholebody)
    preset = f"{base}_{exp.method}"
    sets: dict[str, Any] = {"train.seed": seed}
    for key, value in exp.overrides:
        # A derived override reads the config as the overrides before it left it (a
        # warm-up that is a fraction of a budget already multiplied).
        sets[key] = (
            value.compute(build_config(preset, sets)) if isinstance(value, Derived) else value
        )
    if exp.teacher:
        sets["loss.teacher_run"] = str(run_dir(teacher_config(exp.teacher, profile)))
    return build_config(preset, sets)


def teacher_config(teacher: Experiment, profile: str | NotebookProfile) -> Config:
    """A TCD teacher is the first run (first seed) of its row."""
    return config_for(teacher, profile, teacher.seeds(profile)[0])


def run_experiment(
    exp: Experiment, profile: str | NotebookProfile, progress: bool = True
) -> list[dict]:
    """Results of every seed of `exp` (from the run cache, or trained now)."""
    profile = notebook_profile(profile)
    out = []
    for seed in exp.seeds(profile):
        if exp.teacher:
            get_run(teacher_config(exp.teacher, profile), progress=progress)
        cfg = config_for(exp, profile, seed)
        result = get_run(cfg, progress=progress)
        out.append({"experiment": exp, "config": cfg, **result})
    return out


def train_missing_default() -> bool:
    """Whether `gather` trains the runs it misses: yes, unless OCDLIB_TRAIN_MISSING=0
    (`reproduce --no-train`: report on the finished runs only)."""
    return os.environ.get("OCDLIB_TRAIN_MISSING", "1") != "0"


def gather(
    rows: str | Experiment | Iterable[Experiment],
    profile: str | NotebookProfile,
    progress: bool = False,
    train_missing: bool | None = None,
) -> list[dict]:
    """Results of experiment rows (a notebook id such as "02", one row, or rows), every seed.

    Finished runs are read from the run cache; missing ones are trained now, or, with
    `train_missing` False (default: `train_missing_default()`), named and left out. Rows
    the profile leaves out are named with the reason and left out. Prints one line per run.
    """
    profile = notebook_profile(profile)
    train_missing = train_missing_default() if train_missing is None else train_missing
    if isinstance(rows, str):
        rows = experiments(rows)
    elif isinstance(rows, Experiment):
        rows = [rows]
    out: list[dict] = []
    for exp in rows:
        reason = skipped_on(exp, profile)
        if reason:
            print(f"{exp.label}: not run on the {profile.name} profile ({reason})")
            continue
        finished = {s: is_finished(config_for(exp, profile, s)) for s in exp.seeds(profile)}
        if not train_missing and not all(finished.values()):
            out += _finished_or_recorded(exp, profile)
            continue
        t0 = time.perf_counter()
        results = run_experiment(exp, profile, progress=progress)  # locks each run it trains
        how = "cached" if all(finished.values()) else f"trained in {time.perf_counter() - t0:.0f} s"
        for r in results:
            ap = 100 * r.get("metrics", {}).get("AP", float("nan"))
            print(f"{exp.label} (seed {r['config'].train.seed}): AP {ap:.1f} [{how}]")
        out += results
    return out


# Rows `gather` left out in this process for want of runs, {label: seeds}: the tables
# written afterwards name them (reporting.provenance), so a report built from part of
# its grid (a time box, --no-train) says plainly what it lacks.
NOT_TRAINED: dict[str, list[int]] = {}


def _finished_or_recorded(exp: Experiment, profile: NotebookProfile) -> list[dict]:
    """`exp`'s runs from the run cache, or from their committed records (run_records.py)
    where the cache lacks them; the seeds with neither are named and left out."""
    out, missing, recorded = [], [], []
    for seed in exp.seeds(profile):
        cfg = config_for(exp, profile, seed)
        record = None if is_finished(cfg) else find_record(cfg)
        if is_finished(cfg):
            result = get_run(cfg, progress=False)
        elif record is not None:
            result = read_record(record)
            recorded.append(seed)
        else:
            missing.append(seed)
            continue
        out.append({"experiment": exp, "config": cfg, **result})
        ap = 100 * result.get("metrics", {}).get("AP", float("nan"))
        how = "from its committed record" if seed in recorded else "cached"
        print(f"{exp.label} (seed {seed}): AP {ap:.1f} [{how}]")
    if missing:
        print(f"{exp.label}: seeds {missing} not trained yet (not trained here)")
        NOT_TRAINED[exp.label] = missing
    else:
        NOT_TRAINED.pop(exp.label, None)
    return out


def gathered_rows(results: Iterable[dict]) -> list[Experiment]:
    """The rows that have at least one run among `results` (what a notebook can claim about
    when `gather` left unfinished rows out)."""
    return list(dict.fromkeys(r["experiment"] for r in results))


def grid_configs(
    profile: str | NotebookProfile, notebooks: list[str] | None = None
) -> list[tuple[Experiment, Config]]:
    """Every run (row x seed) the notebooks gather (their own rows and those they borrow,
    TCD teachers included), each once: `reproduce --only` trains them side by side
    before the notebooks run, rather than one by one inside them."""
    profile = notebook_profile(profile)
    rows = list(EXPERIMENTS)  # every row; 06 (the results notebook) gathers them all
    if notebooks and not any(n.startswith("06") for n in notebooks):
        ids = dict.fromkeys(
            e.notebook for e in EXPERIMENTS if any(e.notebook.startswith(n) for n in notebooks)
        )
        rows = list(dict.fromkeys(e for nb in ids for e in notebook_rows(nb)))
    rows = [e for e in rows if skipped_on(e, profile) is None]
    out: dict[str, tuple[Experiment, Config]] = {}
    for exp in rows:
        if exp.teacher:
            cfg = teacher_config(exp.teacher, profile)
            out.setdefault(str(run_dir(cfg)), (exp.teacher, cfg))
        for seed in exp.seeds(profile):
            cfg = config_for(exp, profile, seed)
            out.setdefault(str(run_dir(cfg)), (exp, cfg))
    return list(out.values())


# ----------------------------------------------------------------------------- claims


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


def comparisons_among(
    rows: Iterable[Experiment], profile: str | NotebookProfile
) -> list[Comparison]:
    """The comparisons between `rows` (both sides among them), less those with a row that
    `profile` leaves out: what a notebook that gathered `rows` can claim."""
    rows = set(rows)
    return [c for c in COMPARISONS if all(e in rows and not skipped_on(e, profile) for e in c.rows)]


def floors_among(rows: Iterable[Experiment]) -> list[Floor]:
    """The calibration floors of `rows`."""
    rows = set(rows)
    return [f for f in FLOORS if f.row in rows]
