"""The DARK blur of the heatmap decoder: one-channel conv2d (previous code) against
banded matrix products (ocdlib.codecs.gaussian_blur now), measured side by side.

    python benchmarks/bench_heatmap_blur.py [--rounds N]

Part 1 times the blur alone on the heatmap batches the kit decodes: the cpu
profile's body and whole-body maps, and COCO's 64x48 maps (17 and 133 keypoints).
Part 2 times a whole OCD-DeepPose training step (forward, backward, Adam; random
tensors) at the cpu profile's body and whole-body sizes, where decoding the
heatmap head for terms b and c runs every step. The variants are interleaved round
by round (ocdlib.bench.timing); figures are medians, ratios per round. Run it on
an otherwise idle machine.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import ocdlib.codecs as codecs
from ocdlib.bench.run import machine
from ocdlib.bench.timing import SEED, Spread, interleaved, ratio_to
from ocdlib.bench.training_cost import step_setup
from ocdlib.engine.run_dir import git_commit

BLUR_SHAPES = {
    "cpu body, batch 32 x 17 x 32x24": (32, 17, 32, 24),
    "cpu whole-body, batch 32 x 133 x 40x30": (32, 133, 40, 30),
    "COCO body, batch 64 x 17 x 64x48": (64, 17, 64, 48),
    "COCO whole-body, batch 64 x 133 x 64x48": (64, 133, 64, 48),
}
STEP_PROFILES = {"cpu body": "cpu", "cpu whole-body": "cpu_wholebody"}
NOW = codecs.gaussian_blur


def previous_blur(heatmaps: torch.Tensor, kernel: int) -> torch.Tensor:
    """The decoder's blur before: two one-channel convolutions over N*K zero-padded maps."""
    n, k, h, w = heatmaps.shape
    x = heatmaps.reshape(n * k, 1, h, w)
    g = codecs._gaussian_kernel1d(kernel, x.dtype, x.device)
    pad = kernel // 2
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0)), g.view(1, 1, 1, kernel))
    x = F.conv2d(F.pad(x, (0, 0, pad, pad)), g.view(1, 1, kernel, 1)).reshape(n, k, h, w)
    old_max = heatmaps.amax(dim=(2, 3), keepdim=True)
    return x * (old_max / x.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12))


def with_blur(blur, fn):
    def run():
        codecs.gaussian_blur = blur
        try:
            fn()
        finally:
            codecs.gaussian_blur = NOW

    return run


def report(title: str, times: dict) -> None:
    prev, now = (Spread.of(times[k]).scaled(1000) for k in ("previous", "now"))
    speedup = ratio_to(times, "previous", "now")
    print(
        f"| {title} | {prev.median:.1f} | {now.median:.1f} | {speedup.median:.2f}x "
        f"({speedup.q1:.2f}-{speedup.q3:.2f}) |",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    commit = git_commit()
    m = machine(torch.device("cpu"))
    print(
        f"{m['cpu']}, {m['cores_usable']} cores, bf16 instructions: "
        f"{m['bf16_matrix_instructions']}; torch {m['torch']}, {m['torch_threads']} threads; "
        f"commit {commit}, seed {SEED}, {args.rounds} rounds (medians; ratio IQR in brackets)\n"
    )
    print("| blur alone | previous ms | now ms | speed-up |\n|---|---|---|---|")
    g = torch.Generator().manual_seed(SEED)
    for title, shape in BLUR_SHAPES.items():
        maps = torch.rand(shape, generator=g)
        variants = {
            "previous": lambda x=maps: previous_blur(x, 11),
            "now": lambda x=maps: NOW(x, 11),
        }
        report(title, interleaved(variants, args.rounds, repeat=3, warmup=2))
    print("\n| OCD-DeepPose training step, batch 32 | previous ms | now ms | speed-up |")
    print("|---|---|---|---|")
    for title, profile in STEP_PROFILES.items():
        step = step_setup(profile, "ocd", {}, 32, torch.device("cpu"), {})[0]
        variants = {"previous": with_blur(previous_blur, step), "now": with_blur(NOW, step)}
        report(title, interleaved(variants, args.rounds, repeat=1, warmup=1))


if __name__ == "__main__":
    main()
