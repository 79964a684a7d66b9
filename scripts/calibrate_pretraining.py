"""Calibrate the pre-trained regime on the baselines: which pretext, and how long.

For each pre-training preset given, pre-train it (`python -m ocdlib pretrain`, resumed
or reused when it already ran), then train the cpu profile's baselines from its final
weights and from its snapshots, and write what they scored, beside the from-scratch
records, to reports/pretraining/: `calibration.json`, `calibration.md` and
`ratio_vs_minutes.png` (DeepPose's AP over SimpleBaseline's against the minutes of
pre-training). Jobs run `--jobs` at a time, each with cores/jobs threads; a job
whose run is finished is read, not trained again, so the command rebuilds the
tables from the run cache and can be rerun after a stop (a stopped run resumes).

    python scripts/calibrate_pretraining.py --pretrain fractal_w32 synth_rotation_w32 \
        --methods deeppose simplebaseline --seeds 0
    python scripts/calibrate_pretraining.py --pretrain fractal_w32 --snapshots none \
        --methods deeppose rle simplebaseline --seeds 0 1 2 --epochs 16 10

`--epochs` is the downstream schedule (lr x0.1 for its last two epochs): 16 is the
from-scratch budget, the one the pretexts were compared at; the cpu profile trains
CPU_PRETRAINED_EPOCHS (ocdlib/configs/presets.py) from pre-trained weights.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ocdlib.configs import build_config  # noqa: E402
from ocdlib.cores import usable_cores  # noqa: E402
from ocdlib.grid.catalogue import DEEPPOSE, RLE, SIMPLEBASELINE  # noqa: E402
from ocdlib.pretrain import pretrain_config, pretrain_dir  # noqa: E402
from ocdlib.runs.cache import finished_result, run_dir  # noqa: E402

OUT = REPO / "reports" / "pretraining"
ROW = {"deeppose": "DeepPose", "rle": "RLE", "simplebaseline": "SimpleBaseline"}
SCRATCH = "none (from scratch)"
# The grid's own rows: their overrides (DeepPose's and SimpleBaseline's learning curves)
# are part of the config, so a run trained here is the run the grid looks for.
GRID_ROW = {"deeppose": DEEPPOSE, "rle": RLE, "simplebaseline": SIMPLEBASELINE}


@dataclass
class Job:
    name: str
    argv: list[str]
    after: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    log: Path | None = None
    done: bool = False


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "ocdlib", *args]


def _weights(pre: str, snapshot: int | None, tag: str) -> str:
    if snapshot is None:
        return pre  # the installed kit pre-training
    return str(pretrain_dir(pretrain_config(pre), tag) / f"backbone-step{snapshot}.pth")


def _sets(method: str, seed: int, weights: str | None, epochs: int | None = None) -> list[str]:
    sets = [f"{k}={v}" for k, v in GRID_ROW[method].overrides] + [f"train.seed={seed}"]
    if epochs:  # the schedule, the learning-rate drop two epochs before its end
        sets += [f"train.epochs={epochs}", f"train.milestones=[{epochs - 2}]"]
    return sets + ([f"model.pretrained={weights}"] if weights else [])


def _downstream(method: str, seed: int, weights: str | None, epochs: int | None = None):
    sets = _sets(method, seed, weights, epochs)
    base = "cpu_pretrained" if weights else "cpu"
    return build_config(f"{base}_{method}", sets), sets


def plan(args, threads: int, tag: str) -> list[Job]:
    jobs: list[Job] = []
    for pre in args.pretrain:
        cfg = pretrain_config(pre)
        jobs.append(
            Job(
                f"pretrain {pre}",
                _python("pretrain", "--config", pre, "--install", pre,
                        "--set", f"num_threads={threads}"),
            )
        )  # fmt: skip
        points = [None] + ([] if args.snapshots == ["none"] else list(cfg.snapshots))
        for snap, epochs in [(p, e) for p in points for e in args.epochs]:
            for seed in args.seeds if snap is None else args.seeds[:1]:
                for method in args.methods:
                    sets = _sets(method, seed, _weights(pre, snap, tag), epochs)
                    jobs.append(
                        Job(
                            f"{method} s{seed} from {pre}" + (f"@{snap}" if snap else "")
                            + f", {epochs} epochs",
                            _python("train", "--config", f"cpu_pretrained_{method}",
                                    "--no-progress", "--resume",
                                    *sum((["--set", s] for s in sets), []),
                                    "--set", f"train.num_threads={threads}"),
                            after=[f"pretrain {pre}"],
                        )
                    )  # fmt: skip
    return jobs


def run_jobs(jobs: list[Job], slots: int, logs: Path) -> None:
    """Run `jobs`, `slots` at a time, each after the jobs it waits for. A SIGTERM or
    Ctrl-C stops the running jobs too (each saves at its next step), then the script."""

    def stop(signum, frame):
        for j in jobs:
            if j.proc is not None and j.proc.poll() is None:
                j.proc.send_signal(signal.SIGTERM)
        for j in jobs:
            if j.proc is not None:
                j.proc.wait()
        raise SystemExit(f"stopped on {signal.Signals(signum).name}; rerun to resume")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logs.mkdir(parents=True, exist_ok=True)
    by_name = {j.name: j for j in jobs}
    started = time.monotonic()
    while not all(j.done for j in jobs):
        running = [j for j in jobs if j.proc is not None and not j.done]
        for j in running:
            rc = j.proc.poll()
            if rc is not None:
                j.done = True
                status = "done" if rc == 0 else f"FAILED (exit {rc}, log {j.log})"
                print(f"[{(time.monotonic() - started) / 60:5.1f} min] {j.name}: {status}",
                      flush=True)  # fmt: skip
                if rc != 0:
                    for other in jobs:  # what depends on it cannot run
                        if j.name in other.after and other.proc is None:
                            other.done = True
        running = [j for j in jobs if j.proc is not None and not j.done]
        ready = [
            j
            for j in jobs
            if j.proc is None and not j.done and all(by_name[a].done for a in j.after)
        ]
        for j in ready[: max(0, slots - len(running))]:
            j.log = logs / (j.name.replace(" ", "_").replace("@", "-") + ".log")
            j.proc = subprocess.Popen(j.argv, stdout=j.log.open("w"), stderr=subprocess.STDOUT)
            print(f"[{(time.monotonic() - started) / 60:5.1f} min] {j.name}: started", flush=True)
        time.sleep(2)


def collect(args, tag: str) -> list[dict]:
    rows = []
    for pre in args.pretrain:
        cfg = pretrain_config(pre)
        run = pretrain_dir(cfg, tag)
        record_file = run / "record.json"
        if not record_file.is_file():
            continue
        record = json.loads(record_file.read_text())
        curve = {c["step"]: c for c in record["curve"]}
        for snap, epochs in [(s, e) for s in [None, *cfg.snapshots] for e in args.epochs]:
            step = snap or cfg.steps
            minutes = curve[step]["minutes"] if step in curve else None
            for method in ROW:
                for seed in (0, 1, 2):
                    weights = _weights(pre, snap, tag)
                    if snap and not Path(weights).is_file():
                        continue
                    dcfg, sets = _downstream(method, seed, weights, epochs)
                    result = finished_result(run_dir(dcfg), dcfg)
                    if result is None:
                        continue
                    rows.append(
                        {
                            "pretext": pre,
                            "pretrain_step": step,
                            "pretrain_steps": cfg.steps,
                            "pretrain_minutes": minutes,
                            "pretrain_acc": curve.get(step, {}).get("acc"),
                            "method": method,
                            "epochs": dcfg.train.epochs,
                            "seed": seed,
                            "AP": round(100 * result["metrics"]["AP"], 2),
                            "config_hash": dcfg.hash,
                            "run": run_dir(dcfg).name,
                            "train_min": round(result["train_time_s"] / 60, 1),
                            "machine_precision": result.get("precision_tag"),
                            "command": result.get("command"),
                        }
                    )
    return rows


def scratch_rows() -> list[dict]:
    """The from-scratch baselines of the cpu profile, from their committed records."""
    rows = []
    for method in ROW:
        for seed in (0, 1, 2):
            cfg, _ = _downstream(method, seed, None)
            for folder in sorted((REPO / "reports").glob(f"**/runs/cpu_{method}-{cfg.hash}-s*")):
                result = json.loads((folder / "result.json").read_text())
                rows.append(
                    {
                        "pretext": SCRATCH,
                        "pretrain_step": 0,
                        "pretrain_minutes": 0.0,
                        "method": method,
                        "epochs": cfg.train.epochs,
                        "seed": seed,
                        "AP": round(100 * result["metrics"]["AP"], 2),
                        "config_hash": cfg.hash,
                        "run": folder.name,
                        "record": str(folder.relative_to(REPO)),
                    }
                )
                break
    return rows


def _scratch_summary(label: str) -> str:
    """A from-scratch row without committed records, from the cpu profile's results.csv."""
    import csv

    with open(REPO / "reports" / "cpu_scratch" / "results.csv") as f:
        for r in csv.DictReader(f):
            if r["label"] == label:
                n = len(r["seeds"].split(","))
                return f"{float(r['AP']):.1f} ± {float(r['AP_std']):.1f} (n={n}, results.csv)"
    return "-"


