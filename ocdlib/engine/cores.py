"""The CPU this process runs on: its model name and how many of its cores it may use.

`os.cpu_count()` counts the machine's cores, not the ones a process is allowed:
under `taskset`, a Slurm or Kubernetes CPU set, or a container's CPU quota it
overcounts, and `reproduce` would start more side-by-side runs than there are
cores for them. `usable_cores()` takes the smallest of the affinity mask and the
cgroup v2 quota (`cpu.max`), whichever the system has.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..configs import Config

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cgroup_cpu_limit(path: Path = CGROUP_CPU_MAX) -> int | None:
    """Cores allowed by a cgroup v2 quota ("200000 100000" -> 2), None where unlimited."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def usable_cores() -> int:
    """Cores this process may run on (at least 1)."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cores, limit) if limit else cores)


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name ("Intel(R) Xeon(R) ..."), or the platform's word for it."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_jobs(cores: int | None = None) -> int:
    """Side-by-side runs for `reproduce`: one per core, one thread each.

    Small CPU models scale poorly over threads (measured in
    benchmarks/bench_cpu_training.py), so N single-thread runs beat one N-thread run."""
    return max(1, cores or usable_cores())


def with_share_of_cores(cfg: Config, jobs: int, cores: int | None = None) -> Config:
    """`cfg` set to run as one of `jobs` side-by-side runs (execution fields, not hashed)."""
    cores = cores or usable_cores()
    threads = max(1, cores // jobs)
    # One job per core: the loader runs in the training process (a worker would share its core).
    workers = 0 if jobs > 1 else cfg.data.num_workers
    return replace(
        cfg,
        data=replace(cfg.data, num_workers=workers),
        train=replace(cfg.train, num_threads=threads),
    )
