"""Typed run configurations and their named presets.

A `Config` is a frozen dataclass tree: printable, hashable, saved next to every
checkpoint as JSON. Presets are plain functions below; `--set a.b=value`
overrides any leaf. The short hash of the resolved config keys the run cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class SynthConfig:
    """How to generate the SynthPose copy a run trains on (empty `root` in DataConfig)."""

    train: int = 2000
    val: int = 300
    seed: int = 0
    wholebody: bool = False
    image_size: tuple[int, int] = (256, 256)  # (H, W) of generated images


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
    num_workers: int = 2


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet50"  # resnet18/34/50/101/152, mobilenet_v2
    # "none": random init; "imagenet": torchvision weights (cache or download);
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
    """Weights and switches of every term in METHOD.md section 4."""

    reg_loss: str = "smooth_l1"  # smooth_l1 | l1 | rle (task loss of the regression head)
    reg_weight: float = 1.0  # ground truth -> regression head
    hm_weight: float = 0.0  # a: ground truth -> heatmap head ("hm")
    task_distill_weight: float = 0.0  # b: L_reg(y_hat, sg[dec(H)], m)
    head_distill_weight: float = 0.0  # c: L_hm(enc(y_hat), sg[H], m)
    distill_decode: str = "argmax"  # argmax (with sub-pixel refinement) | soft_argmax
    render_sigma: float = 2.0  # sigma of enc() in term c, heatmap pixels
    distill_warmup_steps: int = 0  # b and c are off before this step
    distill_unlabelled: bool = True  # distil keypoints unlabelled in ground truth
    hm_loss_scale: float = 1000.0  # heatmap MSE is tiny per pixel; bring it to the regression scale
    # TCD: a frozen heatmap teacher, given as a finished run directory.
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
    milestones: tuple[int, ...] = (170, 200)  # epochs
    gamma: float = 0.1
    grad_clip: float = 0.0  # 0: off
    amp: bool = True  # bf16 autocast on GPU; always off on the CPU
    seed: int = 0
    deterministic: bool = False
    eval_every: int = 0  # epochs; 0: only at the end
    max_steps: int = 0  # stop after this many steps (0: no limit)


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
        d = self.to_dict()
        d.pop("name")
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        return _from_dict(cls, d, "")


def _from_dict(cls, d: dict[str, Any], where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(known)
    if unknown:
        raise ValueError(f"unknown config field(s) {sorted(unknown)} in {where or 'config'}")
    kwargs = {}
    for name, value in d.items():
        f = known[name]
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _from_dict(type(default), value, f"{where}{name}.")
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


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
            raise ValueError(
                f"--set {key}: no field {name!r} in {where or 'config'}; choose from {valid}"
            )
        current = getattr(node, name)
        if len(path) > 1:
            return replace(node, **{name: set_in(current, path[1:], f"{where}{name}.")})
        return replace(node, **{name: _coerce(current, value, key)})

    return set_in(cfg, parts, "")


def _coerce(current: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(current):
        raise ValueError(f"--set {key}: is a section, set one of its fields (e.g. {key}.<field>)")
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"--set {key}={value!r}: expected true or false")
    if isinstance(current, tuple):
        if isinstance(value, (list, tuple)):
            return tuple(value)
        raise ValueError(f"--set {key}={value!r}: expected a list such as [1, 2]")
    if isinstance(current, float) and isinstance(value, (int, float)):
        return float(value)
    if isinstance(current, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(current, str):
        return str(value)
    raise ValueError(f"--set {key}={value!r}: expected {type(current).__name__}")
