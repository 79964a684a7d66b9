"""A profile's run records: what `python -m ocdlib records` writes to reports/<profile>/runs/."""

from __future__ import annotations

import shutil
from collections.abc import Collection
from pathlib import Path

from ..grid.gather import grid_configs
from ..paths import report_dir, runs_home
from ..profiles import NotebookProfile
from ..runs.cache import finished_result, run_dir
from ..runs.records import find_record, other_record_roots, records_home, write_record


def write_profile_records(
    profile: NotebookProfile,
    dest_root: Path | None = None,
    out=print,
    recorded: Collection[str] = (),
) -> list[Path]:
    """The records of every finished run of `profile`'s grid (and its TCD probe tables),
    written to `dest_root` (default reports/<profile>/runs/), but for runs whose record
    another report folder holds (cpu_full's cpu runs: reports/runs/) and the runs named
    in `recorded` (folder names whose records this command wrote as they finished);
    returns the folders written."""
    dest_root = Path(dest_root or records_home(report_dir(profile)))
    written, missing, elsewhere = [], [], []
    fresh = [name for name in recorded if (dest_root / name).is_dir()]
    roots = other_record_roots(dest_root)
    grid = grid_configs(profile)
    for _, cfg in grid:
        directory = run_dir(cfg)
        if finished_result(directory, cfg) is None:
            missing.append(directory.name)
            continue
        if find_record(cfg, roots) is not None:  # committed once, for every profile
            elsewhere.append(directory.name)
            continue
        if directory.name in fresh:  # written as it finished, a moment ago
            continue
        written.append(write_record(directory, dest_root))
    # The TCD probe's tables of this grid: named after the runs they measured, TCD first.
    folders = tuple(f"{run_dir(cfg).name}_" for _, cfg in grid)
    probes = runs_home() / "probes"
    tables = sorted(t for t in probes.glob("*.csv") if t.name.startswith(folders))
    if tables:
        (dest_root / "probes").mkdir(parents=True, exist_ok=True)
    for table in tables:
        shutil.copyfile(table, dest_root / "probes" / table.name)
    out(
        f"{len(written) + len(fresh)} run records in {dest_root} "
        f"({len(fresh)} written as their runs finished); {len(elsewhere)} recorded in another "
        f"report folder already; {len(missing)} runs of the grid not finished"
    )
    return written
