"""The training loop: `train(cfg)` reads top to bottom.

One process on a CPU, or one per GPU under `torchrun --nproc_per_node=N`
(DDP with a DistributedSampler). Everything a run writes lives in its run
directory: config.json, checkpoint.pt (each epoch, atomically; once the run has
finished, its weights only), log.csv (every loss term per step), evals.json,
metrics.json, predictions.json, student.pt and result.json (the run cache reads
the last one).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from ..configs import Config, validate
from ..cores import usable_cores
from ..data.coco import check_images
from ..data.dataset import SkippedImages, build_datasets
from ..data.device_decode import decodes_on_device
from ..data.device_pipeline import collate_of, finish_batch, to_device
from ..data.image_bank import ImageBank, hold_images
from ..data.layout import resolve_layout, save_layout
from ..data.prepare import resolve_data
from ..errors import ConfigError, ExistingRunError
from ..losses import build_objective
from ..models import build_model, export_student
from ..models.complexity import count_macs, count_params
from ..models.mmpose_checkpoint import is_mmpose_checkpoint, load_mmpose_heatmap_model
from .checkpoint import (
    atomic_save,
    atomic_write_text,
    load_checkpoint,
    remove_stale_temporaries,
    rng_state,
    set_rng_state,
)
from .distributed import DistInfo, all_gather_objects, barrier, cleanup, init_distributed
from .evaluate import evaluate_model
from .interrupt import RunInterrupted, StopRequest
from .pace import Pace
from .precision import Precision, resolve_precision
from .run_files import RunDir
from .runs import load_run_model, run_lock, run_metadata

LOG_FLUSH_STEPS = 50
SETTLE_STEPS = 25  # steps whose losses are read from the device at once


class NonFiniteLossError(RuntimeError):
    pass


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (global state user code may use)
    torch.manual_seed(seed)
    # Both ways: runs that follow one another in one process (a time box) must not
    # inherit an earlier run's setting.
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if deterministic:
        torch.backends.cudnn.benchmark = False


def lr_factor(step: int, steps_per_epoch: int, cfg) -> float:
    """Linear warm-up from 0.001 over `warmup_iters`, then mmpose's steps (x`gamma` at each
    milestone epoch) or, with `lr_schedule="cosine"`, a half cosine to zero at the end."""
    warm = 1.0
    if cfg.warmup_iters > 0 and step < cfg.warmup_iters:
        warm = 0.001 + (1 - 0.001) * step / cfg.warmup_iters
    if cfg.lr_schedule == "cosine":
        total = max(cfg.epochs * max(steps_per_epoch, 1), 1)
        return warm * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    epoch = step // max(steps_per_epoch, 1)
    return warm * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)


def make_loader(ds, batch_size: int, shuffle: bool, dist: DistInfo, seed: int, workers: int):
    sampler = None
    if dist.enabled:
        sampler = DistributedSampler(
            ds, num_replicas=dist.world_size, rank=dist.rank, shuffle=shuffle, seed=seed
        )
    elif shuffle:
        sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=seed)
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=dist.device.type == "cuda",
        drop_last=shuffle,
        collate_fn=collate_of(ds),
        persistent_workers=False,  # workers must see set_epoch (augmentation seeds)
    )


def set_norm_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@dataclass
class Loop:
    """What every training step needs and an epoch does not change."""

    model: nn.Module  # DDP-wrapped under torchrun, compiled with train.compile
    objective: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: DataLoader
    cfg: Config
    dist: DistInfo
    ckpt_path: Path
    precision: Precision
    progress: bool = True
    skipped: SkippedImages | None = None  # data.bad_images=skip: what was left out
    stop: StopRequest | None = None  # SIGTERM / SIGINT: stop at the next step, saved
    batches_done: int = 0  # batches of the current epoch trained (a mid-epoch resume)
    interrupted: bool = False  # the last epoch stopped early on a stop request
    bank: ImageBank | None = None  # data.hold_images: the training images on the device
    pace: Pace | None = None  # with a deadline: stop once the steady pace says it ends late
    past_deadline: bool = False  # the last epoch stopped early on the pace
    first_batch_at: float | None = None  # perf_counter() when this process got its first batch


def train_one_epoch(loop: Loop, epoch: int, step: int, log_rows: list[dict]) -> int:
    model, objective, optimizer = loop.model, loop.objective, loop.optimizer
    cfg, dist = loop.cfg, loop.dist
    model.train()
    if cfg.train.norm_eval:
        set_norm_eval(model)
    precision = loop.precision
    loader = loop.loader
    if loop.batches_done:  # resumed mid-epoch: the batches already trained are not drawn again
        loader = _skipping(loader, loop.batches_done)
    done_in_epoch = loop.batches_done
    loop.interrupted = False
    bar = tqdm(
        loader,
        desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
        disable=not (loop.progress and dist.is_main),
        leave=False,
        dynamic_ncols=True,
    )
    t0 = time.perf_counter()
    # Each step's loss values stay on the device until SETTLE_STEPS steps have queued
    # (or the epoch ends): reading them is a host-device sync, and one per step would
    # stop the host from queueing the next step while the GPU runs this one.
    pending: list[tuple[dict, tuple[str, ...], torch.Tensor, float]] = []

    def settle() -> None:
        """Read the pending steps' losses (one sync); stop at the first non-finite one."""
        if not pending:
            return
        # Steps may differ in their terms (distillation starts after a warm-up): one
        # vector of all their values, split again on the host.
        flat = torch.cat([v for _, _, v, _ in pending]).cpu().tolist()
        start = 0
        for row, names, vector, seconds in pending:
            total, *rest = flat[start : start + len(vector)]
            start += len(vector)
            named = dict(zip(names, rest, strict=True))
            if not math.isfinite(total):
                raise non_finite_error(named, total, row["step"] - 1, row["epoch"] - 1, loop)
            if dist.is_main:
                log_rows.append({**row, **named, "time": seconds})
        if dist.is_main:
            bar.set_postfix({k: f"{v:.4g}" for k, v in named.items()})
        pending.clear()

    for batch in bar:
        if loop.first_batch_at is None:
            loop.first_batch_at = time.perf_counter()
        if loop.skipped is not None:
            loop.skipped.add(batch, f"epoch {epoch + 1}")
        total, terms = forward_loss(
            model, objective, batch, step, precision, dist.device, loop.bank
        )
        backward_step(total, objective, optimizer, cfg.train.grad_clip, dist)
        loop.scheduler.step()
        step += 1
        lr = optimizer.param_groups[0]["lr"]
        row = {"step": step, "epoch": epoch + 1, "lr": lr}
        pending.append((row, tuple(terms), loss_values(total, terms), time.perf_counter() - t0))
        done_in_epoch += 1
        if len(pending) >= SETTLE_STEPS:
            settle()
            if dist.is_main and len(log_rows) >= LOG_FLUSH_STEPS:  # keep log.csv current
                write_log(log_rows, RunDir(loop.ckpt_path.parent).log, append=True)
                log_rows.clear()
            if loop.pace is not None and _pace_says_stop(loop, step):
                loop.interrupted = loop.past_deadline = True
                break
        if loop.stop is not None and _stop_requested(loop, step):
            loop.interrupted = True
            break
        if cfg.train.max_steps and step >= cfg.train.max_steps:
            break
    settle()  # before anything of this epoch is saved (_train checks the pace after it)
    loop.batches_done = done_in_epoch if loop.interrupted else 0
    return step


