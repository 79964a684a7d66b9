"""The notebooks' plots: loss and learning curves, AP against cost, AP per row, the
budget and the TCD probe.

Each function takes run directories or frames from `ocdlib.report.tables` and returns a
matplotlib Figure, which `NotebookReport.figure` writes and shows; pictures of keypoints
are `ocdlib.report.pictures`'.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ..engine.run_dir import RunDir, load_run_config
from ..errors import MissingFileError


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
    """A run's log.csv (a run record keeps it gzipped: ocdlib/runs/records.py)."""
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
    fig.suptitle("Learning curves (validation AP during training)", fontsize=10)
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
    one row per run (`tables.results_frame`). Rows that share a cost, which overlap in
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


def budget_figure(curves: pd.DataFrame, gains: pd.DataFrame, budgets) -> Figure:
    """Left: AP against crops seen for DeepPose and OCD-DeepPose after a warm-up at each
    budget (`ocdlib.grid.claims.BUDGETS`), one line per run, the OCD runs' own heatmap head
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
