"""Section 4: how long COCOeval takes for a SynthPose-sized validation set, step by step.

Ground truth and predictions are built in memory (no images, no model): two
people per 640x480 image, 17 keypoints, predictions off the truth by a few
percent of the person's size with a random score, and one in ten images with
an extra false detection. Scored by the kit's `run_cocoeval`, which reports
pycocotools' steps.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO

from ..coco_eval import PERSON_CATEGORY_ID, run_cocoeval
from ..metainfo import COCO_BODY
from .timing import SEED, Spread

PHASES = ("loadRes", "evaluate", "accumulate", "summarize")


def synthetic_set(instances: int, seed: int = SEED) -> tuple[COCO, list[dict]]:
    """COCO ground truth of `instances` people and predictions for them."""
    rng = np.random.default_rng(seed)
    k = COCO_BODY.num_keypoints
    images, anns, dets = [], [], []
    n_images = (instances + 1) // 2
    for i in range(n_images):
        images.append({"id": i + 1, "width": 640, "height": 480, "file_name": f"{i:07d}.jpg"})
    for a in range(instances):
        image_id = a // 2 + 1
        w, h = rng.uniform(40, 250), rng.uniform(80, 400)
        x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
        pts = np.stack([x + rng.uniform(0, w, k), y + rng.uniform(0, h, k)], -1)
        vis = rng.choice([0, 1, 2], size=k, p=[0.15, 0.15, 0.7])
        kp = np.concatenate([pts, vis[:, None]], -1)
        kp[vis == 0] = 0
        anns.append(
            {
                "id": a + 1,
                "image_id": image_id,
                "category_id": PERSON_CATEGORY_ID,
                "keypoints": kp.ravel().round(2).tolist(),
                "num_keypoints": int((vis > 0).sum()),
                "bbox": [x, y, w, h],
                "area": 0.6 * w * h,
                "iscrowd": 0,
            }
        )
        noisy = pts + rng.normal(0, 0.03 * np.sqrt(w * h), pts.shape)
        dets.append(_detection(len(dets) + 1, image_id, noisy, rng))
    for image_id in range(1, n_images + 1, 10):  # a false detection on one image in ten
        pts = np.stack([rng.uniform(0, 640, k), rng.uniform(0, 480, k)], -1)
        dets.append(_detection(len(dets) + 1, image_id, pts, rng))
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": PERSON_CATEGORY_ID, "name": "person"}],
    }
    gt.createIndex()
    return gt, dets


def _detection(det_id: int, image_id: int, pts: np.ndarray, rng) -> dict:
    """A prediction as pycocotools' loadRes lays it out (area and box from the keypoints)."""
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    kp = np.concatenate([pts, rng.uniform(0.2, 1.0, (len(pts), 1))], -1)
    return {
        "id": det_id,
        "image_id": image_id,
        "category_id": PERSON_CATEGORY_ID,
        "keypoints": kp.ravel().round(3).tolist(),
        "score": float(rng.uniform(0.3, 1.0)),
        "area": float((x1 - x0) * (y1 - y0)),
        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
    }


def measure(instances: int, rounds: int, warmup: int = 1) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt, dets = synthetic_set(instances)
    runs: dict[str, list[float]] = {p: [] for p in PHASES}
    runs["total"] = []
    ap = None
    for r in range(warmup + rounds):
        times: dict[str, float] = {}
        with contextlib.redirect_stdout(io.StringIO()):
            stats = run_cocoeval(gt, dets, COCO_BODY.sigmas_array, phase_times=times)
        ap = stats["AP"]
        if r < warmup:
            continue
        for p in PHASES:
            runs[p].append(times[p])
        runs["total"].append(sum(times.values()))
    spreads = {p: Spread.of(v) for p, v in runs.items()}
    total = spreads["total"].median
    rows = [
        [p, spreads[p].text("{:.2f}"), f"{100 * spreads[p].median / total:.0f}%"] for p in PHASES
    ]
    rows.append(["total", spreads["total"].text("{:.2f}"), "100%"])
    return {
        "title": "4. Evaluation",
        "tables": [
            {
                "caption": f"COCOeval (keypoints) of {instances:,} instances on "
                f"{(instances + 1) // 2:,} images, {len(dets):,} predictions",
                "columns": ["step", "seconds", "share"],
                "rows": rows,
            }
        ],
        "data": {
            "instances": instances,
            "predictions": len(dets),
            "AP": ap,
            "seconds": {p: s.as_dict() for p, s in spreads.items()},
        },
        "targets": [],
        "notes": [
            "Medians over repeated runs after a warm-up run (interquartile range in "
            "brackets). loadRes: the kit's indexing of the predictions (what pycocotools' "
            "loadRes does); evaluate: OKS per image and matching; accumulate: the "
            "precision-recall tables; summarize: the ten statistics.",
        ],
    }