def _pace_says_stop(loop: Loop, step: int) -> bool:
    """Mark the pace at `step` (the losses were just read back: the device has caught up)
    and whether the run should stop here; under DDP rank 0's clock decides for all."""
    loop.pace.mark(step)
    stop = loop.pace.should_stop(step)
    if loop.dist.enabled:
        flag = torch.tensor([1.0 if stop else 0.0], device=loop.dist.device)
        torch.distributed.broadcast(flag, src=0)
        stop = bool(flag.item())
    return stop


class _SkipFirst(torch.utils.data.Sampler):
    """`sampler`'s indices for this epoch, less the first `n` (already trained)."""

    def __init__(self, sampler, n: int):
        self.sampler, self.n = sampler, n

    def __iter__(self):
        return iter(list(self.sampler)[self.n :])

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.n)


def _skipping(loader: DataLoader, batches: int) -> DataLoader:
    """`loader` for the rest of an epoch whose first `batches` batches were trained: the
    same order and augmentation (seeded by seed, epoch and index), so a resumed run
    trains exactly the batches an uninterrupted one would."""
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=_SkipFirst(loader.sampler, batches * loader.batch_size),
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        collate_fn=loader.collate_fn,
    )


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


def forward_loss(model, objective, batch: dict, step: int, precision: Precision, device, bank=None):
    """The batch on `device`, then the objective's total and terms (under autocast).
    `bank`: the training images held on the device, if they are (data/image_bank.py)."""
    batch = finish_batch(
        to_device(batch, device, non_blocking=True), bank
    )  # data.pipeline "device": crops and targets made here
    batch["image"] = precision.images(batch["image"])
    with precision.context(device):
        return objective(model, batch, step)


