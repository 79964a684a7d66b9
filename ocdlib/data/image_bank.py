"""A training set's images decoded once and held where the model runs.

With `data.pipeline=device` the loader's workers would otherwise decode every
sample's image again on every step, which on a GPU is most of what is left of the
CPU's work. Where the decoded set fits (SynthPose at 320x320: 30,000 images in about
9 GB; an H200 has 139 GiB), `hold_images` decodes each distinct image once, in
parallel, into one uint8 tensor (N, 3, Hmax, Wmax) on the training device, padded
with black at the right and bottom as `stack_images` pads a batch (so no crop
changes). The dataset then hands out the geometry only, with the image's row in the
bank, and `device_pipeline.finish_batch` gathers the batch's images from the bank.
The pixels are those the workers would have decoded, so a run trains bit for bit the
same with or without the bank; it is an execution setting, outside the config hash.

The decoding is paid once per process: workers decode batches of images padded to
the bank's size, each batch goes to the device in one copy, and the bank is kept for
the next run of the same training set in this process (a time-boxed allocation trains
its runs one after another in one process: `hold_images` then only attaches it).

`data.hold_images`: "auto" holds when the decoded set takes at most a quarter of the
device's free memory (COCO train2017, about 110 GB decoded, stays with the workers),
"on" holds whatever it takes, "off" never holds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..configs import CHOICES
from ..errors import ConfigError
from .coco import ImageReadError

HOLD_MODES = CHOICES["data.hold_images"]
AUTO_SHARE = 0.25  # "auto": at most this share of the device's free memory


@dataclass
class ImageBank:
    """`pixels` (N, 3, Hmax, Wmax) uint8 on the device; `sizes` (N, 2) as (W, H)."""

    pixels: torch.Tensor
    sizes: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.pixels.numel()

    def images(self, rows: torch.Tensor) -> torch.Tensor:
        """The (B, 3, Hmax, Wmax) images of a batch's `image_row` entries."""
        return self.pixels.index_select(0, rows.to(self.pixels.device, torch.long))


