"""Predict on a top-down dataset, map crops back to image pixels, and score with COCOeval."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..configs import Config
from ..data.transforms import normalized_to_image
from ..evaluation import Prediction, evaluate_coco
from ..metainfo import DatasetInfo
from .distributed import DistInfo, all_gather_objects


@torch.no_grad()
def predict_dataset(
    model,
    dataset,
    head: str,
    input_size,
    flip_index=None,
    batch_size: int = 64,
    device: torch.device | None = None,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    progress: bool = False,
) -> list[Prediction]:
    """Predictions in image pixels for this rank's share of `dataset` (every world_size-th item)."""
    device = device or torch.device("cpu")
    model.eval()
    indices = list(range(rank, len(dataset), world_size))
    loader = DataLoader(
        torch.utils.data.Subset(dataset, indices),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
    )
    use_amp = device.type == "cuda"
    out: list[Prediction] = []
    for batch in tqdm(loader, desc="predict", disable=not progress, leave=False):
        images = batch["image"].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            coords, scores = model.predict(images, head=head, flip_index=flip_index)
        coords_img = normalized_to_image(
            coords.float().cpu().numpy(),
            batch["center"].numpy(),
            batch["scale"].numpy(),
            input_size,
        )
        scores = scores.float().cpu().numpy()
        for i in range(len(images)):
            out.append(
                Prediction(
                    image_id=int(batch["image_id"][i]),
                    keypoints=coords_img[i].astype(np.float64),
                    keypoint_scores=scores[i].astype(np.float64),
                    bbox_score=float(batch["bbox_score"][i]),
                    area=float(batch["area"][i]),
                )
            )
    return out


def evaluate_model(
    model, cfg: Config, info: DatasetInfo, val_ds, paths, out_dir, dist: DistInfo
) -> dict:
    """Run the deployed head on the validation set and return COCO metrics (on every rank)."""
    model = getattr(model, "module", model)
    flip_index = torch.as_tensor(info.flip_index) if cfg.eval.flip_test else None
    preds = predict_dataset(
        model,
        val_ds,
        cfg.model.deploy_head,
        cfg.data.input_size,
        flip_index=flip_index,
        batch_size=cfg.eval.batch_size,
        device=dist.device,
        rank=dist.rank,
        world_size=dist.world_size,
        workers=cfg.data.num_workers,
    )
    gathered = all_gather_objects(preds, dist)
    metrics: dict = {}
    if dist.is_main:
        all_preds = [p for part in gathered for p in part]
        metrics = evaluate_coco(
            all_preds,
            paths.val_ann,
            info,
            out_dir,
            keypoint_score_thr=cfg.eval.keypoint_score_thr,
            oks_nms_thr=cfg.eval.oks_nms_thr,
        )
    return all_gather_objects(metrics, dist)[0]
