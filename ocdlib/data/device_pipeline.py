"""`data.pipeline = "device"`: the loader decodes, the training device cuts and encodes.

With the "cpu" pipeline each loader sample is a finished crop with its targets. With
"device", a sample is its decoded image (uint8, whole), the 2x3 map from the image
to its crop (`CropGeometry.image_warp`, flips included) and its keypoints in crop
pixels: the geometry stays per sample and in numpy, as before. `collate` stacks the
images (padded to the batch's largest), and `finish_batch`, on the device the batch
was moved to, cuts every crop in one `grid_sample` (batched_warp.py), normalises
them and encodes the targets in batch (`codecs.encode_batch`). The result has the
same keys as a "cpu" batch, so the objective and the evaluation read it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Subset, default_collate

from ..codecs import encode_batch
from .batched_warp import normalize_batch, pad_stack, stack_images, warp_batch
from .device_decode import decode_batch
from .image_bank import ImageBank

DEVICE_KEYS = (
    "pixels", "image_row", "encoded", "path", "image_warp", "crop_keypoints", "visible",
    "crop_spec",
)  # fmt: skip


@dataclass(frozen=True)
class CropSpec:
    """What `finish_batch` needs to cut and encode: sizes (W, H) and the Gaussian's
    sigma; `heatmap_size` None when the run needs no heatmap targets."""

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int] | None
    sigma: float


class Collate:
    """The loader's collate function for the device pipeline (picklable for workers)."""

    def __init__(self, spec: CropSpec):
        self.spec = spec

    def __call__(self, samples: list[dict]) -> dict:
        first = samples[0]
        pixels = encoded = None
        if "pixels" in first:
            pixels = stack_images([s.pop("pixels").numpy() for s in samples])
        elif "encoded" in first:  # JPEG bytes, decoded on the device (device_decode.py)
            encoded = [s.pop("encoded") for s in samples]
        # (otherwise the images are held on the device: "image_row", image_bank.py)
        batch = default_collate(samples)
        if pixels is not None:
            batch["pixels"] = pixels
        if encoded is not None:
            batch["encoded"] = encoded
        batch["crop_spec"] = self.spec
        return batch


def collate_of(dataset) -> Collate | None:
    """The collate function `dataset` asks for (None: torch's default)."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return getattr(dataset, "collate_fn", None)


def to_device(batch: dict, device, non_blocking: bool = False) -> dict:
    """`batch` with its tensors on `device` (lists, strings and the crop spec stay)."""
    return {
        k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v
        for k, v in batch.items()
    }


def is_device_batch(batch: dict) -> bool:
    """Whether `batch` still needs `finish_batch` (a device-pipeline batch)."""
    return "crop_spec" in batch


def finish_batch(batch: dict, bank: ImageBank | None = None) -> dict:
    """A device-pipeline batch (already on its device) -> the model's batch: "image"
    and the targets, as the cpu pipeline's loader would have made them. A batch whose
    images are held in `bank` names their rows; other batches pass through unchanged."""
    if not is_device_batch(batch):
        return batch
    spec: CropSpec = batch["crop_spec"]
    out = {k: v for k, v in batch.items() if k not in DEVICE_KEYS}
    if "image_row" in batch:
        if bank is None:
            raise ValueError("this batch's images are held in an image bank: pass it (bank=)")
        pixels = bank.images(batch["image_row"])
    elif "encoded" in batch:
        device = batch["image_warp"].device
        pixels = pad_stack(decode_batch(batch["encoded"], batch["path"], device))
    else:
        pixels = batch["pixels"]
    crops = warp_batch(pixels, batch["image_warp"], spec.input_size)
    out["image"] = normalize_batch(crops)
    targets = encode_batch(
        batch["crop_keypoints"], batch["visible"], spec.input_size, spec.heatmap_size, spec.sigma
    )
    out.update(targets)
    return out


def batch_size_of(batch: dict) -> int:
    """How many samples `batch` holds, whichever pipeline made it."""
    return len(batch["center"])


def finished_sample(dataset, index: int) -> dict:
    """Sample `index` as the model sees it, whichever pipeline `dataset` uses (a device
    sample is cut and encoded here, on the CPU): what pictures of the crops draw."""
    sample = dataset[index]
    collate = collate_of(dataset)
    if collate is None:
        return sample
    batch = finish_batch(collate([sample]))
    return {k: v[0] if torch.is_tensor(v) or isinstance(v, list) else v for k, v in batch.items()}
