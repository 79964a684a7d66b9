"""PROVENANCE.md of a reproduction: the command, machine, commit and the time each step took."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from ..cores import cpu_model, usable_cores
from ..engine.runs import command_line, git_commit, read_result
from ..experiments import grid_configs
from ..run_cache import run_dir


def provenance_name(only: list[str] | None) -> str:
    """PROVENANCE.md for a whole reproduction; a partial one (--only) writes its own file
    beside it, so that the record of the whole one stays."""
    return f"PROVENANCE-only-{'-'.join(only)}.md" if only else "PROVENANCE.md"


def write_provenance(
    out_dir: Path,
    profile: str,
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
    lines = [
        f"# Reproduction provenance ({profile} profile)",
        "",
        f"- command: `{command_line()}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- git commit: {git_commit()}",
        f"- machine: {cpu}, {_cores()}, torch threads {threads}, device {device}",
        f"- python: {platform.python_version()}",
        f"- total wall time: {total / 60:.1f} min" + (" (partial: --only)" if partial else ""),
        *([f"- not run yet (interrupted or running): {', '.join(pending)}"] if pending else []),
        "- runs found in the run cache are reused, so this time counts only the training done by"
        " this command; each run's own training time is in results.csv (train_time_min)",
        f"- {grid_training_time(profile)}",
        *[f"- {line}" for line in extra],
        "",
        "| step | wall time (min) |",
        "|---|---|",
        *[f"| {name} | {dt / 60:.1f} |" for name, dt in timings],
        "",
    ]
    (out_dir / name).write_text("\n".join(lines))


def grid_training_time(profile: str) -> str:
    """One line: how many runs of the profile's grid (the runs `reproduce` trains) are
    finished and how long their training loops took in all, from the runs' own records
    (the cost of a reproduction from an empty run cache, less evaluation and notebook
    overhead)."""
    try:
        grid = grid_configs(profile)
        results = [read_result(run_dir(cfg)) for _, cfg in grid]
        done = [r for r in results if r is not None]
        seconds = sum(float(r.get("train_time_s") or 0.0) for r in done)
    except Exception as e:  # provenance must never fail a reproduction
        return f"training time of the grid: unknown ({type(e).__name__}: {e})"
    return (
        f"training time of the grid's runs, from their own records: {seconds / 60:.0f} min "
        f"for {len(done)} of the {len(grid)} runs of the grid (the training loops only; "
        "evaluation and notebook overhead come on top)"
    )


def _cores() -> str:
    usable, total = usable_cores(), os.cpu_count() or 0
    return f"{usable} cores" if usable == total else f"{usable} usable cores (of {total})"
