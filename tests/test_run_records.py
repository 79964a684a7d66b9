"""Run records: a finished run's results outlive its run cache, and a stale one is refused."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from ocdlib.grid.catalogue import DEEPPOSE
from ocdlib.grid.gather import config_for, gather
from ocdlib.profiles import NOTEBOOK_PROFILES as PROFILES
from ocdlib.report.figures import read_log
from ocdlib.report.tables import learning_curve_frame, results_frame, summary_frame
from ocdlib.reproduce import write_profile_records
from ocdlib.runs import cache as run_cache
from ocdlib.runs import records as run_records


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    mp = pytest.MonkeyPatch()
    for name in ("DATA", "RUNS", "REPORTS"):
        mp.setenv(f"OCDLIB_{name}", str(root / name.lower()))
    cfg = config_for(DEEPPOSE, PROFILES["smoke"], 0)
    result = run_cache.get_run(cfg, progress=False)
    yield root, cfg, result
    mp.undo()


def test_a_record_reads_back_as_its_run_without_the_run_cache(finished, monkeypatch):
    root, cfg, result = finished
    written = write_profile_records(PROFILES["smoke"], out=lambda *a: None)
    record = run_cache.run_dir(cfg).name
    assert record in {d.name for d in written}
    folder = root / "reports" / "smoke" / "runs" / record
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "evals.json", "log.csv.gz", "pictures.json", "result.json",
    ]  # fmt: skip
    assert run_records.find_record(cfg) == folder
    # Another profile sharing the run (cpu_full shares cpu's) writes no second copy.
    other = root / "other"
    assert write_profile_records(PROFILES["smoke"], other, out=lambda *a: None) == []
    # The run cache loses the run (another machine): gather without training reads the
    # record, and tables and learning curves come out as from the run itself.
    aside = root / "aside"
    shutil.move(run_cache.run_dir(cfg), aside)
    monkeypatch.setattr(run_cache, "train", lambda *a, **k: pytest.fail("must not train"))
    try:
        (got,) = gather([DEEPPOSE], PROFILES["smoke"], train_missing=False)
    finally:
        shutil.move(aside, run_cache.run_dir(cfg))
    assert got["metrics"] == result["metrics"] and got["run_dir"] == str(folder)
    summary = summary_frame(results_frame([got]))
    curves = learning_curve_frame(summary)
    assert len(curves) == len(json.loads((folder / "evals.json").read_text()))
    assert len(read_log(folder)) == result["steps"]


def test_a_records_keypoints_draw_its_pictures_as_its_weights_do(finished):
    from ocdlib.report import pictures

    root, cfg, _ = finished
    run = run_cache.run_dir(cfg)
    folder = run_records.write_record(run, root / "pics" / "runs")
    ids, people = run_records.recorded_predictions(folder, "val")
    assert len(ids) == run_records.PICTURE_IMAGES and people
    # The record's keypoints are the weights' own, to the stored rounding.
    model_cfg = pictures.load_run_model(run, student=True)
    paths = pictures.resolve_data(cfg.data, progress=False)
    _, live = pictures.predict_people(*model_cfg, paths.val_ann, paths.val_images, ids)
    for image_id, kps in live.items():
        np.testing.assert_allclose(people[image_id], kps, atol=0.01)
    assert pictures.keypoint_comparison({"from weights": run}, n_images=2) is not None
    fig = pictures.keypoint_comparison({"from the record": folder}, n_images=2)
    assert fig is not None and len(fig.axes) == 2 * 2  # 2 images x (ground truth, record)
    assert pictures.coco_sample_comparison({"from the record": folder}, n_images=2) is not None


def test_a_record_is_timed_on_the_architecture_its_weights_had(finished):
    from ocdlib.engine.run_dir import has_weights, load_run_model
    from ocdlib.report.tables import add_latency

    root, cfg, _ = finished
    run = run_cache.run_dir(cfg)
    folder = run_records.write_record(run, root / "timed" / "runs")
    assert not has_weights(folder)
    trained, _ = load_run_model(run, student=True)
    rebuilt, _ = load_run_model(folder, student=True, weights=False)
    shapes = {k: v.shape for k, v in trained.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    # the summary's rows name their runs' folders; a record's row is timed, not left empty
    summary = pd.DataFrame({"label": ["DeepPose"], "run_dirs": [[folder]]})
    assert add_latency(summary, repeats=2)["latency_ms"].iloc[0] > 0


def test_a_stale_record_is_refused_naming_both_hashes(finished):
    root, cfg, _ = finished
    folder = run_records.write_record(run_cache.run_dir(cfg), root / "stale" / "runs")
    config = json.loads((folder / "config.json").read_text())
    config["train"]["lr"] *= 2
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(run_records.StaleRecordError) as err:
        run_records.find_record(cfg, roots=[root / "stale" / "runs"])
    assert cfg.hash in str(err.value) and str(folder) in str(err.value)


def test_a_truncated_record_file_is_refused_naming_it(finished):
    root, cfg, _ = finished
    folder = run_records.write_record(run_cache.run_dir(cfg), root / "cut" / "runs")
    text = (folder / "result.json").read_text()
    (folder / "result.json").write_text(text[: len(text) // 2])
    found = run_records.find_record(cfg, roots=[root / "cut" / "runs"])
    with pytest.raises(run_records.CorruptRecordError, match="git checkout") as err:
        run_records.read_record(found)
    assert str(folder / "result.json") in str(err.value)
    (folder / "config.json").write_text("{")
    with pytest.raises(run_records.CorruptRecordError, match="config.json"):
        run_records.find_record(cfg, roots=[root / "cut" / "runs"])


def test_only_a_finished_run_has_a_record(tmp_path):
    with pytest.raises(FileNotFoundError, match="only a finished run"):
        run_records.write_record(tmp_path, tmp_path / "out")


def test_a_notebook_rebuilds_its_reports_from_records_alone(tmp_path, monkeypatch):
    """What the GPU path relies on: runs trained elsewhere, only their records here."""
    from ocdlib.reproduce import reproduce

    for name in ("DATA", "RUNS", "REPORTS"):
        monkeypatch.setenv(f"OCDLIB_{name}", str(tmp_path / name.lower()))
    assert reproduce(PROFILES["smoke"], ["01"], jobs=2) == 0
    tables = tmp_path / "reports" / "smoke" / "tables"
    trained = (tables / "01_baselines.csv").read_text()
    write_profile_records(PROFILES["smoke"], out=lambda *a: None)
    shutil.rmtree(tmp_path / "runs")
    shutil.rmtree(tables)
    assert reproduce(PROFILES["smoke"], ["01"], train_missing=False) == 0
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").glob("smoke_*"))
    rebuilt = (tables / "01_baselines.csv").read_text()
    assert rebuilt.splitlines()[0] == trained.splitlines()[0]
    assert len(rebuilt.splitlines()) == len(trained.splitlines())

    # Part of the grid recorded: what a first GPU allocation leaves. Each notebook
    # rebuilds from the rows it has and names the ones it lacks; one with none of its
    # runs (05) keeps its earlier reports and the provenance says why; nothing is trained.
    records = tmp_path / "reports" / "smoke" / "runs"
    for rle in records.glob("smoke_rle-*"):
        shutil.rmtree(rle)
    earlier = tables / "05_wholebody.md"
    earlier.write_text("from an earlier, fuller reproduction\n")
    assert reproduce(PROFILES["smoke"], ["01", "02", "05"], train_missing=False) == 0
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").glob("smoke_*"))
    partial = (tables / "01_baselines.csv").read_text()
    assert "DeepPose" in partial and "SimpleBaseline" in partial and "RLE" not in partial
    ablation = (tables / "02_ocd_ablation.md").read_text()
    assert "| DeepPose |" in ablation and "not trained yet, so left out" in ablation
    assert "OCD-DeepPose (seed 0)" in ablation
    assert earlier.read_text() == "from an earlier, fuller reproduction\n"
    provenance = (tmp_path / "reports" / "smoke" / "PROVENANCE-only-01-02-05.md").read_text()
    assert "02_ocd.ipynb: not rebuilt" not in provenance
    assert "05_wholebody.ipynb: not rebuilt (none of its" in provenance


def test_a_profiles_records_take_only_the_probe_tables_of_its_own_grid(finished, tmp_path):
    root, cfg, _ = finished
    probes = root / "runs" / "probes"
    probes.mkdir(parents=True, exist_ok=True)
    ours = probes / f"{run_cache.run_dir(cfg).name}_x_stops1_b8.csv"
    theirs = probes / "cpu_tcd-aefa78c8af-s0-bf16_cpu_ocd-6920ed8b63-s0-bf16_stops1_b8.csv"
    for table in (ours, theirs):
        table.write_text("run,epoch,source\n")
    try:
        write_profile_records(PROFILES["smoke"], tmp_path / "records", out=lambda *a: None)
    finally:
        ours.unlink()
        theirs.unlink()
    assert sorted(p.name for p in (tmp_path / "records" / "probes").iterdir()) == [ours.name]
