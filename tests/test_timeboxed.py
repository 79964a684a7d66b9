"""The time-boxed reproduction: key rows first, only runs that finish, records brought back."""

import json
import shutil
import tarfile
import time

import pytest

from ocdlib import run_cache
from ocdlib.engine.trainer import train
from ocdlib.experiments import DEEPPOSE, OCD_WARMUP, SIMPLEBASELINE, TCD_DEEPPOSE, gather
from ocdlib.timeboxed import reproduce_within, timeboxed_order


@pytest.fixture
def homes(tmp_path, monkeypatch):
    for name in ("DATA", "RUNS", "REPORTS"):
        monkeypatch.setenv(f"OCDLIB_{name}", str(tmp_path / name.lower()))
    return tmp_path


def test_the_order_puts_the_key_rows_first_seed_by_seed_and_teachers_before_students():
    order = [(e, c.train.seed) for e, c in timeboxed_order("gpu_synth")]
    assert order[:6] == [
        (DEEPPOSE, 0), (SIMPLEBASELINE, 0), (OCD_WARMUP, 0),
        (DEEPPOSE, 1), (SIMPLEBASELINE, 1), (OCD_WARMUP, 1),
    ]  # fmt: skip
    assert order.index((TCD_DEEPPOSE, 0)) < len(order) // 2
    assert len(order) == len(set(order))


def test_a_run_that_cannot_finish_by_the_deadline_stops_after_an_epoch(homes):
    from ocdlib.configs import build_config

    cfg = build_config("smoke_deeppose", {"train.epochs": 50})
    result = train(cfg, homes / "late", progress=False, deadline=time.time() + 1)
    assert result == {"stopped_at_epoch": 1, "past_deadline": True}
    assert (homes / "late" / "checkpoint.pt").is_file()
    assert not (homes / "late" / "result.json").exists()


def test_one_minute_brings_back_the_records_of_the_runs_it_finished(homes, monkeypatch):
    out = homes / "out"
    summary = reproduce_within("smoke", 1.0, out, pictures=False, say=lambda *a, **k: None)
    assert summary["finished"], summary
    assert summary["wall_min"] < 1.5
    first = run_cache.run_dir(run_cache_cfg(DEEPPOSE)).name
    assert summary["finished"][0] == first  # the key rows come first
    for name in summary["finished"]:
        result = json.loads((out / "runs" / name / "result.json").read_text())
        assert "metrics" in result and (out / "runs" / name / "log.csv.gz").is_file()
    assert "| " + first in (out / "timebox.md").read_text()
    # On a machine without the runs: unpack the records into reports/<profile>/ and
    # rebuild from them without training.
    with tarfile.open(out / "records.tar.gz") as tar:
        tar.extractall(homes / "reports" / "smoke", filter="data")
    shutil.rmtree(homes / "runs")
    monkeypatch.setattr(run_cache, "train", lambda *a, **k: pytest.fail("must not train"))
    (got,) = gather([DEEPPOSE], "smoke", train_missing=False)
    assert got["run_dir"].endswith(first) and "reports" in got["run_dir"]


def run_cache_cfg(exp):
    from ocdlib.experiments import config_for

    return config_for(exp, "smoke", 0)
