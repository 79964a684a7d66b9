"""Mixed precision on the CPU, and the grid trained side by side before the notebooks."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ocdlib.configs import build_config
from ocdlib.cores import cgroup_cpu_limit
from ocdlib.engine import precision as precision_mod
from ocdlib.engine.precision import cpu_has_fast_bf16, resolve_precision
from ocdlib.grid.catalogue import (
    DEEPPOSE,
    OCD_DEEPPOSE,
    OCD_RLE,
    RLE,
    SIMPLEBASELINE,
    TCD_DEEPPOSE,
    notebook_left_out,
    skipped_on,
)
from ocdlib.grid.claims import FLOORS, TARGET
from ocdlib.grid.gather import grid_configs, run_dirs
from ocdlib.profiles import NOTEBOOK_PROFILES as PROFILES
from ocdlib.report.notebook import clear_notebook_outputs
from ocdlib.reproduce import train_grid, with_share_of_cores, write_profile_records
from ocdlib.runs.cache import run_dir


def test_bf16_needs_the_cpu_flags(tmp_path):
    with_bf16 = tmp_path / "a"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n")
    without = tmp_path / "b"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n")
    assert cpu_has_fast_bf16(str(with_bf16))
    assert not cpu_has_fast_bf16(str(without))
    assert not cpu_has_fast_bf16(str(tmp_path / "missing"))


def test_amp_is_granted_on_the_cpu_only_where_it_is_fast(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision_mod, "cpu_has_fast_bf16", lambda: True)
    p = resolve_precision(True, cpu)
    assert p.autocast and p.channels_last and p.name.startswith("bf16")
    assert not resolve_precision(False, cpu).autocast  # fp32 stays available
    assert not resolve_precision(False, cpu).channels_last
    monkeypatch.setattr(precision_mod, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(precision_mod, "cpu_prefers_channels_last", lambda: False)
    assert resolve_precision(True, cpu).name == "fp32"
    # An AVX-512 CPU without bf16: fp32, in channels_last.
    monkeypatch.setattr(precision_mod, "cpu_prefers_channels_last", lambda: True)
    p = resolve_precision(True, cpu)
    assert not p.autocast and p.channels_last and p.name == "fp32 + channels_last"
    assert resolve_precision(False, cpu).name == "fp32"


def test_channels_last_needs_avx512(tmp_path):
    avx512 = tmp_path / "a"
    avx512.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    avx2 = tmp_path / "b"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n")
    assert precision_mod.cpu_prefers_channels_last(str(avx512))
    assert not precision_mod.cpu_prefers_channels_last(str(avx2))
    assert not precision_mod.cpu_has_fast_bf16(str(avx512))


@pytest.mark.parametrize(
    "text, cores",
    [("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000\n", 2), ("junk\n", None)],
)
def test_cgroup_quota_is_read_as_whole_cores(tmp_path, text, cores):
    (tmp_path / "cpu.max").write_text(text)
    assert cgroup_cpu_limit(tmp_path / "cpu.max") == cores
    assert cgroup_cpu_limit(tmp_path / "missing") is None


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_side_by_side_runs_follow_the_cores_a_process_may_use():
    # Under taskset (or a CPU set) to one core, reproduce starts one run, not one per
    # core of the machine. A child process, so that this one keeps its affinity.
    code = (
        "import os; from ocdlib.reproduce import default_jobs, with_share_of_cores;"
        "from ocdlib.configs import build_config;"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
        "cfg = with_share_of_cores(build_config('smoke_deeppose'), jobs=1);"
        "print(default_jobs(), cfg.train.num_threads)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_execution_fields_do_not_change_the_hash():
    cfg = build_config("cpu_ocd")
    shared = with_share_of_cores(cfg, jobs=2, cores=2)
    assert shared.train.num_threads == 1 and shared.data.num_workers == 0
    assert shared.hash == cfg.hash and run_dir(shared) == run_dir(cfg)
    assert replace(cfg, train=replace(cfg.train, lr=0.5)).hash != cfg.hash


def test_grid_lists_teachers_once_and_with_their_students():
    rows = grid_configs(PROFILES["smoke"], ["03"])
    dirs = [str(run_dir(c)) for _, c in rows]
    assert len(dirs) == len(set(dirs))
    teachers = {c.loss.teacher_run for _, c in rows if c.loss.teacher_run}
    assert teachers and teachers <= set(dirs)
    assert len(grid_configs(PROFILES["smoke"], ["06"])) >= len(
        grid_configs(PROFILES["smoke"], ["01", "02"])
    )


def test_a_recorded_teacher_of_a_student_to_train_is_trained_again_for_its_weights(
    homes, monkeypatch
):
    import json

    from ocdlib.grid.plan import RECORDED, TO_TRAIN, build_plan

    monkeypatch.setenv("OCDLIB_REPORTS", str(homes / "reports"))
    profile = PROFILES["smoke"]
    grid = grid_configs(profile, ["01", "03"])
    teachers = {c.loss.teacher_run for _, c in grid if c.loss.teacher_run}
    teacher = next(c for _, c in grid if str(run_dir(c)) in teachers)
    other = next(c for e, c in grid if e is DEEPPOSE)
    for cfg in (teacher, other):  # committed records, no weights on this machine
        record = homes / "reports" / "smoke" / "runs" / run_dir(cfg).name
        record.mkdir(parents=True)
        (record / "config.json").write_text(json.dumps(cfg.to_dict()))
        (record / "result.json").write_text(json.dumps({"metrics": {"AP": 0.1}}))
    books = [Path(f"notebooks/{n}.ipynb") for n in ("01_baselines", "03_tcd")]
    state = {r.name: r.state for r in build_plan(profile, books, "c", True, use_records=True).runs}
    assert state[run_dir(teacher).name] == TO_TRAIN  # its students need its weights
    assert state[run_dir(other).name] == RECORDED
    reading = build_plan(profile, books, "c", train=False)  # nothing trains: the record serves
    assert {r.name: r.state for r in reading.runs}[run_dir(teacher).name] == RECORDED


def test_the_default_cpu_grid_is_the_full_grid_less_the_rows_cut_for_time():
    cpu = {run_dir(c).name: e for e, c in grid_configs(PROFILES["cpu"])}
    full = {run_dir(c).name: e for e, c in grid_configs(PROFILES["cpu_full"])}
    assert set(cpu) < set(full)  # the same configs: the full grid reuses every default run
    cut = {e for e in full.values()} - set(cpu.values())
    assert cut and all(
        skipped_on(e, PROFILES["cpu"]) and not skipped_on(e, PROFILES["cpu_full"]) for e in cut
    )
    # The default keeps the key comparisons on every seed and the rows of the floors.
    key = {e for e in cpu.values() if e.key}
    for e in key:
        assert sum(v is e for v in cpu.values()) == 3, e.label
    issue_key = {DEEPPOSE, SIMPLEBASELINE, OCD_DEEPPOSE, RLE, OCD_RLE, TCD_DEEPPOSE}
    assert issue_key <= key and {TARGET.candidate, TARGET.baseline} <= key
    assert {f.row for f in FLOORS} <= set(cpu.values())


def test_reproduce_skips_a_notebook_none_of_whose_rows_runs():
    assert "full grid" in notebook_left_out("04", PROFILES["cpu"])
    for profile in (PROFILES["smoke"], PROFILES["cpu_full"]):
        assert not any(notebook_left_out(f"0{i}", profile) for i in range(7)), profile
    assert (
        notebook_left_out("00", PROFILES["cpu"]) is None
        and notebook_left_out("06", PROFILES["cpu"]) is None
    )


def test_a_notebooks_old_outputs_are_cleared_and_only_its_own(tmp_path):
    for name in ("tables/04_reduced_head.md", "figures/04_keypoints.png", "tables/05_wb.csv"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    gone = clear_notebook_outputs(tmp_path, "04_reduced_head.ipynb")
    assert sorted(p.name for p in gone) == ["04_keypoints.png", "04_reduced_head.md"]
    assert (tmp_path / "tables/05_wb.csv").is_file()
    assert clear_notebook_outputs(tmp_path / "missing", "04_reduced_head.ipynb") == []


@pytest.fixture
def homes(tmp_path, monkeypatch):
    monkeypatch.setenv("OCDLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("OCDLIB_RUNS", str(tmp_path / "runs"))
    return tmp_path


def test_train_grid_side_by_side_fills_the_cache_teachers_first(homes):
    records = homes / "records"  # records --train: each run's record as it finishes
    trained = train_grid(PROFILES["smoke"], ["03"], jobs=2, records=records)
    rows = grid_configs(PROFILES["smoke"], ["03"])
    assert sorted(trained) == sorted(run_dir(cfg).name for _, cfg in rows)
    for _, cfg in rows:
        result = run_dir(cfg) / "result.json"
        assert result.is_file(), result
        assert (records / run_dir(cfg).name / "result.json").read_text() == result.read_text()
    # A TCD student finished after its teacher existed (it read the teacher's checkpoint).
    for _, cfg in rows:
        if cfg.loss.teacher_run:
            teacher = os.path.getmtime(os.path.join(cfg.loss.teacher_run, "result.json"))
            assert os.path.getmtime(run_dir(cfg) / "config.json") >= teacher
    assert train_grid(PROFILES["smoke"], ["03"], jobs=2) == []  # everything cached now
    # records --train's final pass: the runs just recorded are not written a second time.
    lines = []
    written = write_profile_records(PROFILES["smoke"], records, lines.append, recorded=trained)
    assert written == []  # every finished run of the grid was one this command trained
    assert f"({len(trained)} written as their runs finished)" in lines[0]


def _grid_time():
    """benchmarks/grid_time.py as a module (the benchmarks are scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "grid_time.py"
    spec = importlib.util.spec_from_file_location("grid_time", path)
    grid_time = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grid_time)
    return grid_time


