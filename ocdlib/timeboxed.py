"""A reproduction that fits a time limit: for a short GPU allocation (a spot instance, a
cluster job's time limit) that must bring back finished results, not half-trained runs.

`reproduce_within(profile, minutes, out)` trains the grid's missing runs in the order of
`timeboxed_order` (the key rows first), `jobs` side by side (on one GPU several runs at
once can raise the total images/s), as many as fit the minutes. A run whose estimate (an
earlier record of the same config name and schedule) does not fit the minutes left is not
started; a run without an estimate stops after its first epoch whose pace says it would
end late (checkpointed, so a later allocation on the same machine resumes it). Each run
that finishes is written to OUT/runs/ as a record (ocdlib/run_records.py: config, result,
evaluations, log; no weights), with a picture of its keypoints drawn where its weights
are, and everything is packed into OUT/records.tar.gz beside OUT/timebox.md.

On a machine without a GPU, unpack the archive into reports/<profile>/ and
`python -m ocdlib reproduce --profile <profile> --no-train` rebuilds the reports from
the records (docs/GPU.md).
"""

from __future__ import annotations

import json
import multiprocessing
import tarfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from .configs import Config
from .data.prepare import resolve_data
from .engine.runs import git_commit, read_result
from .experiments import (
    DEEPPOSE,
    OCD_DEEPPOSE,
    OCD_RLE,
    OCD_WARMUP,
    RLE,
    SIMPLEBASELINE,
    TCD_DEEPPOSE,
    Experiment,
    grid_configs,
)
from .paths import reports_home, runs_home
from .profiles import NotebookProfile, notebook_profile
from .run_cache import finished_result, get_run, run_dir
from .run_records import find_record, write_record

# The rows whose claims matter most, on every seed; then the other key rows on the first.
FIRST_ON_EVERY_SEED = (DEEPPOSE, SIMPLEBASELINE, OCD_WARMUP)
THEN_ON_THE_FIRST_SEED = (OCD_DEEPPOSE, TCD_DEEPPOSE, RLE, OCD_RLE)
MIN_MINUTES_TO_START = 0.5


def timeboxed_order(profile: str | NotebookProfile) -> list[tuple[Experiment, Config]]:
    """The grid's runs in the order a short allocation should train them: DeepPose,
    SimpleBaseline and OCD after a warm-up seed by seed, then OCD, TCD (after its teacher,
    SimpleBaseline's first seed), RLE and OCD-RLE on the first seed, then every other row
    on the first seed, then the remaining seeds."""
    profile = notebook_profile(profile)
    grid = grid_configs(profile)

    def rank(item: tuple[Experiment, Config]) -> tuple:
        exp, cfg = item
        seed_index = exp.seeds(profile).index(cfg.train.seed)
        if exp in FIRST_ON_EVERY_SEED:
            return (0, seed_index, FIRST_ON_EVERY_SEED.index(exp))
        if seed_index == 0 and exp in THEN_ON_THE_FIRST_SEED:
            return (1, 0, THEN_ON_THE_FIRST_SEED.index(exp))
        return (2 + min(seed_index, 1), seed_index, 0)

    return sorted(grid, key=rank)  # sorted is stable: grid order within a rank


def estimate_minutes(cfg: Config, roots: list[Path]) -> float | None:
    """Minutes `cfg` takes, from the newest record under `roots` of a run of the same config
    name and schedule (its training time, plus a tenth for evaluation), or None."""
    best = None
    for root in roots:
        for result_file in sorted(Path(root).glob(f"{cfg.name}-*/result.json")):
            result = json.loads(result_file.read_text())
            config = json.loads((result_file.parent / "config.json").read_text())
            if config["train"]["epochs"] != cfg.train.epochs:
                continue
            minutes = 1.1 * float(result.get("train_time_s", 0.0)) / 60
            best = minutes if best is None else min(best, minutes)
    return best


