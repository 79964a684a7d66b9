"""COCOeval of keypoint results against a ground-truth file, part by part where several.

COCO-WholeBody is scored part by part, as the official evaluation (the
authors' scripts, integrated in xtcocotools and called by mmpose) does. This
module reproduces it with plain pycocotools by building, for each part, an
in-memory ground truth whose `keypoints` are that part's keypoints:

- a ground-truth person counts for a part only where the part has labelled
  keypoints (v > 0); otherwise it is an ignore region, exactly as COCOeval
  treats a person without keypoints;
- OKS and the medium / large split use the person's `area`, for every part;
- a prediction whose part scores are all <= 0 is left out of that part;
- a prediction's own area (used only to ignore unmatched predictions outside
  an area range) is the extent of its `keypoints` field, the body, as the
  official loader computes it, for every part;
- "hand" is the mean of the left-hand and right-hand metrics, each evaluated
  on its own 21 keypoints; the dataset's authors report hand AP this way
  (github.com/jin-s13/COCO-WholeBody, issue 38);
- "wholebody" evaluates all keypoints at once.

The only difference from xtcocotools: it reads an optional per-part score
(`foot_score`, ...) from a result; this module writes and reads only `score`,
which is what xtcocotools falls back to and what mmpose writes.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.coco import check_unique_ids, read_json
from ..errors import ConfigError
from ..metainfo import DatasetInfo
from .results import PERSON_CATEGORY_ID, Prediction, _layout, format_results, load_results_json

log = logging.getLogger(__name__)

# COCOeval.stats for iouType "keypoints", in its order.
STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
# Reported parts that are the mean of other parts (the official COCO-WholeBody "hand").
PART_AVERAGES = {"hand": ("lefthand", "righthand")}
# Name of the all-keypoints evaluation of a multi-part dataset.
WHOLEBODY = "wholebody"


def load_ground_truth(ann_file: str | Path, info: DatasetInfo) -> dict[str, Any]:
    """Read a COCO keypoint annotation file and check it matches `info`'s keypoint layout."""
    ann_file = Path(ann_file)
    dataset = read_json(ann_file, "annotation")
    for key in ("images", "annotations", "categories"):
        if key not in dataset:
            raise ConfigError(f"annotation file {ann_file} has no {key!r} list")
    if PERSON_CATEGORY_ID not in {c.get("id") for c in dataset["categories"]}:
        raise ConfigError(
            f"annotation file {ann_file}: no category with id {PERSON_CATEGORY_ID} (person)"
        )
    check_unique_ids(dataset, ann_file)
    layout = _layout(info)
    for ann in dataset["annotations"]:
        if ann.get("category_id") != PERSON_CATEGORY_ID:
            continue
        for key in ("area", "bbox", "image_id", "id"):
            if key not in ann:
                raise ConfigError(
                    f"annotation file {ann_file}: annotation {ann.get('id')} lacks {key!r}, "
                    "which COCOeval needs"
                )
        for part, field, sl in layout:
            n = sl.stop - sl.start
            if field not in ann:
                raise ConfigError(
                    f"annotation file {ann_file}: annotation {ann['id']} lacks the {part} field "
                    f"{field!r} that dataset {info.name!r} expects; set data.dataset to this "
                    "file's keypoint layout"
                )
            if len(ann[field]) != 3 * n:
                raise ConfigError(
                    f"annotation file {ann_file}: annotation {ann['id']} field {field!r} holds "
                    f"{len(ann[field]) // 3} keypoints, dataset {info.name!r} expects {n}; set "
                    "data.dataset to this file's keypoint layout"
                )
    return dataset


