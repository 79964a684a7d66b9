"""Pre-training a backbone without natural images or keypoints (`python -m ocdlib pretrain`).

`fractals` draws iterated function systems, `pretexts` turns generated images into
labelled batches, `config` holds the pre-training's config and presets, and `trainer`
runs it as a resumable run with a record. The weights it writes load through
`model.pretrained` (ocdlib/weights.py).
"""

from .config import PRETRAIN_PRESETS, PretrainConfig, pretrain_config
from .trainer import install_weights, pretrain, pretrain_dir

__all__ = [
    "PRETRAIN_PRESETS", "PretrainConfig", "install_weights", "pretrain", "pretrain_config",
    "pretrain_dir",
]  # fmt: skip
