"""COCO loading, error messages and the top-down dataset, on real COCO val2017 images."""

from __future__ import annotations

import dataclasses
import json
import logging
import re

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from ocdlib.codecs import decode_heatmaps, heatmap_to_normalized
from ocdlib.configs import DataConfig
from ocdlib.data import (
    AnnotationError,
    ImageMissingError,
    ImageReadError,
    TopDownPoseDataset,
    check_images,
    load_coco_keypoints,
    load_detections,
    read_image,
)
from ocdlib.data.transforms import flip_keypoints, normalized_to_image
from ocdlib.metainfo import COCO_BODY, COCO_WHOLEBODY

BODY, WHOLE, DET = "test_coco.json", "test_coco_wholebody.json", "test_coco_det_AP_H_56.json"
CFG = DataConfig(input_size=(96, 128), heatmap_size=(24, 32))
NO_AUG = dataclasses.replace(
    CFG, flip_prob=0.0, half_body_prob=0.0, shift_prob=0.0, scale_prob=0.0, rotate_prob=0.0
)


def direct_count(ann_file) -> int:
    coco = COCO(str(ann_file))
    anns = coco.loadAnns(coco.getAnnIds(catIds=[1]))
    return sum(1 for a in anns if not a["iscrowd"] and a["num_keypoints"] > 0)


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ----------------------------------------------------------------------------- loading


def test_load_body_annotations_matches_pycocotools(coco_sample_dir, caplog):
    with caplog.at_level(logging.INFO):
        instances = load_coco_keypoints(coco_sample_dir / BODY, coco_sample_dir, COCO_BODY)
    assert len(instances) == direct_count(coco_sample_dir / BODY) == 12
    # One line that counts what was skipped: 14 persons, 2 without keypoints. That is COCO's
    # own filter, so it is noted (info), not warned.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    (noted,) = [r.getMessage() for r in caplog.records if "kept" in r.getMessage()]
    assert "kept 12" in noted and "skipped 2" in noted and "no keypoints" in noted

    raw = {a["id"]: a for a in json.loads((coco_sample_dir / BODY).read_text())["annotations"]}
    for inst in instances:
        assert inst.keypoints.shape == (17, 3) and inst.keypoints.dtype == np.float32
        np.testing.assert_allclose(inst.keypoints.ravel(), raw[inst.ann_id]["keypoints"])
        assert inst.image_path.is_file() and inst.bbox_score == 1.0
        x, y, w, h = inst.bbox
        assert w > 0 and h > 0 and x + w <= inst.width - 1 + 1e-6 and y + h <= inst.height - 1
    check_images(instances)  # all present: no error


def test_load_wholebody_assembles_parts_in_order(coco_sample_dir):
    instances = load_coco_keypoints(coco_sample_dir / WHOLE, coco_sample_dir, COCO_WHOLEBODY)
    assert len(instances) == 12
    raw = {a["id"]: a for a in json.loads((coco_sample_dir / WHOLE).read_text())["annotations"]}
    for inst in instances:
        ann = raw[inst.ann_id]
        assert inst.keypoints.shape == (133, 3)
        for part, field in COCO_WHOLEBODY.part_fields:
            part_kpts = inst.keypoints[COCO_WHOLEBODY.part_slice(part)]
            np.testing.assert_allclose(part_kpts.ravel(), ann[field], rtol=1e-6)


def test_load_detections_with_score_threshold(coco_sample_dir):
    raw = json.loads((coco_sample_dir / DET).read_text())
    for thr in (0.0, 0.3, 0.9):
        dets = load_detections(
            coco_sample_dir / DET, coco_sample_dir / BODY, coco_sample_dir, thr, info=COCO_BODY
        )
        expected = sum(1 for d in raw if d["category_id"] == 1 and d["score"] >= thr)
        assert len(dets) == expected
        assert all(d.ann_id == -1 and d.bbox_score >= thr for d in dets)
        assert all(d.keypoints.shape == (17, 3) and not d.keypoints.any() for d in dets)


