"""data.hold_images: a training set's images decoded once and held on the device give
the same batches as the loader's per-step decode; when it holds, when it does not, and
what an unreadable image does."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from ocdlib.configs import DataConfig, build_config
from ocdlib.data import TopDownPoseDataset, image_bank, load_coco_keypoints
from ocdlib.data.coco import ImageReadError
from ocdlib.data.device_pipeline import collate_of, finish_batch
from ocdlib.engine.trainer import train
from ocdlib.errors import ConfigError
from ocdlib.metainfo import COCO_BODY

CFG = DataConfig(
    input_size=(96, 128), heatmap_size=(24, 32), flip_prob=0.5, rotate_prob=0.8, pipeline="device"
)


def dataset(root, cfg=CFG, ann="test_coco.json") -> TopDownPoseDataset:
    body = load_coco_keypoints(root / ann, root, COCO_BODY)
    return TopDownPoseDataset(body, COCO_BODY, cfg, True)


def finished(ds, bank, epoch: int) -> dict:
    ds.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=len(ds), shuffle=False, collate_fn=collate_of(ds))
    return finish_batch(next(iter(loader)), bank)


def test_held_images_give_the_same_batches_bit_for_bit(coco_sample_dir):
    # The sample's images differ in size, so the bank pads them as a batch would be.
    loose, held = dataset(coco_sample_dir), dataset(coco_sample_dir)
    lines = []
    bank = image_bank.hold_images(held, torch.device("cpu"), "on", say=lines.append)
    assert bank is not None and "holding" in lines[0]
    assert bank.pixels.shape[0] == len({str(i.image_path) for i in held.instances})
    assert len(set(map(tuple, bank.sizes))) > 1
    for epoch in (0, 1, 2):
        a, b = finished(loose, None, epoch), finished(held, bank, epoch)
        assert set(a) == set(b)
        for key, value in a.items():
            if torch.is_tensor(value):
                assert torch.equal(value, b[key]), key
    # A held sample reads no file: the bank is all it needs.
    assert "pixels" not in held[0] and "image_row" in held[0]


def test_a_held_batch_without_its_bank_is_refused(coco_sample_dir):
    ds = dataset(coco_sample_dir)
    image_bank.hold_images(ds, torch.device("cpu"), "on")
    with pytest.raises(ValueError, match="image bank"):
        finished(ds, None, 0)


def test_auto_holds_only_what_fits_and_off_or_the_cpu_pipeline_never(coco_sample_dir, monkeypatch):
    lines = []
    monkeypatch.setattr(image_bank, "free_memory", lambda device: 1000)
    cpu = torch.device("cpu")
    assert image_bank.hold_images(dataset(coco_sample_dir), cpu, "auto", say=lines.append) is None
    assert "the loader's workers decode them" in lines[0]
    monkeypatch.setattr(image_bank, "free_memory", lambda device: 10**12)
    assert image_bank.hold_images(dataset(coco_sample_dir), torch.device("cpu"), "auto") is not None
    assert image_bank.hold_images(dataset(coco_sample_dir), torch.device("cpu"), "off") is None
    cpu = dataset(coco_sample_dir, dataclasses.replace(CFG, pipeline="cpu"))
    assert image_bank.hold_images(cpu, torch.device("cpu"), "on") is None
    with pytest.raises(ConfigError, match="data.hold_images"):
        image_bank.hold_images(dataset(coco_sample_dir), torch.device("cpu"), "always")


def corrupt_copy(coco_sample_dir, tmp_path):
    root = tmp_path / "sample"
    shutil.copytree(coco_sample_dir, root)
    victim = sorted(root.glob("*.jpg"))[0]
    victim.write_bytes(b"not a jpeg")
    return root, victim


def test_an_unreadable_image_stops_holding_with_its_name_or_is_skipped(coco_sample_dir, tmp_path):
    root, victim = corrupt_copy(coco_sample_dir, tmp_path)
    with pytest.raises(ImageReadError, match=victim.name):
        image_bank.hold_images(dataset(root), torch.device("cpu"), "on")
    ds = dataset(root, dataclasses.replace(CFG, bad_images="skip"))
    lines = []
    bank = image_bank.hold_images(ds, torch.device("cpu"), "on", say=lines.append)
    assert "1 unreadable, skipped" in lines[0]
    bad = [i for i, inst in enumerate(ds.instances) if inst.image_path == victim]
    assert bad
    sample = ds[bad[0]]  # stands in for the unreadable image, and says which
    assert victim.name in sample["bad_images"]
    assert int(np.asarray(bank.sizes[sample["image_row"]]).min()) > 0


def test_a_run_from_held_images_trains_as_one_that_decodes_each_step(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("OCDLIB_DATA", str(tmp_path / "data"))
    sets = {"data.pipeline": "device", "train.epochs": 1, "train.max_steps": 4}
    logs = {}
    for hold in ("on", "off"):
        cfg = build_config("smoke_deeppose", {**sets, "data.hold_images": hold})
        result = train(cfg, tmp_path / hold, progress=False)
        assert 0.0 <= result["metrics"]["AP"] <= 1.0
        assert ("holding" in capfd.readouterr().err) == (hold == "on")
        logs[hold] = pd.read_csv(tmp_path / hold / "log.csv")
    assert cfg.hash == build_config("smoke_deeppose", sets).hash  # not part of the identity
    assert len(logs["on"]) and logs["on"]["total"].tolist() == logs["off"]["total"].tolist()
