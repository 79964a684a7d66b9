"""Run a trained student on one image, draw its keypoints, and optionally write them as
COCO keypoint results (JSON)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from .data.coco import open_image, read_json
from .data.layout import load_layout
from .data.transforms import (
    box_to_center_scale,
    get_warp_matrix,
    normalize_image,
    normalized_to_image,
    warp_image,
)
from .engine.run_dir import load_run_model
from .errors import AnnotationError, ConfigError

# mmpose's top-down demo keeps detections with score > bbox_thr = 0.3.
DEFAULT_DET_THR = 0.3


def image_id_of(image_path: Path) -> int | None:
    """COCO's numeric file name as an image id (000000000785.jpg -> 785), None without digits."""
    m = re.search(r"(\d+)", Path(image_path).stem)
    return int(m.group(1)) if m else None


def parse_boxes(
    boxes: str | None, image_path: Path, width: int, height: int, det_thr: float = 0.0
) -> np.ndarray:
    """Boxes (N, 5) = x, y, w, h, score from a detection JSON, "x,y,w,h[;...]" or the whole image.

    A detection file is matched to the image by COCO's numeric file name (000000000785.jpg -> 785)
    and only its boxes with score >= `det_thr` are kept.
    """
    if not boxes:
        return np.array([[0, 0, width, height, 1.0]], dtype=np.float64)
    if Path(boxes).is_file():
        image_id = image_id_of(image_path)
        if image_id is None:
            raise ConfigError(
                f"cannot match {image_path.name} to an image_id in {boxes}: the file name holds "
                "no number; pass --boxes x,y,w,h instead"
            )
        all_dets = read_json(Path(boxes), "detection")
        if not isinstance(all_dets, list):
            raise AnnotationError(
                f"{boxes} is not a COCO detection result file: expected a list of "
                f"{{image_id, bbox, score}} objects"
            )
        dets = [d for d in all_dets if isinstance(d, dict) and d.get("image_id") == image_id]
        if not dets:
            raise ConfigError(f"{boxes} has no detection for image_id {image_id}")
        rows = []
        for d in dets:
            row = [*d.get("bbox", ()), d.get("score", 1.0)]
            if len(row) != 5 or not all(isinstance(v, (int, float)) for v in row):
                raise AnnotationError(
                    f"{boxes}: the detection {d} of image_id {image_id} needs bbox [x, y, w, h] "
                    "and a numeric score"
                )
            rows.append(row)
        kept = [r for r in rows if r[4] >= det_thr]
        if not kept:
            raise ConfigError(
                f"{boxes}: none of the {len(rows)} detection(s) of image_id {image_id} has "
                f"score >= --det-thr {det_thr} (best {max(r[4] for r in rows):.3f}); lower "
                "--det-thr"
            )
        return np.array(kept, dtype=np.float64)
    try:
        rows = [[float(v) for v in part.split(",")] for part in boxes.split(";") if part]
    except ValueError:
        rows = []
    if not rows or any(len(r) != 4 for r in rows):
        raise ConfigError(
            f"--boxes {boxes!r}: give a COCO detection JSON file or x,y,w,h boxes separated by ;"
        )
    return np.array([[*r, 1.0] for r in rows], dtype=np.float64)


@torch.no_grad()
def predict_image(
    run: Path,
    image: Path,
    boxes: str | None = None,
    out: str | None = None,
    det_thr: float = DEFAULT_DET_THR,
    write_json: bool = False,
) -> list[Path]:
    """Draw the run's keypoints on `image` (PNG at `out`, default <image>.pose.png); with
    `write_json`, also write them as COCO keypoint results beside it (same name, .json).
    Returns the paths written."""
    from matplotlib.figure import Figure

    from .report.viz import draw_pose, save_figure

    if not 0.0 <= det_thr <= 1.0:
        raise ConfigError(f"--det-thr {det_thr}: a detection score threshold is in [0, 1]")
    model, cfg = load_run_model(run, student=True)
    info = load_layout(run, cfg.data)
    pil = open_image(image)
    w_in, h_in = cfg.data.input_size
    dets = parse_boxes(boxes, Path(image), pil.width, pil.height, det_thr)
    crops, centers, scales = [], [], []
    for x, y, w, h, _ in dets:
        c, s = box_to_center_scale((x, y, w, h), w_in / h_in, cfg.data.padding)
        crop = warp_image(pil, get_warp_matrix(c, s, 0.0, (w_in, h_in)), (w_in, h_in))
        crops.append(normalize_image(crop))
        centers.append(c)
        scales.append(s)
    flip = torch.as_tensor(info.flip_index) if cfg.eval.flip_test else None
    coords, scores = model.predict(torch.stack(crops), head=cfg.model.deploy_head, flip_index=flip)
    pts = normalized_to_image(coords.numpy(), np.stack(centers), np.stack(scales), (w_in, h_in))
    fig = Figure(figsize=(8, 8 * pil.height / pil.width))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(np.asarray(pil))
    for p, sc in zip(pts, scores.numpy()):
        draw_pose(ax, None, np.concatenate([p, sc[:, None]], axis=1), info, kind="pred")
    ax.set_axis_off()
    path = Path(out) if out else Path(image).with_suffix(".pose.png")
    save_figure(fig, path)
    written = [path]
    if write_json:
        results = coco_results(pts, scores.numpy(), dets, image_id_of(Path(image)) or 0)
        written.append(path.with_suffix(".json"))
        written[-1].write_text(json.dumps(results, indent=1))
    return written


def coco_results(points, keypoint_scores, dets, image_id: int) -> list[dict]:
    """COCO keypoint results: one entry per box; its score is the box score times the
    mean keypoint score, as mmpose rescores top-down results."""
    out = []
    for p, sc, det in zip(points, keypoint_scores, dets):
        kpts = np.concatenate([p, sc[:, None]], axis=1)
        out.append(
            {
                "image_id": int(image_id),
                "category_id": 1,
                "keypoints": [round(float(v), 2) for v in kpts.ravel()],
                "score": round(float(det[4] * sc.mean()), 4),
                "bbox": [round(float(v), 2) for v in det[:4]],
            }
        )
    return out