def backward_step(total, objective, optimizer, grad_clip: float, dist: DistInfo | None) -> None:
    """Gradients of `total` (averaged over ranks), clipped if asked, and one optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if dist is not None and dist.enabled:
        average_gradients(objective, dist)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(
            [p for g in optimizer.param_groups for p in g["params"]], grad_clip
        )
    optimizer.step()


def average_gradients(module: nn.Module, dist: DistInfo) -> None:
    """All-reduce the gradients DDP does not own (the objective's flow and adapter)."""
    for p in module.parameters():
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(dist.world_size)


def loss_values(total, terms: dict) -> torch.Tensor:
    """The step's total and terms as one float32 vector, still on the device."""
    values = [total, *terms.values()]
    return torch.stack([torch.as_tensor(v, device=total.device).detach().float() for v in values])


def non_finite_error(terms: dict, total: float, step: int, epoch: int, loop: Loop):
    bad = [k for k, v in terms.items() if not math.isfinite(v)] or ["total"]
    ckpt_path = loop.ckpt_path
    return NonFiniteLossError(
        f"loss term {bad[0]!r} is {terms.get(bad[0], total)} at step {step} "
        f"(epoch {epoch + 1}); the run stopped, nothing written so far was lost. The last "
        f"good checkpoint is {ckpt_path if ckpt_path.is_file() else '(none yet)'}; lower "
        "train.lr or set train.grad_clip, then rerun with --resume"
    )


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


def load_teacher(cfg: Config, device) -> nn.Module | None:
    """The frozen TCD teacher: a finished kit run folder, or an mmpose checkpoint (.pth)."""
    if not cfg.loss.teacher_run:
        return None
    if is_mmpose_checkpoint(cfg.loss.teacher_run):
        teacher = load_mmpose_heatmap_model(
            cfg.loss.teacher_run, cfg.data.input_size, cfg.data.heatmap_size
        )
        return teacher.requires_grad_(False).to(device)
    teacher, tcfg = load_run_model(cfg.loss.teacher_run)
    if "hm" not in tcfg.model.heads:
        raise ConfigError(
            f"teacher run {cfg.loss.teacher_run} has heads {tcfg.model.heads}; TCD needs a "
            "heatmap teacher (a run with the 'hm' head, e.g. a simplebaseline preset)"
        )
    if tuple(tcfg.data.heatmap_size) != tuple(cfg.data.heatmap_size) or tuple(
        tcfg.data.input_size
    ) != tuple(cfg.data.input_size):
        raise ConfigError(
            f"teacher run {cfg.loss.teacher_run} uses input {tcfg.data.input_size} / heatmaps "
            f"{tcfg.data.heatmap_size}, the student {cfg.data.input_size} / "
            f"{cfg.data.heatmap_size}; train the teacher at the student's sizes"
        )
    teacher.eval().requires_grad_(False)
    return teacher.to(device)


def train(
    cfg: Config,
    out_dir: Path,
    resume: bool = False,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    deadline: float | None = None,
    clock=time.time,
) -> dict:
    """Train `cfg` into `out_dir`, evaluate, and return the result dict (also result.json).

    With a `deadline` (a value of `clock`), the run stops as soon as its steady pace
    (engine/pace.py: the warm-up left out, the final evaluation included) says it would
    end past the deadline, or the deadline passes before that pace is known. It is saved
    at that very step (a later `resume` continues it exactly) and returns
    {"stopped_at_epoch": n, "stopped_at_step": s, "past_deadline": True}.

    The config is validated first; the main process holds `out_dir`'s lock for the
    whole run, so a second writer is refused at once (RunLockedError).
    """
    validate(cfg)
    dist = init_distributed(cfg.train.device)
    try:
        lock = run_lock(out_dir, wait=False) if dist.is_main else contextlib.nullcontext()
        with lock, StopRequest() as stop:
            return _train(
                cfg,
                Path(out_dir),
                resume,
                progress,
                stop_after_epochs,
                dist,
                deadline,
                stop,
                clock,
            )
    finally:
        cleanup(dist)


def _train(
    cfg,
    out_dir,
    resume,
    progress,
    stop_after_epochs,
    dist: DistInfo,
    deadline=None,
    stop=None,
    clock=time.time,
) -> dict:
    t_start = time.perf_counter()
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = RunDir(out_dir).checkpoint
    if dist.is_main:
        remove_stale_temporaries(out_dir)  # of a process killed while it wrote (SIGKILL)
        if ckpt_path.is_file():
            if not resume:
                raise ExistingRunError(
                    f"{out_dir} already holds a run; pass --resume to continue it or choose "
                    "another --out"
                )
            load_checkpoint(ckpt_path, cfg.hash)  # refuse another config's run, change nothing
        atomic_write_text(cfg.to_json(), RunDir(out_dir).config)

    if dist.is_main:
        paths = resolve_data(cfg.data, progress=progress)
    barrier(dist)
    paths = resolve_data(cfg.data, progress=False)
    setup = {"data": time.perf_counter()}  # when each part of the set-up ended
    info = resolve_layout(cfg.data, paths.train_ann)
    train_ds, val_ds = build_datasets(cfg, paths, info)
    # Before the first step: every image either set names is there (whether it
    # decodes is data.bad_images's business, when it is read).
    check_images(train_ds.instances, "data.train_images")
    check_images(val_ds.instances, "data.val_images")
    if dist.is_main:
        save_layout(info, out_dir)
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if dist.is_main else None
    # data.pipeline "device": the training images held there, or their JPEGs decoded there.
    # Decoding the bank is a one-off burst: every core this process may use takes part.
    decoders = max(cfg.data.num_workers, usable_cores() // dist.world_size)
    setup["annotations"] = time.perf_counter()
    bank = hold_images(train_ds, dist.device, cfg.data.hold_images, decoders, say)
    setup["held images"] = time.perf_counter()
    decodes_on_device(train_ds, dist.device, cfg.data.decode_on_device, say)

    model = build_model(cfg.model, info.num_keypoints, cfg.data.input_size, cfg.data.heatmap_size)
    if cfg.train.sync_bn and dist.enabled and dist.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(dist.device)
    precision = resolve_precision(cfg.train.amp, dist.device)
    model = precision.model(model)
    teacher = load_teacher(cfg, dist.device)
    if teacher is not None:  # the memory format the student's crops come in
        teacher = precision.model(teacher)
    objective = build_objective(cfg, info, model, teacher).to(dist.device)
    params = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]
    optim_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.train.optimizer]
    optimizer = optim_cls(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)

    per_rank_batch = cfg.train.batch_size // dist.world_size
    if per_rank_batch * dist.world_size != cfg.train.batch_size:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} is not divisible by the "
            f"{dist.world_size} processes; choose a multiple"
        )
    loader = make_loader(train_ds, per_rank_batch, True, dist, cfg.train.seed, cfg.data.num_workers)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ConfigError(
            f"the training set has {len(train_ds)} instances, fewer than one batch of "
            f"{cfg.train.batch_size}; lower train.batch_size or add data"
        )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps_per_epoch, cfg.train)
    )
    ddp_model = model
    if dist.enabled:
        # Heads used only through detached outputs get no gradient on some steps.
        ddp_model = DistributedDataParallel(
            model,
            device_ids=[dist.local_rank] if dist.device.type == "cuda" else None,
            find_unused_parameters=True,
        )

    if cfg.train.compile:  # the training forward; evaluation and checkpoints use `model`
        ddp_model = torch.compile(ddp_model)
    skipped = SkippedImages() if cfg.data.bad_images == "skip" else None
    loop = Loop(
        ddp_model,
        objective,
        optimizer,
        scheduler,
        loader,
        cfg,
        dist,
        ckpt_path,
        precision,
        progress,
        skipped,
        stop,
        bank=bank,
    )
    start_epoch, step, train_time, finished = 0, 0, 0.0, False
    if resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, cfg.hash)
        model.load_state_dict(ckpt["model"])
        objective.load_state_dict(ckpt["objective"])
        finished = bool(ckpt.get("finished"))  # a finished run keeps its weights only
        if not finished:
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            set_rng_state(ckpt["rng"])
        start_epoch, step, train_time = ckpt["epoch"], ckpt["step"], ckpt["train_time"]
        loop.batches_done = int(ckpt.get("epoch_batches", 0))  # stopped mid-epoch
        if skipped is not None:
            skipped = loop.skipped = SkippedImages.from_dict(ckpt.get("skipped_images"))
        if dist.is_main:
            truncate_log(RunDir(out_dir).log, step)
            print(f"resumed {out_dir} at epoch {start_epoch} (step {step})", file=sys.stderr)
    if deadline is not None:
        total = cfg.train.epochs * steps_per_epoch
        if cfg.train.max_steps:
            total = min(total, cfg.train.max_steps)
        loop.pace = Pace(
            deadline, total, eval_steps=-(-len(val_ds) // cfg.train.batch_size), clock=clock
        )
        loop.pace.start(step)

    evals = _read_json(RunDir(out_dir).evals, [])
    evals = [e for e in evals if e["epoch"] <= start_epoch]
    trained = start_epoch  # epochs the weights have trained (a finished run's checkpoint keeps it)
    if finished:
        # Re-scoring a finished run: no epoch left, and its final score is replaced.
        start_epoch = cfg.train.epochs
        evals = [e for e in evals if e["epoch"] < cfg.train.epochs]
    # Speed counts only what this process trained and timed (not epochs before a resume).
    seen, timed = 0, 0.0
    for epoch in range(start_epoch, cfg.train.epochs):
        loader.sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        rows: list[dict] = []
        t0 = time.perf_counter()
        step_before = step
        if epoch == start_epoch:
            setup["model, optimiser and loader"] = time.perf_counter()
        step = train_one_epoch(loop, epoch, step, rows)
        if epoch == start_epoch and dist.is_main and loop.first_batch_at is not None:
            setup["the loader's first batch"] = loop.first_batch_at
            print(f"{out_dir.name}: {_setup_line(setup, t_start)}", file=sys.stderr, flush=True)
        replaced = skipped.replaced.get(f"epoch {epoch + 1}", 0) if skipped else 0
        if replaced and dist.is_main:
            print(
                f"epoch {epoch + 1}: {replaced} sample(s) with an unreadable image replaced "
                "(data.bad_images=skip; the files are listed in result.json)",
                file=sys.stderr,
            )
        epoch_time = time.perf_counter() - t0
        train_time += epoch_time
        if loop.interrupted:
            _save_mid_epoch(loop, rows, evals, out_dir, epoch, step, train_time)
            if loop.past_deadline:
                return _stopped_for_deadline(out_dir, epoch, step, cfg, dist)
            raise _interrupted(loop, out_dir, epoch, step, steps_per_epoch)
        timed += epoch_time
        seen += (step - step_before) * cfg.train.batch_size
        done = epoch + 1 == cfg.train.epochs or bool(
            cfg.train.max_steps and step >= cfg.train.max_steps
        )
        if cfg.train.eval_every and (epoch + 1) % cfg.train.eval_every == 0 and not done:
            metrics = evaluate_model(
                model, cfg, info, val_ds, paths, out_dir / "eval", dist, skipped
            )
            along = _heatmap_head_along(model, cfg, info, val_ds, paths, out_dir, dist, skipped)
            evals.append({"epoch": epoch + 1, "step": step, **metrics, **along})
        if dist.is_main:
            write_log(rows, RunDir(out_dir).log, append=True)
            atomic_write_text(json.dumps(evals, indent=1), RunDir(out_dir).evals)
            trained = epoch + 1
            state = _checkpoint(model, objective, cfg, skipped, trained, step, train_time)
            state.update(
                optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), rng=rng_state()
            )
            atomic_save(state, ckpt_path)
        barrier(dist)
        if done:
            break
        if stop_after_epochs is not None and epoch + 1 - start_epoch >= stop_after_epochs:
            return {"stopped_at_epoch": epoch + 1}
        if loop.pace is not None and _pace_says_stop(loop, step):
            return _stopped_for_deadline(out_dir, epoch + 1, step, cfg, dist)

    metrics = evaluate_model(model, cfg, info, val_ds, paths, out_dir, dist, skipped)
    if skipped is not None:
        skipped = SkippedImages.combine(all_gather_objects(skipped, dist))
    along = {}
    if cfg.train.eval_every:  # the learning curve's last point, for both heads
        along = _heatmap_head_along(model, cfg, info, val_ds, paths, out_dir, dist, skipped)
    evals.append({"epoch": cfg.train.epochs, "step": step, **metrics, **along})
    result = {}
    if dist.is_main:
        student = export_student(model, cfg.model.deploy_head).cpu()
        atomic_save(
            {"model": student.state_dict(), "config": cfg.to_dict(), "config_hash": cfg.hash},
            RunDir(out_dir).student,
        )
        w, h = cfg.data.input_size
        result = {
            **run_metadata(cfg),
            "metrics": metrics,
            "student_params": count_params(student),
            "student_macs": count_macs(student, (w, h)),
            "train_time_s": round(train_time, 1),
            "train_images_per_s": round(seen / timed, 1) if seen and timed else None,
            "steps": step,
            "train_instances": len(train_ds),
            "val_instances": len(val_ds),
            "device": _device_name(dist),
            "precision": precision.name,
            "precision_tag": precision.tag,
            "world_size": dist.world_size,
        }
        if loop.first_batch_at is not None and not start_epoch:
            # From train() to the first batch in hand: data, held images, model, workers.
            result["seconds_to_first_step"] = round(loop.first_batch_at - t_start, 1)
        if skipped is not None:
            result["skipped_images"] = skipped.to_dict()
        atomic_write_text(json.dumps(evals, indent=1), RunDir(out_dir).evals)
        atomic_write_text(json.dumps(result, indent=1), RunDir(out_dir).result)
        # A finished run has nothing left to resume: its checkpoint keeps the weights of
        # every head and drops the optimizer, scheduler and RNG state (two thirds of the file
        # under Adam). `train --resume` on the finished run still re-scores it.
        atomic_save(
            {
                **_checkpoint(model, objective, cfg, skipped, trained, step, train_time),
                "finished": True,
            },
            ckpt_path,
        )
    return all_gather_objects(result, dist)[0]


