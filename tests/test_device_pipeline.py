"""data.pipeline = "device": the loader's batch, finished on the device, against the
"cpu" pipeline's batch of the same samples; a training run through it; its hash."""

from __future__ import annotations

import dataclasses

import torch
from torch.utils.data import DataLoader

from ocdlib.configs import DataConfig, build_config
from ocdlib.data import TopDownPoseDataset, load_coco_keypoints
from ocdlib.data.device_pipeline import collate_of, finish_batch, finished_sample
from ocdlib.data.transforms import IMAGENET_STD
from ocdlib.engine.trainer import train
from ocdlib.metainfo import COCO_BODY
from ocdlib.report.pictures import _train_instances, augmented_crops_figure, targets_figure

CFG = DataConfig(input_size=(96, 128), heatmap_size=(24, 32), flip_prob=0.5, rotate_prob=0.8)


def batches(coco_sample_dir, pipeline: str, epoch: int) -> dict:
    body = load_coco_keypoints(coco_sample_dir / "test_coco.json", coco_sample_dir, COCO_BODY)
    ds = TopDownPoseDataset(body, COCO_BODY, dataclasses.replace(CFG, pipeline=pipeline), True)
    ds.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=len(ds), shuffle=False, collate_fn=collate_of(ds))
    return finish_batch(next(iter(loader)))


def test_a_device_batch_is_the_cpu_batch(coco_sample_dir):
    for epoch in (0, 1):
        cpu, device = (batches(coco_sample_dir, p, epoch) for p in ("cpu", "device"))
        assert set(device) == set(cpu)
        for key in ("reg_target", "reg_weight", "hm_weight", "center", "scale", "image_id"):
            assert torch.equal(device[key], cpu[key]), key
        torch.testing.assert_close(device["hm_target"], cpu["hm_target"], rtol=0, atol=1e-5)
        # Crops within what tests/test_batched_warp.py measures, in gray levels.
        gray = (device["image"] - cpu["image"]).abs() * 255 * max(IMAGENET_STD)
        assert gray.mean() < 1.0, float(gray.mean())


def test_the_pipeline_is_part_of_a_runs_identity_only_when_it_is_not_the_default():
    cfg = build_config("smoke_deeppose")
    assert build_config("smoke_deeppose", {"data.pipeline": "cpu"}).hash == cfg.hash
    assert build_config("smoke_deeppose", {"data.pipeline": "device"}).hash != cfg.hash


def test_a_run_trains_and_evaluates_through_the_device_pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv("OCDLIB_DATA", str(tmp_path / "data"))
    sets = {"data.pipeline": "device", "train.epochs": 1, "train.max_steps": 0}
    result = train(build_config("smoke_ocd", sets), tmp_path / "run", progress=False)
    assert 0.0 <= result["metrics"]["AP"] <= 1.0


def test_pictures_of_the_crops_draw_what_a_device_run_trains_on(tmp_path, monkeypatch):
    monkeypatch.setenv("OCDLIB_DATA", str(tmp_path / "data"))
    cfgs = {p: build_config("smoke_deeppose", {"data.pipeline": p}) for p in ("cpu", "device")}
    samples = {}
    for pipeline, cfg in cfgs.items():
        instances, info = _train_instances(cfg)
        ds = TopDownPoseDataset(instances, info, cfg.data, train=True, seed=cfg.train.seed)
        samples[pipeline] = finished_sample(ds, 0)
        assert augmented_crops_figure(cfg, n=2, epochs=(0,)) is not None
        assert targets_figure(cfg) is not None
    cpu, device = samples["cpu"], samples["device"]
    assert device["image"].shape == cpu["image"].shape
    assert torch.equal(device["reg_target"], cpu["reg_target"])
    gray = (device["image"] - cpu["image"]).abs() * 255 * max(IMAGENET_STD)
    assert gray.mean() < 1.0, float(gray.mean())
