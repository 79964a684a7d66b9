"""The training loop: `train(cfg)` sets a run up and trains it epoch by epoch.

One process on a CPU, or one per GPU under `torchrun --nproc_per_node=N`
(DDP with a DistributedSampler). What happens along the way, besides the steps, is a
hook each (hooks.py): messages, evaluation along the way, the run's files, a stop
after some epochs, a deadline's pace, a stop on SIGTERM / SIGINT. Everything a run
writes lives in its run directory: config.json, checkpoint.pt (each epoch, atomically;
once the run has finished, its weights only), log.csv (every loss term per step),
evals.json, metrics.json, predictions.json, student.pt and result.json (the run cache
reads the last one).
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..configs import Config, validate
from ..cores import usable_cores
from ..data.coco import check_images
from ..data.dataset import SkippedImages, build_datasets
from ..data.device_decode import decodes_on_device
from ..data.image_bank import hold_images
from ..data.layout import resolve_layout, save_layout
from ..data.prepare import resolve_data
from ..errors import ConfigError, ExistingRunError
from ..losses import build_objective
from ..models import build_model, export_student
from ..models.complexity import count_macs, count_params
from ..models.mmpose_checkpoint import is_mmpose_checkpoint, load_mmpose_heatmap_model
from .checkpoint import atomic_save, atomic_write_text, load_checkpoint, remove_stale_temporaries
from .distributed import DistInfo, all_gather_objects, barrier, cleanup, init_distributed
from .hooks import (
    Checkpointer,
    Deadline,
    EvaluateAlong,
    Interrupts,
    Loop,
    ReplacedImages,
    SetUpTime,
    StopAfterEpochs,
    score,
    stopped,
    unwrapped,
)
from .interrupt import StopRequest
from .precision import Precision, resolve_precision
from .run_dir import RunDir, load_run_model, run_lock, run_metadata
from .step import (
    NonFiniteLossError,  # noqa: F401 (raised by the loop; imported from here)
    backward_step,
    forward_loss,
    loss_values,
    lr_factor,
    make_loader,
    non_finite_error,
    set_norm_eval,
    skipping,
)

SETTLE_STEPS = 25  # steps whose losses are read from the device at once


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (global state user code may use)
    torch.manual_seed(seed)
    # Both ways: runs that follow one another in one process (a time box) must not
    # inherit an earlier run's setting.
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if deterministic:
        torch.backends.cudnn.benchmark = False


def train_one_epoch(loop: Loop) -> None:
    """Train `loop.epoch` from `loop.step` (its rest after a stop mid-epoch), appending its
    log rows to `loop.rows`, until it ends or a hook stops it (`loop.interrupted`)."""
    model, objective, optimizer = loop.model, loop.objective, loop.optimizer
    cfg, dist = loop.cfg, loop.dist
    model.train()
    if cfg.train.norm_eval:
        set_norm_eval(model)
    precision = loop.precision
    loader = loop.loader
    if loop.batches_done:  # resumed mid-epoch: the batches already trained are not drawn again
        loader = skipping(loader, loop.batches_done)
    done_in_epoch = loop.batches_done
    loop.interrupted = False
    bar = tqdm(
        loader,
        desc=f"epoch {loop.epoch + 1}/{cfg.train.epochs}",
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
                step, epoch = row["step"] - 1, row["epoch"] - 1
                raise non_finite_error(named, total, step, epoch, loop.files.checkpoint)
            if dist.is_main:
                loop.rows.append({**row, **named, "time": seconds})
        if dist.is_main:
            bar.set_postfix({k: f"{v:.4g}" for k, v in named.items()})
        pending.clear()

    for batch in bar:
        if loop.first_batch_at is None:
            loop.first_batch_at = time.perf_counter()
        if loop.skipped is not None:
            loop.skipped.add(batch, f"epoch {loop.epoch + 1}")
        total, terms = forward_loss(
            model, objective, batch, loop.step, precision, dist.device, loop.bank
        )
        backward_step(total, objective, optimizer, cfg.train.grad_clip, dist)
        loop.scheduler.step()
        loop.step += 1
        lr = optimizer.param_groups[0]["lr"]
        row = {"step": loop.step, "epoch": loop.epoch + 1, "lr": lr}
        pending.append((row, tuple(terms), loss_values(total, terms), time.perf_counter() - t0))
        done_in_epoch += 1
        settled = len(pending) >= SETTLE_STEPS
        if settled:
            settle()
        for hook in loop.hooks:
            hook.after_step(loop, settled)
            if loop.stop_reason:
                break
        if loop.stop_reason:
            loop.interrupted = True
            break
        if cfg.train.max_steps and loop.step >= cfg.train.max_steps:
            break
    settle()  # before anything of this epoch is saved (the hooks check the pace after it)
    loop.batches_done = done_in_epoch if loop.interrupted else 0


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
    precision: Precision | None = None,
    command: str | None = None,
) -> dict:
    """Train `cfg` into `out_dir`, evaluate, and return the result dict (also result.json).

    `command` is what result.json records as the command that made the run (default:
    this process's own command line).

    `precision` is the one the caller resolved for this run (the run cache names the
    run's folder by it, `ocdlib.runs.cache.run_precision`); a run trained without one
    resolves it here, from `train.amp` and the device.

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
        main = dist.is_main
        lock = run_lock(out_dir, False, command or "") if main else contextlib.nullcontext()
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
                precision,
                command,
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
    precision: Precision | None = None,
    command: str | None = None,
) -> dict:
    loop = _set_up(cfg, out_dir, resume, progress, dist, stop, precision)
    loop.command = command
    # In this order: an epoch's evaluation is saved with it, the pace starts from the
    # step a resume restored, and a stop returns or raises only once the run is saved.
    loop.hooks = [SetUpTime(), ReplacedImages(), EvaluateAlong(), Checkpointer(resume)]
    if stop_after_epochs is not None:
        loop.hooks.append(StopAfterEpochs(stop_after_epochs))
    if deadline is not None:
        loop.hooks.append(Deadline(deadline, clock))
    if stop is not None:
        loop.hooks.append(Interrupts())
    for hook in loop.hooks:
        hook.before_train(loop)

    for epoch in range(loop.start_epoch, cfg.train.epochs):
        loop.epoch, loop.rows = epoch, []
        loop.loader.sampler.set_epoch(epoch)
        loop.train_ds.set_epoch(epoch)
        for hook in loop.hooks:
            hook.before_epoch(loop)
        t0, step_before = time.perf_counter(), loop.step
        train_one_epoch(loop)
        epoch_time = time.perf_counter() - t0
        loop.train_time += epoch_time
        if not loop.interrupted:  # speed counts only what this process trained and timed
            loop.timed += epoch_time
            loop.seen += (loop.step - step_before) * cfg.train.batch_size
        loop.done = epoch + 1 == cfg.train.epochs or bool(
            cfg.train.max_steps and loop.step >= cfg.train.max_steps
        )
        for hook in loop.hooks:
            hook.after_epoch(loop)
        if loop.stop_reason:
            return stopped(loop)
        if loop.done:
            break

    # The learning curve's last point, for both heads where it has a curve.
    metrics = score(loop, loop.out_dir, cfg.train.epochs, bool(cfg.train.eval_every), final=True)
    if dist.is_main:
        loop.result = _result(loop, metrics)
    for hook in loop.hooks:
        hook.after_train(loop)
    return all_gather_objects(loop.result, dist)[0]


def _set_up(
    cfg: Config, out_dir: Path, resume: bool, progress: bool, dist: DistInfo, stop, precision
):
    """The run directory checked, the data, model, objective, optimiser and loader."""
    t_start = time.perf_counter()
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    _claim_run_dir(cfg, out_dir, resume, dist)
    paths, info, train_ds, val_ds, bank, setup = _set_up_data(cfg, out_dir, progress, dist)
    model, precision, objective, optimizer = _set_up_model(cfg, info, dist, precision)
    loader, scheduler = _set_up_loader(cfg, train_ds, optimizer, dist)
    return Loop(
        model=_wrapped(model, cfg, dist),
        objective=objective,
        optimizer=optimizer,
        scheduler=scheduler,
        loader=loader,
        cfg=cfg,
        dist=dist,
        out_dir=out_dir,
        precision=precision,
        train_ds=train_ds,
        val_ds=val_ds,
        info=info,
        paths=paths,
        progress=progress,
        skipped=SkippedImages() if cfg.data.bad_images == "skip" else None,
        stop=stop,
        bank=bank,
        started_at=t_start,
        setup_times=setup,
    )


def _claim_run_dir(cfg: Config, out_dir: Path, resume: bool, dist: DistInfo) -> None:
    """The folder made, a killed write's leftovers removed, another run's refused, the
    config written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = RunDir(out_dir)
    if not dist.is_main:
        return
    remove_stale_temporaries(out_dir)  # of a process killed while it wrote (SIGKILL)
    if files.checkpoint.is_file():
        if not resume:
            raise ExistingRunError(
                f"{out_dir} already holds a run; pass --resume to continue it or choose "
                "another --out"
            )
        load_checkpoint(files.checkpoint, cfg.hash)  # refuse another config's run
    atomic_write_text(cfg.to_json(), files.config)


def _set_up_data(cfg: Config, out_dir: Path, progress: bool, dist: DistInfo):
    """The data (generated on rank 0 first), its layout, the datasets, the images held on
    the device; and when each part of the set-up ended."""
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
    return paths, info, train_ds, val_ds, bank, setup


def _set_up_model(cfg: Config, info, dist: DistInfo, precision: Precision | None):
    """The model in its precision and memory format, the teacher, the objective and the
    optimiser."""
    model = build_model(cfg.model, info.num_keypoints, cfg.data.input_size, cfg.data.heatmap_size)
    if cfg.train.sync_bn and dist.enabled and dist.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(dist.device)
    precision = precision or resolve_precision(cfg.train.amp, dist.device)
    model = precision.model(model)
    teacher = load_teacher(cfg, dist.device)
    if teacher is not None:  # the memory format the student's crops come in
        teacher = precision.model(teacher)
    objective = build_objective(cfg, info, model, teacher).to(dist.device)
    params = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]
    optim_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.train.optimizer]
    optimizer = optim_cls(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    return model, precision, objective, optimizer


def _set_up_loader(cfg: Config, train_ds, optimizer, dist: DistInfo):
    """The training loader (this rank's share of the batch) and the learning-rate schedule."""
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
    return loader, scheduler


def _wrapped(model: nn.Module, cfg: Config, dist: DistInfo) -> nn.Module:
    """The model the training forward runs: under DDP and, where asked, compiled."""
    if dist.enabled:
        # Heads used only through detached outputs get no gradient on some steps.
        model = DistributedDataParallel(
            model,
            device_ids=[dist.local_rank] if dist.device.type == "cuda" else None,
            find_unused_parameters=True,
        )
    if cfg.train.compile:  # the training forward; evaluation and checkpoints unwrap it
        model = torch.compile(model)
    return model


def _result(loop: Loop, metrics: dict) -> dict:
    """student.pt written, and result.json's fields."""
    cfg, dist = loop.cfg, loop.dist
    student = export_student(unwrapped(loop.model), cfg.model.deploy_head).cpu()
    atomic_save(
        {"model": student.state_dict(), "config": cfg.to_dict(), "config_hash": cfg.hash},
        loop.files.student,
    )
    w, h = cfg.data.input_size
    speed = round(loop.seen / loop.timed, 1) if loop.seen and loop.timed else None
    result = {
        **run_metadata(cfg, loop.command),
        "metrics": metrics,
        "student_params": count_params(student),
        "student_macs": count_macs(student, (w, h)),
        "train_time_s": round(loop.train_time, 1),
        "train_images_per_s": speed,
        "steps": loop.step,
        "train_instances": len(loop.train_ds),
        "val_instances": len(loop.val_ds),
        "device": _device_name(dist),
        "precision": loop.precision.name,
        "precision_tag": loop.precision.tag,
        "world_size": dist.world_size,
    }
    if loop.first_batch_at is not None and not loop.start_epoch:
        # From train() to the first batch in hand: data, held images, model, workers.
        result["seconds_to_first_step"] = round(loop.first_batch_at - loop.started_at, 1)
    if loop.skipped is not None:
        result["skipped_images"] = loop.skipped.to_dict()
    return result


def _device_name(dist: DistInfo) -> str:
    if dist.device.type == "cuda":
        return torch.cuda.get_device_name(dist.device)
    return f"cpu ({torch.get_num_threads()} threads)"
