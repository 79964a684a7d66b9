"""The README's generated block: the headline results, taken from reports/ by code.

`python -m ocdlib readme` rewrites the part of README.md between the two markers
below from reports/results.csv, reports/tables/06_comparisons.csv and
reports/PROVENANCE.md (what `make reproduce` wrote); `--check` exits non-zero when
the block differs from what the reports give, so a README that disagrees with the
reports fails the tests.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from ..configs.presets import CPU_PRETRAINED_WEIGHTS
from ..errors import ConfigError
from ..grid import judge
from ..grid.claims import PAPER_AP
from ..paths import REPO_ROOT

# make reproduce's grid starts from a backbone the kit pre-trained (the paper's regime in
# miniature); the same grid with every model from scratch (profile cpu_scratch) reports here.
SCRATCH_FOLDER = "cpu_scratch"

BEGIN = "<!-- results:begin (written by `python -m ocdlib readme` from reports/; do not edit) -->"
END = "<!-- results:end -->"


def _mean_sd(mean: float, sd: float) -> str:
    if isinstance(sd, float) and not math.isnan(sd):
        return f"{mean:.1f} ± {sd:.1f}"
    return f"{mean:.1f}"


def _provenance(text: str) -> dict[str, str]:
    """The lines `- key: value` of a PROVENANCE.md."""
    return {k: v.strip("`") for k, v in re.findall(r"^- ([^:\n]+): (.+)$", text, re.M)}


def _rows_table(results: pd.DataFrame) -> list[str]:
    """A results.csv's rows: AP as mean ± sd over seeds, AP50, size and training time."""
    lines = ["| row | seeds | AP | AP50 | params | train min |", "|---|---|---:|---:|---:|---:|"]
    for _, r in results.iterrows():
        lines.append(
            f"| {r['label']} | {r['seeds']} | {_mean_sd(r['AP'], r.get('AP_std'))} | "
            f"{r['AP50']:.1f} | {int(r['params']):,} | {r['train_time_min']:.1f} |"
        )
    return lines


def _machine_lines(reports: Path) -> list[str]:
    """What `make reproduce` took from an empty run cache on each machine a committed
    PROVENANCE.md records (partial and time-boxed reproductions left out)."""
    rows = []
    for path in sorted(reports.glob("**/PROVENANCE.md")):
        prov = _provenance(path.read_text())
        full = prov.get("command") == "python -m ocdlib reproduce --profile cpu"
        cache = prov.get("run cache at the start", "")
        if full and "(empty: every run trained by this command)" in cache:
            estimated = prov.get("estimated before the first run", "not recorded")
            rows.append(
                f"| {prov.get('machine', '?')} | {prov.get('total wall time', '?')} | "
                f"{estimated.split(' for ')[0]} | `{path.relative_to(reports.parent).as_posix()}` |"
            )
    if not rows:
        return []
    return [
        "",
        "`make reproduce` from an empty run cache, by machine (any other prints its own "
        "estimate before the first run):",
        "",
        "| machine | wall time | estimated before the first run | record |",
        "|---|---|---|---|",
        *rows,
    ]


def _timing_lines(prov: dict[str, str]) -> list[str]:
    """What the reproduction expected before it started, and the rows a time box left out."""
    lines = []
    if "estimated before the first run" in prov:
        lines += ["", f"Estimated before its first run: {prov['estimated before the first run']}."]
    if "not trained in the time box" in prov:
        lines += [
            "",
            f"**A time-boxed reproduction ({prov.get('time box', '?')}): these runs were not "
            f"trained and their rows are missing or short of seeds below: "
            f"{prov['not trained in the time box']}.**",
        ]
    return lines


def results_block(reports: Path) -> str:
    """The block: where the numbers come from, the rows, the claims under the margin rule."""
    results = pd.read_csv(reports / "results.csv")
    comparisons = pd.read_csv(reports / "tables" / "06_comparisons.csv")
    prov = _provenance((reports / "PROVENANCE.md").read_text())
    lines = [
        BEGIN,
        "",
        f"From `reports/results.csv`, written by `{prov.get('command', '?')}` at commit "
        f"{prov.get('git commit', '?')} on {prov.get('date', '?')} "
        f"({prov.get('machine', '?')}; {prov.get('total wall time', '?')} in all). "
        "COCO AP x 100 on SynthPose's validation set, mean ± sample sd over seeds; "
        "the deployed model's parameters; minutes of training per run.",
        *_timing_lines(prov),
        *_machine_lines(reports),
        "",
        *_rows_table(results),
    ]
    lines += [
        "",
        "The claims, judged by the margin rule (a difference counts when it exceeds twice "
        "the larger seed spread of the two rows):",
        "",
        "| comparison | delta AP | spread | verdict | claim |",
        "|---|---:|---:|---|---|",
    ]
    for _, r in comparisons.iterrows():
        verdict = judge.verdict(r["delta AP"], r["margin > 2x spread"])
        spread = "" if pd.isna(r["spread"]) else f"{r['spread']:.1f}"
        lines.append(
            f"| {r['comparison']} | {r['delta AP']:+.1f} | {spread} | {verdict} | {r['claim']} |"
        )
    lines += _regimes_lines(reports, results)
    lines += _gpu_synth_lines(reports / "gpu_synth")
    lines += ["", END]
    return "\n".join(lines)


