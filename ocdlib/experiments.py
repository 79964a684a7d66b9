"""The experiment grid: which runs each notebook makes, for any profile.

One definition serves the notebooks (each asks for its own rows), the results
notebook (it gathers every row) and the tests. A row is a method preset plus
overrides; key comparisons run on every seed of the profile.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .configs import Config, build_config
from .data.prepare import resolve_data
from .engine.runs import get_run, run_dir

# The seeds of each profile: key rows run on all of them, the others on the first.
SEEDS: dict[str, tuple[int, ...]] = {
    "smoke": (0,),
    "cpu": (0, 1, 2),
    "gpu_synth": (0, 1),
    "coco": (0,),
}
# Body and whole-body profile names of each notebook profile.
PROFILE_PRESETS: dict[str, tuple[str, str]] = {
    "smoke": ("smoke", "smoke_wholebody"),
    "cpu": ("cpu", "cpu_wholebody"),
    "gpu_synth": ("gpu_synth", "gpu_synth_wholebody"),
    "coco": ("coco_r50", "coco_wholebody_r50"),
}


CUT_FOR_TIME = "cut to keep the reproduction within its time budget"
N0_NEEDS_A_FINER_MAP = (
    "N=0 predicts from the stride-32 backbone map (3x3 at 96x72): too coarse to localise "
    "anything, so it is left out of this profile"
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


@dataclass(frozen=True)
class Experiment:
    notebook: str  # "01".."05"
    label: str  # the row's name in tables
    method: str  # a method of ocdlib.configs.METHODS
    overrides: tuple[tuple[str, Any], ...] = ()
    key: bool = False  # run on every seed of the profile
    wholebody: bool = False
    teacher: str | None = None  # label of the experiment whose run is the TCD teacher
    group: str = field(default="", compare=False)  # the comparison this row belongs to
    # Profiles that leave this row out, each with the reason (said in the notebook).
    skip: tuple[tuple[str, str], ...] = ()

    def seeds(self, profile: str) -> tuple[int, ...]:
        seeds = SEEDS[profile]
        return seeds if self.key else seeds[:1]


def _e(notebook, label, method, *overrides, **kw) -> Experiment:
    return Experiment(notebook, label, method, tuple(overrides), **kw)


EXPERIMENTS: tuple[Experiment, ...] = (
    # 01: the baselines, each head trained alone.
    # DeepPose and SimpleBaseline also score the validation set every few epochs while
    # they train: the learning curves of the two representations (notebook 01).
    _e("01", "DeepPose", "deeppose", LEARNING_CURVE, key=True, group="baseline"),
    _e("01", "RLE", "rle", key=True, group="baseline"),
    _e(
        "01",
        "SimpleBaseline (heatmap)",
        "simplebaseline",
        LEARNING_CURVE,
        key=True,
        group="baseline",
    ),
    _e("01", "Reduced heatmap head alone", "reduced_alone", group="baseline"),
    # 02: OCD, and one row per loss term.
    _e("02", "OCD-DeepPose", "ocd", key=True, group="ocd"),
    _e("02", "OCD-RLE", "ocd_rle", key=True, group="ocd"),
    # RLE's likelihood terms start about 25x larger than the heatmap loss: scaled down,
    # do they still swamp the heatmap head that the shared backbone also serves?
    _e(
        "02",
        "OCD-RLE: RLE terms x0.1",
        "ocd_rle",
        ("loss.reg_weight", 0.1),
        ("loss.task_distill_weight", 0.1),
        key=True,
        group="ocd",
        skip=(("cpu", CUT_FOR_TIME),),
    ),
    # Or does the collapse start while the regression head is still far off, so that
    # terms b and c pull the backbone before there is anything to distil?
    _e(
        "02",
        "OCD-RLE: distillation after a warm-up",
        "ocd_rle",
        ("loss.distill_warmup_steps", first_part_of_training(0.25)),
        group="ocd",
    ),
    _e(
        "02",
        "OCD: task-loss distillation only (b)",
        "ocd",
        ("loss.head_distill_weight", 0.0),
        group="ablation",
    ),
    _e(
        "02",
        "OCD: head distillation only (c)",
        "ocd",
        ("loss.task_distill_weight", 0.0),
        group="ablation",
    ),
    _e(
        "02",
        "OCD: no distillation (shared backbone only)",
        "ocd",
        ("loss.task_distill_weight", 0.0),
        ("loss.head_distill_weight", 0.0),
        group="ablation",
    ),
    _e(
        "02",
        "OCD: soft-argmax decode",
        "ocd",
        ("loss.distill_decode", "soft_argmax"),
        group="ablation",
        skip=(("cpu", CUT_FOR_TIME),),
    ),
    _e(
        "02",
        "OCD: render sigma x2",
        "ocd",
        ("loss.render_sigma", twice_target_sigma()),
        group="ablation",
        skip=(("cpu", CUT_FOR_TIME),),
    ),
    _e(
        "02",
        "OCD: head distillation weight 0.1",
        "ocd",
        ("loss.head_distill_weight", 0.1),
        group="ablation",
        skip=(("cpu", CUT_FOR_TIME),),
    ),
    # 03: TCD with the SimpleBaseline of 01 as the frozen teacher.
    _e("03", "TCD-DeepPose", "tcd", teacher="SimpleBaseline (heatmap)", key=True, group="tcd"),
    _e(
        "03",
        "TCD + online auxiliary head",
        "tcd_aux",
        teacher="SimpleBaseline (heatmap)",
        group="tcd",
        skip=(("cpu", CUT_FOR_TIME),),
    ),
    _e(
        "03",
        "TCD + cross-head term",
        "tcd",
        ("loss.cross_head_weight", 1.0),
        teacher="SimpleBaseline (heatmap)",
        group="tcd",
        skip=(("cpu", CUT_FOR_TIME),),
    ),
    # 04: reduced heads, alone (01) and distilled online from the full head.
    _e("04", "Reduced head + online distillation", "reduced", group="reduced"),
    _e(
        "04",
        "Reduced head N=0 alone",
        "reduced_alone",
        ("model.small_deconv_layers", 0),
        group="reduced",
        skip=(("cpu", N0_NEEDS_A_FINER_MAP),),
    ),
    _e(
        "04",
        "Reduced head N=0 + online distillation",
        "reduced",
        ("model.small_deconv_layers", 0),
        group="reduced",
        skip=(("cpu", N0_NEEDS_A_FINER_MAP),),
    ),
    # 05: whole body (133 keypoints).
    _e("05", "DeepPose (whole-body)", "deeppose", wholebody=True, group="wholebody"),
    _e("05", "OCD-DeepPose (whole-body)", "ocd", wholebody=True, group="wholebody"),
    _e("05", "SimpleBaseline (whole-body)", "simplebaseline", wholebody=True, group="wholebody"),
)


def skipped_on(exp: Experiment, profile: str) -> str | None:
    """Why `exp` is left out of `profile`'s grid, or None when it runs there."""
    return dict(exp.skip).get(profile)


