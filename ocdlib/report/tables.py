"""From run records to tables: frames, and markdown/CSV tables with a provenance header.

The notebooks stay thin: they ask `ocdlib.grid.gather` for the results of their rows,
then call the functions below to turn them into frames and tables (claims judged:
`ocdlib.grid.judge`; provenance: `ocdlib.report.provenance`; figures:
`ocdlib.report.figures`; the folder a notebook writes to: `ocdlib.report.notebook`).
Nothing in `reports/` is typed by hand: every number and every sentence about a number
is produced from the run directories.

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..configs import Config
from ..engine.evaluate import head_metrics
from ..engine.precision import tag_of_record
from ..engine.run_dir import RunDir, load_run_config, read_result, student_latency_ms
from ..errors import MissingFileError
from ..grid.claims import TARGET, comparisons_among, floors_among
from ..grid.judge import (
    Row,
    ablation_frame,
    ablation_sentences,
    comparison_sentence,
    comparisons,
    floor_checks,
    indexed_rows,
    row_label,
    sanity_checks,
    target_checks,
)
from ..grid.row import Experiment
from ..models.pose_model import HEAD_NAMES
from ..paths import REPO_ROOT
from ..profiles import NotebookProfile
from .provenance import provenance, provenance_markdown

METRICS = ("AP", "AP50", "AP75", "AR")
PART_METRICS = ("body/AP", "foot/AP", "face/AP", "hand/AP", "wholebody/AP")
# Decimal places of the markdown tables, per column; other floats get DEFAULT_DIGITS.
DIGITS = {"GMACs": 3, "train_time_min": 2, "latency_ms": 2, "images_per_s": 1}
DEFAULT_DIGITS = 1


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
        wholebody = exp.wholebody
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
                # The same config trains to different numbers in bf16 and in fp32.
                "precision": tag_of_record(r),
                "config_hash": r.get("config_hash", cfg.hash),
                "git_commit": r.get("git_commit", "unknown"),
                "run_dir": str(r.get("run_dir", "")),
            }
        )
        rows.append(row)
    columns = [
        "notebook", "group", "label", "method", "dataset", "backbone", "head", "seed",
        *METRICS, *PART_METRICS,
        "params", "GMACs", "train_time_min", "images_per_s", "precision", "config_hash",
        "git_commit", "run_dir",
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
        row["precision"] = _joined(g["precision"])
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
    cols += ["params", "GMACs", *extra, "train_time_min", "precision", "config_hashes"]
    cols += ["git_commits"]
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


def _folders_from_the_repository(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with its run folders (`run_dir`) named from the repository's root where they lie
    in it (runs/..., reports/runs/...), so that a committed table names folders a clone has
    or can make, not the folders of the machine that wrote it."""
    if "run_dir" not in df.columns:
        return df

    def shown(path: Any) -> Any:
        if not isinstance(path, (str, Path)) or not str(path):
            return path
        try:
            return str(Path(path).resolve().relative_to(REPO_ROOT))
        except ValueError:  # outside the repository
            return path

    return df.assign(run_dir=[shown(p) for p in df["run_dir"]])


def write_table(
    df: pd.DataFrame,
    path_stem: str | Path,
    profile: NotebookProfile,
    notebook: str,
    title: str | None = None,
    digits: Mapping[str, int] | None = None,
    not_trained: Mapping[str, list[int]] | None = None,
) -> tuple[Path, Path]:
    """Write `<stem>.md` (provenance header, then the table), `<stem>.csv` and `<stem>.meta.json`.
    `not_trained`: the rows the notebook left out for want of runs, named in the header.

    The CSV keeps full precision for further analysis; its provenance lives in
    the `.meta.json` sidecar so the CSV stays loadable by any reader.
    """
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    prov = provenance(profile, notebook, not_trained)
    md = stem.with_suffix(".md")
    heading = f"# {title}\n\n" if title else ""
    df = _folders_from_the_repository(df)
    md.write_text(heading + provenance_markdown(prov) + "\n" + markdown_table(df, digits))
    csv = stem.with_suffix(".csv")
    df.to_csv(csv, index=False)
    meta = {**prov, "table": csv.name, "title": title or stem.name}
    stem.with_suffix(".meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return md, csv


def aux_head_frame(
    summary: pd.DataFrame, head: str = "hm", metrics: Sequence[str] = ("AP",)
) -> pd.DataFrame:
    """Every run whose model trains `head` beside a different deployed head (OCD and its
    ablation): the deployed student's `metrics` next to the same metrics of that head,
    scored on the same validation set. It shows what the distillation costs the teacher
    that the student learns from. (Scores are computed once per run and kept in
    `<run>/eval_<head>/`.) Whole-body runs can ask for a part, e.g. "body/AP"."""
    columns = [f"student {m}" for m in metrics] + [f"{head} head {m}" for m in metrics]
    rows = []
    for _, r in summary.iterrows():
        for run_dir in r["run_dirs"]:
            model = load_run_config(run_dir).model
            if head not in model.heads or model.deploy_head == head:
                continue
            result = read_result(run_dir)
            try:
                scored = head_metrics(run_dir, head)
            except MissingFileError:  # a run record that kept no scores of this head
                print(f"{run_dir}: no weights and no kept scores of its {head} head: left empty")
                scored = dict.fromkeys(metrics, math.nan)
            student = result["metrics"]
            values = [100 * student[m] for m in metrics] + [100 * scored[m] for m in metrics]
            rows.append([r["label"], int(result["seed"]), *values, str(run_dir)])
    return pd.DataFrame(rows, columns=["label", "seed", *columns, "run_dir"])


def same_deployed_size(summary: pd.DataFrame, row: Row, reference: Row) -> bool:
    """Whether the deployed students of two rows have exactly the same parameter count."""
    by_label = indexed_rows(summary, row, reference, what="the size check")
    return int(by_label.loc[row_label(row), "params"]) == int(
        by_label.loc[row_label(reference), "params"]
    )


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
    summary: pd.DataFrame,
    rows: Sequence[Experiment],
    profile: NotebookProfile,
    not_trained: Mapping[str, list[int]] | None = None,
) -> str:
    """The whole of reports/results.md for the grid `rows` (gathered into `summary`):
    provenance, results, comparisons in words, benchmark checks, calibration floors, and
    the target and the ablation where their rows are among `rows`. Rows without a run
    (a time box, --no-train) are left out of the claims; the provenance names them."""
    rows = [r for r in rows if r.label in set(summary["label"])]
    claims = comparisons_among(rows, profile)
    comps = comparisons(summary, claims)
    prov = provenance(profile, "06_results", not_trained)
    lines = [
        f"# Results ({profile.name} profile)",
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
        markdown_table(sanity_checks(summary, claims)),
        "## The baselines against the profile's calibration targets",
        "",
        markdown_table(floor_checks(summary, floors_among(rows))),
    ]
    if {TARGET.candidate, TARGET.baseline} <= set(rows):
        ablation = ablation_frame(summary)
        lines += [
            "## The target",
            "",
            markdown_table(target_checks(summary)),
            "## Which term matters (the OCD ablation)",
            "",
            markdown_table(ablation),
            *[f"- {s}" for s in ablation_sentences(ablation)],
            "",
        ]
    return "\n".join(lines)


