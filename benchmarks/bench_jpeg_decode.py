"""Decoding COCO photos: PIL in one loader process (the cpu and device pipelines'
workers today) against torchvision's decoder on the CPU and, batched, on the device
(`data.decode_on_device`, ocdlib/data/device_decode.py).

    python benchmarks/bench_jpeg_decode.py [--device cuda] [--images 2000] [--batch 128]
        [--rounds 7] [--out DIR]

The kit's 4-image COCO sample (ocdlib/sample_data/coco_sample, 500x333 to 640x429)
is read into memory once and repeated to `--images` encoded files, so no disk is timed.
PIL and torchvision's CPU decoder run on one thread (images/s per core, what a
loader worker gives); the device decodes the same bytes in batches of `--batch`. The
variants are interleaved round by round; figures are medians with the interquartile
range of the per-round ratio. Run it on an otherwise idle machine. With `--out`, the
table is also written to DIR/jpeg_decode.md.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from ocdlib.bench.run import machine
from ocdlib.bench.timing import Spread, interleaved, ratio_to, synchronizer
from ocdlib.paths import COCO_SAMPLE_DIR


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29's decoders
    torch.set_num_threads(1)
    device = torch.device(args.device)
    files = sorted(Path(COCO_SAMPLE_DIR).glob("*.jpg"))
    raw = [f.read_bytes() for f in files]
    blobs = [raw[i % len(raw)] for i in range(args.images)]
    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    sizes = sorted({Image.open(f).size for f in files})
    n_cpu = min(args.images, 200)  # per-core decoders: a slice is enough for a rate

    def pil():
        for b in blobs[:n_cpu]:
            np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))

    def torchvision_cpu():
        for t in tensors[:n_cpu]:
            decode_jpeg(t, mode=ImageReadMode.RGB)

    variants = {"PIL, one core": pil, "torchvision, CPU, one core": torchvision_cpu}
    per_call = {"PIL, one core": n_cpu, "torchvision, CPU, one core": n_cpu}
    if device.type != "cpu":

        def on_device():
            for i in range(0, len(tensors), args.batch):
                decode_jpeg(tensors[i : i + args.batch], mode=ImageReadMode.RGB, device=device)

        name = f"torchvision on {device}, batches of {args.batch}"
        variants[name], per_call[name] = on_device, len(tensors)
    times = interleaved(variants, args.rounds, warmup=1, sync=synchronizer(device))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    m = machine(device)
    where = f"{m['gpu']}; " if m.get("gpu") else ""
    lines = [
        f"# JPEG decoding of COCO photos ({len(files)} sample images, sizes "
        f"{', '.join(f'{w}x{h}' for w, h in sizes)}, repeated to {args.images})",
        "",
        f"{where}{m['cpu']}, {m['cores_usable']} cores; torch {torch.__version__}; "
        f"commit {commit}; {args.rounds} rounds, medians (IQR of the per-round ratio). "
        f"Written by `python benchmarks/bench_jpeg_decode.py --device {args.device} "
        f"--images {args.images} --batch {args.batch} --rounds {args.rounds}`.",
        "",
        "| decoder | images/s | vs PIL on one core |",
        "|---|---:|---:|",
    ]
    pil_rate = n_cpu / Spread.of(times["PIL, one core"]).median
    for name, fn_times in times.items():
        rate = per_call[name] / Spread.of(fn_times).median
        if name == "PIL, one core":
            vs = "1.00x"
        else:
            # Per image, so that a batched device call and a per-core loop compare.
            per_image = {
                k: [t / per_call[k] for t in v]
                for k, v in times.items()
                if k in (name, "PIL, one core")
            }
            r = ratio_to(per_image, "PIL, one core", name)
            vs = f"{rate / pil_rate:.2f}x ({r.q1:.2f}-{r.q3:.2f})"
        lines.append(f"| {name} | {rate:,.0f} | {vs} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "jpeg_decode.md").write_text(text)


if __name__ == "__main__":
    main()
