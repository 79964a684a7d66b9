"""Progress lines for the runs that the notebooks train: papermill shows nothing until a
notebook ends."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..engine.run_dir import RunDir, load_run_config, read_result
from ..profiles import NotebookProfile


class RunWatcher:
    """Progress lines for the training runs that the notebooks start.

    A notebook run through papermill shows nothing until it ends, and one can
    train for half an hour. This polls the run cache from a background thread
    and prints a line when a run of `profile` starts, reaches a new epoch, or
    finishes (with its AP). Runs finished before the watcher started are quiet.
    """

    def __init__(self, runs_dir: Path, profile: NotebookProfile, interval: float = 15.0, out=print):
        self.runs_dir = Path(runs_dir)
        self.profile = profile
        # Runs are named after their config base (cpu_full trains cpu_* configs).
        self._prefixes = (f"{profile.body}_", f"{profile.wholebody}_")
        self.interval = interval
        self.out = out
        self._seen: dict[str, str] = {}  # run name -> last state reported
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Runs left as they were before it started (finished, or stopped and not resumed)
        # are quiet until their log moves.
        self._idle: dict[str, float] = {}
        for d in self._run_dirs():
            if RunDir(d).is_finished():
                self._seen[d.name] = "done"
            else:
                self._idle[d.name] = _log_mtime(d)

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
            if d.name in self._idle:
                if _log_mtime(d) == self._idle[d.name]:
                    continue
                del self._idle[d.name]  # resumed
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


def _log_mtime(run_dir: Path) -> float:
    try:
        return RunDir(run_dir).log.stat().st_mtime
    except OSError:
        return 0.0


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
        epoch, epoch_s = _last_logged_epoch(RunDir(run_dir).log)
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
