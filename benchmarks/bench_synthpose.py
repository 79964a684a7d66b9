"""SynthPose rendering speed on one core: images per second, median of a few repeats.

    python benchmarks/bench_synthpose.py [--size 256x192] [--images 200] [--repeats 5]

Each repeat renders and JPEG-encodes `--images` images in this process (one
core) and writes nothing to disk. It prints the median and the best repeat of
wall-clock and CPU-time rates: on a shared machine other processes slow some
repeats down, and the best repeat is the closest to the generator's own speed
(as timeit reports). A last line times the full `generate_synthpose` path
(JPEG files and annotation JSON written) into a temporary folder.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time

from ocdlib.data.synthpose import SynthPoseSpec, generate_synthpose, render_synthpose_image


def bench_render(size, images: int, repeats: int, spec: SynthPoseSpec) -> dict[str, float]:
    """Images per second of render + JPEG encoding (median and best of `repeats`)."""
    wall, cpu = [], []
    for _ in range(repeats):  # the same images each time, so repeats compare like with like
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(images):
            sample = render_synthpose_image(0, "train", i, size, spec)
            sample.image.save(io.BytesIO(), format="JPEG", quality=spec.jpeg_quality)
        wall.append(images / (time.perf_counter() - t0))
        cpu.append(images / max(1e-9, time.process_time() - c0))
    return {
        "wall_median": statistics.median(wall),
        "wall_best": max(wall),
        "cpu_median": statistics.median(cpu),
        "cpu_best": max(cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256x192", help="HxW")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    spec = SynthPoseSpec()
    render_synthpose_image(0, "train", 0, size, spec)  # warm caches (noise tile)
    rates = bench_render(size, args.images, args.repeats, spec)
    print(
        f"render+jpeg {size[0]}x{size[1]}, one core, {args.repeats} x {args.images} images: "
        f"wall {rates['wall_median']:.1f} images/s median ({rates['wall_best']:.1f} best), "
        f"CPU {rates['cpu_median']:.1f} images/s median ({rates['cpu_best']:.1f} best)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        stats = generate_synthpose(
            tmp, n_train=args.images, n_val=0, seed=0, image_size=size, spec=spec, progress=False
        )
    print(f"generate_synthpose (files written): {stats['images_per_s']:.1f} images/s wall")


if __name__ == "__main__":
    main()
