"""Top-down geometry and training augmentations (mmpose 1.x conventions).

Coordinates follow docs/ARCHITECTURE.md: pixel centres sit at integer
coordinates, so an image of width w spans x in [0, w-1], and the warp into the
crop is the unbiased (UDP) one: the box width `scale_w` maps onto the `W-1`
pixel-centre span of the crop. Under this convention a point moved with
`apply_affine(points, M)` lands on the same image content as `warp_image(img, M)`
shows there, with no half-pixel offsets anywhere.

A person box is carried as `center` (2,) and `scale` (2,) = padded (w, h) in
image pixels. The order of operations mirrors mmpose's top-down pipeline:
box -> (center, padded scale) -> flip -> half-body -> random shift/scale/rotate
-> widen to the input aspect ratio -> affine warp -> ImageNet normalisation.
All randomness comes from an explicit `numpy.random.Generator`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- boxes


def bbox_xywh_to_center_scale(bbox_xywh, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Box (x, y, w, h) -> centre (2,) and padded size (2,), aspect ratio untouched."""
    x, y, w, h = (float(v) for v in bbox_xywh)
    center = np.array([x + 0.5 * w, y + 0.5 * h], dtype=np.float32)
    scale = np.array([w * padding, h * padding], dtype=np.float32)
    return center, scale


def fix_aspect_ratio(scale, aspect_ratio: float) -> np.ndarray:
    """Grow the shorter side of `scale` (w, h) so that w / h == aspect_ratio.

    Growing (never shrinking) keeps the whole box in the crop.
    """
    w, h = float(scale[0]), float(scale[1])
    if w > h * aspect_ratio:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return np.array([w, h], dtype=np.float32)


