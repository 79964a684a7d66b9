"""The config tree: frozen dataclasses, their hash, JSON round trip and `--set` overrides.

A `Config` is printable, hashable and saved next to every checkpoint as JSON; the
short hash of the resolved config keys the run cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..synth_spec import SynthPoseSpec
from ..weights import weights_digest

__all__ = [
    "EXECUTION", "HASH_NEUTRAL_DEFAULT", "Config", "DataConfig", "EvalConfig", "LossConfig",
    "ModelConfig", "SynthConfig", "TrainConfig", "override"
]  # fmt: skip

# Metadata for a config field added after runs were cached: while it holds its
# default (the behaviour from before it existed) it is left out of the hash, so
# adding an option does not retrain every cached run.
HASH_NEUTRAL_DEFAULT = {"hash_neutral_default": True}
# Metadata for a field that says how a run executes, not what it computes (threads,
# loader processes): never hashed, so `reproduce --jobs N` can give each of N side-by-side
# runs its share of the cores and still find and fill the same cache entries.
EXECUTION = {"execution": True}


@dataclass(frozen=True)
class SynthConfig:
    """How to generate the SynthPose copy a run trains on (empty `root` in DataConfig)."""

    train: int = 2000
    val: int = 300
    seed: int = 0
    wholebody: bool = False
    image_size: tuple[int, int] = (256, 256)  # (H, W) of generated images
    # Difficulty knobs (see SynthPoseSpec), e.g. --set data.synth.spec.occluders=[0,1].
    spec: SynthPoseSpec = field(default_factory=SynthPoseSpec)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "coco"  # a name in ocdlib.metainfo.DATASETS
    # COCO-layout root: <root>/<train_ann>, <root>/<train_images>/<file_name>.
    # Empty: generate SynthPose (see `synth`) into the cache and use that.
    root: str = ""
    train_ann: str = "annotations/train.json"
    train_images: str = "images/train"
    val_ann: str = "annotations/val.json"
    val_images: str = "images/val"
    synth: SynthConfig = field(default_factory=SynthConfig)
    input_size: tuple[int, int] = (192, 256)  # (W, H), as mmpose
    heatmap_size: tuple[int, int] = (48, 64)  # (W, H)
    sigma: float = 2.0  # heatmap Gaussian sigma, heatmap pixels
    padding: float = 1.25
    # mmpose RandomFlip / RandomHalfBody / RandomBBoxTransform defaults.
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_padding: float = 1.5
    half_body_min_keypoints: int = 9
    shift_factor: float = 0.16
    shift_prob: float = 0.3
    scale_factor: tuple[float, float] = (0.5, 1.5)
    scale_prob: float = 1.0
    rotate_factor: float = 80.0
    rotate_prob: float = 0.6
    num_workers: int = field(default=2, metadata=EXECUTION)  # DataLoader processes
    # An image that cannot be decoded mid-run: "error" stops the run with its name;
    # "skip" trains on another sample instead, and the run's result lists the file.
    bad_images: str = field(default="error", metadata=HASH_NEUTRAL_DEFAULT)
    # OKS sigma of each keypoint (overrides the layout's; required for dataset
    # "from_file", whose layout is read from the annotation file's categories[0]).
    sigmas: tuple[float, ...] = field(default=(), metadata=HASH_NEUTRAL_DEFAULT)
    # Mirror pairs [[i, j], ...] (0-based) or [["l_eye", "r_eye"], ...]; empty: the
    # layout's own, or for "from_file" those found from left_*/right_*, l_*/r_* names.
    flip_pairs: tuple = field(default=(), metadata=HASH_NEUTRAL_DEFAULT)
    # Decode a JPEG at 1/2, 1/4 or 1/8 of its size where the crop samples it no finer
    # (transforms.jpeg_draft): less decoding for people much larger than the crop, at the
    # price of slightly smoother crops (what `python -m ocdlib bench` measures).
    jpeg_draft: bool = field(default=False, metadata=HASH_NEUTRAL_DEFAULT)
    # Where the pixel work runs: "cpu" warps each crop with PIL in the loader and
    # encodes its targets there; "device" has the loader decode only, then cuts every
    # crop of a batch in one grid_sample and encodes the targets in batch on the
    # training device (data/device_pipeline.py). The crops differ slightly (PIL
    # truncates to integers; tests/test_batched_warp.py), so it is part of the hash.
    pipeline: str = field(default="cpu", metadata=HASH_NEUTRAL_DEFAULT)
    # With pipeline "device": decode the training images once and hold them on the
    # device ("auto": where they take at most a quarter of its free memory; "on", "off").
    # The same pixels as the workers' decode, so not part of the hash (data/image_bank.py).
    hold_images: str = field(default="auto", metadata=EXECUTION)
    # With pipeline "device" and images not held: the workers read JPEG bytes and the
    # device decodes them ("auto": on a CUDA device, every image a JPEG, bad_images
    # "error"; "on": on the CPU too; "off"). Another decoder, not in the hash
    # (data/device_decode.py).
    decode_on_device: str = field(default="auto", metadata=EXECUTION)


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet50"  # resnet18/34/50/101/152, mobilenet_v2
    # "none": random init; "imagenet": torchvision's file from the torch hub cache
    # (never downloaded); a kit pre-training's name (ocdlib/pretrained/, e.g.
    # "fractal_w32"); anything else: a path to a local state_dict file. The weights'
    # SHA-256, not this name, enters the hash (ocdlib/weights.py).
    pretrained: str = "none"
    # Heads on the shared backbone: "reg" (DeepPose), "rle" (RLE), "hm" (full
    # heatmap head), "hm_small" (reduced heatmap head).
    heads: tuple[str, ...] = ("reg",)
    hm_deconv_layers: int = 3
    hm_deconv_channels: int = 256
    small_deconv_layers: int = 1
    small_deconv_channels: int = 128
    deploy_head: str = "reg"  # the head kept by export


@dataclass(frozen=True)
class LossConfig:
    """Weights and switches of every term in docs/METHOD.md, section 'The losses'."""

    reg_loss: str = "smooth_l1"  # smooth_l1 | l1 | rle (task loss of the regression head)
    reg_weight: float = 1.0  # ground truth -> regression head
    hm_weight: float = 0.0  # a: ground truth -> heatmap head ("hm")
    task_distill_weight: float = 0.0  # b: L_reg(y_hat, sg[dec(H)], m)
    head_distill_weight: float = 0.0  # c: L_hm(enc(y_hat), sg[H], m)
    # false: term c trains the regression head only, its gradient stops before the backbone
    head_distill_backbone: bool = field(default=True, metadata=HASH_NEUTRAL_DEFAULT)
    distill_decode: str = "argmax"  # argmax (with sub-pixel refinement) | soft_argmax
    render_sigma: float = 2.0  # sigma of enc() in term c, heatmap pixels
    distill_warmup_steps: int = 0  # b and c are off before this step
    distill_unlabelled: bool = True  # distil keypoints unlabelled in ground truth
    hm_loss_scale: float = 1000.0  # heatmap MSE is tiny per pixel; bring it to the regression scale
    # TCD: a frozen heatmap teacher, given as a finished run directory or as an mmpose
    # SimpleBaseline checkpoint file (.pth, ocdlib/models/mmpose_checkpoint.py).
    teacher_run: str = ""
    teacher_source: str = "teacher"  # source of sg[.] terms: "teacher" | "online" | "both"
    cross_head_weight: float = 0.0  # student map -> adapter -> teacher's frozen head
    # Reduced head: "hm_small" learns from ground truth and from "hm".
    small_hm_weight: float = 0.0
    small_head_distill_weight: float = 0.0  # MSE(H_small, sg[H_full])
    small_task_distill_weight: float = 0.0  # L_hm(H_small, enc(sg[dec(H_full)]))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 210
    batch_size: int = 64  # global batch, split over ranks
    optimizer: str = "adam"
    lr: float = 5e-4 * 64 / 512  # mmpose: 5e-4 at batch 512, scaled linearly
    weight_decay: float = 0.0
    warmup_iters: int = 500
    # "step": x`gamma` at each milestone epoch (mmpose); "cosine": a half cosine to zero.
    lr_schedule: str = field(default="step", metadata=HASH_NEUTRAL_DEFAULT)
    milestones: tuple[int, ...] = (170, 200)  # epochs
    gamma: float = 0.1
    grad_clip: float = 0.0  # 0: off
    amp: bool = True  # bf16 + channels_last on GPUs and bf16 CPUs; fp32 + channels_last on AVX-512
    seed: int = 0
    deterministic: bool = False
    eval_every: int = 0  # epochs; 0: only at the end
    max_steps: int = 0  # stop after this many steps (0: no limit)
    norm_eval: bool = False  # freeze BatchNorm statistics (mmpose's norm_eval)
    sync_bn: bool = False  # SyncBatchNorm under multi-GPU DDP (CUDA only)
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    num_threads: int = field(default=0, metadata=EXECUTION)  # torch CPU threads (0: default)
    # Train through torch.compile (the training forward only): on a GPU the host then
    # issues far fewer kernels per step (benchmarks/bench_gpu_training.py measures it);
    # the first steps pay the compilation. Same maths, other kernels: not in the hash.
    compile: bool = field(default=False, metadata=EXECUTION)


@dataclass(frozen=True)
class EvalConfig:
    flip_test: bool = True
    det_file: str = ""  # COCO detection results; "" = ground-truth boxes
    det_score_thr: float = 0.0
    keypoint_score_thr: float = 0.2  # for instance rescoring
    oks_nms_thr: float = 0.9
    batch_size: int = 64


@dataclass(frozen=True)
class Config:
    name: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @property
    def hash(self) -> str:
        """Short stable hash of everything that changes the result (the name does not)."""
        d = _hash_dict(self)
        d.pop("name")
        # Weights are identified by their content: a run from other weights is never
        # served for this one; "none" and "imagenet" hash as the names they are.
        digest = weights_digest(d["model"]["pretrained"])
        if digest:
            d["model"]["pretrained"] = digest
        # A teacher is named by its run folder (whose name holds its own hash), not by
        # where the run cache happens to live: moving a checkout keeps TCD runs cached.
        # The folder's precision suffix is left out: a student trains in the precision
        # its machine grants, as its teacher did, and its own folder carries that suffix.
        if d["loss"]["teacher_run"]:
            name = Path(d["loss"]["teacher_run"]).name
            d["loss"]["teacher_run"] = re.sub(r"-(bf16|fp32)$", "", name)
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        return _from_dict(cls, d, "")


def _hash_dict(node) -> dict[str, Any]:
    """`asdict`, less EXECUTION fields and HASH_NEUTRAL_DEFAULT fields at their default."""
    out = {}
    for f in fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = _hash_dict(value)
        elif f.metadata.get("execution"):
            continue
        elif f.metadata.get("hash_neutral_default") and value == _default_of(f):
            continue
        else:
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return json.loads(json.dumps(out))


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _from_dict(cls, d: dict[str, Any], where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(known)
    if unknown:
        raise ConfigError(f"unknown config field(s) {sorted(unknown)} in {where or 'config'}")
    kwargs = {}
    for name, value in d.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _from_dict(type(default), value, f"{where}{name}.")
        elif isinstance(default, tuple):
            kwargs[name] = _as_tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _as_tuple(value) -> tuple:
    """A JSON list as a (nested) tuple, so that a config stays hashable."""
    return tuple(_as_tuple(v) if isinstance(v, (list, tuple)) else v for v in value)


def override(cfg: Config, key: str, value: Any) -> Config:
    """Return `cfg` with the dotted leaf `key` (e.g. "train.lr") set to `value`.

    A string value is parsed as JSON when it parses (numbers, booleans, lists),
    else kept as a string, then checked against the type of the field's default.
    """
    parts = key.split(".")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass

    def set_in(node, path, where):
        name = path[0]
        if not dataclasses.is_dataclass(node) or name not in {f.name for f in fields(node)}:
            valid = [f.name for f in fields(node)] if dataclasses.is_dataclass(node) else []
            raise ConfigError(
                f"--set {key}: no field {name!r} in {where.rstrip('.') or 'config'}; "
                f"choose from {valid}"
            )
        current = getattr(node, name)
        if len(path) > 1:
            return replace(node, **{name: set_in(current, path[1:], f"{where}{name}.")})
        return replace(node, **{name: _coerce(current, value, key)})

    return set_in(cfg, parts, "")


def _coerce(current: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"--set {key}: is a section, set one of its fields (e.g. {key}.<field>)")
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"--set {key}={value!r}: expected true or false")
    if isinstance(current, tuple):
        if isinstance(value, (list, tuple)):
            return _as_tuple(value)
        raise ConfigError(f"--set {key}={value!r}: expected a list such as [1, 2]")
    if isinstance(current, float) and isinstance(value, (int, float)):
        return float(value)
    if isinstance(current, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(current, str):
        return str(value)
    raise ConfigError(f"--set {key}={value!r}: expected {type(current).__name__}")
