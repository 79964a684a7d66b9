"""CPU training speed: the levers of the `cpu` profile, measured side by side in one run.

    python benchmarks/bench_cpu_training.py [--quick]

Part 1, the training step alone (forward, backward, Adam; random tensors, no data
loading), for DeepPose and SimpleBaseline at two crop sizes, in fp32 and with bf16
autocast + channels_last. The variants are interleaved round by round so that a
slow patch of the machine hits them all; the figure is the median over rounds,
and each variant is given as a ratio to fp32 at 128x96 measured in the same run.

Part 2, whole training runs through the real DataLoader on SynthPose (the cpu
profile's data): one run with every thread and one loader worker, one with every
thread and the loader in the process, and one run per core side by side (what
`reproduce --jobs` does), as crops per second of the whole machine.

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from ocdlib.configs import build_config
from ocdlib.engine.precision import Precision, cpu_has_fast_bf16
from ocdlib.losses import build_objective
from ocdlib.metainfo import get_dataset_info
from ocdlib.models import build_model

SIZES = {"128x96": ((96, 128), (24, 32)), "96x72": ((72, 96), (18, 24))}


def step_variants(method: str, backbone: str, batch: int):
    info = get_dataset_info("coco")
    for size_name, (input_size, hm_size) in SIZES.items():
        cfg = build_config(
            f"cpu_{method}",
            {
                "data.input_size": list(input_size),
                "data.heatmap_size": list(hm_size),
                "model.backbone": backbone,
            },
        )
        for prec in (Precision(False, False), Precision(True, True)):
            torch.manual_seed(0)
            model = prec.model(
                build_model(cfg.model, info.num_keypoints, cfg.data.input_size, hm_size)
            )
            objective = build_objective(cfg, info, model, None)
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            w, h = input_size
            k = info.num_keypoints
            batch_t = {
                "image": prec.images(torch.randn(batch, 3, h, w)),
                "reg_target": torch.rand(batch, k, 2),
                "reg_weight": torch.ones(batch, k),
            }
            if "hm" in cfg.model.heads:
                batch_t["hm_target"] = torch.rand(batch, k, hm_size[1], hm_size[0]) * 0.1
                batch_t["hm_weight"] = torch.ones(batch, k)

            def step(model=model, objective=objective, opt=opt, b=batch_t, prec=prec):
                with prec.context(torch.device("cpu")):
                    total, _ = objective(model, b, 10_000)
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()

            yield f"{method} {backbone} {size_name} {prec.name}", step


def bench_steps(rounds: int, steps: int, batch: int, threads: int) -> list[dict]:
    torch.set_num_threads(threads)
    variants = []
    for method in ("deeppose", "simplebaseline"):
        variants += list(step_variants(method, "resnet18_w32", batch))
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _name, step in variants:  # warm-up
        step()
        step()
    for _ in range(rounds):
        for name, step in variants:
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            times[name].append(steps * batch / (time.perf_counter() - t0))
    rows = []
    for name, rates in times.items():
        method = name.split()[0]
        ref = statistics.median(times[f"{method} resnet18_w32 128x96 fp32"])
        med = statistics.median(rates)
        rows.append({"variant": name, "crops_per_s": med, "ratio": med / ref})
    return rows


def _train_cmd(out: str, steps: int, threads: int, workers: int, preset: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ocdlib",
        "train",
        "--config",
        preset,
        "--out",
        out,
        "--no-progress",
        "--set",
        f"train.max_steps={steps}",
        "--set",
        "train.epochs=1",
        "--set",
        f"train.num_threads={threads}",
        "--set",
        f"data.num_workers={workers}",
    ]


def bench_runs(preset: str, steps: int, cores: int) -> list[dict]:
    """Crops/s of the whole machine for three ways to use its cores (training loop only)."""
    plans = [
        (f"1 run, {cores} threads, 1 loader worker", 1, cores, 1),
        (f"1 run, {cores} threads, loader in process", 1, cores, 0),
        (f"{cores} runs side by side, 1 thread each", cores, 1, 0),
    ]
    rows = []
    # SynthPose is generated once before timing anything.
    subprocess.run(
        _train_cmd(tempfile.mkdtemp(), 1, cores, 0, preset), check=True, capture_output=True
    )
    for label, jobs, threads, workers in plans:
        with tempfile.TemporaryDirectory() as tmp:
            procs = [
                subprocess.Popen(
                    _train_cmd(f"{tmp}/r{j}", steps, threads, workers, preset),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for j in range(jobs)
            ]
            for p in procs:
                if p.wait() != 0:
                    raise RuntimeError(f"{label}: a training run failed")
            rates = [
                json.load(open(f"{tmp}/r{j}/result.json"))["train_images_per_s"]
                for j in range(jobs)
            ]
        rows.append({"plan": label, "crops_per_s": sum(rates)})
    base = rows[0]["crops_per_s"]
    for r in rows:
        r["ratio"] = r["crops_per_s"] / base
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few rounds and steps (a smoke check)")
    ap.add_argument("--out", help="also write the figures to this JSON file")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    rounds, steps, run_steps = (2, 1, 10) if args.quick else (5, 3, 150)
    print(
        f"# {platform.processor() or platform.machine()}, {cores} cores, torch "
        f"{torch.__version__}, bf16 matrix instructions: {cpu_has_fast_bf16()}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(f"\n## Training step, batch 32, {cores} threads, median of {rounds} rounds")
    print("| variant | crops/s | ratio to fp32 128x96 |\n|---|---|---|")
    step_rows = bench_steps(rounds, steps, 32, cores)
    for r in step_rows:
        print(f"| {r['variant']} | {r['crops_per_s']:.0f} | {r['ratio']:.2f}x |")
    run_rows = []
    for preset in ("cpu_deeppose", "cpu_simplebaseline"):
        print(f"\n## Whole training loop, {preset}, {run_steps} steps, DataLoader on SynthPose")
        print("| plan | crops/s (machine) | ratio |\n|---|---|---|")
        rows = bench_runs(preset, run_steps, cores)
        for r in rows:
            print(f"| {r['plan']} | {r['crops_per_s']:.0f} | {r['ratio']:.2f}x |")
        run_rows += [{"preset": preset, **r} for r in rows]
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"steps": step_rows, "runs": run_rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