def _train_until(cfg: Config, deadline: float) -> tuple[str, bool]:
    result = get_run(cfg, progress=False, deadline=deadline)
    return result["run_dir"], not result.get("past_deadline", False)


def reproduce_within(
    profile: str,
    minutes: float,
    out: Path,
    jobs: int = 1,
    pictures: bool = True,
    say=print,
) -> dict:
    """Train the missing runs of `profile`'s grid that fit in `minutes`, `jobs` side by side,
    and write their records to `out` (see the module's docstring). Returns the summary
    that OUT/timebox.json holds."""
    t0 = time.time()
    deadline = t0 + 60 * minutes
    record = notebook_profile(profile)
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    todo = [
        (e, c)
        for e, c in timeboxed_order(record)
        if finished_result(run_dir(c), c) is None and find_record(c) is None
    ]
    say(f"{len(todo)} runs of the {record.name} grid missing; {minutes:g} min from now", flush=True)
    for data in {c.data.synth: c.data for _, c in todo if not c.data.root}.values():
        resolve_data(data)  # generating the data counts against the minutes, before any run
    # Earlier runs of the same config names: this allocation's, the run cache's, committed.
    estimate_roots = [out / "runs", runs_home(), *sorted(reports_home().glob("**/runs"))]
    finished, skipped, stopped = [], [], []
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        pending: dict = {}
        waiting = list(todo)
        while waiting or pending:
            left = (deadline - time.time()) / 60
            for item in list(waiting):
                if len(pending) >= jobs or left < MIN_MINUTES_TO_START:
                    break
                exp, cfg = item
                teacher = cfg.loss.teacher_run
                if teacher and read_result(Path(teacher)) is None:
                    if any(str(run_dir(c)) == teacher for _, c in waiting + list(pending.values())):
                        continue  # its teacher has not finished yet
                    waiting.remove(item)
                    skipped.append((run_dir(cfg).name, "its teacher did not finish"))
                    continue
                waiting.remove(item)
                estimate = estimate_minutes(cfg, estimate_roots)
                if estimate is not None and estimate > left:
                    skipped.append((run_dir(cfg).name, f"needs about {estimate:.1f} min"))
                    continue
                say(f"start {run_dir(cfg).name} ({exp.label}, seed {cfg.train.seed})", flush=True)
                pending[pool.submit(_train_until, cfg, deadline)] = item
            if not pending:
                skipped += [(run_dir(c).name, "no time left") for _, c in waiting]
                break
            done, _ = wait(pending, timeout=30, return_when=FIRST_COMPLETED)
            for fut in done:
                exp, cfg = pending.pop(fut)
                directory, complete = fut.result()
                if complete:
                    write_record(Path(directory), out / "runs")
                    finished.append((exp, directory))
                    say(f"finished {Path(directory).name}", flush=True)
                else:
                    stopped.append(Path(directory).name)
    if pictures and finished:
        _draw_keypoints(finished, out)
    summary = {
        "profile": record.name,
        "minutes": minutes,
        "wall_min": round((time.time() - t0) / 60, 2),
        "jobs": jobs,
        "git_commit": git_commit(),
        "finished": [Path(d).name for _, d in finished],
        "stopped_past_the_deadline": stopped,
        "not_started": [{"run": name, "why": why} for name, why in skipped],
    }
    (out / "timebox.json").write_text(json.dumps(summary, indent=1))
    (out / "timebox.md").write_text(_summary_markdown(summary, out / "runs"))
    with tarfile.open(out / "records.tar.gz", "w:gz") as tar:
        tar.add(out / "runs", arcname="runs")
    say(f"{len(finished)} runs finished in {summary['wall_min']} min; records in {out}")
    return summary


def _draw_keypoints(finished: list[tuple[Experiment, str]], out: Path) -> None:
    from .figures import keypoint_comparison

    body = {e.label: d for e, d in finished if not e.wholebody}
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
        r = json.loads((records / name / "result.json").read_text())
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
