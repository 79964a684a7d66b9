"""The run cache: which folder a config trains into, and its finished result.

A config trains into runs/<name>-<hash>-s<seed>-<precision>, where <precision> is
what this machine grants `train.amp` ("bf16" or "fp32", ocdlib/engine/precision.py):
the same config trained in bf16 and in fp32 are two runs, kept side by side, and
one is never served as the answer to a request that this machine trains in the
other. Runs trained before the precision was part of the folder name live in
runs/<name>-<hash>-s<seed>; they are found there when their own record (result.json)
says they trained in the precision asked for, so no finished run is orphaned.

`get_run` reads a finished run back, resumes an interrupted one and trains a
missing one. The engine (ocdlib/engine) trains and scores one run wherever it is
told; the grid (ocdlib/grid/) and `train` ask this module where.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

from ..configs import Config
from ..engine.distributed import resolve_device
from ..engine.precision import Precision, resolve_precision, tag_of_record
from ..engine.run_dir import read_result, run_lock
from ..engine.trainer import train
from ..paths import runs_home

PRECISIONS = ("bf16", "fp32")


@functools.cache
def _granted(amp: bool, device: str) -> Precision:
    return resolve_precision(amp, resolve_device(device))


def run_precision(cfg: Config, device: str | None = None) -> Precision:
    """The precision this machine trains `cfg` in (on `device`, default `train.device`):
    resolved once here and handed to the engine, which trains the run in it."""
    return _granted(cfg.train.amp, str(device or cfg.train.device))


def granted_precision(cfg: Config) -> str:
    """The precision this machine trains `cfg` in, as its tag: "bf16" or "fp32"."""
    return run_precision(cfg).tag


def legacy_dir(cfg: Config, root: Path | None = None) -> Path:
    """runs/<name>-<hash>-s<seed>: the folder of a run trained before the precision was
    part of the name."""
    return Path(root or runs_home()) / f"{cfg.name}-{cfg.hash}-s{cfg.train.seed}"


def finished_result(directory: Path, cfg: Config) -> dict | None:
    """The result.json of a finished run of `cfg` in `directory`, or None (no run, an
    unfinished one, or a run of another config)."""
    result = read_result(directory)
    if result is None or result.get("config_hash") != cfg.hash:
        return None
    return result


def run_dir(cfg: Config, root: Path | None = None, precision: str | None = None) -> Path:
    """Where `cfg` trains in `precision` (default: what this machine grants)."""
    precision = precision or granted_precision(cfg)
    legacy = legacy_dir(cfg, root)
    result = finished_result(legacy, cfg)
    if result is not None and tag_of_record(result) == precision:
        return legacy
    return legacy.with_name(f"{legacy.name}-{precision}")


def is_finished(cfg: Config, root: Path | None = None) -> bool:
    """True when the cache holds a finished run of `cfg` in this machine's precision."""
    return finished_result(run_dir(cfg, root), cfg) is not None


def other_precision_runs(cfg: Config, root: Path | None = None) -> dict[str, Path]:
    """{precision: folder} of the finished runs of `cfg` in a precision other than the one
    this machine grants."""
    granted = granted_precision(cfg)
    out = {}
    for tag in PRECISIONS:
        if tag == granted:
            continue
        directory = run_dir(cfg, root, precision=tag)
        if finished_result(directory, cfg) is not None:
            out[tag] = directory
    return out


def get_run(
    cfg: Config,
    root: Path | None = None,
    progress: bool = True,
    out=None,
    deadline: float | None = None,
    clock=time.time,
    command: str | None = None,
) -> dict:
    """The finished result of `cfg` in this machine's precision: read from the cache,
    resumed, or trained now (`command`: the command line a run trained now records,
    default this process's).

    Under the run's lock, so that notebooks side by side (nbval, two JupyterLab tabs)
    wait for a run in progress and then read it instead of training it twice. A run of
    the same config in the other precision is not reused: this says so, and trains
    the run in this machine's precision beside it. With a `deadline` a run that would end
    past it stops early (see `train`) and the result says {"past_deadline": True}."""
    directory = run_dir(cfg, root)
    with run_lock(directory):
        # Read under the lock: another process may have just finished this run.
        result = finished_result(directory, cfg)
        if result is None:
            for tag, other in other_precision_runs(cfg, root).items():
                print(
                    f"{directory.name}: the run cache holds this config trained in {tag} "
                    f"({other}); this machine trains it in {granted_precision(cfg)}: "
                    f"training it anew into {directory}",
                    file=out or sys.stderr,
                    flush=True,
                )
            result = train(
                cfg,
                directory,
                resume=True,
                progress=progress,
                deadline=deadline,
                clock=clock,
                precision=run_precision(cfg),
                command=command,
            )
    return {**result, "run_dir": str(directory)}
