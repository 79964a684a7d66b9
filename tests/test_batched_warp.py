"""The batched crop (data/batched_warp.py) against the per-sample PIL crop it would replace.

Both cut the crop of the same `CropGeometry` (flips, half-body, scale, rotation
drawn by the training dataset), from the decoded image without JPEG draft. The
tolerances are measured, not guessed (`pytest -s` prints the figures): over two
epochs, the mean absolute difference is 0.61 gray levels on the COCO sample and
0.73 on SynthPose, the 99th percentile 1.0 on both. Two causes, both PIL's: it
truncates each bilinear value to an integer (half a gray level on average), and on
the one-pixel seam along an image's border it takes the edge pixel whole or black
where the batched warp blends the two (those pixels, under 0.1% of a crop, differ by
up to 140). Away from the border and before PIL's truncation the two agree to
float rounding, as the integer-shift tests show.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ocdlib.codecs import encode_batch
from ocdlib.configs import DataConfig
from ocdlib.data import TopDownPoseDataset, load_coco_keypoints
from ocdlib.data.batched_warp import normalize_batch, stack_images, warp_batch
from ocdlib.data.coco import decode_image, open_image
from ocdlib.data.synthpose import generate_synthpose
from ocdlib.data.transforms import apply_affine, normalize_image, warp_image
from ocdlib.metainfo import COCO_BODY

CFG = DataConfig(input_size=(96, 128), heatmap_size=(24, 32))
# Every augmentation on, more often than in training, so that flips and rotations occur.
AUGMENTED = dataclasses.replace(CFG, flip_prob=0.5, rotate_prob=0.8, half_body_prob=0.3)
MEAN_TOLERANCE, P99_TOLERANCE = 1.0, 2.0  # gray levels (0..255)


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to float32 rounding of the sampling grid (1e-3 of a gray level)."""
    torch.testing.assert_close(a, b, rtol=0, atol=1e-3)


def differences(ds: TopDownPoseDataset, epochs=(0, 1)) -> np.ndarray:
    """|batched - PIL| over every crop of `ds` in `epochs`, in gray levels."""
    out = []
    for epoch in epochs:
        ds.set_epoch(epoch)
        images, warps, pil = [], [], []
        for i, inst in enumerate(ds.instances):
            image = decode_image(open_image(inst.image_path, decode=False), inst.image_path)
            geometry = ds.crop_geometry(i, image.width)
            pil.append(warp_image(image, geometry.image_warp, ds.input_size))
            images.append(np.asarray(image))
            warps.append(geometry.image_warp)
        batch = stack_images(images)
        crops = warp_batch(batch, np.stack(warps), ds.input_size)
        reference = torch.from_numpy(np.stack(pil)).permute(0, 3, 1, 2).float()
        out.append((crops - reference).abs().flatten().numpy())
    return np.concatenate(out)


def check(diff: np.ndarray, what: str) -> None:
    mean, p99 = float(diff.mean()), float(np.percentile(diff, 99))
    print(f"{what}: mean |diff| {mean:.3f}, p99 {p99:.2f}, max {diff.max():.1f} gray levels")
    assert mean < MEAN_TOLERANCE, (what, mean)
    assert p99 < P99_TOLERANCE, (what, p99)


def test_an_integer_shift_cuts_the_same_pixels_as_pil():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    warp = np.array([[1.0, 0.0, -7.0], [0.0, 1.0, -3.0]])  # crop (0, 0) = image (7, 3)
    crop = warp_batch(stack_images([image]), warp[None], (20, 30))[0]
    pil = warp_image(image, warp, (20, 30))
    close(crop.permute(1, 2, 0), torch.from_numpy(pil).float())
    close(crop.permute(1, 2, 0), torch.from_numpy(image[3:33, 7:27]).float())


def test_crops_of_images_of_different_sizes_are_each_cut_from_their_own():
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    large = rng.integers(0, 256, (60, 40, 3), dtype=np.uint8)
    shift = np.array([[1.0, 0.0, -2.0], [0.0, 1.0, -1.0]])
    crops = warp_batch(stack_images([small, large]), np.stack([shift, shift]), (30, 25))
    for crop, image in zip(crops, (small, large)):
        pil = torch.from_numpy(warp_image(image, shift, (30, 25))).permute(2, 0, 1)
        close(crop, pil.float())  # no padding leaks into the smaller image's crop


