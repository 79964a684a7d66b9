"""Top-down crops cut for a whole batch at once, on whatever device holds the images.

The per-sample path (`transforms.warp_image`) warps one image at a time with PIL on
the CPU. Here the same 2x3 maps (image -> crop, UDP, flips included: a sample's
`CropGeometry.image_warp`) cut every crop of a batch in one `grid_sample` call, so
the pixel work can run where the model runs. The geometry stays per sample and in
numpy; only the pixels move.

Conventions are this kit's: pixel centres at integer coordinates, bilinear
sampling, black outside the image, no antialiasing. With `align_corners=True`
grid_sample puts -1 and +1 on the centres of the first and last pixel, which is the
same convention, so crop pixel q samples the image at `inverse(warp) @ q` exactly as
the PIL path does. How far the two paths' crops differ is measured by
tests/test_batched_warp.py and by benchmarks/bench_batched_warp.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .transforms import IMAGENET_MEAN, IMAGENET_STD, compose_affine, invert_affine


def stack_images(images: Sequence[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 images of any sizes -> one (B, 3, Hmax, Wmax) uint8 tensor.

    Smaller images are padded with black at the right and bottom: the warp reads
    black outside an image anyway, and the maps address pixels from the top left,
    so padding changes no crop."""
    if not images:
        raise ValueError("stack_images needs at least one image")
    tensors = []
    for i, im in enumerate(images):
        if im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"image {i}: expected (H, W, 3) uint8, got shape {im.shape}")
        with warnings.catch_warnings():  # a PIL image's array is read-only; only read here
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(np.ascontiguousarray(im)).to(device, non_blocking=True)
        tensors.append(t.permute(2, 0, 1))
    return pad_stack(tensors)


def pad_stack(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """(3, H, W) uint8 images of any sizes, on one device -> (B, 3, Hmax, Wmax), padded
    with black at the right and bottom (see `stack_images`)."""
    h = max(int(im.shape[1]) for im in images)
    w = max(int(im.shape[2]) for im in images)
    out = images[0].new_zeros((len(images), 3, h, w))
    for i, im in enumerate(images):
        out[i, :, : im.shape[1], : im.shape[2]] = im
    return out


def sampling_grid(
    warps: np.ndarray | torch.Tensor,
    image_size: Sequence[int],
    output_size: Sequence[int],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The (B, h, w, 2) grid_sample grid of the 2x3 maps `warps` (B, 2, 3), image ->
    crop, for images of `image_size` (W, H) and crops of `output_size` (W, H).

    Only the B small 2x3 matrices are computed on the host (in float64); the grid
    itself is made on `device` by `affine_grid`."""
    warps = np.asarray(warps.cpu() if isinstance(warps, torch.Tensor) else warps, np.float64)
    if warps.ndim != 3 or warps.shape[1:] != (2, 3):
        raise ValueError(f"warps: expected (B, 2, 3) affine maps, got shape {warps.shape}")
    W, H = (int(s) for s in image_size)
    w, h = (int(s) for s in output_size)
    # grid_sample's unit square, align_corners=True: -1 and +1 on the first and last
    # pixel centres. Crop unit -> crop pixels -> (inverse warp) image pixels -> image unit.
    from_unit = np.array([[(w - 1) / 2, 0.0, (w - 1) / 2], [0.0, (h - 1) / 2, (h - 1) / 2]])
    to_unit = np.array([[2.0 / max(W - 1, 1), 0.0, -1.0], [0.0, 2.0 / max(H - 1, 1), -1.0]])
    theta = np.stack(
        [compose_affine(to_unit, compose_affine(invert_affine(m), from_unit)) for m in warps]
    )
    theta_t = torch.from_numpy(theta).to(device=device, dtype=torch.float32)
    return F.affine_grid(theta_t, [len(warps), 3, h, w], align_corners=True)


def warp_batch(
    images: torch.Tensor,
    warps: np.ndarray | torch.Tensor,
    output_size: Sequence[int],
    image_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cut one crop per map: `images` (N, 3, H, W) uint8 or float, `warps` (B, 2, 3)
    image -> crop maps, crop b taken from image `image_index[b]` (default: image b).
    Returns (B, 3, h, w) float32 in gray levels (0..255), on the images' device."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected (N, 3, H, W), got shape {tuple(images.shape)}")
    source = images if image_index is None else images[image_index.to(images.device)]
    H, W = images.shape[-2:]
    grid = sampling_grid(warps, (W, H), output_size, images.device)
    if len(grid) != len(source):
        raise ValueError(f"{len(grid)} warps for {len(source)} images")
    return F.grid_sample(
        source.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )


def normalize_batch(crops: torch.Tensor) -> torch.Tensor:
    """(B, 3, h, w) gray levels -> the model's input, as `transforms.normalize_image`."""
    mean = torch.tensor(IMAGENET_MEAN, device=crops.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, device=crops.device).view(1, 3, 1, 1) * 255.0
    return (crops - mean) / std
