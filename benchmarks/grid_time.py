"""How long `reproduce` takes from an empty run cache, replayed from the runs' own records.

    python benchmarks/grid_time.py [--profile cpu] [--jobs 2 4 8] [--speedup 2.0]

Reads every run of the profile's grid from the run cache ($OCDLIB_RUNS), takes each
run's recorded training time (`train_time_s`) plus a fixed allowance for its data
set-up and final evaluation, and replays `reproduce`'s schedule: runs started in
`train_grid`'s order, each on the first free job, a TCD student no earlier than its
teacher's end. Prints the training wall time for each number of side-by-side jobs,
and the same divided by `--speedup` (an estimate for a faster machine: say which
measurement the factor comes from). The records are those of the machine that trained
each run, one thread per run, so the 4- and 8-job figures assume a run keeps its
single-thread speed beside more neighbours; notebooks come on top (about 2 min).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ocdlib.engine.runs import read_result
from ocdlib.experiments import grid_configs, run_dir, training_order

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--jobs", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--speedup", type=float, default=1.0)
    args = ap.parse_args()

    grid = training_order(grid_configs(args.profile))
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
    print("| side-by-side jobs | training wall time (min) | divided by the speed-up |")
    print("|---|---|---|")
    for jobs in args.jobs:
        minutes = replay(durations, jobs)
        print(f"| {jobs} | {minutes:.0f} | {minutes / args.speedup:.0f} (x{args.speedup:g}) |")


if __name__ == "__main__":
    main()
