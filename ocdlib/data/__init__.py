"""Data layer: COCO-format loading, top-down transforms and the pose dataset.

Every name is loaded on first use; the SynthPose generator lives in
`ocdlib.data.synthpose`.
"""

import importlib

# Loaded on first use: importing a submodule (ocdlib.data.synthpose.spec, which
# ocdlib.configs needs) must not import the dataset, and with it torch.
_HOMES = {
    "AnnotationError": "coco",
    "ImageMissingError": "coco",
    "ImageReadError": "coco",
    "Instance": "coco",
    "check_images": "coco",
    "load_coco_keypoints": "coco",
    "load_detections": "coco",
    "read_image": "coco",
    "TopDownPoseDataset": "dataset",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [  # noqa: F822 (each name is loaded by __getattr__)
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
