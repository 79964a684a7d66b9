"""The time box: key rows first, a pace measured on steady steps, minutes that hold,
records brought back, and the whole allocation path on the CPU with a fake clock."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import FakeClock

from ocdlib.configs import build_config
from ocdlib.engine.pace import EVAL_FIXED_S, Pace
from ocdlib.engine.trainer import train
from ocdlib.grid.catalogue import DEEPPOSE, OCD_WARMUP, SIMPLEBASELINE, TCD_DEEPPOSE
from ocdlib.grid.gather import config_for, grid_configs
from ocdlib.grid.plan import run_order
from ocdlib.profiles import NOTEBOOK_PROFILES as PROFILES
from ocdlib.reproduce.timebox import reproduce_within
from ocdlib.runs import cache as run_cache

REPO = Path(__file__).resolve().parents[1]


def test_the_order_puts_the_key_rows_first_seed_by_seed_and_teachers_before_students():
    gpu = PROFILES["gpu_synth"]
    order = [(e, c.train.seed) for e, c in run_order(grid_configs(gpu), gpu)]
    assert order[:6] == [
        (DEEPPOSE, 0), (SIMPLEBASELINE, 0), (OCD_WARMUP, 0),
        (DEEPPOSE, 1), (SIMPLEBASELINE, 1), (OCD_WARMUP, 1),
    ]  # fmt: skip
    assert order.index((TCD_DEEPPOSE, 0)) < len(order) // 2
    assert len(order) == len(set(order))


def _run(pace: Pace, clock: FakeClock, steps: range, seconds_per_step: float) -> bool:
    """Mark `steps` at `seconds_per_step` each; whether the pace asked to stop at any."""
    for step in steps:
        clock.now += seconds_per_step
        pace.mark(step)
        if pace.should_stop(step):
            return True
    return False


def test_the_pace_leaves_the_warm_up_out_and_never_stops_a_run_whose_steady_pace_fits():
    clock = FakeClock()
    # 1,000 steps: 50 of warm-up at 1 s each, then 0.05 s a step: 50 + 47.5 s, and
    # 120 s given. An average over every step would have said 2 x too slow at step 60.
    pace = Pace(clock.now + 120, total_steps=1000, clock=clock)
    pace.start(0)
    assert not _run(pace, clock, range(1, 51), 1.0)
    assert pace.seconds_per_step() is None  # still warming up: no pace yet
    assert not _run(pace, clock, range(51, 1001), 0.05)
    assert pace.seconds_per_step() == pytest.approx(0.05)


def test_the_pace_stops_a_run_whose_steady_pace_ends_past_the_deadline_before_the_deadline():
    clock = FakeClock()
    pace = Pace(clock.now + 60, total_steps=1000, eval_steps=20, clock=clock)
    pace.start(0)
    _run(pace, clock, range(1, 51), 0.1)
    # 0.1 s a step: 950 steps + 20 of evaluation = 97 s more, 55 s left: stop at once.
    assert _run(pace, clock, range(51, 62), 0.1)
    assert clock.now < pace.deadline  # stopped with time to spare, not at the deadline
    assert pace.projected_end(61) == pytest.approx(clock.now + (939 + 20) * 0.1 + EVAL_FIXED_S)


def test_without_a_steady_pace_the_run_stops_once_the_deadline_has_passed():
    clock = FakeClock()
    pace = Pace(clock.now + 10, total_steps=1000, clock=clock)
    pace.start(0)
    assert not _run(pace, clock, range(1, 10), 1.0)
    assert _run(pace, clock, range(10, 12), 1.0)


def test_a_run_past_its_deadline_stops_saved_and_resumes_to_the_end(homes):
    cfg = build_config("smoke_deeppose", {"train.epochs": 3})
    clock = FakeClock(tick=1.0)
    result = train(cfg, homes / "late", progress=False, deadline=clock.now + 1, clock=clock)
    assert result["past_deadline"] and result["stopped_at_step"] > 0
    assert (homes / "late" / "checkpoint.pt").is_file()
    assert not (homes / "late" / "result.json").exists()
    done = train(cfg, homes / "late", resume=True, progress=False)
    whole = train(cfg, homes / "whole", progress=False)  # the same run, never stopped
    assert done["steps"] == whole["steps"] > result["stopped_at_step"]


def test_a_run_whose_steps_take_minutes_stops_within_one_step_of_the_deadline(homes):
    """Steps of minutes (ResNet-50 on a small CPU) and a deadline already near: the run
    stops at its first step past it, long before its losses are next read back."""
    import ocdlib.engine.trainer as trainer

    cfg = build_config("smoke_deeppose", {"train.epochs": 40, "data.synth.train": 48})
    clock = FakeClock(tick=0.0)
    steps = []

    class Minutes:  # every step moves the clock by three minutes
        def after_step(self, loop, settled):
            clock.now += 180.0
            steps.append(loop.step)
            return False

        def __getattr__(self, name):
            return lambda *a, **k: None

    hooks_of = trainer.Deadline
    try:
        trainer.Deadline = lambda deadline, clk: _with(hooks_of(deadline, clk), Minutes())
        result = train(cfg, homes / "slow", progress=False, deadline=clock.now + 200, clock=clock)
    finally:
        trainer.Deadline = hooks_of
    assert result["past_deadline"]
    assert result["stopped_at_step"] == 2 < trainer.SETTLE_STEPS  # 360 s > 200 s: one step past
    assert (homes / "slow" / "checkpoint.pt").is_file()


class _with:
    """Two hooks as one: the clock-moving hook runs first, then the deadline's."""

    def __init__(self, deadline, mover):
        self.deadline, self.mover = deadline, mover

    def after_step(self, loop, settled):
        self.mover.after_step(loop, settled)
        return self.deadline.after_step(loop, settled)

    def __getattr__(self, name):
        return getattr(self.deadline, name)