def experiments(notebook: str | None = None, profile: str | None = None) -> list[Experiment]:
    """The rows of a notebook (all rows for None), less those `profile` leaves out."""
    rows = [e for e in EXPERIMENTS if notebook is None or e.notebook == notebook]
    if profile is not None:
        rows = [e for e in rows if skipped_on(e, profile) is None]
    if not rows:
        raise KeyError(f"no experiment for notebook {notebook!r}")
    return rows


def by_label(label: str) -> Experiment:
    for e in EXPERIMENTS:
        if e.label == label:
            return e
    raise KeyError(f"no experiment labelled {label!r}")


def config_for(exp: Experiment, profile: str, seed: int) -> Config:
    """The Config of one experiment row at one seed (TCD teachers resolved to their runs)."""
    if profile not in PROFILE_PRESETS:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILE_PRESETS)}")
    base = PROFILE_PRESETS[profile][1 if exp.wholebody else 0]
    sets: dict[str, Any] = {"train.seed": seed}
    preset = build_config(f"{base}_{exp.method}")
    for key, value in exp.overrides:
        sets[key] = value.compute(preset) if isinstance(value, Derived) else value
    if exp.teacher:
        teacher = by_label(exp.teacher)
        sets["loss.teacher_run"] = str(
            run_dir(config_for(teacher, profile, teacher.seeds(profile)[0]))
        )
    return build_config(f"{base}_{exp.method}", sets)


def run_experiment(exp: Experiment, profile: str, progress: bool = True) -> list[dict]:
    """Results of every seed of `exp` (from the run cache, or trained now)."""
    out = []
    for seed in exp.seeds(profile):
        if exp.teacher:
            teacher = by_label(exp.teacher)
            get_run(config_for(teacher, profile, teacher.seeds(profile)[0]), progress=progress)
        cfg = config_for(exp, profile, seed)
        result = get_run(cfg, progress=progress)
        out.append({"experiment": exp, "config": cfg, **result})
    return out


