"""The pretext tasks a backbone is pre-trained on, without natural images or keypoints.

A pretext is a bank of images generated once (a pure function of its settings and
seed, cached under `data/pretrain/`) and a batch function that augments a batch of
the bank on the fly and labels it. The batch at step `i` is a pure function of
(seed, i), so a resumed pre-training sees exactly the batches it would have seen.

- "fractal": FractalDB-style classification. `classes` IFS systems (ocdlib/pretrain/
  fractals.py), `instances` jittered copies of each; a batch draws them in random
  colours on random backgrounds, flipped, scaled and shifted. The label is the system.
- "synth_rotation": RotNet-style rotation prediction (Gidaris et al., ICLR 2018) on
  SynthPose images, read as pixels only: their annotations, keypoints and masks are
  never read, so no pose label reaches the backbone. The images come from another
  seed than the copy the pose models train and are scored on. The label is which
  of 0, 90, 180 or 270 degrees the image was turned by.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError
from .fractals import draw_density, sample_system

PRETEXTS = ("fractal", "synth_rotation")


@dataclass
class Bank:
    images: np.ndarray  # (M, H, W) uint8 densities, or (M, H, W, 3) uint8 RGB
    labels: np.ndarray  # (M,) int64; for synth_rotation all 0 (the label is drawn per batch)
    num_classes: int


def check_pretext(name: str) -> None:
    if name not in PRETEXTS:
        raise ConfigError(f"pretrain.pretext={name!r} is unknown; choose one of {list(PRETEXTS)}")


def _bank_file(folder: Path, settings: dict) -> Path:
    blob = json.dumps(settings, sort_keys=True).encode()
    return folder / f"{settings['pretext']}-{hashlib.sha1(blob).hexdigest()[:10]}.npz"


def load_bank(cfg, folder: Path, say=print) -> Bank:
    """The pretext's image bank for config `cfg`, generated into `folder` once."""
    check_pretext(cfg.pretext)
    settings = {
        "pretext": cfg.pretext,
        "image_size": cfg.image_size,
        "classes": cfg.classes,
        "instances": cfg.instances,
        "bank_seed": cfg.bank_seed,
        "version": 1,
    }
    path = _bank_file(folder, settings)
    if path.is_file():
        try:
            with np.load(path) as z:
                return Bank(z["images"], z["labels"], int(z["num_classes"]))
        except (OSError, ValueError, KeyError) as err:
            say(f"pretrain: {path} is unreadable ({err}); generating it again")
    started = time.monotonic()
    if cfg.pretext == "fractal":
        bank = _fractal_bank(cfg)
    else:
        bank = _synth_bank(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, images=bank.images, labels=bank.labels, num_classes=bank.num_classes)
    tmp.replace(path)
    say(
        f"pretrain: generated {len(bank.images)} {cfg.pretext} images in "
        f"{time.monotonic() - started:.0f} s -> {path}"
    )
    return bank


def _fractal_bank(cfg) -> Bank:
    """`classes` systems of 2 to 4 maps; each instance jitters every parameter of its
    class by a few percent (FractalDB's instances vary the weights of one system)."""
    rng = np.random.default_rng([cfg.bank_seed, 7])
    systems = [sample_system(rng, int(rng.integers(2, 5))) for _ in range(cfg.classes)]
    size, per = cfg.image_size, cfg.instances
    images, labels = [], []
    for c, (linear, shift) in enumerate(systems):
        n = linear.shape[0]
        lin = linear[None] * (1 + rng.normal(0, 0.06, size=(per, n, 2, 2)))
        sh = shift[None] + rng.normal(0, 0.06, size=(per, n, 2))
        dens = draw_density(lin, sh, size, rng)
        images.append(np.round(dens * 255).astype(np.uint8))
        labels.append(np.full(per, c))
        if (c + 1) % 50 == 0:
            print(f"pretrain: drew {c + 1}/{cfg.classes} fractal classes", file=sys.stderr)
    return Bank(np.concatenate(images), np.concatenate(labels).astype(np.int64), cfg.classes)


def _synth_bank(cfg) -> Bank:
    """SynthPose images of the cpu profile's look, pixels only, at the bank's size."""
    from PIL import Image

    from ..configs.presets import CPU_SYNTH_SPEC
    from ..data.synthpose import render_synthpose_image

    count = cfg.classes * cfg.instances
    size = cfg.image_size
    images = np.empty((count, size, size, 3), np.uint8)
    for i in range(count):
        sample = render_synthpose_image(
            cfg.bank_seed, "train", i, image_size=(2 * size, 2 * size), spec=CPU_SYNTH_SPEC
        )
        images[i] = np.asarray(sample.image.resize((size, size), Image.BILINEAR))
        if (i + 1) % 1000 == 0:
            print(f"pretrain: rendered {i + 1}/{count} SynthPose images", file=sys.stderr)
    return Bank(images, np.zeros(count, np.int64), 4)


def pretext_classes(cfg) -> int:
    return cfg.classes if cfg.pretext == "fractal" else 4


_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _affine(gen: torch.Generator, n: int, scale: tuple[float, float], rotate: float):
    """(n, 2, 3) sampling grids' affine maps: flip, scale, rotation and shift."""
    s = torch.empty(n).uniform_(*scale, generator=gen)
    a = torch.empty(n).uniform_(-rotate, rotate, generator=gen) * (np.pi / 180)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    room = (1 - 1 / s).clamp(min=0) + 0.15  # shift within what the zoom leaves
    t = (torch.rand(n, 2, generator=gen) * 2 - 1) * room[:, None]
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, t[:, 0]], 1), torch.stack([sin * flip, cos, t[:, 1]], 1)],
        1,
    )
    return theta


def make_batch(bank: Bank, cfg, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The augmented, normalised batch of step `step` and its labels (a pure function of
    cfg.seed and step)."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    idx = torch.randint(len(bank.images), (cfg.batch_size,), generator=gen)
    size = cfg.image_size
    raw = torch.from_numpy(bank.images[idx.numpy()])
    n = cfg.batch_size
    if cfg.pretext == "fractal":
        dens = raw.float().div_(255).unsqueeze(1)  # (N, 1, S, S)
        theta = _affine(gen, n, (0.7, 1.6), 0.0)
        grid = F.affine_grid(theta, (n, 1, size, size), align_corners=False)
        dens = F.grid_sample(dens, grid, padding_mode="zeros", align_corners=False)
        fg = torch.rand(n, 3, 1, 1, generator=gen)
        bg = torch.rand(n, 3, 1, 1, generator=gen)
        # At least some contrast between figure and ground, on a random channel mix.
        bg = torch.where((fg - bg).abs().sum(1, keepdim=True) < 0.6, 1 - fg, bg)
        img = bg + (fg - bg) * dens.clamp(0, 1)
        labels = torch.from_numpy(bank.labels[idx.numpy()])
    else:
        img = raw.permute(0, 3, 1, 2).float().div_(255)
        theta = _affine(gen, n, (1.0, 1.3), 0.0)
        grid = F.affine_grid(theta, (n, 3, size, size), align_corners=False)
        img = F.grid_sample(img, grid, padding_mode="reflection", align_corners=False)
        labels = torch.randint(4, (n,), generator=gen)
        img = torch.stack([torch.rot90(im, int(k), dims=(1, 2)) for im, k in zip(img, labels)])
    img = img + torch.randn(img.shape, generator=gen) * 0.03
    return (img.clamp(0, 1) - _MEAN) / _STD, labels
