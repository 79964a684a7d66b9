"""Where generated data and runs live.

In a source checkout both sit in the repository (`data/`, `runs/`, ignored by
git); an installed package uses `~/.cache/ocdlib`. `OCDLIB_DATA` and
`OCDLIB_RUNS` override either.
"""

from __future__ import annotations

import os
from pathlib import Path

from .profiles import NotebookProfile

REPO_ROOT = Path(__file__).resolve().parents[1]
# Four COCO val2017 photographs with body and whole-body annotations and person
# detections, shipped inside the package (ocdlib/sample_data/coco_sample/README.md).
COCO_SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data" / "coco_sample"


def _home() -> Path:
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT
    return Path.home() / ".cache" / "ocdlib"


def data_home() -> Path:
    return Path(os.environ.get("OCDLIB_DATA") or _home() / "data")


def runs_home() -> Path:
    return Path(os.environ.get("OCDLIB_RUNS") or _home() / "runs")


def reports_home() -> Path:
    return Path(os.environ.get("OCDLIB_REPORTS") or REPO_ROOT / "reports")


def report_dir(profile: NotebookProfile) -> Path:
    """Where a notebook profile's tables and figures go: the cpu profile's to reports/
    itself, the others' to reports/<profile>/."""
    folder = profile.report_folder
    return reports_home() / folder if folder else reports_home()
