"""Ranges: `validate(cfg)` checks every numeric and choice field before a run starts,
so that a wrong --set fails in one line naming the field, not as a traceback from deep
inside torch minutes later. `CHOICES` defines the values each choice field takes; code
that checks such a field again (losses, data/image_bank.py, data/device_decode.py) reads
them from here.
"""

from __future__ import annotations

import json
from math import inf
from typing import Any

from ..errors import ConfigError
from ..metainfo import DATASETS, FROM_FILE
from .schema import Config

__all__ = ["BAD_IMAGE_MODES", "CHOICES", "NON_NEGATIVE", "POSITIVE", "PROBABILITIES", "validate"]

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
