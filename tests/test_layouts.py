"""Any keypoint layout without editing the package: CrowdPose built in, a layout read from
the annotation file, and heads, codecs, OKS, flip test, pictures and predict following it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ocdlib.__main__ import main
from ocdlib.configs import build_config
from ocdlib.data.synthpose import generate_synthpose
from ocdlib.engine.trainer import train
from ocdlib.metainfo import CROWDPOSE, flip_pairs_from_names, layout_from_category
from ocdlib.report.viz import sample_figure

CROWDPOSE_SIGMAS = [
    .079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089, .079, .079,
]  # fmt: skip
FIVE = ["nose", "l_eye", "r_eye", "l_wrist", "r_wrist"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("layouts") / "set"
    generate_synthpose(out, 40, 10, seed=1, image_size=(128, 128), progress=False)
    return out


def relabel(src: Path, dst: Path, keep, names, skeleton) -> Path:
    """A copy of the COCO-layout set with each person's keypoints rebuilt by `keep`."""
    shutil.copytree(src, dst)
    for split in ("train", "val"):
        path = dst / "annotations" / f"{split}.json"
        data = json.loads(path.read_text())
        for ann in data["annotations"]:
            pts = np.asarray(ann["keypoints"], dtype=float).reshape(17, 3)
            new = keep(pts)
            ann["keypoints"] = [round(float(v), 2) for v in new.ravel()]
            ann["num_keypoints"] = int((new[:, 2] > 0).sum())
        data["categories"] = [{"id": 1, "name": "person", "keypoints": names, "skeleton": skeleton}]
        path.write_text(json.dumps(data))
    return dst


def crowdpose_points(pts):
    # CrowdPose: COCO's shoulders to ankles (5..16), then head (here the nose) and neck.
    neck = np.append((pts[5, :2] + pts[6, :2]) / 2, min(pts[5, 2], pts[6, 2]))
    return np.vstack([pts[5:17], pts[0], neck])


def train_and_eval(root: Path, out: Path, **sets):
    cfg = build_config(
        "smoke_ocd",
        {"data.root": str(root), "train.epochs": 1, "train.max_steps": 2, **sets},
    )
    return train(cfg, out, progress=False)


def test_crowdpose_layout_trains_two_steps_and_evaluates(synth, tmp_path):
    root = relabel(
        synth, tmp_path / "crowdpose", crowdpose_points, list(CROWDPOSE.keypoint_names), []
    )
    result = train_and_eval(root, tmp_path / "run", **{"data.dataset": "crowdpose"})
    assert result["steps"] == 2 and 0.0 <= result["metrics"]["AP"] <= 1.0
    preds = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert preds and all(len(p["keypoints"]) == 14 * 3 for p in preds)
    assert list(CROWDPOSE.sigmas) == CROWDPOSE_SIGMAS
    assert CROWDPOSE.flip_pairs == flip_pairs_from_names(CROWDPOSE.keypoint_names)


def test_five_keypoint_layout_from_the_file(synth, tmp_path, capsys):
    root = relabel(synth, tmp_path / "five", lambda p: p[[0, 1, 2, 9, 10]], FIVE, [[1, 2], [1, 3]])
    sigmas = [0.026, 0.025, 0.025, 0.062, 0.062]
    run = tmp_path / "run"
    result = train_and_eval(root, run, **{"data.dataset": "from_file", "data.sigmas": sigmas})
    assert 0.0 <= result["metrics"]["AP"] <= 1.0
    layout = json.loads((run / "layout.json").read_text())
    assert layout["keypoint_names"] == FIVE
    assert layout["flip_pairs"] == [[1, 2], [3, 4]]  # from l_*/r_* names
    assert layout["skeleton"] == [[0, 1], [0, 2]]  # COCO's skeleton counts from 1
    preds = json.loads((run / "predictions.json").read_text())
    assert preds and all(len(p["keypoints"]) == 5 * 3 for p in preds)

    # eval and predict read the layout from the run, not from the annotation file.
    assert main(["eval", "--run", str(run), "--out", str(tmp_path / "eval")]) == 0
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 60, 100], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [40, 5, 50, 90], "score": 0.1},
    ]))  # fmt: skip
    image = root / "images" / "val" / "0000001.jpg"
    for thr, kept in ((None, 1), ("0.05", 2)):
        out = tmp_path / f"pose{kept}.png"
        argv = ["predict", "--run", str(run), "--image", str(image), "--boxes", str(dets)]
        argv += ["--out", str(out), "--json"] + (["--det-thr", thr] if thr else [])
        assert main(argv) == 0
        results = json.loads(out.with_suffix(".json").read_text())
        assert len(results) == kept and out.stat().st_size > 1000
        assert {"image_id", "category_id", "keypoints", "score"} <= set(results[0])
        assert results[0]["image_id"] == 1 and len(results[0]["keypoints"]) == 15
    assert main(["predict", "--run", str(run), "--image", str(image), "--boxes", str(dets),
                 "--det-thr", "0.95"]) == 2  # fmt: skip
    assert "lower --det-thr" in capsys.readouterr().err

    # pictures draw the file's own layout
    fig = sample_figure(root, n_synth=2)
    assert fig.axes


def test_flip_pairs_from_names_and_the_override():
    names = ["head", "left_hand", "right_hand", "l_foot", "r_foot", "Left_Eye", "Right_Eye"]
    assert flip_pairs_from_names(names) == ((1, 2), (3, 4), (5, 6))
    category = {"keypoints": names, "skeleton": [[1, 2]]}
    info = layout_from_category(category, [0.05] * 7, flip_pairs=[["left_hand", "right_hand"]])
    assert info.flip_pairs == ((1, 2),)
    assert list(info.flip_index) == [0, 2, 1, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="data.sigmas has 2 values.*names 7 keypoints"):
        layout_from_category(category, [0.05] * 2)
    with pytest.raises(ValueError, match=r"skeleton: link \[0, 9\] is outside 1\.\.7"):
        layout_from_category({"keypoints": names, "skeleton": [[0, 9]]}, [0.05] * 7)
    with pytest.raises(ValueError, match=r"data.flip_pairs: \['left_hand', 'tail'\]"):
        layout_from_category(category, [0.05] * 7, flip_pairs=[["left_hand", "tail"]])


def test_from_file_without_sigmas_says_so_in_one_line(synth, tmp_path, capsys):
    argv = ["train", "--config", "smoke_deeppose", "--set", f"data.root={synth}"]
    argv += ["--set", "data.dataset=from_file", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: config field data.sigmas is empty")
    assert "none is guessed" in err[-1]
