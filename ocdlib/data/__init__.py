"""Data layer: COCO-format loading, top-down transforms and the pose dataset; the
SynthPose generator lives in `ocdlib.data.synthpose`."""

from .coco import (
    AnnotationError,
    ImageMissingError,
    ImageReadError,
    Instance,
    check_images,
    load_coco_keypoints,
    load_detections,
    read_image,
)
from .dataset import TopDownPoseDataset

__all__ = [
    "AnnotationError",
    "ImageMissingError",
    "ImageReadError",
    "Instance",
    "TopDownPoseDataset",
    "check_images",
    "load_coco_keypoints",
    "load_detections",
    "read_image",
]