def write_results(
    summary: pd.DataFrame,
    rows: Sequence[Experiment],
    reports_dir: str | Path,
    profile: NotebookProfile,
    not_trained: Mapping[str, list[int]] | None = None,
) -> tuple[Path, Path]:
    """`<reports_dir>/results.md` (all sections) and `results.csv` (+ `results.meta.json`);
    `not_trained`: the rows left out for want of runs, named in the provenance."""
    root = Path(reports_dir)
    root.mkdir(parents=True, exist_ok=True)
    md = root / "results.md"
    md.write_text(results_markdown(summary, rows, profile, not_trained))
    csv = root / "results.csv"
    display_frame(summary).to_csv(csv, index=False)
    prov = provenance(profile, "06_results", not_trained)
    meta = {**prov, "table": csv.name, "title": "results"}
    (root / "results.meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return md, csv


def first_runs(summary: pd.DataFrame, rows: Sequence[Row] | None = None) -> dict[str, str]:
    """{label: run directory of its first seed}, for curves and pictures (all rows by default).

    Rows not trained yet (a time-boxed reproduction, `--no-train`) are left out; the
    results table names them. A row name that is no row at all is an error."""
    by_label = dict(zip(summary["label"], summary["run_dirs"]))
    labels = [row_label(r) for r in rows] if rows else list(by_label)
    if not any(label in by_label for label in labels):
        indexed_rows(summary, *(rows or ()), what="the figure")  # says which are missing
    return {label: by_label[label][0] for label in labels if label in by_label}


def learning_curve_frame(summary: pd.DataFrame, rows: Sequence[Row] | None = None) -> pd.DataFrame:
    """AP against training crops seen, from the evaluations each run made while it trained
    (`train.eval_every`) and its final one: one row per run and evaluation. `hm_AP`: the AP
    of the heatmap head trained beside a deployed regression head (OCD), where scored."""
    labels = None if rows is None else {row_label(r) for r in rows}
    out = []
    for _, row in summary.iterrows():
        if labels is not None and row["label"] not in labels:
            continue
        for run in row["run_dirs"]:
            cfg = load_run_config(run)
            evals = json.loads(RunDir(Path(run)).evals.read_text())
            for e in evals:
                out.append(
                    {
                        "label": row["label"],
                        "seed": cfg.train.seed,
                        "epoch": e["epoch"],
                        "crops_seen": int(e["step"]) * cfg.train.batch_size,
                        "AP": _metric(e, "AP"),
                        "AP50": _metric(e, "AP50"),
                        "hm_AP": _metric(e["hm"], "AP") if "hm" in e else float("nan"),
                    }
                )
    columns = ["label", "seed", "epoch", "crops_seen", "AP", "AP50", "hm_AP"]
    return pd.DataFrame(out, columns=columns)


# ----------------------------------------------------------------------------- latency


def add_latency(summary: pd.DataFrame, repeats: int = 20, threads: int = 1) -> pd.DataFrame:
    """`summary` with a `latency_ms` column: the first seed's student of each row, on this
    machine (a row read from a run record is timed on its architecture, which the record's
    config rebuilds; empty where it cannot, naming the run)."""
    out = summary.copy()
    out["latency_ms"] = [_latency_or_nan(dirs[0], repeats, threads) for dirs in out["run_dirs"]]
    return out


def _latency_or_nan(run_dir: Path, repeats: int, threads: int) -> float:
    try:
        return student_latency_ms(run_dir, repeats, threads=threads)
    except MissingFileError as err:  # a record of a from_file run keeps no layout
        print(f"{run_dir}: latency left empty ({err})")
        return math.nan


# ----------------------------------------------------------------------------- notebook glue
