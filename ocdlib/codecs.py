"""Codecs: keypoints <-> regression labels and UDP heatmaps, kept apart from the network.

Conventions (docs/ARCHITECTURE.md):

- crop pixels: pixel centres at integers, x in [0, W-1] for a crop of width W;
- normalised crop coordinates: n = x / W, m = y / H (regression labels and every
  head's decoded output);
- heatmap pixels (UDP): u = x * (Wh-1) / (W-1), v = y * (Hh-1) / (H-1).

Per-sample encoding is numpy (it runs in data-loader workers; `encode_batch` is the
same for a whole batch in torch, for a pipeline on the model's device); decoding and
rendering are batched torch (they run on the model's device). The heatmap
Gaussian is untruncated: exp(-((u-u0)^2 + (v-v0)^2) / (2 sigma^2)) over the
whole map, with peak 1 at the exact sub-pixel location. mmpose cuts it at 3
sigma; keeping the tails (below 0.011) costs nothing in training and makes
`render_heatmaps` (differentiable) equal the encoder, and the log of the map
exactly quadratic, which the sub-pixel decoder relies on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

# ----------------------------------------------------------------------------- coordinates


def _udp_factor(input_size: Sequence[int], heatmap_size: Sequence[int]) -> tuple[float, float]:
    """Crop pixels per heatmap pixel along x and y (UDP: pixel-centre spans)."""
    return (
        (input_size[0] - 1) / (heatmap_size[0] - 1),
        (input_size[1] - 1) / (heatmap_size[1] - 1),
    )


def _scale_xy(coords, sx: float, sy: float):
    """coords (..., 2) with x times `sx` and y times `sy`. On a tensor the factors stay
    Python numbers: a factor tensor made on the GPU every call is a copy from the host,
    and that copy waits for all the work queued before it."""
    if isinstance(coords, torch.Tensor):
        return torch.stack((coords[..., 0] * sx, coords[..., 1] * sy), dim=-1)
    return coords * np.asarray((sx, sy), dtype=np.float64)


def heatmap_to_normalized(coords_hm, input_size: Sequence[int], heatmap_size: Sequence[int]):
    """Heatmap pixels (..., 2) -> normalised crop coordinates. numpy or torch."""
    fx, fy = _udp_factor(input_size, heatmap_size)
    return _scale_xy(coords_hm, fx / input_size[0], fy / input_size[1])


def normalized_to_heatmap(coords_norm, input_size: Sequence[int], heatmap_size: Sequence[int]):
    """Normalised crop coordinates (..., 2) -> heatmap pixels. numpy or torch."""
    fx, fy = _udp_factor(input_size, heatmap_size)
    return _scale_xy(coords_norm, input_size[0] / fx, input_size[1] / fy)


# ----------------------------------------------------------------------------- encoding


def _inside_crop(keypoints: np.ndarray, input_size: Sequence[int]) -> np.ndarray:
    """Whether each keypoint's normalised coordinates lie in [0, 1] (mmpose RegressionLabel)."""
    n = keypoints / np.asarray(input_size, dtype=np.float32)
    return np.all((n >= 0) & (n <= 1), axis=-1)