def test_detections_on_unknown_images_are_counted(coco_sample_dir, caplog):
    edit_json(coco_sample_dir / DET, lambda d: [d[i].update(image_id=999) for i in range(5)])
    with caplog.at_level(logging.WARNING):
        dets = load_detections(coco_sample_dir / DET, coco_sample_dir / BODY, coco_sample_dir)
    assert len(dets) == 118 - 5
    assert any("5 detections" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- bad input


def test_missing_image_reported_on_read_and_by_check_images(coco_sample_dir):
    instances = load_coco_keypoints(coco_sample_dir / BODY, coco_sample_dir, COCO_BODY)
    (coco_sample_dir / "000000000785.jpg").unlink()
    with pytest.raises(ImageMissingError, match=r"1 image file.*000000000785\.jpg.*data\.root"):
        check_images(instances)
    ds = TopDownPoseDataset(instances, COCO_BODY, CFG, train=False)
    index = next(i for i, inst in enumerate(instances) if inst.image_id == 785)
    with pytest.raises(ImageMissingError, match=r"image file not found: .*000000000785\.jpg"):
        ds[index]


def test_corrupt_jpeg_names_the_file(coco_sample_dir):
    garbage = coco_sample_dir / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 20)
    with pytest.raises(ImageReadError, match=r"cannot decode image .*garbage\.jpg.*corrupt"):
        read_image(garbage)
    # A JPEG cut in half fails at decoding, not later in training.
    good = (coco_sample_dir / "000000040083.jpg").read_bytes()
    truncated = coco_sample_dir / "truncated.jpg"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageReadError, match=r"truncated\.jpg"):
        read_image(truncated)
    assert read_image(coco_sample_dir / "000000040083.jpg").shape[2] == 3


def test_annotation_file_errors_name_file_and_field(coco_sample_dir, tmp_path):
    ann = coco_sample_dir / BODY
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_coco_keypoints(tmp_path / "nope.json", coco_sample_dir, COCO_BODY)

    not_json = tmp_path / "broken.json"
    not_json.write_text("{ not json")
    with pytest.raises(AnnotationError, match=r"broken\.json is not valid JSON"):
        load_coco_keypoints(not_json, coco_sample_dir, COCO_BODY)

    not_coco = tmp_path / "other.json"
    not_coco.write_text(json.dumps({"images": [], "foo": 1}))
    with pytest.raises(AnnotationError, match=r"other\.json.*missing.*'annotations'"):
        load_coco_keypoints(not_coco, coco_sample_dir, COCO_BODY)

    # A detection list passed as the annotation file.
    with pytest.raises(AnnotationError, match=r"test_coco_det_AP_H_56\.json.*detection"):
        load_coco_keypoints(coco_sample_dir / DET, coco_sample_dir, COCO_BODY)

    edit_json(ann, lambda d: d["annotations"][3].pop("keypoints"))
    with pytest.raises(AnnotationError, match=r"test_coco\.json: annotations\[3\].*'keypoints'"):
        load_coco_keypoints(ann, coco_sample_dir, COCO_BODY)


def test_wrong_keypoint_length_suggests_the_dataset(coco_sample_dir):
    ann = coco_sample_dir / BODY
    edit_json(ann, lambda d: d["annotations"][3].update(keypoints=[0] * 39))
    msg = (
        r"annotations\[3\]\.keypoints has 39 values, the dataset 'coco' expects "
        r"17 keypoints x 3 = 51; is --set data.dataset right\?"
    )
    with pytest.raises(AnnotationError, match=msg):
        load_coco_keypoints(ann, coco_sample_dir, COCO_BODY)
    # A body-only file read as whole-body misses the part fields.
    with pytest.raises(AnnotationError, match=r"test_coco\.json.*'foot_kpts'.*coco_wholebody"):
        load_coco_keypoints(ann, coco_sample_dir, COCO_WHOLEBODY)


def test_empty_dataset_is_an_error(coco_sample_dir):
    ann = coco_sample_dir / BODY

    def unlabel(d):
        for a in d["annotations"]:
            a["keypoints"] = [0] * 51
            a["num_keypoints"] = 0

    edit_json(ann, unlabel)
    with pytest.raises(AnnotationError, match=r"test_coco\.json: no usable person instance"):
        load_coco_keypoints(ann, coco_sample_dir, COCO_BODY)


def test_malformed_detection_file(coco_sample_dir):
    det = coco_sample_dir / DET
    det.write_text(json.dumps({"bbox": [1, 2, 3, 4]}))
    with pytest.raises(AnnotationError, match=r"test_coco_det_AP_H_56\.json.*list"):
        load_detections(det, coco_sample_dir / BODY, coco_sample_dir)
    det.write_text(json.dumps([{"image_id": 785, "bbox": [1, 2, 3, 4], "category_id": 1}]))
    with pytest.raises(AnnotationError, match=r"entry \[0\].*'score'"):
        load_detections(det, coco_sample_dir / BODY, coco_sample_dir)


