"""The training loop's state (`Loop`) and its concerns, one `Hook` each: messages,
evaluation along the way, the run's files (log.csv, evals.json, checkpoint.pt,
result.json), a stop after some epochs, a deadline's pace, and a stop on SIGTERM /
SIGINT. trainer.py calls every hook at the same points, in the order of its list.
"""

from __future__ import annotations

import csv
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..configs import Config
from ..data.dataset import SkippedImages, TopDownPoseDataset
from ..data.image_bank import ImageBank
from ..data.prepare import DataPaths
from ..metainfo import DatasetInfo
from .checkpoint import atomic_save, atomic_write_text, load_checkpoint, rng_state, set_rng_state
from .distributed import DistInfo, all_gather_objects, barrier
from .evaluate import evaluate_model
from .interrupt import RunInterrupted, StopRequest
from .pace import Pace
from .precision import Precision
from .run_dir import RunDir

LOG_FLUSH_STEPS = 50


@dataclass
class Loop:
    """A run as the training loop and its hooks see it: what every step needs, the data
    the evaluations need, and where the run stands."""

    model: nn.Module  # DDP-wrapped under torchrun, compiled with train.compile
    objective: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: DataLoader
    cfg: Config
    dist: DistInfo
    out_dir: Path
    precision: Precision
    train_ds: TopDownPoseDataset
    val_ds: TopDownPoseDataset
    info: DatasetInfo
    paths: DataPaths
    progress: bool = True
    skipped: SkippedImages | None = None  # data.bad_images=skip: what was left out
    stop: StopRequest | None = None  # SIGTERM / SIGINT: stop at the next step, saved
    bank: ImageBank | None = None  # data.hold_images: the training images on the device
    hooks: list[Hook] = field(default_factory=list)
    started_at: float = 0.0  # perf_counter() when the run started
    setup_times: dict[str, float] = field(default_factory=dict)  # when each part ended
    command: str | None = None  # what result.json records as the command that made it
    # Where the run stands.
    epoch: int = 0
    step: int = 0
    start_epoch: int = 0  # the first epoch this process trains
    trained: int = 0  # epochs the weights have trained
    train_time: float = 0.0
    batches_done: int = 0  # batches of the current epoch trained (a mid-epoch resume)
    rows: list[dict] = field(default_factory=list)  # the epoch's log rows not yet written
    evals: list[dict] = field(default_factory=list)  # evals.json
    done: bool = False  # the epoch just trained is the run's last
    # Why the run stops before its end, set by a hook (`request_stop`): "interrupt" (a
    # signal), "deadline" (the pace, or the deadline itself) or "epochs" (stop_after_epochs).
    # The loop checks it after every step and epoch; the run ends in one place (`_train`).
    stop_reason: str | None = None
    interrupted: bool = False  # the last epoch stopped early, mid-epoch, on that request
    first_batch_at: float | None = None  # perf_counter() when this process got its first batch
    seen: int = 0  # images this process trained in whole epochs, and their seconds
    timed: float = 0.0
    result: dict = field(default_factory=dict)  # result.json, on the main process

    @property
    def files(self) -> RunDir:
        return RunDir(self.out_dir)

    def request_stop(self, reason: str) -> None:
        """Stop the run, saved, at the next point the loop checks (the first reason holds)."""
        if self.stop_reason is None:
            self.stop_reason = reason


class Hook:
    """One concern of the training loop; each method does nothing unless overridden."""

    def before_train(self, loop: Loop) -> None:
        """After the set-up, before the first epoch."""

    def before_epoch(self, loop: Loop) -> None:
        """Before `loop.epoch`."""

    def after_step(self, loop: Loop, settled: bool) -> None:
        """After step `loop.step`; `settled`: the losses were just read back from the device,
        so it has caught up. `loop.request_stop(reason)` ends the epoch at this step, and
        the later hooks are not asked."""

    def after_epoch(self, loop: Loop) -> None:
        """After an epoch, or its part before a stop (`loop.interrupted`);
        `loop.request_stop(reason)` ends the run here, saved."""

    def after_train(self, loop: Loop) -> None:
        """After the final evaluation; `loop.result` is result.json on the main process."""


class SetUpTime(Hook):
    """Once the first epoch this process trains ends: how long the run took to reach its
    first batch, part by part (the seconds a short allocation pays before training)."""

    def before_epoch(self, loop: Loop) -> None:
        if loop.epoch == loop.start_epoch:
            loop.setup_times["model, optimiser and loader"] = time.perf_counter()

    def after_epoch(self, loop: Loop) -> None:
        first = loop.epoch == loop.start_epoch and loop.first_batch_at is not None
        if first and loop.dist.is_main:
            loop.setup_times["the loader's first batch"] = loop.first_batch_at
            line = _setup_line(loop.setup_times, loop.started_at)
            print(f"{loop.out_dir.name}: {line}", file=sys.stderr, flush=True)