def encode_regression(
    keypoints: np.ndarray, visible: np.ndarray, input_size: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Crop-pixel keypoints (K, 2) -> normalised labels (K, 2) and weights (K,).

    Weight 1 where the keypoint is labelled (visible > 0) and its normalised
    coordinates lie in [0, 1], else 0.
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    labels = keypoints / np.asarray(input_size, dtype=np.float32)
    ok = (np.asarray(visible) > 0) & _inside_crop(keypoints, input_size)
    return labels.astype(np.float32), ok.astype(np.float32)


def encode_heatmaps(
    keypoints: np.ndarray,
    visible: np.ndarray,
    input_size: Sequence[int],
    heatmap_size: Sequence[int],
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Crop-pixel keypoints (K, 2) -> UDP Gaussian heatmaps (K, Hh, Wh) and weights (K,).

    The Gaussian has peak 1 at the keypoint's exact sub-pixel heatmap location.
    Weight as in `encode_regression`, and also 0 where the 3-sigma window of the
    Gaussian lies wholly off the map (mmpose's rule); maps of weight-0 keypoints
    are all zero.
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    wh, hh = int(heatmap_size[0]), int(heatmap_size[1])
    fx, fy = _udp_factor(input_size, heatmap_size)
    mu = keypoints / np.array([fx, fy], dtype=np.float32)
    radius = 3 * sigma
    on_map = (
        (mu[:, 0] + radius >= 0)
        & (mu[:, 0] - radius <= wh - 1)
        & (mu[:, 1] + radius >= 0)
        & (mu[:, 1] - radius <= hh - 1)
    )
    weights = (np.asarray(visible) > 0) & _inside_crop(keypoints, input_size) & on_map
    # Separable: exp(-(dx^2 + dy^2) / 2s^2) = exp(-dx^2 / 2s^2) * exp(-dy^2 / 2s^2).
    inv = -0.5 / (sigma * sigma)
    gx = np.exp(inv * (np.arange(wh, dtype=np.float32)[None, :] - mu[:, :1]) ** 2)
    gy = np.exp(inv * (np.arange(hh, dtype=np.float32)[None, :] - mu[:, 1:]) ** 2)
    gy *= weights[:, None]
    heatmaps = gy[:, :, None] * gx[:, None, :]
    return heatmaps.astype(np.float32), weights.astype(np.float32)


def encode_batch(
    keypoints: torch.Tensor,
    visible: torch.Tensor,
    input_size: Sequence[int],
    heatmap_size: Sequence[int] | None = None,
    sigma: float = 2.0,
) -> dict[str, torch.Tensor]:
    """`encode_regression` and `encode_heatmaps` for a whole batch, on the keypoints'
    device: crop-pixel keypoints (B, K, 2) and visibility (B, K) -> reg_target,
    reg_weight and, with `heatmap_size`, hm_target (B, K, Hh, Wh) and hm_weight; the
    same rules, the same values (to float rounding) as the per-sample encoders."""
    keypoints = keypoints.float()
    w, h = float(input_size[0]), float(input_size[1])
    labels = torch.stack((keypoints[..., 0] / w, keypoints[..., 1] / h), dim=-1)
    inside = ((labels >= 0) & (labels <= 1)).all(dim=-1)
    ok = (visible > 0) & inside
    out = {"reg_target": labels, "reg_weight": ok.float()}
    if heatmap_size is None:
        return out
    wh, hh = int(heatmap_size[0]), int(heatmap_size[1])
    fx, fy = _udp_factor(input_size, heatmap_size)
    mu = torch.stack((keypoints[..., 0] / fx, keypoints[..., 1] / fy), dim=-1)
    radius = 3 * sigma
    on_map = (
        (mu[..., 0] + radius >= 0)
        & (mu[..., 0] - radius <= wh - 1)
        & (mu[..., 1] + radius >= 0)
        & (mu[..., 1] - radius <= hh - 1)
    )
    weights = (ok & on_map).float()
    out["hm_target"] = render_heatmaps(mu, heatmap_size, sigma) * weights[..., None, None]
    out["hm_weight"] = weights
    return out


def render_heatmaps(
    coords: torch.Tensor, heatmap_size: Sequence[int], sigma: float
) -> torch.Tensor:
    """Differentiable Gaussians at heatmap-pixel coords (N, K, 2) -> (N, K, Hh, Wh).

    Same formula as `encode_heatmaps` (peak 1 at the sub-pixel location, no
    truncation), so rendering the ground truth reproduces the encoded targets.
    Gradients flow to `coords`.
    """
    wh, hh = int(heatmap_size[0]), int(heatmap_size[1])
    xs = torch.arange(wh, dtype=coords.dtype, device=coords.device)
    ys = torch.arange(hh, dtype=coords.dtype, device=coords.device)
    inv = -0.5 / (sigma * sigma)
    gx = torch.exp(inv * (xs - coords[..., 0:1]) ** 2)  # (N, K, Wh)
    gy = torch.exp(inv * (ys - coords[..., 1:2]) ** 2)  # (N, K, Hh)
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)


# ----------------------------------------------------------------------------- decoding


def _gaussian_kernel1d(size: int, dtype, device) -> torch.Tensor:
    # OpenCV's sigma for a given kernel size (what mmpose's cv2.GaussianBlur(k, 0) uses).
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _band(n: int, g: torch.Tensor) -> torch.Tensor:
    """(n, n) matrix B with B[i, j] = g[j - i + len(g) // 2] where that index exists."""
    pad = g.numel() // 2
    i = torch.arange(n, device=g.device)
    offset = i.view(1, n) - i.view(n, 1) + pad
    inside = (offset >= 0) & (offset < g.numel())
    return torch.where(inside, g[offset.clamp(0, g.numel() - 1)], g.new_zeros(()))


def gaussian_blur(heatmaps: torch.Tensor, kernel: int) -> torch.Tensor:
    """Separable Gaussian blur of (N, K, H, W) maps, zero padded, each map's max kept.

    Rescaling to the original maximum keeps the log heatmap's curvature around
    the peak meaningful for the Taylor step.
    """
    h, w = heatmaps.shape[-2:]
    g = _gaussian_kernel1d(kernel, heatmaps.dtype, heatmaps.device)
    # Each pass is a product with a banded (Toeplitz) matrix whose rows stop at the
    # border, which is the zero-padded convolution. On a CPU, batched matrix products
    # are far faster than a one-channel conv2d over N*K small maps
    # (benchmarks/bench_heatmap_blur.py).
    x = _band(h, g) @ heatmaps @ _band(w, g).T
    old_max = heatmaps.amax(dim=(2, 3), keepdim=True)
    new_max = x.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    return x * (old_max / new_max)


def decode_heatmaps(
    heatmaps: torch.Tensor, refine: bool = True, blur_kernel: int = 11
) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps (N, K, Hh, Wh) -> keypoints (N, K, 2) in heatmap pixels, scores (N, K).

    Argmax, then the DARK sub-pixel step (Zhang et al., CVPR 2020, as in
    mmpose's UDP decoder): blur the map with a Gaussian (`blur_kernel` pixels,
    OpenCV's sigma for that size, as mmpose's 11 for sigma-2 maps; 0 disables
    it), take its log, and move by one Newton step -H^-1 g, with gradient g and
    Hessian H from central differences. The log of a Gaussian peak is
    quadratic, and a blurred Gaussian is again a Gaussian with the same centre,
    so the step lands on the sub-pixel maximum.

    Two border cases, where mmpose's decoder is biased: the blur's zero padding
    pulls peaks near the border inwards, so within `blur_kernel // 2 + 1` pixels
    of the border the step uses the unblurred map; and a peak on the border row
    or column is refined from the nearest interior pixel, where central
    differences exist. The refined point stays within one pixel of the argmax;
    the step is skipped where the Hessian is not negative definite (no peak).
    Score = the map's maximum before blurring. Runs without gradients.
    """
    with torch.no_grad():
        n, k, h, w = heatmaps.shape
        scores, idx = heatmaps.reshape(n, k, h * w).max(dim=-1)
        ax, ay = idx % w, idx // w
        coords = torch.stack([ax, ay], dim=-1).float()
        scores = scores.float()
        if not refine or h < 3 or w < 3:
            return coords, scores

        maps = heatmaps.float()
        log_raw = maps.clamp(1e-3, 50.0).log().reshape(n, k, h * w)
        pad = blur_kernel // 2 if blur_kernel and blur_kernel > 1 else 0
        if pad:
            log_blur = gaussian_blur(maps, blur_kernel).clamp(1e-3, 50.0).log()
            log_blur = log_blur.reshape(n, k, h * w)
        # Evaluate derivatives at the argmax, moved off the border row/column.
        ex, ey = ax.clamp(1, w - 2), ay.clamp(1, h - 2)
        interior = (ex > pad) & (ex < w - 1 - pad) & (ey > pad) & (ey < h - 1 - pad)

        def at(dx: int, dy: int) -> torch.Tensor:
            flat = ((ey + dy) * w + ex + dx).unsqueeze(-1)
            value = log_raw.gather(-1, flat).squeeze(-1)
            if pad:
                value = torch.where(interior, log_blur.gather(-1, flat).squeeze(-1), value)
            return value

        c = at(0, 0)
        gx = 0.5 * (at(1, 0) - at(-1, 0))
        gy = 0.5 * (at(0, 1) - at(0, -1))
        hxx = at(1, 0) - 2 * c + at(-1, 0)
        hyy = at(0, 1) - 2 * c + at(0, -1)
        hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = hxx * hyy - hxy * hxy
        ok = (det > 1e-6) & (hxx < 0)
        safe = torch.where(ok, det, torch.ones_like(det))
        # -H^-1 g with H = [[hxx, hxy], [hxy, hyy]].
        dx = -(hyy * gx - hxy * gy) / safe
        dy = -(hxx * gy - hxy * gx) / safe
        refined = torch.stack([ex + dx, ey + dy], dim=-1)
        refined = torch.minimum(torch.maximum(refined, coords - 1.0), coords + 1.0)
        return torch.where(ok.unsqueeze(-1), refined, coords), scores


def soft_argmax(heatmaps: torch.Tensor, beta: float = 20.0) -> torch.Tensor:
    """Differentiable integral decode: heatmaps (N, K, H, W) -> expected (N, K, 2) in heatmap px.

    A spatial softmax of `beta * heatmap`, then the expected pixel position.
    `beta` is an inverse temperature for maps that peak near 1 over a ~0
    background: each background pixel weighs exp(-beta) against the peak, so
    beta = 20 keeps a 256x192 map's background below 1e-4 of the peak's mass,
    while the peak stays ~sigma / sqrt(beta) wide, soft enough to pass
    gradients and to interpolate between pixels. Larger beta tends to argmax.
    """
    n, k, h, w = heatmaps.shape
    prob = torch.softmax(beta * heatmaps.reshape(n, k, h * w), dim=-1).reshape(n, k, h, w)
    xs = torch.arange(w, dtype=prob.dtype, device=prob.device)
    ys = torch.arange(h, dtype=prob.dtype, device=prob.device)
    x = (prob.sum(dim=2) * xs).sum(dim=-1)
    y = (prob.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1)


# ----------------------------------------------------------------------------- flip test


def flip_coords_normalized(coords, flip_index, input_size: Sequence[int]):
    """Mirror normalised crop coords (N, K, 2) of a flipped crop back, then swap left/right.

    In crop pixels the flip is x -> W-1-x, so n -> (W-1)/W - n; keypoint k of
    the result is the mirror of keypoint flip_index[k]. numpy or torch.
    """
    w = float(input_size[0])
    if isinstance(coords, torch.Tensor):
        out = coords.clone()
        index = torch.as_tensor(np.asarray(flip_index), dtype=torch.long, device=coords.device)
    else:
        out = np.array(coords, copy=True)
        index = np.asarray(flip_index)
    out[..., 0] = (w - 1) / w - out[..., 0]
    return out[..., index, :]


def flip_heatmaps(heatmaps: torch.Tensor, flip_index) -> torch.Tensor:
    """Mirror heatmaps (N, K, Hh, Wh) along the width and swap left/right channels.

    With UDP the flip u -> Wh-1-u is exactly the array reversal, so no
    one-pixel shift is needed: flipping an encoded heatmap equals encoding the
    flipped keypoints.
    """
    index = torch.as_tensor(np.asarray(flip_index), dtype=torch.long, device=heatmaps.device)
    return heatmaps.flip(-1).index_select(1, index)