# ----------------------------------------------------------------------------- dataset


@pytest.fixture
def body(coco_sample_dir):
    return load_coco_keypoints(coco_sample_dir / BODY, coco_sample_dir, COCO_BODY)


def check_sample(sample, k, heatmaps=True):
    assert sample["image"].shape == (3, 128, 96) and sample["image"].dtype == torch.float32
    assert sample["reg_target"].shape == (k, 2) and sample["reg_target"].dtype == torch.float32
    assert sample["reg_weight"].shape == (k,) and sample["reg_weight"].dtype == torch.float32
    if heatmaps:
        assert sample["hm_target"].shape == (k, 32, 24)
        assert sample["hm_target"].dtype == torch.float32
        assert sample["hm_weight"].shape == (k,)
    else:
        assert "hm_target" not in sample
    assert sample["center"].shape == (2,) and sample["scale"].shape == (2,)
    assert isinstance(sample["image_id"], int)
    assert isinstance(sample["bbox_score"], float) and isinstance(sample["area"], float)


def test_eval_samples_map_back_to_the_image(body):
    ds = TopDownPoseDataset(body, COCO_BODY, CFG, train=False)
    for i in range(len(ds)):
        s = ds[i]
        check_sample(s, 17)
        assert s["scale"][0] / s["scale"][1] == pytest.approx(96 / 128)
        kpts = body[i].keypoints
        labelled = (kpts[:, 2] > 0) & (s["reg_weight"].numpy() > 0)
        assert labelled.sum() >= 1
        back = normalized_to_image(
            s["reg_target"][None].double(), s["center"][None], s["scale"][None], CFG.input_size
        )[0].numpy()
        np.testing.assert_allclose(back[labelled], kpts[labelled, :2], atol=1e-3)
        # The heatmap targets decode to the same points (crop px), within 0.05 px.
        coords, _ = decode_heatmaps(s["hm_target"][None])
        norm = heatmap_to_normalized(coords, CFG.input_size, CFG.heatmap_size)[0]
        err = ((norm - s["reg_target"]) * torch.tensor(CFG.input_size)).abs()
        assert err[torch.from_numpy(labelled)].max() < 0.05
        np.testing.assert_array_equal(s["hm_weight"].numpy(), s["reg_weight"].numpy())


def test_eval_sample_without_heatmaps_and_collate(body):
    ds = TopDownPoseDataset(body, COCO_BODY, CFG, train=False, with_heatmaps=False)
    check_sample(ds[0], 17, heatmaps=False)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 128, 96) and batch["image_id"].shape == (4,)


@pytest.mark.parametrize(
    "info, ann, pairs",
    [
        (COCO_BODY, BODY, [("left_wrist", "right_wrist")]),
        (
            COCO_WHOLEBODY,
            WHOLE,
            [("left_wrist", "right_wrist"), ("left_hand_root", "right_hand_root"),
             ("left_thumb4", "right_thumb4"), ("left_big_toe", "right_big_toe")],
        ),
    ],
    ids=["coco", "coco_wholebody"],
)  # fmt: skip
def test_flip_swaps_sides_and_twice_is_identity(coco_sample_dir, info, ann, pairs):
    instances = load_coco_keypoints(coco_sample_dir / ann, coco_sample_dir, info)
    names = info.keypoint_names
    for inst in instances[:4]:
        kpts = inst.keypoints
        flipped = flip_keypoints(kpts, inst.width, info.flip_index)
        np.testing.assert_allclose(
            flip_keypoints(flipped, inst.width, info.flip_index), kpts, atol=1e-4
        )
        for left, right in pairs:
            l, r = names.index(left), names.index(right)
            assert flipped[r, 0] == pytest.approx(inst.width - 1 - kpts[l, 0])
            assert flipped[r, 1:] == pytest.approx(kpts[l, 1:])
            assert flipped[l, 0] == pytest.approx(inst.width - 1 - kpts[r, 0])
        # The whole left hand becomes the right hand.
        if "lefthand" in [p[0] for p in info.parts]:
            lh, rh = info.part_slice("lefthand"), info.part_slice("righthand")
            np.testing.assert_allclose(flipped[rh, 1:], kpts[lh, 1:])

    # Through the dataset: a flipped crop is the mirror of the plain crop.
    plain = TopDownPoseDataset(instances, info, NO_AUG, train=True)
    mirrored = TopDownPoseDataset(instances, info, dataclasses.replace(NO_AUG, flip_prob=1.0), True)
    a, b = plain[0], mirrored[0]
    w = NO_AUG.input_size[0]
    expected = a["reg_target"][info.flip_index].clone()
    expected[:, 0] = (w - 1) / w - expected[:, 0]
    np.testing.assert_allclose(b["reg_target"], expected, atol=1e-5)
    np.testing.assert_array_equal(b["reg_weight"], a["reg_weight"][info.flip_index])
    np.testing.assert_allclose(b["hm_target"], a["hm_target"][info.flip_index].flip(-1), atol=1e-5)
    assert (b["image"] - a["image"].flip(-1)).abs().max() < 0.05


