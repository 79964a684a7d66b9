"""Reproduce a profile: train the grid's missing runs side by side, then run the notebooks
in order with papermill, writing executed copies and results to reports/.

The engine trains one run; the run cache (ocdlib/run_cache.py) says where; this module
decides what to run and when (the scheduler below).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import platform
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from . import tcd_probe
from .configs import Config
from .data.prepare import resolve_data
from .engine.cores import cpu_model, default_jobs, usable_cores, with_share_of_cores
from .engine.runs import command_line, git_commit, load_run_config, read_result
from .errors import ConfigError
from .estimate import (
    NOTEBOOK_S,
    START_UP_S,
    Progress,
    estimate_grid,
    same_run_key,
    summary_lines,
)
from .experiments import Experiment, grid_configs, notebook_left_out
from .paths import REPO_ROOT, report_dir, runs_home
from .profiles import NotebookProfile, notebook_profile
from .reporting import clear_notebook_outputs
from .run_cache import finished_result, get_run, is_finished, run_dir
from .run_records import find_record, records_home, write_record

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def notebooks(only: list[str] | None = None) -> list[Path]:
    books = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        books = [b for b in books if any(b.name.startswith(p) for p in only)]
        if not books:
            raise ConfigError(f"--only {only}: no notebook in {NOTEBOOK_DIR} starts with that")
    return books


def reproduce(
    profile: str = "cpu",
    only: list[str] | None = None,
    jobs: int | None = None,
    train_missing: bool = True,
    minutes: float | None = None,
    clock=time.time,
) -> int:
    """Train the grid's missing runs `jobs` at a time, then run the notebooks in order.

    It first says how many runs it will train and how long it expects to take on this
    machine (ocdlib/estimate.py), then prints a progress line with an ETA as each run
    ends. With `minutes`, the whole command keeps within them: the key comparisons train
    first (the time box of ocdlib/timeboxed.py, which the GPU allocations use), runs that
    cannot finish in time are not started, and the notebooks report on what finished,
    naming the rows that did not.

    The notebooks read every run from the cache; training first, side by side, is what
    uses all the cores (small CPU models scale poorly over threads). With
    `train_missing` False nothing is trained: the notebooks report on the finished runs
    and name the missing ones (OCDLIB_TRAIN_MISSING=0 in their environment)."""
    record = notebook_profile(profile)  # an unknown profile stops here, with the choices
    books = notebooks(only)  # and so does an --only that names no notebook
    out_dir = report_dir(profile)
    executed = out_dir / "notebooks"
    # papermill writes a notebook as it runs; it lands in reports/ only once it has
    # finished, so an interrupted or failed notebook never passes for a result.
    running = executed / ".running"
    running.mkdir(parents=True, exist_ok=True)
    # A notebook none of whose own rows runs on this profile (04 on cpu: its rows are in
    # the full grid) is skipped, and its outputs from an earlier reproduction removed.
    left_out = {b.name: why for b in books if (why := notebook_left_out(b.name[:2], record))}
    for name, why in left_out.items():
        clear_notebook_outputs(out_dir, name)
        (executed / name).unlink(missing_ok=True)
        print(f"{name}: not run ({why})", flush=True)
    books = [b for b in books if b.name not in left_out]
    extra_lines = [f"{name}: not run ({why})" for name, why in left_out.items()]
    jobs = jobs or default_jobs()
    t_all = time.perf_counter()
    timings = []
    # Runs that the notebooks train record this command as the one that made them,
    # and the watcher prints a line as each starts, reaches an epoch and finishes.
    with (
        _env("OCDLIB_COMMAND", _reproduce_command(profile, only, train_missing, minutes)),
        _env("OCDLIB_TRAIN_MISSING", "1" if train_missing and minutes is None else "0"),
        # A time-boxed reproduction reports on what this machine trained, not on records.
        _env("OCDLIB_USE_RECORDS", "0" if minutes is not None else "1"),
        RunWatcher(runs_home(), record),
    ):
        t0 = time.perf_counter()
        grid = grid_configs(record, [b.name[:2] for b in books])
        cached = sum(is_finished(c) for _, c in grid)
        cache_state = (
            f"run cache at the start: {cached} of the {len(grid)} runs of the grid finished"
            + (" (empty: every run trained by this command)" if cached == 0 else "")
        )
        print(cache_state, flush=True)
        ids = [b.name[:2] for b in books]
        progress = _announce(record, ids, jobs, len(books)) if train_missing else None
        if progress is not None:
            est = progress.estimate
            extra_lines.append(
                f"estimated before the first run: {est.wall_s / 60:.1f} min for "
                f"{len(est.runs)} runs in {est.precision}, {est.jobs} side by side (measured "
                f"here in {est.measured_s:.0f} s; ocdlib/estimate.py)"
            )
        if minutes is not None and train_missing:
            left = minutes - (time.perf_counter() - t_all) / 60  # the estimate took some
            extra_lines += _timeboxed_training(record, ids, jobs, left, len(books), progress, clock)
            timings.append((f"time-boxed training, {jobs} side by side", time.perf_counter() - t0))
            train_missing = False  # the notebooks report on what finished
        if train_missing and any(b.name.startswith("07") for b in books):
            # The TCD probe measures the first TCD and OCD runs at stops along their
            # training, so it trains them before the grid would train them straight through.
            tcd_probe.grid_probe(record)
        trained = train_grid(record, ids, jobs, progress=progress) if train_missing else 0
        if trained:
            timings.append(
                (f"training {trained} runs, {jobs} side by side", time.perf_counter() - t0)
            )
            print(f"trained {trained} runs in {timings[-1][1] / 60:.1f} min", flush=True)
        not_rebuilt: list[str] = []
        for i, nb in enumerate(books, 1):
            print(f"[{i}/{len(books)}] {nb.name} (profile {profile}) ...", flush=True)
            t0 = time.perf_counter()
            missing = [] if train_missing else _unavailable(record, nb.name)
            n_runs = len(grid_configs(record, [nb.name[:2]]))
            if missing and len(missing) == n_runs:
                why = f"none of its {n_runs} runs is trained; its reports stay as they were"
                not_rebuilt.append(f"{nb.name}: not rebuilt ({why})")
                print(not_rebuilt[-1], flush=True)
                continue
            try:
                _execute(nb, running, out_dir, profile)
            except Exception as err:
                if not missing:
                    print(f"{nb.name} did not finish; its partial output is {running / nb.name}")
                    raise
                # A notebook built for its whole grid may not rebuild from part of it; the
                # reports it wrote from an earlier, fuller run are kept rather than lost.
                why = (
                    f"{len(missing)} of its {n_runs} runs not trained, and it stopped on "
                    f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:160]}; "
                    f"its reports stay as they were (partial output: {running / nb.name})"
                )
                not_rebuilt.append(f"{nb.name}: not rebuilt ({why})")
                print(not_rebuilt[-1], flush=True)
                continue
            dt = time.perf_counter() - t0
            timings.append((nb.name, dt))
            print(f"[{i}/{len(books)}] {nb.name} done in {dt / 60:.1f} min", flush=True)
            # Written after every notebook, so an interrupted reproduction says how far it got.
            pending = [b.name for b in books[i:]]
            write_provenance(
                out_dir,
                profile,
                timings,
                time.perf_counter() - t_all,
                bool(only),
                pending,
                extra=[
                    cache_state,
                    f"training runs side by side: {jobs} (--jobs)",
                    *extra_lines,
                    *not_rebuilt,
                ],
                name=provenance_name(only),
            )
    total = time.perf_counter() - t_all
    if not_rebuilt:  # the provenance names the notebooks left as they were
        write_provenance(
            out_dir,
            profile,
            timings,
            total,
            bool(only),
            [],
            extra=[
                cache_state,
                f"training runs side by side: {jobs} (--jobs)",
                *extra_lines,
                *not_rebuilt,
            ],
            name=provenance_name(only),
        )
    print(f"all done in {total / 60:.1f} min; reports in {out_dir}")
    for line in not_rebuilt:
        print(line)
    return 0


def _unavailable(record: NotebookProfile, notebook: str) -> list[str]:
    """The runs notebook `notebook` gathers that neither the run cache nor a committed
    record holds (what `reproduce --no-train` cannot show), as run folder names."""
    return [
        run_dir(cfg).name
        for _, cfg in grid_configs(record, [notebook[:2]])
        if not is_finished(cfg) and find_record(cfg) is None
    ]


def _execute(nb: Path, running: Path, out_dir: Path, profile: str) -> None:
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
        parameters={"profile": profile, "reports_dir": str(staging)},
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


# ----------------------------------------------------------------------------- the scheduler


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
    profile: str | NotebookProfile,
    notebooks: list[str] | None = None,
    jobs: int | None = None,
    out=print,
    progress: Progress | None = None,
) -> int:
    """Train every missing run of the grid, `jobs` at a time, before the notebooks read them.

    Each run is one process holding its run's lock, so the notebooks (or a second
    `reproduce`) wait for a run in progress instead of training it again. TCD rows
    start once their teacher has finished. Returns the number of runs trained."""
    profile = notebook_profile(profile)
    jobs = jobs or default_jobs()
    todo = [(e, c) for e, c in grid_configs(profile, notebooks) if not is_finished(c)]
    if not todo:
        return 0
    todo = training_order(todo)
    out(f"training {len(todo)} runs of the {profile.name} grid, {jobs} at a time", flush=True)
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
                raise RuntimeError(
                    "runs wait for teachers that are not in the grid: "
                    + ", ".join(c.loss.teacher_run for _, c in waiting)
                )
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                exp, cfg = pending.pop(fut)
                done.add(fut.result())  # a failed run stops the reproduction with its error
                if progress is not None:
                    progress.ended(run_dir(cfg).name)
    return len(todo)


def _announce(record: NotebookProfile, ids: list[str], jobs: int, books: int, say=print):
    """Say what will be trained and how long it should take; the Progress that follows it
    (None when nothing is left to train)."""
    grid = grid_configs(record, ids)
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


def finished_seconds(grid) -> dict[str, float]:
    """{same_run_key: seconds} of the grid's runs finished in this machine's run cache:
    what the next seed of the same row will take here."""
    out = {}
    for _, cfg in grid:
        result = read_result(run_dir(cfg)) if is_finished(cfg) else None
        if result and result.get("train_time_s"):
            out[same_run_key(cfg)] = START_UP_S + float(result["train_time_s"])
    return out


def _timeboxed_training(record, ids, jobs, minutes, books, progress, clock) -> list[str]:
    """Train within `minutes`, less the notebooks' share; the provenance lines it leaves."""
    from .timeboxed import reproduce_within

    train_minutes = minutes - books * NOTEBOOK_S / 60
    if progress is not None:
        progress.limit_s = 60 * minutes
    estimates = {r.name: r.seconds for r in progress.estimate.runs} if progress else {}
    summary = reproduce_within(
        record, train_minutes, None, jobs, pictures=False, estimates=estimates,
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


# ----------------------------------------------------------------------------- records


def write_profile_records(profile, dest_root: Path | None = None, out=print) -> list[Path]:
    """The records of every finished run of `profile`'s grid (and its TCD probe tables),
    written to `dest_root` (default reports/<profile>/runs/); returns the folders."""
    record = notebook_profile(profile)
    dest_root = Path(dest_root or records_home(report_dir(record.name)))
    written, missing = [], []
    for _, cfg in grid_configs(record):
        directory = run_dir(cfg)
        if finished_result(directory, cfg) is None:
            missing.append(directory.name)
            continue
        written.append(write_record(directory, dest_root))
    probes = runs_home() / "probes"
    if probes.is_dir():
        (dest_root / "probes").mkdir(parents=True, exist_ok=True)
        for table in sorted(probes.glob("*.csv")):
            shutil.copyfile(table, dest_root / "probes" / table.name)
    out(f"{len(written)} run records in {dest_root}; {len(missing)} runs of the grid not finished")
    return written


# ----------------------------------------------------------------------------- provenance


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


class RunWatcher:
    """Progress lines for the training runs that the notebooks start.

    A notebook run through papermill shows nothing until it ends, and one can
    train for half an hour. This polls the run cache from a background thread
    and prints a line when a run of `profile` starts, reaches a new epoch, or
    finishes (with its AP). Runs finished before the watcher started are quiet.
    """

    def __init__(
        self, runs_dir: Path, profile: str | NotebookProfile, interval: float = 15.0, out=print
    ):
        self.runs_dir = Path(runs_dir)
        self.profile = profile
        # Runs are named after their config base (cpu_full trains cpu_* configs).
        prof = notebook_profile(profile)
        self._prefixes = (f"{prof.body}_", f"{prof.wholebody}_")
        self.interval = interval
        self.out = out
        self._seen: dict[str, str] = {}  # run name -> last state reported
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for d in self._run_dirs():
            if (d / "result.json").is_file():
                self._seen[d.name] = "done"

    def _run_dirs(self) -> list[Path]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(
            p for p in self.runs_dir.iterdir() if p.is_dir() and p.name.startswith(self._prefixes)
        )

    def poll(self) -> list[str]:
        """The progress lines since the last poll (also usable without the thread)."""
        lines = []
        for d in self._run_dirs():
            if self._seen.get(d.name) == "done":  # finished runs never change again
                continue
            state, line = _run_state(d)
            if state is None or self._seen.get(d.name) == state:
                continue
            self._seen[d.name] = state
            lines.append(f"    {d.name}: {line}")
        return lines

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for line in self.poll():
                self.out(line, flush=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="run-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for line in self.poll():
            self.out(line, flush=True)

    def __enter__(self) -> RunWatcher:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _run_state(run_dir: Path) -> tuple[str | None, str]:
    """(state key, progress line) of a run directory; (None, "") while it has no record yet.

    Read defensively: the files are being written by the training process."""
    try:
        r = read_result(run_dir)
        if r is not None:
            ap = r.get("metrics", {}).get("AP")
            minutes = r.get("train_time_s", 0.0) / 60
            ap_text = f"AP {100 * ap:.1f}" if isinstance(ap, (int, float)) else "no AP"
            return "done", f"finished, {ap_text}, trained in {minutes:.1f} min"
        epochs = load_run_config(run_dir).train.epochs
        epoch, epoch_s = _last_logged_epoch(run_dir / "log.csv")
        if epoch is None:
            return "started", f"training, {epochs} epochs"
        line = f"epoch {epoch}/{epochs}"
        if epoch_s is not None and epoch < epochs:
            line += f", about {(epochs - epoch + 1) * epoch_s / 60:.0f} min of training left"
        return f"epoch {epoch}", line
    except (OSError, ValueError, KeyError, TypeError):
        return None, ""


def _last_logged_epoch(log: Path) -> tuple[int | None, float | None]:
    """The epoch of the last full line of a log.csv (step,epoch,...,time), and the
    seconds the epoch before it took (its last line's `time`), where the tail shows it."""
    if not log.is_file():
        return None, None
    with open(log, "rb") as f:
        header = f.readline().decode("utf-8", "replace").strip().split(",")
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 65536))
        lines = f.read().decode("utf-8", "replace").splitlines()[1:]  # header or a part line
    time_col = header.index("time") if "time" in header else None
    current = None
    for line in reversed(lines):
        fields = line.split(",")
        if len(fields) < 3 or not fields[1].isdigit():
            continue
        if current is None:
            current = int(fields[1])
        elif int(fields[1]) < current:  # the last step of the epoch before
            try:
                return current, float(fields[time_col]) if time_col is not None else None
            except (IndexError, ValueError):
                return current, None
    return current, None


