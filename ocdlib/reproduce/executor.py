"""Training a plan's runs: the one executor of `reproduce`, the time box and `records --train`.

`execute(plan)` trains the plan's runs to train in the plan's order (ocdlib/grid/plan.py:
a row's priority, the longest first, every teacher before its students), `plan.jobs` at a
time: with one job one after another in this process (the held images, a GPU's context
and its kernels' warm-up paid once for all), with more each in a process of its own
holding its run's lock, with cores/jobs threads. A student starts once its teacher has
finished.

With `plan.minutes` the runs keep within them: a run starts only if, once its data is
generated, at least `MIN_MINUTES_TO_START` are left and what it is expected to take
(`RunTimes`, ocdlib/reproduce/estimate.py) fits what is left; a run that has not ended
by the deadline stops within one step of it, checkpointed, so that a later command
resumes it. A run that fails is noted and the others go on. Without minutes a failed
run stops the command.

Each run's start, epochs and end are said by the command's `Progress`
(ocdlib/reproduce/progress.py), with an ETA where the command measured an estimate.

SIGTERM or Ctrl-C stops the runs at their next step, saved (ocdlib/reproduce/stops.py),
and the executor raises `RunInterrupted` with the command that resumes them.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path

from ..configs import Config
from ..cores import usable_cores
from ..data.prepare import is_ready, resolve_data
from ..engine.run_dir import read_result
from ..errors import GenerationAbandoned, RunInterrupted
from ..grid.plan import FINISHED, Plan, PlannedRun
from ..paths import runs_home
from ..runs.cache import get_run
from ..runs.records import find_record, other_record_roots, record_roots, write_record
from .estimate import RunTimes
from .progress import Progress
from .stops import ForwardStops

MIN_MINUTES_TO_START = 0.5


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


def _train_until(cfg: Config, deadline: float | None, command: str) -> tuple[str, bool]:
    """One run in a pool process: its folder, and whether it finished."""
    result = get_run(cfg, progress=False, deadline=deadline, command=command)
    return result["run_dir"], not result.get("past_deadline", False)


class Execution:
    """One execution of a plan: the clock and what is left, and why each run was or was
    not trained. `execute` returns it."""

    def __init__(
        self, plan: Plan, clock, say, progress=None, records: Path | None = None, minutes=None
    ):
        self.plan, self.clock, self.say, self.records = plan, clock, say, records
        # (The progress lines read the real clock: `clock` keeps the deadline.)
        self.progress = progress or Progress(say=say, total=len(plan.to_train()))
        self.t0 = clock()
        minutes = plan.minutes if minutes is None else minutes
        self.deadline = None if minutes is None else self.t0 + 60 * minutes
        self.finished: list[PlannedRun] = []
        self.stopped: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        self.first_step_s: float | None = None  # command start -> first run's first batch
        self.first_start: float | None = None
        self.dropped: set[str] = set()  # folders of runs not started or not finished
        self.out_of_time = False
        self._started_at: dict[str, float] = {}
        self._data: dict[str, bool] = {}  # SynthPose copy -> there (or generated) or not
        self.planned = {r.folder for r in plan.to_train()}
        committed = record_roots()  # one glob, for both uses below
        self._other_records = other_record_roots(records, committed) if records else committed
        # Earlier runs of the same config names: this command's, the run cache's, committed.
        self.times = RunTimes(([records] if records else []) + [runs_home(), *committed])

    def minutes_left(self) -> float:
        return math.inf if self.deadline is None else (self.deadline - self.clock()) / 60

    def give_up(self) -> str | None:
        """For data generation: a reason to stop, once the time box has run out."""
        return "the time box ran out" if self.minutes_left() <= 0 else None

    def skip(self, run: PlannedRun, why: str) -> None:
        self.skipped.append((run.name, why))
        self.dropped.add(run.folder)

    def failed(self, run: PlannedRun, err: BaseException) -> None:
        """A failed run stops a reproduction; within a time box the others go on."""
        if self.deadline is None:
            raise err
        self.say(f"{run.name} failed: {type(err).__name__}: {err}", flush=True)
        self.skip(run, f"failed: {type(err).__name__}: {str(err)[:200]}")

    def teacher_waits(self, run: PlannedRun, training: set[str]) -> bool:
        """Whether `run`'s teacher is training now (the student starts once it has finished)."""
        teacher = run.config.loss.teacher_run
        return bool(teacher) and teacher in training

    def ready(self, run: PlannedRun) -> bool:
        """Whether `run` may start now: its teacher has finished, it fits the time left,
        and its data is there or made in time. A run that may not is noted with the reason."""
        cfg = run.config
        teacher = cfg.loss.teacher_run
        if teacher and read_result(Path(teacher)) is None:
            if teacher in self.dropped:
                self.skip(run, "its teacher did not finish in this command")
            else:
                self.skip(run, "its teacher's weights are not on this machine (train both in "
                          "one command: weights do not come back with the records)")  # fmt: skip
            return False
        if not self._fits(run):
            return False
        if not self.data_ready(run):
            self.skip(run, "its data could not be generated in the time left")
            return False
        if self.minutes_left() < MIN_MINUTES_TO_START:  # the minimum counts after set-up
            self.skip(run, "no time left once its data was generated")
            self.out_of_time = True
            return False
        return True

    def data_ready(self, run: PlannedRun) -> bool:
        """Whether `run`'s data is there: generated here for the first run that needs it
        (each copy once; one abandoned for want of time stays abandoned)."""
        data = run.config.data
        key = repr(data.synth)
        if key not in self._data:
            self._data[key] = is_ready(data)
            if not self._data[key]:
                t = self.clock()
                try:
                    resolve_data(data, progress=False, give_up=self.give_up)
                    self._data[key] = True
                    self.say(f"generated {data.synth.train + data.synth.val} SynthPose images "
                             f"in {self.clock() - t:.0f} s", flush=True)  # fmt: skip
                except GenerationAbandoned:
                    pass
        return self._data[key]

    def _fits(self, run: PlannedRun) -> bool:
        if self.deadline is None:
            return True
        left = self.minutes_left()
        if left < MIN_MINUTES_TO_START:
            self.skip(run, "no time left")
            self.out_of_time = True
            return False
        estimate = self.times.minutes(run)
        if estimate is not None and estimate > left:
            self.skip(run, f"needs about {estimate:.1f} min, {left:.1f} left")
            return False
        return True

    def started(self, run: PlannedRun) -> None:
        self._started_at[run.name] = self.clock()
        if self.first_start is None:
            self.first_start = self._started_at[run.name]
        what = f"{run.row}, seed {run.seed}"
        if self.deadline is not None:
            what += f"; {self.minutes_left():.1f} min left"
        self.progress.started(run.name, run.folder, what)

    def ended(self, run: PlannedRun, complete: bool) -> None:
        self.times.took(run, (self.clock() - self._started_at.pop(run.name, self.clock())) / 60)
        line = f"stopped {run.name} at the deadline, resumable"
        if complete:
            if self.records is not None and find_record(run.config, self._other_records) is None:
                write_record(Path(run.folder), self.records)  # (a teacher trained again: not)
            self.finished.append(run)
            run.state = FINISHED
            result = read_result(Path(run.folder)) or {}
            if self.first_step_s is None and "seconds_to_first_step" in result:
                self.first_step_s = self.first_start - self.t0 + result["seconds_to_first_step"]
            line = f"finished {run.name}: {_result_line(result)}"
        else:
            self.stopped.append(run.name)
            self.dropped.add(run.folder)
        self.progress.ended(run.name, line)


