"""What a time-boxed gpu_synth command pays before its first training step, on this
machine: generating SynthPose at the gpu_synth size, reading its annotations, decoding
the training images into the held bank, and the first batch of the loader.

    python benchmarks/bench_allocation_overheads.py [--device cpu] [--wholebody-sample 500]
        [--out DIR]

It runs in a fresh data folder (OCDLIB_DATA set to a temporary one unless given), as
on a bare machine. Generation uses every usable core, as `reproduce --minutes` does;
the whole-body rate is measured on `--wholebody-sample` images only (the time box no
longer generates whole-body data before a run needs it). Decoding goes through
`hold_images` with every usable core, the first time (decoded) and a second time in the
same process (what the second and third runs of an allocation pay). Run it on an
otherwise idle machine; with `--out`, the table is also written to
DIR/allocation_overheads.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--wholebody-sample", type=int, default=500)
    ap.add_argument("--out")
    args = ap.parse_args()
    os.environ.setdefault("OCDLIB_DATA", tempfile.mkdtemp(prefix="ocd-bench-data-"))
    t_command = time.perf_counter()

    import torch

    from ocdlib.bench.timing import publish
    from ocdlib.configs import build_config
    from ocdlib.cores import cpu_model, usable_cores
    from ocdlib.data.dataset import build_datasets
    from ocdlib.data.device_pipeline import collate_of
    from ocdlib.data.image_bank import _HELD, hold_images
    from ocdlib.data.layout import resolve_layout
    from ocdlib.data.prepare import ensure_synthpose, resolve_data

    t_import = time.perf_counter() - t_command
    cfg = build_config("gpu_synth_deeppose")
    rows = [("import torch and the kit", t_import, "")]
    synth = cfg.data.synth
    t = time.perf_counter()
    paths = resolve_data(cfg.data, progress=False)
    gen = time.perf_counter() - t
    n = synth.train + synth.val
    rows.append(("generate SynthPose body", gen, f"{n} images, {n / gen:.0f} images/s"))
    wb = replace(synth, wholebody=True, train=args.wholebody_sample, val=0)
    t = time.perf_counter()
    ensure_synthpose(wb, progress=False)
    wb_s = time.perf_counter() - t
    rows.append(
        (
            "generate SynthPose whole-body (sample)",
            wb_s,
            f"{wb.train} images, {wb.train / wb_s:.0f} images/s",
        )
    )
    t = time.perf_counter()
    info = resolve_layout(cfg.data, paths.train_ann)
    train_ds, _ = build_datasets(cfg, paths, info)
    rows.append(("read the annotations", time.perf_counter() - t, f"{len(train_ds)} figures"))
    device = torch.device(args.device)
    workers = usable_cores()
    for what in ("decode the held images", "hold them again, same process"):
        t = time.perf_counter()
        bank = hold_images(train_ds, device, "on", workers)
        dt = time.perf_counter() - t
        images = len(bank.sizes)
        rows.append((what, dt, f"{images} images, {images / dt:.0f} images/s, {workers} cores"))
    t = time.perf_counter()
    loader = torch.utils.data.DataLoader(
        train_ds,
        batch_size=cfg.train.batch_size,
        shuffle=True,
        num_workers=cfg.data.num_workers,
        collate_fn=collate_of(train_ds),
    )
    next(iter(loader))
    rows.append(
        ("first batch of the loader", time.perf_counter() - t, f"{cfg.data.num_workers} workers")
    )
    _HELD.clear()
    lines = [
        "# Before the first step of a gpu_synth run",
        "",
        f"Written by `python benchmarks/bench_allocation_overheads.py --device {args.device}` "
        f"on {cpu_model()} ({usable_cores()} usable cores), device {args.device}, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}.",
        "",
        "| what | seconds | |",
        "|---|---:|---|",
        *[f"| {what} | {s:.1f} | {note} |" for what, s, note in rows],
        "",
    ]
    publish("\n".join(lines) + "\n", args.out, "allocation_overheads.md")


if __name__ == "__main__":
    main()