def box_to_center_scale(
    bbox_xywh, aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """Box (x, y, w, h) -> centre and scale widened to `aspect_ratio` (W/H) and padded.

    Widening then padding equals mmpose's padding then widening (both are linear).
    """
    center, scale = bbox_xywh_to_center_scale(bbox_xywh, padding)
    return center, fix_aspect_ratio(scale, aspect_ratio)


# ----------------------------------------------------------------------------- affine maps


def get_warp_matrix(center, scale, rot_deg: float, output_size: Sequence[int]) -> np.ndarray:
    """2x3 UDP affine map from image pixels to crop pixels.

    The box of size `scale` around `center`, rotated by `rot_deg` degrees, maps
    onto the crop of `output_size` (W, H) such that the box edges land on the
    first and last pixel centres (0 and W-1): the unbiased data processing of
    Huang et al. (UDP), as mmpose's `get_udp_warp_matrix`. The box centre maps
    to ((W-1)/2, (H-1)/2).
    """
    cx, cy = float(center[0]), float(center[1])
    sw, sh = float(scale[0]), float(scale[1])
    sx = (output_size[0] - 1) / sw
    sy = (output_size[1] - 1) / sh
    rad = np.deg2rad(rot_deg)
    cos, sin = np.cos(rad), np.sin(rad)
    # crop = S @ (R @ (p - c) + scale / 2)
    return np.array(
        [
            [cos * sx, -sin * sx, sx * (-cos * cx + sin * cy + 0.5 * sw)],
            [sin * sy, cos * sy, sy * (-sin * cx - cos * cy + 0.5 * sh)],
        ],
        dtype=np.float64,
    )


def apply_affine(points, M: np.ndarray) -> np.ndarray:
    """Apply the 2x3 map `M` to points (..., 2); returns float32 of the same shape."""
    p = np.asarray(points, dtype=np.float64)
    out = p @ M[:, :2].T + M[:, 2]
    return out.astype(np.float32)


def invert_affine(M: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine map."""
    A = np.asarray(M, dtype=np.float64)[:, :2]
    t = np.asarray(M, dtype=np.float64)[:, 2]
    Ai = np.linalg.inv(A)
    return np.concatenate([Ai, (-Ai @ t)[:, None]], axis=1)


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 map `p -> outer(inner(p))`."""
    o = np.vstack([outer, [0.0, 0.0, 1.0]])
    i = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (o @ i)[:2]


def flip_matrix(img_width: int) -> np.ndarray:
    """2x3 map of a horizontal image flip: x -> img_width - 1 - x (pixel centres)."""
    return np.array([[-1.0, 0.0, img_width - 1.0], [0.0, 1.0, 0.0]])


def warp_image(img, M: np.ndarray, output_size: Sequence[int]) -> np.ndarray:
    """Warp an RGB image with the 2x3 map `M` (image -> crop) into (H, W, 3) uint8.

    Bilinear sampling, black outside the image, no antialiasing (as
    cv2.warpAffine). `img` is an (h, w, 3) uint8 array or a PIL image; a PIL
    image avoids a copy, which matters on a small CPU.

    PIL places pixel centres at i + 0.5 and asks for the crop -> image map.
    With centres at integers (this kit's convention) the image point sampled
    for crop pixel q is `Minv @ q`; PIL evaluates `A @ (q + 0.5) + c` and then
    samples at that value minus 0.5, so c = t - A @ (0.5, 0.5) + 0.5.
    """
    pil = img if isinstance(img, Image.Image) else Image.fromarray(np.ascontiguousarray(img))
    inv = invert_affine(M)
    A, t = inv[:, :2], inv[:, 2]
    c = t - A.sum(axis=1) * 0.5 + 0.5
    coeffs = (A[0, 0], A[0, 1], c[0], A[1, 0], A[1, 1], c[1])
    out = pil.transform(
        (int(output_size[0]), int(output_size[1])),
        Image.Transform.AFFINE,
        coeffs,
        resample=Image.Resampling.BILINEAR,
    )
    return np.array(out)  # writable, so torch.from_numpy can share it


def jpeg_draft(image: Image.Image, warp: np.ndarray) -> np.ndarray:
    """Let a JPEG not yet decoded decode at 1/2, 1/4 or 1/8 scale where the crop needs no
    more; return the 2x3 map from the pixels it will decode to the crop.

    The crop steps `step` image pixels per crop pixel (the lengths of the inverse
    warp's columns); reducing by r <= step still leaves one decoded pixel or more
    per crop pixel. libjpeg reduces in the DCT domain: reduced pixel j stands for
    original pixels r*j .. r*j + r - 1, centred at r*j + (r - 1) / 2 in this kit's
    convention, so the warp is composed with that map and keypoints (which use
    `warp` itself) do not move. Anything else (a decoded image, a PNG) is left as
    it is and `warp` returned unchanged.
    """
    inv = invert_affine(warp)
    step = min(np.hypot(*inv[:, 0]), np.hypot(*inv[:, 1]))
    r = next((s for s in (8, 4, 2) if s <= step), 1)
    if r == 1 or image.format != "JPEG":
        return warp
    w, h = image.size
    drafted = image.draft("RGB", (max(1, w // r), max(1, h // r)))
    if drafted is None:  # decoded already, or libjpeg cannot reduce this file
        return warp
    scale = w / drafted[1][2]
    if scale == 1:
        return warp
    reduced_to_original = np.array([[scale, 0.0, (scale - 1) / 2], [0.0, scale, (scale - 1) / 2]])
    return compose_affine(warp, reduced_to_original)


def crop_to_image(coords_crop, center, scale, input_size: Sequence[int]):
    """Crop pixels (N, K, 2) -> image pixels, inverse of the rotation-free UDP warp.

    Works on numpy arrays and torch tensors alike; used at evaluation, where the
    crop has no rotation. `center`, `scale`: (N, 2).
    """
    w, h = float(input_size[0]), float(input_size[1])
    if isinstance(coords_crop, torch.Tensor):
        center = torch.as_tensor(center, dtype=coords_crop.dtype, device=coords_crop.device)
        scale = torch.as_tensor(scale, dtype=coords_crop.dtype, device=coords_crop.device)
        factor = torch.tensor(
            [w - 1.0, h - 1.0], dtype=coords_crop.dtype, device=coords_crop.device
        )
    else:
        coords_crop = np.asarray(coords_crop, dtype=np.float64)
        center = np.asarray(center, dtype=np.float64)
        scale = np.asarray(scale, dtype=np.float64)
        factor = np.array([w - 1.0, h - 1.0])
    center, scale = center[:, None, :], scale[:, None, :]
    return coords_crop * (scale / factor) + center - 0.5 * scale


def normalized_to_image(coords_norm, center, scale, input_size: Sequence[int]):
    """Normalised crop coordinates (x / W, y / H), shape (N, K, 2) -> image pixels."""
    w, h = float(input_size[0]), float(input_size[1])
    if isinstance(coords_norm, torch.Tensor):
        size = torch.tensor([w, h], dtype=coords_norm.dtype, device=coords_norm.device)
    else:
        coords_norm = np.asarray(coords_norm, dtype=np.float64)
        size = np.array([w, h])
    return crop_to_image(coords_norm * size, center, scale, input_size)


# ----------------------------------------------------------------------------- flip


def flip_image(img: np.ndarray) -> np.ndarray:
    """Mirror an (h, w, C) image horizontally: pixel x moves to w - 1 - x."""
    return np.ascontiguousarray(img[:, ::-1])


def flip_keypoints(keypoints: np.ndarray, img_width: int, flip_index) -> np.ndarray:
    """Mirror keypoints (K, 2 or 3) in an image of `img_width` and swap left/right ids.

    `flip_index[k]` is the id of k's mirror image (DatasetInfo.flip_index): after
    mirroring, the point that was the left wrist is where the right wrist is.
    """
    out = np.array(keypoints, dtype=np.float32, copy=True)
    out[:, 0] = img_width - 1 - out[:, 0]
    return out[np.asarray(flip_index)]


def flip_center(center: np.ndarray, img_width: int) -> np.ndarray:
    return np.array([img_width - 1 - center[0], center[1]], dtype=np.float32)


def random_flip(
    keypoints: np.ndarray,
    center: np.ndarray,
    img_width: int,
    flip_index,
    prob: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """With probability `prob` mirror keypoints (K, 3) and the box centre.

    The image itself is not touched: the caller folds `flip_matrix(img_width)`
    into the warp (one resampling pass instead of two, same pixels).
    """
    if rng.random() >= prob:
        return keypoints, center, False
    return flip_keypoints(keypoints, img_width, flip_index), flip_center(center, img_width), True


# ----------------------------------------------------------------------------- half body


def half_body_box(
    keypoints: np.ndarray, ids: Sequence[int], padding: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """Centre (mean of the points) and padded extent of the chosen keypoints (K, 3)."""
    pts = keypoints[np.asarray(ids, dtype=np.int64), :2].astype(np.float64)
    if len(pts) < 2:
        return None
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    size = hi - lo
    if size[0] <= 0 and size[1] <= 0:
        return None
    center = pts.mean(axis=0).astype(np.float32)
    scale = (size * padding).astype(np.float32)
    return center, scale


def random_half_body(
    keypoints: np.ndarray,
    center: np.ndarray,
    scale: np.ndarray,
    upper_body_ids: Sequence[int],
    lower_body_ids: Sequence[int],
    rng: np.random.Generator,
    prob: float = 0.3,
    min_keypoints: int = 9,
    padding: float = 1.5,
    min_upper: int = 2,
    min_lower: int = 3,
    upper_prob: float = 0.7,
) -> tuple[np.ndarray, np.ndarray]:
    """mmpose's RandomHalfBody: with `prob`, zoom the box onto the upper or lower body.

    Needs at least `min_keypoints` labelled keypoints. The upper body is chosen
    with `upper_prob` unless one half has too few labelled points (fewer than
    `min_upper` / `min_lower`), then the other half is taken. The new box spans
    the chosen points, padded by `padding`; the aspect ratio is fixed later,
    before the warp.
    """
    visible = keypoints[:, 2] > 0
    if visible.sum() < min_keypoints or rng.random() >= prob:
        return center, scale
    upper = [i for i in upper_body_ids if visible[i]]
    lower = [i for i in lower_body_ids if visible[i]]
    pick_upper = rng.random() < upper_prob
    if len(upper) < min_upper:
        chosen = lower
    elif len(lower) < min_lower:
        chosen = upper
    else:
        chosen = upper if pick_upper else lower
    box = half_body_box(keypoints, chosen, padding)
    return (center, scale) if box is None else box


# ----------------------------------------------------------------------------- box jitter


def truncnorm(rng: np.random.Generator, size) -> np.ndarray:
    """Standard normal samples truncated to [-1, 1] (rejection sampling)."""
    out = rng.standard_normal(size)
    bad = np.abs(out) > 1
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 1
    return out


def random_bbox_transform(
    center: np.ndarray,
    scale: np.ndarray,
    rng: np.random.Generator,
    shift_factor: float = 0.16,
    shift_prob: float = 0.3,
    scale_factor: tuple[float, float] = (0.5, 1.5),
    scale_prob: float = 1.0,
    rotate_factor: float = 80.0,
    rotate_prob: float = 0.6,
) -> tuple[np.ndarray, np.ndarray, float]:
    """mmpose's RandomBBoxTransform: random shift, rescale and rotation of one box.

    Each factor is a standard normal truncated to [-1, 1] times its range: the
    shift is `shift_factor` of the box size, the scale is centred in
    `scale_factor` with half its width as the spread, the rotation is up to
    `rotate_factor` degrees. Each is applied with its own probability.
    Returns (center, scale, rotation in degrees).
    """
    offset = truncnorm(rng, 2) * shift_factor
    if rng.random() >= shift_prob:
        offset[:] = 0.0
    lo, hi = scale_factor
    factor = truncnorm(rng, 1)[0] * (hi - lo) * 0.5 + (hi + lo) * 0.5
    if rng.random() >= scale_prob:
        factor = 1.0
    rot = truncnorm(rng, 1)[0] * rotate_factor
    if rng.random() >= rotate_prob:
        rot = 0.0
    new_center = (center + offset * scale).astype(np.float32)
    new_scale = (scale * factor).astype(np.float32)
    return new_center, new_scale, float(rot)


# ----------------------------------------------------------------------------- normalisation

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255.0
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255.0


def normalize_image(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> float32 (3, H, W) with ImageNet mean and std.

    One contiguous float tensor, normalised in place: the same arithmetic as
    `(t - mean) / std`, bit for bit, at half the memory traffic.
    """
    h, w = img.shape[:2]
    t = torch.empty(3, h, w)
    t.copy_(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1))
    return t.sub_(_MEAN).div_(_STD)


def denormalize_image(image: torch.Tensor) -> np.ndarray:
    """Inverse of `normalize_image`, for pictures: (3, H, W) -> (H, W, 3) uint8."""
    t = image.detach().cpu().float() * _STD + _MEAN
    return t.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
