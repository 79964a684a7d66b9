"""mmpose SimpleBaseline checkpoints as TCD teachers: key mapping, refusals, the MSRA->UDP grid."""

from __future__ import annotations

import pytest
import torch

from ocdlib import codecs
from ocdlib.configs import ModelConfig
from ocdlib.models import build_model
from ocdlib.models.mmpose_checkpoint import (
    CheckpointError,
    UDPResampledHead,
    load_mmpose_heatmap_model,
)

INPUT, HEATMAP = (48, 64), (12, 16)  # (W, H)
# The kit's prefixes as mmpose names them (written here from mmpose's module names, so that
# the test does not read the table it checks).
MMPOSE_NAMES = {
    "1.x": {"backbone.": "backbone.", "heads.hm.": "head."},
    "0.x": {"backbone.": "backbone.", "heads.hm.": "keypoint_head."},
}


def simplebaseline(backbone: str, seed: int = 0):
    torch.manual_seed(seed)
    cfg = ModelConfig(backbone=backbone, heads=("hm",), deploy_head="hm")
    model = build_model(cfg, 17, INPUT, HEATMAP).eval()
    for m in model.modules():  # trained-looking BN statistics, so that a mix-up shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    for p in model.heads["hm"].parameters():
        p.data.normal_(0, 0.05)
    return model


def save_as_mmpose(model, path, version: str, edit=None):
    table = MMPOSE_NAMES[version]
    state = {}
    for key, value in model.state_dict().items():
        prefix = next(p for p in table if key.startswith(p))
        state[table[prefix] + key[len(prefix) :]] = value
    if edit:
        edit(state)
    torch.save({"meta": {"mmpose_version": version}, "state_dict": state}, path)
    return path


@pytest.mark.parametrize(("backbone", "version"), [("resnet18", "0.x"), ("resnet50", "1.x")])
def test_an_mmpose_checkpoint_loads_to_the_same_outputs(backbone, version, tmp_path):
    model = simplebaseline(backbone)
    path = save_as_mmpose(model, tmp_path / f"td-hm_{backbone}_udp.pth", version)
    loaded = load_mmpose_heatmap_model(path, INPUT, HEATMAP)
    assert isinstance(loaded.heads["hm"], type(model.heads["hm"]))  # "udp" in the name
    x = torch.randn(2, 3, INPUT[1], INPUT[0])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["hm"], model(x)["hm"], rtol=0, atol=0)
    assert loaded.backbone.out_channels == model.backbone.out_channels


def test_a_wrong_shape_is_refused_naming_the_key_and_both_shapes(tmp_path):
    def edit(state):
        state["backbone.bn1.weight"] = torch.ones(63)

    path = save_as_mmpose(simplebaseline("resnet18"), tmp_path / "bad.pth", "1.x", edit)
    with pytest.raises(CheckpointError) as err:
        load_mmpose_heatmap_model(path, INPUT, HEATMAP)
    message = str(err.value)
    assert str(path) in message and "'backbone.bn1.weight'" in message
    assert "shape [63]" in message and "expects [64]" in message


def test_an_unknown_key_is_refused_naming_it(tmp_path):
    def extra_conv(state):
        state["head.conv_layers.0.weight"] = torch.zeros(256, 256, 3, 3)

    path = save_as_mmpose(simplebaseline("resnet18"), tmp_path / "extra.pth", "1.x", extra_conv)
    with pytest.raises(CheckpointError, match=r"'head.conv_layers.0.weight' has no place"):
        load_mmpose_heatmap_model(path, INPUT, HEATMAP)

    def foreign(state):
        state["neck.fc.weight"] = torch.zeros(1)

    path = save_as_mmpose(simplebaseline("resnet18"), tmp_path / "neck.pth", "0.x", foreign)
    with pytest.raises(CheckpointError, match=r"'neck.fc.weight' is neither in the backbone"):
        load_mmpose_heatmap_model(path, INPUT, HEATMAP)

    def no_layer4(state):
        for key in [k for k in state if k.startswith("backbone.layer4.1.")]:
            del state[key]

    path = save_as_mmpose(simplebaseline("resnet18"), tmp_path / "short.pth", "0.x", no_layer4)
    with pytest.raises(CheckpointError, match=r"\[2, 2, 2, 1\] basic blocks"):
        load_mmpose_heatmap_model(path, INPUT, HEATMAP)


class _Fixed(torch.nn.Module):
    """A stand-in head that returns given maps."""

    def __init__(self, maps):
        super().__init__()
        self.maps, self.num_keypoints = maps, maps.shape[1]

    def forward(self, feat):
        return self.maps


def test_msra_maps_are_resampled_onto_the_udp_grid():
    (w, h), (hw, hh) = (192, 256), (48, 64)
    crop = torch.tensor([[[37.0, 201.0], [150.0, 20.0]]])  # crop pixels (x, y)
    # MSRA puts crop pixel x at heatmap pixel x * hw / w
    msra = codecs.render_heatmaps(crop * torch.tensor([hw / w, hh / h]), (hw, hh), 2.0)
    head = UDPResampledHead(_Fixed(msra), (w, h))
    udp = head(None)
    coords, _ = codecs.decode_heatmaps(udp, refine=True)
    coords = torch.as_tensor(coords, dtype=torch.float32)
    found = codecs.heatmap_to_normalized(coords, (w, h), (hw, hh)) * torch.tensor([w, h])
    torch.testing.assert_close(found, crop, atol=0.6, rtol=0)
    # read as UDP without resampling, the far keypoint would be off by about 3 pixels
    raw, _ = codecs.decode_heatmaps(msra, refine=True)
    raw = codecs.heatmap_to_normalized(torch.as_tensor(raw), (w, h), (hw, hh))
    assert (raw * torch.tensor([w, h]) - crop).abs().max() > 2.0


def test_a_checkpoint_without_udp_in_its_name_gets_the_resampling_head(tmp_path):
    path = save_as_mmpose(simplebaseline("resnet18"), tmp_path / "td-hm_res18.pth", "1.x")
    loaded = load_mmpose_heatmap_model(path, INPUT, HEATMAP)
    assert isinstance(loaded.heads["hm"], UDPResampledHead)
    with torch.no_grad():
        out = loaded(torch.randn(1, 3, INPUT[1], INPUT[0]))["hm"]
    assert out.shape == (1, 17, HEATMAP[1], HEATMAP[0])
