"""Networks: torchvision backbones, pose heads and the multi-head `PoseModel`."""

from .backbones import BACKBONE_NAMES, build_backbone
from .complexity import complexity_table, count_macs, count_params, measure_latency_ms
from .heads import HeatmapHead, RegressionHead, RLEHead
from .pose_model import HEAD_NAMES, PoseModel, build_model, export_student

__all__ = [
    "BACKBONE_NAMES",
    "HEAD_NAMES",
    "HeatmapHead",
    "PoseModel",
    "RLEHead",
    "RegressionHead",
    "build_backbone",
    "build_model",
    "complexity_table",
    "count_macs",
    "count_params",
    "export_student",
    "measure_latency_ms",
]
