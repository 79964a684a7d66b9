"""Does this checkout rebuild the reports exactly as another commit does?

    python scripts/no_train_rebuild.py BASE_REV [--profiles cpu cpu_full] [--same-records]
    python scripts/no_train_rebuild.py BASE_REV --profiles cpu_scratch=cpu --same-records

Runs `python -m ocdlib reproduce --profile P --no-train` twice for each profile: once
from a worktree of BASE_REV, once from this checkout, each into a report folder of its
own under a temporary directory, both reading the committed run records and one shared
SynthPose copy (an empty run cache: nothing is trained). It then compares every table,
figure and results file the two wrote, byte for byte once dates, commits, the
provenance note's module path and the checkout's own path are set aside, and prints
what differs. Exit status 0 when nothing does.

A change that moves code without changing results (a new layout, a renamed module)
must pass it against the commit before the change.

`NEW=BASE` compares this checkout's profile NEW with BASE_REV's profile BASE (a renamed
profile): their report folders are compared, and the name NEW is read as BASE.
`--same-records` gives BASE_REV's worktree this checkout's committed records, so that
records added since (newly trained runs) do not count as differences of the code;
`--rename NEW=OLD` reads a name or folder renamed since (a moved records folder) as
its old one.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _normalised(path: Path, roots: list[str], names: dict[str, str]) -> bytes:
    data = path.read_bytes()
    if path.suffix not in (".md", ".json", ".csv"):
        return data
    text = data.decode()
    for new, base in names.items():
        text = re.sub(rf"\b{new}\b", base, text)
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


def _report_folder(checkout: Path, profile: str, out: Path) -> Path:
    """Where `checkout`'s reproduce wrote `profile`'s reports under `out`."""
    code = (
        "import sys; from ocdlib.profiles import notebook_profile; "
        f"print(notebook_profile({profile!r}).report_folder)"
    )
    folder = subprocess.run(
        [sys.executable, "-c", code], cwd=checkout, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(checkout)},
    ).stdout.strip()  # fmt: skip
    return out / "reports" / folder


def _copy_records(src: Path, dst: Path) -> None:
    """Every committed record folder under `src` (reports/**/runs/*) copied under `dst`."""
    for record in src.glob("**/runs/*"):
        target = dst / record.relative_to(src)
        if record.is_dir() and not target.exists():
            shutil.copytree(record, target)


def compare(base: Path, new: Path, roots: list[str], names: dict | None = None) -> list[str]:
    names = names or {}

    def files(root: Path) -> set[Path]:
        return {
            p.relative_to(root)
            for p in root.rglob("*")
            if p.is_file()
            and "notebooks" not in p.parts
            and "runs" not in p.parts
            and p.name != "PROVENANCE.md"
        }

    a, b = files(base), files(new)
    problems = [f"only in BASE_REV's: {p}" for p in sorted(a - b)]
    problems += [f"only in this checkout's: {p}" for p in sorted(b - a)]
    shown = []
    for p in sorted(a & b):
        old, now = _normalised(base / p, roots, names), _normalised(new / p, roots, names)
        if old != now:
            problems.append(f"differs: {p}")
            shown.append(problems[-1])
            if p.suffix in (".md", ".csv"):  # the lines that differ, to read the difference
                diff = difflib.unified_diff(
                    old.decode().splitlines(), now.decode().splitlines(), lineterm="", n=0
                )
                shown += [f"    {line[:220]}" for line in list(diff)[2:14]]
    print(f"{len(a & b)} files written by both; {len(problems)} differences")
    print("\n".join(shown))
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="the commit to compare against")
    ap.add_argument("--profiles", nargs="+", default=["cpu", "cpu_full"], help="P or NEW=BASE")
    ap.add_argument("--same-records", action="store_true")
    ap.add_argument(
        "--rename", nargs="*", default=[], help="NEW=OLD: a folder or name renamed since BASE_REV"
    )
    args = ap.parse_args()
    pairs = [tuple(p.split("=", 1)) if "=" in p else (p, p) for p in args.profiles]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        worktree = tmp / "base-checkout"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.base],
            check=True,
            capture_output=True,
        )
        try:
            if args.same_records:
                _copy_records(REPO / "reports", worktree / "reports")
            problems = []
            for new_name, base_name in pairs:
                _reproduce(worktree, base_name, tmp / "base" / base_name, tmp / "data")
                _reproduce(REPO, new_name, tmp / "new" / new_name, tmp / "data")
                roots = [f"{worktree}/", f"{REPO}/", f"{tmp}/base/", f"{tmp}/new/"]
                problems += compare(
                    _report_folder(worktree, base_name, tmp / "base" / base_name),
                    _report_folder(REPO, new_name, tmp / "new" / new_name),
                    roots,
                    {
                        **({new_name: base_name} if new_name != base_name else {}),
                        **dict(r.split("=", 1) for r in args.rename),
                    },
                )
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)])
    print("\n".join(problems) or "every report file is the same")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
