"""The runs that fill the grid's rows: each row's configs, read from the run cache or
trained now.

The engine trains one run; the run cache (`ocdlib.runs.cache`) says where a config's run
lives and trains it when missing; committed records (`ocdlib.runs.records`) stand in for
runs trained elsewhere. The scheduler that trains a grid's missing runs side by side is
`reproduce`'s.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..configs import Config, build_config
from ..errors import ConfigError
from ..profiles import NotebookProfile
from ..runs.cache import get_run, is_finished, run_dir
from ..runs.records import find_record, read_record
from .catalogue import EXPERIMENTS, experiments, notebook_rows, skipped_on
from .row import Derived, Experiment


def run_dirs(exp: Experiment, profile: NotebookProfile) -> list[Path]:
    """The run directories of every seed of `exp` on `profile` (trained or not)."""
    return [run_dir(config_for(exp, profile, seed)) for seed in exp.seeds(profile)]


def config_for(exp: Experiment, profile: NotebookProfile, seed: int) -> Config:
    """The Config of one experiment row at one seed (TCD teachers resolved to their runs)."""
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


def teacher_config(teacher: Experiment, profile: NotebookProfile) -> Config:
    """A TCD teacher is the first run (first seed) of its row."""
    return config_for(teacher, profile, teacher.seeds(profile)[0])


def run_experiment(exp: Experiment, profile: NotebookProfile, progress: bool = True) -> list[dict]:
    """Results of every seed of `exp` (from the run cache, or trained now)."""
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
    profile: NotebookProfile,
    progress: bool = False,
    train_missing: bool | None = None,
) -> list[dict]:
    """Results of experiment rows (a notebook id such as "02", one row, or rows), every seed.

    Finished runs are read from the run cache; missing ones are trained now, or, with
    `train_missing` False (default: `train_missing_default()`), named and left out. Rows
    the profile leaves out are named with the reason and left out. Prints one line per run.
    """
    if not isinstance(profile, NotebookProfile):  # a name typed in a notebook cell
        raise ConfigError(
            f"gather takes a NotebookProfile, not {profile!r}: resolve the name once with "
            f"ocdlib.profiles.notebook_profile({profile!r}) and pass what it returns"
        )
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
# written afterwards name them (ocdlib.report.provenance), so a report built from part of
# its grid (a time box, --no-train) says plainly what it lacks.
NOT_TRAINED: dict[str, list[int]] = {}


def _finished_or_recorded(exp: Experiment, profile: NotebookProfile) -> list[dict]:
    """`exp`'s runs from the run cache, or from their committed records (ocdlib/runs/records.py)
    where the cache lacks them; the seeds with neither are named and left out."""
    out, missing, recorded = [], [], []
    for seed in exp.seeds(profile):
        cfg = config_for(exp, profile, seed)
        finished = is_finished(cfg)
        record = None if finished else find_record(cfg)
        if finished:
            result = get_run(cfg, progress=False)
        elif record is not None:
            result = read_record(record)
            recorded.append(seed)
        else:
            missing.append(seed)
            continue
        out.append({"experiment": exp, "config": cfg, **result})
        ap = 100 * result.get("metrics", {}).get("AP", float("nan"))
        print(f"{exp.label} (seed {seed}): AP {ap:.1f} [{_source(result, seed in recorded)}]")
    if missing:
        print(f"{exp.label}: seeds {missing} not trained yet (not trained here)")
        NOT_TRAINED[exp.label] = missing
    else:
        NOT_TRAINED.pop(exp.label, None)
    return out


def _source(result: dict, recorded: bool) -> str:
    """Where a number comes from: this machine's run cache, or a committed record (its
    commit, device and date)."""
    made = ", ".join(
        str(v)
        for v in (
            result.get("git_commit") and f"commit {result['git_commit']}",
            result.get("device"),
            result.get("precision_tag"),
            str(result.get("finished_at", ""))[:10],
        )
        if v
    )
    where = "a committed record" if recorded else "this machine's run cache"
    return f"{where}: {made}"


def grid_configs(
    profile: NotebookProfile, notebooks: list[str] | None = None
) -> list[tuple[Experiment, Config]]:
    """Every run (row x seed) the notebooks gather (their own rows and those they borrow,
    TCD teachers included), each once: `reproduce --only` trains them side by side
    before the notebooks run, rather than one by one inside them."""
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
