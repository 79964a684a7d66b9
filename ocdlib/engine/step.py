"""One training step and the batches it draws: the loader (which can resume mid-epoch),
the learning-rate schedule, the forward and backward pass, and its losses read back."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from ..data.device_pipeline import collate_of, finish_batch, to_device
from .distributed import DistInfo
from .precision import Precision


class NonFiniteLossError(RuntimeError):
    pass


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


class _SkipFirst(torch.utils.data.Sampler):
    """`sampler`'s indices for this epoch, less the first `n` (already trained)."""

    def __init__(self, sampler, n: int):
        self.sampler, self.n = sampler, n

    def __iter__(self):
        return iter(list(self.sampler)[self.n :])

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.n)


def skipping(loader: DataLoader, batches: int) -> DataLoader:
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


def set_norm_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


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


def non_finite_error(terms: dict, total: float, step: int, epoch: int, ckpt_path: Path):
    bad = [k for k, v in terms.items() if not math.isfinite(v)] or ["total"]
    return NonFiniteLossError(
        f"loss term {bad[0]!r} is {terms.get(bad[0], total)} at step {step} "
        f"(epoch {epoch + 1}); the run stopped, nothing written so far was lost. The last "
        f"good checkpoint is {ckpt_path if ckpt_path.is_file() else '(none yet)'}; lower "
        "train.lr or set train.grad_clip, then rerun with --resume"
    )