def test_the_whole_allocation_path_on_the_cpu_with_a_fake_clock(homes, monkeypatch):
    """Bare data folder, generation, pace, records, archive; then the --no-train rebuild
    of a notebook from the archive alone, on a machine without the runs."""
    from ocdlib.reproduce import reproduce

    lines = []
    clock = FakeClock(tick=1.0)  # every reading of the clock is a second
    out = homes / "out"
    summary = reproduce_within(
        PROFILES["smoke"],
        1.5,
        out,
        pictures=False,
        say=lambda *a, **k: lines.append(a[0]),
        clock=clock,
    )
    assert (homes / "data").is_dir()  # generated by the command itself
    key_rows = (DEEPPOSE, SIMPLEBASELINE, OCD_WARMUP)
    key = [run_cache.run_dir(config_for(e, PROFILES["smoke"], 0)).name for e in key_rows]
    assert summary["finished"][:3] == key  # the key rows first
    assert summary["wall_min"] <= 1.5  # the minutes hold, on the command's own clock
    whys = {item["why"] for item in summary["not_started"]}
    assert "no time left" in whys  # and it says what it left undone
    assert len(summary["finished"]) + len(summary["not_started"]) + len(
        summary["stopped_past_the_deadline"]
    ) == len(grid_configs(PROFILES["smoke"]))
    for name in summary["finished"]:
        result = json.loads((out / "runs" / name / "result.json").read_text())
        assert "metrics" in result and (out / "runs" / name / "log.csv.gz").is_file()
    assert f"| {key[0]} |" in (out / "timebox.md").read_text()
    assert json.loads((out / "timebox.json").read_text()) == summary

    # A machine without the runs: the archive unpacked into reports/smoke/, and the
    # notebook of the three key rows rebuilt from it without training.
    shutil.rmtree(homes / "runs")
    with tarfile.open(out / "records.tar.gz") as tar:
        tar.extractall(homes / "reports" / "smoke", filter="data")
    monkeypatch.setattr(run_cache, "train", lambda *a, **k: pytest.fail("must not train"))
    assert reproduce(PROFILES["smoke"], only=["02"], train_missing=False) == 0
    table = (homes / "reports" / "smoke" / "tables" / "02_ocd_ablation.md").read_text()
    assert "| OCD-DeepPose: distillation after a warm-up |" in table
    # It says plainly which of the notebook's rows it lacks, and the notebook wrote them
    # into the command's plan, from which PROVENANCE.md names them.
    assert "not trained yet, so left out" in table and "OCD: no distillation" in table
    provenance = (homes / "reports" / "smoke" / "PROVENANCE-only-02.md").read_text()
    left_out = next(ln for ln in provenance.splitlines() if "notebook 02 left out" in ln)
    assert "OCD: no distillation" in left_out and "RLE (seed 0)" in left_out


def test_the_allocation_script_runs_without_papermill_jupyter_or_an_installed_package(tmp_path):
    """The GPU machine has neither papermill nor jupyter, and pip may refuse the package
    there: scripts/gpu_allocation.sh runs the time box from a checkout alone."""
    checkout = tmp_path / "checkout"
    for part in ("ocdlib", "scripts"):
        shutil.copytree(REPO / part, checkout / part)
    blocker = tmp_path / "blocker" / "sitecustomize.py"
    blocker.parent.mkdir()
    blocker.write_text(
        "import sys\n"
        "class _Missing:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'papermill', 'nbformat', 'nbclient', 'jupyter',\n"
        "                                  'jupyter_client', 'ipykernel', 'nbval'}:\n"
        "            raise ImportError(f'{name} is not installed on this machine')\n"
        "sys.meta_path.insert(0, _Missing())\n"
    )
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PROFILE": "smoke",
        "PYTHONPATH": str(blocker.parent),
        "PATH": "/usr/bin:/bin",  # no nvidia-smi, no venv on the PATH
        **{f"OCDLIB_{n}": str(tmp_path / n.lower()) for n in ("DATA", "RUNS", "REPORTS")},
    }
    proc = subprocess.run(
        ["bash", str(checkout / "scripts" / "gpu_allocation.sh"), "0.6", str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"ocdlib from {checkout / 'ocdlib'}" in proc.stdout  # not the installed copy
    summary = json.loads((out / "timebox.json").read_text())
    assert summary["finished"], summary
    assert "runs finished" in (out / "command.log").read_text()
    with tarfile.open(out / "records.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith(f"{summary['finished'][0]}/result.json") for n in names)
    assert (out / "records.tar.gz").stat().st_size < 16 * 2**20
