"""data.decode_on_device: the loader ships JPEG bytes and the device decodes them; the
batches against those of the loader's own decode, the fallback, a broken file."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
from torch.utils.data import DataLoader

from ocdlib.configs import DataConfig
from ocdlib.data import TopDownPoseDataset, device_decode, load_coco_keypoints
from ocdlib.data.coco import ImageReadError
from ocdlib.data.device_pipeline import collate_of, finish_batch
from ocdlib.errors import ConfigError
from ocdlib.metainfo import COCO_BODY

CPU = torch.device("cpu")
CFG = DataConfig(
    input_size=(96, 128), heatmap_size=(24, 32), flip_prob=0.5, rotate_prob=0.8, pipeline="device"
)


def dataset(root, cfg=CFG) -> TopDownPoseDataset:
    body = load_coco_keypoints(root / "test_coco.json", root, COCO_BODY)
    return TopDownPoseDataset(body, COCO_BODY, cfg, True)


def finished(ds, epoch: int = 0) -> dict:
    ds.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=len(ds), shuffle=False, collate_fn=collate_of(ds))
    return finish_batch(next(iter(loader)))


def test_bytes_decoded_on_the_device_give_the_loaders_batches(coco_sample_dir):
    # torchvision's CPU decoder and PIL's read the sample's JPEGs to the same pixels,
    # so the batches are equal bit for bit (on a GPU, nvJPEG may round otherwise).
    loose, shipped = dataset(coco_sample_dir), dataset(coco_sample_dir)
    lines = []
    assert device_decode.decodes_on_device(shipped, CPU, "on", say=lines.append)
    assert "bytes only" in lines[0]
    assert "encoded" in shipped[0] and "pixels" not in shipped[0]
    for epoch in (0, 1):
        a, b = finished(loose, epoch), finished(shipped, epoch)
        assert set(a) == set(b)
        for key, value in a.items():
            if torch.is_tensor(value):
                assert torch.equal(value, b[key]), key


def test_when_the_device_decodes(coco_sample_dir):
    ds = dataset(coco_sample_dir)
    assert not device_decode.decodes_on_device(ds, CPU, "auto")  # auto: CUDA only
    assert not device_decode.decodes_on_device(ds, CPU, "off")
    cuda = torch.device("cuda")
    assert device_decode.decodes_on_device(ds, cuda, "auto")
    skip = dataset(coco_sample_dir, dataclasses.replace(CFG, bad_images="skip"))
    assert not device_decode.decodes_on_device(skip, cuda, "auto")  # a sample must be replaceable
    cpu_pipeline = dataset(coco_sample_dir, dataclasses.replace(CFG, pipeline="cpu"))
    assert not device_decode.decodes_on_device(cpu_pipeline, cuda, "on")
    with pytest.raises(ConfigError, match="data.decode_on_device"):
        device_decode.decodes_on_device(ds, CPU, "gpu")


def test_a_failing_device_decoder_falls_back_to_the_cpu_saying_so_once(
    coco_sample_dir, monkeypatch, capsys
):
    expected = finished(dataset(coco_sample_dir))
    real = device_decode.decode_jpeg

    def no_batches(data, **kw):  # a decoder that cannot take a batch, as a broken nvJPEG
        if isinstance(data, list):
            raise RuntimeError("no device decoder here")
        return real(data, **kw)

    monkeypatch.setattr(device_decode, "decode_jpeg", no_batches)
    monkeypatch.setitem(device_decode._fallback, "reason", "")
    ds = dataset(coco_sample_dir)
    device_decode.decodes_on_device(ds, CPU, "on")
    for _ in range(2):
        got = finished(ds)
        assert torch.equal(got["image"], expected["image"])
    err = capsys.readouterr().err
    assert err.count("no device decoder here") == 1 and "on the CPU" in err


def test_a_truncated_jpeg_stops_the_run_with_its_name(coco_sample_dir, tmp_path):
    root = tmp_path / "sample"
    shutil.copytree(coco_sample_dir, root)
    victim = sorted(root.glob("*.jpg"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # the header reads, the pixels do not
    ds = dataset(root)
    device_decode.decodes_on_device(ds, CPU, "on")
    with pytest.raises(ImageReadError, match=victim.name):
        finished(ds)
