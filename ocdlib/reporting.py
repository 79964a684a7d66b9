"""From runs to tables and figures: everything the notebooks show is computed here.

The notebooks stay thin: they ask `gather` for the results of their rows of the
experiment grid, then call the functions below to turn them into frames,
comparisons, markdown/CSV tables with a provenance header, and figures. Nothing
in `reports/` is typed by hand: every number and every sentence about a number
is produced by this module from the run directories.

Conventions of the frames:

- AP, AP50, AP75, AR (and the whole-body part APs) are COCO metrics x 100, as
  the paper and mmpose's model zoo print them (52.8, not 0.528). pycocotools'
  "undefined" (-1) becomes NaN.
- `params` and `GMACs` are those of the deployed student (the model that
  `python -m ocdlib export` writes), so OCD rows have DeepPose's size.
- `summary_frame` keeps the sample standard deviation over seeds in
  `<metric>_std`; with one seed it is NaN and the table writer leaves the cell
  empty.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .configs import Config
from .engine.runs import load_run_config
from .experiments import Experiment, config_for, experiments, run_experiment, skipped_on
from .metainfo import DatasetInfo, get_dataset_info
from .paths import REPO_ROOT

METRICS = ("AP", "AP50", "AP75", "AR")
PART_METRICS = ("body/AP", "foot/AP", "face/AP", "hand/AP", "wholebody/AP")
HEAD_NAMES = {"reg": "regression", "rle": "RLE", "hm": "heatmap", "hm_small": "heatmap (reduced)"}
# Decimal places of the markdown tables, per column; other floats get DEFAULT_DIGITS.
DIGITS = {"GMACs": 3, "train_time_min": 2, "latency_ms": 2, "images_per_s": 1}
DEFAULT_DIGITS = 1
COCO_SAMPLE_DIR = Path(REPO_ROOT).parent / "shared" / "data" / "coco_sample"
PROVENANCE_NOTE = (
    "Every number here is written by code (ocdlib/reporting.py) from the run directories; "
    "nothing is typed by hand."
)


# ----------------------------------------------------------------------------- running


def _run_dirs(exp: Experiment, profile: str) -> list[Path]:
    from .engine.runs import run_dir

    return [run_dir(config_for(exp, profile, seed)) for seed in exp.seeds(profile)]


def gather(
    rows: str | Experiment | Iterable[Experiment], profile: str, progress: bool = False
) -> list[dict]:
    """Results of experiment rows (a notebook id such as "02", one row, or rows), every seed.

    Finished runs are read from the run cache; missing ones are trained now
    (`get_run` lets one process at a time train a run). Prints one line per run.
    """
    if isinstance(rows, str):
        rows = experiments(rows)
    elif isinstance(rows, Experiment):
        rows = [rows]
    out: list[dict] = []
    for exp in rows:
        if skipped_on(exp, profile):
            print(f"{exp.label}: not run on the {profile} profile ({skipped_on(exp, profile)})")
    rows = [exp for exp in rows if not skipped_on(exp, profile)]
    for exp in rows:
        cached = all((d / "result.json").is_file() for d in _run_dirs(exp, profile))
        t0 = time.perf_counter()
        results = run_experiment(exp, profile, progress=progress)  # locks each run it trains
        how = "cached" if cached else f"trained in {time.perf_counter() - t0:.0f} s"
        for r in results:
            ap = _metric(r.get("metrics", {}), "AP")
            print(f"{exp.label} (seed {r['config'].train.seed}): AP {ap:.1f} [{how}]")
        out += results
    return out


# ----------------------------------------------------------------------------- frames


def _metric(metrics: Mapping[str, float], name: str) -> float:
    """A COCO metric x 100; NaN where missing or undefined (pycocotools' -1)."""
    value = metrics.get(name)
    if value is None or value < 0:
        return math.nan
    return 100.0 * float(value)


def head_description(cfg: Config) -> str:
    """The deployed head in words, with its size for heatmap heads (N deconvs, C channels)."""
    head = cfg.model.deploy_head
    name = HEAD_NAMES.get(head, head)
    if head == "hm":
        return f"{name} N={cfg.model.hm_deconv_layers} C={cfg.model.hm_deconv_channels}"
    if head == "hm_small":
        n, c = cfg.model.small_deconv_layers, cfg.model.small_deconv_channels
        return f"{name} N={n}" + (f" C={c}" if n > 0 else "")
    return name


def results_frame(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run (experiment row x seed) from `gather` / `run_experiment` results."""
    rows = []
    for r in results:
        exp: Experiment = r["experiment"]
        cfg: Config = r["config"]
        metrics = r.get("metrics", {})
        wholebody = cfg.data.dataset == "coco_wholebody"
        row = {
            "notebook": exp.notebook,
            "group": exp.group,
            "label": exp.label,
            "method": exp.method,
            "dataset": "wholebody" if wholebody else "body",
            "backbone": cfg.model.backbone,
            "head": head_description(cfg),
            "seed": int(r.get("seed", cfg.train.seed)),
        }
        row.update({m: _metric(metrics, m) for m in METRICS})
        if wholebody:
            row.update({m: _metric(metrics, m) for m in PART_METRICS})
        macs = r.get("student_macs")
        time_s = r.get("train_time_s")
        row.update(
            {
                "params": int(r["student_params"]) if r.get("student_params") else None,
                "GMACs": macs / 1e9 if macs is not None else math.nan,
                "train_time_min": time_s / 60 if time_s is not None else math.nan,
                "images_per_s": r.get("train_images_per_s") or math.nan,
                "config_hash": r.get("config_hash", cfg.hash),
                "git_commit": r.get("git_commit", "unknown"),
                "run_dir": str(r.get("run_dir", "")),
            }
        )
        rows.append(row)
    columns = [
        "notebook", "group", "label", "method", "dataset", "backbone", "head", "seed",
        *METRICS, *PART_METRICS,
        "params", "GMACs", "train_time_min", "images_per_s", "config_hash", "git_commit",
        "run_dir",
    ]  # fmt: skip
    df = pd.DataFrame(rows, columns=columns)
    # Part APs exist only for whole-body rows; drop the columns when there is none.
    return df if (df["dataset"] == "wholebody").any() else df.drop(columns=list(PART_METRICS))


def _joined(values) -> str:
    return ",".join(str(v) for v in dict.fromkeys(values))


def summary_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per label: mean and sample std over seeds of every metric, seeds and hashes.

    Labels keep the order in which they first appear in `df`.
    """
    metrics = [m for m in (*METRICS, *PART_METRICS) if m in df.columns]
    rows = []
    for _, g in df.groupby("label", sort=False):
        first = g.iloc[0]
        row = {c: first[c] for c in ("label", "notebook", "group", "method", "dataset")}
        row.update({c: first[c] for c in ("backbone", "head")})
        row["n_seeds"] = len(g)
        row["seeds"] = _joined(g["seed"])
        for m in metrics:
            row[m] = g[m].mean()
            row[f"{m}_std"] = g[m].std(ddof=1) if len(g) > 1 else math.nan
        row["params"] = first["params"]
        row["GMACs"] = first["GMACs"]
        row["train_time_min"] = g["train_time_min"].mean()
        row["images_per_s"] = g["images_per_s"].mean()
        row["config_hashes"] = _joined(g["config_hash"])
        row["git_commits"] = _joined(g["git_commit"])
        row["run_dirs"] = list(g["run_dir"])
        rows.append(row)
    return pd.DataFrame(rows)


def display_frame(summary: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
    """The columns a results table shows: method, sizes, AP +- std, cost, provenance."""
    metrics = [m for m in (*METRICS, *PART_METRICS) if m in summary.columns]
    cols = ["label", "backbone", "head", "dataset", "seeds"]
    for m in metrics:
        cols += [m, f"{m}_std"] if summary["n_seeds"].max() > 1 else [m]
    cols += ["params", "GMACs", *extra, "train_time_min", "config_hashes", "git_commits"]
    return summary[[c for c in cols if c in summary.columns]]


# ----------------------------------------------------------------------------- tables


def _format_cell(value: Any, column: str, digits: Mapping[str, int]) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if column == "params" else str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        if column == "params":
            return f"{int(round(value)):,}"
        text = f"{value:.{digits.get(column, DEFAULT_DIGITS)}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text  # never -0.0
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def format_frame(df: pd.DataFrame, digits: Mapping[str, int] | None = None) -> pd.DataFrame:
    """`df` as strings, the way the markdown tables print it (NaN and None as empty cells)."""
    digits = {**DIGITS, **(digits or {})}
    return pd.DataFrame(
        {c: [_format_cell(v, str(c), digits) for v in df[c]] for c in df.columns},
        index=df.index,
    )


def markdown_table(df: pd.DataFrame, digits: Mapping[str, int] | None = None) -> str:
    """A GitHub-flavoured markdown table of `df` (no index); numbers right-aligned."""
    text = format_frame(df, digits)

    def escape(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    numeric = [
        pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
        for c in df.columns
    ]
    header = "| " + " | ".join(escape(str(c)) for c in df.columns) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    body = ["| " + " | ".join(escape(v) for v in row) + " |" for row in text.to_numpy().tolist()]
    return "\n".join([header, rule, *body]) + "\n"


def git_state() -> str:
    """Short commit of the checkout, marked when the code (ocdlib/, notebooks/) has local edits."""
    from .engine.runs import git_commit

    commit = git_commit()
    try:
        status = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "ocdlib", "notebooks"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        status = ""
    return f"{commit} (with uncommitted code changes)" if status else commit


def provenance(profile: str, notebook: str) -> dict[str, str]:
    """Where a table comes from: profile, the command that rewrites it, commit and date."""
    number = notebook[:2]
    return {
        "profile": profile,
        "command": f"python -m ocdlib reproduce --profile {profile} --only {number}",
        "notebook": f"notebooks/{notebook}.ipynb",
        "git_commit": git_state(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "note": PROVENANCE_NOTE,
    }


def provenance_markdown(prov: Mapping[str, str]) -> str:
    return (
        f"<!-- written by {prov['notebook']}; do not edit, rerun the command below -->\n"
        f"- profile: `{prov['profile']}`\n"
        f"- command: `{prov['command']}` ({prov['notebook']})\n"
        f"- git commit: {prov['git_commit']}\n"
        f"- date: {prov['date']}\n"
        f"- {prov['note']}\n"
    )


def write_table(
    df: pd.DataFrame,
    path_stem: str | Path,
    profile: str,
    notebook: str,
    title: str | None = None,
    digits: Mapping[str, int] | None = None,
) -> tuple[Path, Path]:
    """Write `<stem>.md` (provenance header, then the table), `<stem>.csv` and `<stem>.meta.json`.

    The CSV keeps full precision for further analysis; its provenance lives in
    the `.meta.json` sidecar so the CSV stays loadable by any reader.
    """
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    prov = provenance(profile, notebook)
    md = stem.with_suffix(".md")
    heading = f"# {title}\n\n" if title else ""
    md.write_text(heading + provenance_markdown(prov) + "\n" + markdown_table(df, digits))
    csv = stem.with_suffix(".csv")
    df.to_csv(csv, index=False)
    meta = {**prov, "table": csv.name, "title": title or stem.name}
    stem.with_suffix(".meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return md, csv


# ----------------------------------------------------------------------------- comparisons


@dataclass(frozen=True)
class Comparison:
    name: str
    candidate: str  # label expected to be better
    baseline: str
    claim: str  # what the paper (or the benchmark's design) says


COMPARISONS: tuple[Comparison, ...] = (
    Comparison(
        "OCD-DeepPose vs DeepPose",
        "OCD-DeepPose",
        "DeepPose",
        "OCD lifts DeepPose at equal deployed size (paper, COCO: 52.8 -> 62.8 AP)",
    ),
    Comparison("OCD-RLE vs RLE", "OCD-RLE", "RLE", "OCD also lifts an RLE regression head"),
    Comparison(
        "OCD-RLE (RLE terms x0.1) vs RLE",
        "OCD-RLE: RLE terms x0.1",
        "RLE",
        "OCD lifts RLE once its likelihood terms no longer swamp the heatmap loss",
    ),
    Comparison(
        "OCD-RLE (distillation after a warm-up) vs RLE",
        "OCD-RLE: distillation after a warm-up",
        "RLE",
        "OCD lifts RLE once b and c start from a trained regression head",
    ),
    Comparison(
        "TCD-DeepPose vs DeepPose",
        "TCD-DeepPose",
        "DeepPose",
        "a frozen heatmap teacher lifts DeepPose",
    ),
    Comparison(
        "heatmap vs DeepPose (benchmark check)",
        "SimpleBaseline (heatmap)",
        "DeepPose",
        "the heatmap teacher must beat DeepPose clearly, else there is nothing to distil",
    ),
    Comparison(
        "reduced head N=1: distilled vs alone",
        "Reduced head + online distillation",
        "Reduced heatmap head alone",
        "online distillation lets a reduced head approach the full head",
    ),
    Comparison(
        "reduced head N=0: distilled vs alone",
        "Reduced head N=0 + online distillation",
        "Reduced head N=0 alone",
        "online distillation lets a reduced head approach the full head",
    ),
    Comparison(
        "whole-body heatmap vs DeepPose (benchmark check)",
        "SimpleBaseline (whole-body)",
        "DeepPose (whole-body)",
        "on 133 keypoints too, the heatmap teacher must beat DeepPose clearly",
    ),
    Comparison(
        "whole-body: OCD-DeepPose vs DeepPose",
        "OCD-DeepPose (whole-body)",
        "DeepPose (whole-body)",
        "OCD lifts DeepPose on 133 keypoints",
    ),
)


def comparisons(
    summary: pd.DataFrame, metric: str = "AP", pairs: Sequence[Comparison] = COMPARISONS
) -> pd.DataFrame:
    """The paper's comparisons whose two labels are both in `summary`, with the margin rule.

    spread = the larger of the two sample standard deviations over seeds; the
    margin "exceeds twice the spread" when |delta| > 2 * spread. With one seed
    on either side there is no spread and the rule is not applied (None).
    """
    by_label = summary.set_index("label")
    rows = []
    for c in pairs:
        if c.candidate not in by_label.index or c.baseline not in by_label.index:
            continue
        cand, base = by_label.loc[c.candidate], by_label.loc[c.baseline]
        delta = cand[metric] - base[metric]
        n = int(min(cand["n_seeds"], base["n_seeds"]))
        spread = max(cand[f"{metric}_std"], base[f"{metric}_std"]) if n > 1 else math.nan
        exceeds = None if math.isnan(spread) or math.isnan(delta) else bool(abs(delta) > 2 * spread)
        rows.append(
            {
                "comparison": c.name,
                "candidate": c.candidate,
                "baseline": c.baseline,
                f"{metric} candidate": cand[metric],
                f"{metric} baseline": base[metric],
                f"delta {metric}": delta,
                "spread": spread,
                "n_seeds": n,
                "margin > 2x spread": exceeds,
                "claim": c.claim,
            }
        )
    columns = [
        "comparison", "candidate", "baseline", f"{metric} candidate", f"{metric} baseline",
        f"delta {metric}", "spread", "n_seeds", "margin > 2x spread", "claim",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _signed(x: float) -> str:
    """+1.2 / -1.2, and +0.0 for anything that rounds to zero (never -0.0)."""
    return f"{x + 0.0:+.1f}" if round(x, 1) != 0 else "+0.0"


def comparison_sentence(row: Mapping[str, Any], metric: str = "AP") -> str:
    """One sentence per comparison row, written from its numbers."""
    delta = row[f"delta {metric}"]
    head = f"{row['candidate']} vs {row['baseline']}: {_signed(delta)} {metric}"
    if row["margin > 2x spread"] is None:
        return f"{head} (one seed: no seed spread to judge the margin against)."
    spread = f"spread {row['spread']:.1f} over {row['n_seeds']} seeds"
    if not row["margin > 2x spread"]:
        return f"{head} ({spread}): within twice the spread, not separated."
    direction = "better" if delta > 0 else "worse"
    return (
        f"{head} ({spread}): margin exceeds twice the spread ({row['candidate']} is {direction})."
    )


def sanity_checks(
    summary: pd.DataFrame, ceiling: float = 90.0, min_gap: float = 1.0
) -> pd.DataFrame:
    """The benchmark's own checks: the heatmap baseline beats DeepPose clearly (by at least
    `min_gap` AP, and by more than twice the seed spread where there are seeds), on body
    and on whole-body where both rows exist; no method saturates."""
    rows = []
    heat = comparisons(summary, pairs=[c for c in COMPARISONS if c.candidate.startswith("Simple")])
    for _, r in heat.iterrows():
        separated = r["margin > 2x spread"]
        passed = bool(r["delta AP"] >= min_gap and separated is not False)
        detail = f"{_signed(r['delta AP'])} AP" + (
            f", spread {r['spread']:.1f}" if separated is not None else ", one seed"
        )
        where = " (whole-body)" if "whole-body" in r["candidate"] else ""
        rows.append(
            {
                "check": f"heatmap baseline better than DeepPose{where}",
                "value": detail,
                "passed": passed,
            }
        )
    if len(summary):
        top = summary.loc[summary["AP"].idxmax()] if summary["AP"].notna().any() else None
        value = f"{top['AP']:.1f} ({top['label']})" if top is not None else "no AP"
        rows.append(
            {
                "check": f"no method above AP {ceiling:.0f} (not saturated)",
                "value": value,
                "passed": bool(top is not None and top["AP"] <= ceiling),
            }
        )
    return pd.DataFrame(rows, columns=["check", "value", "passed"])


# What the cpu profile was calibrated to (on the baselines only, never on OCD): models that
# visibly find the keypoints, and a heatmap model far from saturation.
BASELINE_FLOORS: tuple[tuple[str, str, float], ...] = (
    ("SimpleBaseline (heatmap)", "AP", 35.0),
    ("DeepPose", "AP", 3.0),
    ("DeepPose", "AP50", 15.0),
    ("SimpleBaseline (whole-body)", "body/AP", 20.0),
    ("SimpleBaseline (whole-body)", "wholebody/AP", 5.0),
)


def floor_checks(
    summary: pd.DataFrame, floors: Sequence[tuple[str, str, float]] = BASELINE_FLOORS
) -> pd.DataFrame:
    """The profile's calibration targets: each baseline at least its floor (mean over seeds).
    A row that did not run is listed as missing, never passed."""
    by_label = summary.set_index("label")
    rows = []
    for label, metric, floor in floors:
        if label in by_label.index and metric in by_label.columns:
            value = float(by_label.loc[label, metric])
            rows.append(
                {
                    "check": f"{label}: {metric} at least {floor:g}",
                    "value": f"{value:.1f}",
                    "passed": bool(value >= floor),
                }
            )
        else:
            rows.append(
                {
                    "check": f"{label}: {metric} at least {floor:g}",
                    "value": "not run",
                    "passed": False,
                }
            )
    return pd.DataFrame(rows, columns=["check", "value", "passed"])


# The CPU benchmark's target for the paper's headline claim (METHOD.md).
TARGET_CANDIDATE, TARGET_BASELINE, TARGET_MIN_GAIN = "OCD-DeepPose", "DeepPose", 5.0


def target_checks(
    summary: pd.DataFrame,
    candidate: str = TARGET_CANDIDATE,
    baseline: str = TARGET_BASELINE,
    min_gain: float = TARGET_MIN_GAIN,
) -> pd.DataFrame:
    """Whether `candidate` meets the target over `baseline`: a gain of at least
    `min_gain` AP, a margin above twice the seed spread (two seeds or more), and
    a deployed student of exactly the baseline's parameter count.

    Empty when either row is missing (a notebook that has not run them)."""
    columns = ["target", "value", "passed"]
    by_label = summary.set_index("label")
    if candidate not in by_label.index or baseline not in by_label.index:
        return pd.DataFrame([], columns=columns)
    comp = comparisons(summary, pairs=[Comparison("target", candidate, baseline, "")]).iloc[0]
    delta, spread, n = comp["delta AP"], comp["spread"], comp["n_seeds"]
    cand_params, base_params = (int(by_label.loc[x, "params"]) for x in (candidate, baseline))
    rows = [
        {
            "target": f"{candidate} above {baseline} by at least {min_gain:g} AP",
            "value": f"{_signed(delta)} AP",
            "passed": bool(delta >= min_gain),
        },
        {
            "target": "margin larger than twice the seed spread (2 seeds or more)",
            "value": f"spread {spread:.1f} over {n} seeds" if n > 1 else "one seed: no spread",
            "passed": bool(comp["margin > 2x spread"]) and delta > 0,
        },
        {
            "target": f"deployed {candidate} has exactly {baseline}'s parameter count",
            "value": f"{cand_params:,} vs {base_params:,}",
            "passed": cand_params == base_params,
        },
    ]
    return pd.DataFrame(rows, columns=columns)


def ablation_frame(
    summary: pd.DataFrame,
    full: str = TARGET_CANDIDATE,
    baseline: str = TARGET_BASELINE,
    group: str = "ablation",
) -> pd.DataFrame:
    """Which term or setting matters: every `group` row beside the full method and
    the baseline, with its AP gain over the baseline and its AP change from the
    full method (negative: the row lost accuracy by dropping or changing something)."""
    columns = ["label", "n_seeds", "AP", "AP_std", f"delta AP vs {baseline}", f"delta AP vs {full}"]
    by_label = summary.set_index("label")
    if full not in by_label.index or baseline not in by_label.index:
        return pd.DataFrame([], columns=columns)
    labels = [baseline, full, *summary.loc[summary["group"] == group, "label"]]
    rows = []
    for label in labels:
        r = by_label.loc[label]
        rows.append(
            {
                "label": label,
                "n_seeds": int(r["n_seeds"]),
                "AP": r["AP"],
                "AP_std": r["AP_std"],
                f"delta AP vs {baseline}": r["AP"] - by_label.loc[baseline, "AP"],
                f"delta AP vs {full}": r["AP"] - by_label.loc[full, "AP"],
            }
        )
    return pd.DataFrame(rows, columns=columns)


def ablation_sentences(ablation: pd.DataFrame) -> list[str]:
    """What the ablation says, in words written from its numbers."""
    if len(ablation) < 3:
        return []
    baseline, full = ablation["label"].iloc[0], ablation["label"].iloc[1]
    gain = ablation["AP"].iloc[1] - ablation["AP"].iloc[0]
    rows = ablation.iloc[2:]
    vs_full, vs_base = f"delta AP vs {full}", f"delta AP vs {baseline}"

    def said(r) -> str:
        return (
            f"{r['label']} ({_signed(r[vs_full])} AP from {full}, "
            f"{_signed(r[vs_base])} over {baseline})"
        )

    worst = rows.loc[rows[vs_full].idxmin()]
    best = rows.loc[rows[vs_full].idxmax()]
    lines = [f"{full} is {_signed(gain)} AP over {baseline}."]
    lines.append(f"The change that costs the most: {said(worst)}.")
    if best[vs_full] > 0:
        lines.append(f"The change that does best, better than {full} itself: {said(best)}.")
    else:
        lines.append(f"The change that costs the least: {said(best)}.")
    # Rows that keep none of the gain: what they drop is what the gain comes from.
    lost = rows[rows[vs_base] <= 0.1 * max(gain, 0.0)]["label"].tolist()
    if gain > 0 and lost:
        lines.append(f"Rows that keep none of the gain (within a tenth of it): {'; '.join(lost)}.")
    return lines


def aux_head_frame(summary: pd.DataFrame, head: str = "hm") -> pd.DataFrame:
    """Every run whose model trains `head` beside a different deployed head (OCD and its
    ablation): the deployed student's AP next to the AP of that head, scored on the same
    validation set. It shows what the distillation costs the teacher that the student
    learns from. (Scores are computed once per run and kept in `<run>/eval_<head>/`.)"""
    from .engine.evaluate import head_metrics
    from .engine.runs import load_run_config, read_result

    rows = []
    for _, r in summary.iterrows():
        for run_dir in r["run_dirs"]:
            model = load_run_config(run_dir).model
            if head not in model.heads or model.deploy_head == head:
                continue
            result = read_result(run_dir)
            rows.append(
                {
                    "label": r["label"],
                    "seed": int(result["seed"]),
                    "student AP": 100 * result["metrics"]["AP"],
                    f"{head} head AP": 100 * head_metrics(run_dir, head)["AP"],
                    "run_dir": str(run_dir),
                }
            )
    return pd.DataFrame(rows, columns=["label", "seed", "student AP", f"{head} head AP", "run_dir"])


def same_deployed_size(summary: pd.DataFrame, label: str, reference: str) -> bool:
    """Whether the deployed students of two rows have exactly the same parameter count."""
    by_label = summary.set_index("label")
    for name in (label, reference):
        if name not in by_label.index:
            raise KeyError(f"no row labelled {name!r} in the summary; rows: {list(by_label.index)}")
    return int(by_label.loc[label, "params"]) == int(by_label.loc[reference, "params"])


def training_time_sentence(summary: pd.DataFrame) -> str:
    """How long the grid takes to train from an empty run cache: the sum of every
    run's own training time (each measured on the machine that trained it)."""
    runs = int(summary["n_seeds"].sum())
    total = float((summary["train_time_min"] * summary["n_seeds"]).sum())
    return (
        f"Training the whole grid from an empty run cache: {runs} runs, "
        f"{total:.0f} min of training loops in all (the sum of each run's train_time_s; "
        "evaluation, data generation and notebook overhead come on top)."
    )


def results_markdown(
    summary: pd.DataFrame, comps: pd.DataFrame, checks: pd.DataFrame, profile: str
) -> str:
    """The whole of reports/results.md: provenance, results, comparisons in words, checks."""
    prov = provenance(profile, "06_results")
    lines = [
        f"# Results ({profile} profile)",
        "",
        provenance_markdown(prov),
        "AP, AP50, AP75 and AR are COCO OKS metrics x 100 on the validation set of the "
        "profile's data; params and GMACs are those of the deployed student; `_std` columns "
        "are the sample standard deviation over seeds (empty with one seed).",
        "",
        training_time_sentence(summary),
        "",
        "## All experiments",
        "",
        markdown_table(display_frame(summary)),
        "## Comparisons",
        "",
        markdown_table(comps),
        *[f"- {comparison_sentence(r)}" for _, r in comps.iterrows()],
        "",
        "## Benchmark checks",
        "",
        markdown_table(checks),
        "## The baselines against the profile's calibration targets",
        "",
        markdown_table(floor_checks(summary)),
    ]
    target = target_checks(summary)
    if len(target):
        lines += ["## The target", "", markdown_table(target)]
    ablation = ablation_frame(summary)
    if len(ablation):
        lines += [
            "## Which term matters (the OCD ablation)",
            "",
            markdown_table(ablation),
            *[f"- {s}" for s in ablation_sentences(ablation)],
            "",
        ]
    return "\n".join(lines)


def write_results(
    summary: pd.DataFrame,
    comps: pd.DataFrame,
    checks: pd.DataFrame,
    reports_dir: str | Path,
    profile: str,
) -> tuple[Path, Path]:
    """`<reports_dir>/results.md` (all sections) and `results.csv` (+ `results.meta.json`)."""
    root = Path(reports_dir)
    root.mkdir(parents=True, exist_ok=True)
    md = root / "results.md"
    md.write_text(results_markdown(summary, comps, checks, profile))
    csv = root / "results.csv"
    display_frame(summary).to_csv(csv, index=False)
    meta = {**provenance(profile, "06_results"), "table": csv.name, "title": "results"}
    (root / "results.meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return md, csv


def first_runs(summary: pd.DataFrame, labels: Sequence[str] | None = None) -> dict[str, str]:
    """{label: run directory of its first seed}, for curves and pictures (all rows by default)."""
    by_label = dict(zip(summary["label"], summary["run_dirs"]))
    missing = [label for label in labels or [] if label not in by_label]
    if missing:
        raise KeyError(f"no row labelled {missing} in the summary; rows: {list(by_label)}")
    return {label: by_label[label][0] for label in (labels or by_label)}


# ----------------------------------------------------------------------------- plots


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
    path = Path(run_dir) / "log.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a finished run directory?")
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
    from .engine.runs import load_run_config

    return load_run_config(run_dir).loss.reg_loss


def loss_panel(term: str, reg_loss: str) -> str:
    """The panel a run's loss term is drawn in: terms measured with the regression
    loss get one panel per regression loss kind."""
    return f"{term} ({reg_loss})" if term in REG_LOSS_TERMS else term


def plot_training_curves(
    run_dirs_by_label: Mapping[str, str | Path],
    ax,
    term: str = "total",
    window: int | None = None,
    panel: str | None = None,
):
    """One smoothed curve of loss `term` per run, against the training step.

    With `panel`, only the runs whose `loss_panel(term, reg_loss)` equals it are
    drawn (each keeps its colour). The y axis is logarithmic when the curves are
    positive and span more than a factor of 20 (a heatmap loss beside a
    regression loss), else linear.
    """
    return _draw_term(ax, _load_curves(run_dirs_by_label), term, window, panel)


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


def learning_curve_frame(
    summary: pd.DataFrame, labels: Sequence[str] | None = None
) -> pd.DataFrame:
    """AP against training crops seen, from the evaluations each run made while it trained
    (`train.eval_every`) and its final one: one row per run and evaluation."""
    rows = []
    for _, row in summary.iterrows():
        if labels is not None and row["label"] not in labels:
            continue
        for run in row["run_dirs"]:
            cfg = load_run_config(run)
            evals = json.loads((Path(run) / "evals.json").read_text())
            for e in evals:
                rows.append(
                    {
                        "label": row["label"],
                        "seed": cfg.train.seed,
                        "epoch": e["epoch"],
                        "crops_seen": int(e["step"]) * cfg.train.batch_size,
                        "AP": _metric(e, "AP"),
                        "AP50": _metric(e, "AP50"),
                    }
                )
    return pd.DataFrame(rows, columns=["label", "seed", "epoch", "crops_seen", "AP", "AP50"])


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


# ----------------------------------------------------------------------------- data pictures


def annotation_stats(ann_file: str | Path, image_dir: str | Path, info: DatasetInfo) -> dict:
    """Images, person instances and keypoint visibility counts of a COCO keypoint file.

    Instances are those the dataset trains on (labelled keypoints, valid box);
    visibility counts are over their keypoints: v=2 visible, v=1 labelled but
    hidden, v=0 unlabelled.
    """
    from .data.coco import load_coco_keypoints

    raw = json.loads(Path(ann_file).read_text())
    instances = load_coco_keypoints(ann_file, image_dir, info)
    v = np.concatenate([inst.keypoints[:, 2] for inst in instances]) if instances else np.zeros(0)
    images_with_people = len({inst.image_id for inst in instances})
    return {
        "images": len(raw.get("images", [])),
        "annotations": len(raw.get("annotations", [])),
        "instances": len(instances),
        "instances_per_image": len(instances) / max(images_with_people, 1),
        "keypoints": info.num_keypoints,
        "v=2 (visible)": int((v >= 2).sum()),
        "v=1 (hidden)": int(((v > 0) & (v < 2)).sum()),
        "v=0 (unlabelled)": int((v == 0).sum()),
        "median area": float(np.median([inst.area for inst in instances])) if instances else 0.0,
        # The OKS scale convention: COCO's `area` is the segmentation's, SynthPose's the
        # rendered silhouette's; both should be about the same share of the box.
        "median area / box": float(np.median([_area_share(inst) for inst in instances]))
        if instances
        else 0.0,
    }


def _area_share(inst) -> float:
    box = float(inst.bbox[2]) * float(inst.bbox[3])
    return float(inst.area) / box if box > 0 else float("nan")


def stats_frame(sources: Mapping[str, tuple[Path, Path, DatasetInfo]]) -> pd.DataFrame:
    """`annotation_stats` of several (annotation file, image folder, info) sources, one row each."""
    return pd.DataFrame(
        [{"data": name, **annotation_stats(*source)} for name, source in sources.items()]
    )


def _crop_keypoints(sample: Mapping[str, Any], input_size) -> np.ndarray:
    """(K, 3) crop-pixel keypoints of a dataset sample: flag 2 where the weight is set."""
    w, h = input_size
    xy = sample["reg_target"].numpy() * np.array([w, h], dtype=np.float32)
    flags = np.where(sample["reg_weight"].numpy() > 0, 2.0, 0.0)
    return np.concatenate([xy, flags[:, None]], axis=1)


def _train_instances(cfg: Config):
    """The training instances of `cfg`'s data (SynthPose generated on first use) and its info."""
    from .data.coco import load_coco_keypoints
    from .data.prepare import resolve_data

    info = get_dataset_info(cfg.data.dataset)
    paths = resolve_data(cfg.data, progress=False)
    return load_coco_keypoints(paths.train_ann, paths.train_images, info), info


def augmented_crops_figure(cfg: Config, n: int = 6, epochs: Sequence[int] = (0, 1)) -> Figure:
    """The same training instances as the network sees them: eval crop, then augmented crops.

    Column j is instance j; the first row is the plain (eval-mode) crop, each
    further row the training augmentation of one epoch, with the regression
    targets drawn (keypoints whose weight is 0 are left out).
    """
    from .data.dataset import TopDownPoseDataset
    from .data.transforms import denormalize_image
    from .viz import pose_grid

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
            s = ds[i]
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
    from .data.dataset import TopDownPoseDataset
    from .data.transforms import denormalize_image
    from .viz import draw_pose

    instances, info = _train_instances(cfg)
    ds = TopDownPoseDataset(instances, info, cfg.data, train=True, seed=cfg.train.seed)
    s = ds[index]
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


# ----------------------------------------------------------------------------- predictions


def _predict_people(model, cfg: Config, ds, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """{image_id: (N, K, 3) predicted keypoints in image pixels with scores} on `indices` of ds."""
    import torch

    from .engine.evaluate import predict_dataset

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
    from .data.coco import open_image
    from .data.dataset import TopDownPoseDataset
    from .viz import draw_pose

    first_cfg = next(iter(models.values()))[1]
    info = get_dataset_info(first_cfg.data.dataset)
    for label, (_, cfg) in models.items():
        if cfg.data.dataset != first_cfg.data.dataset:
            raise ValueError(
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
        raise ValueError(f"none of the image ids {image_ids} has a person instance in {ann_file}")
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
    fig.suptitle(title, fontsize=10)
    return fig


def _load_students(runs_by_label: Mapping[str, str | Path]) -> dict[str, tuple[Any, Config]]:
    from .engine.runs import load_run_model

    if not runs_by_label:
        raise ValueError("no runs to compare: pass {label: run directory}")
    return {label: load_run_model(d, student=True) for label, d in runs_by_label.items()}


def keypoint_comparison(
    runs_by_label: Mapping[str, str | Path],
    image_ids: Sequence[int] | None = None,
    n_images: int = 3,
    score_thr: float = 0.2,
) -> Figure:
    """The same SynthPose validation images: ground truth, then each run's deployed student.

    Each person is cropped from its ground-truth box (as in evaluation) and
    predicted with flip test; predicted keypoints with score <= `score_thr`
    are not drawn (DeepPose's scores are always 1).
    """
    from .data.prepare import resolve_data

    models = _load_students(runs_by_label)
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
    """`keypoint_comparison` on the real COCO val2017 photos of ../shared/data/coco_sample.

    The models learned on SynthPose only, so they are not expected to work well
    on real photos: the figure shows how far the synthetic benchmark transfers.
    Returns None (with a printed note) when the sample folder is absent.
    """
    coco_dir = Path(coco_dir) if coco_dir else COCO_SAMPLE_DIR
    models = _load_students(runs_by_label)
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


# ----------------------------------------------------------------------------- latency


def latency_ms(
    run_dir: str | Path, repeats: int = 20, warmup: int = 5, threads: int | None = 1
) -> float:
    """Median CPU milliseconds of one forward pass of a run's deployed student at batch 1.

    Measured on this machine now, with `threads` torch threads (None: leave
    the current setting), so report it with the machine beside it.
    """
    import torch

    from .engine.runs import load_run_model
    from .models.complexity import measure_latency_ms

    model, cfg = load_run_model(run_dir, student=True)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return measure_latency_ms(
            model.cpu(), cfg.data.input_size, batch_size=1, warmup=warmup, runs=repeats
        )
    finally:
        torch.set_num_threads(before)


def add_latency(summary: pd.DataFrame, repeats: int = 20, threads: int = 1) -> pd.DataFrame:
    """`summary` with a `latency_ms` column (first seed's student of each row)."""
    out = summary.copy()
    out["latency_ms"] = [latency_ms(dirs[0], repeats, threads=threads) for dirs in out["run_dirs"]]
    return out


# ----------------------------------------------------------------------------- notebook glue


class NotebookReport:
    """Where one notebook writes: `<reports_dir>/tables/NN_*.md|csv` and `figures/NN_*.png`.

    `table` and `figure` write the file, show it in the notebook and print
    where it went, so a notebook never writes a number it does not display.
    """

    def __init__(self, notebook: str, profile: str, reports_dir: str | Path | None = None):
        from .reproduce import report_dir

        self.notebook = notebook
        self.number = notebook[:2]
        self.profile = profile
        self.root = Path(reports_dir) if reports_dir else report_dir(profile)
        self.tables = self.root / "tables"
        self.figures = self.root / "figures"
        self.written: list[Path] = []

    def table(
        self,
        df: pd.DataFrame,
        name: str,
        title: str | None = None,
        digits: Mapping[str, int] | None = None,
    ) -> None:
        md, csv = write_table(
            df, self.tables / f"{self.number}_{name}", self.profile, self.notebook, title, digits
        )
        _show_frame(format_frame(df, digits))
        self.written += [md, csv]
        print(f"written: {md} (+ .csv, .meta.json)")

    def figure(self, fig: Figure | None, name: str, dpi: int = 110) -> None:
        if fig is None:
            return
        from .viz import save_figure

        path = save_figure(fig, self.figures / f"{self.number}_{name}.png", dpi=dpi)
        self.written.append(path)
        try:
            from IPython.display import Image, display

            display(Image(filename=str(path)))
        except ImportError:
            pass
        print(f"written: {path}")


def _show_frame(df: pd.DataFrame) -> None:
    try:
        from IPython.display import display

        display(df)
    except ImportError:
        print(df.to_string())
