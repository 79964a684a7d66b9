"""Reproduce a profile: say what it will cost, train the grid's missing runs side by side
(or within a time box), then run the notebooks in order with papermill, writing
executed copies and results to reports/."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from ..cores import usable_cores
from ..errors import ConfigError
from ..grid import tcd_probe
from ..grid.catalogue import notebook_left_out
from ..grid.gather import grid_configs
from ..paths import REPO_ROOT, report_dir, runs_home
from ..profiles import NotebookProfile
from ..report.notebook import clear_notebook_outputs
from ..report.provenance import provenance_name, write_provenance
from ..runs.cache import is_finished, run_dir
from ..runs.records import find_record
from .estimate import (
    NOTEBOOK_S,
    Progress,
    estimate_grid,
    summary_lines,
)
from .scheduler import default_jobs, finished_seconds, train_grid, training_order
from .watcher import RunWatcher

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def notebooks(only: list[str] | None = None) -> list[Path]:
    books = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        books = [b for b in books if any(b.name.startswith(p) for p in only)]
        if not books:
            raise ConfigError(f"--only {only}: no notebook in {NOTEBOOK_DIR} starts with that")
    return books


def reproduce(
    profile: NotebookProfile,
    only: list[str] | None = None,
    jobs: int | None = None,
    train_missing: bool = True,
    minutes: float | None = None,
    clock=time.time,
) -> int:
    """Train the grid's missing runs `jobs` at a time, then run the notebooks in order.

    It first says how many runs it will train and how long it expects to take on this
    machine (ocdlib/reproduce/estimate.py), then prints a progress line with an ETA as each run
    ends. With `minutes`, the whole command keeps within them: the key comparisons train
    first (the time box of ocdlib/reproduce/timebox.py, which the GPU allocations use), runs that
    cannot finish in time are not started, and the notebooks report on what finished,
    naming the rows that did not.

    The notebooks read every run from the cache; training first, side by side, is what
    uses all the cores (small CPU models scale poorly over threads). With
    `train_missing` False nothing is trained: the notebooks report on the finished runs
    and name the missing ones (OCDLIB_TRAIN_MISSING=0 in their environment)."""
    run = _Reproduction(profile, only, jobs or default_jobs(), minutes)
    run.leave_out_notebooks()
    # Runs that the notebooks train record this command as the one that made them,
    # and the watcher prints a line as each starts, reaches an epoch and finishes.
    with (
        _env("OCDLIB_COMMAND", _reproduce_command(profile.name, only, train_missing, minutes)),
        _env("OCDLIB_TRAIN_MISSING", "1" if train_missing and minutes is None else "0"),
        # A time-boxed reproduction reports on what this machine trained, not on records.
        _env("OCDLIB_USE_RECORDS", "0" if minutes is not None else "1"),
        RunWatcher(runs_home(), profile),
    ):
        run.survey()
        # After a time box the notebooks report on what finished, training nothing.
        train_missing = run.train(clock) if train_missing else False
        run.run_notebooks(train_missing)
    total = time.perf_counter() - run.t_all
    if run.not_rebuilt:  # the provenance names the notebooks left as they were
        run.write_provenance([])
    print(f"all done in {total / 60:.1f} min; reports in {run.out_dir}")
    for line in run.not_rebuilt:
        print(line)
    return 0


class _Reproduction:
    """One `reproduce` command: its notebooks, what it trains, and the lines its
    provenance gathers as it goes."""

    def __init__(self, profile: NotebookProfile, only, jobs: int, minutes: float | None):
        self.profile, self.only, self.jobs, self.minutes = profile, only, jobs, minutes
        self.books = notebooks(only)  # an --only that names no notebook stops here
        self.out_dir = report_dir(profile)
        self.executed = self.out_dir / "notebooks"
        # papermill writes a notebook as it runs; it lands in reports/ only once it has
        # finished, so an interrupted or failed notebook never passes for a result.
        self.running = self.executed / ".running"
        self.running.mkdir(parents=True, exist_ok=True)
        self.t_all = time.perf_counter()
        self.timings: list[tuple[str, float]] = []
        self.extra_lines: list[str] = []
        self.not_rebuilt: list[str] = []
        self.cache_state = ""
        self.grid: list = []

    def leave_out_notebooks(self) -> None:
        """A notebook none of whose own rows runs on this profile (04 on cpu: its rows are
        in the full grid) is skipped, and its outputs from an earlier reproduction removed."""
        left_out = {
            b.name: why for b in self.books if (why := notebook_left_out(b.name[:2], self.profile))
        }
        for name, why in left_out.items():
            clear_notebook_outputs(self.out_dir, name)
            (self.executed / name).unlink(missing_ok=True)
            print(f"{name}: not run ({why})", flush=True)
        self.books = [b for b in self.books if b.name not in left_out]
        self.extra_lines += [f"{name}: not run ({why})" for name, why in left_out.items()]

    @property
    def ids(self) -> list[str]:
        return [b.name[:2] for b in self.books]

    def survey(self) -> None:
        """The grid of the notebooks to run, and what the run cache holds of it."""
        self.grid = grid_configs(self.profile, self.ids)
        cached = sum(is_finished(c) for _, c in self.grid)
        self.cache_state = (
            f"run cache at the start: {cached} of the {len(self.grid)} runs of the grid finished"
            + (" (empty: every run trained by this command)" if cached == 0 else "")
        )
        print(self.cache_state, flush=True)

    def train(self, clock) -> bool:
        """Say what training will cost, then train (within the minutes, if given); whether
        the notebooks may still train what is missing."""
        t0 = time.perf_counter()
        progress = _announce(self.grid, self.jobs, len(self.books))
        if progress is not None:
            est = progress.estimate
            self.extra_lines.append(
                f"estimated before the first run: {est.wall_s / 60:.1f} min for "
                f"{len(est.runs)} runs in {est.precision}, {est.jobs} side by side (measured "
                f"here in {est.measured_s:.0f} s; ocdlib/reproduce/estimate.py)"
            )
        if self.minutes is not None:
            left = self.minutes - (time.perf_counter() - self.t_all) / 60  # the estimate took some
            self.extra_lines += _timeboxed_training(
                self.profile, self.ids, self.jobs, left, len(self.books), progress, clock
            )
            self.timings.append(
                (f"time-boxed training, {self.jobs} side by side", time.perf_counter() - t0)
            )
            return False
        if any(b.name.startswith("07") for b in self.books):
            # The TCD probe measures the first TCD and OCD runs at stops along their
            # training, so it trains them before the grid would train them straight through.
            tcd_probe.grid_probe(self.profile)
        resume = _reproduce_command(self.profile.name, self.only, True, self.minutes)
        trained = train_grid(self.profile, self.ids, self.jobs, progress=progress, resume=resume)
        if trained:
            self.timings.append(
                (f"training {trained} runs, {self.jobs} side by side", time.perf_counter() - t0)
            )
            print(f"trained {trained} runs in {self.timings[-1][1] / 60:.1f} min", flush=True)
        return True

    def run_notebooks(self, train_missing: bool) -> None:
        for i, nb in enumerate(self.books, 1):
            name = f"[{i}/{len(self.books)}] {nb.name}"
            print(f"{name} (profile {self.profile.name}) ...", flush=True)
            t0 = time.perf_counter()
            if not self._run_notebook(nb, train_missing):
                continue
            dt = time.perf_counter() - t0
            self.timings.append((nb.name, dt))
            print(f"{name} done in {dt / 60:.1f} min", flush=True)
            # Written after every notebook, so an interrupted reproduction says how far it got.
            self.write_provenance([b.name for b in self.books[i:]])

    def _run_notebook(self, nb: Path, train_missing: bool) -> bool:
        """Run one notebook; False where it was left as it was (the reason noted)."""
        missing = [] if train_missing else _unavailable(self.profile, nb.name)
        n_runs = len(grid_configs(self.profile, [nb.name[:2]]))
        if missing and len(missing) == n_runs:
            why = f"none of its {n_runs} runs is trained; its reports stay as they were"
            self.not_rebuilt.append(f"{nb.name}: not rebuilt ({why})")
            print(self.not_rebuilt[-1], flush=True)
            return False
        try:
            _execute(nb, self.running, self.out_dir, self.profile.name, train_missing)
        except Exception as err:
            if not missing:
                print(f"{nb.name} did not finish; its partial output is {self.running / nb.name}")
                raise
            # A notebook built for its whole grid may not rebuild from part of it; the
            # reports it wrote from an earlier, fuller run are kept rather than lost.
            why = (
                f"{len(missing)} of its {n_runs} runs not trained, and it stopped on "
                f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:160]}; "
                f"its reports stay as they were (partial output: {self.running / nb.name})"
            )
            self.not_rebuilt.append(f"{nb.name}: not rebuilt ({why})")
            print(self.not_rebuilt[-1], flush=True)
            return False
        return True

    def write_provenance(self, pending: list[str]) -> None:
        write_provenance(
            self.out_dir,
            self.profile,
            self.timings,
            time.perf_counter() - self.t_all,
            bool(self.only),
            pending,
            extra=[
                self.cache_state,
                f"training runs side by side: {self.jobs} (--jobs)",
                *self.extra_lines,
                *self.not_rebuilt,
            ],
            name=provenance_name(self.only),
        )


def _unavailable(profile: NotebookProfile, notebook: str) -> list[str]:
    """The runs notebook `notebook` gathers that neither the run cache nor a committed
    record holds (what `reproduce --no-train` cannot show), as run folder names."""
    return [
        run_dir(cfg).name
        for _, cfg in grid_configs(profile, [notebook[:2]])
        if not is_finished(cfg) and find_record(cfg) is None
    ]


def _execute(nb: Path, running: Path, out_dir: Path, profile: str, train: bool) -> None:
    """Run notebook `nb` with papermill, its tables and figures written to a staging
    folder first: they replace the notebook's earlier reports only once it has finished,
    so a notebook that fails leaves the reports of the last one that did."""
    partial = running / nb.name
    staging = running / f"{nb.stem}.reports"
    shutil.rmtree(staging, ignore_errors=True)
    import papermill  # here, not at the top: the time-boxed path must run without it

    papermill.execute_notebook(
        str(nb),
        str(partial),
        parameters={"profile": profile, "reports_dir": str(staging), "train_missing": train},
        cwd=str(NOTEBOOK_DIR),
        kernel_name="python3",
        progress_bar=False,
        log_output=False,
        # The kernel's own start-up notices (it listens on localhost TCP) are noise
        # here; errors in cells still stop the notebook and are raised.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    clear_notebook_outputs(out_dir, nb.name)
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = out_dir / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    shutil.rmtree(staging, ignore_errors=True)
    os.replace(partial, out_dir / "notebooks" / nb.name)


def _announce(grid, jobs: int, books: int, say=print):
    """Say what of `grid` will be trained and how long it should take; the Progress that
    follows it (None when nothing is left to train)."""
    todo = training_order([(e, c) for e, c in grid if not is_finished(c)])
    if not todo:
        return None
    say("measuring this machine's step times for the estimate (at most 30 s) ...", flush=True)
    est = estimate_grid(
        [c for _, c in todo], jobs, notebooks=books, finished=finished_seconds(grid)
    )
    for line in summary_lines(est, len(grid) - len(todo), usable_cores()):
        say(line, flush=True)
    return Progress(est, say=say)


def _timeboxed_training(profile, ids, jobs, minutes, books, progress, clock) -> list[str]:
    """Train within `minutes`, less the notebooks' share; the provenance lines it leaves."""
    from .timebox import reproduce_within

    train_minutes = minutes - books * NOTEBOOK_S / 60
    if progress is not None:
        progress.limit_s = 60 * minutes
    estimates = {r.name: r.seconds for r in progress.estimate.runs} if progress else {}
    summary = reproduce_within(
        profile, train_minutes, None, jobs, pictures=False, estimates=estimates,
        progress=progress, notebooks=ids, clock=clock,
    )  # fmt: skip
    lines = [
        f"time box: {minutes:.1f} min left after the estimate, {train_minutes:.1f} of them for "
        "training; "
        f"{len(summary['finished'])} runs finished in it"
    ]
    left = summary["stopped_past_the_deadline"] + [r["run"] for r in summary["not_started"]]
    if left:
        lines.append(f"not trained in the time box: {', '.join(left)}")
    return lines


def _reproduce_command(
    profile: str, only: list[str] | None, train_missing: bool = True, minutes=None
) -> str:
    return (
        f"python -m ocdlib reproduce --profile {profile}"
        + ("" if train_missing else " --no-train")
        + (f" --minutes {minutes:g}" if minutes is not None and train_missing else "")
        + (f" --only {' '.join(only)}" if only else "")
    )  # --jobs changes how the runs execute, not what they compute


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """Set an environment variable (inherited by the kernels) for the block's duration."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
