"""Pose heads: each owns its forward, its decode to normalised coordinates and its flip-back.

A head maps the backbone's last feature map to its raw output:

- `RegressionHead` (DeepPose): (N, K, 2) normalised crop coordinates.
- `RLEHead`: (N, K, 4) = (mu_x, mu_y, sigma_x, sigma_y), sigma in (0, 1).
- `HeatmapHead` (SimpleBaseline): (N, K, Hh, Wh) heatmaps.

`decode(out, input_size, heatmap_size)` turns a raw output into
`(coords (N, K, 2) normalised, scores (N, K))`; `flip_back(out, flip_index,
input_size)` maps the raw output of a horizontally flipped crop back into the
original crop's frame, so that flip test averages raw outputs and then decodes
(for heatmaps that is mmpose's averaging of heatmaps before decoding; for
regression heads decoding is linear, so it equals averaging coordinates).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import codecs
from ..errors import ConfigError


def _as_index(flip_index, device) -> torch.Tensor:
    return torch.as_tensor(flip_index, dtype=torch.long, device=device)


def _float32_layer(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a head's last layer in float32 even under autocast.

    bfloat16 keeps 8 bits of mantissa: a normalised coordinate near 0.7 would
    be rounded to steps of 1/256 of the crop (0.75 px at 192 px), and heatmap
    values to 0.4 %, which the sub-pixel decoder would read as noise. The last
    layer is a tiny share of the cost.
    """
    with torch.autocast(x.device.type, enabled=False):
        return layer(x.float())


class RegressionHead(nn.Module):
    """DeepPose: global average pool, then one FC layer to (x, y) per keypoint."""

    def __init__(self, in_channels: int, num_keypoints: int):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.fc = nn.Linear(in_channels, num_keypoints * 2)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(feat, 1).flatten(1)
        return _float32_layer(self.fc, x).view(-1, self.num_keypoints, 2)

    def decode(self, out, input_size=None, heatmap_size=None):
        """Coordinates are the output itself; scores are 1 (DeepPose has no confidence)."""
        return out, out.new_ones(out.shape[:2])

    def flip_back(self, out, flip_index, input_size):
        return codecs.flip_coords_normalized(out, flip_index, input_size)


class RLEHead(nn.Module):
    """RLE: global average pool, then FC layers for mu (2K) and sigma (2K, sigmoid)."""

    def __init__(self, in_channels: int, num_keypoints: int):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.fc_mu = nn.Linear(in_channels, num_keypoints * 2)
        self.fc_sigma = nn.Linear(in_channels, num_keypoints * 2)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(feat, 1).flatten(1)
        mu = _float32_layer(self.fc_mu, x).view(-1, self.num_keypoints, 2)
        sigma = torch.sigmoid(_float32_layer(self.fc_sigma, x)).view(-1, self.num_keypoints, 2)
        return torch.cat([mu, sigma], dim=-1)

    def decode(self, out, input_size=None, heatmap_size=None):
        """mu are the coordinates; score = 1 - mean(sigma) (mmpose's RLE convention)."""
        return out[..., :2], 1.0 - out[..., 2:].mean(dim=-1)

    def flip_back(self, out, flip_index, input_size):
        mu = codecs.flip_coords_normalized(out[..., :2], flip_index, input_size)
        sigma = out[..., 2:].index_select(1, _as_index(flip_index, out.device))
        return torch.cat([mu, sigma], dim=-1)


class HeatmapHead(nn.Module):
    """SimpleBaseline: `num_deconv` x [4x4 stride-2 deconv, BN, ReLU], then a 1x1 conv to K maps.

    The output always has `heatmap_size` (Wh, Hh) and is float32. Where the deconvolutions do
    not reach it exactly (a reduced head with fewer than 3 deconvs, or
    `num_deconv=0`, where the 1x1 conv reads the backbone map directly, or an
    input size not divisible by 32), the maps are resampled bilinearly with
    `align_corners=True`, which keeps the UDP convention that the first and
    last pixel centres of the map span the crop.
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        num_deconv: int = 3,
        deconv_channels: int = 256,
        heatmap_size: Sequence[int] = (48, 64),
    ):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_deconv):
            layers += [
                nn.ConvTranspose2d(channels, deconv_channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(deconv_channels),
                nn.ReLU(inplace=True),
            ]
            channels = deconv_channels
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(channels, num_keypoints, kernel_size=1)
        self._init_weights()

    def _init_weights(self) -> None:
        # SimpleBaseline / mmpose: small normal init keeps the first heatmaps near 0.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        out = _float32_layer(self.final_layer, self.deconv_layers(feat))
        w, h = self.heatmap_size
        if out.shape[-2:] != (h, w):
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=True)
        return out

    def decode(self, out, input_size, heatmap_size=None):
        """Argmax with sub-pixel refinement; score = heatmap maximum (codecs.decode_heatmaps)."""
        size = (out.shape[-1], out.shape[-2])
        if heatmap_size is not None and tuple(heatmap_size) != size:
            raise ConfigError(f"heatmaps are {size} (W, H), expected heatmap_size {heatmap_size}")
        coords, scores = codecs.decode_heatmaps(out, refine=True)
        return codecs.heatmap_to_normalized(coords, input_size, size), scores

    def flip_back(self, out, flip_index, input_size=None):
        return codecs.flip_heatmaps(out, flip_index)
