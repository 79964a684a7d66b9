"""Shared fixtures: the real COCO sample, copied so tests never write into shared/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

SHARED_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco_sample"

torch.set_num_threads(1)


def _sample_source() -> Path:
    if not SHARED_SAMPLE.is_dir():
        pytest.skip(f"COCO sample not found at {SHARED_SAMPLE}")
    return SHARED_SAMPLE


@pytest.fixture
def coco_sample_dir(tmp_path) -> Path:
    """A private copy of ../shared/data/coco_sample (4 COCO val2017 images)."""
    dst = tmp_path / "coco_sample"
    shutil.copytree(_sample_source(), dst)
    return dst
