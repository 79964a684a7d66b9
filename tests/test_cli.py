"""The command line on a smoke run: eval on the real COCO sample, export, predict, user errors."""

from __future__ import annotations

import json
import os

import pytest

from ocdlib.__main__ import main
from ocdlib.configs import build_config
from ocdlib.engine.run_dir import command_line
from ocdlib.engine.trainer import train
from ocdlib.profiles import NOTEBOOK_PROFILES as PROFILES
from ocdlib.reproduce import Progress


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    old = os.environ.get("OCDLIB_DATA")
    os.environ["OCDLIB_DATA"] = str(root / "data")
    cfg = build_config("smoke_ocd", {"train.epochs": 1})
    train(cfg, root / "run", progress=False)
    yield root / "run"
    if old is None:
        os.environ.pop("OCDLIB_DATA", None)
    else:
        os.environ["OCDLIB_DATA"] = old


def test_eval_on_the_real_coco_sample_with_detections(smoke_run, coco_sample_dir, tmp_path, capsys):
    rc = main(
        [
            "eval",
            "--run", str(smoke_run),
            "--ann", str(coco_sample_dir / "test_coco.json"),
            "--images", str(coco_sample_dir),
            "--boxes", str(coco_sample_dir / "test_coco_det_AP_H_56.json"),
            "--out", str(tmp_path / "eval"),
        ]
    )  # fmt: skip
    assert rc == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["AP"] <= 1.0
    preds = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    # every surviving prediction comes from a detection box on one of the 4 images
    assert preds and {p["image_id"] for p in preds} <= {785, 40083, 196141, 197388}
    assert all(len(p["keypoints"]) == 17 * 3 for p in preds)


def test_eval_scores_the_auxiliary_heatmap_head(smoke_run, coco_sample_dir, tmp_path, capsys):
    sample = ["--ann", str(coco_sample_dir / "test_coco.json"), "--images", str(coco_sample_dir)]
    for head in ("reg", "hm"):
        out = tmp_path / head
        assert (
            main(["eval", "--run", str(smoke_run), *sample, "--head", head, "--out", str(out)]) == 0
        )
    scores = {
        head: [p["score"] for p in json.loads((tmp_path / head / "predictions.json").read_text())]
        for head in ("reg", "hm")
    }
    # The regression head has no confidence (score 1 for every keypoint); the heatmap
    # head's scores are its peak values, so they differ: the head asked for was scored.
    assert scores["reg"] and scores["hm"] and scores["reg"] != scores["hm"]
    capsys.readouterr()
    assert main(["eval", "--run", str(smoke_run), *sample, "--head", "small_hm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "has the heads" in err and "Traceback" not in err


def test_eval_of_another_head_never_writes_over_the_deployed_heads_scores(
    smoke_run, coco_sample_dir
):
    sample = ["--ann", str(coco_sample_dir / "test_coco.json"), "--images", str(coco_sample_dir)]
    assert main(["eval", "--run", str(smoke_run), *sample, "--head", "hm"]) == 0
    assert (smoke_run / "eval_hm" / "metrics.json").is_file()
    assert not (smoke_run / "eval").exists()  # the deployed head's folder
    assert main(["eval", "--run", str(smoke_run), *sample, "--head", "reg"]) == 0
    assert (smoke_run / "eval" / "metrics.json").is_file()  # reg is the deployed head
    assert not (smoke_run / "eval_reg").exists()


def test_export_matches_pytorch_in_onnxruntime(smoke_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    assert main(["export", "--run", str(smoke_run), "--out", str(tmp_path / "s.onnx")]) == 0
    assert (tmp_path / "s.onnx").stat().st_size > 1000
    assert "onnxruntime matches PyTorch" in capsys.readouterr().out


def test_predict_draws_an_image(smoke_run, coco_sample_dir, tmp_path):
    out = tmp_path / "pose.png"
    rc = main(
        [
            "predict",
            "--run", str(smoke_run),
            "--image", str(coco_sample_dir / "000000000785.jpg"),
            "--boxes", str(coco_sample_dir / "test_coco_det_AP_H_56.json"),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert rc == 0 and out.stat().st_size > 10_000


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "--config", "cpu_magic"], "unknown preset"),
        (["train", "--config", "smoke", "--set", "train.lrr=1"], "no field 'lrr'"),
        (["eval", "--run", "/nonexistent/run"], "is not a run directory"),
    ],
)
def test_user_errors_are_one_line_with_the_fix(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err


def test_resume_with_another_config_is_refused(smoke_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(smoke_run, run)
    rc = main(["train", "--config", "smoke_ocd", "--set", "train.lr=0.5", "--out", str(run),
               "--resume", "--no-progress"])  # fmt: skip
    assert rc == 2
    assert "written by config" in capsys.readouterr().err
    # the refused run is left as it was
    assert (run / "config.json").read_text() == (smoke_run / "config.json").read_text()


def _fake_run(runs, name, epochs=3):
    d = runs / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"train": {"epochs": epochs}}))
    return d


