"""The folder a notebook writes to: `<reports>/tables/NN_*` and `figures/NN_*`, each file
shown in the notebook as it is written."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ..errors import ConfigError
from ..paths import report_dir
from ..profiles import NotebookProfile
from .tables import format_frame, write_table
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
    """

    def __init__(
        self, notebook: str, profile: NotebookProfile, reports_dir: str | Path | None = None
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

    def table(
        self,
        df: pd.DataFrame,
        name: str,
        title: str | None = None,
        digits: Mapping[str, int] | None = None,
    ) -> None:
        md, csv = write_table(
            df, self.tables / f"{self.number}_{name}", self.profile, self.notebook, title, digits
        )
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
