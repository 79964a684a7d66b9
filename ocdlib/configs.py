"""Typed run configurations and their named presets.

A `Config` is a frozen dataclass tree: printable, hashable, saved next to every
checkpoint as JSON. Presets are plain functions below; `--set a.b=value`
overrides any leaf. The short hash of the resolved config keys the run cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from math import inf
from pathlib import Path
from typing import Any

from ocdlib.errors import ConfigError, UnknownNameError
from ocdlib.metainfo import DATASETS, FROM_FILE

from .synth_spec import SynthPoseSpec

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
    # (never downloaded);
    # anything else: a path to a local state_dict file.
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


# ---------------------------------------------------------------------------
# Ranges: `validate(cfg)` checks every numeric and choice field before a run
# starts, so that a wrong --set fails in one line naming the field, not as a
# traceback from deep inside torch minutes later.

BAD_IMAGE_MODES = ("error", "skip")
CHOICES = {
    "data.bad_images": BAD_IMAGE_MODES,
    "data.pipeline": ("cpu", "device"),
    "data.hold_images": ("auto", "on", "off"),
    "data.decode_on_device": ("auto", "on", "off"),
    "loss.reg_loss": ("smooth_l1", "l1", "rle"),
    "loss.distill_decode": ("argmax", "soft_argmax"),
    "loss.teacher_source": ("teacher", "online", "both"),
    "train.optimizer": ("adam", "adamw"),
    "train.lr_schedule": ("step", "cosine"),
    "train.device": ("auto", "cpu", "cuda"),
}
POSITIVE = (
    "data.sigma", "data.padding", "data.half_body_padding", "data.synth.train",
    "data.synth.val", "model.hm_deconv_channels", "model.small_deconv_channels",
    "loss.render_sigma", "loss.hm_loss_scale", "train.epochs", "train.batch_size",
    "train.lr", "train.gamma", "eval.batch_size",
)  # fmt: skip
NON_NEGATIVE = (
    "data.half_body_min_keypoints", "data.shift_factor", "data.rotate_factor",
    "data.num_workers", "model.hm_deconv_layers", "model.small_deconv_layers",
    "loss.reg_weight", "loss.hm_weight", "loss.task_distill_weight",
    "loss.head_distill_weight", "loss.distill_warmup_steps", "loss.cross_head_weight",
    "loss.small_hm_weight", "loss.small_head_distill_weight",
    "loss.small_task_distill_weight", "train.weight_decay", "train.warmup_iters",
    "train.grad_clip", "train.eval_every", "train.max_steps", "train.num_threads",
)  # fmt: skip
PROBABILITIES = (
    "data.flip_prob", "data.half_body_prob", "data.shift_prob", "data.scale_prob",
    "data.rotate_prob", "eval.det_score_thr", "eval.keypoint_score_thr", "eval.oks_nms_thr",
)  # fmt: skip


def _get(cfg: Config, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _bad(key: str, value: Any, need: str) -> ConfigError:
    shown = json.dumps(list(value) if isinstance(value, tuple) else value)
    return ConfigError(f"config field {key}={shown}: {need}; fix it with --set {key}=...")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != inf


def _check_size(cfg: Config, key: str, minimum: int = 1) -> tuple[int, int]:
    value = _get(cfg, key)
    ok = len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if not ok or min(value) < minimum:
        raise _bad(key, value, f"must be two whole numbers >= {minimum} (W, H), e.g. [192, 256]")
    return value


def validate(cfg: Config) -> Config:
    """Check every field's type and range; raise ConfigError naming the first bad one."""
    for key, choices in CHOICES.items():
        if _get(cfg, key) not in choices:
            raise _bad(key, _get(cfg, key), f"must be one of {list(choices)}")
    if cfg.data.dataset not in (*DATASETS, FROM_FILE):
        raise _bad("data.dataset", cfg.data.dataset, f"must be one of {[*DATASETS, FROM_FILE]}")
    for keys, test, need in (
        (POSITIVE, lambda v: v > 0, "must be > 0"),
        (NON_NEGATIVE, lambda v: v >= 0, "must be >= 0"),
        (PROBABILITIES, lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ):
        for key in keys:
            value = _get(cfg, key)
            if not _is_number(value) or not test(value):
                raise _bad(key, value, need)
    # The backbone's stride-32 map needs at least 32 pixels each way.
    w, h = _check_size(cfg, "data.input_size", minimum=32)
    hw, hh = _check_size(cfg, "data.heatmap_size")
    if w % hw or h % hh or w // hw != h // hh:
        raise _bad(
            "data.heatmap_size",
            cfg.data.heatmap_size,
            f"must divide data.input_size={list(cfg.data.input_size)} by one whole stride in "
            f"both directions (e.g. [{w // 4}, {h // 4}] for stride 4)",
        )
    _check_size(cfg, "data.synth.image_size", minimum=32)
    lo_hi = cfg.data.scale_factor
    if len(lo_hi) != 2 or not all(_is_number(v) and v > 0 for v in lo_hi) or lo_hi[0] > lo_hi[1]:
        raise _bad("data.scale_factor", lo_hi, "must be [low, high] with 0 < low <= high")
    if not all(_is_number(v) and v > 0 for v in cfg.data.sigmas):
        raise _bad("data.sigmas", cfg.data.sigmas, "must be positive numbers, one per keypoint")
    if cfg.data.dataset == FROM_FILE and not cfg.data.sigmas:
        raise ConfigError(
            "config field data.sigmas is empty: data.dataset=from_file reads keypoint names "
            "and skeleton from the annotation file, but AP needs one OKS sigma per keypoint "
            "and none is guessed; pass --set data.sigmas=[0.079,0.079,...] (COCO's are in "
            "ocdlib/metainfo.py)"
        )
    for pair in cfg.data.flip_pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise _bad("data.flip_pairs", cfg.data.flip_pairs, "must be pairs [[i, j], ...]")
    if not all(isinstance(m, int) and m >= 0 for m in cfg.train.milestones):
        raise _bad("train.milestones", cfg.train.milestones, "must be whole epochs >= 0")
    return cfg


# ---------------------------------------------------------------------------
# Presets: a config base (data, backbone, schedule) combined with a method (heads
# and loss terms). Preset names are "<base>_<method>", e.g. "cpu_ocd" or
# "coco_r50_deeppose"; a bare base name means its DeepPose baseline.


def _base_smoke() -> Config:
    """Seconds on a CPU: for tests and nbval. Numbers from it mean nothing."""
    return Config(
        data=DataConfig(
            synth=SynthConfig(train=48, val=12, seed=0, image_size=(128, 128)),
            input_size=(48, 64),
            heatmap_size=(12, 16),
            sigma=1.5,
            num_workers=0,
        ),
        model=ModelConfig(backbone="resnet18", hm_deconv_channels=64, small_deconv_channels=32),
        train=TrainConfig(
            epochs=2, batch_size=16, lr=1e-3, warmup_iters=0, milestones=(), num_threads=1
        ),
        eval=EvalConfig(batch_size=32),
    )


# SynthPose for the cpu profile: one figure per image and light clutter, so that
# models trained from scratch for minutes on two CPU cores learn enough to be
# told apart (measured in docs/CALIBRATION.md). The
# full-difficulty defaults of SynthPoseSpec are used by gpu_synth.
CPU_SYNTH_SPEC = SynthPoseSpec(
    people_per_image=(1, 1),
    person_height=(0.6, 0.9),
    truncation_prob=0.05,
    rotation_std_deg=5.0,
    large_rotation_prob=0.0,
    occluders=(0, 1),
    occluder_size=(0.1, 0.2),
    clutter_shapes=(0, 4),
    limb_clutter_prob=0.0,
    pattern_prob=0.0,
    texture_strength=0.3,
    background_variation=0.5,
    blur_prob=0.1,
    noise_prob=0.2,
)


CPU_EPOCHS = 16  # x 4000 crops


def _base_cpu() -> Config:
    """The default SynthPose reproduction on a 2-core CPU (narrow ResNet-18 from scratch, 128x96).

    Calibrated on the DeepPose and SimpleBaseline learning curves (docs/CALIBRATION.md):
    64k training crops, Adam at lr 2e-3 (1e-3 left SimpleBaseline
    at 32.7 AP, under its 35 AP floor), lr x0.1 for the last two epochs (a cosine
    schedule did worse for the heatmap model at this budget), bf16 autocast where the CPU
    has it, L1 as the regression task loss (SmoothL1 with beta 1 is a squared error on
    coordinates in [0, 1] and learns about 2.5x slower from scratch), and lighter
    augmentation than mmpose's (rotation 30 degrees, scale 0.75-1.25) for a short schedule.
    """
    return Config(
        data=DataConfig(
            synth=SynthConfig(
                train=4000, val=300, seed=0, image_size=(128, 128), spec=CPU_SYNTH_SPEC
            ),
            input_size=(96, 128),
            heatmap_size=(24, 32),
            sigma=1.5,
            rotate_factor=30.0,
            scale_factor=(0.75, 1.25),
            num_workers=0,
        ),
        model=ModelConfig(backbone="resnet18_w32", hm_deconv_channels=64, small_deconv_channels=32),
        loss=LossConfig(reg_loss="l1"),
        train=TrainConfig(
            epochs=CPU_EPOCHS,
            batch_size=32,
            lr=2e-3,
            warmup_iters=100,
            milestones=(CPU_EPOCHS - 2,),
        ),
        eval=EvalConfig(batch_size=64),
    )


def _base_cpu_wholebody() -> Config:
    """The cpu profile on SynthPose-WholeBody (133 keypoints) at a higher resolution.

    Faces and hands are a few pixels wide at 128x96 and their OKS sigmas are a fraction
    of the body's, so the whole-body runs get 192x192 images and 160x120 crops."""
    cfg = _base_cpu()
    data = replace(
        cfg.data,
        dataset="coco_wholebody",
        synth=replace(cfg.data.synth, wholebody=True, image_size=(192, 192)),
        input_size=(120, 160),
        heatmap_size=(30, 40),
        sigma=1.5,
    )
    return replace(cfg, data=data)


# gpu_synth's size: one run of 12 epochs of 15,000 images (about 37,400 figures an
# epoch, 450 k crops) lets DeepPose, SimpleBaseline and OCD of one seed finish in one
# 9-minute command on an H200 (docs/GPU.md has the arithmetic).
GPU_SYNTH_IMAGES = 15000
GPU_SYNTH_EPOCHS = 12


def _base_gpu_synth() -> Config:
    """SynthPose at the COCO crop size with ResNet-50 from scratch: 450 k crops a run."""
    return Config(
        data=DataConfig(
            synth=SynthConfig(train=GPU_SYNTH_IMAGES, val=1000, seed=0, image_size=(320, 320)),
            input_size=(192, 256),
            heatmap_size=(48, 64),
            sigma=2.0,
            # The cpu pipeline's 12 loader processes fed OCD-R50 2,400 images/s on an
            # H100 with 16 cores, below the model's 2,891 (reports/gpu_synth/throughput.md).
            # The device pipeline cuts and encodes on the GPU from images decoded once
            # and held there (data.hold_images), so the workers only draw the geometry.
            pipeline="device",
            num_workers=4,
        ),
        model=ModelConfig(backbone="resnet50"),
        # mmpose's steps at 81% and 95% of 210 epochs; here at 10 and 11 of 12.
        train=TrainConfig(
            epochs=GPU_SYNTH_EPOCHS,
            batch_size=128,
            lr=1e-3,
            warmup_iters=500,
            milestones=(GPU_SYNTH_EPOCHS - 2, GPU_SYNTH_EPOCHS - 1),
        ),
        eval=EvalConfig(batch_size=256),
    )


def _coco_data(dataset: str = "coco") -> DataConfig:
    if dataset == "coco":
        train_ann = "annotations/person_keypoints_train2017.json"
        val_ann = "annotations/person_keypoints_val2017.json"
    else:
        train_ann = "annotations/coco_wholebody_train_v1.0.json"
        val_ann = "annotations/coco_wholebody_val_v1.0.json"
    return DataConfig(
        dataset=dataset,
        root="data/coco",
        train_ann=train_ann,
        train_images="train2017",
        val_ann=val_ann,
        val_images="val2017",
        input_size=(192, 256),
        heatmap_size=(48, 64),
        sigma=2.0,
        num_workers=4,
    )


def _base_coco(backbone: str, dataset: str = "coco") -> Callable[[], Config]:
    """mmpose's COCO recipe: Adam 5e-4 at batch 512, 500-iteration warm-up, 210 epochs."""

    def make() -> Config:
        return Config(
            data=_coco_data(dataset),
            model=ModelConfig(backbone=backbone, pretrained="imagenet"),
            train=TrainConfig(
                epochs=210,
                batch_size=512,
                lr=5e-4,
                warmup_iters=500,
                milestones=(170, 200),
            ),
            eval=EvalConfig(
                flip_test=True,
                det_file="data/coco/person_detection_results/"
                "COCO_val2017_detections_AP_H_56_person.json",
                batch_size=256,
            ),
        )

    return make


# The config bases: the data, model and schedule a preset builds on (a preset is
# `<base>_<method>`). A notebook profile (ocdlib/profiles.py) is another thing: what
# `reproduce --profile` runs, built on one base for body rows and one for whole-body.
BASES: dict[str, Callable[[], Config]] = {
    "smoke": _base_smoke,
    "cpu": _base_cpu,
    "gpu_synth": _base_gpu_synth,
    **{f"coco_{b}": _base_coco(f"resnet{b[1:]}") for b in ("r50", "r101", "r152")},
    "coco_wholebody_r50": _base_coco("resnet50", "coco_wholebody"),
}


def _wholebody(cfg: Config) -> Config:
    data = replace(
        cfg.data, dataset="coco_wholebody", synth=replace(cfg.data.synth, wholebody=True)
    )
    return replace(cfg, data=data)


for _p in ("smoke", "gpu_synth"):
    BASES[f"{_p}_wholebody"] = (lambda p: lambda: _wholebody(BASES[p]()))(_p)
BASES["cpu_wholebody"] = _base_cpu_wholebody


def _method(cfg: Config, heads, deploy, **loss) -> Config:
    """The method's heads and loss terms; the regression task loss is the base's unless
    the method names its own (RLE)."""
    model = replace(cfg.model, heads=tuple(heads), deploy_head=deploy)
    base = LossConfig(reg_loss=cfg.loss.reg_loss)
    return replace(cfg, model=model, loss=replace(base, **loss))


# Each method: heads on the shared backbone, the deployed head, and the loss terms.
METHODS: dict[str, Callable[[Config], Config]] = {
    "deeppose": lambda c: _method(c, ["reg"], "reg"),
    "rle": lambda c: _method(c, ["rle"], "rle", reg_loss="rle"),
    "simplebaseline": lambda c: _method(c, ["hm"], "hm", reg_weight=0.0, hm_weight=1.0),
    "ocd": lambda c: _method(
        c, ["reg", "hm"], "reg", hm_weight=1.0, task_distill_weight=1.0, head_distill_weight=1.0
    ),
    "ocd_rle": lambda c: _method(
        c,
        ["rle", "hm"],
        "rle",
        reg_loss="rle",
        hm_weight=1.0,
        task_distill_weight=1.0,
        head_distill_weight=1.0,
    ),
    # TCD needs a heatmap teacher: --set loss.teacher_run=runs/<simplebaseline run> or
    # an mmpose model-zoo checkpoint, --set loss.teacher_run=td-hm_res50_...-256x192.pth.
    "tcd": lambda c: _method(c, ["reg"], "reg", task_distill_weight=1.0, head_distill_weight=1.0),
    "tcd_aux": lambda c: _method(
        c,
        ["reg", "hm"],
        "reg",
        hm_weight=1.0,
        task_distill_weight=1.0,
        head_distill_weight=1.0,
        teacher_source="both",
    ),
    "reduced": lambda c: _method(
        c,
        ["hm", "hm_small"],
        "hm_small",
        reg_weight=0.0,
        hm_weight=1.0,
        small_hm_weight=1.0,
        small_head_distill_weight=1.0,
        small_task_distill_weight=1.0,
    ),
    "reduced_alone": lambda c: _method(
        c, ["hm_small"], "hm_small", reg_weight=0.0, small_hm_weight=1.0
    ),
}


def preset_names() -> list[str]:
    return [f"{p}_{m}" for p in BASES for m in METHODS]


def get_preset(name: str) -> Config:
    """Resolve "<base>_<method>" (or a bare base, meaning DeepPose) to a Config."""
    if name in BASES:
        name = f"{name}_deeppose"
    for method in sorted(METHODS, key=len, reverse=True):
        base = name[: -len(method) - 1]
        if name.endswith("_" + method) and base in BASES:
            return replace(METHODS[method](BASES[base]()), name=name)
    raise UnknownNameError(
        f"unknown preset {name!r}; presets are <base>_<method> with base in "
        f"{sorted(BASES)} and method in {sorted(METHODS)} (python -m ocdlib presets)"
    )


def build_config(preset: str, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """A preset with `key=value` overrides applied (from --set or papermill parameters)."""
    cfg = get_preset(preset)
    items = overrides.items() if isinstance(overrides, dict) else overrides or []
    for item in items:
        if isinstance(item, str):
            if "=" not in item:
                raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=0.001")
            key, value = item.split("=", 1)
        else:
            key, value = item
        cfg = override(cfg, key.strip(), value)
    return cfg