def _verdicts(comparisons: pd.DataFrame) -> dict[str, str]:
    out = {}
    for _, r in comparisons.iterrows():
        verdict = judge.verdict(r["delta AP"], r["margin > 2x spread"])
        out[r["comparison"]] = f"{r['delta AP']:+.1f} ({verdict})"
    return out


def _regimes_lines(reports: Path, pretrained: pd.DataFrame) -> list[str]:
    """The two regimes side by side with the paper's numbers, once the from-scratch
    regime's reports exist: every row's AP from scratch and from pre-trained weights,
    DeepPose's ratio to SimpleBaseline in each, and each claim's verdict in each."""
    folder = reports / SCRATCH_FOLDER
    if not (folder / "results.csv").is_file():
        return []
    scratch = pd.read_csv(folder / "results.csv").set_index("label")
    prov_file = folder / "PROVENANCE.md"
    prov = _provenance(prov_file.read_text()) if prov_file.is_file() else {}
    lines = [
        "",
        "**Both regimes, beside the paper's.** From a backbone the kit pre-trained itself "
        f"(above; `model.pretrained={CPU_PRETRAINED_WEIGHTS}`: no natural image, no keypoint; "
        "docs/CALIBRATION.md) and with every model from scratch, from "
        f"`reports/{SCRATCH_FOLDER}/results.csv`, written by "
        f"`{prov.get('command', '?')}` at commit {prov.get('git commit', '?')} "
        f"({prov.get('machine', '?')}). The paper's column is COCO val2017 with ImageNet "
        "ResNet-50s (docs/METHOD.md).",
        *_timing_lines(prov),
        "",
        "| row | from scratch: seeds, AP | pre-trained: seeds, AP | paper, COCO AP |",
        "|---|---|---|---:|",
    ]
    pre = pretrained.set_index("label")
    labels = list(dict.fromkeys([*scratch.index, *pre.index]))
    for label in labels:
        cells = []
        for frame in (scratch, pre):
            if label in frame.index:
                r = frame.loc[label]
                cells.append(f"{r['seeds']}: {_mean_sd(r['AP'], r.get('AP_std'))}")
            else:
                cells.append("not trained")
        paper = PAPER_AP.get(label)
        paper_cell = f"{paper[0]:.1f} ({paper[1]})" if paper else ""
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {paper_cell} |")
    dp, sb = PAPER_AP.get("DeepPose"), PAPER_AP.get("SimpleBaseline (heatmap)")
    ratios = []
    for frame in (scratch, pre):
        if {"DeepPose", "SimpleBaseline (heatmap)"} <= set(frame.index):
            ratios.append(
                f"{frame.loc['DeepPose', 'AP'] / frame.loc['SimpleBaseline (heatmap)', 'AP']:.2f}"
            )
        else:
            ratios.append("-")
    paper_ratio = f"{dp[0] / sb[0]:.2f}" if dp and sb else ""
    lines.append(f"| DeepPose / SimpleBaseline | {ratios[0]} | {ratios[1]} | {paper_ratio} |")
    comparisons = folder / "tables" / "06_comparisons.csv"
    if comparisons.is_file():
        before = _verdicts(pd.read_csv(comparisons))
        after = _verdicts(pd.read_csv(reports / "tables" / "06_comparisons.csv"))
        lines += [
            "",
            "| comparison | from scratch: delta AP | pre-trained: delta AP |",
            "|---|---:|---:|",
        ]
        for name in dict.fromkeys([*before, *after]):
            lines.append(f"| {name} | {before.get(name, '-')} | {after.get(name, '-')} |")
    return lines


def _gpu_synth_lines(folder: Path) -> list[str]:
    """The gpu_synth table, once its reports exist (records brought back from GPU
    allocations and rebuilt with `reproduce --profile gpu_synth --no-train`)."""
    if not (folder / "results.csv").is_file():
        return []
    results = pd.read_csv(folder / "results.csv")
    prov_file = folder / "PROVENANCE.md"
    prov = _provenance(prov_file.read_text()) if prov_file.is_file() else {}
    lines = [
        "",
        "**gpu_synth**: SynthPose generated at COCO's crop size (256x192) with ResNet-50 "
        "trained from scratch on one GPU; SynthPose numbers, not COCO's. From "
        f"`reports/gpu_synth/results.csv`, rebuilt by `{prov.get('command', '?')}` at commit "
        f"{prov.get('git commit', '?')} from the runs' records (`reports/gpu_synth/runs/`).",
        *_timing_lines(prov),
        "",
        *_rows_table(results),
    ]
    return lines


def rewrite(readme: Path, reports: Path) -> bool:
    """Put the block into `readme` between the markers; True when the file changed."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise ConfigError(f"{readme} has no results block: add the lines {BEGIN} and {END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + results_block(reports) + tail
    if new != text:
        readme.write_text(new)
    return new != text


def is_current(readme: Path, reports: Path) -> bool:
    text = readme.read_text()
    return BEGIN in text and results_block(reports) in text


def main(check: bool = False, readme: Path | None = None, reports: Path | None = None) -> int:
    readme = readme or REPO_ROOT / "README.md"
    reports = reports or REPO_ROOT / "reports"
    if check:
        if is_current(readme, reports):
            return 0
        print(f"{readme}: the results block disagrees with {reports}; run python -m ocdlib readme")
        return 1
    changed = rewrite(readme, reports)
    print(f"{readme}: results block {'rewritten' if changed else 'already current'}")
    return 0
