"""Every figure the notebooks save: loss and learning curves, AP against cost, what the
network sees (augmented crops, targets) and what trained models predict.

Each function takes run directories or frames from `ocdlib.reporting` and returns a
matplotlib Figure; `viz.py` holds the drawing primitives (skeletons on images) they
share, and `NotebookReport.figure` writes and shows them.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from .configs import Config
from .data.coco import load_coco_keypoints, open_image
from .data.dataset import TopDownPoseDataset
from .data.device_pipeline import finished_sample
from .data.prepare import resolve_data
from .data.transforms import denormalize_image
from .engine.evaluate import predict_dataset
from .engine.run_files import RunDir
from .engine.runs import has_weights, load_run_config, load_run_model
from .errors import ConfigError, MissingFileError
from .metainfo import get_dataset_info
from .paths import COCO_SAMPLE_DIR
from .viz import draw_pose, pose_grid


def plot_ap_vs_cost(summary: pd.DataFrame, ax, cost: str = "GMACs", metric: str = "AP"):
    """AP (mean, with the seed std as error bar) against the deployed model's cost."""
    markers = "osD^v<>PX*"
    groups = list(dict.fromkeys(summary["group"]))
    for i, (_, r) in enumerate(summary.iterrows()):
        std = r.get(f"{metric}_std")
        ax.errorbar(
            r[cost],
            r[metric],
            yerr=None if std is None or math.isnan(std) else std,
            marker=markers[groups.index(r["group"]) % len(markers)],
            color=f"C{i % 10}",
            linestyle="none",
            markersize=7,
            capsize=3,
            label=r["label"],
        )
    ax.set_xlabel(
        f"{cost} of the deployed model" + (" (10^9 multiply-adds)" if cost == "GMACs" else "")
    )
    ax.set_ylabel(f"{metric} (x100)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return ax


def read_log(run_dir: str | Path) -> pd.DataFrame:
    """A run's log.csv (a run record keeps it gzipped: ocdlib/run_records.py)."""
    path = RunDir(Path(run_dir)).log
    if not path.is_file() and path.with_suffix(".csv.gz").is_file():
        path = path.with_suffix(".csv.gz")
    if not path.is_file():
        raise MissingFileError(f"{path} not found: is {run_dir} a finished run directory?")
    return pd.read_csv(path)


def loss_terms(log: pd.DataFrame) -> list[str]:
    """The loss columns of a log.csv (everything but step, epoch, lr and time)."""
    return [c for c in log.columns if c not in ("step", "epoch", "lr", "time")]


def smooth(values: pd.Series, window: int | None = None) -> pd.Series:
    """Trailing mean over `window` steps (default: a twentieth of the run, at least 1)."""
    window = window or max(1, len(values) // 20)
    return values.rolling(window, min_periods=1).mean()


# Loss terms measured with the regression loss, whose scale depends on its kind:
# RLE's negative log-likelihood goes below zero and spans hundreds, SmoothL1
# stays near 0.01, so one axis for both would flatten the SmoothL1 curves.
REG_LOSS_TERMS = ("total", "reg", "task_distill", "small_task_distill")


def run_reg_loss(run_dir: str | Path) -> str:
    """The regression loss a run trained with (loss.reg_loss in its config.json)."""

    return load_run_config(run_dir).loss.reg_loss


def loss_panel(term: str, reg_loss: str) -> str:
    """The panel a run's loss term is drawn in: terms measured with the regression
    loss get one panel per regression loss kind."""
    return f"{term} ({reg_loss})" if term in REG_LOSS_TERMS else term


def _load_curves(run_dirs_by_label: Mapping[str, str | Path]) -> dict[str, tuple]:
    """{label: (log.csv frame, regression loss kind)}, each run read once."""
    return {label: (read_log(d), run_reg_loss(d)) for label, d in run_dirs_by_label.items()}


def _draw_term(ax, runs: Mapping[str, tuple], term: str, window, panel: str | None):
    curves = []
    for i, (label, (log, reg_loss)) in enumerate(runs.items()):
        if term not in log.columns:
            continue
        if panel is not None and loss_panel(term, reg_loss) != panel:
            continue
        y = smooth(log[term], window)
        ax.plot(log["step"], y, color=f"C{i % 10}", label=label)
        curves.append(y)
    ax.set_title(panel or term, fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (smoothed)")
    values = pd.concat(curves) if curves else pd.Series(dtype=float)
    if len(values) and (values > 0).all() and values.max() > 20 * values.min():
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    return ax


def training_curves_figure(
    run_dirs_by_label: Mapping[str, str | Path], window: int | None = None, ncols: int = 3
) -> Figure:
    """Every loss term that appears in any of the runs, one panel each.

    Terms measured with the regression loss (the total among them) get one
    panel per regression loss kind, so SmoothL1 and RLE never share an axis.
    """
    runs = _load_curves(run_dirs_by_label)
    panels: dict[str, str] = {}
    for log, reg_loss in runs.values():
        for t in ["total", *loss_terms(log)]:
            panels.setdefault(loss_panel(t, reg_loss), t)
    order = sorted(panels, key=lambda p: (panels[p] != "total", list(panels).index(p)))
    ncols = min(ncols, len(order))
    nrows = math.ceil(len(order) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, panel in zip(axes, order):
        _draw_term(ax, runs, panels[panel], window, panel)
    for ax in axes[len(order) :]:
        ax.set_axis_off()
    # One legend entry per run, whichever panels it appears in.
    entries: dict[str, object] = {}
    for ax in axes[: len(order)]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    labels = [lbl for lbl in runs if lbl in entries]
    fig.legend(
        [entries[lbl] for lbl in labels],
        labels,
        loc="outside lower center",
        ncols=min(3, len(labels)),
        fontsize=8,
    )
    fig.suptitle("Training losses (trailing mean)", fontsize=10)
    return fig


def learning_curve_figure(curves: pd.DataFrame) -> Figure:
    """AP and AP50 against crops seen, one line per run (seeds share their row's colour)."""
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for i, (label, rows) in enumerate(curves.groupby("label", sort=False)):
        for j, (_, run) in enumerate(rows.groupby("seed")):
            run = run.sort_values("crops_seen")
            for ax, metric in zip(axes, ("AP", "AP50")):
                ax.plot(
                    run["crops_seen"] / 1000,
                    run[metric],
                    marker="o",
                    ms=3,
                    color=f"C{i % 10}",
                    alpha=1.0 if j == 0 else 0.5,
                    label=label if j == 0 else None,
                )
    for ax, metric in zip(axes, ("AP", "AP50")):
        ax.set_xlabel("training crops seen (thousands)")
        ax.set_ylabel(f"{metric} x 100")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Learning curves from scratch (validation AP during training)", fontsize=10)
    return fig


def ap_vs_cost_figure(summary: pd.DataFrame, cost: str = "GMACs", title: str = "") -> Figure:
    fig = Figure(figsize=(8.5, 4.2), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    plot_ap_vs_cost(summary, ax, cost=cost)
    ax.set_title(title or f"AP against the deployed model's cost ({cost})", fontsize=10)
    return fig


def ap_per_row_figure(
    runs: pd.DataFrame, reference: str | None = None, metric: str = "AP", title: str = ""
) -> Figure:
    """Every row's `metric`, one dot per seed and a bar at the mean, best row on top; a
    dashed line at `reference`'s mean (the baseline a claim is judged against). `runs` is
    one row per run (`reporting.results_frame`). Rows that share a cost, which overlap in
    the AP-against-cost figure, stand apart here."""
    means = runs.groupby("label", sort=False)[metric].mean().sort_values()  # already x100
    fig = Figure(figsize=(8.5, 0.6 + 0.32 * len(means)), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(range(len(means)), means.values, color="0.85", height=0.6)
    for y, label in enumerate(means.index):
        seeds = runs.loc[runs["label"] == label, metric]
        ax.plot(seeds.values, [y] * len(seeds), "o", color="C0", markersize=4)
        right = max(means[label], seeds.max())
        ax.text(right, y, f"  {means[label]:.1f}", va="center", fontsize=7)
    if reference is not None and reference in means.index:
        ax.axvline(means[reference], color="C3", linestyle="--", linewidth=1)
        ax.text(means[reference], len(means) - 0.4, f"{reference}", color="C3", fontsize=7)
    ax.set_yticks(range(len(means)), means.index, fontsize=7)
    ax.set_ylim(-0.6, len(means) - 0.2)
    ax.set_xlabel(f"{metric} (x100): bar = mean over seeds, dots = seeds")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title or f"{metric} of every row", fontsize=10)
    return fig


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


def _predict_people(model, cfg: Config, ds, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """{image_id: (N, K, 3) predicted keypoints in image pixels with scores} on `indices` of ds."""

    flip = torch.as_tensor(get_dataset_info(cfg.data.dataset).flip_index)
    preds = predict_dataset(
        model,
        torch.utils.data.Subset(ds, list(indices)),
        cfg.model.deploy_head,
        cfg.data.input_size,
        flip_index=flip if cfg.eval.flip_test else None,
        batch_size=cfg.eval.batch_size,
    )
    people: dict[int, list] = {}
    for p in preds:
        kps = np.concatenate([p.keypoints, p.keypoint_scores[:, None]], axis=1)
        people.setdefault(p.image_id, []).append(kps)
    return {k: np.stack(v) for k, v in people.items()}


def _comparison_grid(
    models: Mapping[str, tuple[Any, Config]],
    ann_file: Path,
    image_dir: Path,
    image_ids: Sequence[int] | None,
    n_images: int,
    title: str,
    score_thr: float,
) -> Figure:

    first_cfg = next(iter(models.values()))[1]
    info = get_dataset_info(first_cfg.data.dataset)
    for label, (_, cfg) in models.items():
        if cfg.data.dataset != first_cfg.data.dataset:
            raise ConfigError(
                f"run {label!r} predicts {cfg.data.dataset} keypoints, the first run "
                f"{first_cfg.data.dataset}: compare runs of one keypoint layout per figure"
            )
    datasets = {
        label: TopDownPoseDataset.from_coco(
            ann_file, image_dir, info, cfg.data, train=False, with_heatmaps=False
        )
        for label, (_, cfg) in models.items()
    }
    instances = next(iter(datasets.values())).instances
    if image_ids is None:
        image_ids = sorted({inst.image_id for inst in instances})[:n_images]
    image_ids = list(image_ids)
    chosen = [i for i, inst in enumerate(instances) if inst.image_id in set(image_ids)]
    if not chosen:
        raise ConfigError(f"none of the image ids {image_ids} has a person instance in {ann_file}")
    predictions = {
        label: _predict_people(model, cfg, datasets[label], chosen)
        for label, (model, cfg) in models.items()
    }
    gt: dict[int, list] = {}
    paths: dict[int, Path] = {}
    for i in chosen:
        inst = instances[i]
        gt.setdefault(inst.image_id, []).append(inst.keypoints)
        paths[inst.image_id] = inst.image_path
    columns = ["ground truth", *models]
    shown = [i for i in image_ids if i in gt]
    images = {i: np.asarray(open_image(paths[i]).convert("RGB")) for i in shown}
    # Row heights follow each image's aspect ratio, so landscape photos leave no gaps.
    ratios = [images[i].shape[0] / images[i].shape[1] for i in shown]
    panel = 2.8
    fig = Figure(
        figsize=(panel * len(columns), panel * sum(ratios) + 0.3 * len(shown) + 0.5),
        layout="constrained",
    )
    axes = fig.subplots(
        len(shown), len(columns), squeeze=False, gridspec_kw={"height_ratios": ratios}
    )
    for r, image_id in enumerate(shown):
        image = images[image_id]
        for c, column in enumerate(columns):
            ax = axes[r, c]
            if column == "ground truth":
                draw_pose(ax, image, np.stack(gt[image_id]), info, kind="gt")
                ax.set_title(f"ground truth: {paths[image_id].name}", fontsize=7)
            else:
                kps = predictions[column].get(image_id, np.zeros((0, info.num_keypoints, 3)))
                draw_pose(ax, image, kps, info, kind="pred", score_thr=score_thr)
                ax.set_title(column, fontsize=8)
    # Wrapped to the figure's width: a two-column figure has room for about 60 characters.
    fig.suptitle(textwrap.fill(title, width=30 * len(columns)), fontsize=10)
    return fig


def _load_students(runs_by_label: Mapping[str, str | Path]) -> dict[str, tuple[Any, Config]]:
    """The deployed students of the runs that have their weights (a run record has none:
    it is named and left out of the picture)."""
    if not runs_by_label:
        raise ConfigError("no runs to compare: pass {label: run directory}")
    without = [label for label, d in runs_by_label.items() if not has_weights(d)]
    if without:
        print(f"note: no weights for {without} (run records): left out of the picture")
    return {
        label: load_run_model(d, student=True)
        for label, d in runs_by_label.items()
        if label not in without
    }


def keypoint_comparison(
    runs_by_label: Mapping[str, str | Path],
    image_ids: Sequence[int] | None = None,
    n_images: int = 3,
    score_thr: float = 0.2,
) -> Figure | None:
    """The same SynthPose validation images: ground truth, then each run's deployed student.

    Each person is cropped from its ground-truth box (as in evaluation) and
    predicted with flip test; predicted keypoints with score <= `score_thr`
    are not drawn (DeepPose's scores are always 1). None when no run has its weights.
    """
    models = _load_students(runs_by_label)
    if not models:
        return None
    cfg = next(iter(models.values()))[1]
    paths = resolve_data(cfg.data, progress=False)
    name = "SynthPose-WholeBody" if cfg.data.dataset == "coco_wholebody" else "SynthPose"
    if cfg.data.root:  # a real dataset (COCO presets)
        name = Path(cfg.data.root).name
    title = f"{name} validation images, ground-truth boxes: ground truth and deployed students"
    return _comparison_grid(
        models, paths.val_ann, paths.val_images, image_ids, n_images, title, score_thr
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
    its weights.
    """
    coco_dir = Path(coco_dir) if coco_dir else COCO_SAMPLE_DIR
    models = _load_students(runs_by_label)
    if not models:
        return None
    cfg = next(iter(models.values()))[1]
    ann = coco_dir / (
        "test_coco_wholebody.json" if cfg.data.dataset == "coco_wholebody" else "test_coco.json"
    )
    if not ann.is_file():
        print(f"note: {ann} not found; skipping the real-photo comparison")
        return None
    title = (
        "Real COCO val2017 photos: models trained on SynthPose only "
        "(not expected to work well on real photos)"
    )
    return _comparison_grid(models, ann, coco_dir, None, n_images, title, score_thr)


def budget_figure(curves: pd.DataFrame, gains: pd.DataFrame, budgets) -> Figure:
    """Left: AP against crops seen for DeepPose and OCD-DeepPose after a warm-up at each
    budget (`experiments.BUDGETS`), one line per run, the OCD runs' own heatmap head
    dashed where it was scored. Right: OCD's gain over DeepPose at each budget, with the
    margin rule's spread as the error bar (`comparisons.budget_gains`)."""
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    ax, gx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    for k, ocd, deeppose in budgets:
        alpha = {1: 0.45, 2: 0.7}.get(k, 1.0)
        for exp, colour in ((deeppose, "C0"), (ocd, "C1")):
            runs = curves[curves["label"] == exp.label]
            for j, (_, run) in enumerate(runs.groupby("seed")):
                run = run.sort_values("crops_seen")
                x = run["crops_seen"] / 1000
                label = f"{'OCD' if exp is ocd else 'DeepPose'}, {k}x" if j == 0 else None
                ax.plot(x, run["AP"], marker="o", ms=3, color=colour, alpha=alpha, label=label)
                if exp is ocd and run["hm_AP"].notna().any():
                    hm_label = f"OCD's heatmap head, {k}x" if j == 0 else None
                    ax.plot(x, run["hm_AP"], ls="--", color="C2", alpha=alpha, label=hm_label)
    ax.set_xlabel("training crops seen (thousands)")
    ax.set_ylabel("AP x 100")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Validation AP while training, at 1x, 2x and 4x the budget", fontsize=10)
    if len(gains):
        spread = gains["spread"].fillna(0.0)
        gx.errorbar(gains["budget"], gains["delta AP"], yerr=spread, marker="o", capsize=4)
        gx.axhline(0.0, color="k", lw=0.8)
        gx.set_xticks(list(gains["budget"]))
        gx.set_xticklabels([f"{k}x" for k in gains["budget"]])
    gx.set_xlabel("budget (x the profile's)")
    gx.set_ylabel("OCD - DeepPose, AP x 100")
    gx.grid(True, alpha=0.3)
    gx.set_title("OCD's gain (error bar: the spread over seeds)", fontsize=10)
    return fig


def source_probe_figure(table: pd.DataFrame) -> Figure:
    """The TCD probe (`tcd_probe.source_probe`) against epochs: how far each source's
    decoded keypoints are from the ground truth, its confidence m on labelled keypoints,
    and the gradient norms of terms b and c on the student's regression head, one line
    per (run, source)."""
    panels = ("source error (px)", "m, labelled", "|grad b|", "|grad c|")
    fig = Figure(figsize=(12.0, 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels))
    for i, ((run, source), rows) in enumerate(table.groupby(["run", "source"], sort=False)):
        rows = rows.sort_values("epoch")
        for ax, column in zip(axes, panels):
            ax.plot(rows["epoch"], rows[column], marker="o", ms=3, color=f"C{i}",
                    label=f"{run}: {source}")  # fmt: skip
    for ax, column in zip(axes, panels):
        ax.set_xlabel("epoch")
        ax.set_title(column, fontsize=9)
        ax.grid(True, alpha=0.3)
        if column.startswith("|grad"):
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle("Where terms b and c get their targets: the frozen teacher and the online head")
    return fig
