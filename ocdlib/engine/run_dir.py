"""One run directory: its files, named once, and how they are read back.

A run directory holds config.json (the config it trains), log.csv (every loss term per
step), evals.json (the evaluations along the way and the final one), checkpoint.pt (each
epoch; once finished, the weights only), student.pt (the deployed model) and result.json
(written last: a run with one is finished). Every module that reads or writes one of
them names it through `RunDir`. This module also reads a run back (its config, result
and model), takes the directory's lock while a process writes it, and records where a
run came from. Which directory a config trains into (the run cache) is decided above
the engine, in `ocdlib.runs.cache`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..configs import Config
from ..data.layout import load_layout
from ..errors import MissingFileError, RunLockedError
from ..models import build_model, export_student
from ..models.complexity import measure_latency_ms
from ..paths import REPO_ROOT
from .checkpoint import load_checkpoint

CONFIG, RESULT, EVALS, LOG = "config.json", "result.json", "evals.json", "log.csv"
CHECKPOINT, STUDENT = "checkpoint.pt", "student.pt"


def _file(name: str) -> property:
    return property(lambda run: run.path / name, doc=f"the run's {name}")


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    config, result, evals = _file(CONFIG), _file(RESULT), _file(EVALS)
    log, checkpoint, student = _file(LOG), _file(CHECKPOINT), _file(STUDENT)

    def is_finished(self) -> bool:
        return self.result.is_file()


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def command_line() -> str:
    """This process's command, as a user would type it (a run records the command its
    caller names instead, where there is one: `train(..., command=)`)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith("ocdlib/__main__.py"):
        argv = ["python", "-m", "ocdlib", *argv[1:]]
    return " ".join(shlex.quote(a) for a in argv)


def run_metadata(cfg: Config, command: str | None = None) -> dict:
    return {
        "name": cfg.name,
        "config_hash": cfg.hash,
        "seed": cfg.train.seed,
        "git_commit": git_commit(),
        "command": command or command_line(),
        "torch": torch.__version__,
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def has_weights(directory: Path) -> bool:
    """Whether a finished run's folder holds its weights (a run record does not)."""
    return RunDir(Path(directory)).student.is_file()


def read_result(directory: Path) -> dict | None:
    """A finished run's result.json (None while it is unfinished: `RunDir.is_finished`)."""
    run = RunDir(Path(directory))
    if not run.is_finished():
        return None
    return json.loads(run.result.read_text())


# Locks this process holds: path -> depth. flock is per open file, so a nested
# request (get_run's lock, then train's) must not open the file a second time.
_HELD: dict[tuple[Path, int], int] = {}  # (lock file, thread) -> depth


def lock_path(directory: Path) -> Path:
    """Beside the run, not in it: a run directory copied elsewhere carries no stale lock."""
    return Path(directory).parent / ".locks" / f"{Path(directory).name}.lock"


@contextlib.contextmanager
def run_lock(directory: Path, wait: bool = True, what: str = "") -> Iterator[None]:
    """An exclusive lock on one run directory, held while a process writes it.

    Notebooks run side by side (nbval under pytest-xdist, two JupyterLab tabs)
    and share the run cache: they wait (`wait=True`) and then read what the
    first one wrote. A command a user starts (`train`, `eval` into the run)
    does not wait: with `wait=False` a second writer gets a RunLockedError
    naming the holder (pid, host, start time, command). The lock is released
    when the holder exits, however it exits. Re-entrant within a thread; another
    thread of the same process waits like another process (flock locks are per open
    file, and each holder opens its own).
    """
    path = lock_path(directory).resolve()
    key = (path, threading.get_ident())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): run unguarded
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:  # "a+": never truncate what the holder wrote
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise RunLockedError(
                f"{directory} is being written by another process ({_holder(path)}); wait "
                f"for it to finish, or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": what or command_line(),
        }
        handle.write(json.dumps(holder))
        handle.flush()
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder(path: Path) -> str:
    # The holder writes its record just after taking the lock: allow it a moment.
    for _ in range(20):
        try:
            h = json.loads(path.read_text())
            return f"pid {h['pid']} on {h['host']}, started {h['started']}: {h['command']}"
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    return f"its record in {path} is unreadable"


def load_run_config(directory: Path) -> Config:
    directory = Path(directory)
    path = RunDir(directory).config
    if not path.is_file():
        raise MissingFileError(
            f"{directory} is not a run directory (no config.json); pass the folder that "
            "'python -m ocdlib train' wrote (runs/<name>-<hash>-s<seed>)"
        )
    return Config.from_dict(json.loads(path.read_text()))


def load_run_model(directory: Path, student: bool = False, weights: bool = True):
    """Rebuild a run's model (all heads, or only the deployed student) with its trained weights
    (`weights` False: the same architecture freshly initialised, which is all a run record,
    without weights, can rebuild; enough to time it).

    Returns the model and the run's config; the run's keypoint layout is
    `load_layout(directory, cfg.data)`."""
    directory = Path(directory)
    cfg = load_run_config(directory)
    info = load_layout(directory, cfg.data)
    # Every weight comes from the run's checkpoint: the backbone it started from is not read
    # (a run from a kit pre-training loads where those weights are not committed).
    arch = replace(cfg.model, pretrained="none")
    model = build_model(arch, info.num_keypoints, cfg.data.input_size, cfg.data.heatmap_size)
    if student:
        model = export_student(model, cfg.model.deploy_head)
    if weights:
        run = RunDir(directory)
        ckpt = load_checkpoint(run.student if student else run.checkpoint, cfg.hash)
        model.load_state_dict(ckpt["model"])
    return model.eval(), cfg


def student_latency_ms(
    directory: Path, repeats: int = 20, warmup: int = 5, threads: int | None = 1
) -> float:
    """Median CPU milliseconds of one forward pass of a run's deployed student at batch 1.

    Measured on this machine now, with `threads` torch threads (None: leave the current
    setting), so report it with the machine beside it. The time depends on the architecture
    only, so a run record (no weights) is timed on its architecture freshly built."""
    model, cfg = load_run_model(directory, student=True, weights=has_weights(directory))
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return measure_latency_ms(
            model.cpu(), cfg.data.input_size, batch_size=1, warmup=warmup, runs=repeats
        )
    finally:
        torch.set_num_threads(before)
