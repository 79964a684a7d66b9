"""Resolve a DataConfig to annotation files and image folders, generating SynthPose if asked."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..configs import DataConfig, SynthConfig
from ..cores import usable_cores
from ..errors import MissingFileError
from ..paths import data_home

GENERATION_POOL_MIN_IMAGES = 512


@dataclass(frozen=True)
class DataPaths:
    root: Path
    train_ann: Path
    train_images: Path
    val_ann: Path
    val_images: Path


def synth_dir(synth: SynthConfig) -> Path:
    from ..synth_spec import SYNTHPOSE_VERSION

    # The generator's version is part of the key: a rendering change regenerates.
    blob = json.dumps([dataclasses.asdict(synth), SYNTHPOSE_VERSION], sort_keys=True)
    tag = "synthpose-wb" if synth.wholebody else "synthpose"
    return data_home() / f"{tag}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


def ensure_synthpose(synth: SynthConfig, progress: bool = True, give_up=None) -> Path:
    """Generate the SynthPose copy described by `synth` once; later calls reuse it.

    Generation writes into a temporary folder renamed into place at the end, so
    an interrupted or abandoned generation (`give_up`, see `generate_synthpose`) never
    leaves a half-written dataset behind.
    """
    from .synthpose import generate_synthpose

    out = synth_dir(synth)
    if (out / "synthpose.json").is_file():
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    # One process per usable core (the files are the same for any count); small copies,
    # such as the tests', are not worth starting a pool for.
    big = synth.train + synth.val >= GENERATION_POOL_MIN_IMAGES
    workers = usable_cores() if big else 1
    try:
        generate_synthpose(
            tmp,
            n_train=synth.train,
            n_val=synth.val,
            seed=synth.seed,
            wholebody=synth.wholebody,
            image_size=tuple(synth.image_size),
            spec=synth.spec,
            progress=progress,
            workers=workers,
            give_up=give_up,
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, out)
    return out


def is_ready(cfg: DataConfig) -> bool:
    """Whether `cfg`'s data is there without generating anything (a COCO root: assumed)."""
    return bool(cfg.root) or (synth_dir(cfg.synth) / "synthpose.json").is_file()


def resolve_data(cfg: DataConfig, progress: bool = True, give_up=None) -> DataPaths:
    if cfg.root:
        root = Path(cfg.root).expanduser()
        if not root.is_dir():
            raise MissingFileError(
                f"data.root {root} does not exist; for COCO point it at the folder holding "
                "annotations/ and the image folders (--set data.root=/path/to/coco)"
            )
    else:
        root = ensure_synthpose(cfg.synth, progress=progress, give_up=give_up)
    paths = DataPaths(
        root=root,
        train_ann=root / cfg.train_ann,
        train_images=root / cfg.train_images,
        val_ann=root / cfg.val_ann,
        val_images=root / cfg.val_images,
    )
    for field in ("train_ann", "val_ann"):
        p = getattr(paths, field)
        if not p.is_file():
            raise MissingFileError(
                f"annotation file {p} not found (data.{field}={getattr(cfg, field)!r} under "
                f"data.root={str(root)!r}); fix the path with --set data.{field}=..."
            )
    return paths
