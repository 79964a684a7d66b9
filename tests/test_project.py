"""The project files agree with each other: pins, CI and README commands."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r): r.replace(" ", "") for r in project["dependencies"]}
    wanted.update({_name(r): r.replace(" ", "") for r in project["optional-dependencies"]["dev"]})
    env = (ROOT / "environment.yml").read_text()
    listed = {}
    for line in env.splitlines():
        m = re.match(r"\s+- ([A-Za-z][\w.-]*(?:==|>=|<=|~=|!=|<|>).*)$", line)
        if m:
            listed[_name(m.group(1))] = m.group(1).replace(" ", "")
    assert listed == wanted


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci
    assert "make test" in readme and "make reproduce" in readme