def test_grid_time_replays_the_schedule_of_reproduce():
    grid_time = _grid_time()
    # A teacher of 10 min, a student of 3 that must wait for it, two runs of 4.
    runs = [("t", "", 10.0), ("a", "", 4.0), ("s", "t", 3.0), ("b", "", 4.0)]
    assert grid_time.replay(runs, 1) == 21
    # Two jobs: b takes the free job while s waits for t; s starts at 10.
    assert grid_time.replay(runs, 2) == 13
    assert grid_time.replay(runs, 4) == 13
    assert grid_time.replay([("s", "outside", 2.0)], 2) == 2  # a teacher in the cache


def _rows_a_notebook_gathers(nb: str, profile) -> list:
    """The rows notebook `nb` passes to gather, from its own code: the `rows = ...` line of
    the cell that gathers, evaluated as the kernel would."""
    import json

    from ocdlib.grid import catalogue

    path = next((Path(__file__).parents[1] / "notebooks").glob(f"{nb}_*.ipynb"))
    for cell in json.loads(path.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and "rep.gather(rows)" in source:
            line = next(ln for ln in source.splitlines() if ln.startswith("rows = "))
            expr = line.removeprefix("rows = ").split("  #")[0]
            return list(eval(expr, {**vars(catalogue), "profile": profile}))  # noqa: S307
    raise AssertionError(f"{path.name}: no cell gathers `rows`")


@pytest.mark.parametrize("name", ["cpu", "cpu_full"])
def test_reproduce_only_trains_every_run_a_notebook_gathers(name):
    profile = PROFILES[name]
    # `reproduce --only NN` trains its grid side by side before the notebook runs; a
    # run the notebook gathers but the grid lacks would be trained inside it, one by one.
    for nb in ("01", "02", "03", "04", "05"):
        if notebook_left_out(nb, profile):  # reproduce skips it (04 on cpu)
            continue
        grid = {str(run_dir(c)) for _, c in grid_configs(profile, [nb])}
        rows = [e for e in _rows_a_notebook_gathers(nb, profile) if not skipped_on(e, profile)]
        assert rows, nb
        for exp in rows:
            assert {str(d) for d in run_dirs(exp, profile)} <= grid, (nb, exp.label)


def test_grid_time_per_run_speed_from_the_scaling_benchmark():
    grid_time = _grid_time()
    rows = [
        {"preset": "a", "cores": 2, "amp": True, "crops_per_s": 200.0},
        {"preset": "a", "cores": 2, "amp": False, "crops_per_s": 100.0},  # fp32: ignored
        {"preset": "a", "cores": 8, "amp": True, "crops_per_s": 720.0},  # 180 a run: 0.9
        {"preset": "b", "cores": 2, "amp": True, "crops_per_s": 100.0},
        {"preset": "b", "cores": 8, "amp": True, "crops_per_s": 320.0},  # 40 a run: 0.8
    ]
    speed = grid_time.per_run_speed(rows, 2)
    assert speed[2] == (1.0, 1.0)
    assert speed[8] == pytest.approx((0.8, 0.9))
    with pytest.raises(ValueError, match="no rows for 4 cores"):
        grid_time.per_run_speed(rows, 4)