def test_crops_cut_from_one_image_by_index():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
    warps = np.stack([np.eye(2, 3), np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]])])
    crops = warp_batch(stack_images([image]), warps, (10, 10), torch.tensor([0, 0]))
    close(crops[1], torch.from_numpy(image[:10, 1:11]).permute(2, 0, 1).float())


def test_the_batched_crops_match_the_pil_crops_on_the_coco_sample(coco_sample_dir):
    body = load_coco_keypoints(coco_sample_dir / "test_coco.json", coco_sample_dir, COCO_BODY)
    check(differences(TopDownPoseDataset(body, COCO_BODY, AUGMENTED, train=True)), "COCO sample")


def test_the_batched_crops_match_the_pil_crops_on_synthpose(tmp_path):
    root = tmp_path / "synthpose"
    generate_synthpose(root, 24, 4, seed=3, image_size=(128, 128), progress=False)
    train = load_coco_keypoints(
        root / "annotations" / "train.json", root / "images" / "train", COCO_BODY
    )
    check(differences(TopDownPoseDataset(train, COCO_BODY, AUGMENTED, train=True)), "SynthPose")


def test_normalize_batch_is_normalize_image():
    rng = np.random.default_rng(3)
    crops = rng.integers(0, 256, (2, 16, 12, 3), dtype=np.uint8)
    batched = normalize_batch(torch.from_numpy(crops).permute(0, 3, 1, 2).float())
    single = torch.stack([normalize_image(c) for c in crops])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-5)


def test_a_malformed_warp_is_refused():
    with pytest.raises(ValueError, match=r"\(B, 2, 3\)"):
        warp_batch(torch.zeros(1, 3, 8, 8), np.eye(3)[None], (4, 4))


def test_batched_targets_are_the_per_sample_targets(coco_sample_dir):
    """Keypoint targets and weights identical, heatmaps within 1e-5, flipped samples
    included (their keypoints are swapped by the geometry both paths share)."""
    body = load_coco_keypoints(coco_sample_dir / "test_coco.json", coco_sample_dir, COCO_BODY)
    ds = TopDownPoseDataset(body, COCO_BODY, AUGMENTED, train=True)
    rng = np.random.default_rng(4)
    xy, visible, singles = [], [], []
    for epoch in (0, 1, 2):
        ds.set_epoch(epoch)
        for i, inst in enumerate(ds.instances):
            geometry = ds.crop_geometry(i, inst.width)
            singles.append(ds.targets(geometry))
            xy.append(apply_affine(geometry.keypoints[:, :2], geometry.warp))
            visible.append(geometry.keypoints[:, 2])
    # Keypoints off the crop, on its edges and beyond the 3-sigma rule, drawn on purpose.
    w, h = CFG.input_size
    edge = rng.choice([-30.0, -0.001, 0.0, w - 1.0, float(w), w + 0.001, w + 30.0], (5, 17, 2))
    for k in edge:
        singles.append(ds.targets(geometry_at(k, np.ones(17))))
        xy.append(k.astype(np.float32))
        visible.append(np.ones(17))
    batch = encode_batch(
        torch.from_numpy(np.stack(xy)),
        torch.from_numpy(np.stack(visible)),
        CFG.input_size,
        CFG.heatmap_size,
        CFG.sigma,
    )
    for name in ("reg_target", "reg_weight", "hm_weight"):
        assert torch.equal(batch[name], torch.stack([s[name] for s in singles])), name
    hm = torch.stack([s["hm_target"] for s in singles])
    torch.testing.assert_close(batch["hm_target"], hm, rtol=0, atol=1e-5)
    assert 0 < batch["reg_weight"].mean() < 1  # both kinds of keypoint occur


def geometry_at(xy: np.ndarray, visible: np.ndarray):
    """A geometry whose keypoints sit at crop pixels `xy` (identity warp)."""
    from ocdlib.data.dataset import CropGeometry

    keypoints = np.concatenate([xy, visible[:, None]], axis=1)
    eye = np.eye(2, 3)
    return CropGeometry(keypoints, np.zeros(2), np.ones(2), eye, eye)
