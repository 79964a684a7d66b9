"""A reproduction that fits a time limit: for a short GPU allocation (a spot instance, a
cluster job's time limit) that must bring back finished results, not half-trained runs.

`reproduce_within(profile, minutes, out)` plans the grid's missing runs (ocdlib/grid/plan.py:
the key rows first) and has the executor (ocdlib/reproduce/executor.py) train as many as
fit the minutes, `jobs` side by side (on one GPU several runs at once can raise the total
images/s). Each run that finishes is written to OUT/runs/ as a record
(ocdlib/runs/records.py: config, result, evaluations, log; no weights), with a picture of
its keypoints drawn where its weights are, and everything is packed into
OUT/records.tar.gz beside OUT/timebox.md.

On a machine without a GPU, unpack the archive into reports/<profile>/ and
`python -m ocdlib reproduce --profile <profile> --no-train` rebuilds the reports from
the records (docs/GPU.md).
"""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path

from ..engine.run_dir import RunDir, git_commit
from ..grid.plan import Plan, build_plan
from ..profiles import NotebookProfile
from .executor import Execution, execute
from .progress import Progress


def reproduce_within(
    profile: NotebookProfile,
    minutes: float,
    out: Path | None = None,
    jobs: int = 1,
    pictures: bool = True,
    say=print,
    clock=time.time,
    progress: Progress | None = None,
    plan: Plan | None = None,
) -> dict:
    """Train the missing runs of `profile`'s grid that fit in `minutes`, key rows first,
    and, with `out`, write their records there (see the module's docstring). Returns the
    summary that OUT/timebox.json holds.

    `plan`: the command's plan (`reproduce --minutes`: its notebooks' grid, the runs'
    estimates); by default the whole grid's, records standing in for runs."""
    if plan is None:
        command = f"python -m ocdlib reproduce --profile {profile.name} --minutes {minutes:g}"
        plan = build_plan(profile, None, command, True, minutes, jobs, use_records=True)
    missing = f"{len(plan.to_train())} runs of the {profile.name} grid missing"
    say(f"{missing}; {minutes:.1f} min from now", flush=True)
    records = Path(out) / "runs" if out is not None else None
    ex = execute(plan, records, say=say, clock=clock, progress=progress, minutes=minutes)
    summary = _summary(profile, minutes, jobs, ex, clock)
    if out is not None:
        out = Path(out)
        if pictures and ex.finished:
            _draw_keypoints(ex, out)
        (out / "timebox.json").write_text(json.dumps(summary, indent=1))
        (out / "timebox.md").write_text(_summary_markdown(summary, out / "runs"))
        with tarfile.open(out / "records.tar.gz", "w:gz") as tar:
            tar.add(out / "runs", arcname="runs")
    say(
        f"{len(ex.finished)} runs finished in {summary['wall_min']} min"
        + (f"; records in {out}" if out else "")
        + (f"; {len(ex.stopped)} stopped, resumable" if ex.stopped else "")
        + (f"; {len(ex.skipped)} not started (timebox.md says why)" if ex.skipped else ""),
        flush=True,
    )
    return summary


def _summary(profile: NotebookProfile, minutes: float, jobs: int, ex: Execution, clock) -> dict:
    return {
        "profile": profile.name,
        "minutes": minutes,
        "wall_min": round((clock() - ex.t0) / 60, 2),
        "jobs": jobs,
        "git_commit": git_commit(),
        "seconds_to_first_step": None if ex.first_step_s is None else round(ex.first_step_s, 1),
        "finished": [r.name for r in ex.finished],
        "stopped_past_the_deadline": ex.stopped,
        "not_started": [{"run": name, "why": why} for name, why in ex.skipped],
    }


def _draw_keypoints(ex: Execution, out: Path) -> None:
    from ..report.pictures import keypoint_comparison

    body = {r.row: r.folder for r in ex.finished if not r.exp.wholebody}
    if body:
        fig = keypoint_comparison(dict(list(body.items())[:4]))
        fig.savefig(out / "keypoints.png", dpi=110)


def _summary_markdown(summary: dict, records: Path) -> str:
    lines = [
        f"# Time-boxed reproduction ({summary['profile']} profile)",
        "",
        f"- minutes given: {summary['minutes']}; wall time: {summary['wall_min']} min; "
        f"runs side by side: {summary['jobs']}; git commit: {summary['git_commit']}",
        "",
        "| run | AP | train min | images/s | device | precision |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name in summary["finished"]:
        r = json.loads(RunDir(records / name).result.read_text())
        lines.append(
            f"| {name} | {100 * r['metrics']['AP']:.1f} | {r['train_time_s'] / 60:.1f} | "
            f"{r.get('train_images_per_s') or ''} | {r.get('device', '')} | "
            f"{r.get('precision', '')} |"
        )
    for name in summary["stopped_past_the_deadline"]:
        lines.append(f"| {name} | stopped: would end past the deadline | | | | |")
    for item in summary["not_started"]:
        lines.append(f"| {item['run']} | not started: {item['why']} | | | | |")
    return "\n".join(lines) + "\n"