class ReplacedImages(Hook):
    """data.bad_images=skip: how many of the epoch's samples stood in for unreadable ones."""

    def after_epoch(self, loop: Loop) -> None:
        skipped = loop.skipped
        replaced = skipped.replaced.get(f"epoch {loop.epoch + 1}", 0) if skipped else 0
        if replaced and loop.dist.is_main:
            print(
                f"epoch {loop.epoch + 1}: {replaced} sample(s) with an unreadable image replaced "
                "(data.bad_images=skip; the files are listed in result.json)",
                file=sys.stderr,
            )


class EvaluateAlong(Hook):
    """Every `train.eval_every` epochs: a point of the learning curve in evals.json (the
    final evaluation makes the last one)."""

    def after_epoch(self, loop: Loop) -> None:
        every = loop.cfg.train.eval_every
        if not every or (loop.epoch + 1) % every or loop.done or loop.interrupted:
            return
        score(loop, loop.out_dir / "eval", loop.epoch + 1, heatmap_head=True)


def score(loop: Loop, folder: Path, epoch: int, heatmap_head: bool, final: bool = False) -> dict:
    """A point of the learning curve, along the way or at the end: the deployed head's COCO
    metrics on the validation set (its predictions written to `folder`) and, where asked,
    the heatmap head's beside them, appended to `loop.evals`; returns the deployed head's.
    At the `final` point the images skipped on every rank are gathered first."""
    model, cfg, dist = unwrapped(loop.model), loop.cfg, loop.dist
    data = (loop.info, loop.val_ds, loop.paths)
    metrics = evaluate_model(model, cfg, *data, folder, dist, loop.skipped)
    if final and loop.skipped is not None:
        loop.skipped = SkippedImages.combine(all_gather_objects(loop.skipped, dist))
    along = {}
    if heatmap_head:
        along = heatmap_head_along(model, cfg, *data, loop.out_dir, dist, loop.skipped)
    loop.evals.append({"epoch": epoch, "step": loop.step, **metrics, **along})
    return metrics


class Checkpointer(Hook):
    """The files a run resumes from: log.csv, evals.json and checkpoint.pt, saved together
    at each epoch's end and at a stop mid-epoch; at the end, result.json too, and the
    checkpoint keeps the weights only. With `resume`, the run continues its checkpoint."""

    def __init__(self, resume: bool):
        self.resume = resume

    def before_train(self, loop: Loop) -> None:
        finished = False
        if self.resume and loop.files.checkpoint.is_file():
            finished = self._load(loop)
        evals = _read_json(loop.files.evals, [])
        loop.evals = [e for e in evals if e["epoch"] <= loop.start_epoch]
        loop.trained = loop.start_epoch
        if finished:
            # Re-scoring a finished run: no epoch left, and its final score is replaced.
            loop.start_epoch = loop.cfg.train.epochs
            loop.evals = [e for e in loop.evals if e["epoch"] < loop.cfg.train.epochs]

    def _load(self, loop: Loop) -> bool:
        """The checkpoint's state into `loop`; whether the run had finished."""
        ckpt = load_checkpoint(loop.files.checkpoint, loop.cfg.hash)
        unwrapped(loop.model).load_state_dict(ckpt["model"])
        loop.objective.load_state_dict(ckpt["objective"])
        finished = bool(ckpt.get("finished"))  # a finished run keeps its weights only
        if not finished:
            loop.optimizer.load_state_dict(ckpt["optimizer"])
            loop.scheduler.load_state_dict(ckpt["scheduler"])
            set_rng_state(ckpt["rng"])
        loop.start_epoch, loop.step = ckpt["epoch"], ckpt["step"]
        loop.train_time = ckpt["train_time"]
        loop.batches_done = int(ckpt.get("epoch_batches", 0))  # stopped mid-epoch
        if loop.skipped is not None:
            loop.skipped = SkippedImages.from_dict(ckpt.get("skipped_images"))
        if loop.dist.is_main:
            truncate_log(loop.files.log, loop.step)
            print(
                f"resumed {loop.out_dir} at epoch {loop.start_epoch} (step {loop.step})",
                file=sys.stderr,
            )
        return finished

    def after_step(self, loop: Loop, settled: bool) -> None:
        if settled and loop.dist.is_main and len(loop.rows) >= LOG_FLUSH_STEPS:
            write_log(loop.rows, loop.files.log, append=True)  # keep log.csv current
            loop.rows.clear()

    def after_epoch(self, loop: Loop) -> None:
        if loop.interrupted:
            _save_mid_epoch(loop)
        else:
            loop.trained = loop.epoch + 1
            save_run(loop, loop.trained)

    def after_train(self, loop: Loop) -> None:
        if not loop.dist.is_main:
            return
        atomic_write_text(json.dumps(loop.evals, indent=1), loop.files.evals)
        atomic_write_text(json.dumps(loop.result, indent=1), loop.files.result)
        # A finished run has nothing left to resume: its checkpoint keeps the weights of
        # every head and drops the optimizer, scheduler and RNG state (two thirds of the file
        # under Adam). `train --resume` on the finished run still re-scores it.
        state = _checkpoint(loop, loop.trained)
        atomic_save({**state, "finished": True}, loop.files.checkpoint)


