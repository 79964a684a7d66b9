"""Reproducing a profile: the command `python -m ocdlib reproduce` and what it is made of.

- `command`: the command itself: the plan (ocdlib/grid/plan.py), the estimate, the
  training, the notebooks in order with papermill, the provenance;
- `estimate`: how long it will take on this machine, and what the next run will take;
- `progress`: the one progress reporter: runs' starts, epochs and ends, and the ETA;
- `executor`: the one executor of a plan's runs, side by side or one by one, with or
  without a time box;
- `timebox`: a short allocation's reproduction (records, archive, timebox.md; `make
  reproduce MINUTES=`); it needs neither papermill nor jupyter;
- `stops`: a SIGTERM or Ctrl-C that reaches every run;
- `profile_records`: the profile's run records.

The names below are the package's public ones. papermill is imported only when a
notebook runs, so the time box works on machines without it.
"""

from .command import notebooks, reproduce, train_grid
from .executor import default_jobs, execute, with_share_of_cores
from .profile_records import write_profile_records
from .progress import Progress

__all__ = [
    "Progress",
    "default_jobs",
    "execute",
    "notebooks",
    "reproduce",
    "train_grid",
    "with_share_of_cores",
    "write_profile_records",
]
