"""A reproduction that fits a time limit: for a short GPU allocation (a spot instance, a
cluster job's time limit) that must bring back finished results, not half-trained runs.

`reproduce_within(profile, minutes, out)` trains the grid's missing runs in the order of
`timeboxed_order` (the key rows first), `jobs` side by side (on one GPU several runs at
once can raise the total images/s), as many as fit the minutes. A run whose estimate (an
earlier record of the same config name and schedule) does not fit the minutes left is not
started; a run without an estimate stops after its first epoch whose pace says it would
end late (checkpointed, so a later allocation on the same machine resumes it). Each run
that finishes is written to OUT/runs/ as a record (ocdlib/runs/records.py: config, result,
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

from ..configs import Config
from ..data.prepare import is_ready, resolve_data
from ..engine.evaluate import head_metrics
from ..engine.run_dir import RESULT, RunDir, git_commit, load_run_config, read_result
from ..errors import GenerationAbandoned, RunInterrupted
from ..grid.gather import grid_configs
from ..grid.row import Experiment
from ..paths import reports_home, runs_home
from ..profiles import NotebookProfile
from ..runs.cache import finished_result, get_run, granted_precision, run_dir
from ..runs.records import find_record, write_record
from .estimate import Progress
from .scheduler import with_share_of_cores
from .stops import ForwardStops

# The rows whose claims matter most, on every seed; then the other key rows on the first.
MIN_MINUTES_TO_START = 0.5


def timeboxed_order(
    profile: NotebookProfile, notebooks: list[str] | None = None
) -> list[tuple[Experiment, Config]]:
    """The grid's runs in the order a short allocation should train them, by each row's
    `priority` (ocdlib/grid/catalogue.py): DeepPose, SimpleBaseline and OCD after a warm-up
    seed by seed, then OCD, TCD (after its teacher, SimpleBaseline's first seed), RLE and
    OCD-RLE on the first seed, then every other row on the first seed, then the
    remaining seeds."""
    grid = grid_configs(profile, notebooks)

    def rank(item: tuple[Experiment, Config]) -> tuple:
        exp, cfg = item
        seed_index = exp.seeds(profile).index(cfg.train.seed)
        tier, k = exp.priority or (None, 0)
        if tier == 0:
            return (0, seed_index, k)
        if tier == 1 and seed_index == 0:
            return (1, 0, k)
        return (2 + min(seed_index, 1), seed_index, 0)

    return sorted(grid, key=rank)  # sorted is stable: grid order within a rank


def estimate_minutes(cfg: Config, roots: list[Path]) -> float | None:
    """Minutes `cfg` takes on this machine, from the newest record under `roots` of a run
    of the same config name, schedule and precision (its training time, plus a tenth
    for evaluation), or None."""
    best = None
    precision = granted_precision(cfg)
    for root in roots:
        for result_file in sorted(Path(root).glob(f"{cfg.name}-*/{RESULT}")):
            result = json.loads(result_file.read_text())
            config = json.loads(RunDir(result_file.parent).config.read_text())
            if config["train"]["epochs"] != cfg.train.epochs:
                continue
            if result.get("precision_tag", precision) != precision:
                continue
            minutes = 1.1 * float(result.get("train_time_s", 0.0)) / 60
            best = minutes if best is None else min(best, minutes)
    return best


def _train_until(cfg: Config, deadline: float) -> tuple[str, bool]:
    """One run in a pool process (jobs > 1): its folder, and whether it finished."""
    result = get_run(cfg, progress=False, deadline=deadline)
    return result["run_dir"], not result.get("past_deadline", False)


class _Box:
    """The minutes of one time-boxed command: the clock, what is left, and why each run
    was or was not trained."""

    def __init__(self, minutes: float, clock, say, estimates=None, progress=None):
        self.clock, self.say = clock, say
        self.estimates, self.progress = estimates or {}, progress
        self.t0 = clock()
        self.deadline = self.t0 + 60 * minutes
        self.finished: list[tuple[Experiment, str]] = []
        self.stopped: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        self.first_step_s: float | None = None  # command start -> first run's first batch
        self.first_start: float | None = None
        self.dropped: set[str] = set()  # runs of the plan not started or not finished
        self.out_of_time = False
        self.walls: dict[tuple, float] = {}  # minutes a run of this schedule took here
        self._started_at: dict[str, float] = {}

    def minutes_left(self) -> float:
        return (self.deadline - self.clock()) / 60

    def give_up(self) -> str | None:
        """For data generation: a reason to stop, once the box has run out."""
        return "the time box ran out" if self.clock() >= self.deadline else None

    def skip(self, cfg: Config, why: str) -> None:
        directory = run_dir(cfg)
        self.skipped.append((directory.name, why))
        self.dropped.add(str(directory))

    def ready(self, exp: Experiment, cfg: Config, planned: set[str], roots) -> bool:
        """Whether `cfg` may start now: its teacher's weights are here or trained first in
        this command, its records say it fits, and its data is there or made in time.
        A run that may not is noted with the reason."""
        teacher = cfg.loss.teacher_run
        if teacher and read_result(Path(teacher)) is None:
            if teacher in self.dropped:
                self.skip(cfg, "its teacher did not finish in this command")
                return False
            if teacher not in planned:
                self.skip(cfg, "its teacher's weights are not on this machine (train both in one "
                          "command: weights do not come back with the records)")  # fmt: skip
                return False
        left = self.minutes_left()
        if left < MIN_MINUTES_TO_START:
            self.skip(cfg, "no time left")
            self.out_of_time = True
            return False
        measured = self.estimates.get(run_dir(cfg).name)
        estimate = (
            self.walls.get(_schedule(cfg))
            or (measured / 60 if measured else None)
            or estimate_minutes(cfg, roots)
        )
        if estimate is not None and estimate > left:
            self.skip(cfg, f"needs about {estimate:.1f} min, {left:.1f} left")
            return False
        if not is_ready(cfg.data):  # generated for the first run that needs it, not before
            t = self.clock()
            try:
                resolve_data(cfg.data, progress=False, give_up=self.give_up)
            except GenerationAbandoned:
                self.skip(cfg, "its data could not be generated in the time left")
                return False
            self.say(f"generated {cfg.data.synth.train + cfg.data.synth.val} SynthPose images "
                     f"in {self.clock() - t:.0f} s", flush=True)  # fmt: skip
            if self.minutes_left() < MIN_MINUTES_TO_START:  # the minimum counts after set-up
                self.skip(cfg, "no time left once its data was generated")
                self.out_of_time = True
                return False
        return True

    def ended(self, exp: Experiment, cfg: Config, directory: str, complete: bool, out) -> None:
        name = Path(directory).name
        wall = (self.clock() - self._started_at.pop(name, self.clock())) / 60
        self.walls[_schedule(cfg)] = max(wall, self.walls.get(_schedule(cfg), 0.0))
        if complete:
            if out is not None:
                _score_other_heads(Path(directory))
                write_record(Path(directory), out / "runs")
            self.finished.append((exp, directory))
            result = read_result(Path(directory)) or {}
            if self.first_step_s is None and "seconds_to_first_step" in result:
                self.first_step_s = self.first_start - self.t0 + result["seconds_to_first_step"]
            self.say(f"finished {name}: {_result_line(result)}", flush=True)
        else:
            self.stopped.append(name)
            self.dropped.add(str(directory))
        if self.progress is not None:
            self.progress.ended(name)

    def started(self, exp: Experiment, cfg: Config) -> None:
        name = run_dir(cfg).name
        self._started_at[name] = self.clock()
        if self.progress is not None:
            self.progress.started(name)
        if self.first_start is None:
            self.first_start = self._started_at[name]
        self.say(
            f"start {name} ({exp.label}, seed {cfg.train.seed}; "
            f"{self.minutes_left():.1f} min left)",
            flush=True,
        )


def _score_other_heads(directory: Path) -> None:
    """Score the heatmap head that trains beside a run's deployed head (what the notebooks
    show as "the heatmap head inside"), while the weights are here: a record has none."""
    model = load_run_config(directory).model
    if "hm" in model.heads and model.deploy_head != "hm":
        head_metrics(directory, "hm")


def _schedule(cfg: Config) -> tuple:
    """What a run's length depends on, most of all: its data, model, schedule and batch. The
    longest run of a schedule in this command estimates the next (the method's heads and
    terms add a fifth at most at the profiles' sizes)."""
    return (cfg.data.synth, cfg.data.input_size, cfg.model.backbone, cfg.train.epochs,
            cfg.train.batch_size, cfg.train.max_steps)  # fmt: skip


def _result_line(result: dict) -> str:
    ap = result.get("metrics", {}).get("AP")
    parts = [f"AP {100 * ap:.1f}" if isinstance(ap, (int, float)) else "no AP"]
    if result.get("train_images_per_s"):
        parts.append(f"{result['train_images_per_s']:.0f} images/s")
    if result.get("train_time_s"):
        parts.append(f"trained in {result['train_time_s'] / 60:.1f} min")
    return ", ".join(parts)


def reproduce_within(
    profile: NotebookProfile,
    minutes: float,
    out: Path | None = None,
    jobs: int = 1,
    pictures: bool = True,
    say=print,
    clock=time.time,
    estimates: dict[str, float] | None = None,
    progress: Progress | None = None,
    notebooks: list[str] | None = None,
) -> dict:
    """Train the missing runs of `profile`'s grid that fit in `minutes`, key rows first,
    and, with `out`, write their records there (see the module's docstring). Returns the
    summary that OUT/timebox.json holds.

    With `jobs` 1 the runs train one after another in this process, so the held images,
    the device's context and its kernels' warm-up are paid once for all of them; with
    more, side by side in processes of their own. `clock` is the time box's clock (the
    runs' pace reads it too when they train in this process). `estimates`: seconds a
    run (by folder name) is expected to take here (ocdlib/reproduce/estimate.py); `progress`
    prints the reproduction's progress line as runs end; `notebooks` limits the grid
    to theirs."""
    box = _Box(minutes, clock, say, estimates or {}, progress)
    todo = [
        (e, c)
        for e, c in timeboxed_order(profile, notebooks)
        if finished_result(run_dir(c), c) is None and find_record(c) is None
    ]
    say(
        f"{len(todo)} runs of the {profile.name} grid missing; {minutes:g} min from now", flush=True
    )
    if out is not None:
        out = Path(out)
        (out / "runs").mkdir(parents=True, exist_ok=True)
    # Earlier runs of the same config names: this command's, the run cache's, committed.
    roots = ([out / "runs"] if out else []) + [runs_home(), *sorted(reports_home().glob("**/runs"))]
    planned = {str(run_dir(c)) for _, c in todo}
    if jobs == 1:
        _one_by_one(box, todo, planned, roots, out)
    else:
        _side_by_side(box, todo, planned, roots, out, jobs)
    summary = {
        "profile": profile.name,
        "minutes": minutes,
        "wall_min": round((clock() - box.t0) / 60, 2),
        "jobs": jobs,
        "git_commit": git_commit(),
        "seconds_to_first_step": None if box.first_step_s is None else round(box.first_step_s, 1),
        "finished": [Path(d).name for _, d in box.finished],
        "stopped_past_the_deadline": box.stopped,
        "not_started": [{"run": name, "why": why} for name, why in box.skipped],
    }
    if out is not None:
        if pictures and box.finished:
            _draw_keypoints(box.finished, out)
        (out / "timebox.json").write_text(json.dumps(summary, indent=1))
        (out / "timebox.md").write_text(_summary_markdown(summary, out / "runs"))
        with tarfile.open(out / "records.tar.gz", "w:gz") as tar:
            tar.add(out / "runs", arcname="runs")
    say(
        f"{len(box.finished)} runs finished in {summary['wall_min']} min"
        + (f"; records in {out}" if out else "")
        + (f"; {len(box.stopped)} stopped, resumable" if box.stopped else "")
        + (f"; {len(box.skipped)} not started (timebox.md says why)" if box.skipped else ""),
        flush=True,
    )
    return summary


def _one_by_one(box: _Box, todo, planned: set[str], roots, out) -> None:
    queue = list(todo)
    while queue:
        exp, cfg = queue.pop(0)
        teacher = cfg.loss.teacher_run
        waits = teacher and teacher in planned and teacher not in box.dropped
        if waits and read_result(Path(teacher)) is None:
            queue.append((exp, cfg))  # its teacher trains first (the order puts it first)
            continue
        if not box.ready(exp, cfg, planned, roots):
            if box.out_of_time:  # the rest is not started either
                for _, c in queue:
                    box.skip(c, "no time left")
                break
            continue
        box.started(exp, cfg)
        try:
            result = get_run(cfg, progress=False, deadline=box.deadline, clock=box.clock)
        except Exception as e:  # one failed run must not cost the allocation the others
            box.say(f"{run_dir(cfg).name} failed: {type(e).__name__}: {e}", flush=True)
            box.skip(cfg, f"failed: {type(e).__name__}: {str(e)[:200]}")
            continue
        box.ended(exp, cfg, result["run_dir"], not result.get("past_deadline"), out)


def _side_by_side(box: _Box, todo, planned: set[str], roots, out, jobs: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool,
        ForwardStops(pool) as stops,
    ):
        pending: dict = {}
        waiting = list(todo)
        while waiting or pending:
            if stops.requested:  # start nothing more; wait for the runs to save
                waiting.clear()
            for item in list(waiting):
                if len(pending) >= jobs:
                    break
                exp, cfg = item
                teacher = cfg.loss.teacher_run
                if teacher and teacher in {str(run_dir(c)) for _, c in pending.values()}:
                    continue  # its teacher is training now
                waiting.remove(item)
                if not box.ready(exp, cfg, planned, roots):
                    continue
                box.started(exp, cfg)
                cfg = with_share_of_cores(cfg, jobs)
                pending[pool.submit(_train_until, cfg, box.deadline)] = item
            if not pending:
                break
            done, _ = wait(pending, timeout=5, return_when=FIRST_COMPLETED)
            for fut in done:
                exp, cfg = pending.pop(fut)
                try:
                    directory, complete = fut.result()
                except RunInterrupted:
                    if not stops.requested:
                        raise
                    continue
                box.ended(exp, cfg, directory, complete, out)
        if stops.requested:
            raise stops.interrupted()


def _draw_keypoints(finished: list[tuple[Experiment, str]], out: Path) -> None:
    from ..report.pictures import keypoint_comparison

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
