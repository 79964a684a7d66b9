"""Task losses (`task.py`) and the training objective with every OCD / TCD / reduced-head
term (`objective.py`), built from a run's config by `build_objective` (`build.py`)."""

from .build import DECODERS, TEACHER_SOURCES, build_objective
from .objective import Objective, heatmap_confidence
from .task import (
    REG_LOSSES,
    HeatmapMSELoss,
    L1Loss,
    RealNVP,
    RLELoss,
    SmoothL1Loss,
    build_reg_loss,
)

__all__ = [
    "DECODERS",
    "REG_LOSSES",
    "TEACHER_SOURCES",
    "HeatmapMSELoss",
    "L1Loss",
    "Objective",
    "RLELoss",
    "RealNVP",
    "SmoothL1Loss",
    "build_objective",
    "build_reg_loss",
    "heatmap_confidence",
]
