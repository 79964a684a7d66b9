"""Mixed precision: bf16 autocast and channels_last where the device runs them fast.

On CUDA that is every recent GPU. On a CPU it is one with AVX-512 BF16 or AMX
(bf16 matrix instructions); elsewhere bf16 is emulated and slower than fp32, so
`train.amp` stays a request that each machine grants only where it pays. On an
AVX-512 CPU without bf16, channels_last alone still pays in fp32 (oneDNN's NHWC
convolutions: 1.16x a cpu-profile training step and 1.47x ResNet-50 inference at
batch 32, measured on a 2-core Xeon), so it is granted there with fp32.
`train.amp=False` is plain fp32 in the default memory format everywhere, CUDA
included. Losses run in fp32 whatever the setting (see ocdlib/losses/).

What a machine grants is part of a run's identity: `Precision.tag` ("bf16" or
"fp32") names the run's folder in the run cache (ocdlib/runs/cache.py) and is
recorded in its result.json, so a run trained in one precision is never served
as the answer to a request that this machine trains in the other.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


CHANNELS_LAST_CPU_FLAGS = ("avx512f",)


@functools.cache
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags from Linux /proc/cpuinfo (empty where it cannot be read)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_fast_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU advertises bf16 matrix instructions."""
    return any(f in cpu_flags(cpuinfo) for f in BF16_CPU_FLAGS)


def cpu_prefers_channels_last(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True on AVX-512 CPUs, where fp32 convolutions run faster in channels_last."""
    return any(f in cpu_flags(cpuinfo) for f in CHANNELS_LAST_CPU_FLAGS)


@dataclass(frozen=True)
class Precision:
    autocast: bool  # bf16 autocast of the forward pass
    channels_last: bool  # NHWC images and weights

    @property
    def tag(self) -> str:
        """The arithmetic the run trains in: "bf16" or "fp32" (the memory format is a
        layout, not a precision)."""
        return "bf16" if self.autocast else "fp32"

    @property
    def name(self) -> str:
        if self.autocast:
            return "bf16 autocast + channels_last"
        return "fp32 + channels_last" if self.channels_last else "fp32"

    def context(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def images(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


def resolve_precision(amp: bool, device: torch.device) -> Precision:
    """What `train.amp` means on `device`: bf16 + channels_last where fast, else fp32
    (in channels_last where the CPU runs that faster)."""
    if device.type == "cuda":
        return Precision(autocast=amp, channels_last=amp)
    fast = amp and device.type == "cpu" and cpu_has_fast_bf16()
    nhwc = fast or (amp and device.type == "cpu" and cpu_prefers_channels_last())
    return Precision(autocast=fast, channels_last=nhwc)


def tag_of_record(result: dict) -> str:
    """The precision tag of a finished run's result.json; records written before the tag
    existed say it in words ("bf16 autocast + channels_last", "fp32", ...)."""
    if result.get("precision_tag"):
        return result["precision_tag"]
    return "bf16" if str(result.get("precision", "")).startswith("bf16") else "fp32"