def execute(
    plan: Plan,
    records: Path | None = None,
    say=print,
    clock=time.time,
    progress: Progress | None = None,
    minutes: float | None = None,
) -> Execution:
    """Train the plan's runs to train (see the module's docstring) within `minutes`
    (default the plan's); with `records`, write each finished run's record there as it
    finishes (a command stopped later loses none).
    Marks the runs it finishes in the plan."""
    ex = Execution(plan, clock, say, progress, Path(records) if records else None, minutes)
    if ex.records is not None:
        ex.records.mkdir(parents=True, exist_ok=True)
    todo = plan.to_train()
    if not todo:
        return ex
    with ex.progress.watching():
        if plan.jobs == 1:
            _one_by_one(ex, todo)
        else:
            _side_by_side(ex, todo)
    return ex


def _one_by_one(ex: Execution, todo: list[PlannedRun]) -> None:
    for i, run in enumerate(todo):
        if not ex.ready(run):
            if ex.out_of_time:  # the rest is not started either
                for later in todo[i + 1 :]:
                    ex.skip(later, "no time left")
                return
            continue
        ex.started(run)
        try:
            result = get_run(
                run.config, progress=False, deadline=ex.deadline, clock=ex.clock,
                command=ex.plan.command,
            )  # fmt: skip
        except (RunInterrupted, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - noted, or raised without a time box
            ex.failed(run, e)
            continue
        ex.ended(run, not result.get("past_deadline"))


def _side_by_side(ex: Execution, todo: list[PlannedRun]) -> None:
    # Each SynthPose copy is generated before the pool starts: its generator forks
    # workers, and a fork beside the pool's threads can deadlock.
    for run in todo:
        if ex.minutes_left() > 0:
            ex.data_ready(run)
    jobs = ex.plan.jobs
    ctx = multiprocessing.get_context("spawn")
    resume = ex.plan.command or "the same command"
    with (
        ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool,
        ForwardStops(pool, resume) as stops,
    ):
        pending: dict = {}
        waiting = list(todo)
        while waiting or pending:
            if stops.requested:  # start nothing more; wait for the runs to save
                waiting.clear()
            training = {r.folder for r in pending.values()}
            for run in list(waiting):
                if len(pending) >= jobs:
                    break
                if ex.teacher_waits(run, training):
                    continue
                waiting.remove(run)
                if not ex.ready(run):
                    continue
                ex.started(run)
                cfg = with_share_of_cores(run.config, jobs)
                future = pool.submit(_train_until, cfg, ex.deadline, ex.plan.command)
                pending[future] = run
                training.add(run.folder)
            if not pending:
                break
            done, _ = wait(pending, timeout=5, return_when=FIRST_COMPLETED)
            for fut in done:
                run = pending.pop(fut)
                try:
                    _, complete = fut.result()
                except RunInterrupted:
                    if not stops.requested:
                        raise
                    continue
                except Exception as e:  # noqa: BLE001 - noted, or raised without a time box
                    ex.failed(run, e)
                    continue
                ex.ended(run, complete)
        if stops.requested:
            raise stops.interrupted()


def _result_line(result: dict) -> str:
    ap = result.get("metrics", {}).get("AP")
    parts = [f"AP {100 * ap:.1f}" if isinstance(ap, (int, float)) else "no AP"]
    if result.get("train_images_per_s"):
        parts.append(f"{result['train_images_per_s']:.0f} images/s")
    if result.get("train_time_s"):
        parts.append(f"trained in {result['train_time_s'] / 60:.1f} min")
    return ", ".join(parts)
