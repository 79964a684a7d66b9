"""A profile's run records: what `python -m ocdlib records` writes to reports/<profile>/runs/."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..experiments import grid_configs
from ..paths import report_dir, runs_home
from ..profiles import notebook_profile
from ..run_cache import finished_result, run_dir
from ..run_records import records_home, write_record


def write_profile_records(profile, dest_root: Path | None = None, out=print) -> list[Path]:
    """The records of every finished run of `profile`'s grid (and its TCD probe tables),
    written to `dest_root` (default reports/<profile>/runs/); returns the folders."""
    record = notebook_profile(profile)
    dest_root = Path(dest_root or records_home(report_dir(record.name)))
    written, missing = [], []
    for _, cfg in grid_configs(record):
        directory = run_dir(cfg)
        if finished_result(directory, cfg) is None:
            missing.append(directory.name)
            continue
        written.append(write_record(directory, dest_root))
    probes = runs_home() / "probes"
    if probes.is_dir():
        (dest_root / "probes").mkdir(parents=True, exist_ok=True)
        for table in sorted(probes.glob("*.csv")):
            shutil.copyfile(table, dest_root / "probes" / table.name)
    out(f"{len(written)} run records in {dest_root}; {len(missing)} runs of the grid not finished")
    return written
