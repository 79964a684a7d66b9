"""Training a grid's missing runs side by side: each run a process of its own holding its
run's lock, a TCD run once its teacher has finished, the longest first."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path

from ..configs import Config
from ..cores import usable_cores
from ..data.prepare import resolve_data
from ..engine.run_dir import read_result
from ..errors import RunInterrupted
from ..grid.gather import grid_configs
from ..grid.row import Experiment
from ..profiles import NotebookProfile
from ..runs.cache import get_run, is_finished, run_dir
from ..runs.records import find_record
from .estimate import (
    START_UP_S,
    Progress,
    same_run_key,
)
from .stops import ForwardStops


def default_jobs(cores: int | None = None) -> int:
    """Side-by-side runs for `reproduce`: one per core, one thread each.

    Small CPU models scale poorly over threads (measured in
    benchmarks/bench_cpu_training.py), so N single-thread runs beat one N-thread run."""
    return max(1, cores or usable_cores())


def with_share_of_cores(cfg: Config, jobs: int, cores: int | None = None) -> Config:
    """`cfg` set to run as one of `jobs` side-by-side runs (execution fields, not hashed)."""
    cores = cores or usable_cores()
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


def training_order(
    todo: list[tuple[Experiment, Config]],
) -> list[tuple[Experiment, Config]]:
    """The order `train_grid` starts runs in: teachers first, then the whole-body runs
    (the longest), then the rest; students of a teacher last."""
    teachers = {str(run_dir(c)) for e, c in todo if not c.loss.teacher_run} & {
        c.loss.teacher_run for _, c in todo
    }
    return sorted(
        todo,
        key=lambda ec: (
            bool(ec[1].loss.teacher_run),
            str(run_dir(ec[1])) not in teachers,
            not ec[0].wholebody,
        ),
    )


def train_grid(
    profile: NotebookProfile,
    notebooks: list[str] | None = None,
    jobs: int | None = None,
    out=print,
    progress: Progress | None = None,
    resume: str = "the same command",
    skip_recorded: bool = False,
) -> int:
    """Train every missing run of the grid, `jobs` at a time, before the notebooks read them.

    Each run is one process holding its run's lock, so the notebooks (or a second
    `reproduce`) wait for a run in progress instead of training it again. TCD rows
    start once their teacher has finished; with `skip_recorded`, a run that a committed
    record holds is not trained again. Returns the number of runs trained."""
    jobs = jobs or default_jobs()
    todo = [
        (e, c)
        for e, c in grid_configs(profile, notebooks)
        if not is_finished(c) and not (skip_recorded and find_record(c) is not None)
    ]
    if not todo:
        return 0
    todo = training_order(todo)
    out(f"training {len(todo)} runs of the {profile.name} grid, {jobs} at a time", flush=True)
    for data in {c.data.synth: c.data for _, c in todo if not c.data.root}.values():
        resolve_data(data)  # each SynthPose copy once, before the runs that share it start
    ctx = multiprocessing.get_context("spawn")
    done: set[str] = set()
    with (
        ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool,
        ForwardStops(pool, resume) as stops,
    ):
        pending: dict = {}
        waiting = list(todo)
        while waiting or pending:
            if stops.requested:  # start nothing more; wait for the runs to save
                waiting.clear()
            ready = [
                ec
                for ec in waiting
                if not ec[1].loss.teacher_run
                or ec[1].loss.teacher_run in done
                or read_result(Path(ec[1].loss.teacher_run)) is not None
            ]
            for ec in ready:
                if len(pending) >= jobs:
                    break
                waiting.remove(ec)
                pending[pool.submit(_train_one, with_share_of_cores(ec[1], jobs))] = ec
                if progress is not None:
                    progress.started(run_dir(ec[1]).name)
            if not pending:
                if stops.requested:
                    break
                raise RuntimeError(
                    "runs wait for teachers that are not in the grid: "
                    + ", ".join(c.loss.teacher_run for _, c in waiting)
                )
            finished, _ = wait(pending, timeout=5, return_when=FIRST_COMPLETED)
            for fut in finished:
                exp, cfg = pending.pop(fut)
                try:
                    done.add(fut.result())  # a failed run stops the reproduction with its error
                except RunInterrupted:
                    if not stops.requested:
                        raise
                if progress is not None:
                    progress.ended(run_dir(cfg).name)
        if stops.requested:
            raise stops.interrupted()
    return len(todo)


def finished_seconds(grid) -> dict[str, float]:
    """{same_run_key: seconds} of the grid's runs finished in this machine's run cache:
    what the next seed of the same row will take here."""
    out = {}
    for _, cfg in grid:
        result = read_result(run_dir(cfg)) if is_finished(cfg) else None
        if result and result.get("train_time_s"):
            out[same_run_key(cfg)] = START_UP_S + float(result["train_time_s"])
    return out
