"""Open a notebook in a real JupyterLab, in headless Chromium, run every cell, and check
what a user would see: no error output, every row of the grid in its tables, and its
figures rendered. Saves a screenshot.

    python scripts/lab_check.py [--notebook 06_results.ipynb] [--profile cpu]
                                [--screenshot docs/lab_check[_<profile>].png] [--timeout 600]

Needs Debian's chromium (/usr/bin/chromium; a browser that downloads its own build
cannot be installed here) and the playwright package, which drives it through
`executable_path` (`make lab-check` installs both). JupyterLab is started on a free
port with a token, from a copy of the notebook so the repository's copy stays clean;
the notebook runs with `train_missing` False, as when opened by hand: it reads the run
cache and the committed records, and says which rows it lacks.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# Chromium's connections to Google's services are refused on a closed network, many at a
# time; these flags keep it from trying.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(folder: Path, port: int, token: str, env: dict) -> subprocess.Popen:
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [
        str(jupyter), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
        "--ServerApp.disable_check_xsrf=True",
    ]  # fmt: skip
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(folder / "jupyterlab.log", "w")  # noqa: SIM115 (lives as long as the server)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"JupyterLab did not start in 120 s; see {folder / 'jupyterlab.log'}")


def expected_labels(notebook: str, profile_name: str) -> list[str]:
    from ocdlib.grid.catalogue import EXPERIMENTS, notebook_rows, on_profile
    from ocdlib.profiles import notebook_profile

    profile = notebook_profile(profile_name)
    if notebook.startswith("06"):  # the results notebook gathers every row
        return [r.label for r in on_profile(EXPERIMENTS, profile)]
    return [r.label for r in notebook_rows(notebook[:2], profile)]


def check_outputs(path: Path, labels: list[str]) -> list[str]:
    """What is wrong with the saved notebook's outputs (empty: nothing)."""
    nb = json.loads(path.read_text())
    problems, text, images = [], [], 0
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
            data = out.get("data", {})
            images += "image/png" in data
            for key in ("text/markdown", "text/html", "text/plain"):
                text.append("".join(data.get(key, [])))
            text.append("".join(out.get("text", [])))
        if cell["cell_type"] == "code" and cell.get("execution_count") is None:
            problems.append(f"cell {i} did not run")
    joined = "\n".join(text)
    missing = [label for label in labels if label not in joined]
    if missing:
        problems.append(f"rows missing from its tables: {missing}")
    untrained = sorted({ln.strip() for ln in joined.splitlines() if "not trained yet" in ln})
    if untrained:
        problems.append("it says runs are not trained yet: " + "; ".join(untrained))
    if images == 0:
        problems.append("no figure rendered")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--notebook", default="06_results.ipynb")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument(
        "--screenshot", help="default: docs/lab_check.png for profile cpu, "
        "docs/lab_check_<profile>.png for another, so one profile's check keeps another's",
    )  # fmt: skip
    ap.add_argument("--timeout", type=float, default=600, help="seconds for the cells to run")
    args = ap.parse_args()
    if args.screenshot is None:
        suffix = "" if args.profile == "cpu" else f"_{args.profile}"
        args.screenshot = str(REPO / "docs" / f"lab_check{suffix}.png")
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="lab-check-"))
    shutil.copy(REPO / "notebooks" / args.notebook, folder / args.notebook)
    env = {
        **os.environ,
        "OCDLIB_PROFILE": args.profile,
        "OCDLIB_TRAIN_MISSING": "0",
        "OCDLIB_REPORTS": str(folder / "reports"),  # the repository's reports stay as they are
        "PYTHONPATH": str(REPO),
    }
    port, token = free_port(), secrets.token_hex(16)
    lab = start_lab(folder, port, token, env)
    t0 = time.monotonic()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/{args.notebook}?token={token}")
            page.wait_for_selector(".jp-NotebookPanel", timeout=120_000)
            kernel = page.get_by_role("button", name="Select", exact=True)
            try:  # a notebook saved without a kernelspec asks which kernel to start
                kernel.wait_for(timeout=10_000)
                kernel.click()
            except Exception:
                pass
            idle = ".jp-Notebook-ExecutionIndicator[data-status='idle']"
            busy = ".jp-Notebook-ExecutionIndicator[data-status='busy']"
            page.wait_for_selector(idle, timeout=120_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            page.wait_for_selector(busy, timeout=60_000)
            page.wait_for_selector(idle, timeout=args.timeout * 1000)
            page.get_by_role("menuitem", name="File", exact=True).click()
            page.get_by_text("Save Notebook", exact=True).first.click()
            time.sleep(3)
            page.keyboard.press("Escape")
            news = page.get_by_role("button", name="No", exact=True)
            if news.count():  # the "official Jupyter news?" toast over the notebook
                news.first.click()
            ran_s = time.monotonic() - t0
            page.screenshot(path=args.screenshot, full_page=False)
            browser.close()
    finally:
        lab.terminate()
        lab.wait(timeout=30)
    problems = check_outputs(folder / args.notebook, expected_labels(args.notebook, args.profile))
    print(f"{args.notebook} (profile {args.profile}) opened and run in JupyterLab in headless "
          f"Chromium in {ran_s:.0f} s; screenshot {args.screenshot}")  # fmt: skip
    for p in problems:
        print(f"FAIL: {p}")
    if not problems:
        print("OK: no error output, every row in its tables, figures rendered")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
