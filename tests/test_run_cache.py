"""The run cache: a run's precision is part of its identity, and no finished run is orphaned."""

import json

import pytest
import torch

from ocdlib.configs import build_config
from ocdlib.engine.precision import resolve_precision, tag_of_record
from ocdlib.grid.catalogue import SIMPLEBASELINE, TCD_DEEPPOSE
from ocdlib.grid.gather import config_for
from ocdlib.profiles import NOTEBOOK_PROFILES as PROFILES
from ocdlib.runs import cache as run_cache


@pytest.fixture
def homes(tmp_path, monkeypatch):
    monkeypatch.setenv("OCDLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("OCDLIB_RUNS", str(tmp_path / "runs"))
    return tmp_path


def grant(monkeypatch, tag: str):
    monkeypatch.setattr(run_cache, "granted_precision", lambda cfg: tag)


def fake_finished(directory, cfg, precision: str) -> None:
    directory.mkdir(parents=True)
    record = {"config_hash": cfg.hash, "precision": precision, "metrics": {"AP": 0.5}}
    (directory / "result.json").write_text(json.dumps(record))


def test_the_run_folder_names_the_precision_this_machine_grants(homes, monkeypatch):
    cfg = build_config("smoke_deeppose")
    for tag in ("bf16", "fp32"):
        grant(monkeypatch, tag)
        assert run_cache.run_dir(cfg).name == f"{cfg.name}-{cfg.hash}-s0-{tag}"


def test_a_legacy_run_is_found_by_the_precision_its_record_names(homes, monkeypatch):
    cfg = build_config("smoke_deeppose")
    legacy = run_cache.legacy_dir(cfg)
    fake_finished(legacy, cfg, "bf16 autocast + channels_last")
    grant(monkeypatch, "bf16")
    assert run_cache.run_dir(cfg) == legacy and run_cache.is_finished(cfg)
    grant(monkeypatch, "fp32")
    assert run_cache.run_dir(cfg).name.endswith("-fp32") and not run_cache.is_finished(cfg)
    assert run_cache.other_precision_runs(cfg) == {"bf16": legacy}


def test_a_run_in_the_other_precision_is_not_reused_but_trained_anew(homes, monkeypatch, capsys):
    cfg = build_config("smoke_deeppose", {"train.epochs": 1})
    other = run_cache.legacy_dir(cfg).with_name(run_cache.legacy_dir(cfg).name + "-bf16")
    fake_finished(other, cfg, "bf16 autocast + channels_last")
    grant(monkeypatch, "fp32")
    trained = []
    monkeypatch.setattr(
        run_cache, "train", lambda cfg, d, **kw: trained.append(d) or {"config_hash": cfg.hash}
    )
    result = run_cache.get_run(cfg, progress=False)
    mine = run_cache.run_dir(cfg)
    assert trained == [mine] and mine.name.endswith("-fp32")
    assert result["run_dir"] == str(mine)
    said = capsys.readouterr().err
    assert "trained in bf16" in said and str(other) in said and str(mine) in said


def test_a_finished_run_is_read_back_not_trained(homes, monkeypatch):
    cfg = build_config("smoke_deeppose")
    grant(monkeypatch, "bf16")
    fake_finished(run_cache.run_dir(cfg), cfg, "bf16 autocast + channels_last")

    def boom(*a, **k):
        raise AssertionError("a finished run must be read back")

    monkeypatch.setattr(run_cache, "train", boom)
    assert run_cache.get_run(cfg, progress=False)["metrics"] == {"AP": 0.5}


def test_a_record_of_another_config_is_not_a_finished_run(homes, monkeypatch):
    cfg = build_config("smoke_deeppose")
    grant(monkeypatch, "fp32")
    fake_finished(run_cache.run_dir(cfg), build_config("smoke_deeppose", {"train.lr": 1.0}), "fp32")
    assert not run_cache.is_finished(cfg)


def test_a_tcd_students_hash_does_not_depend_on_its_teachers_precision_suffix(homes, monkeypatch):
    hashes = set()
    for tag in ("bf16", "fp32"):
        grant(monkeypatch, tag)
        cfg = config_for(TCD_DEEPPOSE, PROFILES["smoke"], 0)
        assert cfg.loss.teacher_run.endswith(f"-{tag}")
        hashes.add(cfg.hash)
    assert len(hashes) == 1
    teacher = config_for(SIMPLEBASELINE, PROFILES["smoke"], 0)
    legacy = run_cache.legacy_dir(teacher)
    fake_finished(legacy, teacher, "fp32")
    assert config_for(TCD_DEEPPOSE, PROFILES["smoke"], 0).loss.teacher_run == str(legacy)
    assert config_for(TCD_DEEPPOSE, PROFILES["smoke"], 0).hash in hashes


def test_precision_tags_of_records_old_and_new():
    assert tag_of_record({"precision_tag": "fp32", "precision": "bf16 autocast"}) == "fp32"
    assert tag_of_record({"precision": "bf16 autocast + channels_last"}) == "bf16"
    assert tag_of_record({"precision": "fp32 + channels_last"}) == "fp32"
    assert tag_of_record({"precision": "fp32"}) == "fp32"


def test_amp_off_is_fp32_in_the_default_memory_format_on_every_device():
    for device in ("cpu", "cuda"):
        p = resolve_precision(False, torch.device(device))
        assert (p.autocast, p.channels_last, p.tag) == (False, False, "fp32")
    assert resolve_precision(True, torch.device("cuda")).tag == "bf16"


def test_a_real_run_records_its_precision_and_an_ocd_run_scores_its_heatmap_head_along(
    homes,
):
    cfg = build_config("smoke_ocd", {"train.epochs": 2, "train.eval_every": 1})
    result = run_cache.get_run(cfg, progress=False)
    directory = run_cache.run_dir(cfg)
    assert result["precision_tag"] == run_cache.granted_precision(cfg)
    assert directory.name.endswith(f"-{result['precision_tag']}")
    evals = json.loads((directory / "evals.json").read_text())
    assert [e["epoch"] for e in evals] == [1, 2]
    assert all("AP" in e["hm"] for e in evals)


def test_gather_without_training_reads_the_finished_runs_and_names_the_missing(
    homes, monkeypatch, capsys
):
    from ocdlib.grid.catalogue import DEEPPOSE, RLE, gathered_rows
    from ocdlib.grid.gather import gather

    def boom(*a, **k):
        raise AssertionError("gather(train_missing=False) must not train")

    monkeypatch.setattr(run_cache, "train", boom)
    cfg = config_for(DEEPPOSE, PROFILES["smoke"], 0)
    fake_finished(run_cache.run_dir(cfg), cfg, "fp32")
    results = gather([DEEPPOSE, RLE], PROFILES["smoke"])  # train_missing False by default
    assert [r["experiment"] for r in results] == [DEEPPOSE] == gathered_rows(results)
    assert results[0]["metrics"] == {"AP": 0.5}
    assert "RLE: seeds [0] not trained yet" in capsys.readouterr().out


def test_a_profile_name_where_its_record_belongs_gets_the_fix():
    from ocdlib.errors import ConfigError
    from ocdlib.grid.catalogue import DEEPPOSE
    from ocdlib.grid.gather import gather
    from ocdlib.report.notebook import NotebookReport

    with pytest.raises(ConfigError, match=r"notebook_profile\('smoke'\)"):
        gather([DEEPPOSE], "smoke")
    with pytest.raises(ConfigError, match=r"notebook_profile\('cpu'\)"):
        NotebookReport("01_baselines", "cpu")