class StopAfterEpochs(Hook):
    """Stop, saved, once this process has trained `epochs` epochs."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def after_epoch(self, loop: Loop) -> None:
        if not loop.interrupted and not loop.done:
            if loop.epoch + 1 - loop.start_epoch >= self.epochs:
                loop.request_stop("epochs")


class Deadline(Hook):
    """Stop, saved at that very step, once the steady pace (engine/pace.py) says the run
    would end past `deadline` (a value of `clock`)."""

    def __init__(self, deadline: float, clock):
        self.deadline, self.clock = deadline, clock
        self.pace: Pace | None = None

    def before_train(self, loop: Loop) -> None:
        cfg = loop.cfg
        total = cfg.train.epochs * len(loop.loader)
        if cfg.train.max_steps:
            total = min(total, cfg.train.max_steps)
        eval_steps = -(-len(loop.val_ds) // cfg.train.batch_size)
        self.pace = Pace(self.deadline, total, eval_steps=eval_steps, clock=self.clock)
        self.pace.start(loop.step)

    def after_step(self, loop: Loop, settled: bool) -> None:
        # The pace only where the losses were read back: before that, the clock would time
        # the host's queueing, not the device's work. The deadline itself on every step
        # (a clock read, no device sync), so a run whose steps take minutes, or whose
        # set-up overran, stops within one step of it; under DDP rank 0 decides, below.
        if not loop.dist.enabled and self.clock() >= self.deadline:
            loop.request_stop("deadline")
        elif settled and _pace_says_stop(self.pace, loop.dist, loop.step):
            loop.request_stop("deadline")

    def after_epoch(self, loop: Loop) -> None:
        if loop.stop_reason or loop.done:
            return
        if _pace_says_stop(self.pace, loop.dist, loop.step):
            loop.request_stop("deadline")


class Interrupts(Hook):
    """SIGTERM / SIGINT (`loop.stop`): stop after the step it came in, saved, and raise
    RunInterrupted, which says how to resume."""

    def after_step(self, loop: Loop, settled: bool) -> None:
        if _stop_requested(loop, loop.step):
            loop.request_stop("interrupt")


def _pace_says_stop(pace: Pace, dist: DistInfo, step: int) -> bool:
    """Mark the pace at `step` and whether the run should stop there; under DDP rank 0's
    clock decides for all."""
    pace.mark(step)
    stop = pace.should_stop(step)
    if dist.enabled:
        flag = torch.tensor([1.0 if stop else 0.0], device=dist.device)
        torch.distributed.broadcast(flag, src=0)
        stop = bool(flag.item())
    return stop


def stopped(loop: Loop) -> dict:
    """How a run that stops before its end ends, saved: a signal raises RunInterrupted (with
    the line that resumes it); the deadline or stop_after_epochs return what train() returns."""
    epochs_done = loop.epoch if loop.interrupted else loop.epoch + 1
    if loop.stop_reason == "interrupt":
        raise _interrupted(loop)
    if loop.stop_reason == "deadline":
        return _stopped_for_deadline(loop, epochs_done)
    return {"stopped_at_epoch": epochs_done}


def _stopped_for_deadline(loop: Loop, epoch: int) -> dict:
    step = loop.step
    if loop.dist.is_main:
        print(
            f"{loop.out_dir.name}: stopped at step {step}, {epoch} of {loop.cfg.train.epochs} "
            "epochs done: at its steady pace it would end past the deadline; saved, rerun to "
            "resume it",
            file=sys.stderr,
        )
    return {"stopped_at_epoch": epoch, "stopped_at_step": step, "past_deadline": True}


def _stop_requested(loop: Loop, step: int) -> bool:
    """Whether to stop after this step; under DDP every rank stops at the same step (the
    ranks compare their requests every 20 steps, so most steps add no synchronisation)."""
    if not loop.dist.enabled:
        return loop.stop.requested
    if step % 20:
        return False
    flag = torch.tensor([1.0 if loop.stop.requested else 0.0], device=loop.dist.device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _interrupted(loop: Loop) -> RunInterrupted:
    """RunInterrupted for a run stopped by a signal and saved, saying how to resume."""
    name = signal.Signals(loop.stop.signum).name
    return RunInterrupted(
        f"{loop.out_dir}: stopped by {name} after step {loop.step} (epoch {loop.epoch + 1}, "
        f"batch {loop.batches_done} of {len(loop.loader)}) and saved; run the same command again "
        "to resume from this step (python -m ocdlib train ... --resume, or reproduce again)",
        loop.stop.signum,
    )


def save_run(loop: Loop, epoch: int, **more):
    """On the main process: the loop's log rows appended to log.csv, evals.json, then
    checkpoint.pt after `epoch` epochs (`more`: its entries before the optimizer's);
    every rank waits for it."""
    if loop.dist.is_main:
        # The log before the checkpoint: a run killed in between has rows past its
        # checkpoint, which a resume drops, rather than a checkpoint past its log.
        write_log(loop.rows, loop.files.log, append=True)
        atomic_write_text(json.dumps(loop.evals, indent=1), loop.files.evals)
        state = _checkpoint(loop, epoch)
        state.update(
            **more,
            optimizer=loop.optimizer.state_dict(),
            scheduler=loop.scheduler.state_dict(),
            rng=rng_state(),
        )
        atomic_save(state, loop.files.checkpoint)
    barrier(loop.dist)


def _save_mid_epoch(loop: Loop) -> None:
    """Save a run stopped mid-epoch (by a signal or the pace), resumable at this very step."""
    save_run(loop, loop.epoch, epoch_batches=loop.batches_done)


def _checkpoint(loop: Loop, epoch: int) -> dict:
    """What checkpoint.pt holds of a run after `epoch` besides the optimizer, scheduler
    and RNG state that only an unfinished run needs."""
    return {
        "model": unwrapped(loop.model).state_dict(),
        "objective": loop.objective.state_dict(),
        "epoch": epoch,
        "step": loop.step,
        "train_time": loop.train_time,
        "config_hash": loop.cfg.hash,
        "skipped_images": loop.skipped.to_dict() if loop.skipped is not None else None,
    }


def write_log(rows: list[dict], path: Path, append: bool) -> None:
    if not rows:
        return
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    exists = path.is_file() and append
    if exists:
        with path.open() as f:
            header = next(csv.reader(f), [])
        if header != keys:  # a new term appeared: rewrite with the union of columns
            old = list(csv.DictReader(path.open()))
            rows = old + rows
            keys = header + [k for k in keys if k not in header]
            exists = False
    with path.open("a" if exists else "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        if not exists:
            w.writeheader()
        w.writerows(rows)


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows past `step` (the epoch a killed run was in is trained again)."""
    if not path.is_file():
        return
    rows = [r for r in csv.DictReader(path.open()) if int(r["step"]) <= step]
    path.unlink()
    write_log(rows, path, append=False)


def heatmap_head_along(model, cfg: Config, info, val_ds, paths, out_dir, dist, skipped) -> dict:
    """{"hm": metrics} of the heatmap head trained beside a deployed regression head (OCD),
    for its learning curve; {} when the heatmap head is the deployed one or there is none."""
    heads = getattr(model, "module", model).heads
    if "hm" not in heads or cfg.model.deploy_head == "hm":
        return {}
    out = out_dir / "eval_along_hm"
    return {"hm": evaluate_model(model, cfg, info, val_ds, paths, out, dist, skipped, head="hm")}


def unwrapped(model: nn.Module) -> nn.Module:
    """The model itself, out of DistributedDataParallel and torch.compile's wrappers (whose
    state_dict keys carry "module." and "_orig_mod." prefixes)."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def _setup_line(setup: dict[str, float], t_start: float) -> str:
    """How long the run took to reach its first batch, part by part."""
    parts, before = [], t_start
    for what, t in setup.items():
        parts.append(f"{what} {t - before:.1f} s")
        before = t
    return f"first batch {before - t_start:.1f} s after the run started ({', '.join(parts)})"


def _read_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default
