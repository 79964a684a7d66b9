"""The COCO path: the root layout the coco_* presets read and its check (`data check`)."""

from __future__ import annotations

import json

import pytest

from ocdlib.__main__ import main
from ocdlib.data.coco_root import check_root, coco_layout
from ocdlib.models.backbones import imagenet_weights_file

DET = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"


def test_layout_is_read_off_the_presets():
    layout = coco_layout()
    assert {(s.ann, s.images) for s in layout.splits} == {
        ("annotations/person_keypoints_train2017.json", "train2017"),
        ("annotations/person_keypoints_val2017.json", "val2017"),
        ("annotations/coco_wholebody_train_v1.0.json", "train2017"),
        ("annotations/coco_wholebody_val_v1.0.json", "val2017"),
    }
    assert layout.det_file == DET
    assert layout.det_split.ann == "annotations/person_keypoints_val2017.json"
    body = next(s for s in layout.splits if s.ann.endswith("keypoints_train2017.json"))
    assert body.profiles == ("coco_r50", "coco_r101", "coco_r152") and not body.wholebody


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache (TORCH_HOME), so that the check does not read the user's."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


@pytest.fixture
def imagenet_files(torch_home):
    """Stand-ins for torchvision's ImageNet files of the coco presets' backbones."""
    paths = [imagenet_weights_file(b) for b, _ in coco_layout().imagenet]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")
    return paths


def test_data_check_passes_on_a_complete_root(coco_root, imagenet_files, capsys):
    assert main(["data", "check", "--root", str(coco_root), "--wholebody"]) == 0
    out = capsys.readouterr().out
    assert "MISS" not in out
    assert "4 images, 14 person annotations (12 with keypoints)" in out
    assert "118 person boxes on 4 images" in out
    assert f"--set eval.det_file={coco_root / DET}" in out


def test_data_check_names_what_is_missing_and_the_fix(coco_root, imagenet_files, capsys):
    (coco_root / DET).unlink()
    (coco_root / "val2017" / "000000040083.jpg").unlink()
    (coco_root / "annotations" / "coco_wholebody_val_v1.0.json").unlink()
    assert main(["data", "check", "--root", str(coco_root)]) == 1
    out = capsys.readouterr().out
    assert f"MISS {DET}: person detection file not found" in out
    assert "deep-high-resolution-net.pytorch" in out and str(coco_root / DET) in out
    assert "MISS val2017: 1 of 4 images named in" in out and "000000040083.jpg" in out
    # whole-body files only matter with --wholebody
    assert "skip annotations/coco_wholebody_val_v1.0.json" in out
    assert main(["data", "check", "--root", str(coco_root), "--wholebody"]) == 1
    assert "MISS annotations/coco_wholebody_val_v1.0.json" in capsys.readouterr().out


def test_data_check_rejects_an_image_that_does_not_decode_and_bad_json(coco_root, torch_home):
    bad = coco_root / "train2017" / "000000000785.jpg"
    bad.unlink()
    bad.write_bytes(b"not a jpeg")
    (coco_root / "annotations" / "person_keypoints_val2017.json").write_text("{")
    report = check_root(coco_root)
    problems = {f.path: f.text for f in report.missing}
    assert "cannot decode image" in problems["train2017"]
    assert "does not load as JSON" in problems["annotations/person_keypoints_val2017.json"]
    det = [f for f in report.findings if f.path == DET]
    assert det[0].ok  # the detections alone are fine
    json.loads((coco_root / DET).read_text())


def test_data_check_names_missing_imagenet_weights_and_how_to_fetch_them(
    coco_root, torch_home, capsys
):
    layout = coco_layout()
    assert dict(layout.imagenet) == {
        "resnet50": ("coco_r50", "coco_wholebody_r50"),
        "resnet101": ("coco_r101",),
        "resnet152": ("coco_r152",),
    }
    assert main(["data", "check", "--root", str(coco_root)]) == 1
    out = capsys.readouterr().out
    path = imagenet_weights_file("resnet50")
    assert f"MISS {path}: ImageNet weights of resnet50 (read by coco_r50" in out
    assert str(torch_home / "hub" / "checkpoints") == str(path.parent)
    assert (
        "python -c \"import torchvision.models as m; m.resnet50(weights='IMAGENET1K_V1')\"" in out
    )
    assert "TORCH_HOME" in out
