"""`python -m ocdlib bench`: every section in one process, written to perf.json and perf.md.

A `Plan` says how much each section measures: `FULL` (the figures to report;
about 10 minutes on 2 CPU cores, most of it ResNet-50 at batch 32), `QUICK` (a
check that everything runs, under a minute; its figures are too noisy to quote)
and `TINY` (the tests: small models, about ten seconds).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import PIL
import torch
from PIL import features

from ..cores import cpu_model, usable_cores
from ..engine.checkpoint import atomic_write_text
from ..engine.precision import cpu_has_fast_bf16
from ..engine.run_dir import git_commit
from ..errors import ConfigError
from ..profiles import NOTEBOOK_PROFILES
from . import data_pipeline, eval_cost, model_cost, training_cost
from .timing import SEED

SECTIONS = ("model", "training", "data", "eval")


@dataclass(frozen=True)
class Plan:
    mode: str
    models: str  # "all", "some" or "few" (model_cost.model_rows)
    latency_batches: tuple[int, ...]
    model_rounds: tuple[int, ...]  # rounds at each latency batch size
    train_batch_r50: int
    train_batch_cpu: int
    train_rounds: int
    data_samples: int  # samples a round, per dataset
    data_rounds: int
    loader_batch: int
    loader_workers: tuple[int, ...]
    synth_images: int
    eval_instances: int
    eval_rounds: int
    # Applied to every model built (TINY swaps ResNet-50 at 256x192 for a small one).
    model_overrides: dict = field(default_factory=dict)


FULL = Plan(
    mode="full",
    models="all",
    latency_batches=(1, 32),
    model_rounds=(5, 3),
    train_batch_r50=8,
    train_batch_cpu=32,
    train_rounds=5,
    data_samples=64,
    data_rounds=5,
    loader_batch=16,
    loader_workers=(0, 1, 2),
    synth_images=24,
    eval_instances=10_000,
    eval_rounds=3,
)
QUICK = Plan(
    mode="quick",
    models="few",
    latency_batches=(1,),
    model_rounds=(2,),
    train_batch_r50=2,
    train_batch_cpu=8,
    train_rounds=2,
    data_samples=12,
    data_rounds=2,
    loader_batch=6,
    loader_workers=(0, 2),
    synth_images=8,
    eval_instances=1_000,
    eval_rounds=1,
)
TINY = Plan(
    mode="tiny",
    models="few",
    latency_batches=(1, 2),
    model_rounds=(1, 1),
    train_batch_r50=2,
    train_batch_cpu=2,
    train_rounds=1,
    data_samples=4,
    data_rounds=1,
    loader_batch=2,
    loader_workers=(0, 1),
    synth_images=2,
    eval_instances=200,
    eval_rounds=1,
    model_overrides={
        "model.backbone": "resnet18_w16",
        "data.input_size": [48, 64],
        "data.heatmap_size": [12, 16],
    },
)
PLANS = {"full": FULL, "quick": QUICK, "tiny": TINY}


def machine(device: torch.device) -> dict:
    model = cpu_model()
    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "cores_usable": usable_cores(),
        "bf16_matrix_instructions": cpu_has_fast_bf16(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": ort,
        "pillow": PIL.__version__,
        "libjpeg_turbo": bool(features.check_feature("libjpeg_turbo")),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def run_bench(
    device: str = "cpu",
    plan: Plan = FULL,
    out: Path | None = None,
    sections: tuple[str, ...] = SECTIONS,
    command: str = "",
) -> dict:
    """Measure `sections` under `plan` and write out/perf.json and out/perf.md."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible to torch; use --device cpu")
    t0 = time.perf_counter()
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command or "python -m ocdlib bench",
        "git_commit": git_commit(),
        "seed": SEED,
        "mode": plan.mode,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": machine(dev),
        "plan": asdict(plan),
        "sections": {},
    }
    p = plan
    for name in sections:
        s, c = time.perf_counter(), time.process_time()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        if name == "model":
            rows = model_cost.model_rows(p.models)
            result = model_cost.measure(
                rows, p.latency_batches, p.model_rounds, dev, p.model_overrides
            )
        elif name == "training":
            groups = [
                training_cost.measure_group(
                    "coco_r50", p.train_batch_r50, p.train_rounds, dev, p.model_overrides
                ),
                training_cost.measure_group(
                    "cpu", p.train_batch_cpu, p.train_rounds, dev, p.model_overrides
                ),
            ]
            cached = training_cost.cached_training_times(NOTEBOOK_PROFILES["cpu"])
            result = training_cost.section(groups, cached)
        elif name == "data":
            result = data_pipeline.measure(
                p.data_samples, p.data_rounds, p.loader_batch, p.synth_images, p.loader_workers
            )
        elif name == "eval":
            result = eval_cost.measure(p.eval_instances, p.eval_rounds)
        else:
            raise ConfigError(f"unknown bench section {name!r}; choose from {list(SECTIONS)}")
        result["wall_s"] = round(time.perf_counter() - s, 1)
        # CPU seconds of this process's threads (not of DataLoader workers): beside wall_s,
        # it shows whether other load on the machine stretched the section.
        result["cpu_s"] = round(time.process_time() - c, 1)
        report["sections"][name] = result
        print(f"bench: {name} took {result['wall_s']:.0f} s", file=sys.stderr, flush=True)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    report["targets"] = [
        {k: v for k, v in t.items() if k != "measured" or not isinstance(v, dict)}
        for s in report["sections"].values()
        for t in s["targets"]
    ]
    out = Path(out) if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(report, indent=1, default=_json), out / "perf.json")
        atomic_write_text(markdown(report), out / "perf.md")
    return report


def _json(value):
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def _table(t: dict) -> list[str]:
    lines = [f"*{t['caption']}*", "", "| " + " | ".join(t["columns"]) + " |"]
    lines.append("|" + "---|" * len(t["columns"]))
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in t["rows"]]
    return lines + [""]


def markdown(report: dict) -> str:
    m = report["machine"]
    where = m["gpu"] or f"{m['cpu']}, {m['cores']} cores"
    lines = [
        "# Speed of the kit",
        "",
        f"Written by `{report['command']}` ({report['mode']} run, commit "
        f"{report.get('git_commit', 'unknown')}, seed {report.get('seed', 'unknown')}) on "
        f"{report['date']}: "
        f"{where}, device {report['device']}, {report['threads']} torch threads, torch "
        f"{report['torch']}, ONNX Runtime {m['onnxruntime'] or 'not installed'}; "
        f"{report['wall_s'] / 60:.1f} minutes. Load average at the start: "
        f"{', '.join(f'{x:.1f}' for x in m['load_average_at_start'] or [])}.",
        "",
        "Every figure is the median over interleaved rounds after warm-up, with the "
        "interquartile range in brackets; every ratio is to a baseline measured in the same "
        "rounds. Figures are of this machine at that moment, not properties of the models.",
        "",
    ]
    if report["mode"] != "full":
        lines += [
            f"**A {report['mode']} run: few rounds on small batches, a check that the "
            "benchmark runs. Quote only a full run's figures.**",
            "",
        ]
    if report["targets"]:
        lines += ["## Targets", ""]
        lines += [f"- {t['sentence']}" for t in report["targets"]]
        lines.append("")
    for s in report["sections"].values():
        lines += [f"## {s['title']}", ""]
        for t in s["tables"]:
            lines += _table(t)
        lines += [f"- {t['sentence']}" for t in s["targets"]]
        lines += [f"- {n}" for n in s["notes"]]
        lines += ["", f"(section took {s['wall_s']:.0f} s)", ""]
    return "\n".join(lines)
