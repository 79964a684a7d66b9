"""What a keypoint annotation file holds: images, instances, visibility, OKS areas.

Notebook 00 puts SynthPose beside the real COCO sample with these numbers, so the
synthetic benchmark's statistics can be checked against COCO's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..metainfo import DatasetInfo
from .coco import load_coco_keypoints


def annotation_stats(ann_file: str | Path, image_dir: str | Path, info: DatasetInfo) -> dict:
    """Images, person instances and keypoint visibility counts of a COCO keypoint file.

    Instances are those the dataset trains on (labelled keypoints, valid box);
    visibility counts are over their keypoints: v=2 visible, v=1 labelled but
    hidden, v=0 unlabelled.
    """

    raw = json.loads(Path(ann_file).read_text())
    instances = load_coco_keypoints(ann_file, image_dir, info)
    v = np.concatenate([inst.keypoints[:, 2] for inst in instances]) if instances else np.zeros(0)
    images_with_people = len({inst.image_id for inst in instances})
    return {
        "images": len(raw.get("images", [])),
        "annotations": len(raw.get("annotations", [])),
        "instances": len(instances),
        "instances_per_image": len(instances) / max(images_with_people, 1),
        "keypoints": info.num_keypoints,
        "v=2 (visible)": int((v >= 2).sum()),
        "v=1 (hidden)": int(((v > 0) & (v < 2)).sum()),
        "v=0 (unlabelled)": int((v == 0).sum()),
        "median area": float(np.median([inst.area for inst in instances])) if instances else 0.0,
        # The OKS scale convention: COCO's `area` is the segmentation's, SynthPose's the
        # rendered silhouette's; both should be about the same share of the box.
        "median area / box": float(np.median([_area_share(inst) for inst in instances]))
        if instances
        else 0.0,
    }


def _area_share(inst) -> float:
    box = float(inst.bbox[2]) * float(inst.bbox[3])
    return float(inst.area) / box if box > 0 else float("nan")


def stats_frame(sources: Mapping[str, tuple[Path, Path, DatasetInfo]]) -> pd.DataFrame:
    """`annotation_stats` of several (annotation file, image folder, info) sources, one row each."""
    return pd.DataFrame(
        [{"data": name, **annotation_stats(*source)} for name, source in sources.items()]
    )
