"""Geometry and augmentation: warp conventions, inverse maps, flips, random box transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ocdlib.data.transforms import (
    apply_affine,
    box_to_center_scale,
    compose_affine,
    crop_to_image,
    denormalize_image,
    fix_aspect_ratio,
    flip_image,
    flip_keypoints,
    flip_matrix,
    get_warp_matrix,
    invert_affine,
    jpeg_draft,
    normalize_image,
    normalized_to_image,
    random_bbox_transform,
    random_flip,
    random_half_body,
    truncnorm,
    warp_image,
)
from ocdlib.metainfo import COCO_BODY

INPUT = (96, 128)  # (W, H)


def blob_image(h: int, w: int, point, sigma: float = 3.0) -> np.ndarray:
    """RGB image with one Gaussian blob centred at the sub-pixel `point` (x, y)."""
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-((xx - point[0]) ** 2 + (yy - point[1]) ** 2) / (2 * sigma**2))
    return np.repeat((blob * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def centroid(gray: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0 : gray.shape[0], 0 : gray.shape[1]]
    g = gray.astype(np.float64)
    return np.array([(g * xx).sum() / g.sum(), (g * yy).sum() / g.sum()])


def test_box_to_center_scale_widens_to_aspect_and_pads():
    center, scale = box_to_center_scale((10, 20, 30, 100), aspect_ratio=0.75, padding=1.25)
    np.testing.assert_allclose(center, [25, 70])
    np.testing.assert_allclose(scale, [75 * 1.25, 100 * 1.25])
    # A wide box grows in height instead.
    np.testing.assert_allclose(fix_aspect_ratio([150, 100], 0.75), [150, 200])


def test_warp_matrix_maps_box_edges_onto_pixel_centre_span():
    center, scale = np.array([200.0, 150.0]), np.array([120.0, 160.0])
    M = get_warp_matrix(center, scale, 0.0, INPUT)
    corners = np.array([[140.0, 70.0], [260.0, 230.0], [200.0, 150.0]])
    np.testing.assert_allclose(
        apply_affine(corners, M), [[0, 0], [95, 127], [47.5, 63.5]], atol=1e-4
    )
    # Rotation keeps the centre fixed.
    M30 = get_warp_matrix(center, scale, 30.0, INPUT)
    np.testing.assert_allclose(apply_affine(center[None], M30), [[47.5, 63.5]], atol=1e-4)


@pytest.mark.parametrize("rot", [0.0, 35.0, -70.0])
def test_warped_keypoint_lands_on_warped_image_content(rot):
    point = np.array([123.3, 201.7])
    img = blob_image(300, 400, point)
    M = get_warp_matrix(np.array([150.0, 180.0]), np.array([120.0, 160.0]), rot, INPUT)
    crop = warp_image(img, M, INPUT)
    assert crop.shape == (128, 96, 3) and crop.dtype == np.uint8
    np.testing.assert_allclose(centroid(crop[..., 0]), apply_affine(point[None], M)[0], atol=0.02)


def test_crop_to_image_inverts_the_warp_numpy_and_torch():
    rng = np.random.default_rng(0)
    center = rng.uniform(50, 400, (3, 2))
    scale = rng.uniform(40, 300, (3, 2))
    pts = rng.uniform(0, 500, (3, 5, 2))
    crop = np.stack(
        [apply_affine(pts[i], get_warp_matrix(center[i], scale[i], 0, INPUT)) for i in range(3)]
    )
    back = crop_to_image(crop, center, scale, INPUT)
    np.testing.assert_allclose(back, pts, atol=1e-3)
    back_t = crop_to_image(torch.tensor(crop, dtype=torch.float64), center, scale, INPUT)
    np.testing.assert_allclose(back_t.numpy(), pts, atol=1e-3)
    norm = crop / np.array(INPUT)
    np.testing.assert_allclose(normalized_to_image(norm, center, scale, INPUT), pts, atol=1e-3)


def test_affine_helpers():
    M = get_warp_matrix(np.array([50.0, 60.0]), np.array([80.0, 90.0]), 20.0, INPUT)
    np.testing.assert_allclose(compose_affine(invert_affine(M), M), np.eye(3)[:2], atol=1e-12)


def test_flip_folded_into_warp_equals_flipping_the_image():
    img = np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    M = get_warp_matrix(np.array([30.0, 25.0]), np.array([40.0, 50.0]), 15.0, INPUT)
    a = warp_image(flip_image(img), M, INPUT)
    b = warp_image(img, compose_affine(M, flip_matrix(80)), INPUT)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_flip_keypoints_mirrors_swaps_and_is_an_involution():
    rng = np.random.default_rng(2)
    kpts = np.concatenate([rng.uniform(0, 100, (17, 2)), np.full((17, 1), 2.0)], 1)
    flipped = flip_keypoints(kpts, 640, COCO_BODY.flip_index)
    lw, rw = (
        COCO_BODY.keypoint_names.index("left_wrist"),
        COCO_BODY.keypoint_names.index("right_wrist"),
    )
    assert flipped[rw, 0] == pytest.approx(639 - kpts[lw, 0])
    assert flipped[rw, 1] == pytest.approx(kpts[lw, 1])
    np.testing.assert_allclose(flip_keypoints(flipped, 640, COCO_BODY.flip_index), kpts, atol=1e-4)


def test_random_flip_respects_probability():
    kpts = np.ones((17, 3), dtype=np.float32)
    center = np.array([10.0, 20.0], dtype=np.float32)
    rng = np.random.default_rng(0)
    _, c, flipped = random_flip(kpts, center, 100, COCO_BODY.flip_index, 1.0, rng)
    assert flipped and c[0] == pytest.approx(89.0)
    _, c, flipped = random_flip(kpts, center, 100, COCO_BODY.flip_index, 0.0, rng)
    assert not flipped and c[0] == pytest.approx(10.0)


def test_truncnorm_is_bounded_and_unit_spread():
    x = truncnorm(np.random.default_rng(0), 20000)
    assert np.abs(x).max() <= 1.0
    # Std of a standard normal truncated to [-1, 1] is 0.5380.
    assert x.std() == pytest.approx(0.538, abs=0.01)
    assert abs(x.mean()) < 0.02


def test_random_bbox_transform_ranges_and_determinism():
    center, scale = np.array([100.0, 100.0]), np.array([50.0, 80.0])
    draws = [random_bbox_transform(center, scale, np.random.default_rng(s)) for s in range(400)]
    shifts = np.array([(c - center) / scale for c, _, _ in draws])
    factors = np.array([s[0] / 50.0 for _, s, _ in draws])
    rots = np.array([r for _, _, r in draws])
    assert np.abs(shifts).max() <= 0.16 + 1e-6
    assert 0.5 - 1e-6 <= factors.min() and factors.max() <= 1.5 + 1e-6
    assert np.abs(rots).max() <= 80.0
    # Shift with p 0.3 and rotation with p 0.6.
    assert 0.2 < np.mean(np.abs(shifts).sum(1) > 0) < 0.4
    assert 0.5 < np.mean(rots != 0) < 0.7
    a = random_bbox_transform(center, scale, np.random.default_rng(7))
    b = random_bbox_transform(center, scale, np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    assert a[2] == b[2]


def test_random_half_body_boxes_the_chosen_half():
    rng = np.random.default_rng(0)
    kpts = np.zeros((17, 3), dtype=np.float32)
    kpts[:11, :2] = rng.uniform([100, 50], [160, 120], (11, 2))  # upper body high up
    kpts[11:, :2] = rng.uniform([100, 150], [160, 260], (6, 2))
    kpts[:, 2] = 2
    center, scale = np.array([130.0, 150.0]), np.array([100.0, 250.0])
    seen = set()
    for seed in range(40):
        c, s = random_half_body(
            kpts, center, scale, COCO_BODY.upper_body_ids, COCO_BODY.lower_body_ids,
            np.random.default_rng(seed), prob=1.0,
        )  # fmt: skip
        ids = list(COCO_BODY.upper_body_ids if c[1] < 130 else COCO_BODY.lower_body_ids)
        seen.add(c[1] < 130)
        pts = kpts[ids, :2]
        np.testing.assert_allclose(c, pts.mean(0), atol=1e-4)
        np.testing.assert_allclose(s, (pts.max(0) - pts.min(0)) * 1.5, atol=1e-3)
    assert seen == {True, False}
    # Too few labelled keypoints: box unchanged.
    few = kpts.copy()
    few[5:, 2] = 0
    c, s = random_half_body(
        few, center, scale, COCO_BODY.upper_body_ids, COCO_BODY.lower_body_ids,
        np.random.default_rng(0), prob=1.0,
    )  # fmt: skip
    np.testing.assert_array_equal(c, center)


def test_normalize_round_trip():
    img = np.random.default_rng(3).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    t = normalize_image(img)
    assert t.shape == (3, 8, 6) and t.dtype == torch.float32
    expected = (img[0, 0, 1] / 255 - 0.456) / 0.224
    assert t[1, 0, 0].item() == pytest.approx(expected, abs=1e-5)
    np.testing.assert_array_equal(denormalize_image(t), img)


def test_normalize_is_bit_identical_to_the_plain_formula():
    img = np.random.default_rng(4).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1) * 255.0
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1) * 255.0
    plain = (torch.from_numpy(img).permute(2, 0, 1).float() - mean) / std
    t = normalize_image(img)
    assert t.is_contiguous() and torch.equal(t, plain)


def _jpeg(tmp_path, w=320, h=240):
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 0.7) % 256, (yy * 1.3) % 256, (xx + yy) % 256], -1)
    img = (img + rng.integers(0, 40, img.shape)).clip(0, 255).astype(np.uint8)
    path = tmp_path / "draft.jpg"
    Image.fromarray(img).save(path, quality=90)
    return path


@pytest.mark.parametrize("reduce", [2, 4])
def test_jpeg_draft_warp_matches_a_box_filtered_full_decode(tmp_path, reduce):
    # A box of 4.5 (or 9) image pixels per crop pixel: decoded at 1/2 (1/4) size.
    path = _jpeg(tmp_path)
    size = (24, 32)
    center, scale = (160.0, 120.0), (23 * reduce * 1.1, 31 * reduce * 1.1)
    warp = get_warp_matrix(center, scale, 15.0, size)
    im = Image.open(path)
    reduced_warp = jpeg_draft(im, warp)
    im.load()
    assert im.size == (320 // reduce, 240 // reduce)
    full = Image.open(path)
    full.load()
    # libjpeg's DCT-domain reduction is a box filter: the same crop as the full decode
    # box-reduced and sampled with the returned warp, to a small fraction of a grey level
    # (a warp off by half a reduced pixel differs by about 10x more on this image).
    drafted = warp_image(im, reduced_warp, size).astype(float)
    boxed = warp_image(full.reduce(reduce), reduced_warp, size).astype(float)
    assert np.abs(drafted - boxed).mean() < 1.5
    shifted = compose_affine(reduced_warp, np.array([[1.0, 0, 0.5], [0, 1.0, 0.5]]))
    assert np.abs(warp_image(im, shifted, size).astype(float) - boxed).mean() > 3


def test_jpeg_draft_leaves_fine_crops_and_decoded_images_alone(tmp_path):
    path = _jpeg(tmp_path)
    fine = get_warp_matrix((160.0, 120.0), (40.0, 53.0), 0.0, (96, 128))  # < 1 px per crop px
    im = Image.open(path)
    assert jpeg_draft(im, fine) is fine
    coarse = get_warp_matrix((160.0, 120.0), (300.0, 400.0), 0.0, (24, 32))
    im.load()
    assert jpeg_draft(im, coarse) is coarse and im.size == (320, 240)
    png = tmp_path / "a.png"
    Image.open(path).save(png)
    assert jpeg_draft(Image.open(png), coarse) is coarse
