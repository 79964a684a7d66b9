"""COCO evaluation: rescoring, OKS-NMS, the results file, and COCOeval per part on real COCO data.

Ground truth is read with json / pycocotools directly, so these tests depend on
no other ocdlib module than metainfo.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ocdlib.coco_eval import (
    STAT_NAMES,
    Prediction,
    evaluate_coco,
    evaluate_results_file,
    load_results_json,
    oks_iou,
    oks_nms,
    rescore,
)
from ocdlib.metainfo import COCO_BODY, COCO_WHOLEBODY

BODY_FILE = "test_coco.json"
WHOLEBODY_FILE = "test_coco_wholebody.json"
DET_FILE = "test_coco_det_AP_H_56.json"
WB_FIELDS = [field for _, field in COCO_WHOLEBODY.part_fields]


def _annotations(path):
    return json.loads(path.read_text())["annotations"]


def _keypoints_of(ann, fields):
    return np.concatenate([np.asarray(ann[f], dtype=np.float64).reshape(-1, 3) for f in fields])


def _gt_predictions(path, fields, score_unlabelled=None):
    """Ground truth as predictions for every person with labelled body keypoints.

    Unlabelled keypoints sit at the box centre with score 0 (or `score_unlabelled`).
    """
    preds = []
    for ann in _annotations(path):
        if np.count_nonzero(np.asarray(ann["keypoints"][2::3]) > 0) == 0:
            continue
        kpts = _keypoints_of(ann, fields)
        labelled = kpts[:, 2] > 0
        x, y, w, h = ann["bbox"]
        xy = kpts[:, :2].copy()
        xy[~labelled] = (x + w / 2, y + h / 2)
        scores = np.where(labelled, 1.0, 0.0 if score_unlabelled is None else score_unlabelled)
        preds.append(Prediction(ann["image_id"], xy, scores, 1.0, ann["area"]))
    return preds


def _perturbed(preds, seed, noise_px=3.0):
    rng = np.random.default_rng(seed)
    return [
        Prediction(
            p.image_id,
            p.keypoints + rng.normal(0.0, noise_px, p.keypoints.shape),
            rng.uniform(0.05, 1.0, p.keypoint_scores.shape),
            rng.uniform(0.5, 1.0),
            p.area,
        )
        for p in preds
    ]


def _direct_cocoeval(coco_gt, results, sigmas):
    """Plain pycocotools on a results list (loadRes computes area and ids itself)."""
    coco_dt = coco_gt.loadRes(results)
    coco_eval = COCOeval(coco_gt, coco_dt, "keypoints")
    coco_eval.params.kpt_oks_sigmas = np.asarray(sigmas)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return dict(zip(STAT_NAMES, coco_eval.stats))


def _part_gt(path, fields, tmp_path):
    """A plain COCO file whose `keypoints` are `fields` concatenated, num_keypoints recounted."""
    data = json.loads(path.read_text())
    for ann in data["annotations"]:
        kpts = [v for f in fields for v in ann[f]]
        ann["keypoints"] = kpts
        ann["num_keypoints"] = int(np.count_nonzero(np.asarray(kpts[2::3]) > 0))
    out = tmp_path / f"gt_{'_'.join(fields)}.json"
    out.write_text(json.dumps(data))
    return COCO(str(out))


# ----------------------------------------------------------------------------- rescoring, NMS


def test_rescore_uses_only_keypoints_strictly_above_threshold():
    pred = Prediction(1, np.zeros((4, 2)), np.array([0.1, 0.3, 0.5, 0.2]), 0.8, 100.0)
    assert rescore(pred, 0.2) == pytest.approx(0.8 * 0.4)  # 0.2 itself does not count
    assert rescore(pred, 0.0) == pytest.approx(0.8 * 0.275)
    assert rescore(pred, 0.6) == 0.0  # nothing above: score 0, as mmpose


def test_oks_iou_identical_is_one_and_matches_formula():
    sigmas = COCO_BODY.sigmas_array
    a = np.random.default_rng(0).uniform(0, 100, (17, 2))
    b = a.copy()
    b[5] += (3.0, 4.0)  # 5 px off on one keypoint
    oks = oks_iou(a, np.stack([a, b]), 400.0, np.array([400.0, 600.0]), sigmas)
    expected_k5 = np.exp(-25.0 / (2 * sigmas[5]) ** 2 / ((400.0 + 600.0) / 2) / 2)
    assert oks[0] == pytest.approx(1.0)
    assert oks[1] == pytest.approx((16 + expected_k5) / 17)


def test_oks_nms_removes_duplicate_and_keeps_distinct_people():
    rng = np.random.default_rng(1)
    person_a = rng.uniform(100, 200, (17, 2))
    person_b = person_a + 150.0
    scores = np.full(17, 0.9)
    preds = [
        Prediction(7, person_a + 0.5, scores, 0.6, 10000.0),  # duplicate of A, lower score
        Prediction(7, person_a, scores, 0.9, 10000.0),
        Prediction(7, person_b, scores, 0.7, 10000.0),
    ]
    assert oks_nms(preds, 0.9, sigmas=COCO_BODY.sigmas_array) == [1, 2]
    # OKS of the duplicate is just below 1: a threshold of 1 suppresses nothing.
    assert sorted(oks_nms(preds, 1.0, sigmas=COCO_BODY.sigmas_array)) == [0, 1, 2]
    # The order follows the given scores: the better-scored duplicate survives.
    assert oks_nms(preds, 0.9, sigmas=COCO_BODY.sigmas_array, scores=[0.95, 0.9, 0.7]) == [0, 2]


# ----------------------------------------------------------------------------- COCO body


def test_ground_truth_as_predictions_gives_ap_one_body(coco_sample_dir, tmp_path):
    ann_file = coco_sample_dir / BODY_FILE
    preds = _gt_predictions(ann_file, ["keypoints"], score_unlabelled=1.0)
    metrics = evaluate_coco(preds, ann_file, COCO_BODY, tmp_path / "out")
    assert set(metrics) == set(STAT_NAMES)
    assert metrics["AP"] == 1.0 and metrics["AR"] == 1.0 and metrics["AP75"] == 1.0
    results = load_results_json(tmp_path / "out" / "predictions.json")
    assert len(results) == len(preds) == 12  # distinct people survive OKS-NMS
    assert set(results[0]) == {"image_id", "category_id", "keypoints", "score"}
    assert len(results[0]["keypoints"]) == 51 and results[0]["category_id"] == 1
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved == metrics


def test_perturbed_body_matches_direct_cocoeval_of_written_file(coco_sample_dir, tmp_path):
    ann_file = coco_sample_dir / BODY_FILE
    preds = _perturbed(_gt_predictions(ann_file, ["keypoints"]), seed=0)
    # A lower-scored duplicate, for OKS-NMS to remove before the file is written.
    dup = preds[0]
    preds.append(Prediction(dup.image_id, dup.keypoints + 0.3, dup.keypoint_scores, 0.1, dup.area))
    out = tmp_path / "out"
    metrics = evaluate_coco(preds, ann_file, COCO_BODY, out)

    results = json.loads((out / "predictions.json").read_text())
    assert len(results) == len(preds) - 1
    first = results[[r["image_id"] for r in results].index(dup.image_id)]
    flat = np.asarray(first["keypoints"]).reshape(-1, 3)
    assert np.allclose(flat[:, :2], dup.keypoints) and np.allclose(flat[:, 2], dup.keypoint_scores)
    assert first["score"] == pytest.approx(rescore(dup))

    direct = _direct_cocoeval(COCO(str(ann_file)), str(out / "predictions.json"), COCO_BODY.sigmas)
    for name in STAT_NAMES:
        assert metrics[name] == pytest.approx(direct[name], abs=1e-12), name
    assert 0.3 < metrics["AP"] < 1.0  # a few pixels of noise cost AP on small people
    assert evaluate_results_file(out / "predictions.json", ann_file, COCO_BODY) == metrics


def test_detection_file_end_to_end(coco_sample_dir, tmp_path):
    """Top-down on the AP_H 56 person detections: predict the best-overlapping person's pose."""
    ann_file = coco_sample_dir / BODY_FILE
    people = [a for a in _annotations(ann_file) if a["num_keypoints"] > 0]
    dets = json.loads((coco_sample_dir / DET_FILE).read_text())

    def iou(a, b):
        iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        inter = iw * ih
        return inter / (a[2] * a[3] + b[2] * b[3] - inter)

    matched, centred = [], []
    for det in dets:
        x, y, w, h = det["bbox"]
        centre = np.tile((x + w / 2, y + h / 2), (17, 1))
        centred.append(Prediction(det["image_id"], centre, np.full(17, 0.5), det["score"], w * h))
        same_image = [a for a in people if a["image_id"] == det["image_id"]]
        best = max(same_image, key=lambda a: iou(det["bbox"], a["bbox"]), default=None)
        if best is not None and iou(det["bbox"], best["bbox"]) >= 0.5:
            kpts = _keypoints_of(best, ["keypoints"])
            labelled = kpts[:, 2] > 0
            xy = np.where(labelled[:, None], kpts[:, :2], centre)
            scores = np.where(labelled, 0.9, 0.1)
        else:
            xy, scores = centre, np.full(17, 0.3)
        matched.append(Prediction(det["image_id"], xy, scores, det["score"], w * h))

    metrics = evaluate_coco(matched, ann_file, COCO_BODY, tmp_path / "matched")
    written = load_results_json(tmp_path / "matched" / "predictions.json")
    assert len(written) < len(dets)  # boxes on the same person collapse under OKS-NMS
    assert all(0.0 <= metrics[name] <= 1.0 for name in ("AP", "AP50", "AP75", "AR"))
    assert metrics["AP"] > 0.9
    baseline = evaluate_coco(centred, ann_file, COCO_BODY, tmp_path / "centred")
    assert 0.0 <= baseline["AP"] < metrics["AP"]


