"""Backbones, heads, PoseModel (forward, flip-test predict, export) and complexity counts."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision

from ocdlib import codecs
from ocdlib.configs import ModelConfig
from ocdlib.metainfo import COCO_BODY
from ocdlib.models import (
    BACKBONE_NAMES,
    HeatmapHead,
    build_backbone,
    build_model,
    complexity_table,
    count_macs,
    count_params,
    export_student,
    measure_latency_ms,
)

K = 17
SMALL_INPUT = (48, 64)  # (W, H)
SMALL_HM = (12, 16)
ALL_HEADS = ("reg", "rle", "hm", "hm_small")
CHANNELS = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "mobilenet_v2": 1280,
    "resnet18_w32": 256,
    "resnet18_w16": 128,
}


_BUILT: dict = {}


def small_model(heads=ALL_HEADS, backbone="resnet18", seed=0, **kw):
    """A fresh model per call; each configuration is initialised once, then copied."""
    key = (heads, backbone, seed, tuple(sorted(kw.items())))
    if key not in _BUILT:
        torch.manual_seed(seed)
        cfg = ModelConfig(backbone=backbone, heads=heads, deploy_head=heads[0], **kw)
        _BUILT[key] = build_model(cfg, K, SMALL_INPUT, SMALL_HM)
    return copy.deepcopy(_BUILT[key])


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_every_backbone_with_every_head(name):
    cfg = ModelConfig(backbone=name, heads=ALL_HEADS)
    model = build_model(cfg, K, SMALL_INPUT, SMALL_HM).eval()
    assert model.backbone.out_channels == CHANNELS[name]
    with torch.no_grad():
        # Full resolution: the backbone map is stride 32 (8 x 6 for 256 x 192).
        feat = model.backbone(torch.randn(1, 3, 256, 192))
        assert feat.shape == (1, CHANNELS[name], 8, 6)
        out = model(torch.randn(2, 3, 64, 48), return_features=True)
    assert out["features"].shape == (2, CHANNELS[name], 2, 2)
    assert out["reg"].shape == (2, K, 2)
    assert out["rle"].shape == (2, K, 4)
    assert out["hm"].shape == (2, K, 16, 12)
    assert out["hm_small"].shape == (2, K, 16, 12)
    assert all(v.dtype == torch.float32 for v in out.values())
    sigma = out["rle"][..., 2:]
    assert bool(((sigma >= 0) & (sigma <= 1)).all())


def test_head_outputs_stay_float32_under_autocast():
    model = small_model().eval()
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, return_features=True)
        coords, _ = model.predict(x, "reg")
    assert out["features"].dtype == torch.bfloat16  # the backbone does run in bfloat16
    assert all(out[h].dtype == torch.float32 for h in ALL_HEADS)
    assert coords.dtype == torch.float32


@pytest.mark.parametrize("num_deconv", [0, 1, 2, 3])
def test_heatmap_head_reaches_heatmap_size(num_deconv):
    head = HeatmapHead(32, K, num_deconv, 16, heatmap_size=(48, 64))
    deconvs = [m for m in head.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(deconvs) == num_deconv
    out = head(torch.randn(2, 32, 8, 6))
    assert out.shape == (2, K, 64, 48)


def test_decode_conventions():
    model = small_model().eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        out = model(x)
    coords, scores = model.predict(x, "reg")
    torch.testing.assert_close(coords, out["reg"])
    assert torch.equal(scores, torch.ones(2, K))
    coords, scores = model.predict(x, "rle")
    torch.testing.assert_close(coords, out["rle"][..., :2])
    torch.testing.assert_close(scores, 1 - out["rle"][..., 2:].mean(-1))
    coords, scores = model.predict(x, "hm")
    hm_coords, hm_scores = codecs.decode_heatmaps(out["hm"])
    torch.testing.assert_close(
        coords, codecs.heatmap_to_normalized(hm_coords, SMALL_INPUT, SMALL_HM)
    )
    torch.testing.assert_close(scores, hm_scores)


@pytest.mark.parametrize("head", ["reg", "rle", "hm"])
def test_flip_test_is_mirror_equivariant(head):
    """With flip test, predicting on a mirrored crop gives the mirrored prediction.

    This holds only if each head maps the flipped output back correctly (mirror
    and left/right swap), so a wrong flip-back breaks it.
    """
    model = small_model().eval()
    if head == "hm":  # give the maps clear, keypoint-specific peaks
        torch.nn.init.normal_(model.heads["hm"].final_layer.weight, std=0.5)
    flip = COCO_BODY.flip_index
    x = torch.randn(2, 3, 64, 48)
    coords, scores = model.predict(x, head, flip_index=flip)
    coords_m, scores_m = model.predict(x.flip(-1), head, flip_index=flip)
    torch.testing.assert_close(
        coords_m, codecs.flip_coords_normalized(coords, flip, SMALL_INPUT), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(scores_m, scores[:, flip], atol=1e-5, rtol=0)
    plain, _ = model.predict(x, head)
    assert not torch.allclose(plain, coords)  # the flip test did change something


def test_export_student_equals_plain_regression_model():
    ocd = small_model(heads=("reg", "hm", "hm_small"))
    ocd.train()
    with torch.no_grad():  # move BN running stats away from their init
        for _ in range(2):
            ocd(torch.randn(4, 3, 64, 48))
    student = export_student(ocd, "reg")
    assert not student.training and list(student.heads) == ["reg"]

    plain = small_model(heads=("reg",), seed=1)
    plain.load_state_dict(student.state_dict(), strict=True)
    plain.eval()
    assert count_params(student) == count_params(plain)
    assert count_params(student) < count_params(ocd)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert torch.equal(student(x)["reg"], plain(x)["reg"])
        assert torch.equal(student(x)["reg"], ocd.eval()(x)["reg"])
    # A deep copy: training the original further leaves the student alone.
    with torch.no_grad():
        ocd.heads["reg"].fc.weight.add_(1.0)
    assert not torch.equal(student.heads["reg"].fc.weight, ocd.heads["reg"].fc.weight)


def test_complexity_matches_published_resnet50_figures():
    size = (192, 256)
    both = build_model(ModelConfig(backbone="resnet50", heads=("reg", "hm")), K, size, (48, 64))
    # Counting one head of a two-head model counts what deployment runs, so this
    # is DeepPose-R50 (23.6 M params, 4.00 GMACs) and SimpleBaseline-R50 (34.0 M,
    # 5.43 GMACs).
    assert count_params(both, head="reg") == pytest.approx(23.6e6, rel=0.02)
    assert count_macs(both, size, head="reg") == pytest.approx(4.00e9, rel=0.02)
    table = complexity_table(both, size, head="hm")
    assert set(table) == {"params_M", "GMACs"}
    assert table["params_M"] == pytest.approx(34.0, rel=0.02)
    assert table["GMACs"] == pytest.approx(5.43, rel=0.02)
    assert count_params(export_student(both, "reg")) == count_params(both, head="reg")


def test_reduced_heads_are_cheaper():
    model = small_model(heads=("hm", "hm_small"), small_deconv_layers=1, small_deconv_channels=64)
    full = (count_params(model, "hm"), count_macs(model, SMALL_INPUT, "hm"))
    for layers, channels in [(0, 64), (1, 64), (2, 128)]:
        model.heads["hm_small"] = HeatmapHead(512, K, layers, channels, SMALL_HM)
        assert count_params(model, "hm_small") < full[0]
        assert count_macs(model, SMALL_INPUT, "hm_small") < full[1]


def test_measuring_leaves_each_module_in_its_mode():
    model = small_model(heads=("reg", "hm"))
    model.eval()
    model.heads["hm"].train()
    count_macs(model, SMALL_INPUT, head="reg")
    assert measure_latency_ms(model, SMALL_INPUT, head="hm", warmup=0, runs=1) > 0
    assert not model.training and not model.backbone.training
    assert not model.heads["reg"].training and model.heads["hm"].training


def test_backbone_loads_a_torchvision_state_dict(tmp_path):
    torch.manual_seed(3)
    reference = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)  # with fc.*, as torchvision ships it
    backbone = build_backbone("resnet18", str(path))
    torch.testing.assert_close(backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    torch.testing.assert_close(backbone.bn1.running_var, reference.bn1.running_var)

    wrapped = tmp_path / "wrapped.pth"
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, wrapped
    )
    torch.testing.assert_close(
        build_backbone("resnet18", str(wrapped)).conv1.weight, reference.conv1.weight
    )

    with pytest.raises(ValueError, match="model.pretrained.*does not fit backbone mobilenet_v2"):
        build_backbone("mobilenet_v2", str(path))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad_shape.pth")
    with pytest.raises(ValueError, match="does not fit backbone resnet18"):
        build_backbone("resnet18", str(tmp_path / "bad_shape.pth"))
    with pytest.raises(FileNotFoundError, match="model.pretrained.*no such file"):
        build_backbone("resnet18", str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="model.backbone='vgg16'"):
        build_backbone("vgg16")


def test_imagenet_weights_only_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        build_backbone("resnet18", "imagenet")
    message = str(err.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path / "checkpoints") in message
    assert "model.pretrained=/path/to/file.pth" in message
    assert "m.resnet18(weights='IMAGENET1K_V1')" in message and "TORCH_HOME" in message

    torch.manual_seed(4)
    reference = torchvision.models.resnet18()
    (tmp_path / "checkpoints").mkdir()
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    backbone = build_backbone("resnet18", "imagenet")
    torch.testing.assert_close(backbone.conv1.weight, reference.conv1.weight)


def test_build_model_rejects_bad_configs():
    with pytest.raises(ValueError, match="unknown head 'heatmap'"):
        build_model(ModelConfig(heads=("reg", "heatmap")), K, SMALL_INPUT, SMALL_HM)
    with pytest.raises(ValueError, match="model.deploy_head='reg'"):
        build_model(ModelConfig(heads=("hm",)), K, SMALL_INPUT, SMALL_HM)
    with pytest.raises(KeyError, match="model.deploy_head='hm'.*has heads"):
        export_student(small_model(heads=("reg",)), "hm")


def test_narrow_resnets_keep_resnet18_layout_at_a_fraction_of_the_cost():
    from ocdlib.models.backbones import build_backbone

    full = build_backbone("resnet18")
    for name, width in (("resnet18_w32", 32), ("resnet18_w16", 16)):
        narrow = build_backbone(name)
        assert [n for n, _ in narrow.named_children()] == [n for n, _ in full.named_children()]
        assert narrow.layer1[0].conv1.out_channels == width
        assert narrow.layer4[1].conv2.out_channels == 8 * width
        ratio = count_params(narrow) / count_params(full)
        assert ratio < (width / 64) ** 2 * 1.1  # widths scale the parameters quadratically
        with pytest.raises(ValueError, match="has no ImageNet weights; use a kit pre-training"):
            build_backbone(name, "imagenet")
