"""Run a model over a top-down dataset, map its crops back to image pixels, and score the
predictions with the COCO metric (ocdlib/coco_eval/)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..coco_eval import Prediction, evaluate_coco
from ..configs import Config
from ..data.coco import check_images
from ..data.dataset import SkippedImages, TopDownPoseDataset, build_datasets
from ..data.device_pipeline import (
    batch_size_of,
    collate_of,
    finish_batch,
    is_device_batch,
    to_device,
)
from ..data.layout import load_layout
from ..data.prepare import DataPaths, resolve_data
from ..data.transforms import normalized_to_image
from ..errors import ConfigError, MissingFileError
from ..metainfo import DatasetInfo, get_dataset_info
from .distributed import DistInfo, all_gather_objects
from .run_dir import RunDir, load_run_model, run_lock


@torch.no_grad()
def _images(batch: dict, device: torch.device) -> torch.Tensor:
    """The batch's model input on `device` (data.pipeline "device": cut there first)."""
    if not is_device_batch(batch):
        return batch["image"].to(device)
    return finish_batch(to_device(batch, device))["image"]


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
    skipped: SkippedImages | None = None,
) -> list[Prediction]:
    """Predictions in image pixels for this rank's share of `dataset` (every world_size-th item).

    A sample that stands in for an unreadable image (data.bad_images=skip) is
    recorded in `skipped` and predicts nothing."""
    device = device or torch.device("cpu")
    model.eval()
    indices = list(range(rank, len(dataset), world_size))
    loader = DataLoader(
        torch.utils.data.Subset(dataset, indices),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_of(dataset),
    )
    use_amp = device.type == "cuda"
    out: list[Prediction] = []
    for batch in tqdm(loader, desc="predict", disable=not progress, leave=False):
        keep = [not entry for entry in batch.get("bad_images", [""] * batch_size_of(batch))]
        if skipped is not None:
            skipped.add(batch, "eval")
        images = _images(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            coords, scores = model.predict(images, head=head, flip_index=flip_index)
        out += batch_predictions(
            batch, coords.float().cpu().numpy(), scores.float().cpu().numpy(), input_size, keep
        )
    return out


def batch_predictions(batch: dict, coords, scores, input_size, keep=None) -> list[Prediction]:
    """One Prediction per crop of `batch` (those `keep` marks, all without it): its
    normalised `coords` taken back to image pixels, with their `scores`."""
    coords_img = normalized_to_image(
        coords, batch["center"].numpy(), batch["scale"].numpy(), input_size
    )
    return [
        Prediction(
            image_id=int(batch["image_id"][i]),
            keypoints=coords_img[i].astype(np.float64),
            keypoint_scores=scores[i].astype(np.float64),
            bbox_score=float(batch["bbox_score"][i]),
            area=float(batch["area"][i]),
        )
        for i in range(len(coords))
        if keep is None or keep[i]
    ]


def evaluate_model(
    model,
    cfg: Config,
    info: DatasetInfo,
    val_ds,
    paths,
    out_dir,
    dist: DistInfo,
    skipped: SkippedImages | None = None,
    head: str | None = None,
) -> dict:
    """Run `head` (default: the deployed one) on the validation set and return COCO
    metrics (on every rank)."""
    model = getattr(model, "module", model)
    flip_index = torch.as_tensor(info.flip_index) if cfg.eval.flip_test else None
    preds = predict_dataset(
        model,
        val_ds,
        head or cfg.model.deploy_head,
        cfg.data.input_size,
        flip_index=flip_index,
        batch_size=cfg.eval.batch_size,
        device=dist.device,
        rank=dist.rank,
        world_size=dist.world_size,
        workers=cfg.data.num_workers,
        skipped=skipped,
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


def evaluate_run(
    run_dir,
    head: str | None = None,
    ann=None,
    images=None,
    boxes: str | None = None,
    out=None,
    wait: bool = False,
) -> tuple[dict, Path]:
    """Score a finished run's `head` (default: the deployed one) on its validation set,
    or on another COCO file (`ann` with its `images`, optionally detection `boxes`).

    Writes predictions.json and metrics.json to `out` (default `<run>/eval`, or
    `<run>/eval_<head>` for another head); returns the metrics and that folder.
    Writing into the run takes its lock: with `wait=False` a run that another
    process is writing is refused (RunLockedError), else waited for.
    """
    if (ann is None) != (images is None):
        raise ConfigError("--ann and --images go together (an annotation file and its images)")
    run_dir = Path(run_dir)
    model, cfg = load_run_model(run_dir)
    paths = resolve_data(cfg.data, progress=False)
    if ann is not None:
        paths = DataPaths(paths.root, paths.train_ann, paths.train_images, Path(ann), Path(images))
    if boxes:
        cfg = replace(cfg, eval=replace(cfg.eval, det_file=str(boxes)))
    head = head or cfg.model.deploy_head
    if head not in model.heads:
        raise ConfigError(f"head {head!r}: {run_dir} has the heads {list(model.heads)}")
    info = load_layout(run_dir, cfg.data)
    _, val_ds = build_datasets(cfg, paths, info)
    check_images(val_ds.instances, "--images" if images is not None else "data.val_images")
    # The deployed head's scores go to <run>/eval, any other head's beside them.
    default = "eval" if head == cfg.model.deploy_head else f"eval_{head}"
    out = Path(out or run_dir / default)
    into_run = out.resolve().is_relative_to(run_dir.resolve())
    with run_lock(run_dir, wait=wait) if into_run else contextlib.nullcontext():
        skipped = SkippedImages() if cfg.data.bad_images == "skip" else None
        metrics = evaluate_model(
            model, cfg, info, val_ds, paths, out, DistInfo(), skipped, head=head
        )
    return metrics, out


def head_metrics(run_dir, head: str) -> dict:
    """The metrics of one head of a finished run on its own validation set, computed
    once and kept in `<run>/eval_<head>/metrics.json` (recomputed if the run changed)."""
    run_dir = Path(run_dir)
    cached = run_dir / f"eval_{head}" / "metrics.json"
    stamp = run_dir / f"eval_{head}" / "checkpoint_mtime"
    ckpt = RunDir(run_dir).checkpoint
    if not ckpt.is_file() and cached.is_file():  # a run record: the scores it kept
        return json.loads(cached.read_text())
    if not ckpt.is_file():
        raise MissingFileError(f"{ckpt} not found: is {run_dir} a finished run directory?")
    mtime = str(ckpt.stat().st_mtime_ns)
    if cached.is_file() and stamp.is_file() and stamp.read_text() == mtime:
        return json.loads(cached.read_text())
    metrics, _ = evaluate_run(run_dir, head=head, out=run_dir / f"eval_{head}", wait=True)
    stamp.write_text(mtime)
    return metrics


def predict_people(
    model, cfg: Config, ann_file: Path, image_dir: Path, image_ids=None, n_images: int = 3
) -> tuple[list[int], dict[int, np.ndarray]]:
    """The deployed model's keypoints on whole images: every person of the first
    `n_images` images of `ann_file` (or of `image_ids`), cropped from its ground-truth box
    as in evaluation, with flip test. Returns the image ids and {image_id: (N, K, 3)
    keypoints in image pixels with scores}: what the keypoint pictures draw, and what a
    run's record keeps of them (ocdlib/runs/records.py)."""
    info = get_dataset_info(cfg.data.dataset)
    ds = TopDownPoseDataset.from_coco(
        ann_file, image_dir, info, cfg.data, train=False, with_heatmaps=False
    )
    if image_ids is None:
        image_ids = sorted({inst.image_id for inst in ds.instances})[:n_images]
    wanted = set(image_ids)
    chosen = [i for i, inst in enumerate(ds.instances) if inst.image_id in wanted]
    flip = torch.as_tensor(info.flip_index)
    preds = predict_dataset(
        model,
        torch.utils.data.Subset(ds, chosen),
        cfg.model.deploy_head,
        cfg.data.input_size,
        flip_index=flip if cfg.eval.flip_test else None,
        batch_size=cfg.eval.batch_size,
    )
    people: dict[int, list] = {}
    for p in preds:
        people.setdefault(p.image_id, []).append(
            np.concatenate([p.keypoints, p.keypoint_scores[:, None]], axis=1)
        )
    return list(image_ids), {k: np.stack(v) for k, v in people.items()}
