"""Does this checkout rebuild the reports exactly as another commit does?

    python scripts/no_train_rebuild.py BASE_REV [--profiles cpu cpu_full]

Runs `python -m ocdlib reproduce --profile P --no-train` twice for each profile: once
from a worktree of BASE_REV, once from this checkout, each into a report folder of its
own under a temporary directory, both reading the committed run records and one shared
SynthPose copy (an empty run cache: nothing is trained). It then compares every table,
figure and results file the two wrote, byte for byte once dates, commits, the
provenance note's module path and the checkout's own path are set aside, and prints
what differs. Exit status 0 when nothing does.

A change that moves code without changing results (a new layout, a renamed module)
must pass it against the commit before the change.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _normalised(path: Path, roots: list[str]) -> bytes:
    data = path.read_bytes()
    if path.suffix not in (".md", ".json", ".csv"):
        return data
    text = data.decode()
    text = re.sub(r"(git commit|git_commit\"?)[^\n]*", r"\1 <commit>", text)
    text = re.sub(r"(- date:|\"date\":)[^\n]*", r"\1 <date>", text)
    text = re.sub(r"\(ocdlib/[a-z_/]+(\.py)?\) from the run directories", "(<code>) from", text)
    for root in roots:
        text = text.replace(root, "<root>")
    return text.encode()


def _reproduce(checkout: Path, profile: str, out: Path, data: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(checkout),
        "OCDLIB_REPORTS": str(out / "reports"),
        "OCDLIB_RUNS": str(out / "runs"),
        "OCDLIB_DATA": str(data),
    }
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{profile}.log"
    cmd = [sys.executable, "-m", "ocdlib", "reproduce", "--profile", profile, "--no-train"]
    with log.open("w") as f:
        code = subprocess.run(cmd, cwd=checkout, env=env, stdout=f, stderr=subprocess.STDOUT)
    print(f"{checkout.name}: reproduce --profile {profile} --no-train exited {code.returncode}")


def compare(base: Path, new: Path, roots: list[str]) -> list[str]:
    def files(root: Path) -> set[Path]:
        return {
            p.relative_to(root)
            for p in root.rglob("*")
            if p.is_file() and "notebooks" not in p.parts and p.name != "PROVENANCE.md"
        }

    a, b = files(base), files(new)
    problems = [f"only in BASE_REV's: {p}" for p in sorted(a - b)]
    problems += [f"only in this checkout's: {p}" for p in sorted(b - a)]
    for p in sorted(a & b):
        if _normalised(base / p, roots) != _normalised(new / p, roots):
            problems.append(f"differs: {p}")
    print(f"{len(a & b)} files written by both; {len(problems)} differences")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="the commit to compare against")
    ap.add_argument("--profiles", nargs="+", default=["cpu", "cpu_full"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        worktree = tmp / "base-checkout"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.base],
            check=True,
            capture_output=True,
        )
        try:
            for name, checkout in (("base", worktree), ("new", REPO)):
                for profile in args.profiles:
                    _reproduce(checkout, profile, tmp / name, tmp / "data")
            roots = [f"{worktree}/", f"{REPO}/", f"{tmp}/base/", f"{tmp}/new/"]
            problems = compare(tmp / "base" / "reports", tmp / "new" / "reports", roots)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)])
    print("\n".join(problems) or "every report file is the same")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
