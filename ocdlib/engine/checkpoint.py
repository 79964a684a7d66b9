"""Atomic checkpoints: a killed run never leaves a half-written file behind."""

from __future__ import annotations

import errno
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DiskFullError, MissingFileError

# Below this many free bytes after a failed write, the disk is taken to be full
# (torch.save reports a full disk only as "basic_ios::clear: iostream error").
_FULL_BELOW = 64 * 2**20


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save into a temporary file in the same folder, then rename over `path`."""
    _write_atomically(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(text: str, path: Path) -> None:
    _write_atomically(path, lambda tmp: Path(tmp).write_text(text))


def _write_atomically(path: Path, write: Callable[[str], object]) -> None:
    """`write` a temporary file beside `path`, then rename it over `path`: a killed or
    failed write leaves `path` as it was and no partial file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:  # on disk before the rename makes it the file
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        full = _disk_full(e, path.parent)
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise _disk_full_error(path) from e
        raise


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files `_write_atomically` left in `folder` when its process was
    killed mid-write (SIGKILL, a power cut); call it holding the folder's lock."""
    stale = [p for p in Path(folder).glob("*.*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _disk_full(error: BaseException, folder: Path) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(error, (OSError, RuntimeError)):
        return False
    try:
        return shutil.disk_usage(folder).free < _FULL_BELOW
    except OSError:
        return False


def _disk_full_error(path: Path) -> DiskFullError:
    free = shutil.disk_usage(path.parent).free / 2**20
    return DiskFullError(
        f"cannot write {path}: its disk is full ({free:.0f} MB free once the partial file "
        "was removed); free some space or point OCDLIB_RUNS at a larger disk, then run the "
        "same command again (a training run resumes from its last checkpoint)"
    )


def rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (global state user code may use)
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: Path, config_hash: str | None = None) -> dict:
    """Load a checkpoint; refuse one written by a different config."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"no checkpoint at {path}; train first (python -m ocdlib train ...) "
            "or point --run at a finished run directory"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise RuntimeError(f"cannot read checkpoint {path}: {e}; delete it to start over") from e
    if config_hash is not None and ckpt.get("config_hash") != config_hash:
        raise ConfigError(
            f"checkpoint {path} was written by config {ckpt.get('config_hash')}, "
            f"this run's config is {config_hash}; use a new --out directory, or drop the "
            "--set overrides that changed the config"
        )
    return ckpt
