"""Pictures of keypoints: what the network sees (augmented training crops, their targets)
and what trained models predict beside the ground truth, on SynthPose and on the COCO
sample. Each function returns a matplotlib Figure drawn with `viz`'s primitives; the
curves and cost plots are `figures`'.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..configs import Config
from ..data.coco import load_coco_keypoints, open_image
from ..data.dataset import TopDownPoseDataset
from ..data.device_pipeline import finished_sample
from ..data.prepare import resolve_data
from ..data.transforms import denormalize_image
from ..engine.evaluate import predict_people
from ..engine.run_dir import has_weights, load_run_config, load_run_model
from ..errors import ConfigError
from ..metainfo import get_dataset_info
from ..paths import COCO_SAMPLE_DIR
from ..runs.records import coco_sample_ann, recorded_predictions
from .viz import draw_pose, pose_grid


def _crop_keypoints(sample: Mapping[str, Any], input_size) -> np.ndarray:
    """(K, 3) crop-pixel keypoints of a dataset sample: flag 2 where the weight is set."""
    w, h = input_size
    xy = sample["reg_target"].numpy() * np.array([w, h], dtype=np.float32)
    flags = np.where(sample["reg_weight"].numpy() > 0, 2.0, 0.0)
    return np.concatenate([xy, flags[:, None]], axis=1)


def _train_instances(cfg: Config):
    """The training instances of `cfg`'s data (SynthPose generated on first use) and its info."""

    info = get_dataset_info(cfg.data.dataset)
    paths = resolve_data(cfg.data, progress=False)
    return load_coco_keypoints(paths.train_ann, paths.train_images, info), info


def augmented_crops_figure(cfg: Config, n: int = 6, epochs: Sequence[int] = (0, 1)) -> Figure:
    """The same training instances as the network sees them: eval crop, then augmented crops.

    Column j is instance j; the first row is the plain (eval-mode) crop, each
    further row the training augmentation of one epoch, with the regression
    targets drawn (keypoints whose weight is 0 are left out).
    """

    instances, info = _train_instances(cfg)
    plain = TopDownPoseDataset(instances, info, cfg.data, train=False, with_heatmaps=False)
    train = TopDownPoseDataset(
        instances, info, cfg.data, train=True, with_heatmaps=False, seed=cfg.train.seed
    )
    n = min(n, len(train))
    pairs, titles = [], []
    for row in ("eval", *epochs):
        ds = plain if row == "eval" else train
        if row != "eval":
            ds.set_epoch(int(row))
        for i in range(n):
            s = finished_sample(ds, i)
            pairs.append((denormalize_image(s["image"]), _crop_keypoints(s, cfg.data.input_size)))
            titles.append(f"#{i} " + ("plain crop" if row == "eval" else f"epoch {row}"))
    fig = pose_grid(pairs, info, ncols=n, titles=titles, panel_size=2.0, kind="gt")
    w, h = cfg.data.input_size
    fig.suptitle(f"Training crops ({w}x{h}): plain, then augmented per epoch", fontsize=10)
    return fig


