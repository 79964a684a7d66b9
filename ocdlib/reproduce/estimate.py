"""How long a reproduction takes on this machine, said before it starts, and its ETA as
it goes.

`estimate_grid` measures, in at most `budget_s` seconds, what a run's time is made of
on this machine, at the precision it trains in and with the threads each side-by-side
run gets:

- one training step of each kind of run (the preset: its model, heads and loss terms;
  TCD with its frozen teacher), on a batch of random crops, after one warm-up step;
- the loader's work for one batch (decoding, cropping, encoding the targets), drawn
  from a few SynthPose images generated for the purpose at the profile's size.

A run then takes steps x (step + batch) plus its evaluations and a fixed start-up;
a run of the same config already finished on this machine gives its own training
time instead. The runs are laid out on `jobs` slots in the order the executor starts
them (a TCD run after its teacher), and the wall time is when the last one ends, plus
the notebooks. `Progress` (ocdlib/reproduce/progress.py) turns it into an ETA as the
runs end; `RunTimes` is what the executor expects of the next run while it trains.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..configs import Config

START_UP_S = 6.0  # a run's process: imports, datasets, model (measured: 4-8 s on the cpu profile)
NOTEBOOK_S = 15.0  # one notebook over finished runs (reports/PROVENANCE.md: 1.1 min for 6)
SAMPLE_IMAGES = 48  # SynthPose images generated to time the loader
DEFAULT_BUDGET_S = 30.0
SIDE_BY_SIDE_S = 8.0  # of the budget: a neighbour process started, one step timed beside it


@dataclass
class RunEstimate:
    name: str  # the run's folder name
    seconds: float
    source: str  # "measured" or "finished run"
    teacher: str = ""  # folder name of its teacher, trained first


@dataclass
class GridEstimate:
    runs: list[RunEstimate]
    jobs: int
    notebooks: int
    precision: str
    threads: int
    measured_s: float  # how long the measurement took
    slowdown: float = 1.0  # a step side by side with `jobs - 1` others, against alone
    step_s: dict[str, float] = field(default_factory=dict)  # preset -> seconds a step
    batch_s: dict[str, float] = field(default_factory=dict)  # data -> seconds a batch

    @property
    def training_s(self) -> float:
        return schedule([r.seconds for r in self.runs], self.jobs, self._teacher_index())

    @property
    def wall_s(self) -> float:
        return self.training_s + self.notebooks * NOTEBOOK_S

    def _teacher_index(self) -> list[int | None]:
        index = {r.name: i for i, r in enumerate(self.runs)}
        return [index.get(r.teacher) for r in self.runs]


def schedule(seconds: list[float], jobs: int, teacher: list[int | None] | None = None) -> float:
    """When the last of the runs ends, started in list order on `jobs` slots as each
    slot frees up; run i starts no earlier than its teacher (an index, or None) ends."""
    teacher = teacher or [None] * len(seconds)
    slots = [0.0] * max(1, jobs)
    ends: list[float] = []
    for i, s in enumerate(seconds):
        k = min(range(len(slots)), key=slots.__getitem__)
        start = slots[k]
        if teacher[i] is not None and teacher[i] < len(ends):
            start = max(start, ends[teacher[i]])
        ends.append(start + s)
        slots[k] = ends[-1]
    return max(ends, default=0.0)


def _figures_per_image(cfg: Config) -> float:
    lo, hi = cfg.data.synth.spec.people_per_image
    return (lo + hi) / 2


def run_steps(cfg: Config) -> int:
    """Training steps of a run: epochs x full batches of its figures (the data's own
    count where it is generated, else SynthPose's mean figures an image)."""
    instances = _instances(cfg)
    per_epoch = max(1, int(instances // cfg.train.batch_size))
    total = cfg.train.epochs * per_epoch
    return min(total, cfg.train.max_steps) if cfg.train.max_steps else total


def _instances(cfg: Config) -> float:
    from ..data.prepare import synth_dir

    stats = synth_dir(cfg.data.synth) / "synthpose.json"
    if stats.is_file():
        import json

        return float(json.loads(stats.read_text())["statistics"]["train"]["instances"])
    return cfg.data.synth.train * _figures_per_image(cfg)


def _evaluations(cfg: Config) -> int:
    every = cfg.train.eval_every
    return 1 + (cfg.train.epochs - 1) // every if every else 1


def estimate_grid(
    todo: list[Config],
    jobs: int,
    notebooks: int = 0,
    finished: dict[str, float] | None = None,
    budget_s: float = DEFAULT_BUDGET_S,
    names=None,
    teachers=None,
) -> GridEstimate:
    """The estimate for training `todo` (in the order they will start) `jobs` side by
    side, then `notebooks` notebooks. `finished`: {same_run_key: seconds} of
    runs of the same config (another seed) and precision finished on this machine; `names(cfg)` and
    `teachers(cfg)` give a run's folder name and its teacher's (ocdlib.runs.cache.run_dir)."""
    import torch

    from ..cores import usable_cores
    from ..runs.cache import granted_precision, run_dir

    names = names or (lambda c: run_dir(c).name)
    teachers = teachers or (lambda c: Path(c.loss.teacher_run).name if c.loss.teacher_run else "")
    t0 = time.perf_counter()
    threads = max(1, usable_cores() // max(1, jobs))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    finished = finished or {}
    try:
        to_measure = [c for c in todo if same_run_key(c) not in finished]
        reserve = SIDE_BY_SIDE_S if jobs > 1 else 0.0  # for the side-by-side step below
        step_s, batch_s = _measure(to_measure, t0 + budget_s - reserve)
        # Side by side, the runs share the memory bus and caches: a step measured with
        # the other slots busy says how much slower each one runs.
        in_time = time.perf_counter() < t0 + budget_s
        slowdown = (
            _side_by_side_slowdown(to_measure, jobs, threads, step_s)
            if to_measure and in_time
            else 1.0
        )
    finally:
        torch.set_num_threads(before)
    runs = []
    for cfg in todo:
        key = same_run_key(cfg)
        if key in finished:
            runs.append(RunEstimate(names(cfg), finished[key], "finished run", teachers(cfg)))
            continue
        step = step_s.get(cfg.name) or max(step_s.values(), default=1.0)
        batch = batch_s.get(_data_key(cfg)) or max(batch_s.values(), default=0.0)
        step, batch = step * slowdown, batch * slowdown
        train = run_steps(cfg) * (step + batch)
        # An evaluation: the validation crops through the loader and a forward pass
        # (a third of a training step's compute), then the COCO evaluation.
        val = cfg.data.synth.val * _figures_per_image(cfg)
        per_eval = val / cfg.train.batch_size * (batch + step / 3) + 1.0
        seconds = START_UP_S + train + _evaluations(cfg) * per_eval
        runs.append(RunEstimate(names(cfg), seconds, "measured", teachers(cfg)))
    return GridEstimate(
        runs=runs,
        jobs=jobs,
        notebooks=notebooks,
        precision=granted_precision(todo[0]) if todo else "",
        threads=threads,
        measured_s=time.perf_counter() - t0,
        slowdown=slowdown,
        step_s=step_s,
        batch_s=batch_s,
    )


def finished_seconds(plan) -> dict[str, float]:
    """{same_run_key: seconds} of the plan's runs finished in this machine's run cache:
    what the next seed of the same row will take here."""
    from ..engine.run_dir import read_result
    from ..grid.plan import FINISHED

    out = {}
    for run in plan.runs:
        result = read_result(Path(run.folder)) if run.state == FINISHED else None
        if result and result.get("train_time_s"):
            out[same_run_key(run.config)] = START_UP_S + float(result["train_time_s"])
    return out


class RunTimes:
    """What the executor expects of a run while a command trains, in minutes: the
    longest run of the same schedule this command has seen end, else the run's estimate
    (`estimate_grid`, noted in the plan), else the quickest record under `roots` of a run
    of the same config name, schedule and precision; None where nothing says."""

    def __init__(self, roots: list[Path]):
        self.roots = roots
        self.walls: dict[tuple, float] = {}  # schedule -> minutes a run of it took here

    def minutes(self, run) -> float | None:
        """`run`: a PlannedRun (ocdlib/grid/plan.py)."""
        return (
            self.walls.get(_schedule(run.config))
            or (run.estimate_s / 60 if run.estimate_s else None)
            or recorded_minutes(run.config, self.roots)
        )

    def took(self, run, minutes: float) -> None:
        """`run` ended after `minutes` (finished or stopped)."""
        key = _schedule(run.config)
        self.walls[key] = max(minutes, self.walls.get(key, 0.0))


def _schedule(cfg: Config) -> tuple:
    """What a run's length depends on, most of all: its data, model, schedule and batch. The
    longest run of a schedule in this command estimates the next (the method's heads and
    terms add a fifth at most at the profiles' sizes)."""
    return (cfg.data.synth, cfg.data.input_size, cfg.model.backbone, cfg.train.epochs,
            cfg.train.batch_size, cfg.train.max_steps)  # fmt: skip


def recorded_minutes(cfg: Config, roots: list[Path]) -> float | None:
    """Minutes `cfg` takes, from the quickest record under `roots` of a run of the same
    config name, schedule and precision (its training time, plus a tenth for
    evaluation), or None."""
    import json

    from ..engine.run_dir import RESULT, RunDir
    from ..runs.cache import granted_precision

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


def same_run_key(cfg: Config) -> str:
    """What runs that take the same time share: the config but for its seed."""
    return f"{cfg.name}-{replace(cfg, train=replace(cfg.train, seed=0)).hash}"


def _data_key(cfg: Config) -> tuple:
    return (cfg.data.synth, cfg.data.input_size, cfg.data.heatmap_size, cfg.data.pipeline)


def _measure(todo: list[Config], deadline: float) -> tuple[dict[str, float], dict[tuple, float]]:
    """Seconds a step of each preset among `todo` (the most frequent first) and seconds a
    batch of each kind of data, until `deadline` (perf_counter); what is left unmeasured
    takes the slowest measured figure."""
    from collections import Counter

    step_s: dict[str, float] = {}
    batch_s: dict[tuple, float] = {}
    by_data = {_data_key(c): c for c in todo}
    for key, cfg in by_data.items():
        if time.perf_counter() > deadline and batch_s:
            break
        batch_s[key] = _batch_seconds(cfg)
    first = {}
    for c in todo:
        first.setdefault(c.name, c)
    for name, _ in Counter(c.name for c in todo).most_common():
        if time.perf_counter() > deadline and step_s:
            break
        step_s[name] = _step_seconds(first[name], deadline=deadline)
    return step_s, batch_s


def _side_by_side_slowdown(todo: list[Config], jobs: int, threads: int, step_s) -> float:
    """A step of the most frequent preset timed while `jobs - 1` other processes train the
    same step on their own threads, against the same step alone (at least 1)."""
    if jobs < 2 or not step_s:
        return 1.0
    import multiprocessing
    from collections import Counter

    name = Counter(c.name for c in todo).most_common(1)[0][0]
    cfg = next(c for c in todo if c.name == name)
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    ready = [ctx.Event() for _ in range(jobs - 1)]
    procs = [
        ctx.Process(target=_keep_busy, args=(cfg.to_dict(), threads, r, stop), daemon=True)
        for r in ready
    ]
    for proc in procs:
        proc.start()
    try:
        if not all(r.wait(timeout=60) for r in ready):
            return 1.0
        return max(1.0, _step_seconds(cfg, timed=3, warmup=1) / step_s[name])
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=10)


def _keep_busy(cfg_dict: dict, threads: int, ready, stop) -> None:
    """Train one step after another until `stop` (a side-by-side neighbour, timed against)."""
    import torch

    from ..bench.training_cost import step_of

    torch.set_num_threads(threads)
    step = step_of(Config.from_dict(cfg_dict))
    step()
    ready.set()
    while not stop.is_set():
        step()


def _step_seconds(
    cfg: Config, timed: int = 3, warmup: int = 2, deadline: float = math.inf
) -> float:
    """One training step of `cfg` on random crops, the median of `timed` after `warmup`
    (the first steps build the kernels' plans and the allocator's pools); past
    `deadline` (perf_counter) one warm-up and one timed step at most."""
    from ..bench.training_cost import step_of

    step = step_of(cfg)
    for i in range(warmup):
        if i and time.perf_counter() > deadline:
            break
        step()
    times = []
    for _ in range(timed):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
        if time.perf_counter() > deadline:
            break
    return statistics.median(times)


def _batch_seconds(cfg: Config, batches: int = 2) -> float:
    """The loader's work for one batch of `cfg` (in this process, as the cpu profile's
    runs load), on SynthPose images generated into a temporary folder."""
    from torch.utils.data import default_collate

    from ..data.dataset import build_datasets
    from ..data.device_pipeline import collate_of
    from ..data.layout import resolve_layout
    from ..data.prepare import DataPaths
    from ..data.synthpose import generate_synthpose

    synth = cfg.data.synth
    with tempfile.TemporaryDirectory(prefix="ocd-estimate-") as tmp:
        root = Path(tmp)
        generate_synthpose(
            root, SAMPLE_IMAGES, 4, synth.seed, synth.wholebody, tuple(synth.image_size),
            synth.spec, progress=False,
        )  # fmt: skip
        paths = DataPaths(
            root, root / cfg.data.train_ann, root / cfg.data.train_images,
            root / cfg.data.val_ann, root / cfg.data.val_images,
        )  # fmt: skip
        info = resolve_layout(cfg.data, paths.train_ann)
        train_ds, _ = build_datasets(replace(cfg), paths, info)
        train_ds.set_epoch(0)
        collate = collate_of(train_ds) or default_collate
        size = min(cfg.train.batch_size, len(train_ds))
        times = []
        for b in range(batches + 1):  # the first warms the caches
            t = time.perf_counter()
            collate([train_ds[(b * size + i) % len(train_ds)] for i in range(size)])
            times.append(time.perf_counter() - t)
        per_crop = statistics.median(times[1:]) / size
    return per_crop * cfg.train.batch_size


def as_minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def summary_lines(est: GridEstimate, finished: int, cores: int) -> list[str]:
    """What `reproduce` prints before its first run."""
    measured = sum(r.source == "measured" for r in est.runs)
    return [
        f"{len(est.runs)} runs to train, {finished} found finished; this machine trains in "
        f"{est.precision} on {cores} cores ({est.jobs} runs side by side, {est.threads} "
        f"thread{'s' if est.threads > 1 else ''} each)",
        f"expected wall time: about {as_minutes(est.wall_s)} (training {as_minutes(est.training_s)}"
        f", notebooks {as_minutes(est.notebooks * NOTEBOOK_S)}); from step times measured here "
        f"in {est.measured_s:.0f} s for {measured} runs"
        + (f" (side by side {est.slowdown:.2f}x slower a step)" if est.jobs > 1 else "")
        + (
            f" and the times of {len(est.runs) - measured} finished runs"
            if measured < len(est.runs)
            else ""
        ),
    ]
