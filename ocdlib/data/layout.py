"""The keypoint layout a run uses: a built-in one, or the annotation file's own.

`data.dataset` names a layout of `ocdlib.metainfo` (coco, coco_wholebody,
crowdpose), or is "from_file": keypoint names and skeleton then come from the
training annotation file's `categories[0]`, flip pairs from left/right names
(or `data.flip_pairs`), and OKS sigmas from `data.sigmas`. A run saves the
layout it used as layout.json, so that eval, predict and export need no
annotation file.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AnnotationError, ConfigError, MissingFileError
from ..metainfo import (
    FROM_FILE,
    DatasetInfo,
    get_dataset_info,
    index_pairs,
    layout_from_category,
)
from .coco import read_json

if TYPE_CHECKING:
    from ..configs import DataConfig

LAYOUT_FILE = "layout.json"


def resolve_layout(data: DataConfig, ann_file) -> DatasetInfo:
    """The DatasetInfo of `data` (`ann_file` is read only for dataset "from_file")."""
    if data.dataset != FROM_FILE:
        try:
            info = get_dataset_info(data.dataset)
        except KeyError as e:
            raise ConfigError(f"config field data.dataset: {e.args[0]}") from None
        if data.sigmas:
            if len(data.sigmas) != info.num_keypoints:
                raise ConfigError(
                    f"config field data.sigmas has {len(data.sigmas)} values, the dataset "
                    f"'{info.name}' has {info.num_keypoints} keypoints; give one per keypoint"
                )
            info = replace(info, sigmas=tuple(float(s) for s in data.sigmas))
        if data.flip_pairs:
            try:
                info = replace(info, flip_pairs=index_pairs(data.flip_pairs, info.keypoint_names))
            except ValueError as e:
                raise ConfigError(str(e)) from None
        return info
    ann_file = Path(ann_file)
    content = read_json(ann_file, "annotation")
    categories = content.get("categories") if isinstance(content, dict) else None
    if not categories or not isinstance(categories[0], dict):
        raise AnnotationError(
            f"{ann_file}: data.dataset=from_file reads the keypoint layout from "
            "'categories'[0], and the file has no category; add one with 'keypoints' "
            "(names) and 'skeleton' as in COCO, or choose a built-in data.dataset"
        )
    try:
        return layout_from_category(
            categories[0], data.sigmas, data.flip_pairs, where=f"{ann_file}: categories[0]"
        )
    except ValueError as e:
        raise AnnotationError(str(e)) from None


def save_layout(info: DatasetInfo, run_dir) -> None:
    path = Path(run_dir) / LAYOUT_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info.to_dict(), indent=1))
    tmp.replace(path)


def load_layout(run_dir, data: DataConfig) -> DatasetInfo:
    """The layout a run trained with: its layout.json, else (older runs) the built-in one."""
    path = Path(run_dir) / LAYOUT_FILE
    if path.is_file():
        return DatasetInfo.from_dict(json.loads(path.read_text()))
    if data.dataset == FROM_FILE:
        raise MissingFileError(
            f"{path} not found: the run used data.dataset=from_file and its layout is kept "
            "there; copy the whole run directory"
        )
    return resolve_layout(data, None)