def grid_configs(
    profile: str, notebooks: list[str] | None = None
) -> list[tuple[Experiment, Config]]:
    """Every run (row x seed) of the notebooks' rows, TCD teachers included, each once."""
    rows = [
        e for e in EXPERIMENTS if not notebooks or any(e.notebook.startswith(n) for n in notebooks)
    ]
    if notebooks and any(n.startswith("06") for n in notebooks):
        rows = list(EXPERIMENTS)
    rows = [e for e in rows if skipped_on(e, profile) is None]
    out: dict[str, tuple[Experiment, Config]] = {}
    for exp in rows:
        if exp.teacher:
            teacher = by_label(exp.teacher)
            for seed in teacher.seeds(profile)[:1]:
                cfg = config_for(teacher, profile, seed)
                out.setdefault(str(run_dir(cfg)), (teacher, cfg))
        for seed in exp.seeds(profile):
            cfg = config_for(exp, profile, seed)
            out.setdefault(str(run_dir(cfg)), (exp, cfg))
    return list(out.values())


def default_jobs(cores: int | None = None) -> int:
    """Side-by-side runs for `reproduce`: one per core, one thread each.

    Small CPU models scale poorly over threads (measured in
    benchmarks/bench_cpu_training.py), so N single-thread runs beat one N-thread run."""
    return max(1, cores or os.cpu_count() or 1)


def with_share_of_cores(cfg: Config, jobs: int, cores: int | None = None) -> Config:
    """`cfg` set to run as one of `jobs` side-by-side runs (execution fields, not hashed)."""
    cores = cores or os.cpu_count() or 1
    threads = max(1, cores // jobs)
    # One job per core: the loader runs in the training process (a worker would share its core).
    workers = 0 if jobs > 1 else cfg.data.num_workers
    return replace(
        cfg,
        data=replace(cfg.data, num_workers=workers),
        train=replace(cfg.train, num_threads=threads),
    )


def _train_one(cfg: Config) -> str:
    get_run(cfg, progress=False)
    return str(run_dir(cfg))


def train_grid(
    profile: str, notebooks: list[str] | None = None, jobs: int | None = None, out=print
) -> int:
    """Train every missing run of the grid, `jobs` at a time, before the notebooks read them.

    Each run is one process holding its run's lock, so the notebooks (or a second
    `reproduce`) wait for a run in progress instead of training it again. TCD rows
    start once their teacher has finished. Returns the number of runs trained."""
    jobs = jobs or default_jobs()
    todo = [
        (e, c)
        for e, c in grid_configs(profile, notebooks)
        if not (run_dir(c) / "result.json").is_file()
    ]
    if not todo:
        return 0
    # Longest first (whole-body and heatmap runs), teachers before their students.
    teachers = {str(run_dir(c)) for e, c in todo if not c.loss.teacher_run} & {
        c.loss.teacher_run for _, c in todo
    }
    todo.sort(
        key=lambda ec: (
            bool(ec[1].loss.teacher_run),
            str(run_dir(ec[1])) not in teachers,
            not ec[0].wholebody,
        )
    )
    out(f"training {len(todo)} runs of the {profile} grid, {jobs} at a time", flush=True)
    for data in {c.data.synth: c.data for _, c in todo if not c.data.root}.values():
        resolve_data(data)  # each SynthPose copy once, before the runs that share it start
    ctx = multiprocessing.get_context("spawn")
    done: set[str] = set()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        pending: dict = {}
        waiting = list(todo)
        while waiting or pending:
            ready = [
                ec
                for ec in waiting
                if not ec[1].loss.teacher_run
                or ec[1].loss.teacher_run in done
                or (Path(ec[1].loss.teacher_run) / "result.json").is_file()
            ]
            for ec in ready:
                if len(pending) >= jobs:
                    break
                waiting.remove(ec)
                pending[pool.submit(_train_one, with_share_of_cores(ec[1], jobs))] = ec
            if not pending:
                raise RuntimeError(
                    "runs wait for teachers that are not in the grid: "
                    + ", ".join(c.loss.teacher_run for _, c in waiting)
                )
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                exp, cfg = pending.pop(fut)
                done.add(fut.result())  # a failed run stops the reproduction with its error
    return len(todo)
