"""Model size and cost: parameters, multiply-accumulates (MACs) and latency.

MACs come from PyTorch's own `torch.utils.flop_counter.FlopCounterMode`, which
counts 2 FLOPs per multiply-accumulate of convolutions (transposed ones
included) and matrix products; MACs = FLOPs / 2. Like most papers' "GFLOPs"
(mmpose's model zoo, fvcore) this counts only those layers, so the figures
are MACs: DeepPose-ResNet-50 at 256x192 is about 4.0 G of them, SimpleBaseline
-ResNet-50 about 5.4 G. Tables name the unit ("GMACs") to avoid the usual
factor-of-two confusion.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import UnknownNameError


def _head_path(model: nn.Module, head: str | None) -> nn.Module:
    """The part of `model` that inference with `head` runs (the whole model when None)."""
    if head is None:
        return model
    heads = getattr(model, "heads", None)
    if heads is None or head not in heads:
        known = list(heads) if heads is not None else []
        raise UnknownNameError(f"model has no head {head!r}; its heads: {known}")
    return nn.Sequential(model.backbone, heads[head])


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode for the measurement, then every submodule's own mode back."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def count_params(module: nn.Module, head: str | None = None) -> int:
    """Number of parameters (of the backbone and `head` only, when given)."""
    return sum(p.numel() for p in _head_path(module, head).parameters())


def _dummy_input(module: nn.Module, input_size: Sequence[int], batch_size: int = 1):
    w, h = input_size
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return torch.zeros(batch_size, 3, int(h), int(w), device=device)


def count_macs(model: nn.Module, input_size: Sequence[int], head: str | None = None) -> int:
    """Multiply-accumulates of one forward pass of a single (3, H, W) image.

    `input_size` is (W, H). With `head`, only the backbone and that head run
    (what deployment runs); without it, the whole model's forward.
    """
    path = _head_path(model, head)
    x = _dummy_input(path, input_size)
    with _eval_mode(path), torch.no_grad(), FlopCounterMode(display=False) as counter:
        path(x)
    return int(counter.get_total_flops()) // 2


def complexity_table(
    model: nn.Module, input_size: Sequence[int], head: str | None = None
) -> dict[str, float]:
    """{"params_M": millions of parameters, "GMACs": 10^9 multiply-accumulates per image}."""
    return {
        "params_M": round(count_params(model, head) / 1e6, 3),
        "GMACs": round(count_macs(model, input_size, head) / 1e9, 3),
    }


@torch.no_grad()
def measure_latency_ms(
    model: nn.Module,
    input_size: Sequence[int],
    head: str | None = None,
    batch_size: int = 1,
    warmup: int = 3,
    runs: int = 10,
) -> float:
    """Median wall-clock milliseconds of one forward pass on the model's device.

    A measurement of this machine at this moment: report it with the device
    and thread count beside it, never as a property of the model.
    """
    path = _head_path(model, head)
    x = _dummy_input(path, input_size, batch_size)
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    times = []
    with _eval_mode(path):
        for i in range(warmup + runs):
            sync()
            t0 = time.perf_counter()
            path(x)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)