def provenance_name(only: list[str] | None) -> str:
    """PROVENANCE.md for a whole reproduction; a partial one (--only) writes its own file
    beside it, so that the record of the whole one stays."""
    return f"PROVENANCE-only-{'-'.join(only)}.md" if only else "PROVENANCE.md"


def write_provenance(
    out_dir: Path,
    profile: str,
    timings,
    total: float,
    partial: bool,
    pending=(),
    extra=(),
    name: str = "PROVENANCE.md",
) -> None:
    try:
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        threads = torch.get_num_threads()
    except Exception:  # provenance must never fail a reproduction
        device, threads = "unknown", 0
    cpu = cpu_model()
    lines = [
        f"# Reproduction provenance ({profile} profile)",
        "",
        f"- command: `{command_line()}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- git commit: {git_commit()}",
        f"- machine: {cpu}, {_cores()}, torch threads {threads}, device {device}",
        f"- python: {platform.python_version()}",
        f"- total wall time: {total / 60:.1f} min" + (" (partial: --only)" if partial else ""),
        *([f"- not run yet (interrupted or running): {', '.join(pending)}"] if pending else []),
        "- runs found in the run cache are reused, so this time counts only the training done by"
        " this command; each run's own training time is in results.csv (train_time_min)",
        f"- {grid_training_time(profile)}",
        *[f"- {line}" for line in extra],
        "",
        "| step | wall time (min) |",
        "|---|---|",
        *[f"| {name} | {dt / 60:.1f} |" for name, dt in timings],
        "",
    ]
    (out_dir / name).write_text("\n".join(lines))


def grid_training_time(profile: str) -> str:
    """One line: how many runs of the profile's grid (the runs `reproduce` trains) are
    finished and how long their training loops took in all, from the runs' own records
    (the cost of a reproduction from an empty run cache, less evaluation and notebook
    overhead)."""
    try:
        grid = grid_configs(profile)
        results = [read_result(run_dir(cfg)) for _, cfg in grid]
        done = [r for r in results if r is not None]
        seconds = sum(float(r.get("train_time_s") or 0.0) for r in done)
    except Exception as e:  # provenance must never fail a reproduction
        return f"training time of the grid: unknown ({type(e).__name__}: {e})"
    return (
        f"training time of the grid's runs, from their own records: {seconds / 60:.0f} min "
        f"for {len(done)} of the {len(grid)} runs of the grid (the training loops only; "
        "evaluation and notebook overhead come on top)"
    )


def _cores() -> str:
    usable, total = usable_cores(), os.cpu_count() or 0
    return f"{usable} cores" if usable == total else f"{usable} usable cores (of {total})"
