"""How long `reproduce` takes from an empty run cache, replayed from the runs' own records.

    python benchmarks/grid_time.py [--profile cpu] [--jobs 2 4 8] [--speedup 2.0]
                                   [--scaling reports/cpu_scaling/scaling.json]

Reads every run of the profile's grid from the run cache ($OCDLIB_RUNS), takes each
run's recorded training time (`train_time_s`) plus a fixed allowance for its data
set-up and final evaluation, and replays `reproduce`'s schedule: runs started in
the executor's order (ocdlib/grid/plan.py), each on the first free job, a TCD
student no earlier than its teacher's end. Prints the training wall time for each
number of side-by-side jobs, and the same divided by `--speedup` (an estimate for a
faster machine: say which measurement the factor comes from). The records are those
of the machine that trained each run, one thread per run, so the 4- and 8-job figures
assume a run keeps its single-thread speed beside more neighbours; notebooks come on
top (about 2 min).

`--scaling` takes the JSON of `bench_cpu_training.py --scaling ... --out FILE` and
replaces that assumption with a measurement: a run's speed with N neighbours
relative to its speed among as many as the records had (`--records-jobs`, 2 for
`reproduce` on two cores), for each measured N, from the slowest and the fastest
preset, which gives each job count a range.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ocdlib.engine.run_dir import read_result
from ocdlib.grid.gather import grid_configs
from ocdlib.grid.plan import run_order
from ocdlib.profiles import notebook_profile
from ocdlib.runs.cache import run_dir

ALLOWANCE_MIN = 0.5  # data set-up and final evaluation of one run (0.1 to 0.4 min measured)


def replay(durations: list[tuple[str, str, float]], jobs: int) -> float:
    """Minutes until the last run ends, scheduled as `train_grid` does: (run, its teacher
    run or "", minutes) in start order; whenever a job is free, the first waiting run
    whose teacher has finished (or is not in the grid) starts."""
    in_grid = {run for run, _, _ in durations}
    waiting, running, ends, now = list(durations), [], {}, 0.0
    while waiting or running:
        for item in list(waiting):
            if len(running) >= jobs:
                break
            run, teacher, minutes = item
            if teacher in in_grid and not ends.get(teacher, now + 1) <= now:
                continue
            waiting.remove(item)
            running.append(now + minutes)
            ends[run] = now + minutes
        if not running:
            raise ValueError("runs wait for teachers that never finish")
        running.sort()
        now = running.pop(0)
    return now


def per_run_speed(scaling: list[dict], records_jobs: int) -> dict[int, tuple[float, float]]:
    """{N: (slowest, fastest)} speed of one run among N side-by-side single-thread runs,
    relative to its speed among `records_jobs`, over the presets measured with
    `train.amp` on (bench_cpu_training.py --scaling rows: preset, cores, amp, crops_per_s)."""
    rate = {(r["preset"], r["cores"]): r["crops_per_s"] for r in scaling if r["amp"]}
    presets = sorted({p for p, _ in rate})
    out = {}
    for n in sorted({c for _, c in rate}):
        factors = [
            (rate[p, n] / n) / (rate[p, records_jobs] / records_jobs)
            for p in presets
            if (p, n) in rate and (p, records_jobs) in rate
        ]
        if factors:
            out[n] = (min(factors), max(factors))
    if records_jobs not in out:
        raise ValueError(f"the scaling file has no rows for {records_jobs} cores (--records-jobs)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--jobs", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--speedup", type=float, default=1.0)
    ap.add_argument(
        "--scaling", help="bench_cpu_training.py --scaling JSON (measured per-run speed)"
    )
    ap.add_argument("--records-jobs", type=int, default=2, help="jobs side by side in the records")
    args = ap.parse_args()
    speed = {}
    if args.scaling:
        speed = per_run_speed(json.load(open(args.scaling))["scaling"], args.records_jobs)

    profile = notebook_profile(args.profile)
    grid = run_order(grid_configs(profile), profile)
    durations, missing, total = [], [], 0.0
    for _, cfg in grid:
        result = read_result(run_dir(cfg))
        if result is None:
            missing.append(run_dir(cfg).name)
            continue
        minutes = float(result["train_time_s"]) / 60 + ALLOWANCE_MIN
        total += minutes
        durations.append((str(run_dir(cfg)), cfg.loss.teacher_run or "", minutes))
    if missing:
        raise SystemExit(
            f"{len(missing)} of the {len(grid)} runs are not in the run cache "
            f"({Path(run_dir(grid[0][1])).parent}): {', '.join(missing)}; "
            f"train them first (python -m ocdlib reproduce --profile {args.profile})"
        )
    print(
        f"profile {args.profile}: {len(grid)} runs, {total:.0f} min of run records "
        f"(training + {ALLOWANCE_MIN} min each)"
    )
    head = "| side-by-side jobs | training wall time (min) | divided by the speed-up |"
    rule = "|---|---|---|"
    if speed:
        head += " with the measured per-run speed at that many jobs (min) |"
        rule += "---|"
    print(head)
    print(rule)
    for jobs in args.jobs:
        minutes = replay(durations, jobs)
        est = minutes / args.speedup
        row = f"| {jobs} | {minutes:.0f} | {est:.0f} (x{args.speedup:g}) |"
        if speed:
            if jobs in speed:
                slow, fast = speed[jobs]
                row += (
                    f" {est / fast:.0f} to {est / slow:.0f} (per-run speed {slow:.2f}-{fast:.2f}) |"
                )
            else:
                row += " not measured |"
        print(row)


if __name__ == "__main__":
    main()
