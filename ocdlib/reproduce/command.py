"""Reproduce a profile: say what it will cost, train the grid's missing runs side by side
(or within a time box), then run the notebooks in order with papermill, writing
executed copies and results to reports/."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..cores import usable_cores
from ..errors import ConfigError
from ..grid import tcd_probe
from ..grid.plan import FINISHED, MISSING, PLAN_FILE, Plan, build_plan
from ..paths import REPO_ROOT, report_dir
from ..profiles import NotebookProfile
from ..report.notebook import clear_notebook_outputs
from ..report.provenance import provenance_name, write_provenance
from ..runs.cache import is_finished
from .estimate import DEFAULT_BUDGET_S, NOTEBOOK_S, estimate_grid, finished_seconds, summary_lines
from .executor import default_jobs, execute
from .progress import Progress

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
# Seconds of measurement below which a time box trains without an estimate.
MIN_MEASURE_S = 10.0


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

    The command's plan (ocdlib/grid/plan.py) is built once: the notebooks, every run of
    their grid with its state, the policy. It first says how many runs it will train
    and how long it expects to take on this machine (ocdlib/reproduce/estimate.py), then
    the executor (ocdlib/reproduce/executor.py) trains them, printing a progress line
    with an ETA as each run ends. With `minutes`, the whole command keeps within them:
    the key comparisons train first, runs that cannot finish in time are not started,
    and the notebooks report on what finished, naming the rows that did not.

    The notebooks get the plan (plan.json): they read every run from the cache, train
    nothing the executor should have, and write into it the rows they leave out, which
    the provenance names. With `train_missing` False nothing is trained: the notebooks
    report on the finished runs and the committed records, and name the missing ones."""
    command = _reproduce_command(profile.name, only, train_missing, minutes)
    plan = build_plan(
        profile, notebooks(only), command, train_missing, minutes, jobs or default_jobs()
    )
    run = _Reproduction(plan, profile, only)
    run.clear_left_out()
    try:
        run.survey()
        if train_missing:
            run.train(clock)
        run.run_notebooks()
    finally:  # an interrupted reproduction says how far it got
        run.write_provenance()
    print(f"all done in {(time.perf_counter() - run.t_all) / 60:.1f} min; reports in {run.out_dir}")
    for line in run.not_rebuilt:
        print(line)
    return 0


def train_grid(
    profile: NotebookProfile,
    only: list[str] | None = None,
    jobs: int | None = None,
    use_records: bool = False,
    command: str | None = None,
    announce: bool = False,
    records: Path | None = None,
) -> list[str]:
    """Train the runs of the grid (of the notebooks `only`) that the run cache lacks and,
    with `use_records`, that no committed record holds, `jobs` side by side, teachers
    first. With `announce`, say first what it will cost, and give an
    ETA as each run ends; with `records`, write each run's record there as it finishes.
    Returns the folder names of the runs it trained. What `records --train` and the
    tests use."""
    command = command or _reproduce_command(profile.name, only)
    books = notebooks(only) if only else None
    plan = build_plan(profile, books, command, True, None, jobs or default_jobs(), use_records)
    progress = _announce(plan, 0) if announce else None
    return [run.name for run in execute(plan, records, progress=progress).finished]


