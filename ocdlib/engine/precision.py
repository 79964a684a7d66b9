"""Mixed precision: bf16 autocast and channels_last where the device runs them fast.

On CUDA that is every recent GPU. On a CPU it is one with AVX-512 BF16 or AMX
(bf16 matrix instructions); elsewhere bf16 is emulated and slower than fp32, so
`train.amp` stays a request that each machine grants only where it pays.
Losses run in fp32 whatever the setting (see losses.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_has_fast_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU advertises bf16 matrix instructions (Linux /proc/cpuinfo flags)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return any(f in flags for f in BF16_CPU_FLAGS)
    return False


@dataclass(frozen=True)
class Precision:
    autocast: bool  # bf16 autocast of the forward pass
    channels_last: bool  # NHWC images and weights

    @property
    def name(self) -> str:
        return "bf16 autocast + channels_last" if self.autocast else "fp32"

    def context(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def images(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


def resolve_precision(amp: bool, device: torch.device) -> Precision:
    """What `train.amp` means on `device`: bf16 + channels_last where fast, else fp32."""
    if device.type == "cuda":
        return Precision(autocast=amp, channels_last=True)
    fast = amp and device.type == "cpu" and cpu_has_fast_bf16()
    return Precision(autocast=fast, channels_last=fast)
