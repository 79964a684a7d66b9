"""The project files agree with each other: pins, CI and README commands."""

from __future__ import annotations

import re
import subprocess
import sys
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


def _import_graph() -> dict[str, set[str]]:
    """{module: modules of ocdlib it imports}, every import counted wherever it sits (a
    deferred import inside a function is still an import), except those only for type
    checkers (`if TYPE_CHECKING:`)."""
    import ast

    root = Path(__file__).resolve().parents[1]
    files = {
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (root / "ocdlib").rglob("*.py")
    }

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import mod` imports the module pkg.mod; `from mod import f`, mod.
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for t in targets:
                target = resolve(t) if t.startswith("ocdlib") else None
                if target and target != module:
                    edges.add(target)
        graph[module] = edges
    return graph


def test_no_module_imports_one_that_imports_it_back():
    graph = _import_graph()
    assert "ocdlib.engine.trainer" in graph and "ocdlib.report.tables" in graph
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module) :] + [module]
            raise AssertionError("import circle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


# The floors of the package, from the ground up (docs/ARCHITECTURE.md, "Layers"): a module
# imports modules of its own floor or of floors below it, never above.
LAYERS = (
    ("ocdlib.errors", "ocdlib.metainfo", "ocdlib.synth_spec", "ocdlib.cores", "ocdlib.profiles",
     "ocdlib.paths", "ocdlib.weights", "ocdlib.configs"),
    ("ocdlib.data", "ocdlib.models", "ocdlib.losses", "ocdlib.codecs", "ocdlib.coco_eval"),
    ("ocdlib.engine", "ocdlib.pretrain"),
    ("ocdlib.runs",),
    ("ocdlib.grid",),
    ("ocdlib.report", "ocdlib.bench", "ocdlib.export", "ocdlib.predict"),
    ("ocdlib.reproduce",),
    ("ocdlib.__main__",),
)  # fmt: skip


def _floor(module: str) -> int:
    if module == "ocdlib":  # the package's __init__: its version, nothing imported
        return 0
    for i, floor in enumerate(LAYERS):
        if any(module == top or module.startswith(top + ".") for top in floor):
            return i
    raise AssertionError(f"{module} is on no floor of LAYERS (tests/test_project.py)")


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} (floor {_floor(module)}) imports {target} (floor {_floor(target)})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if _floor(target) > _floor(module)
    ]


def test_no_module_imports_from_a_floor_above_its_own():
    upward = _upward(_import_graph())
    assert not upward, "imports from a higher floor:\n" + "\n".join(upward)


def test_the_floor_check_sees_an_upward_import():
    # The real graph with one upward arrow added (the engine importing the grid), and
    # one deferred import of the same kind inside a function of a module of the tree.
    graph = _import_graph()
    graph["ocdlib.engine.trainer"] = graph["ocdlib.engine.trainer"] | {"ocdlib.grid.catalogue"}
    assert _upward(graph) == [
        "ocdlib.engine.trainer (floor 2) imports ocdlib.grid.catalogue (floor 4)"
    ]
    assert not _upward({"ocdlib.grid.catalogue": {"ocdlib.engine.trainer"}})  # downward


def test_importing_the_grid_loads_no_torch():
    code = (
        "import sys, ocdlib.grid, ocdlib.grid.catalogue, ocdlib.grid.claims, ocdlib.grid.judge; "
        "print(sorted(m for m in ('torch', 'PIL', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_import_walk_counts_imports_inside_functions():
    # A deferred import counts (it hides a circle, it does not remove it).
    assert "ocdlib.reproduce" in _import_graph()["ocdlib.__main__"]  # inside cmd_reproduce


def test_the_architecture_page_names_every_module():
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "ARCHITECTURE.md").read_text()
    table = page[page.index("## Modules") :]
    missing = [
        str(p.relative_to(root))
        for p in sorted((root / "ocdlib").rglob("*.py"))
        if p.name != "__init__.py"
        and f"`{p.relative_to(root)}`" not in table
        and f"`{p.name}`" not in table
    ]
    assert not missing, f"docs/ARCHITECTURE.md's module table does not name {missing}"


def test_nothing_reads_a_path_outside_the_repository():
    """The kit, its tests, notebooks and benchmarks use only what a clone holds: the COCO
    sample is ocdlib/sample_data/coco_sample (ocdlib.paths.COCO_SAMPLE_DIR)."""
    import re

    root = Path(__file__).resolve().parents[1]
    outside = re.compile(
        r"\.\./shared|[\"']shared[\"']\s*/|/\s*[\"']shared[\"']|parents\[1\]\.parent"
    )
    offenders = []
    for folder in ("ocdlib", "tests", "notebooks", "benchmarks"):
        for path in sorted((root / folder).rglob("*")):
            if path.suffix in (".py", ".ipynb") and path.resolve() != Path(__file__).resolve():
                offenders += [
                    f"{path.relative_to(root)}" for _ in outside.finditer(path.read_text())
                ]
    assert not offenders, f"paths outside the repository in {sorted(set(offenders))}"


def test_the_coco_sample_is_in_the_package():
    from ocdlib.paths import COCO_SAMPLE_DIR

    names = {p.name for p in COCO_SAMPLE_DIR.iterdir()}
    assert {"test_coco.json", "test_coco_wholebody.json", "test_coco_det_AP_H_56.json"} <= names
    assert len([n for n in names if n.endswith(".jpg")]) == 4 and "README.md" in names


def test_every_method_citation_points_to_docs_method_and_its_sections_exist():
    """The specification is docs/METHOD.md; a citation of a section names one it has."""
    root = Path(__file__).resolve().parents[1]
    method = (root / "docs" / "METHOD.md").read_text()
    headings = {h.strip() for h in re.findall(r"^#+ (.+)$", method, re.M)}
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    for folder in ("ocdlib", "notebooks", "benchmarks", "tests"):
        files += [p for p in sorted((root / folder).rglob("*")) if p.suffix in (".py", ".ipynb")]
    bad, cited = [], 0
    for path in files:
        if path.resolve() == Path(__file__).resolve():
            continue
        text = path.read_text()
        for m in re.finditer(r"([\w./\[\]()-]*)METHOD\.md\)?(, section '([^']+)')?", text):
            prefix, section = m.group(1), m.group(3)
            in_docs = path.parent.name == "docs" and prefix in ("", "[", "](", "[METHOD.md](")
            if not (prefix.endswith("docs/") or in_docs or prefix.endswith("](")):
                bad.append(f"{path.relative_to(root)}: {m.group(0)!r}")
            if section is not None:
                cited += 1
                if section not in headings:
                    bad.append(
                        f"{path.relative_to(root)}: no section {section!r} in docs/METHOD.md"
                    )
    assert not bad, bad
    assert cited >= 5
