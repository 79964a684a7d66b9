"""What makes an fp32 CPU run slow, beyond the halved vector width: each lever timed
side by side on the cpu profile's training step (DeepPose and SimpleBaseline, batch 32,
the trainer's own step on random crops), in fp32 as a CPU without bf16 trains.

    python benchmarks/bench_fp32_levers.py [--rounds 7] [--out DIR]

Levers, each against the kit's fp32 step on this CPU (channels_last where the CPU has
AVX-512, contiguous otherwise):
- the memory format: contiguous (NCHW) against channels_last (NHWC);
- oneDNN's convolutions against PyTorch's own (torch.backends.mkldnn off);
- threads: one run on two threads against two runs on one each (images/s a core);
- the loader: one batch of SynthPose crops (decoded, cut, encoded in the training
  process, as the cpu profile's side-by-side runs load) against the step it feeds.
None of them changes what is computed beyond floating-point order. Medians of
interleaved rounds, with the interquartile range of the per-round ratio. Run it on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from ocdlib.bench.timing import interleaved, publish, ratio_to
from ocdlib.bench.training_cost import step_of
from ocdlib.configs import build_config
from ocdlib.cores import cpu_model, usable_cores
from ocdlib.engine.precision import Precision, cpu_has_fast_bf16, cpu_prefers_channels_last
from ocdlib.reproduce.estimate import _batch_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    kit = Precision(autocast=False, channels_last=cpu_prefers_channels_last())
    lines = [
        "# fp32 levers on the cpu profile's training step",
        "",
        f"Written by `python benchmarks/bench_fp32_levers.py --rounds {args.rounds}` on "
        f"{cpu_model()} ({usable_cores()} usable cores; bf16 instructions: "
        f"{'yes' if cpu_has_fast_bf16() else 'no'}; AVX-512: "
        f"{'yes' if cpu_prefers_channels_last() else 'no'}), torch {torch.__version__}. "
        f"The kit's fp32 step here: {'channels_last' if kit.channels_last else 'contiguous'}.",
        "",
        "| model | variant | step s | images/s a core | vs the kit's fp32 step |",
        "|---|---|---:|---:|---|",
    ]
    for method in ("deeppose", "simplebaseline"):
        cfg = build_config(f"cpu_{method}", {"train.amp": False})
        steps = {
            "fp32 contiguous": step_of(cfg, precision=Precision(False, False)),
            "fp32 channels_last": step_of(cfg, precision=Precision(False, True)),
        }
        base = step_of(cfg, precision=Precision(False, kit.channels_last))

        def no_onednn(step=base):
            with torch.backends.mkldnn.flags(enabled=False):
                step()

        def two_threads(step=base):
            torch.set_num_threads(2)
            try:
                step()
            finally:
                torch.set_num_threads(1)

        steps.update({"kit, oneDNN off": no_onednn, "kit, 2 threads": two_threads})
        steps["kit"] = base
        times = interleaved(steps, args.rounds, warmup=2)
        batch = cfg.train.batch_size
        for name, values in times.items():
            s = statistics.median(values)
            cores = 2 if name == "kit, 2 threads" else 1
            ratio = ratio_to(times, name, "kit")
            lines.append(
                f"| {method} | {name} | {s:.3f} | {batch / s / cores:.0f} | "
                f"{ratio.text('{:.2f}', 'x')} |"
            )
        loader = _batch_seconds(cfg, batches=3)
        kit_s = statistics.median(times["kit"])
        lines.append(
            f"| {method} | the loader's batch (in the training process) | {loader:.3f} | "
            f"| {loader / kit_s:.2f}x the step: {100 * loader / (loader + kit_s):.0f}% of a "
            "training step with its data |"
        )
    publish("\n".join(lines) + "\n", args.out, "fp32_levers.md")


if __name__ == "__main__":
    main()
