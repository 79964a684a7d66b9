"""The claims of the experiment grid judged against the numbers: comparisons with the
margin rule, a sentence per comparison, the benchmark's own checks, the calibration
floors, the target and the ablation.

The claims themselves (which row beats which, by how much) are defined in
`ocdlib.grid.claims`; here they meet a summary frame (`ocdlib.report.tables.summary_frame`).
A claim whose rows are not in the summary raises with their names: it never passes,
and never silently drops out of a table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from ..errors import UnknownNameError
from ..profiles import NotebookProfile
from .catalogue import gathered_rows
from .claims import TARGET, Comparison, Floor, Target, comparisons_among
from .row import Experiment

Row = Experiment | str  # a row of the grid, or its label


def row_label(row: Row) -> str:
    return row.label if isinstance(row, Experiment) else row


def indexed_rows(summary: pd.DataFrame, *rows: Row, what: str) -> pd.DataFrame:
    """`summary` indexed by label; raises naming the rows it lacks (a claim never
    passes, or silently vanishes, because its rows did not run)."""
    by_label = summary.set_index("label")
    missing = [row_label(r) for r in rows if row_label(r) not in by_label.index]
    if missing:
        raise UnknownNameError(
            f"{what} needs the rows {missing}, which are not in the results "
            f"(rows: {list(by_label.index)}); gather them first"
        )
    return by_label


def comparisons(
    summary: pd.DataFrame, claims: Sequence[Comparison], metric: str = "AP"
) -> pd.DataFrame:
    """One row per comparison, with the margin rule. (`claims.comparisons_among(rows,
    profile)` lists what a notebook can claim; a comparison whose rows are missing raises.)

    spread = the larger of the two sample standard deviations over seeds; the
    margin "exceeds twice the spread" when |delta| > 2 * spread. With one seed
    on either side there is no spread and the rule is not applied (None). The
    verdict column (`verdict`) says which way a separated margin points, so that a
    separated loss never reads as a claim upheld.
    """
    rows = []
    for c in claims:
        by_label = indexed_rows(summary, *c.rows, what=f"comparison {c.name!r}")
        cand, base = by_label.loc[c.candidate.label], by_label.loc[c.baseline.label]
        delta = cand[metric] - base[metric]
        n = int(min(cand["n_seeds"], base["n_seeds"]))
        spread = max(cand[f"{metric}_std"], base[f"{metric}_std"]) if n > 1 else math.nan
        exceeds = None if math.isnan(spread) or math.isnan(delta) else bool(abs(delta) > 2 * spread)
        rows.append(
            {
                "comparison": c.name,
                "candidate": c.candidate.label,
                "baseline": c.baseline.label,
                f"{metric} candidate": cand[metric],
                f"{metric} baseline": base[metric],
                f"delta {metric}": delta,
                "spread": spread,
                "n_seeds": n,
                "margin > 2x spread": exceeds,
                "verdict": verdict(delta, exceeds),
                "claim": c.claim,
            }
        )
    columns = [
        "comparison", "candidate", "baseline", f"{metric} candidate", f"{metric} baseline",
        f"delta {metric}", "spread", "n_seeds", "margin > 2x spread", "verdict", "claim",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def verdict(delta: float, separated: Any) -> str:
    """The margin rule's answer for a candidate against its baseline: "better" or
    "worse" when the margin exceeds twice the spread, "not separated" when it does not,
    "one seed" when there is no spread. `separated` may come from a frame (True,
    False, None) or from its CSV ("True", "False", empty)."""
    if isinstance(separated, str):
        separated = {"True": True, "False": False}.get(separated)
    if pd.isna(separated):  # None, or an empty CSV cell
        return "one seed"
    if not separated:
        return "not separated"
    return "better" if delta > 0 else "worse"


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
    summary: pd.DataFrame,
    claims: Sequence[Comparison],
    ceiling: float = 90.0,
    min_gap: float = 1.0,
) -> pd.DataFrame:
    """The benchmark's own checks: each check comparison among `claims` (the heatmap
    baseline beats DeepPose clearly: by at least `min_gap` AP, and by more than twice
    the seed spread where there are seeds); no method saturates."""
    rows = []
    checks = [c for c in claims if c.check]
    for c, (_, r) in zip(checks, comparisons(summary, checks).iterrows()):
        separated = r["margin > 2x spread"]
        passed = bool(r["delta AP"] >= min_gap and separated is not False)
        detail = f"{_signed(r['delta AP'])} AP" + (
            f", spread {r['spread']:.1f}" if separated is not None else ", one seed"
        )
        where = " (whole-body)" if c.candidate.wholebody else ""
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


def floor_checks(summary: pd.DataFrame, floors: Sequence[Floor]) -> pd.DataFrame:
    """The profile's calibration targets (`claims.floors_among(rows)`): each baseline at
    least its floor (mean over seeds). A row that did not run raises."""
    by_label = indexed_rows(summary, *(f.row for f in floors), what="the calibration floors")
    rows = []
    for f in floors:
        value = float(by_label.loc[f.row.label, f.metric])
        rows.append(
            {
                "check": f"{f.row.label}: {f.metric} at least {f.value:g}",
                "value": f"{value:.1f}",
                "passed": bool(value >= f.value),
            }
        )
    return pd.DataFrame(rows, columns=["check", "value", "passed"])


def target_checks(summary: pd.DataFrame, target: Target = TARGET) -> pd.DataFrame:
    """Whether the target's candidate beats its baseline by at least `min_gain` AP, with a
    margin above twice the seed spread (two seeds or more), and a deployed student of
    exactly the baseline's parameter count."""
    candidate, baseline = target.candidate.label, target.baseline.label
    missing = [x for x in (candidate, baseline) if x not in set(summary["label"])]
    if missing:  # a reproduction that did not train them (a time box, --no-train)
        return pd.DataFrame(
            [{"target": f"{candidate} above {baseline}", "passed": None,
              "value": f"not judged: {', '.join(missing)} not trained"}],
            columns=["target", "value", "passed"],
        )  # fmt: skip
    by_label = indexed_rows(summary, target.candidate, target.baseline, what="the target")
    claim = Comparison("target", target.candidate, target.baseline, "")
    comp = comparisons(summary, [claim]).iloc[0]
    delta, spread, n = comp["delta AP"], comp["spread"], comp["n_seeds"]
    cand_params, base_params = (int(by_label.loc[x, "params"]) for x in (candidate, baseline))
    rows = [
        {
            "target": f"{candidate} above {baseline} by at least {target.min_gain:g} AP",
            "value": f"{_signed(delta)} AP",
            "passed": bool(delta >= target.min_gain),
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
    return pd.DataFrame(rows, columns=["target", "value", "passed"])


def ablation_frame(
    summary: pd.DataFrame,
    full: Row = TARGET.candidate,
    baseline: Row = TARGET.baseline,
    group: str = "ablation",
) -> pd.DataFrame:
    """Which term or setting matters: every `group` row beside the full method and
    the baseline, with its AP gain over the baseline and its AP change from the
    full method (negative: the row lost accuracy by dropping or changing something)."""
    full, baseline = row_label(full), row_label(baseline)
    columns = ["label", "n_seeds", "AP", "AP_std", f"delta AP vs {baseline}", f"delta AP vs {full}"]
    if not {full, baseline} <= set(summary["label"]):  # not trained (a time box, --no-train):
        return pd.DataFrame([], columns=columns)  # no ablation to show; the tables name them
    by_label = indexed_rows(summary, full, baseline, what="the ablation")
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


def budget_gains(summary: pd.DataFrame, budgets, metric: str = "AP") -> pd.DataFrame:
    """OCD's gain over DeepPose at each budget (`claims.BUDGETS`: (k, candidate,
    baseline) rows), with the crops each run saw and the margin rule's spread; budgets
    whose rows are not in `summary` are left out."""
    present = set(summary["label"])
    claims = [
        Comparison(f"{k}x", cand, base, "")
        for k, cand, base in budgets
        if cand.label in present and base.label in present
    ]
    table = comparisons(summary, claims, metric)
    table.insert(0, "budget", [int(c.name[:-1]) for c in claims])
    return table.drop(columns=["comparison", "claim"])


def claims_table(
    summary: pd.DataFrame, results: Iterable[Mapping[str, Any]], profile: NotebookProfile
) -> pd.DataFrame:
    """A notebook's comparisons: those between the rows it gathered a run of (`results`;
    with `reproduce --no-train`, the rows trained so far), judged against `summary`."""
    return comparisons(summary, comparisons_among(gathered_rows(results), profile))