def free_memory(device: torch.device) -> int:
    """Bytes free on `device` now (host memory available for the CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def distinct_images(dataset) -> tuple[list[int], np.ndarray]:
    """For each distinct image path, the index of its first instance; and for every
    instance, the row of its image among those."""
    first: dict[str, int] = {}
    rows = np.empty(len(dataset.instances), dtype=np.int64)
    for i, inst in enumerate(dataset.instances):
        rows[i] = first.setdefault(str(inst.image_path), len(first))
    firsts = {row: i for i, row in reversed(list(enumerate(rows)))}
    return [firsts[r] for r in range(len(first))], rows


def largest_size(dataset, firsts: list[int]) -> tuple[int, int]:
    """(W, H) of the bank: the largest width and height the annotations give (the image
    headers where they do not; `_image` checks both against the files when decoding)."""
    w = h = 1
    for i in firsts:
        inst = dataset.instances[i]
        iw, ih = inst.width, inst.height
        if not (iw and ih):
            im = dataset._image(inst, decode=False)
            iw, ih = im.width, im.height
        w, h = max(w, iw), max(h, ih)
    return w, h


def _as_is(item):
    return item


DECODE_BATCH = 32  # images a worker decodes into one padded array


class _Decode(Dataset):
    """Item j: images [j * DECODE_BATCH, ...) decoded in a loader worker into one
    (b, Hmax, Wmax, 3) uint8 array padded with black, their (W, H) sizes, and the
    reading error of each unreadable one (bad_images=skip)."""

    def __init__(self, dataset, firsts: list[int], size: tuple[int, int]):
        self.dataset, self.firsts, self.size = dataset, firsts, size

    def __len__(self) -> int:
        return -(-len(self.firsts) // DECODE_BATCH)

    def __getitem__(self, j: int):
        ks = range(j * DECODE_BATCH, min(len(self.firsts), (j + 1) * DECODE_BATCH))
        w, h = self.size
        out = np.zeros((len(ks), h, w, 3), dtype=np.uint8)
        sizes = np.zeros((len(ks), 2), dtype=np.int64)
        bad: dict[int, str] = {}
        for i, k in enumerate(ks):
            inst = self.dataset.instances[self.firsts[k]]
            try:
                image = np.asarray(self.dataset._image(inst))
            except ImageReadError as e:
                if self.dataset.cfg.bad_images != "skip":
                    raise
                bad[k] = str(e)
                continue
            ih, iw = image.shape[:2]
            out[i, :ih, :iw] = image
            sizes[i] = iw, ih
        return ks.start, torch.from_numpy(out), sizes, bad


# The bank of the last training set held in this process, reused by the next run of
# the same images on the same device: {key: (bank, bad rows)}.
_HELD: dict[tuple, tuple[ImageBank, dict[int, str]]] = {}


def _bank_key(dataset, firsts: list[int], device: torch.device, size) -> tuple:
    paths = tuple(str(dataset.instances[i].image_path) for i in firsts)
    return (str(device), tuple(size), dataset.cfg.bad_images, hash(paths), len(paths))


def hold_images(
    dataset, device: torch.device, mode: str, workers: int = 0, say=None
) -> ImageBank | None:
    """Decode `dataset`'s images into a bank on `device` and attach it (see the module's
    docstring for `mode`); None when they stay with the loader's workers. `say` gets one
    line saying which (nothing without it)."""
    say = say or (lambda line: None)
    if mode not in HOLD_MODES:
        raise ConfigError(f"data.hold_images={mode!r}: expected one of {', '.join(HOLD_MODES)}")
    if mode == "off" or not dataset.on_device:
        return None
    firsts, rows = distinct_images(dataset)
    w, h = largest_size(dataset, firsts)
    key = _bank_key(dataset, firsts, device, (w, h))
    if key in _HELD:  # decoded by an earlier run of this process
        bank, bad = _HELD[key]
        dataset.attach_bank(rows, bank.sizes, bad)
        say(f"holding {len(firsts)} training images on {device}, decoded by an earlier run")
        return bank
    _HELD.clear()  # one bank at a time: the memory goes back before the next is made
    need, free = len(firsts) * 3 * w * h, free_memory(device)
    if mode == "auto" and need > AUTO_SHARE * free:
        say(
            f"data.hold_images=auto: {len(firsts)} training images take {need / 1e9:.1f} GB "
            f"decoded, more than {AUTO_SHARE:.0%} of the {free / 1e9:.1f} GB free on {device}; "
            "the loader's workers decode them each step"
        )
        return None
    t0 = time.perf_counter()
    pixels = torch.zeros((len(firsts), 3, h, w), dtype=torch.uint8, device=device)
    sizes = np.zeros((len(firsts), 2), dtype=np.int64)
    bad: dict[int, str] = {}
    loader = DataLoader(
        _Decode(dataset, firsts, (w, h)),
        batch_size=None,
        num_workers=workers,
        collate_fn=_as_is,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),  # its own: the run's random stream stays untouched
    )
    for start, images, batch_sizes, batch_bad in loader:  # one copy to the device a batch
        n = len(images)
        pixels[start : start + n] = images.to(device, non_blocking=True).permute(0, 3, 1, 2)
        sizes[start : start + n] = batch_sizes
        bad.update(batch_bad)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    bank = ImageBank(pixels, sizes)
    dataset.attach_bank(rows, sizes, bad)
    _HELD[key] = (bank, bad)
    say(
        f"holding {len(firsts)} training images decoded on {device} "
        f"({bank.nbytes / 1e9:.2f} GB, decoded in {time.perf_counter() - t0:.1f} s)"
        + (f"; {len(bad)} unreadable, skipped" if bad else "")
    )
    return bank
