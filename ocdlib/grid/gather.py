"""The runs that fill the grid's rows: each row's configs, read from the run cache or
trained now.

The engine trains one run; the run cache (`ocdlib.runs.cache`) says where a config's run
lives and trains it when missing; committed records (`ocdlib.runs.records`) stand in for
runs trained elsewhere. The executor that trains a grid's missing runs side by side is
`reproduce`'s.
"""

from __future__ import annotations

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


def run_experiment(
    exp: Experiment, profile: NotebookProfile, progress: bool = True, command: str | None = None
) -> list[dict]:
    """Results of every seed of `exp` (from the run cache, or trained now, recording
    `command` as the one that made them)."""
    out = []
    for seed in exp.seeds(profile):
        if exp.teacher:
            get_run(teacher_config(exp.teacher, profile), progress=progress, command=command)
        cfg = config_for(exp, profile, seed)
        result = get_run(cfg, progress=progress, command=command)
        out.append({"experiment": exp, "config": cfg, **result})
    return out


def gather(
    rows: str | Experiment | Iterable[Experiment],
    profile: NotebookProfile,
    progress: bool = False,
    train_missing: bool = False,
    use_records: bool = True,
    not_trained: dict[str, list[int]] | None = None,
    command: str | None = None,
) -> list[dict]:
    """Results of experiment rows (a notebook id such as "02", one row, or rows), every seed.

    Finished runs are read from the run cache, then (`use_records`) from committed
    records; missing ones are trained now with `train_missing` (recording `command`),
    or else named, left out and noted in `not_trained` ({label: seeds}, what the tables
    written afterwards name: ocdlib/report/notebook.py). Rows the profile leaves out are
    named with the reason and left out. Prints one line per run: where its number
    comes from."""
    if not isinstance(profile, NotebookProfile):  # a name typed in a notebook cell
        raise ConfigError(
            f"gather takes a NotebookProfile, not {profile!r}: resolve the name once with "
            f"ocdlib.profiles.notebook_profile({profile!r}) and pass what it returns"
        )
    not_trained = {} if not_trained is None else not_trained
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
            out += _finished_or_recorded(exp, profile, use_records, not_trained)
            continue
        t0 = time.perf_counter()
        # locks each run it trains
        results = run_experiment(exp, profile, progress=progress, command=command)
        how = "cached" if all(finished.values()) else f"trained in {time.perf_counter() - t0:.0f} s"
        for r in results:
            ap = 100 * r.get("metrics", {}).get("AP", float("nan"))
            print(f"{exp.label} (seed {r['config'].train.seed}): AP {ap:.1f} [{how}]")
        out += results
    return out


def _finished_or_recorded(
    exp: Experiment, profile: NotebookProfile, use_records: bool, not_trained: dict
) -> list[dict]:
    """`exp`'s runs from the run cache, or from their committed records (ocdlib/runs/records.py)
    where the cache lacks them; the seeds with neither are named, left out and noted in
    `not_trained`."""
    out, missing, recorded = [], [], []
    for seed in exp.seeds(profile):
        cfg = config_for(exp, profile, seed)
        finished = is_finished(cfg)
        record = None if finished or not use_records else find_record(cfg)
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
        not_trained[exp.label] = missing
    else:
        not_trained.pop(exp.label, None)
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


def grid_rows(profile: NotebookProfile, notebooks: list[str] | None = None) -> list[Experiment]:
    """The rows the notebooks gather (every row for None or with 06, the results notebook,
    which gathers them all), less those `profile` leaves out; TCD teachers not added."""
    rows = list(EXPERIMENTS)
    if notebooks and not any(n.startswith("06") for n in notebooks):
        ids = dict.fromkeys(
            e.notebook for e in EXPERIMENTS if any(e.notebook.startswith(n) for n in notebooks)
        )
        rows = list(dict.fromkeys(e for nb in ids for e in notebook_rows(nb)))
    return [e for e in rows if skipped_on(e, profile) is None]


def grid_configs(
    profile: NotebookProfile, notebooks: list[str] | None = None
) -> list[tuple[Experiment, Config]]:
    """Every run (row x seed) the notebooks gather (their own rows and those they borrow,
    TCD teachers included), each once: `reproduce` plans and trains them before the
    notebooks run, rather than one by one inside them."""
    out: dict[str, tuple[Experiment, Config]] = {}
    for exp in grid_rows(profile, notebooks):
        if exp.teacher:
            cfg = teacher_config(exp.teacher, profile)
            out.setdefault(str(run_dir(cfg)), (exp.teacher, cfg))
        for seed in exp.seeds(profile):
            cfg = config_for(exp, profile, seed)
            out.setdefault(str(run_dir(cfg)), (exp, cfg))
    return list(out.values())