def _part_ground_truth(dataset: dict[str, Any], fields: Sequence[str]) -> COCO:
    """In-memory COCO whose `keypoints` are the concatenation of `fields`."""
    anns = []
    for ann in dataset["annotations"]:
        if ann.get("category_id") != PERSON_CATEGORY_ID:
            continue
        keypoints = [v for field in fields for v in ann[field]]
        anns.append(
            {
                "id": ann["id"],
                "image_id": ann["image_id"],
                "category_id": PERSON_CATEGORY_ID,
                "bbox": ann["bbox"],
                "area": ann["area"],
                "iscrowd": ann.get("iscrowd", 0),
                "keypoints": keypoints,
                # COCOeval ignores persons with num_keypoints == 0; count the part's own.
                "num_keypoints": int(np.count_nonzero(np.asarray(keypoints[2::3]) > 0)),
            }
        )
    gt = COCO()
    gt.dataset = {
        "images": dataset["images"],
        "categories": dataset["categories"],
        "annotations": anns,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def _part_detections(
    results: Sequence[dict[str, Any]], fields: Sequence[str]
) -> list[dict[str, Any]]:
    """Results restricted to `fields`, as pycocotools' loadRes would lay them out.

    Drops results whose part scores are all <= 0 (as the official evaluation
    does). Area and box come from the result's `keypoints` field, as loadRes
    computes them on the written file.
    """
    out = []
    for r in results:
        keypoints = [v for field in fields for v in r[field]]
        if not np.any(np.asarray(keypoints[2::3], dtype=np.float64) > 0):
            continue
        body = np.asarray(r["keypoints"], dtype=np.float64)
        x0, x1 = np.min(body[0::3]), np.max(body[0::3])
        y0, y1 = np.min(body[1::3]), np.max(body[1::3])
        out.append(
            {
                "id": len(out) + 1,
                "image_id": r["image_id"],
                "category_id": r.get("category_id", PERSON_CATEGORY_ID),
                "keypoints": keypoints,
                "score": r["score"],
                "area": (x1 - x0) * (y1 - y0),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
            }
        )
    return out


def run_cocoeval(
    gt: COCO,
    detections: Sequence[dict[str, Any]],
    sigmas: np.ndarray,
    phase_times: dict[str, float] | None = None,
) -> dict:
    """COCOeval (keypoints) of prepared detections against `gt`; stdout captured.

    Returns the ten summary statistics by name (-1 where the ground truth has
    no person in that area range, pycocotools' convention); with no detections
    at all, 0 for every statistic (pycocotools cannot load an empty result).
    `phase_times`, when given, receives the seconds of each of pycocotools' steps
    ("loadRes": indexing the detections, "evaluate", "accumulate", "summarize").
    """
    if not detections:
        return dict.fromkeys(STAT_NAMES, 0.0)
    times = phase_times if phase_times is not None else {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        t0 = time.perf_counter()
        dt = COCO()
        dt.dataset = {
            "images": gt.dataset["images"],
            "categories": gt.dataset["categories"],
            "annotations": list(detections),
        }
        dt.createIndex()
        times["loadRes"] = time.perf_counter() - t0
        coco_eval = COCOeval(gt, dt, iouType="keypoints")
        coco_eval.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        coco_eval.params.catIds = [PERSON_CATEGORY_ID]
        for phase in ("evaluate", "accumulate", "summarize"):
            t0 = time.perf_counter()
            getattr(coco_eval, phase)()
            times[phase] = time.perf_counter() - t0
    log.debug("COCOeval output:\n%s", printed.getvalue())
    return {name: float(v) for name, v in zip(STAT_NAMES, coco_eval.stats)}


def _check_image_ids(results: Sequence[dict[str, Any]], dataset: dict, ann_file) -> None:
    known = {img["id"] for img in dataset["images"]}
    unknown = sorted({r["image_id"] for r in results} - known)
    if unknown:
        raise ConfigError(
            f"{len(unknown)} predicted image id(s) are not in {ann_file}, e.g. {unknown[:5]}: "
            "predict on the images of the annotation file you evaluate against (data.val_ann)"
        )


def evaluate_results(
    results: Sequence[dict[str, Any]], ann_file: str | Path, info: DatasetInfo
) -> dict[str, float]:
    """COCO keypoint metrics of results in the results-file layout, per part where several.

    One-part dataset: {"AP", "AP50", ..., "ARl"}. Several parts: "<part>/<stat>"
    for each part, each PART_AVERAGES entry whose parts exist, and "wholebody";
    the unprefixed names repeat the whole-body figures.
    """
    return _evaluate_loaded(results, load_ground_truth(ann_file, info), ann_file, info)


def _evaluate_loaded(
    results: Sequence[dict[str, Any]], dataset: dict[str, Any], ann_file, info: DatasetInfo
) -> dict[str, float]:
    _check_image_ids(results, dataset, ann_file)
    layout = _layout(info)
    for i, r in enumerate(results):
        for _, field, sl in layout:
            if len(r.get(field, ())) != 3 * (sl.stop - sl.start):
                raise ConfigError(
                    f"result {i} (image {r['image_id']}): field {field!r} must hold "
                    f"{sl.stop - sl.start} keypoints x 3 values for dataset {info.name!r}"
                )

    def evaluate(fields: Sequence[str], sl: slice) -> dict[str, float]:
        gt = _part_ground_truth(dataset, fields)
        return run_cocoeval(gt, _part_detections(results, fields), info.sigmas_array[sl])

    if len(layout) == 1:
        _, field, sl = layout[0]
        metrics = evaluate([field], sl)
        log.info("COCO keypoints: %s", _summary(metrics))
        return metrics

    per_part = {name: evaluate([field], sl) for name, field, sl in layout}
    for name in _reported_parts(info):
        if name in PART_AVERAGES:
            members = PART_AVERAGES[name]
            per_part[name] = {
                stat: _mean_defined([per_part[m][stat] for m in members]) for stat in STAT_NAMES
            }
    per_part[WHOLEBODY] = evaluate([field for _, field, _ in layout], slice(0, info.num_keypoints))
    metrics = {f"{part}/{stat}": v for part, stats in per_part.items() for stat, v in stats.items()}
    metrics.update(per_part[WHOLEBODY])
    for part, stats in per_part.items():
        log.info("COCO keypoints, %s: %s", part, _summary(stats))
    return metrics


def evaluate_results_file(
    results_file: str | Path, ann_file: str | Path, info: DatasetInfo
) -> dict[str, float]:
    """`evaluate_results` on a results JSON file (e.g. one written by `evaluate_coco`)."""
    return evaluate_results(load_results_json(results_file), ann_file, info)


def evaluate_coco(
    predictions: Sequence[Prediction],
    ann_file: str | Path,
    info: DatasetInfo,
    out_dir: str | Path,
    keypoint_score_thr: float = 0.2,
    oks_nms_thr: float = 0.9,
    use_nms: bool = True,
) -> dict[str, float]:
    """Rescore, OKS-NMS, write `out_dir/predictions.json`, COCOeval it, write `metrics.json`.

    The metrics are computed from the written file read back, so the file is
    exactly what was scored. No predictions give 0 for every metric with a
    warning; a predicted image id missing from `ann_file` is an error.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ann_file = Path(ann_file)
    results_file = out_dir / "predictions.json"
    metrics_file = out_dir / "metrics.json"

    dataset = load_ground_truth(ann_file, info)
    if len(predictions) == 0:
        message = f"no predictions to evaluate against {ann_file}: every metric is 0"
        warnings.warn(message, stacklevel=2)
        log.warning(message)
        results_file.write_text("[]\n")
        names = list(STAT_NAMES) + [
            f"{part}/{stat}" for part in _reported_parts(info) for stat in STAT_NAMES
        ]
        metrics = dict.fromkeys(names, 0.0)
        metrics_file.write_text(json.dumps(metrics, indent=2) + "\n")
        return metrics

    _check_image_ids([{"image_id": p.image_id} for p in predictions], dataset, ann_file)
    results = format_results(predictions, info, keypoint_score_thr, oks_nms_thr, use_nms)
    results_file.write_text(json.dumps(results) + "\n")
    log.info(
        "wrote %d of %d predictions to %s (OKS-NMS %s)",
        len(results),
        len(predictions),
        results_file,
        f"at {oks_nms_thr}" if use_nms else "off",
    )
    # Score the file as written, read back.
    metrics = _evaluate_loaded(load_results_json(results_file), dataset, ann_file, info)
    metrics_file.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _reported_parts(info: DatasetInfo) -> list[str]:
    """Prefixes of the per-part metrics: none for a one-part dataset."""
    names = [name for name, _, _ in _layout(info)]
    if len(names) == 1:
        return []
    averages = [a for a, members in PART_AVERAGES.items() if all(m in names for m in members)]
    return names + averages + [WHOLEBODY]


def _mean_defined(values: Sequence[float]) -> float:
    """Mean over the values that are defined (pycocotools marks undefined as -1)."""
    defined = [v for v in values if v > -1]
    return float(np.mean(defined)) if defined else -1.0


def _summary(stats: dict[str, float]) -> str:
    return " ".join(f"{name} {stats[name]:.3f}" for name in STAT_NAMES)
