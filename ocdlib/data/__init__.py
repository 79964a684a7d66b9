"""Data layer: COCO-format loading, top-down transforms and the pose dataset.

Only the COCO path is imported here; the SynthPose generator lives in
`ocdlib.data.synthpose` and is imported where it is used.
"""

from ocdlib.data.coco import (
    AnnotationError,
    ImageMissingError,
    ImageReadError,
    Instance,
    check_images,
    load_coco_keypoints,
    load_detections,
    read_image,
)
from ocdlib.data.dataset import TopDownPoseDataset

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
