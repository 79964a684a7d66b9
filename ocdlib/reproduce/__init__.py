"""Reproducing a profile: the command `python -m ocdlib reproduce` and what it is made of.

- `notebooks`: the command itself: the estimate, the training, the notebooks in order
  with papermill, the reports;
- `estimate`: how long it will take on this machine, and the progress line;
- `scheduler`: the grid's missing runs trained side by side;
- `timebox`: the same within a number of minutes, key rows first (short GPU
  allocations, `make reproduce MINUTES=`); it needs neither papermill nor jupyter;
- `watcher`: progress lines for runs the notebooks train;
- `records`: the profile's run records (PROVENANCE.md is written by
  `ocdlib.report.provenance`).

The names below are the package's public ones. papermill is imported only when a
notebook runs, so the time box works on machines without it.
"""

from .command import notebooks, reproduce
from .profile_records import write_profile_records
from .scheduler import default_jobs, train_grid, training_order, with_share_of_cores
from .watcher import RunWatcher

__all__ = [
    "RunWatcher",
    "default_jobs",
    "notebooks",
    "reproduce",
    "train_grid",
    "training_order",
    "with_share_of_cores",
    "write_profile_records",
]