def targets_figure(cfg: Config, index: int = 0, keypoints: Sequence[str] = ()) -> Figure:
    """One training crop with its regression targets, all heatmap targets, and a few single maps.

    Heatmaps are drawn on the crop with the UDP alignment of the codecs
    (heatmap pixel u sits at crop x = u (W-1)/(Wh-1)), so a correct target
    peaks exactly under its keypoint.
    """

    instances, info = _train_instances(cfg)
    ds = TopDownPoseDataset(instances, info, cfg.data, train=True, seed=cfg.train.seed)
    s = finished_sample(ds, index)
    crop = denormalize_image(s["image"])
    kps = _crop_keypoints(s, cfg.data.input_size)
    hm = s["hm_target"].numpy()
    (w, h), (wh, hh) = cfg.data.input_size, cfg.data.heatmap_size
    sx, sy = (w - 1) / (wh - 1), (h - 1) / (hh - 1)
    extent = (-0.5 * sx, (wh - 0.5) * sx, (hh - 0.5) * sy, -0.5 * sy)
    # By default three keypoints that have a target in this crop (weight > 0).
    weight = s["hm_weight"].numpy()
    names = (
        list(keypoints)
        or [
            n
            for n in ("nose", "left_wrist", "right_ankle", "left_knee", "right_elbow", "left_hip")
            if weight[info.keypoint_names.index(n)] > 0
        ][:3]
    )
    fig = Figure(figsize=(2.4 * (2 + len(names)), 3.4), layout="constrained")
    axes = fig.subplots(1, 2 + len(names))
    draw_pose(axes[0], crop, kps, info, kind="gt")
    axes[0].set_title("regression targets", fontsize=8)
    axes[1].imshow(crop)
    axes[1].imshow(hm.max(axis=0), extent=extent, cmap="jet", alpha=0.5, vmin=0, vmax=1)
    axes[1].set_title(f"heatmap targets (max of {len(hm)})", fontsize=8)
    for ax, name in zip(axes[2:], names):
        k = info.keypoint_names.index(name)
        ax.imshow(hm[k], extent=extent, cmap="viridis", vmin=0, vmax=1)
        if kps[k, 2] > 0:
            ax.plot(kps[k, 0], kps[k, 1], "r+", markersize=10, mew=1.5)
        ax.set_title(f"{name} ({wh}x{hh})", fontsize=8)
    for ax in axes[1:]:
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_axis_off()
    fig.suptitle(f"Targets of training crop #{index} (red +: regression target)", fontsize=10)
    return fig


class _Column:
    """One column of a comparison: a run's deployed student, predicted now from its weights
    or read from its record's pictures.json."""

    def __init__(self, run_dir: Path, cfg: Config, model=None):
        self.run_dir, self.cfg, self.model = Path(run_dir), cfg, model

    def predict(self, picture_set: str, ann_file: Path, image_dir: Path, image_ids) -> dict | None:
        if self.model is not None:
            return predict_people(self.model, self.cfg, ann_file, image_dir, image_ids)[1]
        stored = recorded_predictions(self.run_dir, picture_set)
        if stored is None or not set(image_ids) <= set(stored[0]):
            return None
        return {k: v for k, v in stored[1].items() if k in set(image_ids)}


def _comparison_grid(
    columns: Mapping[str, _Column],
    picture_set: str,
    ann_file: Path,
    image_dir: Path,
    n_images: int,
    title: str,
    score_thr: float,
) -> Figure | None:
    first_cfg = next(iter(columns.values())).cfg
    info = get_dataset_info(first_cfg.data.dataset)
    for label, col in columns.items():
        if col.cfg.data.dataset != first_cfg.data.dataset:
            raise ConfigError(
                f"run {label!r} predicts {col.cfg.data.dataset} keypoints, the first run "
                f"{first_cfg.data.dataset}: compare runs of one keypoint layout per figure"
            )
    instances = TopDownPoseDataset.from_coco(
        ann_file, image_dir, info, first_cfg.data, train=False, with_heatmaps=False
    ).instances
    image_ids = sorted({inst.image_id for inst in instances})[:n_images]
    if not image_ids:
        raise ConfigError(f"no person instance in {ann_file}")
    predictions = {}
    for label, col in columns.items():
        got = col.predict(picture_set, ann_file, image_dir, image_ids)
        if got is None:
            print(f"note: {label}: no weights, and its record keeps no keypoints of these images")
            continue
        predictions[label] = got
    if not predictions:
        return None
    gt: dict[int, list] = {}
    paths: dict[int, Path] = {}
    for inst in instances:
        if inst.image_id in set(image_ids):
            gt.setdefault(inst.image_id, []).append(inst.keypoints)
            paths[inst.image_id] = inst.image_path
    headers = ["ground truth", *predictions]
    shown = [i for i in image_ids if i in gt]
    images = {i: np.asarray(open_image(paths[i]).convert("RGB")) for i in shown}
    # Row heights follow each image's aspect ratio, so landscape photos leave no gaps.
    ratios = [images[i].shape[0] / images[i].shape[1] for i in shown]
    panel = 2.8
    fig = Figure(
        figsize=(panel * len(headers), panel * sum(ratios) + 0.3 * len(shown) + 0.5),
        layout="constrained",
    )
    axes = fig.subplots(
        len(shown), len(headers), squeeze=False, gridspec_kw={"height_ratios": ratios}
    )
    for r, image_id in enumerate(shown):
        image = images[image_id]
        for c, column in enumerate(headers):
            ax = axes[r, c]
            if column == "ground truth":
                draw_pose(ax, image, np.stack(gt[image_id]), info, kind="gt")
                ax.set_title(f"ground truth: {paths[image_id].name}", fontsize=7)
            else:
                kps = predictions[column].get(image_id, np.zeros((0, info.num_keypoints, 3)))
                draw_pose(ax, image, kps, info, kind="pred", score_thr=score_thr)
                ax.set_title(column, fontsize=8)
    # Wrapped to the figure's width: a two-column figure has room for about 60 characters.
    fig.suptitle(textwrap.fill(title, width=30 * len(headers)), fontsize=10)
    return fig