class _Reproduction:
    """One `reproduce` command: its plan, and the lines its provenance gathers as it goes."""

    def __init__(self, plan: Plan, profile: NotebookProfile, only: list[str] | None):
        self.plan, self.profile, self.only = plan, profile, only
        self.out_dir = report_dir(profile)
        self.executed = self.out_dir / "notebooks"
        # papermill writes a notebook as it runs; it lands in reports/ only once it has
        # finished, so an interrupted or failed notebook never passes for a result.
        self.running = self.executed / ".running"
        self.running.mkdir(parents=True, exist_ok=True)
        self.plan_file = self.running / PLAN_FILE
        self.t_all = time.perf_counter()
        self.timings: list[tuple[str, float]] = []
        self.extra_lines: list[str] = []
        self.not_rebuilt: list[str] = []
        self.pending: list[str] = list(plan.notebooks)

    def clear_left_out(self) -> None:
        """A notebook none of whose own rows runs on this profile (04 on cpu: its rows are
        in the full grid) is skipped, and its outputs from an earlier reproduction removed."""
        for name, why in self.plan.left_out.items():
            clear_notebook_outputs(self.out_dir, name)
            (self.executed / name).unlink(missing_ok=True)
            print(f"{name}: not run ({why})", flush=True)
            self.extra_lines.append(f"{name}: not run ({why})")

    def survey(self) -> None:
        """What the run cache holds of the plan's grid."""
        cached = sum(r.state == FINISHED for r in self.plan.runs)
        line = (
            f"run cache at the start: {cached} of the {len(self.plan.runs)} runs of the grid "
            "finished" + (" (empty: every run trained by this command)" if cached == 0 else "")
        )
        self.extra_lines.insert(0, line)
        print(line, flush=True)

    def train(self, clock) -> None:
        """Say what training will cost, then train (within the minutes, if given)."""
        t0 = time.perf_counter()
        budget = DEFAULT_BUDGET_S
        if self.plan.minutes is not None:  # the measurement takes a tenth of a box at most
            budget = min(budget, 6.0 * self.plan.minutes)
        if budget < MIN_MEASURE_S:
            # Too short a box to measure in: runs start in the plan's order and stop at
            # its deadline.
            print(f"a time box of {self.plan.minutes:g} min: no estimate measured", flush=True)
            progress = None
        else:
            progress = _announce(self.plan, len(self.plan.notebooks), budget)
        if progress is not None:
            est = progress.estimate
            self.extra_lines.append(
                f"estimated before the first run: {est.wall_s / 60:.1f} min for "
                f"{len(est.runs)} runs in {est.precision}, {est.jobs} side by side (measured "
                f"here in {est.measured_s:.0f} s; ocdlib/reproduce/estimate.py)"
            )
        if self.plan.minutes is not None:
            self.extra_lines += _timeboxed_training(
                self.plan, self.profile, self.t_all, progress, clock
            )
            what = f"time-boxed training, {self.plan.jobs} side by side"
        else:
            if "07" in self.plan.ids:
                # The TCD probe measures the first TCD and OCD runs at stops along their
                # training, so it trains them before the grid would train them straight
                # through.
                tcd_probe.grid_probe(self.profile, train=True)
                for r in self.plan.to_train():
                    if is_finished(r.config):
                        r.state = FINISHED
            trained = len(execute(self.plan, progress=progress).finished)
            what = f"training {trained} runs, {self.plan.jobs} side by side"
            if not trained:
                return
            print(f"trained {trained} runs in {(time.perf_counter() - t0) / 60:.1f} min")
        self.timings.append((what, time.perf_counter() - t0))

    def run_notebooks(self) -> None:
        self.plan.save(self.plan_file)
        books = list(self.plan.notebooks)
        for i, name in enumerate(books, 1):
            label = f"[{i}/{len(books)}] {name}"
            print(f"{label} (profile {self.profile.name}) ...", flush=True)
            t0 = time.perf_counter()
            rebuilt = self._run_notebook(NOTEBOOK_DIR / name)
            self.pending.remove(name)
            if rebuilt:
                self.timings.append((name, time.perf_counter() - t0))
                print(f"{label} done in {self.timings[-1][1] / 60:.1f} min", flush=True)

    def _run_notebook(self, nb: Path) -> bool:
        """Run one notebook; False where it was left as it was (the reason noted)."""
        missing = self.plan.unavailable(nb.name)
        n_runs = len(self.plan.of_notebook(nb.name))
        if missing and len(missing) == n_runs:
            why = f"none of its {n_runs} runs is trained; its reports stay as they were"
            self.not_rebuilt.append(f"{nb.name}: not rebuilt ({why})")
            print(self.not_rebuilt[-1], flush=True)
            return False
        try:
            _execute(nb, self.running, self.out_dir, self.profile.name, self.plan_file)
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

    def write_provenance(self) -> None:
        """PROVENANCE.md, once, from the plan as the notebooks left it."""
        plan = Plan.load(self.plan_file) if self.plan_file.is_file() else self.plan
        write_provenance(
            self.out_dir,
            plan,
            self.timings,
            time.perf_counter() - self.t_all,
            bool(self.only),
            self.pending,
            extra=[
                f"training runs side by side: {plan.jobs} (--jobs)",
                *self.extra_lines,
                *self.not_rebuilt,
            ],
            name=provenance_name(self.only),
        )


def _execute(nb: Path, running: Path, out_dir: Path, profile: str, plan: Path) -> None:
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
        parameters={"profile": profile, "reports_dir": str(staging), "plan": str(plan)},
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


def _announce(plan: Plan, books: int, budget_s: float = DEFAULT_BUDGET_S, say=print):
    """Say what of the plan will be trained and how long it should take, noting each
    run's estimate in the plan; the Progress that follows it (None when nothing is left
    to train)."""
    todo = plan.to_train()
    if not todo:
        return None
    say(
        f"measuring this machine's step times for the estimate (at most {budget_s:.0f} s) ...",
        flush=True,
    )
    est = estimate_grid(
        [r.config for r in todo], plan.jobs, notebooks=books, finished=finished_seconds(plan),
        budget_s=budget_s,
    )  # fmt: skip
    seconds = {r.name: r.seconds for r in est.runs}
    for r in todo:
        r.estimate_s = seconds.get(r.name)
    finished = sum(r.state == FINISHED for r in plan.runs)
    for line in summary_lines(est, finished, usable_cores()):
        say(line, flush=True)
    return Progress(est, say=say)


def _timeboxed_training(plan: Plan, profile, t_all: float, progress, clock) -> list[str]:
    """Train within the plan's minutes, less what the estimate took and the notebooks'
    share; the provenance lines it leaves. Runs left untrained are missing for the
    notebooks, which train nothing after a time box."""
    from .timebox import reproduce_within

    left = plan.minutes - (time.perf_counter() - t_all) / 60
    train_minutes = left - len(plan.notebooks) * NOTEBOOK_S / 60
    if progress is not None:
        progress.limit_s = 60 * left
    summary = reproduce_within(
        profile, train_minutes, None, plan.jobs, pictures=False, progress=progress,
        clock=clock, plan=plan,
    )  # fmt: skip
    for r in plan.to_train():
        r.state = MISSING
    lines = [
        f"time box: {left:.1f} min left after the estimate, {train_minutes:.1f} of them for "
        f"training; {len(summary['finished'])} runs finished in it"
    ]
    untrained = summary["stopped_past_the_deadline"] + [r["run"] for r in summary["not_started"]]
    if untrained:
        lines.append(f"not trained in the time box: {', '.join(untrained)}")
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
