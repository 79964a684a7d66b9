"""`build_objective`: a run's loss config checked against its model and teacher."""

from __future__ import annotations

import dataclasses

import torch.nn as nn

from ..configs import CHOICES, Config
from ..errors import ConfigError
from ..metainfo import DatasetInfo
from .objective import Objective
from .task import REG_LOSSES

DECODERS = CHOICES["loss.distill_decode"]
TEACHER_SOURCES = CHOICES["loss.teacher_source"]


def build_objective(
    cfg: Config, info: DatasetInfo, model: nn.Module, teacher: nn.Module | None = None
) -> Objective:
    """Check `cfg.loss` against the model's heads and the teacher, and build the Objective."""
    L = cfg.loss
    model = getattr(model, "module", model)  # DistributedDataParallel
    heads = set(model.heads)
    for name, head in model.heads.items():
        if getattr(head, "num_keypoints", info.num_keypoints) != info.num_keypoints:
            raise ConfigError(
                f"the model's {name!r} head predicts {head.num_keypoints} keypoints, but "
                f"data.dataset={info.name!r} has {info.num_keypoints}; build the model with "
                "info.num_keypoints"
            )
    if L.reg_loss not in REG_LOSSES:
        raise ConfigError(
            f"loss.reg_loss={L.reg_loss!r} is unknown; choose one of {list(REG_LOSSES)}"
        )
    if L.distill_decode not in DECODERS:
        raise ConfigError(
            f"loss.distill_decode={L.distill_decode!r} is unknown; choose one of {list(DECODERS)}"
        )
    if L.teacher_source not in TEACHER_SOURCES:
        raise ConfigError(
            f"loss.teacher_source={L.teacher_source!r} is unknown; "
            f"choose one of {list(TEACHER_SOURCES)}"
        )
    weights = {
        f.name: getattr(L, f.name) for f in dataclasses.fields(L) if f.name.endswith("_weight")
    }
    for name, value in weights.items():
        if value < 0:
            raise ConfigError(f"loss.{name}={value} is negative; weights must be >= 0")
    if not any(v > 0 for v in weights.values()):
        raise ConfigError(f"every loss weight is 0 ({weights}); set at least loss.reg_weight > 0")

    def need(head: str, because: str) -> None:
        if head not in heads:
            raise ConfigError(
                f"{because} needs the {head!r} head, but model.heads={sorted(heads)}; add "
                f"{head!r} to model.heads or set that weight to 0"
            )

    reg_head = "rle" if L.reg_loss == "rle" else "reg"
    for name in ("reg_weight", "task_distill_weight", "head_distill_weight"):
        if getattr(L, name) > 0:
            need(reg_head, f"loss.{name} with loss.reg_loss={L.reg_loss!r}")
    if L.hm_weight > 0:
        need("hm", "loss.hm_weight")
    if L.small_hm_weight > 0:
        need("hm_small", "loss.small_hm_weight")
    for name in ("small_head_distill_weight", "small_task_distill_weight"):
        if getattr(L, name) > 0:
            need("hm_small", f"loss.{name}")
            need("hm", f"loss.{name}")

    if L.teacher_run and teacher is None:
        raise ConfigError(
            f"loss.teacher_run={L.teacher_run!r} is set but no teacher model was passed to "
            "build_objective; load it first (ocdlib.engine.trainer.load_teacher)"
        )
    if teacher is None:
        if L.cross_head_weight > 0:
            raise ConfigError(
                "loss.cross_head_weight > 0 needs a heatmap teacher; set loss.teacher_run to a "
                "finished heatmap run or set loss.cross_head_weight=0"
            )
        if L.task_distill_weight > 0 or L.head_distill_weight > 0:
            need("hm", "loss.task_distill_weight / head_distill_weight without a teacher")
    else:
        teacher = getattr(teacher, "module", teacher)
        if "hm" not in getattr(teacher, "heads", {}):
            raise ConfigError(
                f"loss.teacher_run={L.teacher_run!r}: the teacher has no 'hm' head; TCD needs a "
                "heatmap teacher"
            )
        if tuple(teacher.input_size) != tuple(cfg.data.input_size):
            raise ConfigError(
                f"loss.teacher_run={L.teacher_run!r}: the teacher's input size "
                f"{teacher.input_size} differs from data.input_size={cfg.data.input_size}; "
                "train the teacher at the student's input size"
            )
        teacher_k = teacher.heads["hm"].num_keypoints
        if teacher_k != info.num_keypoints:
            raise ConfigError(
                f"loss.teacher_run={L.teacher_run!r}: the teacher predicts {teacher_k} "
                f"keypoints, data.dataset={cfg.data.dataset!r} has {info.num_keypoints}"
            )
        if L.teacher_source in ("online", "both") and (
            L.task_distill_weight > 0 or L.head_distill_weight > 0
        ):
            need("hm", f"loss.teacher_source={L.teacher_source!r}")
        teacher.eval().requires_grad_(False)

    adapter = None
    if L.cross_head_weight > 0:
        c_student = model.backbone.out_channels
        c_teacher = teacher.backbone.out_channels
        adapter = nn.Identity() if c_student == c_teacher else nn.Conv2d(c_student, c_teacher, 1)
    return Objective(
        L,
        cfg.data.input_size,
        cfg.data.heatmap_size,
        cfg.data.sigma,
        reg_head,
        teacher=teacher,
        adapter=adapter,
    )
