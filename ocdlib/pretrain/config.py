"""A pre-training's config: the pretext, the backbone, the schedule; printable and hashable.

Its presets are named `<pretext>_<backbone size>`: `fractal_w32` pre-trains the cpu
profile's narrow ResNet-18 (`resnet18_w32`) on fractals, `synth_rotation_w32` the same
backbone on rotation prediction, `fractal_r50` the gpu_synth profile's ResNet-50, and
`smoke` is a few steps for the tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, replace

from ..configs.schema import EXECUTION, override
from ..errors import UnknownNameError

# What names a run or says how often to save it, not what it computes.
_NOT_HASHED = ("name", "checkpoint_every", "snapshots")


@dataclass(frozen=True)
class PretrainConfig:
    name: str = "custom"
    pretext: str = "fractal"  # ocdlib/pretrain/pretexts.py: fractal | synth_rotation
    backbone: str = "resnet18_w32"  # a name of ocdlib.models.backbones
    image_size: int = 64  # square pretext images
    classes: int = 200  # fractal: IFS systems; synth_rotation: classes x instances images
    instances: int = 40  # images per class in the bank
    bank_seed: int = 0
    steps: int = 4000
    batch_size: int = 128
    lr: float = 0.1  # SGD with Nesterov momentum, batch 128
    momentum: float = 0.9
    weight_decay: float = 5e-5
    warmup_steps: int = 200
    label_smoothing: float = 0.1
    seed: int = 0
    amp: bool = True  # bf16 autocast where the machine runs it fast (engine/precision.py)
    device: str = field(default="auto", metadata=EXECUTION)  # auto (CUDA when present) | cpu
    checkpoint_every: int = 250  # steps
    # Steps at which to keep the backbone as backbone-step<k>.pth too (points of the
    # downstream-AP-against-minutes curve); they do not change the run, so not hashed.
    snapshots: tuple[int, ...] = ()
    num_threads: int = field(default=0, metadata=EXECUTION)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def hash(self) -> str:
        d = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("name", "checkpoint_every", "snapshots")
            and not f.metadata.get("execution")
        }
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


PRETRAIN_PRESETS: dict[str, PretrainConfig] = {
    # 100 systems: 200 stayed at chance for the first 300 steps where 20 took off at
    # once; 7,200 steps of 128 are about 15 minutes on two bf16 cores.
    "fractal_w32": PretrainConfig(
        name="fractal_w32", classes=100, instances=60, steps=7200, snapshots=(3600,)
    ),
    "synth_rotation_w32": PretrainConfig(
        name="synth_rotation_w32",
        pretext="synth_rotation",
        classes=1,
        instances=6000,
        bank_seed=1000,  # not the seed of the copy the pose models train on
        steps=7200,
        snapshots=(3600,),
    ),
    # For gpu_synth's ResNet-50 on a GPU (docs/GPU.md): 2.56 M images at 128x128.
    "fractal_r50": PretrainConfig(
        name="fractal_r50",
        backbone="resnet50",
        image_size=128,
        classes=200,
        instances=100,
        steps=10000,
        batch_size=256,
        lr=0.2,  # 0.1 at batch 128, scaled linearly
        warmup_steps=500,
        checkpoint_every=1000,
    ),
    "smoke": PretrainConfig(
        name="smoke",
        classes=4,
        instances=4,
        image_size=32,
        steps=6,
        batch_size=8,
        warmup_steps=2,
        checkpoint_every=2,
        num_threads=1,
    ),
}


def pretrain_config(name: str, overrides: list[str] | None = None) -> PretrainConfig:
    """A pre-training preset with `key=value` overrides (`--set steps=2000`)."""
    if name not in PRETRAIN_PRESETS:
        raise UnknownNameError(
            f"unknown pre-training {name!r}; choose one of {sorted(PRETRAIN_PRESETS)}"
        )
    cfg = PRETRAIN_PRESETS[name]
    for item in overrides or []:
        key, _, value = item.partition("=")
        cfg = override(cfg, key.strip(), value)
    return replace(cfg, name=name)
