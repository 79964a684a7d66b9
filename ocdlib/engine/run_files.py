"""The names of a run directory's files, said once.

A run directory holds config.json (the config it trains), log.csv (every loss term
per step), evals.json (the evaluations along the way and the final one),
checkpoint.pt (each epoch; once finished, the weights only), student.pt (the deployed
model) and result.json (written last: a run with one is finished). Every module that
reads or writes one of them names it through `RunDir`; nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG, RESULT, EVALS, LOG = "config.json", "result.json", "evals.json", "log.csv"
CHECKPOINT, STUDENT = "checkpoint.pt", "student.pt"


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def result(self) -> Path:
        return self.path / RESULT

    @property
    def evals(self) -> Path:
        return self.path / EVALS

    @property
    def log(self) -> Path:
        return self.path / LOG

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def student(self) -> Path:
        return self.path / STUDENT

    def is_finished(self) -> bool:
        return self.result.is_file()
