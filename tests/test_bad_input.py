"""Bad input caught before it costs a run, each in one line naming the file and the field:
broken images (stop or skip), bad annotation values, config ranges, two writers on one
run directory, and predict's own input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from ocdlib.__main__ import main
from ocdlib.configs import DataConfig, build_config
from ocdlib.data import load_coco_keypoints
from ocdlib.data.coco import check_images
from ocdlib.data.dataset import SkippedImages, TopDownPoseDataset
from ocdlib.data.synthpose import generate_synthpose
from ocdlib.engine.checkpoint import atomic_save
from ocdlib.engine.trainer import train
from ocdlib.errors import AnnotationError, ConfigError, ImageMissingError, ImageReadError
from ocdlib.metainfo import COCO_BODY

ROOT = Path(__file__).resolve().parents[1]
CFG = DataConfig(input_size=(48, 64), heatmap_size=(12, 16), num_workers=0)
TRAIN = ["train", "--config", "smoke_deeppose", "--no-progress", "--set", "train.epochs=1"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """A small SynthPose set (40 train, 10 val images of 128x128), written once."""
    out = tmp_path_factory.mktemp("bad_input") / "set"
    generate_synthpose(out, 40, 10, seed=0, image_size=(128, 128), progress=False)
    return out


@pytest.fixture
def copy(synth, tmp_path) -> Path:
    """A private copy of the set, to break."""
    return Path(shutil.copytree(synth, tmp_path / "set"))


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def break_two_images(root: Path, split: str = "train") -> tuple[Path, Path]:
    """Truncate one JPEG to its first 2000 bytes and empty another."""
    files = sorted((root / "images" / split).iterdir())
    truncated, empty = files[0], files[1]
    truncated.write_bytes(truncated.read_bytes()[:2000])
    empty.write_bytes(b"")
    return truncated, empty


def train_instances(root: Path):
    return load_coco_keypoints(root / "annotations/train.json", root / "images/train", COCO_BODY)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    assert "Traceback" not in "\n".join(err)
    return err[-1]


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("workers", [1, 2])
def test_unreadable_image_stops_with_its_name_through_loader_workers(copy, workers):
    truncated, empty = break_two_images(copy)
    instances = load_coco_keypoints(
        copy / "annotations/train.json", copy / "images/train", COCO_BODY
    )
    ds = TopDownPoseDataset(instances, COCO_BODY, CFG, train=True)
    loader = DataLoader(ds, batch_size=8, num_workers=workers)
    with pytest.raises(ImageReadError) as e:
        for _ in loader:
            pass
    msg = str(e.value)
    assert "\n" not in msg and "DataLoader worker" not in msg
    assert (truncated.name in msg) != (empty.name in msg)
    assert "annotations/train.json" in msg and "data.bad_images=skip" in msg


def test_skip_replaces_unreadable_images_and_names_each_once(copy, caplog):
    truncated, empty = break_two_images(copy)
    instances = load_coco_keypoints(
        copy / "annotations/train.json", copy / "images/train", COCO_BODY
    )
    ds = TopDownPoseDataset(instances, COCO_BODY, replace(CFG, bad_images="skip"), train=True)
    skipped = SkippedImages()
    seen = 0
    for when in ("epoch 1", "epoch 2"):
        for batch in DataLoader(ds, batch_size=8, num_workers=2):
            skipped.add(batch, when)
            seen += len(batch["image"])
    assert seen == 2 * len(ds)  # every bad sample was replaced, none dropped
    bad = [i for i in instances if i.image_path in (truncated, empty)]
    assert skipped.files.keys() == {str(truncated), str(empty)}
    assert skipped.replaced == {"epoch 1": len(bad), "epoch 2": len(bad)}
    logged = [r.getMessage() for r in caplog.records if "unreadable image" in r.getMessage()]
    assert len(logged) == 2  # each file named once, not once per sample or epoch
    assert "image file is truncated" in skipped.files[str(truncated)]


def test_skip_in_a_run_lists_the_files_in_result_json(copy, tmp_path, capsys):
    truncated, empty = break_two_images(copy)
    out = tmp_path / "run"
    sets = ["data.bad_images=skip", "data.num_workers=1", f"data.root={copy}"]
    assert main([*TRAIN, "--out", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    result = json.loads((out / "result.json").read_text())
    assert set(result["skipped_images"]["files"]) == {str(truncated), str(empty)}
    assert result["skipped_images"]["samples_replaced"]["epoch 1"] > 0
    assert "sample(s) with an unreadable image replaced" in capsys.readouterr().err


def test_unreadable_image_in_a_run_is_one_line(copy, tmp_path, capsys):
    truncated, empty = break_two_images(copy)
    sets = ["--set", f"data.root={copy}", "--set", "data.num_workers=2"]
    assert main([*TRAIN, "--out", str(tmp_path / "run"), *sets]) == 2
    msg = one_line_error(capsys)
    assert "cannot decode image" in msg and "data.bad_images=skip" in msg
    assert truncated.name in msg or empty.name in msg


def test_missing_images_stop_before_the_first_step(copy, tmp_path, capsys):
    gone = sorted((copy / "images/val").iterdir())[0]
    gone.unlink()
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out), "--set", f"data.root={copy}"]) == 2
    msg = one_line_error(capsys)
    assert str(gone) in msg and "data.val_images" in msg and "annotations/val.json" in msg
    assert not (out / "log.csv").exists()  # not one step trained
    instances = load_coco_keypoints(copy / "annotations/val.json", copy / "images/val", COCO_BODY)
    with pytest.raises(ImageMissingError, match="1 image file"):
        check_images(instances, "data.val_images")


def test_image_size_that_disagrees_with_the_file(copy):
    edit(copy / "annotations/train.json", lambda d: d["images"][0].update(width=640))
    instances = load_coco_keypoints(
        copy / "annotations/train.json", copy / "images/train", COCO_BODY
    )
    ds = TopDownPoseDataset(instances, COCO_BODY, CFG, train=False)
    index = next(i for i, inst in enumerate(instances) if inst.image_index == 0)
    with pytest.raises(AnnotationError, match=r"train\.json: images\[0\] \(id \d+\) has width 640"):
        ds[index]


# ----------------------------------------------------------------------------- annotations


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda a: a["keypoints"].__setitem__(4, "abc"),
            r"annotations\[3\] \(id \d+, image_id \d+\)\.keypoints\[4\] is 'abc', not a number "
            r"\(the y coordinate of keypoint 1 'left_eye'\)",
        ),
        (
            lambda a: a["keypoints"].__setitem__(15, float("nan")),
            r"annotations\[3\] .*\.keypoints\[15\] is nan, not a finite number "
            r"\(the x coordinate of keypoint 5 'left_shoulder'\)",
        ),
        (
            lambda a: a["keypoints"].__setitem__(5, 3),
            r"annotations\[3\] .*\.keypoints\[5\] is 3 \(the visibility flag of keypoint 1 "
            r"'left_eye'\); a visibility flag must be 0 .*, 1 .* or 2",
        ),
        (
            lambda a: a["bbox"].__setitem__(2, "wide"),
            r"annotations\[3\] .*\.bbox\[2\] is 'wide', not a finite number",
        ),
        (lambda a: a.update(bbox=[1, 2, 3]), r"annotations\[3\] .*\.bbox is \[1, 2, 3\]"),
        (lambda a: a.update(area=None), r"annotations\[3\] .*\.area is None"),
    ],
)
def test_bad_annotation_values_name_file_index_id_and_field(copy, change, message):
    ann = copy / "annotations/train.json"
    edit(ann, lambda d: change(d["annotations"][3]))
    with pytest.raises(AnnotationError, match=r"train\.json: " + message):
        load_coco_keypoints(ann, copy / "images/train", COCO_BODY)


def test_image_entry_with_a_bad_size(copy):
    ann = copy / "annotations/train.json"
    edit(ann, lambda d: d["images"][2].update(height="tall"))
    with pytest.raises(AnnotationError, match=r"train\.json: images\[2\] \(id \d+\)\.height is"):
        load_coco_keypoints(ann, copy / "images/train", COCO_BODY)


def test_boxes_of_no_size_are_skipped_and_counted(copy, caplog):
    ann = copy / "annotations/train.json"
    before = len(load_coco_keypoints(ann, copy / "images/train", COCO_BODY))
    edit(ann, lambda d: [d["annotations"][i]["bbox"].__setitem__(2, -4.0) for i in (1, 2)])
    after = load_coco_keypoints(ann, copy / "images/train", COCO_BODY)
    assert len(after) == before - 2
    assert "2 empty box" in caplog.text


def test_nan_keypoint_in_a_run_names_the_data_not_the_learning_rate(copy, tmp_path, capsys):
    nan = float("nan")
    edit(
        copy / "annotations/train.json",
        lambda d: d["annotations"][5]["keypoints"].__setitem__(15, nan),
    )
    assert main([*TRAIN, "--out", str(tmp_path / "run"), "--set", f"data.root={copy}"]) == 2
    msg = one_line_error(capsys)
    assert "train.json: annotations[5]" in msg and "keypoints[15] is nan" in msg
    assert "train.lr" not in msg


# ----------------------------------------------------------------------------- config ranges


@pytest.mark.parametrize(
    "setting, message",
    [
        ("data.input_size=[0,0]", "config field data.input_size=[0, 0]: must be two whole numbers"),
        ("data.input_size=[48]", "config field data.input_size=[48]: must be two whole numbers"),
        ("train.lr=-1", "config field train.lr=-1.0: must be > 0"),
        ("train.batch_size=0", "config field train.batch_size=0: must be > 0"),
        ("train.epochs=0", "config field train.epochs=0: must be > 0"),
        ("data.sigma=0", "config field data.sigma=0.0: must be > 0"),
        ("data.flip_prob=1.5", "config field data.flip_prob=1.5: must be in [0, 1]"),
        ("data.heatmap_size=[10,16]", "config field data.heatmap_size=[10, 16]: must divide"),
        ("data.bad_images=ignore", 'config field data.bad_images="ignore": must be one of'),
        ("data.dataset=mpii", 'config field data.dataset="mpii": must be one of'),
        ("data.dataset=from_file", "config field data.sigmas is empty"),
    ],
)
def test_config_ranges_are_checked_before_anything_runs(setting, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out), "--set", setting]) == 2
    msg = one_line_error(capsys)
    assert message in msg and "--set data." in msg or "--set train." in msg
    assert not out.exists()


def test_every_preset_is_valid_and_validate_raises_config_error():
    from ocdlib.configs import get_preset, preset_names, validate

    for name in preset_names():
        validate(get_preset(name))
    with pytest.raises(ConfigError, match="eval.oks_nms_thr"):
        validate(build_config("smoke", {"eval.oks_nms_thr": -0.1}))


# ----------------------------------------------------------------------------- run directory


def test_two_writers_on_one_run_one_refuses_the_other_finishes_whole(synth, tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "ocdlib", *TRAIN, "--out", str(out)]
    argv += ["--set", f"data.root={synth}", "--set", "train.max_steps=3"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    done = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in done) == [0, 2], done
    refused = next(err for rc, err in done if rc == 2)
    last = refused.strip().splitlines()[-1]
    assert last.startswith(f"error: {out} is being written by another process (pid ")
    assert " on " in last and "started " in last and "Traceback" not in refused
    # The winner's files are whole: each step logged once, records parse, weights load.
    steps = [int(r["step"]) for r in csv.DictReader((out / "log.csv").open())]
    assert steps == [1, 2, 3]
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 3 and "AP" in result["metrics"]
    assert json.loads((out / "config.json").read_text())["train"]["max_steps"] == 3
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 3


def test_eval_into_a_run_that_is_being_written_is_refused(synth, tmp_path, capsys):
    from ocdlib.engine.run_dir import run_lock

    out = tmp_path / "run"
    cfg = build_config("smoke_deeppose", {"data.root": str(synth), "train.max_steps": 2})
    train(replace_epochs(cfg), out, progress=False)
    with run_lock(out, what="a test holding the run"):
        # A second process is refused at once (this one holds the lock re-entrantly).
        code = "from ocdlib.__main__ import main; raise SystemExit(main(['eval', '--run', %r]))"
        p = subprocess.run(
            [sys.executable, "-c", code % str(out)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.startswith(f"error: {out} is being written by another process")
    assert "a test holding the run" in p.stderr


def replace_epochs(cfg, epochs: int = 1):
    return replace(cfg, train=replace(cfg.train, epochs=epochs))


def test_speed_after_resume_counts_only_this_process(synth, tmp_path):
    out = tmp_path / "run"
    cfg = replace_epochs(build_config("smoke_deeppose", {"data.root": str(synth)}), 2)
    train(cfg, out, progress=False, stop_after_epochs=1)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    ckpt["train_time"] = 1e6  # as if the first epoch had taken very long
    atomic_save(ckpt, out / "checkpoint.pt")
    result = train(cfg, out, resume=True, progress=False)
    assert result["train_time_s"] > 1e6
    # Before: the images of epoch 2 divided by both epochs' time, about 0.0 images/s.
    assert result["train_images_per_s"] > 1.0


# ----------------------------------------------------------------------------- predict


def test_predict_on_a_file_that_is_not_an_image(synth, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = build_config("smoke_deeppose", {"data.root": str(synth), "train.max_steps": 1})
    train(replace_epochs(cfg), out, progress=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    assert main(["predict", "--run", str(out), "--image", str(notes)]) == 2
    msg = one_line_error(capsys)
    assert "cannot decode image" in msg and "notes.txt" in msg and "pass a JPEG or PNG" in msg
    assert "annotation file" not in msg


def test_a_full_disk_names_the_file_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    import ocdlib.engine.checkpoint as checkpoint
    from ocdlib.errors import DiskFullError

    path = tmp_path / "checkpoint.pt"
    atomic_save({"step": 1}, path)

    def full_disk(obj, f):  # what torch.save raises when the disk fills up
        Path(f).write_bytes(b"partial")
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: usage._replace(free=2**20))
    with pytest.raises(DiskFullError, match=rf"cannot write {path}: its disk is full \(1 MB"):
        atomic_save({"step": 2}, path)
    assert torch.load(path, weights_only=False) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]

    # The same failure with room on the disk is another problem: raised as it is.
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: usage._replace(free=2**40))
    with pytest.raises(RuntimeError, match="iostream error"):
        atomic_save({"step": 2}, path)


def test_a_full_disk_while_writing_a_table(tmp_path, monkeypatch):
    import errno

    import ocdlib.engine.checkpoint as checkpoint
    from ocdlib.errors import DiskFullError

    real = Path.write_text

    def no_space(self, text):
        real(self, text[:1])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.Path, "write_text", no_space)
    with pytest.raises(DiskFullError, match="OCDLIB_RUNS"):
        checkpoint.atomic_write_text("{}", tmp_path / "result.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "key, index, copy_of",
    [("annotations", 3, 0), ("images", 2, 1), ("categories", None, 0)],
)
def test_a_duplicate_id_is_an_error_naming_the_file_the_id_and_the_entries(
    coco_sample_dir, key, index, copy_of
):
    from ocdlib.coco_eval import load_ground_truth
    from ocdlib.data.coco import AnnotationError
    from ocdlib.metainfo import COCO_BODY

    ann = coco_sample_dir / "test_coco.json"
    data = json.loads(ann.read_text())
    if index is None:
        data[key].append(dict(data[key][copy_of]))
        index = len(data[key]) - 1
    else:
        data[key][index]["id"] = data[key][copy_of]["id"]
    ann.write_text(json.dumps(data))
    dup = data[key][copy_of]["id"]
    for load in (
        lambda: load_coco_keypoints(ann, coco_sample_dir, COCO_BODY),
        lambda: load_ground_truth(ann, COCO_BODY),
    ):
        with pytest.raises(AnnotationError) as err:
            load()
        msg = str(err.value)
        assert str(ann) in msg and f"same id {dup!r}" in msg
        assert f"{key}[{copy_of}]" in msg and f"{key}[{index}]" in msg


def test_the_sample_has_no_duplicate_ids(coco_sample_dir):
    from ocdlib.data.coco import check_unique_ids

    for name in ("test_coco.json", "test_coco_wholebody.json"):
        check_unique_ids(json.loads((coco_sample_dir / name).read_text()), name)
