"""Predictions and the COCO keypoint results they become: rescoring, OKS-NMS, the file.

Steps 1 to 3 of the protocol in the package's docstring: `format_results` rescores each
instance, keeps the survivors of OKS-NMS per image and lays them out as COCO keypoint
results, the body in `keypoints` and any other part in its own field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.coco import read_json
from ..errors import ConfigError
from ..metainfo import DatasetInfo

# mmpose writes every result with the person category.
PERSON_CATEGORY_ID = 1


@dataclass
class Prediction:
    """One top-down instance, in original image pixels.

    `area` is the instance's box area in image pixels; it only scales the OKS
    of OKS-NMS (mmpose uses the product of the padded box scale there).
    `bbox` (x, y, w, h) is kept for reference and not written to the results
    file: a `bbox` field would make pycocotools take the result for a box
    detection.
    """

    image_id: int
    keypoints: np.ndarray  # (K, 2) x, y
    keypoint_scores: np.ndarray  # (K,)
    bbox_score: float
    area: float
    bbox: np.ndarray | None = None

    def __post_init__(self):
        self.image_id = int(self.image_id)
        self.keypoints = np.asarray(self.keypoints, dtype=np.float64)
        self.keypoint_scores = np.asarray(self.keypoint_scores, dtype=np.float64)
        self.bbox_score = float(self.bbox_score)
        self.area = float(self.area)
        k = self.keypoints.shape[0] if self.keypoints.ndim == 2 else -1
        if self.keypoints.ndim != 2 or self.keypoints.shape[1] != 2:
            raise ConfigError(
                f"Prediction for image {self.image_id}: keypoints must have shape (K, 2), "
                f"got {self.keypoints.shape}"
            )
        if self.keypoint_scores.shape != (k,):
            raise ConfigError(
                f"Prediction for image {self.image_id}: keypoint_scores must have shape ({k},) "
                f"to match keypoints, got {self.keypoint_scores.shape}"
            )


def predictions_from_arrays(
    image_ids: Sequence[int],
    keypoints: np.ndarray,
    keypoint_scores: np.ndarray,
    bbox_scores: Sequence[float],
    areas: Sequence[float],
) -> list[Prediction]:
    """Split batched arrays, keypoints (N, K, 2) and scores (N, K), into Predictions."""
    keypoints = np.asarray(keypoints)
    keypoint_scores = np.asarray(keypoint_scores)
    n = len(image_ids)
    for name, value in (
        ("keypoints", keypoints),
        ("keypoint_scores", keypoint_scores),
        ("bbox_scores", bbox_scores),
        ("areas", areas),
    ):
        if len(value) != n:
            raise ConfigError(f"predictions_from_arrays: {len(value)} {name} for {n} image_ids")
    return [
        Prediction(image_ids[i], keypoints[i], keypoint_scores[i], bbox_scores[i], areas[i])
        for i in range(n)
    ]


# ----------------------------------------------------------------------------- rescoring, NMS


def rescore(pred: Prediction, keypoint_score_thr: float = 0.2) -> float:
    """Instance score: box score x mean of the keypoint scores strictly above the threshold.

    With no keypoint above the threshold the mean counts as 0, so the score is 0
    (mmpose's "bbox_keypoint" score mode).
    """
    scores = pred.keypoint_scores
    confident = scores[scores > keypoint_score_thr]
    mean = float(confident.mean()) if confident.size else 0.0
    return pred.bbox_score * mean


def oks_iou(
    keypoints: np.ndarray,
    others: np.ndarray,
    area: float,
    other_areas: np.ndarray,
    sigmas: np.ndarray,
) -> np.ndarray:
    """OKS between one instance (K, 2) and N others (N, K, 2), over all K keypoints.

    The scale is the mean of the two instances' areas; this is the overlap used
    by OKS-NMS, not COCOeval's OKS (which uses labelled ground-truth keypoints only).
    """
    others = np.asarray(others, dtype=np.float64).reshape(-1, *np.shape(keypoints))
    variances = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((others - np.asarray(keypoints, dtype=np.float64)[None]) ** 2).sum(-1)  # (N, K)
    scale = (area + np.asarray(other_areas, dtype=np.float64)) / 2.0 + np.spacing(1)
    e = d2 / variances[None] / scale[:, None] / 2.0
    return np.exp(-e).mean(axis=1)


def oks_nms(
    preds: Sequence[Prediction],
    thr: float = 0.9,
    *,
    sigmas: np.ndarray,
    scores: Sequence[float] | None = None,
) -> list[int]:
    """Indices of the instances of one image that survive OKS-NMS, best first.

    `scores` are the instance scores (default: `rescore` of each prediction). An
    instance is suppressed when its OKS with a kept, higher-scored one is above
    `thr`. Equal scores are visited later-index first, as mmpose's reversed
    argsort does.
    """
    if len(preds) == 0:
        return []
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if len(sigmas) != len(preds[0].keypoints):
        raise ConfigError(
            f"oks_nms: {len(sigmas)} sigmas for {len(preds[0].keypoints)} keypoints per instance"
        )
    if scores is None:
        scores = [rescore(p) for p in preds]
    scores = np.asarray(scores, dtype=np.float64)
    keypoints = np.stack([p.keypoints for p in preds])
    areas = np.array([p.area for p in preds], dtype=np.float64)
    order = np.argsort(scores, kind="stable")[::-1]
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        overlap = oks_iou(keypoints[i], keypoints[rest], areas[i], areas[rest], sigmas)
        order = rest[overlap <= thr]
    return keep


# ----------------------------------------------------------------------------- results format


def _layout(info: DatasetInfo) -> list[tuple[str, str, slice]]:
    """(part, annotation field, keypoint slice) in keypoint order; checks that parts tile 0..K."""
    fields = dict(info.part_fields)
    parts = sorted(info.parts, key=lambda p: p[1])
    out, expected_start = [], 0
    for name, start, stop in parts:
        if start != expected_start or name not in fields:
            raise ConfigError(
                f"DatasetInfo {info.name!r}: parts {info.parts} with fields {info.part_fields} "
                "must tile the keypoints without gaps and each name a field"
            )
        out.append((name, fields[name], slice(start, stop)))
        expected_start = stop
    if expected_start != info.num_keypoints:
        raise ConfigError(
            f"DatasetInfo {info.name!r}: parts cover {expected_start} of "
            f"{info.num_keypoints} keypoints"
        )
    return out


def format_results(
    preds: Sequence[Prediction],
    info: DatasetInfo,
    keypoint_score_thr: float = 0.2,
    oks_nms_thr: float = 0.9,
    use_nms: bool = True,
) -> list[dict[str, Any]]:
    """Rescore, OKS-NMS per image, and lay out as COCO keypoint results.

    Images come in the order of their first prediction; within an image the
    kept instances come best first (mmpose's order).
    """
    layout = _layout(info)
    by_image: dict[int, list[Prediction]] = {}
    for pred in preds:
        if pred.keypoints.shape[0] != info.num_keypoints:
            raise ConfigError(
                f"Prediction for image {pred.image_id} has {pred.keypoints.shape[0]} keypoints; "
                f"dataset {info.name!r} has {info.num_keypoints}: check data.dataset in the config"
            )
        if not (np.isfinite(pred.keypoints).all() and np.isfinite(pred.keypoint_scores).all()):
            raise ConfigError(
                f"Prediction for image {pred.image_id} has non-finite keypoints or scores: "
                "the model diverged or its output was not mapped back to image pixels"
            )
        by_image.setdefault(pred.image_id, []).append(pred)

    results = []
    for image_id, image_preds in by_image.items():
        scores = [rescore(p, keypoint_score_thr) for p in image_preds]
        if use_nms:
            keep = oks_nms(image_preds, oks_nms_thr, sigmas=info.sigmas_array, scores=scores)
        else:
            keep = list(range(len(image_preds)))
        for i in keep:
            pred = image_preds[i]
            flat = np.concatenate([pred.keypoints, pred.keypoint_scores[:, None]], axis=1)
            entry: dict[str, Any] = {"image_id": image_id, "category_id": PERSON_CATEGORY_ID}
            for _, field, sl in layout:
                entry[field] = flat[sl].reshape(-1).tolist()
            entry["score"] = float(scores[i])
            results.append(entry)
    return results


def load_results_json(path: str | Path) -> list[dict[str, Any]]:
    """Read a COCO keypoint results file (a JSON list of {image_id, keypoints, score, ...})."""
    path = Path(path)
    results = read_json(path, "results")
    if not isinstance(results, list):
        raise ConfigError(
            f"results file {path}: expected a JSON list of results, got {type(results).__name__}"
        )
    for i, r in enumerate(results):
        missing = [k for k in ("image_id", "keypoints", "score") if k not in r]
        if missing:
            raise ConfigError(f"results file {path}: entry {i} lacks field(s) {missing}")
    return results
