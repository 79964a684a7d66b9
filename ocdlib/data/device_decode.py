"""JPEG files decoded where the model runs: the loader's workers read bytes only.

With `data.pipeline=device` and images too many to hold decoded (COCO: about 110 GB
for train2017; see image_bank.py), the workers would still decode every JPEG, about
half of their work per sample. With `data.decode_on_device` they read the file's
bytes and its header (for the geometry) only, and `finish_batch` decodes the batch
with `torchvision.io.decode_jpeg(..., device=...)` on the training device (nvJPEG
on a GPU), then pads and stacks the images (`batched_warp.pad_stack`).

Where that fails (a decoder torchvision was built without, a file it cannot read),
that batch is decoded on the CPU instead, and one line says so the first time. A
file no decoder can read stops the run with its name.

`data.decode_on_device`: "auto" decodes on a CUDA device when every training image is
a JPEG and `data.bad_images` is "error" (a sample cannot be replaced once its batch
has left the loader); "on" also on the CPU (torchvision's decoder there: a test and
benchmark path); "off" never. Different decoders may round some pixels differently
(torchvision's CPU decoder against PIL's: see tests/test_device_decode.py), so the
crops of a run can differ slightly between the settings; it is an execution setting
like the GPU's kernels, outside the config hash.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from ..configs import CHOICES
from ..errors import ConfigError
from .coco import open_image

DECODE_MODES = CHOICES["data.decode_on_device"]
JPEG_SUFFIXES = (".jpg", ".jpeg")

_fallback = {"reason": ""}  # the first failure of the device decoder in this process


def decodes_on_device(dataset, device: torch.device, mode: str, say=None) -> bool:
    """Whether `dataset`'s samples carry JPEG bytes for the device to decode (and set it)."""
    if mode not in DECODE_MODES:
        raise ConfigError(
            f"data.decode_on_device={mode!r}: expected one of {', '.join(DECODE_MODES)}"
        )
    cfg = dataset.cfg
    all_jpeg = all(Path(i.image_path).suffix.lower() in JPEG_SUFFIXES for i in dataset.instances)
    on = (
        mode != "off"
        and dataset.on_device
        and dataset._bank_rows is None  # held images need no decoding
        and all_jpeg
        and (mode == "on" or (device.type == "cuda" and cfg.bad_images == "error"))
    )
    dataset.ship_encoded = on
    if on and say:
        say(f"decoding JPEGs on {device}: the loader's workers read the files' bytes only")
    return on


def read_encoded(path) -> torch.Tensor:
    """A file's bytes as a 1-D uint8 tensor."""
    return torch.from_numpy(np.fromfile(path, dtype=np.uint8))


def _decode(data, device: torch.device | str = "cpu"):
    # torchvision 0.29 marks its decoders deprecated in favour of TorchCodec, a package
    # with FFmpeg underneath; they still work, and the warning would come every batch.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def _cpu_decode(data: torch.Tensor, path: str) -> torch.Tensor:
    try:
        return _decode(data)
    except RuntimeError:  # what torchvision's decoder cannot read, PIL may (or says why)
        return torch.from_numpy(np.array(open_image(path))).permute(2, 0, 1)


def decode_batch(
    encoded: Sequence[torch.Tensor], paths: Sequence[str], device: torch.device
) -> list[torch.Tensor]:
    """(3, H, W) uint8 images on `device`, decoded there in one call where it can be;
    otherwise on the CPU, saying so the first time. A file no decoder reads raises
    ImageReadError with its name (`open_image`)."""
    try:
        return _decode(list(encoded), device)
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    images = [
        _cpu_decode(data, path).to(device, non_blocking=True)
        for data, path in zip(encoded, paths, strict=True)
    ]
    if not _fallback["reason"]:  # the CPU read them all: the device's decoder failed
        _fallback["reason"] = reason
        print(
            f"decoding a batch of JPEGs on {device} failed ({reason}); such batches are "
            "decoded on the CPU",
            file=sys.stderr,
            flush=True,
        )
    return images
