"""GPU training speed at the COCO crop size: the models' ceiling and the data pipeline's.

    python benchmarks/bench_gpu_training.py [--out reports/gpu_synth] [--batch 128]
                                            [--rounds 20] [--workers 8 12 16] [--no-compile]

Part 1, the ceiling: one training step of DeepPose-R50, SimpleBaseline-R50 and
OCD-DeepPose-R50 at 256x192 (the coco_r50 presets, from scratch; the trainer's own
`forward_loss` and `backward_step`, with the precision `train.amp` resolves to on
CUDA: bf16 autocast + channels_last), on random tensors already on the GPU, eager
and under `torch.compile`. The methods are interleaved round by round; a figure is
the median over rounds. FLOP utilisation counts a training step as three forward
passes (2 FLOPs a multiply-accumulate) against the GPU's dense bf16 peak.

Part 2, the pipeline: the trainer's DataLoader on SynthPose at the gpu_synth
profile's image size (320x320, 256x192 crops, heatmap targets), alone and feeding
the eager training step, for each worker count; each as images/s and as a
fraction of the Part 1 ceiling. The data pipelines (`--pipelines`): "cpu" crops
and encodes in the loader's workers (`--workers`); the device pipeline cuts and
encodes on the GPU (`--device-workers`), its workers decoding each image
("device"), or the training set decoded once and held on the GPU ("device-held",
`data.hold_images`), or the workers reading JPEG bytes that the GPU decodes
("device-decode", `data.decode_on_device`).

Writes throughput.md and throughput.json into --out after each part, so a run cut
short keeps what it measured. Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from ocdlib.bench.timing import Spread, interleaved, ratio_to, synchronizer
from ocdlib.bench.training_cost import step_batch
from ocdlib.configs import build_config
from ocdlib.data.dataset import build_datasets
from ocdlib.data.device_decode import decodes_on_device
from ocdlib.data.device_pipeline import batch_size_of, finish_batch, is_device_batch, to_device
from ocdlib.data.image_bank import hold_images
from ocdlib.data.layout import resolve_layout
from ocdlib.data.prepare import resolve_data
from ocdlib.engine.distributed import DistInfo
from ocdlib.engine.run_dir import git_commit
from ocdlib.engine.trainer import backward_step, forward_loss, make_loader
from ocdlib.losses import build_objective
from ocdlib.metainfo import get_dataset_info
from ocdlib.models import build_model
from ocdlib.models.complexity import count_macs
from ocdlib.runs.cache import run_precision

METHODS = (
    ("DeepPose-R50", "deeppose"),
    ("SimpleBaseline-R50", "simplebaseline"),
    ("OCD-R50", "ocd"),
)
# Dense bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets (SXM parts).
BF16_PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}
OCD_STEP_TARGET = 1.45  # OCD step / DeepPose step
OCD_IMAGES_TARGET = 2000  # OCD images/s end to end


# Part 2's data pipelines: the config fields each sets.
_DEVICE = {"data.pipeline": "device", "data.hold_images": "off", "data.decode_on_device": "off"}
PIPELINES = {
    "cpu": {"data.pipeline": "cpu"},
    "device": _DEVICE,
    "device-held": {**_DEVICE, "data.hold_images": "on"},
    "device-decode": {**_DEVICE, "data.decode_on_device": "on"},
}


def bf16_peak(name: str) -> float | None:
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def build_step(method: str, batch: int, device, compiled: bool):
    cfg = build_config(f"coco_r50_{method}", {"model.pretrained": "none"})
    info = get_dataset_info(cfg.data.dataset)
    k = info.num_keypoints
    torch.manual_seed(0)
    model = build_model(cfg.model, k, cfg.data.input_size, cfg.data.heatmap_size).to(device)
    macs = count_macs(model, cfg.data.input_size)
    precision = run_precision(cfg, device)
    model = precision.model(model)
    model.train()
    runner = torch.compile(model) if compiled else model
    objective = build_objective(cfg, info, runner, None).to(device)
    params = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.train.lr)
    # The CPU benchmark's random batch, moved once: the ceiling leaves host copies out.
    data = {key: v.to(device) for key, v in step_batch(cfg, k, batch).items()}

    def step(data=data):
        total, _ = forward_loss(runner, objective, data, 1_000_000, precision, device)
        backward_step(total, objective, optimizer, cfg.train.grad_clip, None)

    return step, macs, precision.name, (runner, objective, optimizer, precision, cfg)


def part_ceiling(args, device, report: dict, compiled: bool) -> dict:
    peak = bf16_peak(report["machine"]["gpu"])
    sync = synchronizer(device)
    steps_of = {}
    mode = "torch.compile" if compiled else "eager"
    steps, macs = {}, {}
    t0 = time.perf_counter()
    for label, method in METHODS:
        step, m, prec, parts = build_step(method, args.batch, device, compiled)
        steps[label], macs[label] = step, m
        steps_of[(label, compiled)] = parts
        report["precision"] = prec
    times = interleaved(steps, args.rounds, repeat=1, warmup=3, sync=sync)
    host = host_times(steps, args.rounds, sync)
    rows = []
    for label, _ in METHODS:
        s = Spread.of(times[label])
        flops = 3 * 2 * macs[label] * args.batch / s.median
        rows.append(
            {
                "method": label,
                "mode": mode,
                "gmacs_per_image": round(macs[label] / 1e9, 3),
                "step_s": s.as_dict(),
                "host_s": Spread.of(host[label]).as_dict(),
                "images_per_s": round(args.batch / s.median, 1),
                "step_vs_deeppose": ratio_to(times, label, "DeepPose-R50").as_dict(),
                "bf16_peak_fraction": round(flops / (peak * 1e12), 4) if peak else None,
            }
        )
    report["ceiling"][mode] = {"rows": rows, "setup_and_measure_s": time.perf_counter() - t0}
    print(f"part 1 ({mode}): " + ", ".join(f"{r['method']} {r['images_per_s']}/s" for r in rows))
    write(report, args.out)
    return steps_of


def host_times(steps: dict, rounds: int, sync) -> dict[str, list[float]]:
    """Seconds the Python thread spends issuing one step (no wait for the GPU at its end):
    where this is near the step time, the step is bound by the CPU, not the GPU."""
    out: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            sync()
            t0 = time.perf_counter()
            step()
            out[name].append(time.perf_counter() - t0)
    sync()
    return out


def part_pipeline(args, device, report: dict, steps_of: dict) -> None:
    sets = {"data.synth.train": report["pipeline"]["n_train"], "data.synth.val": 64}
    dist = DistInfo(device=device)
    sync = synchronizer(device)
    for pipeline in args.pipelines:
        cfg = build_config("gpu_synth_ocd", {**sets, **PIPELINES[pipeline]})
        t0 = time.perf_counter()
        paths = resolve_data(cfg.data, progress=False)
        report["pipeline"].setdefault("synthpose_generation_s", round(time.perf_counter() - t0, 1))
        info = resolve_layout(cfg.data, paths.train_ann)
        train_ds, _ = build_datasets(cfg, paths, info)
        t0 = time.perf_counter()
        bank = hold_images(train_ds, device, cfg.data.hold_images, max(args.device_workers))
        if bank is not None:
            report["pipeline"]["hold_images_s"] = round(time.perf_counter() - t0, 1)
        decodes_on_device(train_ds, device, cfg.data.decode_on_device)
        workers_list = args.workers if pipeline == "cpu" else args.device_workers
        for workers in workers_list:
            for what in ("loader alone", "DeepPose-R50", "OCD-R50"):
                rate = _pipeline_rate(
                    args, train_ds, what, workers, steps_of, dist, sync, device, bank
                )
                ceiling = None
                if what != "loader alone":
                    eager = {r["method"]: r for r in report["ceiling"]["eager"]["rows"]}
                    ceiling = round(rate / eager[what]["images_per_s"], 3)
                report["pipeline"]["rows"].append(
                    {
                        "pipeline": pipeline,
                        "workers": workers,
                        "what": what,
                        "images_per_s": round(rate, 1),
                        "fraction_of_ceiling": ceiling,
                    }
                )
                print(
                    f"part 2: {pipeline} pipeline, {what}, {workers} workers: {rate:.0f} images/s"
                )
                write(report, args.out)


def _pipeline_rate(args, train_ds, what, workers, steps_of, dist, sync, device, bank) -> float:
    """Images/s of the loader alone (for the device pipeline: with its batch finished on
    the GPU) or feeding one method's eager training step."""
    if what != "loader alone":
        runner, objective, optimizer, precision, rcfg = steps_of[(what, False)]
    loader = make_loader(train_ds, args.batch, True, dist, 0, workers)
    it = iter(loader)
    for _ in range(3):  # workers started, first batches out
        next(it)
    sync()
    t = time.perf_counter()
    n = 0
    for _ in range(args.pipeline_batches):
        b = next(it)
        if what != "loader alone":
            total, _ = forward_loss(runner, objective, b, 1_000_000, precision, device, bank)
            backward_step(total, objective, optimizer, rcfg.train.grad_clip, None)
        elif is_device_batch(b):
            finish_batch(to_device(b, device, non_blocking=True), bank)
        n += batch_size_of(b)
    sync()
    rate = n / (time.perf_counter() - t)
    del it, loader
    return rate


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.json").write_text(json.dumps(report, indent=1))
    (out / "throughput.md").write_text(markdown(report))


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# GPU training throughput at 256x192 (ResNet-50, from scratch)",
        "",
        f"Written by `{r['command']}` at commit {r['commit']} on {r['date']}.",
        f"GPU: {m['gpu']}; CPU cores: {m['cores']}; torch {m['torch']}; batch {r['batch']}; "
        f"{r['precision']}; {r['rounds']} interleaved rounds, medians (interquartile range).",
        "",
        "## The models' ceiling (random tensors on the GPU, no data loading)",
        "",
        "| method | mode | GMACs/image | step ms | host ms | images/s | step / DeepPose step | "
        "share of bf16 peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, part in r["ceiling"].items():
        for row in part["rows"]:
            s, q = row["step_s"], row["step_vs_deeppose"]
            frac = row["bf16_peak_fraction"]
            lines.append(
                f"| {row['method']} | {mode} | {row['gmacs_per_image']:.2f} | "
                f"{1000 * s['median']:.1f} ({1000 * s['q1']:.1f}-{1000 * s['q3']:.1f}) | "
                f"{1000 * row['host_s']['median']:.1f} | "
                f"{row['images_per_s']:.0f} | {q['median']:.2f} ({q['q1']:.2f}-{q['q3']:.2f}) | "
                f"{'-' if frac is None else f'{100 * frac:.1f}%'} |"
            )
    lines += [
        "",
        "Share of peak: 3 forward passes of 2 FLOPs a MAC per image, against the "
        "data sheet's dense bf16 peak. Host ms: the time the Python thread takes to issue "
        "one step, not waiting for the GPU at its end (near the step time: bound by the CPU).",
    ]
    ocd = [
        row for part in r["ceiling"].values() for row in part["rows"] if row["method"] == "OCD-R50"
    ]
    for row in ocd:
        q = row["step_vs_deeppose"]["median"]
        verdict = "met" if q <= OCD_STEP_TARGET else "not met"
        lines.append(
            f"- OCD step {q:.2f}x DeepPose's ({row['mode']}), target "
            f"<= {OCD_STEP_TARGET}x: {verdict}."
        )
    p = r["pipeline"]
    if p["rows"]:
        lines += [
            "",
            "## Through the real DataLoader (SynthPose 320x320, 256x192 crops, eager)",
            "",
            f"SynthPose generation of {p['n_train']} images: {p.get('synthpose_generation_s')} s "
            f"on {m['cores']} cores.",
            "",
            "| pipeline | loader workers | what | images/s | share of the step's ceiling |",
            "|---|---|---|---|---|",
        ]
        for row in p["rows"]:
            f = row["fraction_of_ceiling"]
            lines.append(
                f"| {row.get('pipeline', 'cpu')} | {row['workers']} | {row['what']} | "
                f"{row['images_per_s']:.0f} | "
                f"{'-' if f is None else f'{100 * f:.0f}%'} |"
            )
        best = max(
            (row["images_per_s"] for row in p["rows"] if row["what"] == "OCD-R50"), default=None
        )
        if best is not None:
            verdict = "met" if best >= OCD_IMAGES_TARGET else "not met"
            lines.append(
                f"\n- OCD-R50 end to end, best worker count: {best:.0f} images/s, "
                f"target >= {OCD_IMAGES_TARGET}: {verdict}."
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("reports/gpu_synth"))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=[8, 12, 16])
    ap.add_argument("--pipeline-batches", type=int, default=30)
    ap.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=list(PIPELINES))
    ap.add_argument("--device-workers", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--commit", default=None, help="commit to record (default: git's HEAD)")
    # A check that the script runs end to end without a GPU (figures meaningless).
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "error: this benchmark needs a CUDA GPU (torch.cuda.is_available() is False)",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    report = {
        "command": "python " + " ".join(sys.argv),
        "commit": args.commit or git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "none (cpu)",
            "cores": len(os.sched_getaffinity(0)),
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "batch": args.batch,
        "rounds": args.rounds,
        "ceiling": {},
        "pipeline": {"rows": [], "n_train": args.batch * (args.pipeline_batches + 4)},
    }
    # Compilation last: it is the slowest part to set up, and the others need none of it.
    steps_of = part_ceiling(args, device, report, compiled=False)
    if not args.skip_pipeline:
        part_pipeline(args, device, report, steps_of)
    del steps_of
    if not args.no_compile:
        part_ceiling(args, device, report, compiled=True)
    print(f"wrote {args.out / 'throughput.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
