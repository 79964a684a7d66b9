"""Provenance: where a table comes from (the profile, the command that rewrites it, the
commit and the date), and PROVENANCE.md of a whole reproduction (the command, machine,
commit and the time each step took). The one writer of both.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from ..cores import cpu_model, usable_cores
from ..engine.run_dir import command_line, git_commit, read_result
from ..grid.plan import Plan
from ..paths import REPO_ROOT
from ..profiles import NotebookProfile

PROVENANCE_NOTE = (
    "Every number here is written by code (ocdlib/report/) from the run directories; "
    "nothing is typed by hand."
)


def git_state() -> str:
    """Short commit of the checkout, marked when the code (ocdlib/, notebooks/) has local edits."""
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


def provenance(
    profile: NotebookProfile, notebook: str, not_trained: Mapping[str, list[int]] | None = None
) -> dict[str, str]:
    """Where a table comes from: profile, the command that rewrites it, commit and date,
    and the rows left out of it for want of runs (`not_trained`: {label: seeds})."""
    number = notebook[:2]
    return {
        "profile": profile.name,
        "command": f"python -m ocdlib reproduce --profile {profile.name} --only {number}",
        "notebook": f"notebooks/{notebook}.ipynb",
        "git_commit": git_state(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "note": PROVENANCE_NOTE,
        **({"not_trained": not_trained_line(not_trained)} if not_trained else {}),
    }


def not_trained_line(not_trained: Mapping[str, list[int]]) -> str:
    """The rows left out of a notebook's tables for want of runs, with their seeds."""
    rows = "; ".join(
        f"{label} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"
        for label, seeds in not_trained.items()
    )
    return f"not trained yet, so left out of this notebook's tables and figures: {rows}"


def provenance_markdown(prov: Mapping[str, str]) -> str:
    return (
        f"<!-- written by {prov['notebook']}; do not edit, rerun the command below -->\n"
        f"- profile: `{prov['profile']}`\n"
        f"- command: `{prov['command']}` ({prov['notebook']})\n"
        f"- git commit: {prov['git_commit']}\n"
        f"- date: {prov['date']}\n"
        f"- {prov['note']}\n"
        + (f"- **{prov['not_trained']}**\n" if prov.get("not_trained") else "")
    )


def provenance_name(only: list[str] | None) -> str:
    """PROVENANCE.md for a whole reproduction; a partial one (--only) writes its own file
    beside it, so that the record of the whole one stays."""
    return f"PROVENANCE-only-{'-'.join(only)}.md" if only else "PROVENANCE.md"


def write_provenance(
    out_dir: Path,
    plan: Plan,
    timings,
    total: float,
    partial: bool,
    pending=(),
    extra=(),
    name: str = "PROVENANCE.md",
) -> None:
    try:
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        threads = torch.get_num_threads()
    except Exception:  # provenance must never fail a reproduction
        device, threads = "unknown", 0
    cpu = cpu_model()
    left_out = [
        f"notebook {nb} left out for want of runs: {not_trained_line(rows).split(': ', 1)[1]}"
        for nb, rows in plan.not_trained.items()
        if rows
    ]
    lines = [
        f"# Reproduction provenance ({plan.profile} profile)",
        "",
        f"- command: `{plan.command or command_line()}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- git commit: {git_commit()}",
        f"- machine: {cpu}, {_cores()}, torch threads {threads}, device {device}",
        f"- python: {platform.python_version()}",
        f"- total wall time: {total / 60:.1f} min" + (" (partial: --only)" if partial else ""),
        *([f"- not run yet (interrupted or running): {', '.join(pending)}"] if pending else []),
        "- runs found in the run cache are reused, so this time counts only the training done by"
        " this command; each run's own training time is in results.csv (train_time_min)",
        f"- {grid_training_time(plan)}",
        *[f"- {line}" for line in [*extra, *left_out]],
        "",
        "| step | wall time (min) |",
        "|---|---|",
        *[f"| {name} | {dt / 60:.1f} |" for name, dt in timings],
        "",
    ]
    (out_dir / name).write_text("\n".join(lines))


def grid_training_time(plan: Plan) -> str:
    """One line: how many runs of the plan's grid are finished and how long their
    training loops took in all, from the runs' own records (the cost of a reproduction
    from an empty run cache, less evaluation and notebook overhead)."""
    try:
        results = [read_result(Path(r.folder)) for r in plan.runs]
        done = [r for r in results if r is not None]
        seconds = sum(float(r.get("train_time_s") or 0.0) for r in done)
    except Exception as e:  # provenance must never fail a reproduction
        return f"training time of the grid: unknown ({type(e).__name__}: {e})"
    return (
        f"training time of the grid's runs, from their own records: {seconds / 60:.0f} min "
        f"for {len(done)} of the {len(plan.runs)} runs of the grid (the training loops only; "
        "evaluation and notebook overhead come on top)"
    )


def _cores() -> str:
    usable, total = usable_cores(), os.cpu_count() or 0
    return f"{usable} cores" if usable == total else f"{usable} usable cores (of {total})"
