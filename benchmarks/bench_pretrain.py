"""What a pre-training costs on this machine: seconds a step and images a second of each
pre-training preset, and the minutes its whole schedule would take here.

    python benchmarks/bench_pretrain.py [--presets fractal_w32 synth_rotation_w32 fractal_r50]
                                        [--steps 40] [--batch N] [--bank PRESET ...]

Each preset trains `--steps` steps of its own recipe (the batch drawn and augmented, the
forward and backward passes in this machine's precision, the optimiser step) after 5
warm-up steps, from a small bank of its pretext's images; the step time is the median
over the timed steps. `--batch` overrides the preset's batch (for ResNet-50 on a CPU,
whose batch of 256 takes long). Run it on an otherwise idle machine: the records of the
pre-trainings themselves say what their minutes were measured beside.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn

from ocdlib.engine.precision import resolve_precision
from ocdlib.engine.run_dir import git_commit
from ocdlib.models.backbones import build_backbone
from ocdlib.pretrain import pretrain_config
from ocdlib.pretrain.pretexts import load_bank, make_batch, pretext_classes
from ocdlib.pretrain.trainer import PretextModel, machine


def time_steps(name: str, steps: int, batch: int | None, folder: Path) -> dict:
    cfg = pretrain_config(name)
    full_batch = cfg.batch_size
    # A bank of a few images a class: the cost of a step does not depend on its size.
    cfg = replace(cfg, instances=min(cfg.instances, 4), classes=min(cfg.classes, 50))
    if batch:
        cfg = replace(cfg, batch_size=batch)
    bank = load_bank(cfg, folder, say=lambda m: None)
    device = torch.device("cpu")
    precision = resolve_precision(cfg.amp, device)
    model = precision.model(PretextModel(build_backbone(cfg.backbone), pretext_classes(cfg)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for step in range(5 + steps):
        t0 = time.perf_counter()
        x, y = make_batch(bank, cfg, step)
        with precision.context(device):
            logits = model(precision.images(x))
        loss = loss_fn(logits.float(), y % logits.shape[1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        if step >= 5:
            times.append(time.perf_counter() - t0)
    per_step = statistics.median(times)
    per_image = per_step / cfg.batch_size
    # The batch alone at the preset's own size, drawn and augmented on the host: what
    # one host thread can feed a GPU at most.
    full = replace(cfg, batch_size=full_batch)
    drawn = []
    for step in range(3 + min(steps, 10)):
        t0 = time.perf_counter()
        make_batch(bank, full, step)
        if step >= 3:
            drawn.append(time.perf_counter() - t0)
    batch_s = statistics.median(drawn)
    return {
        "preset": name,
        "batch": cfg.batch_size,
        "s/step": per_step,
        "images/s": 1 / per_image,
        "s per 1000 images": 1000 * per_image,
        "schedule min": per_image * full_batch * pretrain_config(name).steps / 60,
        "batch images/s": full_batch / batch_s,
        "precision": precision.name,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--presets", nargs="+", default=["fractal_w32", "synth_rotation_w32"])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--bank", nargs="*", default=[], help="presets whose full bank to time")
    args = ap.parse_args()
    print(f"# Pre-training cost on {machine()}")
    print(f"commit {git_commit()}; {args.steps} timed steps after 5 warm-up, medians\n")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.bank:  # the bank at the preset's own size, generated once
            cfg = pretrain_config(name)
            t0 = time.perf_counter()
            load_bank(cfg, Path(tmp) / "full", say=lambda m: None)
            dt = time.perf_counter() - t0
            n = cfg.classes * cfg.instances
            print(f"{name}: generating its bank of {n} images took {dt:.0f} s "
                  f"({n / dt:.0f} images/s)\n", flush=True)  # fmt: skip
        print("| preset | batch | s/step | images/s | s per 1000 images | whole schedule, min | "
              "batches drawn alone, images/s | precision |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for name in args.presets:
            r = time_steps(name, args.steps, args.batch, Path(tmp))
            print(f"| {r['preset']} | {r['batch']} | {r['s/step']:.3f} | {r['images/s']:.0f} | "
                  f"{r['s per 1000 images']:.2f} | {r['schedule min']:.1f} | "
                  f"{r['batch images/s']:.0f} | {r['precision']} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
