"""The README is a front page whose numbers come from reports/, and whose links resolve."""

import re
import shutil
from pathlib import Path

import pandas as pd

from ocdlib.report import readme

ROOT = Path(__file__).resolve().parents[1]


def test_the_results_block_agrees_with_the_reports():
    assert readme.is_current(ROOT / "README.md", ROOT / "reports"), (
        "README.md's results block disagrees with reports/: run python -m ocdlib readme"
    )


def test_the_check_fails_when_a_number_in_the_reports_changes(tmp_path):
    reports = tmp_path / "reports"
    shutil.copytree(ROOT / "reports" / "tables", reports / "tables")
    for name in ("results.csv", "PROVENANCE.md"):
        shutil.copyfile(ROOT / "reports" / name, reports / name)
    page = tmp_path / "README.md"
    page.write_text(f"# x\n\n{readme.BEGIN}\n{readme.END}\n\ntail\n")
    assert readme.main(readme=page, reports=reports) == 0
    assert readme.main(check=True, readme=page, reports=reports) == 0
    assert page.read_text().endswith("\n\ntail\n")
    results = pd.read_csv(reports / "results.csv")
    results.loc[0, "AP"] += 1.0  # one row's AP
    results.to_csv(reports / "results.csv", index=False)
    assert readme.main(check=True, readme=page, reports=reports) == 1
    block = readme.results_block(reports)
    assert f"| {results.loc[0, 'label']} |" in block and f"{results.loc[0, 'AP']:.1f} ±" in block


def test_a_one_seed_reproduction_writes_its_block(tmp_path):
    # a time-boxed `make reproduce` may finish one seed of each row: results.csv then has no
    # _std columns, and the block gives the means alone
    reports = tmp_path / "reports"
    shutil.copytree(ROOT / "reports" / "tables", reports / "tables")
    shutil.copyfile(ROOT / "reports" / "PROVENANCE.md", reports / "PROVENANCE.md")
    results = pd.read_csv(ROOT / "reports" / "results.csv")
    results = results.drop(columns=[c for c in results.columns if c.endswith("_std")])
    results.to_csv(reports / "results.csv", index=False)
    block = readme.results_block(reports)
    assert f"| {results.loc[0, 'label']} |" in block and " ± " not in block.split("|---|")[1]


def test_the_readme_is_a_front_page_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    makefile = (ROOT / "Makefile").read_text()
    for target in ("reproduce", "test"):
        assert f"make {target}" in text and re.search(rf"^{target}:", makefile, re.M)


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_the_gpu_synth_table_joins_the_block_once_its_reports_exist(tmp_path):
    reports = tmp_path / "reports"
    shutil.copytree(ROOT / "reports" / "tables", reports / "tables")
    for name in ("results.csv", "PROVENANCE.md"):
        shutil.copyfile(ROOT / "reports" / name, reports / name)
    assert "gpu_synth" not in readme.results_block(reports)
    (reports / "gpu_synth").mkdir()
    rows = pd.read_csv(reports / "results.csv").head(2)
    rows.to_csv(reports / "gpu_synth" / "results.csv", index=False)
    block = readme.results_block(reports)
    assert "**gpu_synth**" in block and "not COCO's" in block
    assert block.count(f"| {rows.loc[0, 'label']} |") == 2  # the cpu table's and its own


def test_both_regimes_stand_side_by_side_with_the_papers_numbers_once_reported(tmp_path):
    reports = tmp_path / "reports"
    shutil.copytree(ROOT / "reports" / "tables", reports / "tables")
    for name in ("results.csv", "PROVENANCE.md"):
        shutil.copyfile(ROOT / "reports" / name, reports / name)
    assert "Both regimes" not in readme.results_block(reports)
    other = reports / readme.SCRATCH_FOLDER
    (other / "tables").mkdir(parents=True)
    results = pd.read_csv(reports / "results.csv")
    results["AP"] = results["AP"] + 10.0  # stand-in numbers of the other regime
    results.to_csv(other / "results.csv", index=False)
    comparisons = pd.read_csv(reports / "tables" / "06_comparisons.csv")
    comparisons.loc[0, "delta AP"] = -4.2
    comparisons.to_csv(other / "tables" / "06_comparisons.csv", index=False)
    block = readme.results_block(reports)
    dp = results.loc[results["label"] == "DeepPose", "AP"].iloc[0] - 10.0
    assert "Both regimes" in block
    row = next(line for line in block.splitlines() if line.startswith("| DeepPose | 0,1,2:"))
    assert f"{dp:.1f}" in row and f"{dp + 10:.1f}" in row and "52.8" in row
    assert "| DeepPose / SimpleBaseline |" in block and "| 0.74 |" in block
    assert f"| {comparisons.loc[0, 'comparison']} |" in block and "-4.2" in block
