"""The command line on a smoke run: eval on the real COCO sample, export, predict, user errors."""

from __future__ import annotations

import json
import os

import pytest

from ocdlib.__main__ import main
from ocdlib.configs import build_config
from ocdlib.engine.trainer import train


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
