"""The one progress reporter of a command that trains runs (`reproduce`, its time box,
`records --train`): a line as each run starts, as it reaches an epoch, and as it ends,
then where the whole command stands: runs ended of the total, time elapsed and, with an
estimate (ocdlib/reproduce/estimate.py), the ETA.

The runs train in other processes (side by side) or quietly in this one, so their
epochs are read from their logs (log.csv) by a thread that polls the folders of the
runs in progress every `interval` seconds.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ..engine.run_dir import RunDir, load_run_config, read_result
from .estimate import NOTEBOOK_S, GridEstimate, as_minutes, run_steps, schedule


class Progress:
    """Where a command's training stands (see the module's docstring). Without an
    estimate it counts runs and minutes, with no ETA; `total` is then the runs to train."""

    def __init__(
        self,
        estimate: GridEstimate | None = None,
        say=print,
        clock=time.monotonic,
        total: int | None = None,
        interval: float = 15.0,
    ):
        self.estimate, self.say, self.clock, self.interval = estimate, say, clock, interval
        self.t0 = clock()
        self._total = total
        self.ended_runs: list[str] = []
        self.done: dict[str, float] = {}  # run name -> estimated seconds of the ended
        self.actual: dict[str, float] = {}
        self._started: dict[str, float] = {}
        self._left: dict[str, float] = {}  # run name -> share of it left when it started
        self._folders: dict[str, Path] = {}  # runs in progress whose logs are polled
        self._seen: dict[str, str] = {}  # run name -> the state last said
        self._lock = threading.Lock()
        self.limit_s: float | None = None  # a time box: the seconds the command is given

    @property
    def total(self) -> int:
        if self.estimate is not None:
            return len(self.estimate.runs)
        return self._total or 0

    def started(self, name: str, folder: str | Path | None = None, what: str = "") -> None:
        """Run `name` started (training in `folder`): say so, and poll its log."""
        with self._lock:
            self._started[name] = self.clock()
            if folder is not None:
                self._folders[name] = Path(folder)
                self._left[name] = 1.0 - done_share(Path(folder))
        if what or folder is not None:
            self.say(f"start {name}" + (f" ({what})" if what else ""), flush=True)

    def ended(self, name: str, line: str | None = None) -> str:
        """Run `name` ended (finished, or stopped): say `line` (how it ended), then where
        the command stands; return that."""
        now = self.clock()
        with self._lock:
            self._folders.pop(name, None)
        self.ended_runs.append(name)
        by_name = {r.name: r for r in self.estimate.runs} if self.estimate else {}
        if name in by_name:
            self.done[name] = by_name[name].seconds * self._left.get(name, 1.0)
            self.actual[name] = now - self._started.get(name, self.t0)
        if line:
            self.say(line, flush=True)
        status = self.line()
        if name in self.actual:
            status += (
                f"; {name} took {as_minutes(self.actual[name])}"
                f" (estimated {as_minutes(self.done[name])})"
            )
        self.say(status, flush=True)
        return status

    def scale(self) -> float:
        """Actual over estimated seconds of the ended runs (1 before any)."""
        est = sum(self.done.values())
        return sum(self.actual.values()) / est if est > 0 else 1.0

    def eta_s(self) -> float | None:
        """Seconds until the command ends, notebooks included (None without an estimate):
        the runs in progress hold their slots for what is left of their (scaled)
        estimate, then the waiting runs follow in order."""
        if self.estimate is None:
            return None
        scale, now = self.scale(), self.clock()
        running, waiting = [], []
        for r in self.estimate.runs:
            if r.name in self.done:
                continue
            if r.name in self._started:
                left = r.seconds * self._left.get(r.name, 1.0) * scale
                running.append(max(0.0, left - (now - self._started[r.name])))
            else:
                waiting.append(r.seconds * scale)
        eta = schedule(running + waiting, self.estimate.jobs) + self.estimate.notebooks * NOTEBOOK_S
        if self.limit_s is not None:  # a time box ends it sooner
            eta = min(eta, max(0.0, self.t0 + self.limit_s - now))
        return eta

    def line(self) -> str:
        elapsed = self.clock() - self.t0
        line = f"[{len(self.ended_runs)}/{self.total} runs] {as_minutes(elapsed)} elapsed"
        eta = self.eta_s()
        if eta is not None:
            at = time.strftime("%H:%M", time.localtime(time.time() + eta))
            line += f", about {as_minutes(eta)} left (ETA {at})"
        return line

    def poll(self) -> list[str]:
        """Say (and return) a line for each run in progress whose log shows a new epoch
        since the last poll. Files being written are read defensively: never raises."""
        with self._lock:
            folders = dict(self._folders)
        lines = []
        for name, folder in folders.items():
            state, text = run_state(folder)
            if state is None or state == "done" or self._seen.get(name) == state:
                continue  # a finished run is said by `ended`
            self._seen[name] = state
            lines.append(f"    {name}: {text}")
        for line in lines:
            self.say(line, flush=True)
        return lines

    @contextmanager
    def watching(self):
        """Poll the runs in progress from a background thread while the block runs."""
        stop = threading.Event()

        def loop():
            while not stop.wait(self.interval):
                self.poll()

        thread = threading.Thread(target=loop, name="progress", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=5)


def done_share(run_dir: Path) -> float:
    """The share of its steps a run had logged when it started: 0 for a new run, more for
    one resumed (its estimate counts what is left, so that the ETA's scale stays true)."""
    try:
        total = run_steps(load_run_config(run_dir))
        step = _last_logged_step(RunDir(run_dir).log)
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0
    return min(1.0, step / total) if step and total else 0.0


def _last_logged_step(log: Path) -> int | None:
    """The step of the last full line of a log.csv, or None."""
    if not log.is_file():
        return None
    _, lines = _log_tail(log)
    for line in reversed(lines):
        fields = line.split(",")
        if len(fields) >= 3 and fields[0].isdigit() and fields[1].isdigit():
            return int(fields[0])
    return None


def run_state(run_dir: Path) -> tuple[str | None, str]:
    """(state key, line) of a run folder: "started", "epoch N" or "done"; (None, "")
    while it has no config yet or a file cannot be read (it is being written)."""
    try:
        r = read_result(run_dir)
        if r is not None:
            ap = r.get("metrics", {}).get("AP")
            minutes = r.get("train_time_s", 0.0) / 60
            ap_text = f"AP {100 * ap:.1f}" if isinstance(ap, (int, float)) else "no AP"
            return "done", f"finished, {ap_text}, trained in {minutes:.1f} min"
        epochs = load_run_config(run_dir).train.epochs
        epoch, left_s = _log_progress(RunDir(run_dir).log, epochs)
        if epoch is None:
            return "started", f"training, {epochs} epochs"
        line = f"epoch {epoch}/{epochs}"
        if left_s is not None and epoch < epochs:
            line += f", about {left_s / 60:.0f} min of training left"
        return f"epoch {epoch}", line
    except (OSError, ValueError, KeyError, TypeError):
        return None, ""


def _log_progress(log: Path, epochs: int) -> tuple[int | None, float | None]:
    """The epoch of the last full line of a log.csv (step,epoch,...,time) and the seconds
    of training left, where the tail shows them.

    `time` counts the seconds since its epoch began, or since the run resumed mid-epoch,
    so one line's time is not an epoch's length. The pace is taken from consecutive lines
    of one epoch instead (seconds over steps between them), and the steps per epoch from
    the last step of a finished epoch (steps count on across epochs and resumes)."""
    if not log.is_file():
        return None, None
    header, lines = _log_tail(log)
    time_col = header.index("time") if "time" in header else None
    rows = []
    for line in lines:
        fields = line.split(",")
        if len(fields) < 3 or not fields[0].isdigit() or not fields[1].isdigit():
            continue
        try:
            t = float(fields[time_col]) if time_col is not None else None
        except (IndexError, ValueError):
            t = None
        rows.append((int(fields[0]), int(fields[1]), t))
    if not rows:
        return None, None
    step, epoch, _ = rows[-1]
    per_epoch = next((s // e for s, e, _ in reversed(rows[:-1]) if e < epoch), None)
    seconds = steps = 0.0
    for (s0, e0, t0), (s1, e1, t1) in zip(rows, rows[1:]):
        if e0 == e1 and s1 > s0 and t0 is not None and t1 is not None and t1 >= t0:
            seconds += t1 - t0
            steps += s1 - s0
    if per_epoch is None or not steps:
        return epoch, None
    return epoch, max(0, epochs * per_epoch - step) * seconds / steps


def _log_tail(log: Path, size: int = 65536) -> tuple[list[str], list[str]]:
    """A log.csv's header fields and the full lines of its last `size` bytes (the first
    line read, the header or a part line, dropped)."""
    with open(log, "rb") as f:
        header = f.readline().decode("utf-8", "replace").strip().split(",")
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - size))
        return header, f.read().decode("utf-8", "replace").splitlines()[1:]