def test_no_predictions_warns_and_scores_zero(coco_sample_dir, tmp_path):
    with pytest.warns(UserWarning, match="no predictions"):
        metrics = evaluate_coco([], coco_sample_dir / BODY_FILE, COCO_BODY, tmp_path)
    assert metrics == dict.fromkeys(STAT_NAMES, 0.0)
    assert json.loads((tmp_path / "predictions.json").read_text()) == []
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics


def test_prediction_for_unknown_image_is_a_clear_error(coco_sample_dir, tmp_path):
    preds = _gt_predictions(coco_sample_dir / BODY_FILE, ["keypoints"])
    preds.append(Prediction(123456789, np.zeros((17, 2)), np.ones(17), 1.0, 100.0))
    with pytest.raises(ValueError, match=r"not in .*test_coco\.json.*123456789"):
        evaluate_coco(preds, coco_sample_dir / BODY_FILE, COCO_BODY, tmp_path)


def test_layout_mismatches_are_clear_errors(coco_sample_dir, tmp_path):
    body_preds = _gt_predictions(coco_sample_dir / BODY_FILE, ["keypoints"])
    with pytest.raises(ValueError, match="has 17 keypoints; dataset 'coco_wholebody' has 133"):
        evaluate_coco(body_preds, coco_sample_dir / WHOLEBODY_FILE, COCO_WHOLEBODY, tmp_path)
    pred = Prediction(785, np.zeros((133, 2)), np.ones(133), 1.0, 100.0)
    with pytest.raises(ValueError, match=r"test_coco\.json.*'foot_kpts'.*data\.dataset"):
        evaluate_coco([pred], coco_sample_dir / BODY_FILE, COCO_WHOLEBODY, tmp_path)
    with pytest.raises(ValueError, match="keypoint_scores must have shape"):
        Prediction(785, np.zeros((17, 2)), np.ones(16), 1.0, 100.0)


