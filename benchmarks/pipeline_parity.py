"""AP parity and whole-run time of the two data pipelines, on a notebook profile's runs.

For each row (DeepPose and SimpleBaseline by default) and seed: the profile's own run,
through `data.pipeline=cpu` (from the run cache, or trained now), and the same config
through `data.pipeline=device`. Runs train two at a time, one thread each, as
`reproduce` trains them. The seeds of `--paired` are trained in both pipelines at the
same moment, side by side, so that their training times compare (same machine, same
share of it, same neighbour), and OUT/paired.json keeps those pairs for later
invocations; the other seeds' times are not compared.

The parity verdict is the margin rule of the claims: the pipelines differ when
|mean AP device - mean AP cpu| > 2x the larger seed spread.

Writes OUT/parity.md (every run, the means and spreads, the verdict, the paired times,
the command and commit) and the device runs' records under OUT/runs/.

    python benchmarks/pipeline_parity.py --seeds 0 1 2 --paired 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from ocdlib.engine.precision import tag_of_record
from ocdlib.grid.catalogue import by_label
from ocdlib.grid.gather import config_for
from ocdlib.profiles import notebook_profile
from ocdlib.report.provenance import git_state
from ocdlib.reproduce import with_share_of_cores
from ocdlib.runs.cache import get_run, is_finished, run_dir
from ocdlib.runs.records import write_record

PIPELINES = ("cpu", "device")


def with_pipeline(cfg, pipeline: str):
    return replace(cfg, data=replace(cfg.data, pipeline=pipeline))


def _train(cfg) -> dict:
    return get_run(cfg, progress=False)


def train_together(cfgs: list, jobs: int) -> list[dict]:
    """Train (or read) `cfgs` at the same time, one process each."""
    missing = [c for c in cfgs if not is_finished(c)]
    if missing:
        names = ", ".join(f"{run_dir(c).name} ({c.data.pipeline})" for c in missing)
        print(f"training side by side: {names}", flush=True)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(cfgs), mp_context=ctx) as pool:
        return list(pool.map(_train, [with_share_of_cores(c, jobs) for c in cfgs]))


def _pair(label: str, seed: int, cpu: dict, dev: dict) -> dict:
    """What paired.json keeps of two runs trained side by side."""
    return {
        "row": label,
        "seed": seed,
        **{f"{pl}_run": Path(r["run_dir"]).name for pl, r in (("cpu", cpu), ("device", dev))},
        **{f"{pl}_s": float(r["train_time_s"]) for pl, r in (("cpu", cpu), ("device", dev))},
        "finished_at": [cpu.get("finished_at"), dev.get("finished_at")],
        "commit": dev.get("git_commit"),
    }


def _ap(result: dict) -> float:
    return 100.0 * float(result["metrics"]["AP"])


def _mean_sd(values: list[float]) -> tuple[float, float]:
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return statistics.fmean(values), sd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--rows", nargs="+", default=["DeepPose", "SimpleBaseline (heatmap)"])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--paired", nargs="*", type=int, default=[3], help="seeds timed side by side")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("reports/device_pipeline"))
    args = p.parse_args(argv)
    profile = notebook_profile(args.profile)

    rows: dict[str, dict[str, dict[int, dict]]] = {}
    pairs_file = args.out / "paired.json"
    paired: list[dict] = json.loads(pairs_file.read_text()) if pairs_file.is_file() else []
    base = {
        label: {s: config_for(by_label(label), profile, s) for s in args.seeds + args.paired}
        for label in args.rows
    }
    for label in args.rows:
        rows[label] = {pl: {} for pl in PIPELINES}
    # The timed pairs first, every row's, while nothing else of this command runs.
    for label in args.rows:
        for seed in args.paired:
            cfgs = [with_pipeline(base[label][seed], pl) for pl in PIPELINES]
            fresh = not any(is_finished(c) for c in cfgs)
            cpu, dev = train_together(cfgs, args.jobs)
            rows[label]["cpu"][seed], rows[label]["device"][seed] = cpu, dev
            if fresh:  # both trained just now, side by side: kept for later invocations
                paired.append(_pair(label, seed, cpu, dev))
    for label in args.rows:
        todo = [with_pipeline(base[label][s], pl) for pl in PIPELINES for s in args.seeds]
        for i in range(0, len(todo), args.jobs):
            chunk = todo[i : i + args.jobs]
            for cfg, result in zip(chunk, train_together(chunk, args.jobs), strict=True):
                rows[label][cfg.data.pipeline][cfg.train.seed] = result

    args.out.mkdir(parents=True, exist_ok=True)
    pairs_file.write_text(json.dumps(paired, indent=1) + "\n")
    for got in rows.values():
        for result in got["device"].values():
            write_record(Path(result["run_dir"]), args.out / "runs")
    text = report(rows, paired, args)
    (args.out / "parity.md").write_text(text)
    print(text)
    return 0


def report(rows: dict, paired: list[dict], args) -> str:
    pairs_file = args.out / "paired.json"
    lines = [
        "# The device data pipeline against the cpu pipeline: AP and whole-run time",
        "",
        f"Profile `{args.profile}`, each run one thread, two runs at a time "
        f"(`data.pipeline=cpu` is the profile's own run). Written by "
        f"`python benchmarks/pipeline_parity.py {' '.join(sys.argv[1:])}` at {git_state()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| row | pipeline | AP per seed | mean | sd | precision |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for label, got in rows.items():
        stats = {}
        for pl in PIPELINES:
            seeds = sorted(got[pl])
            aps = [_ap(got[pl][s]) for s in seeds]
            stats[pl] = _mean_sd(aps)
            per_seed = ", ".join(f"s{s} {a:.1f}" for s, a in zip(seeds, aps, strict=True))
            tags = sorted({tag_of_record(got[pl][s]) for s in seeds})
            mean, sd = stats[pl]
            cells = [label, pl, per_seed, f"{mean:.1f}", f"{sd:.1f}", "/".join(tags)]
            lines.append("| " + " | ".join(cells) + " |")
        delta = stats["device"][0] - stats["cpu"][0]
        spread = max(stats["device"][1], stats["cpu"][1])
        differ = abs(delta) > 2 * spread
        verdicts.append(
            f"- {label}: device - cpu = {delta:+.1f} AP, spread {spread:.1f}: "
            + ("the pipelines differ (margin > 2x spread)" if differ else "within the margin")
        )
    lines += ["", "Parity by the margin rule (|delta| > 2x the larger seed spread):", "", *verdicts]
    lines += ["", "## Training time of runs trained side by side (same seed, same moment)", ""]
    if not paired:
        lines.append("No pair has been trained side by side into this folder yet.")
    else:
        lines += [
            "| row | seed | cpu s | device s | cpu / device | finished (cpu, device) | commit |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in paired:
            tc, td = p["cpu_s"], p["device_s"]
            done = ", ".join(str(t) for t in p["finished_at"])
            lines.append(
                f"| {p['row']} | {p['seed']} | {tc:.0f} | {td:.0f} | {tc / td:.2f}x | {done} "
                f"| {p['commit']} |"
            )
        lines += [
            "",
            "Each pair was trained by this script at the same time on the same machine, one "
            f"thread each, so the ratio is a measurement (kept in `{pairs_file.name}`).",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
