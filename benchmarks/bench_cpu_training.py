"""CPU training speed: the levers of the `cpu` profile, measured side by side in one run.

    python benchmarks/bench_cpu_training.py [--quick]
    python benchmarks/bench_cpu_training.py --scaling 2 4 8

Part 1, the training step alone (forward, backward, Adam; random tensors, no data
loading), for DeepPose and SimpleBaseline at two crop sizes, in fp32 and with bf16
autocast + channels_last. The variants are interleaved round by round so that a
slow patch of the machine hits them all; the figure is the median over rounds,
and each variant is given as a ratio to fp32 at 128x96 measured in the same run.

Part 2, whole training runs through the real DataLoader on SynthPose (the cpu
profile's data): one run with every thread and one loader worker, one with every
thread and the loader in the process, and one run per core side by side (what
`reproduce --jobs` does), as crops per second of the whole machine.

With `--scaling N ...`, only `reproduce`'s way of using a machine: one single-thread
run per core on the first N usable cores (one thread of each physical core first),
for each N, with `train.amp` on (and off on the fewest cores, on CPUs with bf16
instructions), as crops per second of those N cores: how the grid's time falls on a
bigger machine, measured on one machine pinned to fewer.

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from ocdlib.configs import build_config
from ocdlib.cores import cpu_model, usable_cores
from ocdlib.engine.precision import Precision, cpu_has_fast_bf16
from ocdlib.engine.run_dir import git_commit
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


def _train_cmd(
    out: str, steps: int, threads: int, workers: int, preset: str, amp: bool = True
) -> list[str]:
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
        "--set",
        f"train.amp={str(amp).lower()}",
        "--set",
        "train.device=cpu",  # "auto" would train on a GPU where the machine has one
    ]


def _machine_rate(
    preset: str, steps: int, jobs: int, threads: int, workers: int, amp: bool = True
) -> float:
    """Crops/s of the whole machine: `jobs` training runs at once, summed."""
    with tempfile.TemporaryDirectory() as tmp:
        procs = [
            subprocess.Popen(
                _train_cmd(f"{tmp}/r{j}", steps, threads, workers, preset, amp),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for j in range(jobs)
        ]
        if any([p.wait() != 0 for p in procs]):  # every run waited for, not the first
            raise RuntimeError(f"{preset}: a training run failed ({jobs} side by side)")
        return sum(
            json.load(open(f"{tmp}/r{j}/result.json"))["train_images_per_s"] for j in range(jobs)
        )


def _prepare(preset: str, cores: int) -> None:
    """Generate the preset's SynthPose once, before anything is timed."""
    subprocess.run(
        _train_cmd(tempfile.mkdtemp(), 1, cores, 0, preset), check=True, capture_output=True
    )


def bench_runs(preset: str, steps: int, cores: int) -> list[dict]:
    """Crops/s of the whole machine for three ways to use its cores (training loop only)."""
    plans = [
        (f"1 run, {cores} threads, 1 loader worker", 1, cores, 1),
        (f"1 run, {cores} threads, loader in process", 1, cores, 0),
        (f"{cores} runs side by side, 1 thread each", cores, 1, 0),
    ]
    _prepare(preset, cores)
    rows = [
        {"plan": label, "crops_per_s": _machine_rate(preset, steps, jobs, threads, workers)}
        for label, jobs, threads, workers in plans
    ]
    base = rows[0]["crops_per_s"]
    for r in rows:
        r["ratio"] = r["crops_per_s"] / base
    return rows


def _one_thread_per_core_first(cpus) -> list[int]:
    """`cpus` ordered so that N of them span N physical cores where the machine has SMT."""

    def core(cpu: int) -> tuple[str, str]:
        topo = f"/sys/devices/system/cpu/cpu{cpu}/topology"
        try:
            return (
                open(f"{topo}/physical_package_id").read().strip(),
                open(f"{topo}/core_id").read().strip(),
            )
        except OSError:
            return ("cpu", str(cpu))

    seen: dict[tuple[str, str], int] = {}
    rank = {}
    for cpu in sorted(cpus):
        key = core(cpu)
        rank[cpu] = seen.get(key, 0)  # 0 for a core's first thread, 1 for its sibling
        seen[key] = rank[cpu] + 1
    return sorted(cpus, key=lambda c: (rank[c], c))


def bench_scaling(presets: list[str], steps: int, core_counts: list[int]):
    """`reproduce --jobs N` on N cores: one single-thread run per core, the process pinned
    to the first N usable cores (what a smaller machine would have), bf16 and fp32.
    Yields each row as soon as it is measured (a long run cut short keeps its rows)."""
    usable = _one_thread_per_core_first(os.sched_getaffinity(0))
    precisions = [True, False] if cpu_has_fast_bf16() else [True]
    for preset in presets:
        _prepare(preset, len(usable))
        ref = None  # train.amp on, fewest cores: measured first for each preset
        for n in core_counts:
            os.sched_setaffinity(0, usable[:n])  # inherited by the training processes
            # fp32 on the fewest cores only: the bf16 factor, side by side with bf16.
            for amp in precisions if n == core_counts[0] else [True]:
                rate = _machine_rate(preset, steps, n, 1, 0, amp)
                ref = rate if ref is None else ref
                yield {
                    "preset": preset,
                    "cores": n,
                    "amp": amp,
                    "crops_per_s": rate,
                    "ratio": rate / ref,
                }
        os.sched_setaffinity(0, usable)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few rounds and steps (a smoke check)")
    ap.add_argument("--out", help="also write the figures to this JSON file")
    ap.add_argument(
        "--scaling",
        type=int,
        nargs="+",
        metavar="N",
        help="only the side-by-side runs, on the first N usable cores for each N (e.g. 2 4 8)",
    )
    args = ap.parse_args()
    cores = usable_cores()
    rounds, steps, run_steps = (2, 1, 10) if args.quick else (5, 3, 150)
    print(
        f"# {cpu_model()}, {cores} usable cores, torch "
        f"{torch.__version__}, bf16 matrix instructions: {cpu_has_fast_bf16()}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(f"\nWritten by `python {' '.join(sys.argv)}` at commit {git_commit()}.")
    if args.scaling:
        if max(args.scaling) > cores:
            ap.error(f"--scaling {max(args.scaling)}: only {cores} usable cores here")
        run_steps = 10 if args.quick else 100
        print(f"\n## One run per core side by side, {run_steps} steps each, machine crops/s")
        print("| preset | cores | precision | crops/s | ratio to train.amp on, fewest cores |")
        print("|---|---|---|---|---|")
        rows = []
        for r in bench_scaling(["cpu_deeppose", "cpu_simplebaseline"], run_steps, args.scaling):
            prec = "train.amp on" if r["amp"] else "train.amp off (fp32)"
            print(
                f"| {r['preset']} | {r['cores']} | {prec} | {r['crops_per_s']:.0f} "
                f"| {r['ratio']:.2f}x |",
                flush=True,
            )
            rows.append(r)
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"scaling": rows}, f, indent=1)
        return 0
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
