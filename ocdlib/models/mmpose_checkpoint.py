"""An mmpose SimpleBaseline checkpoint (ResNet + heatmap head) as a kit `PoseModel`: a TCD teacher.

mmpose saves `{"meta": ..., "state_dict": {...}}`. Its ResNet keeps torchvision's
module names under `backbone.` (`backbone.layer1.0.conv1.weight`); its heatmap
head is `keypoint_head.` (mmpose 0.x, TopdownHeatmapSimpleHead) or `head.`
(mmpose 1.x, HeatmapHead), with `deconv_layers.<i>` (4x4 stride-2 deconv, BN,
ReLU per layer) and a 1x1 `final_layer`, as the kit's `HeatmapHead`. So the
mapping is a change of prefix; the architecture (ResNet depth, deconv layers
and width, keypoints) is read off the tensors, and every key and shape must fit
it, else `CheckpointError` names the first that does not.

Heatmap convention: the kit's heatmaps are UDP (first and last pixel centres
span the crop). mmpose's ResNet SimpleBaselines were trained with the MSRA
codec (heatmap pixel u at crop pixel u * stride), which differs by up to 3/4
of a heatmap pixel at the far edge; the loaded head resamples its maps to the
UDP grid unless the file name says "udp" (mmpose names its UDP checkpoints so).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import KitError, MissingFileError
from .backbones import build_backbone
from .heads import HeatmapHead
from .pose_model import PoseModel

# mmpose's head prefix (0.x, 1.x) -> the kit's; the backbone keeps its names.
HEAD_PREFIXES = {"keypoint_head.": "heads.hm.", "head.": "heads.hm."}
# ResNet blocks per stage (bottleneck?, counts) -> the backbone name.
RESNETS = {
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
    (True, (3, 8, 36, 3)): "resnet152",
}
FIX = (
    "TCD takes an mmpose top-down SimpleBaseline checkpoint (a ResNet backbone and a "
    "heatmap head of 4x4 deconvolutions and a 1x1 final layer, e.g. mmpose's "
    "td-hm_res50_8xb64-210e_coco-256x192) or a kit run folder"
)


class CheckpointError(KitError):
    """A checkpoint file whose keys or shapes do not fit the model it is loaded into."""


def is_mmpose_checkpoint(path) -> bool:
    """Whether a TCD teacher is given as a checkpoint file (rather than a run folder)."""
    return Path(path).suffix == ".pth"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state_dict of an mmpose checkpoint (`state_dict` inside, or the bare dict)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"loss.teacher_run={str(path)!r}: no such file. {FIX}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated download, or not a PyTorch file
        raise CheckpointError(
            f"{path}: cannot read it as a PyTorch checkpoint ({err}); download it again"
        ) from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path}: holds no state_dict of tensors. {FIX}")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def to_kit_names(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """mmpose key names -> the kit's `PoseModel` names (`backbone.*`, `heads.hm.*`)."""
    out = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            out[key] = value
            continue
        prefix = next((p for p in HEAD_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            raise CheckpointError(
                f"{path}: key {key!r} is neither in the backbone ('backbone.') nor in the "
                f"heatmap head ('keypoint_head.' or 'head.'). {FIX}"
            )
        out[HEAD_PREFIXES[prefix] + key[len(prefix) :]] = value
    return out


def _architecture(state: dict[str, torch.Tensor], path: Path) -> tuple[str, int, int, int]:
    """(backbone name, deconv layers, deconv channels, keypoints) read off the tensors."""
    blocks = []
    for stage in range(1, 5):
        found = {
            int(m.group(1))
            for k in state
            if (m := re.match(rf"backbone\.layer{stage}\.(\d+)\.", k))
        }
        blocks.append(len(found))
    bottleneck = "backbone.layer1.0.conv3.weight" in state
    name = RESNETS.get((bottleneck, tuple(blocks)))
    if name is None:
        raise CheckpointError(
            f"{path}: the backbone has {blocks} {'bottleneck' if bottleneck else 'basic'} "
            f"blocks per stage, not a ResNet-18/34/50/101/152 ({sorted(RESNETS.values())}). {FIX}"
        )
    final = state.get("heads.hm.final_layer.weight")
    if final is None or final.dim() != 4:
        raise CheckpointError(
            f"{path}: no heatmap head final layer ('head.final_layer.weight' or "
            f"'keypoint_head.final_layer.weight'). {FIX}"
        )
    deconvs = sorted(
        int(m.group(1))
        for k, v in state.items()
        if (m := re.fullmatch(r"heads\.hm\.deconv_layers\.(\d+)\.weight", k)) and v.dim() == 4
    )
    channels = int(state[f"heads.hm.deconv_layers.{deconvs[0]}.weight"].shape[1]) if deconvs else 0
    return name, len(deconvs), channels or 256, int(final.shape[0])


class UDPResampledHead(nn.Module):
    """A heatmap head trained with mmpose's MSRA codec, its maps resampled onto the UDP grid."""

    def __init__(self, head: HeatmapHead, input_size: Sequence[int]):
        super().__init__()
        self.head = head
        self.num_keypoints = head.num_keypoints
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        maps = self.head(feat)
        (hh, hw), (w, h) = maps.shape[-2:], self.input_size
        # UDP pixel u sits at crop pixel u (w - 1) / (hw - 1); MSRA reads that crop pixel at
        # u' = x hw / w. grid_sample with align_corners=True takes -1..1 over 0..hw-1.
        ux = torch.arange(hw, device=maps.device, dtype=torch.float32) * (w - 1) / (hw - 1)
        uy = torch.arange(hh, device=maps.device, dtype=torch.float32) * (h - 1) / (hh - 1)
        gx = 2 * (ux * hw / w) / (hw - 1) - 1
        gy = 2 * (uy * hh / h) / (hh - 1) - 1
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)
        grid = grid.unsqueeze(0).expand(maps.shape[0], -1, -1, -1)
        return F.grid_sample(maps.float(), grid, mode="bilinear", align_corners=True)

    def decode(self, out, input_size, heatmap_size=None):
        return self.head.decode(out, input_size, heatmap_size)

    def flip_back(self, out, flip_index, input_size=None):
        return self.head.flip_back(out, flip_index, input_size)


def load_mmpose_heatmap_model(
    path, input_size: Sequence[int], heatmap_size: Sequence[int], udp: bool | None = None
) -> PoseModel:
    """The checkpoint at `path` as a `PoseModel` with one head, "hm", in eval mode.

    `udp` says whether it was trained with UDP heatmaps (None: when its file name
    contains "udp"); if not, its maps are resampled onto the kit's UDP grid.
    """
    path = Path(path)
    original = read_state_dict(path)
    state = to_kit_names(original, path)
    mmpose_key = dict(zip(state, original))  # the file's own name of each key, for messages
    name, num_deconv, channels, num_keypoints = _architecture(state, path)
    backbone = build_backbone(name, "none")
    head = HeatmapHead(backbone.out_channels, num_keypoints, num_deconv, channels, heatmap_size)
    model = PoseModel(backbone, {"hm": head}, input_size, heatmap_size)
    expected = model.state_dict()
    for key, value in state.items():
        if key not in expected:
            raise CheckpointError(
                f"{path}: key {mmpose_key[key]!r} has no place in a SimpleBaseline {name} with "
                f"{num_deconv} deconv layers of {channels} channels. {FIX}"
            )
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{path}: key {mmpose_key[key]!r} has shape {list(value.shape)}, a "
                f"SimpleBaseline {name} with {num_deconv} deconv layers of {channels} channels "
                f"and {num_keypoints} keypoints expects {list(expected[key].shape)}. {FIX}"
            )
    missing = [k for k in expected if k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: {len(missing)} tensor(s) of a SimpleBaseline {name} are missing, the "
            f"first {_as_mmpose_1x(missing[0])!r}. {FIX}"
        )
    model.load_state_dict(state)
    if udp is None:
        udp = "udp" in path.name.lower()
    if not udp:
        model.heads["hm"] = UDPResampledHead(head, input_size)
    return model.eval()


def _as_mmpose_1x(key: str) -> str:
    """A kit key as mmpose 1.x names it, for messages."""
    return "head." + key[len("heads.hm.") :] if key.startswith("heads.hm.") else key