def write(rows: list[dict], command: str) -> None:
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "calibration.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    groups: dict[tuple, dict[str, list[float]]] = {}
    for r in rows:
        key = (r["pretext"], r.get("epochs", 16), r["pretrain_step"], r["pretrain_minutes"])
        groups.setdefault(key, {}).setdefault(r["method"], []).append(r["AP"])

    def cell(aps):
        if not aps:
            return "-"
        sd = f" ± {statistics.stdev(aps):.1f}" if len(aps) > 1 else ""
        return f"{statistics.mean(aps):.1f}{sd} (n={len(aps)})"

    lines = [
        "# DeepPose, RLE and SimpleBaseline from pre-trained backbones (cpu profile)",
        "",
        f"Written by `{command}` from the runs it names in `calibration.json`. COCO AP x 100 "
        "on SynthPose's validation set, mean ± sample sd over seeds; the ratio is DeepPose's "
        "mean AP over SimpleBaseline's. A snapshot is the backbone at that step of its "
        "pre-training's schedule (not a shorter schedule); minutes are those its record "
        "measured (side by side with another job where one ran beside it).",
        "",
        "| pre-training | step | pre-training min | epochs | DeepPose | RLE | SimpleBaseline "
        "| ratio |",
        "|---|---:|---:|---:|---|---|---|---:|",
    ]
    for (pre, epochs, step, minutes), by in sorted(
        groups.items(), key=lambda kv: (kv[0][0], -kv[0][1], kv[0][2])
    ):
        dp, sb = by.get("deeppose", []), by.get("simplebaseline", [])
        ratio = f"{statistics.mean(dp) / statistics.mean(sb):.2f}" if dp and sb else "-"
        mins = f"{minutes:.1f}" if minutes is not None else "-"
        rle = cell(by.get("rle", []))
        if pre == SCRATCH and rle == "-":
            rle = _scratch_summary("RLE")
        lines.append(
            f"| {pre} | {step} | {mins} | {epochs} | {cell(dp)} | {rle} | {cell(sb)} | {ratio} |"
        )
    (OUT / "calibration.md").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(6, 4))
    curves: dict[str, list[tuple[float, float]]] = {}
    for (pre, epochs, _step, minutes), by in groups.items():
        dp, sb = by.get("deeppose", []), by.get("simplebaseline", [])
        if dp and sb and minutes is not None and epochs == 16:  # the pretexts' comparison
            curves.setdefault(pre, []).append((minutes, statistics.mean(dp) / statistics.mean(sb)))
    scratch = curves.pop(SCRATCH, [])
    for pre, pts in sorted(curves.items()):
        pts = sorted(scratch + pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=pre)
    ax.axhline(0.74, ls="--", c="grey", lw=1)
    ax.text(0.2, 0.75, "paper (ImageNet, COCO): 0.74", fontsize=8, color="grey")
    ax.axhline(0.5, ls=":", c="k", lw=1)
    ax.set_xlabel("minutes of pre-training, as its record measured them (0: from scratch)")
    ax.set_ylabel("DeepPose AP / SimpleBaseline AP")
    ax.set_ylim(0, 0.8)
    ax.legend(fontsize=8)
    ax.set_title("DeepPose / SimpleBaseline AP against pre-training (16 epochs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT / "ratio_vs_minutes.png", dpi=110)
    print(f"wrote {OUT / 'calibration.md'}, calibration.json and ratio_vs_minutes.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pretrain", nargs="+", default=["fractal_w32", "synth_rotation_w32"])
    ap.add_argument("--methods", nargs="+", default=["deeppose", "simplebaseline"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--snapshots", nargs="*", default=[], help="'none': final weights only")
    ap.add_argument("--epochs", nargs="+", type=int, default=[16], help="downstream schedules")
    ap.add_argument("--jobs", type=int, default=usable_cores())
    ap.add_argument("--no-train", action="store_true", help="only rebuild the tables")
    args = ap.parse_args()
    import torch

    from ocdlib.engine.precision import resolve_precision

    tag = resolve_precision(True, torch.device("cpu")).tag
    command = "python scripts/calibrate_pretraining.py " + " ".join(sys.argv[1:])
    if not args.no_train:
        threads = max(1, usable_cores() // args.jobs)
        run_jobs(plan(args, threads, tag), args.jobs, OUT / "logs")
    write(scratch_rows() + collect(args, tag), command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
