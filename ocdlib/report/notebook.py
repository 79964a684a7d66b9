"""The folder a notebook writes to: `<reports>/tables/NN_*` and `figures/NN_*`, each file
shown in the notebook as it is written; and the runs it reads, gathered as the
reproduction's plan says (ocdlib/grid/plan.py), the rows it had to leave out named in
every table it writes and in the plan."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ..errors import ConfigError
from ..grid.gather import gather
from ..grid.plan import Plan, record_left_out
from ..paths import report_dir
from ..profiles import NotebookProfile
from .tables import format_frame, write_results, write_table
from .viz import save_figure


def clear_notebook_outputs(root: str | Path, notebook: str) -> list[Path]:
    """Remove the tables and figures that notebook `NN_...` wrote under `root` before,
    so that what a reproduction leaves is exactly what its own run wrote. Returns them."""
    number = notebook[:2]
    gone = []
    for folder in ("tables", "figures"):
        for path in sorted((Path(root) / folder).glob(f"{number}_*")):
            if path.is_file():
                path.unlink()
                gone.append(path)
    return gone


class NotebookReport:
    """Where one notebook writes: `<reports_dir>/tables/NN_*.md|csv` and `figures/NN_*.png`.

    `table` and `figure` write the file, show it in the notebook and print
    where it went, so a notebook never writes a number it does not display.

    `gather` reads the notebook's runs: from the run cache, then the committed records,
    training the missing ones only with `train_missing`. Under `reproduce` the notebook
    gets the command's `plan` (plan.json) instead, which says whether to train, whether
    records stand in for runs and the command the runs record; the rows left out for
    want of runs are written into it for the provenance.
    """

    def __init__(
        self,
        notebook: str,
        profile: NotebookProfile,
        reports_dir: str | Path | None = None,
        train_missing: bool = False,
        plan: str | Path | None = None,
    ):
        if not isinstance(profile, NotebookProfile):  # a name typed in a notebook cell
            raise ConfigError(
                f"NotebookReport takes a NotebookProfile, not {profile!r}: resolve the name "
                f"once with ocdlib.profiles.notebook_profile({profile!r})"
            )
        self.notebook = notebook
        self.number = notebook[:2]
        self.profile = profile
        self.root = Path(reports_dir) if reports_dir else report_dir(profile)
        self.tables = self.root / "tables"
        self.figures = self.root / "figures"
        self.written: list[Path] = []
        self.plan = Path(plan) if plan else None
        self.not_trained: dict[str, list[int]] = {}
        self.train_missing, self.use_records, self.command = train_missing, True, None
        if self.plan is not None:
            p = Plan.load(self.plan)
            # After a time box the notebooks report on what finished, training nothing.
            self.train_missing = p.train and p.minutes is None
            self.use_records, self.command = p.use_records, p.command

    def gather(self, rows) -> list[dict]:
        """Results of `rows` (a notebook id, one row or rows), every seed: see
        `ocdlib.grid.gather.gather`; a progress bar while a run trains."""
        results = gather(
            rows,
            self.profile,
            progress=self.train_missing,
            train_missing=self.train_missing,
            use_records=self.use_records,
            not_trained=self.not_trained,
            command=self.command,
        )
        if self.plan is not None:
            record_left_out(self.plan, self.notebook, self.not_trained)
        return results

    def results(self, summary: pd.DataFrame, rows) -> tuple[Path, Path]:
        """results.md and results.csv of the notebook's profile (the results notebook)."""
        md, csv = write_results(summary, rows, self.root, self.profile, self.not_trained)
        self.written += [md, csv]
        return md, csv

    def table(
        self,
        df: pd.DataFrame,
        name: str,
        title: str | None = None,
        digits: Mapping[str, int] | None = None,
    ) -> None:
        md, csv = write_table(
            df, self.tables / f"{self.number}_{name}", self.profile, self.notebook, title, digits,
            self.not_trained,
        )  # fmt: skip
        _show_frame(format_frame(df, digits))
        self.written += [md, csv]
        print(f"written: {self._shown(md)} (+ .csv, .meta.json)")

    def figure(self, fig: Figure | None, name: str, dpi: int = 110) -> None:
        if fig is None:
            return
        path = save_figure(fig, self.figures / f"{self.number}_{name}.png", dpi=dpi)
        self.written.append(path)
        try:
            from IPython.display import Image, display

            display(Image(filename=str(path)))
        except ImportError:
            pass
        print(f"written: {self._shown(path)}")

    def _shown(self, path: Path) -> str:
        """`path` as the reports folder's own path (reproduce stages a notebook's files
        before they replace its earlier ones, so the folder written to is not where they end)."""
        return f"<reports>/{path.relative_to(self.root).as_posix()}"


def _show_frame(df: pd.DataFrame) -> None:
    try:
        from IPython.display import display

        display(df)
    except ImportError:
        print(df.to_string())