def _columns(runs_by_label: Mapping[str, str | Path]) -> dict[str, _Column]:
    """Each run's deployed student: its weights where the run folder has them, else what
    its record keeps (pictures.json)."""
    if not runs_by_label:
        raise ConfigError("no runs to compare: pass {label: run directory}")
    out = {}
    for label, d in runs_by_label.items():
        if has_weights(d):
            model, cfg = load_run_model(d, student=True)
            out[label] = _Column(Path(d), cfg, model)
        else:
            out[label] = _Column(Path(d), load_run_config(Path(d)))
    return out


def keypoint_comparison(
    runs_by_label: Mapping[str, str | Path],
    n_images: int = 3,
    score_thr: float = 0.2,
) -> Figure | None:
    """The same SynthPose validation images: ground truth, then each run's deployed student.

    Each person is cropped from its ground-truth box (as in evaluation) and
    predicted with flip test; predicted keypoints with score <= `score_thr`
    are not drawn (DeepPose's scores are always 1). A run without its weights is drawn
    from its record's keypoints; None when no run has either.
    """
    columns = _columns(runs_by_label)
    cfg = next(iter(columns.values())).cfg
    paths = resolve_data(cfg.data, progress=False)
    name = "SynthPose-WholeBody" if cfg.data.dataset == "coco_wholebody" else "SynthPose"
    if cfg.data.root:  # a real dataset (COCO presets)
        name = Path(cfg.data.root).name
    title = f"{name} validation images, ground-truth boxes: ground truth and deployed students"
    return _comparison_grid(
        columns, "val", paths.val_ann, paths.val_images, n_images, title, score_thr
    )


def coco_sample_comparison(
    runs_by_label: Mapping[str, str | Path],
    coco_dir: str | Path | None = None,
    n_images: int = 4,
    score_thr: float = 0.2,
) -> Figure | None:
    """`keypoint_comparison` on the real COCO val2017 photos of the kit's sample
    (`ocdlib.paths.COCO_SAMPLE_DIR`).

    The models learned on SynthPose only, so they are not expected to work well
    on real photos: the figure shows how far the synthetic benchmark transfers.
    Returns None (with a printed note) when the sample folder is absent or no run has
    its weights or its record's keypoints.
    """
    coco_dir = Path(coco_dir) if coco_dir else COCO_SAMPLE_DIR
    columns = _columns(runs_by_label)
    cfg = next(iter(columns.values())).cfg
    ann = coco_dir / coco_sample_ann(cfg.data.dataset).name
    if not ann.is_file():
        print(f"note: {ann} not found; skipping the real-photo comparison")
        return None
    title = (
        "Real COCO val2017 photos: models trained on SynthPose only "
        "(not expected to work well on real photos)"
    )
    return _comparison_grid(columns, "coco_sample", ann, coco_dir, n_images, title, score_thr)
