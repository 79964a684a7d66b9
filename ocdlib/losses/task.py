"""Task losses: regression (SmoothL1, L1, RLE with its RealNVP flow) and heatmap MSE.

Conventions (docs/METHOD.md, section 'The losses'):

- Regression losses are mmpose's: element-wise loss times the keypoint weight,
  then the mean over all N*K*2 entries (SmoothL1 with beta 1 on normalised
  coordinates, as mmpose's DeepPose). RLE follows mmpose's RLELoss: summed
  over keypoints and both axes, averaged over the batch.
- `HeatmapMSELoss` is mmpose 1.x's KeypointMSELoss with target weights (the
  mean of w * (H - G)^2 over every pixel, no factor 0.5), times
  `hm_loss_scale`, because a per-pixel MSE of Gaussians is ~1e-3 and would
  otherwise be drowned by the regression loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..configs import CHOICES
from ..errors import ConfigError

REG_LOSSES = CHOICES["loss.reg_loss"]


def _expand_weight(weight: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """(N, K) keypoint weights broadcast over the trailing dims of `like`."""
    if weight is None:
        return torch.ones_like(like)
    weight = weight.to(like.dtype)
    return weight.view(*weight.shape, *([1] * (like.dim() - weight.dim())))


class SmoothL1Loss(nn.Module):
    """mmpose's DeepPose loss: smooth L1 (beta 1) times keypoint weight, mean over all entries."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def forward(self, pred, target, weight=None):
        pred, target = pred.float(), target.float()
        loss = F.smooth_l1_loss(pred, target, reduction="none", beta=self.beta)
        return (loss * _expand_weight(weight, loss)).mean()


class L1Loss(nn.Module):
    """|pred - target| times keypoint weight, mean over all entries."""

    def forward(self, pred, target, weight=None):
        loss = (pred.float() - target.float()).abs()
        return (loss * _expand_weight(weight, loss)).mean()


class HeatmapMSELoss(nn.Module):
    """Target-weighted heatmap MSE (mean over all pixels of w_k (H - G)^2), times `scale`."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, pred, target, weight=None):
        loss = (pred.float() - target.float()) ** 2
        return (loss * _expand_weight(weight, loss)).mean() * self.scale


class RealNVP(nn.Module):
    """A 2-D RealNVP flow: the learned density of RLE's normalised error.

    Six affine coupling layers with alternating masks; each has a scale net and
    a translation net (2 -> 64 -> 64 -> 2, LeakyReLU; tanh bounds the scale),
    initialised near the identity (Xavier, gain 0.01), over a standard normal
    prior. The same shape as the RLE paper's flow and mmpose's.
    """

    def __init__(self, num_layers: int = 6, hidden: int = 64):
        super().__init__()
        masks = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).repeat(num_layers // 2, 1)
        self.register_buffer("masks", masks)

        def mlp(bounded: bool) -> nn.Sequential:
            layers = [nn.Linear(2, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden)]
            layers += [nn.LeakyReLU(), nn.Linear(hidden, 2)] + ([nn.Tanh()] if bounded else [])
            return nn.Sequential(*layers)

        self.scale_nets = nn.ModuleList(mlp(True) for _ in range(num_layers))
        self.shift_nets = nn.ModuleList(mlp(False) for _ in range(num_layers))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, gain=0.01)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log density of points x (M, 2): invert the couplings down to the prior."""
        z = x
        log_det = x.new_zeros(x.shape[0])
        for i in reversed(range(len(self.masks))):
            keep = self.masks[i]
            z_kept = z * keep
            s = self.scale_nets[i](z_kept) * (1 - keep)
            t = self.shift_nets[i](z_kept) * (1 - keep)
            z = z_kept + (1 - keep) * (z - t) * torch.exp(-s)
            log_det = log_det - s.sum(dim=1)
        log_prior = -0.5 * (z**2).sum(dim=1) - math.log(2 * math.pi)
        return log_prior + log_det


class RLELoss(nn.Module):
    """Residual Log-likelihood Estimation (Li et al., ICCV 2021), Laplace residual.

    Input is the RLE head's (N, K, 4) output (mu_x, mu_y, sigma_x, sigma_y) with
    sigma in (0, 1). The error (mu - y) / sigma is scored by a Laplace density
    times the flow's learned correction; the flow trains with the model (its
    parameters belong to this loss, hence to the Objective). Sigma is clamped
    to [1e-6, 1] so that log(sigma) and the division stay finite as the
    sigmoid saturates; everything runs in float32 with autocast off.
    """

    SIGMA_MIN = 1e-6

    def __init__(self):
        super().__init__()
        self.flow = RealNVP()

    def forward(self, pred, target, weight=None):
        with torch.autocast(pred.device.type, enabled=False):
            pred, target = pred.float(), target.float()
            mu, sigma = pred[..., :2], pred[..., 2:4].clamp(self.SIGMA_MIN, 1.0)
            error = (mu - target) / sigma
            log_phi = self.flow.log_prob(error.reshape(-1, 2)).view(*error.shape[:-1], 1)
            nf_loss = torch.log(sigma) - log_phi
            laplace = torch.log(2 * sigma) + error.abs()
            loss = (nf_loss + laplace) * _expand_weight(weight, error)
            return loss.sum() / pred.shape[0]


def build_reg_loss(name: str) -> nn.Module:
    if name == "smooth_l1":
        return SmoothL1Loss()
    if name == "l1":
        return L1Loss()
    if name == "rle":
        return RLELoss()
    raise ConfigError(f"loss.reg_loss={name!r} is unknown; choose one of {list(REG_LOSSES)}")
