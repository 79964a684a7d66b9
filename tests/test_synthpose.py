"""SynthPose: determinism, COCO validity, visibility labels, whole-body layout, CLI."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ocdlib.data.synthpose import (
    NUM_PARTS,
    OCCLUDER_LABEL,
    SynthPoseSpec,
    add_synth_subparser,
    generate_synthpose,
    render_synthpose_image,
)
from ocdlib.metainfo import BODY_NAMES, COCO_WHOLEBODY

SIZE = (128, 128)
N_TRAIN, N_VAL = 8, 4


@pytest.fixture(scope="module")
def synth_body(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "body"
    generate_synthpose(out, N_TRAIN, N_VAL, seed=3, image_size=SIZE, progress=False)
    return out


@pytest.fixture(scope="module")
def synth_wholebody(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "wholebody"
    generate_synthpose(out, N_TRAIN, N_VAL, seed=3, wholebody=True, image_size=SIZE, progress=False)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _load(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"{split}.json").read_text())


def test_same_seed_gives_identical_bytes_and_other_seed_differs(synth_body, tmp_path):
    again = tmp_path / "again"
    generate_synthpose(again, N_TRAIN, N_VAL, seed=3, image_size=SIZE, progress=False)
    first, second = _files(synth_body), _files(again)
    assert sorted(first) == sorted(second)
    assert len([k for k in first if k.endswith(".jpg")]) == N_TRAIN + N_VAL
    for name in first:
        assert first[name] == second[name], f"{name} differs between two runs with one seed"

    other = tmp_path / "other"
    generate_synthpose(other, N_TRAIN, N_VAL, seed=4, image_size=SIZE, progress=False)
    third = _files(other)
    assert third["annotations/train.json"] != first["annotations/train.json"]
    assert third["images/train/0000001.jpg"] != first["images/train/0000001.jpg"]


def test_workers_do_not_change_the_files(synth_body, tmp_path):
    out = tmp_path / "parallel"
    generate_synthpose(out, N_TRAIN, N_VAL, seed=3, image_size=SIZE, progress=False, workers=2)
    assert _files(out) == _files(synth_body)


def test_coco_files_load_and_ground_truth_scores_ap_one(synth_body):
    ann_file = synth_body / "annotations" / "val.json"
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
    assert gt.getCatIds() == [1]
    assert gt.loadCats(1)[0]["keypoints"] == list(BODY_NAMES)
    results = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in gt.dataset["annotations"]
        if a["num_keypoints"] > 0
    ]
    assert results, "no labelled person in the validation images"
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)

    # A shifted copy must score lower, or the check above proves nothing.
    for r in results:
        kp = np.asarray(r["keypoints"], dtype=float).reshape(-1, 3)
        kp[:, 0] += 6.0
        r["keypoints"] = kp.ravel().tolist()
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), iouType="keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] < 0.9


def test_annotations_are_sane(synth_body):
    coco = _load(synth_body, "train")
    width, height = SIZE[1], SIZE[0]
    assert [img["id"] for img in coco["images"]] == list(range(1, N_TRAIN + 1))
    assert all((img["height"], img["width"]) == SIZE for img in coco["images"])
    ids = [a["id"] for a in coco["annotations"]]
    assert len(set(ids)) == len(ids)
    counts = np.zeros(3, dtype=int)
    inside_box, labelled_v2 = 0, 0
    for a in coco["annotations"]:
        kp = np.asarray(a["keypoints"], dtype=float).reshape(17, 3)
        v = kp[:, 2]
        assert set(np.unique(v)) <= {0.0, 1.0, 2.0}
        assert a["num_keypoints"] == int((v > 0).sum())
        assert a["iscrowd"] == 0 and a["category_id"] == 1
        x, y, w, h = a["bbox"]
        assert a["area"] > 0 and w > 0 and h > 0
        assert a["area"] <= w * h + 1e-6  # the silhouette fills part of its box
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
        lab = kp[v > 0]
        assert np.all((lab[:, 0] >= 0) & (lab[:, 0] <= width - 1))
        assert np.all((lab[:, 1] >= 0) & (lab[:, 1] <= height - 1))
        assert np.all(kp[v == 0, :2] == 0)
        vis = kp[v == 2]
        labelled_v2 += len(vis)
        inside_box += int(
            np.sum(
                (vis[:, 0] >= x - 1)
                & (vis[:, 0] <= x + w)
                & (vis[:, 1] >= y - 1)
                & (vis[:, 1] <= y + h)
            )
        )
        counts += np.bincount(v.astype(int), minlength=3)
    assert counts[1] > 0 and counts[2] > 0, f"visibility counts {counts}"
    assert counts[2] > counts[1], "most labelled keypoints should be visible"
    assert inside_box >= 0.95 * labelled_v2

    meta = json.loads((synth_body / "synthpose.json").read_text())
    assert meta["seed"] == 3 and meta["image_size"] == list(SIZE)
    assert meta["statistics"]["train"]["keypoints_v1"] == int(counts[1])
    assert SynthPoseSpec.from_dict(meta["spec"]) == SynthPoseSpec()


def test_visibility_agrees_with_the_label_map():
    """v=2 points show no other figure or object; v=1 points mostly do (or face away)."""
    covered_v1, total_v1, checked_v2 = 0, 0, 0
    for index in range(6):
        sample = render_synthpose_image(7, "val", index, SIZE)
        for person in sample.people:
            kp = person["keypoints"]
            if person["num_keypoints"] == 0:
                continue
            labels = sample.label_map[np.rint(kp[:, 1]).astype(int), np.rint(kp[:, 0]).astype(int)]
            v = kp[:, 2]
            owner = (labels.astype(int) - 1) // NUM_PARTS
            shown = labels[v == 2]
            assert np.all((shown == 0) | (owner[v == 2] == person["figure"]))
            assert not np.any(shown == OCCLUDER_LABEL)
            checked_v2 += int((v == 2).sum())
            body_v1 = v[5:17] == 1  # limbs: no facing rule, hidden only when covered
            total_v1 += int(body_v1.sum())
            covered_v1 += int(np.sum(labels[5:17][body_v1] != 0))
    assert checked_v2 > 50
    assert total_v1 > 0 and covered_v1 == total_v1


def test_wholebody_layout_matches_coco_wholebody(synth_wholebody, synth_body):
    coco = _load(synth_wholebody, "val")
    lengths = {
        "keypoints": 17,
        "foot_kpts": 6,
        "face_kpts": 68,
        "lefthand_kpts": 21,
        "righthand_kpts": 21,
    }
    assert sum(lengths.values()) == COCO_WHOLEBODY.num_keypoints
    assert [f for _, f in COCO_WHOLEBODY.part_fields] == list(lengths)
    faces = hands = 0
    for a in coco["annotations"]:
        for field, k in lengths.items():
            assert len(a[field]) == 3 * k, field
        for part, field in (("face", "face_kpts"), ("lefthand", "lefthand_kpts")):
            labelled = any(v > 0 for v in a[field][2::3])
            assert a[f"{part}_valid"] is labelled
            box = a[f"{part}_box"]
            assert len(box) == 4 and (box[2] > 0) == labelled
        assert a["foot_valid"] is any(v > 0 for v in a["foot_kpts"][2::3])
        faces += a["face_valid"]
        hands += a["lefthand_valid"] + a["righthand_valid"]
    assert faces > 0 and hands > 0
    # Body and whole-body variants of one seed show the same images and bodies.
    body = _load(synth_body, "val")
    assert [a["keypoints"] for a in body["annotations"]] == [
        a["keypoints"] for a in coco["annotations"]
    ]
    assert (synth_body / "images/val/0000001.jpg").read_bytes() == (
        synth_wholebody / "images/val/0000001.jpg"
    ).read_bytes()


def test_face_points_follow_the_ibug_layout():
    """Point 0 of the jaw is on the figure's right: image left for a frontal face."""
    spec = SynthPoseSpec(
        people_per_image=(1, 1),
        viewpoint_weights=(1.0, 0.0, 0.0),
        yaw_jitter_deg=0.0,
        rotation_std_deg=0.0,
        large_rotation_prob=0.0,
        truncation_prob=0.0,
        occluders=(0, 0),
    )
    for index in range(3):
        kp = render_synthpose_image(0, "train", index, (192, 192), spec).people[0]["keypoints"]
        face = kp[23:91]
        assert face[0, 0] < face[16, 0]  # jaw runs from image left to image right
        assert face[36, 0] < face[45, 0]  # right eye's outer corner left of the left eye's
        assert kp[2, 0] < kp[1, 0]  # COCO right_eye is on the image left when facing us
        assert kp[6, 0] < kp[5, 0]  # so is the right shoulder


def test_spec_errors_name_the_field():
    with pytest.raises(ValueError, match="people_per_image"):
        SynthPoseSpec(people_per_image=(3, 1))
    with pytest.raises(ValueError, match="pose_weights"):
        SynthPoseSpec(pose_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="unknown SynthPoseSpec"):
        SynthPoseSpec.from_dict({"people": 3})


def test_refuses_to_write_into_a_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="synthpose.json"):
        generate_synthpose(tmp_path, 1, 1, seed=0, image_size=SIZE, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_cli_writes_a_dataset_and_prints_statistics(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_synth_subparser(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    args = parser.parse_args(
        ["synth", "--out", str(out), "--train", "2", "--val", "1", "--size", "96x80"]
        + ["--seed", "5", "--no-progress", "--spec", "occluders=[0,0]"]
    )
    assert args.func(args) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["images"] == 3
    meta = json.loads((out / "synthpose.json").read_text())
    assert meta["image_size"] == [96, 80] and meta["spec"]["occluders"] == [0, 0]
    with pytest.raises(SystemExit):
        parser.parse_args(["synth", "--out", str(out), "--size", "96by80"])
