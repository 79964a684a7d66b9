"""Run the notebooks in order with papermill, writing executed copies and results to reports/."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

from .paths import REPO_ROOT, reports_home

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PROFILES = ("smoke", "cpu", "gpu_synth", "coco")


def notebooks(only: list[str] | None = None) -> list[Path]:
    books = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        books = [b for b in books if any(b.name.startswith(p) for p in only)]
        if not books:
            raise ValueError(f"--only {only}: no notebook in {NOTEBOOK_DIR} starts with that")
    return books


def report_dir(profile: str) -> Path:
    """cpu results go to reports/ itself; other profiles to reports/<profile>/."""
    root = reports_home()
    return root if profile == "cpu" else root / profile


def reproduce(profile: str = "cpu", only: list[str] | None = None) -> int:
    import papermill

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {PROFILES}")
    out_dir = report_dir(profile)
    executed = out_dir / "notebooks"
    # papermill writes a notebook as it runs; it lands in reports/ only once it has
    # finished, so an interrupted or failed notebook never passes for a result.
    running = executed / ".running"
    running.mkdir(parents=True, exist_ok=True)
    books = notebooks(only)
    t_all = time.perf_counter()
    timings = []
    for i, nb in enumerate(books, 1):
        print(f"[{i}/{len(books)}] {nb.name} (profile {profile}) ...", flush=True)
        t0 = time.perf_counter()
        partial = running / nb.name
        try:
            papermill.execute_notebook(
                str(nb),
                str(partial),
                parameters={"profile": profile, "reports_dir": str(out_dir)},
                cwd=str(NOTEBOOK_DIR),
                kernel_name="python3",
                progress_bar=False,
                log_output=False,
            )
        except BaseException:
            print(f"{nb.name} did not finish; its partial output is {partial}", flush=True)
            raise
        os.replace(partial, executed / nb.name)
        dt = time.perf_counter() - t0
        timings.append((nb.name, dt))
        print(f"[{i}/{len(books)}] {nb.name} done in {dt / 60:.1f} min", flush=True)
        # Written after every notebook, so an interrupted reproduction says how far it got.
        pending = [b.name for b in books[i:]]
        write_provenance(
            out_dir, profile, timings, time.perf_counter() - t_all, bool(only), pending
        )
    total = time.perf_counter() - t_all
    print(f"all done in {total / 60:.1f} min; reports in {out_dir}")
    return 0


def write_provenance(
    out_dir: Path, profile: str, timings, total: float, partial: bool, pending=()
) -> None:
    from .engine.runs import command_line, git_commit

    try:
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        threads = torch.get_num_threads()
    except Exception:  # provenance must never fail a reproduction
        device, threads = "unknown", 0
    cpu = platform.processor() or platform.machine()
    try:
        model = subprocess.run(
            ["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        cpu = model or cpu
    except OSError:
        pass
    lines = [
        f"# Reproduction provenance ({profile} profile)",
        "",
        f"- command: `{command_line()}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- git commit: {git_commit()}",
        f"- machine: {cpu}, {_cores()} cores, torch threads {threads}, device {device}",
        f"- python: {platform.python_version()}",
        f"- total wall time: {total / 60:.1f} min" + (" (partial: --only)" if partial else ""),
        *([f"- not run yet (interrupted or running): {', '.join(pending)}"] if pending else []),
        "- runs found in the run cache are reused, so this time counts only the training done by"
        " this command; each run's own training time is in results.csv (train_time_s)",
        "",
        "| notebook | wall time (min) |",
        "|---|---|",
        *[f"| {name} | {dt / 60:.1f} |" for name, dt in timings],
        "",
    ]
    (out_dir / "PROVENANCE.md").write_text("\n".join(lines))


def _cores() -> int:
    return os.cpu_count() or 0
