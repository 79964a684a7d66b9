"""The estimate before a reproduction, its progress line, and `reproduce --minutes`."""

import json

import pytest
from conftest import FakeClock

from ocdlib.grid.gather import grid_configs
from ocdlib.grid.plan import run_order
from ocdlib.profiles import NOTEBOOK_PROFILES as PROFILES
from ocdlib.reproduce import estimate
from ocdlib.reproduce.estimate import GridEstimate, RunEstimate, estimate_grid, schedule
from ocdlib.reproduce.progress import Progress


def test_the_schedule_fills_the_free_slot_and_waits_for_teachers():
    assert schedule([10, 10, 10, 10], jobs=2) == 20
    assert schedule([10, 1, 1], jobs=2) == 10
    assert schedule([10, 1, 1], jobs=1) == 12
    # run 2 learns from run 0: it cannot start before 10 although a slot is free at 1.
    assert schedule([10, 1, 5], jobs=2, teacher=[None, None, 0]) == 15


def _grid(seconds: list[float], jobs: int) -> GridEstimate:
    runs = [RunEstimate(f"r{i}", s, "measured") for i, s in enumerate(seconds)]
    return GridEstimate(runs, jobs, notebooks=0, precision="bf16", threads=1, measured_s=0.0)


def test_the_progress_line_counts_side_by_side_runs_and_rescales_the_eta():
    clock = FakeClock()
    lines = []
    progress = Progress(
        _grid([100, 100, 100, 100], jobs=2), say=lambda line, **_: lines.append(line), clock=clock
    )
    assert progress.eta_s() == 200
    progress.started("r0")
    progress.started("r1")
    clock.now += 150  # both took 1.5x their estimate
    progress.ended("r0")
    progress.ended("r1")
    assert lines[-1].startswith("[2/4 runs] 2.5 min elapsed, about 2.5 min left")
    assert progress.eta_s() == pytest.approx(150)  # two more side by side, at 1.5x
    progress.started("r2")
    clock.now += 60
    # r2 has 90 s left in its slot; r3, not started, takes 150 s in the other one.
    assert progress.eta_s() == pytest.approx(150)
    clock.now += 100
    progress.ended("r2")  # on its (scaled) time: 160 s against 150
    assert progress.eta_s() == pytest.approx(100 * (150 + 150 + 160) / 300)
    progress.limit_s = 200  # a time box: it ends 200 s after the start at the latest
    assert progress.eta_s() == 0.0  # 310 s have gone by


def test_the_estimate_measures_within_its_budget_and_uses_finished_runs(homes):
    todo = [c for _, c in run_order(grid_configs(PROFILES["smoke"], ["01"]), PROFILES["smoke"])]
    est = estimate_grid(todo, jobs=2, notebooks=1, budget_s=30)
    assert est.measured_s < 30
    assert len(est.runs) == len(todo) and all(r.seconds > 0 for r in est.runs)
    assert set(est.step_s) == {c.name for c in todo}
    assert est.wall_s == pytest.approx(est.training_s + estimate.NOTEBOOK_S)
    # Another seed of the same row finished here: its time stands for this one's.
    finished = {estimate.same_run_key(todo[0]): 123.0}
    again = estimate_grid(todo, jobs=2, finished=finished, budget_s=30)
    assert again.runs[0].seconds == 123.0 and again.runs[0].source == "finished run"


def test_reproduce_prints_the_estimate_and_a_progress_line_and_keeps_its_minutes(homes, capsys):
    """`make reproduce MINUTES=...` on the smoke profile with a fake clock: the key rows
    first, the rest left out and named, the notebook rebuilt from what finished."""
    from ocdlib.reproduce import reproduce

    clock = FakeClock(tick=1.0)
    assert reproduce(PROFILES["smoke"], only=["02"], jobs=1, minutes=2.5, clock=clock) == 0
    out = capsys.readouterr().out
    assert "runs to train, 0 found finished; this machine trains in" in out
    assert "expected wall time: about" in out
    assert "[1/15 runs]" in out and "left (ETA" in out
    prov = (homes / "reports" / "smoke" / "PROVENANCE-only-02.md").read_text()
    assert "- time box: " in prov and "not trained in the time box: " in prov
    assert "not rebuilt" not in prov
    table = (homes / "reports" / "smoke" / "tables" / "02_ocd_ablation.md").read_text()
    assert "| DeepPose |" in table
    assert "not trained yet, so left out" in table


def test_the_executor_expects_what_ran_here_then_the_estimate_then_a_record(homes, tmp_path):
    from ocdlib.grid.plan import build_plan
    from ocdlib.reproduce.estimate import RunTimes

    plan = build_plan(PROFILES["smoke"], None, "reproduce", train=True)
    from ocdlib.reproduce.estimate import _schedule

    run = plan.runs[0]
    # another run of the same data, model and schedule (its length, most of all)
    same = next(r for r in plan.runs[1:] if _schedule(r.config) == _schedule(run.config))
    longer = next(r for r in plan.runs if r.config.train.epochs > run.config.train.epochs)
    times = RunTimes([tmp_path / "records"])
    assert times.minutes(run) is None  # nothing says
    record = tmp_path / "records" / f"{run.config.name}-0000000000-s9-fp32"
    record.mkdir(parents=True)
    (record / "config.json").write_text(json.dumps(run.config.to_dict()))
    (record / "result.json").write_text(json.dumps({"train_time_s": 600.0}))
    assert times.minutes(run) == pytest.approx(11.0)  # its training time, and a tenth
    run.estimate_s = 120.0
    assert times.minutes(run) == pytest.approx(2.0)  # the command's estimate first
    times.took(longer, 9.0)  # another schedule: not this run's
    times.took(same, 5.0)
    times.took(same, 4.0)
    assert times.minutes(run) == pytest.approx(5.0)  # the longest of its schedule here


def test_a_resumed_run_counts_only_what_was_left_of_its_estimate(tmp_path):
    from ocdlib.engine.run_dir import load_run_config
    from ocdlib.reproduce.progress import done_share

    clock = FakeClock()
    lines = []
    progress = Progress(
        _grid([100, 100], jobs=1), say=lambda line, **_: lines.append(line), clock=clock
    )
    folder = tmp_path / "r0"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"train": {"epochs": 2}}))
    total = estimate.run_steps(load_run_config(folder))
    (folder / "log.csv").write_text(f"step,epoch,loss,time\n{total // 2},1,0.5,3.0\n")
    assert done_share(folder) == pytest.approx((total // 2) / total)
    assert done_share(tmp_path / "new") == 0.0  # not started yet: nothing done
    progress.started("r0", folder)
    clock.now += 30  # half of it was left, estimated 50 s: it ran at 0.6x the estimate
    progress.ended("r0")
    assert progress.scale() == pytest.approx(30 / (100 * (1 - (total // 2) / total)))
    assert progress.eta_s() == pytest.approx(100 * progress.scale())  # r1, not started
