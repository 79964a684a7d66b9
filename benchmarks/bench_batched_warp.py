"""Cutting a batch of top-down crops: PIL one sample at a time (the loader's path today)
against one batched grid_sample (ocdlib/data/batched_warp.py), on the CPU, one thread.

    python benchmarks/bench_batched_warp.py [--rounds N]

Both start from decoded images in memory and end with normalised float crops: PIL
warps each image and `normalize_image` converts it; the batched path warps a
(B, 3, H, W) uint8 tensor of the images (as a device pipeline would hold them, so
stacking is timed apart) and normalises in one go. Geometry: random centres,
scales 0.75 to 1.25 of the box and rotations within 40 degrees, the same maps for
both. Sizes: the cpu profile (128x128 SynthPose images, 96x128 crops, batch 32) and
gpu_synth's (320x320 images, 192x256 crops, batch 64). The variants are interleaved
round by round (ocdlib.bench.timing); figures are medians. Run it on an otherwise
idle machine.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from ocdlib.bench.run import machine
from ocdlib.bench.timing import SEED, Spread, interleaved, ratio_to
from ocdlib.data.batched_warp import normalize_batch, stack_images, warp_batch
from ocdlib.data.transforms import get_warp_matrix, normalize_image, warp_image
from ocdlib.engine.run_dir import git_commit

# name: (image (W, H), crop (W, H), batch)
SIZES = {
    "cpu profile: 128x128 -> 96x128, batch 32": ((128, 128), (96, 128), 32),
    "gpu_synth: 320x320 -> 192x256, batch 64": ((320, 320), (192, 256), 64),
}


def maps(rng: np.random.Generator, image: tuple[int, int], crop: tuple[int, int], n: int):
    w, h = image
    out = []
    for _ in range(n):
        center = rng.uniform(0.3, 0.7, 2) * (w, h)
        box = rng.uniform(0.75, 1.25) * 0.6 * h
        scale = np.array([box * crop[0] / crop[1], box])
        out.append(get_warp_matrix(center, scale, rng.uniform(-40, 40), crop))
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    torch.set_num_threads(1)
    commit = git_commit()
    m = machine(torch.device("cpu"))
    print(
        f"{m['cpu']}, {m['cores_usable']} cores; torch {torch.__version__}, 1 thread; "
        f"commit {commit}, seed {SEED}, {args.rounds} rounds (medians; ratio IQR in brackets)\n"
    )
    print(
        "| size | PIL per sample, images/s | batched, images/s | speed-up | "
        "stacking the batch, ms |\n|---|---:|---:|---:|---:|"
    )
    rng = np.random.default_rng(SEED)
    for title, (image, crop, batch) in SIZES.items():
        arrays = [rng.integers(0, 256, (image[1], image[0], 3), dtype=np.uint8) for _ in range(8)]
        arrays = [arrays[i % 8] for i in range(batch)]
        pils = [Image.fromarray(a) for a in arrays]
        warps = maps(rng, image, crop, batch)
        stacked = stack_images(arrays)

        def pil_path(pils=pils, warps=warps, crop=crop):
            return torch.stack(
                [normalize_image(warp_image(p, w, crop)) for p, w in zip(pils, warps)]
            )

        def batched(stacked=stacked, warps=warps, crop=crop):
            return normalize_batch(warp_batch(stacked, warps, crop))

        times = interleaved(
            {"pil": pil_path, "batched": batched, "stack": lambda a=arrays: stack_images(a)},
            args.rounds,
            repeat=2,
            warmup=1,
        )
        pil, fast = (Spread.of(times[k]).median for k in ("pil", "batched"))
        speedup = ratio_to(times, "pil", "batched")
        stack_ms = Spread.of(times["stack"]).median * 1000
        print(
            f"| {title} | {batch / pil:,.0f} | {batch / fast:,.0f} | {speedup.median:.2f}x "
            f"({speedup.q1:.2f}-{speedup.q3:.2f}) | {stack_ms:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
