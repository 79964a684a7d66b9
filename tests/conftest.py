"""Shared fixtures: the kit's real COCO sample, copied so tests never write into it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from ocdlib.paths import COCO_SAMPLE_DIR

torch.set_num_threads(1)


def _sample_source() -> Path:
    return COCO_SAMPLE_DIR


@pytest.fixture
def coco_sample_dir(tmp_path) -> Path:
    """A private copy of the kit's COCO sample (4 COCO val2017 images)."""
    dst = tmp_path / "coco_sample"
    shutil.copytree(_sample_source(), dst)
    return dst


def lay_out_coco_root(dst: Path, wholebody: bool = True) -> Path:
    """A tiny COCO root in the layout the coco_* presets read, from the 4-image sample.

    Both splits hold the same 4 images (symlinked) and annotations; the whole-body
    files are the sample's COCO-WholeBody annotations of the same people."""
    from ocdlib.data.coco_root import coco_layout

    src = _sample_source()
    layout = coco_layout()
    for split in layout.splits:
        if split.wholebody and not wholebody:
            continue
        ann = dst / split.ann
        ann.parent.mkdir(parents=True, exist_ok=True)
        name = "test_coco_wholebody.json" if split.wholebody else "test_coco.json"
        shutil.copy(src / name, ann)
        images = dst / split.images
        images.mkdir(parents=True, exist_ok=True)
        for jpg in src.glob("*.jpg"):
            if not (images / jpg.name).exists():
                (images / jpg.name).symlink_to(jpg)
    det = dst / layout.det_file
    det.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "test_coco_det_AP_H_56.json", det)
    return dst


@pytest.fixture
def coco_root(tmp_path) -> Path:
    """A tiny COCO root (see `lay_out_coco_root`)."""
    return lay_out_coco_root(tmp_path / "coco")


@pytest.fixture(scope="session")
def shared_coco_root(tmp_path_factory) -> Path:
    """A tiny COCO root shared by a session's tests: read it, never change it."""
    return lay_out_coco_root(tmp_path_factory.mktemp("shared_coco") / "coco")


@pytest.fixture
def homes(tmp_path, monkeypatch) -> Path:
    """Data, runs and reports of the kit in folders of this test's own."""
    for name in ("DATA", "RUNS", "REPORTS"):
        monkeypatch.setenv(f"OCDLIB_{name}", str(tmp_path / name.lower()))
    return tmp_path


class FakeClock:
    """A clock a test drives: `now` moves by `tick` at every reading, or by hand."""

    def __init__(self, tick: float = 0.0, now: float = 1_000_000.0):
        self.now, self.tick = now, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now