def _setup_line(setup: dict[str, float], t_start: float) -> str:
    """How long the run took to reach its first batch, part by part (the seconds a short
    allocation pays before training)."""
    parts, before = [], t_start
    for what, t in setup.items():
        parts.append(f"{what} {t - before:.1f} s")
        before = t
    return f"first batch {before - t_start:.1f} s after the run started ({', '.join(parts)})"


def _stopped_for_deadline(out_dir: Path, epoch: int, step: int, cfg, dist: DistInfo) -> dict:
    if dist.is_main:
        print(
            f"{out_dir.name}: stopped at step {step}, {epoch} of {cfg.train.epochs} epochs done:"
            " at its steady pace it would end past the deadline; saved, rerun to resume it",
            file=sys.stderr,
        )
    return {"stopped_at_epoch": epoch, "stopped_at_step": step, "past_deadline": True}


def _save_mid_epoch(loop: Loop, rows, evals, out_dir: Path, epoch: int, step: int, train_time):
    """Save a run stopped mid-epoch (by a signal or the pace), resumable at this very step."""
    if loop.dist.is_main:
        write_log(rows, RunDir(out_dir).log, append=True)
        atomic_write_text(json.dumps(evals, indent=1), RunDir(out_dir).evals)
        state = _checkpoint(
            unwrapped(loop.model), loop.objective, loop.cfg, loop.skipped, epoch, step, train_time
        )
        state.update(
            epoch_batches=loop.batches_done,
            optimizer=loop.optimizer.state_dict(),
            scheduler=loop.scheduler.state_dict(),
            rng=rng_state(),
        )
        atomic_save(state, loop.ckpt_path)
    barrier(loop.dist)


