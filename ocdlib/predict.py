"""Run a trained student on one image and draw its keypoints."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from .data.coco import open_image, read_json
from .data.transforms import (
    box_to_center_scale,
    get_warp_matrix,
    normalize_image,
    normalized_to_image,
    warp_image,
)
from .engine.runs import load_run_model
from .metainfo import get_dataset_info


def parse_boxes(boxes: str | None, image_path: Path, width: int, height: int) -> np.ndarray:
    """Boxes (N, 5) = x, y, w, h, score from a detection JSON, "x,y,w,h[;...]" or the whole image.

    A detection file is matched to the image by COCO's numeric file name (000000000785.jpg -> 785).
    """
    if not boxes:
        return np.array([[0, 0, width, height, 1.0]], dtype=np.float64)
    if Path(boxes).is_file():
        m = re.search(r"(\d+)", image_path.stem)
        if not m:
            raise ValueError(
                f"cannot match {image_path.name} to an image_id in {boxes}: the file name holds "
                "no number; pass --boxes x,y,w,h instead"
            )
        image_id = int(m.group(1))
        all_dets = read_json(Path(boxes), "detection")
        dets = [d for d in all_dets if d.get("image_id") == image_id]
        if not dets:
            raise ValueError(f"{boxes} has no detection for image_id {image_id}")
        return np.array([[*d["bbox"], d.get("score", 1.0)] for d in dets], dtype=np.float64)
    try:
        rows = [[float(v) for v in part.split(",")] for part in boxes.split(";") if part]
    except ValueError:
        rows = []
    if not rows or any(len(r) != 4 for r in rows):
        raise ValueError(
            f"--boxes {boxes!r}: give a COCO detection JSON file or x,y,w,h boxes separated by ;"
        )
    return np.array([[*r, 1.0] for r in rows], dtype=np.float64)


@torch.no_grad()
def predict_image(run: Path, image: Path, boxes: str | None = None, out: str | None = None) -> Path:
    from matplotlib.figure import Figure

    from .viz import draw_pose, save_figure

    model, cfg = load_run_model(run, student=True)
    info = get_dataset_info(cfg.data.dataset)
    pil = open_image(image)
    w_in, h_in = cfg.data.input_size
    dets = parse_boxes(boxes, Path(image), pil.width, pil.height)
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
    return path