# ----------------------------------------------------------------------------- COCO-WholeBody


def test_ground_truth_as_predictions_gives_ap_one_for_every_wholebody_part(
    coco_sample_dir, tmp_path
):
    ann_file = coco_sample_dir / WHOLEBODY_FILE
    preds = _gt_predictions(ann_file, WB_FIELDS)
    metrics = evaluate_coco(preds, ann_file, COCO_WHOLEBODY, tmp_path)
    for part in ("body", "foot", "face", "lefthand", "righthand", "hand", "wholebody"):
        assert metrics[f"{part}/AP"] == 1.0, part
        assert metrics[f"{part}/AR"] == 1.0, part
    assert metrics["AP"] == metrics["wholebody/AP"]
    result = load_results_json(tmp_path / "predictions.json")[0]
    sizes = {field: len(result[field]) for field in WB_FIELDS}
    assert sizes == {
        "keypoints": 51,
        "foot_kpts": 18,
        "face_kpts": 204,
        "lefthand_kpts": 63,
        "righthand_kpts": 63,
    }


def test_perturbed_wholebody_parts_match_direct_cocoeval(coco_sample_dir, tmp_path):
    ann_file = coco_sample_dir / WHOLEBODY_FILE
    preds = _perturbed(_gt_predictions(ann_file, WB_FIELDS), seed=1, noise_px=2.0)
    metrics = evaluate_coco(preds, ann_file, COCO_WHOLEBODY, tmp_path / "out")
    results = load_results_json(tmp_path / "out" / "predictions.json")
    assert len(results) == len(preds)

    parts = {name: slice(a, b) for name, a, b in COCO_WHOLEBODY.parts}
    groups = {part: ([field], parts[part]) for part, field in COCO_WHOLEBODY.part_fields}
    groups["wholebody"] = (WB_FIELDS, slice(0, 133))
    direct = {}
    for part, (fields, sl) in groups.items():
        coco_gt = _part_gt(ann_file, fields, tmp_path)
        part_results = [
            {
                "image_id": r["image_id"],
                "category_id": 1,
                "keypoints": [v for f in fields for v in r[f]],
                "score": r["score"],
            }
            for r in results
        ]
        direct[part] = _direct_cocoeval(coco_gt, part_results, COCO_WHOLEBODY.sigmas_array[sl])
        # Area ranges may differ (the official loader sizes every result by its body
        # keypoints); AP and AR over all areas do not depend on that.
        for name in ("AP", "AP50", "AP75", "AR", "AR50", "AR75"):
            assert metrics[f"{part}/{name}"] == pytest.approx(direct[part][name], abs=1e-12)
    hand = (direct["lefthand"]["AP"] + direct["righthand"]["AP"]) / 2
    assert metrics["hand/AP"] == pytest.approx(hand, abs=1e-12)
    assert metrics["AP"] == metrics["wholebody/AP"]
    assert 0.0 < metrics["face/AP"] < metrics["body/AP"] <= 1.0  # small sigmas: face is hardest


def test_result_with_all_zero_part_scores_is_left_out_of_that_part(coco_sample_dir, tmp_path):
    """As the official evaluation: a part predicted with scores <= 0 is no detection for it."""
    ann_file = coco_sample_dir / WHOLEBODY_FILE
    preds = _gt_predictions(ann_file, WB_FIELDS)
    lefthand = COCO_WHOLEBODY.part_slice("lefthand")
    with_lefthand = [p for p in preds if np.all(p.keypoint_scores[lefthand] > 0)]
    assert len(with_lefthand) == 5
    with_lefthand[0].keypoint_scores[lefthand] = 0.0  # its positions stay exact
    metrics = evaluate_coco(preds, ann_file, COCO_WHOLEBODY, tmp_path)
    assert metrics["lefthand/AR"] == pytest.approx(4 / 5)
    assert metrics["body/AR"] == 1.0 and metrics["righthand/AR"] == 1.0