def test_progress_eta_holds_across_a_resume_mid_epoch(tmp_path):
    # 4 steps an epoch at 600 s a step; resumed at step 6, so epoch 2's `time` covers only
    # its steps 7 and 8 (1200 s), not a whole epoch. 7 steps are left: about 70 min.
    run = _fake_run(tmp_path / "runs", "cpu_ocd-cccc-s0", epochs=4)
    first = "".join(f"{s},1,0.1,1,1,{600.0 * s}\n" for s in range(1, 5))
    (run / "log.csv").write_text(
        "step,epoch,lr,reg,total,time\n" + first + "7,2,0.1,1,1,600.0\n8,2,0.1,1,1,1200.0\n"
        "9,3,0.1,1,1,600.0\n"
    )
    progress = Progress(say=lambda line, **_: None, total=1)
    progress.started("cpu_ocd-cccc-s0", run, "OCD-DeepPose, seed 0")
    assert progress.poll() == ["    cpu_ocd-cccc-s0: epoch 3/4, about 70 min of training left"]


def test_progress_says_each_runs_start_epochs_and_end(tmp_path):
    runs = tmp_path / "runs"
    lines = []
    progress = Progress(say=lambda line, **_: lines.append(line), total=2)
    assert progress.poll() == []  # nothing in progress
    new = _fake_run(runs, "cpu_ocd-bbbb-s0")
    progress.started("cpu_ocd-bbbb-s0", new, "OCD-DeepPose, seed 0")
    assert lines == ["start cpu_ocd-bbbb-s0 (OCD-DeepPose, seed 0)"]
    assert progress.poll() == ["    cpu_ocd-bbbb-s0: training, 3 epochs"]
    (new / "log.csv").write_text(
        "step,epoch,lr,reg,total,time\n1,1,0.1,1,1,60.0\n2,1,0.1,1,1,120.0\n3,2,0.1,1,1,55.0\n4,"
    )
    # a half-written line is skipped; 60 s a step (steps 1 to 2), 2 steps an epoch, so the
    # 3 steps left take about 3 min
    assert progress.poll() == ["    cpu_ocd-bbbb-s0: epoch 2/3, about 3 min of training left"]
    assert progress.poll() == []  # nothing new
    (new / "result.json").write_text("{not json")
    (new / "config.json").write_text("{")
    assert progress.poll() == []  # files being written are skipped, never raised
    (new / "result.json").write_text(json.dumps({"metrics": {"AP": 0.0286}}))
    assert progress.poll() == []  # a finished run is said once, by its end
    status = progress.ended("cpu_ocd-bbbb-s0", "finished cpu_ocd-bbbb-s0: AP 2.9")
    assert lines[-2:] == ["finished cpu_ocd-bbbb-s0: AP 2.9", status]
    assert status.startswith("[1/2 runs] ") and "ETA" not in status  # no estimate: no ETA
    assert progress.poll() == []  # no longer polled
    assert len(lines) == 5


def test_runs_record_the_reproduce_command_inside_a_notebook(homes, tmp_path):
    from pathlib import Path

    from ocdlib.grid.catalogue import DEEPPOSE
    from ocdlib.grid.plan import build_plan
    from ocdlib.report.notebook import NotebookReport

    # The command's plan.json is what a notebook under reproduce gets (papermill's `plan`).
    command = "python -m ocdlib reproduce --profile smoke --only 01"
    plan = build_plan(PROFILES["smoke"], None, command, train=True).save(tmp_path / "plan.json")
    rep = NotebookReport("01_baselines", PROFILES["smoke"], tmp_path / "reports", plan=plan)
    assert rep.train_missing and rep.command == command
    result = rep.gather(DEEPPOSE)[0]
    assert json.loads((Path(result["run_dir"]) / "result.json").read_text())["command"] == command
    assert command_line() != command


def test_provenance_sums_the_grids_training_time(tmp_path, monkeypatch):
    from ocdlib.grid.catalogue import by_label
    from ocdlib.grid.gather import grid_configs, run_dirs
    from ocdlib.grid.plan import build_plan
    from ocdlib.report.provenance import grid_training_time

    monkeypatch.setenv("OCDLIB_RUNS", str(tmp_path / "runs"))
    # Counted over the runs that reproduce trains: rows the profile leaves out are not.
    n = len(grid_configs(PROFILES["smoke"]))
    plan = build_plan(PROFILES["smoke"], None, "reproduce", train=False)
    assert len(plan.runs) == n
    empty = grid_training_time(plan)
    assert empty.startswith(
        f"training time of the grid's runs, from their own records: 0 min for 0 of the {n} runs"
    )
    run = run_dirs(by_label("DeepPose"), PROFILES["smoke"])[0]
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"train_time_s": 600.0}))
    assert f": 10 min for 1 of the {n} runs of the grid" in grid_training_time(plan)


def test_a_bug_in_the_kit_keeps_its_traceback(monkeypatch):
    """Only the kit's own errors become one line: a KeyError from a bug is not swallowed."""

    def bug(*args, **kwargs):
        return {}["missing"]

    monkeypatch.setattr("ocdlib.configs.build_config", bug)
    with pytest.raises(KeyError):
        main(["train", "--config", "smoke_deeppose", "--out", "/tmp/never"])


def test_an_unknown_profile_or_notebook_is_one_line(capsys):
    assert main(["reproduce", "--profile", "cpu", "--only", "99"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "99" in err and len(err.strip().splitlines()) == 1


def test_a_record_keeps_the_heatmap_head_inside_scored_while_the_weights_are_here(
    smoke_run, tmp_path
):
    import shutil

    from ocdlib.runs.records import write_record

    run = tmp_path / smoke_run.name
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("eval_*"))
    record = write_record(run, tmp_path / "records")
    scores = json.loads((record / "eval_hm" / "metrics.json").read_text())
    assert scores == json.loads((run / "eval_hm" / "metrics.json").read_text())
    assert "AP" in scores
