"""Codecs: regression labels, UDP heatmaps, sub-pixel decoding, rendering and flip helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ocdlib.codecs import (
    _gaussian_kernel1d,
    decode_heatmaps,
    encode_heatmaps,
    encode_regression,
    flip_coords_normalized,
    flip_heatmaps,
    gaussian_blur,
    heatmap_to_normalized,
    normalized_to_heatmap,
    render_heatmaps,
    soft_argmax,
)
from ocdlib.metainfo import COCO_BODY, COCO_WHOLEBODY

INPUT, HEATMAP, SIGMA = (192, 256), (48, 64), 2.0
FACTOR = np.array([191 / 47, 255 / 63], dtype=np.float32)  # crop px per heatmap px (UDP)


def random_heatmap_points(n: int, seed: int, lo: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.uniform(lo, HEATMAP[0] - 1 - lo, n), rng.uniform(lo, HEATMAP[1] - 1 - lo, n)], 1
    ).astype(np.float32)


def test_encode_regression_normalises_and_weights():
    kpts = np.array([[96.0, 128.0], [10.0, 10.0], [-1.0, 20.0], [50.0, 300.0]], dtype=np.float32)
    labels, weights = encode_regression(kpts, np.array([2, 0, 1, 1]), INPUT)
    np.testing.assert_allclose(labels[0], [0.5, 0.5])
    np.testing.assert_array_equal(weights, [1, 0, 0, 0])
    assert labels.dtype == np.float32 and weights.dtype == np.float32


def test_encode_heatmaps_peak_and_weights():
    hm_point = np.array([[10.3, 20.6]], dtype=np.float32)
    kpts = np.concatenate([hm_point * FACTOR, [[-100.0, 5.0]], [[50.0, 50.0]]])
    hm, w = encode_heatmaps(kpts, np.array([2, 2, 0]), INPUT, HEATMAP, SIGMA)
    assert hm.shape == (3, 64, 48) and hm.dtype == np.float32
    np.testing.assert_array_equal(w, [1, 0, 0])
    assert np.unravel_index(hm[0].argmax(), hm[0].shape) == (21, 10)
    expected = np.exp(-((10 - 10.3) ** 2 + (21 - 20.6) ** 2) / (2 * SIGMA**2))
    assert hm[0, 21, 10] == pytest.approx(expected, rel=1e-5)
    assert hm[1].max() == 0 and hm[2].max() == 0


@pytest.mark.parametrize("blur_kernel", [11, 0])
def test_decode_recovers_encoded_subpixel_locations(blur_kernel):
    # Many random sub-pixel locations across the whole map, borders included.
    pts = random_heatmap_points(3000, seed=blur_kernel)
    hm, w = encode_heatmaps(pts * FACTOR, np.ones(len(pts)), INPUT, HEATMAP, SIGMA)
    assert w.all()
    coords, scores = decode_heatmaps(
        torch.from_numpy(hm).view(30, 100, 64, 48), blur_kernel=blur_kernel
    )
    err = np.abs(coords.reshape(-1, 2).numpy() - pts).max()
    assert err < 0.05
    np.testing.assert_allclose(scores.reshape(-1).numpy(), hm.reshape(len(pts), -1).max(1))


@pytest.mark.parametrize(
    ("shape", "kernel"), [((2, 3, 16, 12), 11), ((1, 2, 7, 5), 3), ((1, 1, 4, 9), 11)]
)
def test_blur_is_the_zero_padded_separable_convolution(shape, kernel):
    # The reference: two one-channel convolutions over zero-padded maps, as in OpenCV
    # with BORDER_CONSTANT; maps smaller than the kernel included.
    maps = torch.rand(shape, generator=torch.Generator().manual_seed(kernel))
    n, k, h, w = shape
    g, pad = _gaussian_kernel1d(kernel, torch.float32, "cpu"), kernel // 2
    x = maps.reshape(n * k, 1, h, w)
    x = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, (pad, pad, 0, 0)), g.view(1, 1, 1, -1)
    )
    x = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, (0, 0, pad, pad)), g.view(1, 1, -1, 1)
    )
    x = x.reshape(shape)
    expected = x * maps.amax(dim=(2, 3), keepdim=True) / x.amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(gaussian_blur(maps, kernel), expected, rtol=1e-5, atol=1e-6)


def test_decode_without_refinement_is_argmax_and_flat_maps_stay_finite():
    hm = torch.zeros(1, 2, 8, 6)
    hm[0, 0, 5, 2] = 1.0
    coords, scores = decode_heatmaps(hm, refine=False)
    assert coords[0, 0].tolist() == [2.0, 5.0] and scores[0, 0] == 1.0
    coords, _ = decode_heatmaps(hm)  # channel 1 is flat: no peak, no NaN
    assert torch.isfinite(coords).all()
    assert coords[0, 1].tolist() == [0.0, 0.0]


def test_render_equals_encode_and_is_differentiable():
    pts = random_heatmap_points(17, seed=3)
    hm, _ = encode_heatmaps(pts * FACTOR, np.ones(17), INPUT, HEATMAP, SIGMA)
    coords = torch.tensor(pts, requires_grad=True)
    rendered = render_heatmaps(coords[None], HEATMAP, SIGMA)
    assert rendered.shape == (1, 17, 64, 48)
    np.testing.assert_allclose(rendered[0].detach().numpy(), hm, atol=1e-5)
    # Moving the target map one pixel right: the gradient pulls x to the right.
    target = render_heatmaps(torch.tensor(pts)[None] + torch.tensor([1.0, 0.0]), HEATMAP, SIGMA)
    ((rendered - target) ** 2).sum().backward()
    assert (coords.grad[:, 0] < 0).all()


def test_soft_argmax_is_close_in_the_interior_and_differentiable():
    pts = random_heatmap_points(200, seed=4, lo=5.0)
    hm, _ = encode_heatmaps(pts * FACTOR, np.ones(len(pts)), INPUT, HEATMAP, SIGMA)
    maps = torch.from_numpy(hm)[None].requires_grad_(True)
    coords = soft_argmax(maps)
    assert np.abs(coords[0].detach().numpy() - pts).max() < 0.1
    coords.sum().backward()
    assert maps.grad.abs().sum() > 0


def test_coordinate_conversions():
    # Crop pixel centres 0 and W-1 map onto heatmap pixel centres 0 and Wh-1.
    norm = np.array([[0.0, 0.0], [191 / 192, 255 / 256]])
    np.testing.assert_allclose(normalized_to_heatmap(norm, INPUT, HEATMAP), [[0, 0], [47, 63]])
    x = torch.rand(4, 17, 2, dtype=torch.float64)
    back = heatmap_to_normalized(normalized_to_heatmap(x, INPUT, HEATMAP), INPUT, HEATMAP)
    torch.testing.assert_close(back, x)
    # The tensor path agrees with the numpy path, keeps the dtype, and carries gradients.
    xf = x.float().requires_grad_(True)
    hm = normalized_to_heatmap(xf, INPUT, HEATMAP)
    assert hm.dtype == torch.float32
    np.testing.assert_allclose(
        hm.detach().numpy(), normalized_to_heatmap(x.numpy(), INPUT, HEATMAP), rtol=1e-6
    )
    hm.sum().backward()
    fx, fy = (INPUT[0] - 1) / (HEATMAP[0] - 1), (INPUT[1] - 1) / (HEATMAP[1] - 1)
    torch.testing.assert_close(xf.grad[0, 0], torch.tensor([INPUT[0] / fx, INPUT[1] / fy]))


@pytest.mark.parametrize("info", [COCO_BODY, COCO_WHOLEBODY], ids=lambda i: i.name)
def test_flipped_heatmaps_equal_encoding_flipped_keypoints(info):
    k = info.num_keypoints
    rng = np.random.default_rng(5)
    kpts = np.stack([rng.uniform(0, 191, k), rng.uniform(0, 255, k)], 1).astype(np.float32)
    hm, _ = encode_heatmaps(kpts, np.ones(k), INPUT, HEATMAP, SIGMA)
    mirrored = kpts.copy()
    mirrored[:, 0] = INPUT[0] - 1 - mirrored[:, 0]
    mirrored = mirrored[info.flip_index]
    hm_flipped, _ = encode_heatmaps(mirrored, np.ones(k), INPUT, HEATMAP, SIGMA)
    out = flip_heatmaps(torch.from_numpy(hm)[None], info.flip_index)[0].numpy()
    np.testing.assert_allclose(out, hm_flipped, atol=1e-5)


def test_flip_coords_normalized_matches_flip_heatmaps_and_is_an_involution():
    info = COCO_BODY
    rng = np.random.default_rng(6)
    kpts = np.stack([rng.uniform(10, 180, 17), rng.uniform(10, 240, 17)], 1).astype(np.float32)
    hm, _ = encode_heatmaps(kpts, np.ones(17), INPUT, HEATMAP, SIGMA)
    norm = torch.from_numpy(kpts / np.array(INPUT, dtype=np.float32))[None]
    flipped_norm = flip_coords_normalized(norm, info.flip_index, INPUT)
    decoded, _ = decode_heatmaps(flip_heatmaps(torch.from_numpy(hm)[None], info.flip_index))
    decoded_norm = heatmap_to_normalized(decoded, INPUT, HEATMAP)
    torch.testing.assert_close(decoded_norm, flipped_norm, atol=2e-4, rtol=0)
    twice = flip_coords_normalized(flipped_norm, info.flip_index, INPUT)
    torch.testing.assert_close(twice, norm)
    # numpy input works the same way.
    np.testing.assert_allclose(
        flip_coords_normalized(norm.numpy(), info.flip_index, INPUT), flipped_norm.numpy()
    )
