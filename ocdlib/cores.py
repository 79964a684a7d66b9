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
from pathlib import Path

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