def _interrupted(loop: Loop, out_dir: Path, epoch: int, step: int, steps_per_epoch: int):
    """RunInterrupted for a run stopped by a signal and saved, saying how to resume."""
    name = signal.Signals(loop.stop.signum).name
    return RunInterrupted(
        f"{out_dir}: stopped by {name} after step {step} (epoch {epoch + 1}, batch "
        f"{loop.batches_done} of {steps_per_epoch}) and saved; run the same command again "
        "to resume from this step (python -m ocdlib train ... --resume, or reproduce again)",
        loop.stop.signum,
    )


def _heatmap_head_along(model, cfg: Config, info, val_ds, paths, out_dir, dist, skipped) -> dict:
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


def _checkpoint(model, objective, cfg: Config, skipped, epoch: int, step: int, train_time: float):
    """What checkpoint.pt holds of a run after `epoch` besides the optimizer, scheduler
    and RNG state that only an unfinished run needs."""
    return {
        "model": model.state_dict(),
        "objective": objective.state_dict(),
        "epoch": epoch,
        "step": step,
        "train_time": train_time,
        "config_hash": cfg.hash,
        "skipped_images": skipped.to_dict() if skipped is not None else None,
    }


def _read_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def _device_name(dist: DistInfo) -> str:
    if dist.device.type == "cuda":
        return torch.cuda.get_device_name(dist.device)
    return f"cpu ({torch.get_num_threads()} threads)"
