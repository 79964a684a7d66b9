"""The plan of one reproduction, built once per command.

It holds the notebooks to run (and why any is left out), every run their grid needs
(config, folder, row, teacher, state and, once measured, its estimate) in the one
order the executor starts them, and the policy: train or not, the minutes of a time
box, the runs side by side. The executor (ocdlib/reproduce/executor.py) consumes it;
the notebooks receive it as `plan.json` (papermill's `plan` parameter) and write into
it the rows they had to leave out; the provenance is written from it once.

A run's state is one of:
- "finished": this machine's run cache holds it;
- "recorded": a committed record holds it (ocdlib/runs/records.py), and the plan reads
  records (a reproduction that trains nothing);
- "to train": the executor trains it (or the notebooks, one by one, when asked); a
  recorded teacher of a student to train is trained again, for its weights;
- "missing": neither, and nothing will train it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..configs import Config
from ..profiles import NotebookProfile
from ..runs.cache import is_finished, run_dir
from ..runs.records import find_record, record_roots
from .catalogue import notebook_left_out
from .gather import grid_configs, grid_rows
from .row import Experiment

FINISHED, RECORDED, TO_TRAIN, MISSING = "finished", "recorded", "to train", "missing"
PRIVATE = ("exp", "config")  # PlannedRun fields that stay in the process
PLAN_FILE = "plan.json"


@dataclass
class PlannedRun:
    name: str  # the run's folder name
    row: str  # its experiment row's label
    seed: int
    teacher: str  # its teacher's folder name ("" without one)
    state: str
    notebooks: list[str]  # the notebooks (two-digit ids) that read it
    estimate_s: float | None = None
    folder: str = ""  # where it trains (the run cache)
    exp: Experiment | None = field(default=None, repr=False, compare=False)
    config: Config | None = field(default=None, repr=False, compare=False)

    def public(self) -> dict:
        """What plan.json keeps of the run (not its row and config objects)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in PRIVATE}


@dataclass
class Plan:
    profile: str
    command: str
    notebooks: list[str]  # file names, in the order they run
    left_out: dict[str, str]  # notebook file name -> why it is not run
    runs: list[PlannedRun]  # every run, in the order the executor starts them
    train: bool
    use_records: bool
    minutes: float | None = None
    jobs: int = 1
    not_trained: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    # ^ written by the notebooks: notebook id -> {row label: seeds} left out for want of runs

    @property
    def ids(self) -> list[str]:
        return [n[:2] for n in self.notebooks]

    def to_train(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.state == TO_TRAIN]

    def of_notebook(self, notebook: str) -> list[PlannedRun]:
        return [r for r in self.runs if notebook[:2] in r.notebooks]

    def unavailable(self, notebook: str) -> list[str]:
        """The runs `notebook` reads that nothing holds (nor will train), by folder name."""
        return [r.name for r in self.of_notebook(notebook) if r.state == MISSING]

    def save(self, path: Path) -> Path:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "runs"}
        data["runs"] = [r.public() for r in self.runs]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """A plan as a notebook or the provenance reads it (runs without their configs)."""
        data = json.loads(Path(path).read_text())
        data["runs"] = [PlannedRun(**r) for r in data["runs"]]
        return cls(**data)


def record_left_out(path: str | Path, notebook: str, rows: dict[str, list[int]]) -> None:
    """Write into the plan at `path` the rows `notebook` left out for want of runs."""
    plan = Plan.load(path)
    plan.not_trained[notebook[:2]] = dict(rows)
    plan.save(Path(path))


def run_order(
    grid: list[tuple[Experiment, Config]], profile: NotebookProfile, seconds=None
) -> list[tuple[Experiment, Config]]:
    """The one order runs start in, on every path: by each row's `priority`
    (ocdlib/grid/catalogue.py: DeepPose, SimpleBaseline and OCD after a warm-up seed by
    seed, then OCD, TCD, RLE and OCD-RLE on the first seed, then every other row on the
    first seed, then the remaining seeds); within a rank the longest first (`seconds`,
    default the whole-body runs first), so that side-by-side slots stay busy; and every
    teacher before its first student."""

    def rank(item: tuple[Experiment, Config]) -> tuple:
        exp, cfg = item
        seed_index = exp.seeds(profile).index(cfg.train.seed)
        tier, k = exp.priority or (None, 0)
        if tier == 0:
            key = (0, seed_index, k)
        elif tier == 1 and seed_index == 0:
            key = (1, 0, k)
        else:
            key = (2 + min(seed_index, 1), seed_index, 0)
        length = seconds(cfg) if seconds else float(exp.wholebody)
        return (key, -length)

    ordered = sorted(grid, key=rank)  # stable: grid order within a rank
    out: list[tuple[Experiment, Config]] = []
    placed: set[str] = set()
    by_folder = {str(run_dir(c)): (e, c) for e, c in ordered}
    for e, c in ordered:
        teacher = c.loss.teacher_run
        if teacher in by_folder and teacher not in placed:
            out.append(by_folder[teacher])
            placed.add(teacher)
        folder = str(run_dir(c))
        if folder not in placed:
            out.append((e, c))
            placed.add(folder)
    return out


def build_plan(
    profile: NotebookProfile,
    notebooks: list[Path] | None,
    command: str,
    train: bool = True,
    minutes: float | None = None,
    jobs: int = 1,
    use_records: bool | None = None,
) -> Plan:
    """The plan of one command: `notebooks` (paths) less those the profile leaves out,
    their grid's runs in `run_order` with their states; None: the whole grid, no
    notebook. `use_records` (default: when nothing trains) lets a committed record stand
    in for a run."""
    use_records = (not train) if use_records is None else use_records
    notebooks = notebooks or []
    left_out = {b.name: why for b in notebooks if (why := notebook_left_out(b.name[:2], profile))}
    books = [b.name for b in notebooks if b.name not in left_out]
    ids = [b[:2] for b in books]
    if not notebooks:  # the whole grid (a GPU allocation, `records --train`)
        grid = run_order(grid_configs(profile), profile)
    else:
        grid = run_order(grid_configs(profile, ids), profile) if books else []
    readers: dict[str, list[str]] = {}
    for nb in ids:
        rows = set(grid_rows(profile, [nb]))
        teachers = {r.teacher for r in rows if r.teacher}
        for exp, cfg in grid:
            first_seed = cfg.train.seed == exp.seeds(profile)[0]
            if exp in rows or (exp in teachers and first_seed):
                readers.setdefault(str(run_dir(cfg)), []).append(nb)
    runs = []
    roots = record_roots() if use_records else []
    for exp, cfg in grid:
        folder = run_dir(cfg)
        if is_finished(cfg):
            state = FINISHED
        elif use_records and find_record(cfg, roots) is not None:
            state = RECORDED
        else:
            state = TO_TRAIN if train else MISSING
        teacher = Path(cfg.loss.teacher_run).name if cfg.loss.teacher_run else ""
        runs.append(
            PlannedRun(
                folder.name, exp.label, cfg.train.seed, teacher, state,
                readers.get(str(folder), []), folder=str(folder), exp=exp, config=cfg,
            )
        )  # fmt: skip
    if train:  # a student learns from its teacher's weights, which no record carries
        waiting = {r.teacher for r in runs if r.state == TO_TRAIN and r.teacher}
        for r in runs:
            if r.state == RECORDED and r.name in waiting:
                r.state = TO_TRAIN
    return Plan(profile.name, command, books, left_out, runs, train, use_records, minutes, jobs)