def test_train_augmentation_is_reproducible_per_seed_and_epoch(body):
    ds = TopDownPoseDataset(body, COCO_BODY, CFG, train=True, seed=3)
    check_sample(ds[1], 17)
    ds.set_epoch(2)
    first = ds[1]
    ds[0]  # order of access does not matter
    again = TopDownPoseDataset(body, COCO_BODY, CFG, train=True, seed=3)  # as in a fresh worker
    again.set_epoch(2)
    for key in ("image", "reg_target", "hm_target", "center", "scale"):
        torch.testing.assert_close(again[1][key], first[key])
        torch.testing.assert_close(ds[1][key], first[key])
    ds.set_epoch(3)
    assert not torch.equal(ds[1]["image"], first["image"])
    other_seed = TopDownPoseDataset(body, COCO_BODY, CFG, train=True, seed=4)
    other_seed.set_epoch(2)
    assert not torch.equal(other_seed[1]["image"], first["image"])
    # Eval mode has no randomness at all.
    ev = TopDownPoseDataset(body, COCO_BODY, CFG, train=False)
    ev.set_epoch(5)
    torch.testing.assert_close(
        ev[1]["image"], TopDownPoseDataset(body, COCO_BODY, CFG, False)[1]["image"]
    )


def test_train_targets_stay_consistent_under_augmentation(body):
    ds = TopDownPoseDataset(body, COCO_BODY, CFG, train=True, seed=0)
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            w = s["reg_weight"] > 0
            t = s["reg_target"][w]
            assert ((t >= 0) & (t <= 1)).all()
            assert re.fullmatch(r"\d+", str(s["image_id"]))
            coords, _ = decode_heatmaps(s["hm_target"][None])
            norm = heatmap_to_normalized(coords, CFG.input_size, CFG.heatmap_size)[0]
            err = ((norm - s["reg_target"]) * torch.tensor(CFG.input_size)).abs()[w]
            assert err.numel() == 0 or err.max() < 0.05


def test_detection_dataset(coco_sample_dir):
    ds = TopDownPoseDataset.from_coco(
        coco_sample_dir / BODY, coco_sample_dir, COCO_BODY, CFG, train=False,
        det_file=coco_sample_dir / DET, det_score_thr=0.5,
    )  # fmt: skip
    assert len(ds) == 18
    s = ds[0]
    check_sample(s, 17)
    assert s["reg_weight"].sum() == 0 and s["bbox_score"] >= 0.5
    with pytest.raises(ValueError, match=r"no person detection with score >= 2"):
        TopDownPoseDataset.from_coco(
            coco_sample_dir / BODY, coco_sample_dir, COCO_BODY, CFG, train=False,
            det_file=coco_sample_dir / DET, det_score_thr=2.0,
        )  # fmt: skip


def test_jpeg_draft_keeps_targets_and_crops_close(body):
    """data.jpeg_draft: the same targets, and crops that differ from today's only by the
    prefilter a reduced decode applies (measured on these images at 128x96: mean abs
    difference 0.04 to 0.18 of a normalised unit, one unit being about 57 grey levels;
    the crop without it is bilinear sampling with no antialiasing, so aliased)."""
    plain = TopDownPoseDataset(body, COCO_BODY, CFG, train=True)
    draft = TopDownPoseDataset(body, COCO_BODY, dataclasses.replace(CFG, jpeg_draft=True), True)
    changed = 0
    for epoch in range(2):
        plain.set_epoch(epoch)
        draft.set_epoch(epoch)
        for i in range(len(body)):
            a, b = plain[i], draft[i]
            for key in ("reg_target", "reg_weight", "hm_target", "hm_weight", "center", "scale"):
                assert torch.equal(a[key], b[key]), key
            diff = (a["image"] - b["image"]).abs().mean().item()
            assert diff < 0.25
            changed += diff > 0
    assert changed > 0  # the large people of these images are decoded at a reduced scale
