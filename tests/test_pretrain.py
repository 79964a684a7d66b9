"""Pre-training a backbone on generated images, and the identity of pre-trained weights."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from ocdlib.configs import build_config
from ocdlib.errors import ConfigError, MissingFileError, UnknownNameError
from ocdlib.models.backbones import build_backbone
from ocdlib.pretrain import pretrain, pretrain_config
from ocdlib.pretrain.fractals import (
    draw_density,
    sample_system,
    sigma_band,
    system_sigma_factor,
)
from ocdlib.pretrain.pretexts import load_bank, make_batch
from ocdlib.weights import (
    KIT_WEIGHTS_DIR,
    file_digest,
    kit_record,
    kit_weights_names,
    kit_weights_with_files,
)


def test_every_fractal_class_contracts_and_lies_in_the_sigma_band():
    rng = np.random.default_rng(3)
    for n in (2, 3, 4):
        for _ in range(20):
            linear, shift = sample_system(rng, n)
            lo, hi = sigma_band(n)
            assert lo - 1e-9 <= system_sigma_factor(linear) <= hi + 1e-9
            assert np.linalg.svd(linear, compute_uv=False).max() < 1
            assert np.abs(shift).max() <= 1


def test_the_chaos_game_is_a_pure_function_of_its_seed():
    linear, shift = sample_system(np.random.default_rng(0), 3)
    a = draw_density(linear[None], shift[None], 32, np.random.default_rng(5))
    b = draw_density(linear[None], shift[None], 32, np.random.default_rng(5))
    c = draw_density(linear[None], shift[None], 32, np.random.default_rng(6))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (1, 32, 32) and a.max() == pytest.approx(1.0)
    assert 0.02 < (a > 0).mean() < 0.9  # a shape, neither empty nor filled


@pytest.mark.parametrize("name", ["smoke", "synth_rotation_w32"])
def test_a_bank_and_its_batches_are_deterministic(name, tmp_path):
    cfg = replace(pretrain_config(name), classes=2, instances=3, image_size=32, batch_size=4)
    one = load_bank(cfg, tmp_path / "a", say=lambda m: None)
    two = load_bank(cfg, tmp_path / "b", say=lambda m: None)
    assert np.array_equal(one.images, two.images)
    x1, y1 = make_batch(one, cfg, step=7)
    x2, y2 = make_batch(two, cfg, step=7)
    x3, _ = make_batch(one, cfg, step=8)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert x1.shape == (4, 3, 32, 32)
    assert int(y1.max()) < (cfg.classes if cfg.pretext == "fractal" else 4)


def test_smoke_pretraining_writes_weights_that_a_pose_backbone_loads(homes):
    record = pretrain(pretrain_config("smoke"), say=lambda m: None)
    run = homes / "runs" / "pretrain" / f"smoke-{record['hash']}-s0-{record['precision_tag']}"
    weights = run / "backbone.pth"
    assert record["sha256"] == file_digest(weights)
    assert [c["step"] for c in record["curve"]][-1] == 6
    assert not (run / "checkpoint.pt").exists()
    backbone = build_backbone("resnet18_w32", str(weights))
    saved = torch.load(weights, weights_only=True)
    assert torch.equal(backbone.state_dict()["layer4.1.bn2.running_var"],
                       saved["layer4.1.bn2.running_var"])  # fmt: skip
    again = pretrain(pretrain_config("smoke"), say=lambda m: None)  # finished: served, not rerun
    assert again["sha256"] == record["sha256"]


def test_a_stopped_pretraining_resumes_to_the_same_weights(tmp_path, homes):
    cfg = pretrain_config("smoke")
    pretrain(cfg, tmp_path / "whole", say=lambda m: None)
    assert pretrain(cfg, tmp_path / "split", say=lambda m: None, stop_at_step=3) is None
    assert (tmp_path / "split" / "checkpoint.pt").is_file()
    pretrain(cfg, tmp_path / "split", say=lambda m: None)
    a = torch.load(tmp_path / "whole" / "backbone.pth", weights_only=True)
    b = torch.load(tmp_path / "split" / "backbone.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_pretext_that_does_not_exist_is_refused_by_name(homes):
    with pytest.raises(ConfigError, match="jigsaw.*fractal"):
        pretrain(pretrain_config("smoke", ["pretext=jigsaw"]), say=lambda m: None)
    with pytest.raises(UnknownNameError, match="fractal_w32"):
        pretrain_config("imagenet_w32")


def test_pretrained_weights_are_part_of_a_runs_identity(tmp_path):
    scratch = build_config("cpu_deeppose")
    explicit = build_config("cpu_deeppose", ["model.pretrained=none"])
    assert scratch.hash == explicit.hash  # from scratch: the hash it always had
    net = build_backbone("resnet18_w32")
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    torch.save(net.state_dict(), a)
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in net.state_dict().items()}, b)
    ha = build_config("cpu_deeppose", [f"model.pretrained={a}"]).hash
    hb = build_config("cpu_deeppose", [f"model.pretrained={b}"]).hash
    assert len({scratch.hash, ha, hb}) == 3
    moved = tmp_path / "moved.pth"
    moved.write_bytes(a.read_bytes())  # the same weights elsewhere: the same run
    assert build_config("cpu_deeppose", [f"model.pretrained={moved}"]).hash == ha


def test_weights_of_another_width_are_refused_naming_both(tmp_path):
    path = tmp_path / "w16.pth"
    torch.save(build_backbone("resnet18_w16").state_dict(), path)
    match = r"fit backbone resnet18_w32.*stem width 16 \(resnet18_w16\)"
    with pytest.raises(ConfigError, match=match):
        build_backbone("resnet18_w32", str(path))


def test_an_unknown_weights_name_or_file_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="no kit pre-training"):
        _ = build_config("cpu_deeppose", ["model.pretrained=fractal_w99"]).hash
    with pytest.raises(MissingFileError, match="no such file"):
        _ = build_config("cpu_deeppose", [f"model.pretrained={tmp_path}/none.pth"]).hash


def test_a_kit_weights_file_whose_hash_disagrees_with_its_record_is_refused(tmp_path, monkeypatch):
    import ocdlib.weights as weights

    net = build_backbone("resnet18_w32")
    torch.save(net.state_dict(), tmp_path / "mine.pth")
    record = {"sha256": "0" * 64, "backbone": "resnet18_w32", "command": "python -m ocdlib ..."}
    (tmp_path / "mine.json").write_text(json.dumps(record))
    monkeypatch.setattr(weights, "KIT_WEIGHTS_DIR", tmp_path)
    with pytest.raises(ConfigError, match="mine.json says 0000"):
        build_backbone("resnet18_w32", "mine")
    record["sha256"] = file_digest(tmp_path / "mine.pth")
    record["backbone"] = "resnet50"
    (tmp_path / "mine.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="weights of resnet50, not of model.backbone"):
        build_backbone("resnet18_w32", "mine")


@pytest.mark.parametrize("name", kit_weights_with_files())
def test_the_committed_weights_match_their_record(name):
    record = kit_record(name)
    path = KIT_WEIGHTS_DIR / f"{name}.pth"
    assert file_digest(path) == record["sha256"]
    assert path.stat().st_size == record["bytes"] <= 12 * 2**20
    assert record["config"]["backbone"] == record["backbone"]
    assert record["curve"] and record["machine"] and record["minutes"] > 0
    build_backbone(record["backbone"], name)  # loads strictly


@pytest.mark.parametrize(
    "name", sorted(set(kit_weights_names()) - set(kit_weights_with_files())) or ["(none)"]
)
def test_a_record_without_its_weights_keeps_its_runs_identity_and_says_how_to_rebuild(name):
    if name == "(none)":
        pytest.skip("every committed record has its weights")
    cfg = build_config("cpu_deeppose", [f"model.pretrained={name}"])
    assert cfg.hash != build_config("cpu_deeppose").hash  # the runs it trained stay findable
    with pytest.raises(MissingFileError, match="python -m ocdlib pretrain"):
        build_backbone(kit_record(name)["backbone"], name)


def test_the_cpu_pretrained_base_uses_committed_weights():
    from ocdlib.configs.presets import CPU_PRETRAINED_WEIGHTS

    assert CPU_PRETRAINED_WEIGHTS in kit_weights_with_files()


def test_a_run_from_kit_weights_loads_where_those_weights_are_not(homes, tmp_path, monkeypatch):
    import shutil

    import ocdlib.weights as weights
    from ocdlib.engine.run_dir import load_run_model
    from ocdlib.engine.trainer import train

    record = pretrain(pretrain_config("smoke"), say=lambda m: None)
    run = homes / "runs" / "pretrain" / f"smoke-{record['hash']}-s0-{record['precision_tag']}"
    kit = tmp_path / "kit"
    kit.mkdir()
    shutil.copyfile(run / "backbone.pth", kit / "mine.pth")
    (kit / "mine.json").write_text(json.dumps(record))
    monkeypatch.setattr(weights, "KIT_WEIGHTS_DIR", kit)
    sets = {"model.backbone": "resnet18_w32", "model.pretrained": "mine", "train.epochs": 1}
    cfg = build_config("smoke_deeppose", sets)
    train(cfg, tmp_path / "run", progress=False)
    (kit / "mine.pth").unlink()  # a clone that keeps the record only
    model, loaded = load_run_model(tmp_path / "run", student=True)
    assert loaded.hash == cfg.hash and loaded.model.pretrained == "mine"
