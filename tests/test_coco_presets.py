"""Every coco_* preset on a tiny COCO root: the CI check of the COCO path.

The root holds the 4 real COCO val2017 images in the layout the presets read
(`lay_out_shared_coco_root`), and a torch hub cache holds a stand-in for torchvision's
ImageNet file, so that `model.pretrained="imagenet"` loads weights as on a GPU
machine. Nothing is overridden that changes the code path: the presets keep
their backbones, heads, 256x192 crops, heatmap sizes, losses, flip test and
detection file; only the batch, the number of steps and the detection score
threshold (fewer boxes to score) are small.
"""

from __future__ import annotations

import json

import pytest
import torch
import torchvision

from ocdlib.configs import METHODS, ModelConfig, build_config, validate
from ocdlib.data.coco_root import COCO_BASES, coco_layout, preset_overrides
from ocdlib.data.dataset import build_datasets
from ocdlib.data.layout import resolve_layout
from ocdlib.data.prepare import resolve_data
from ocdlib.engine.trainer import train
from ocdlib.models import build_model
from ocdlib.models.backbones import imagenet_weights_file

# Score only the sample's surest detections (7 of its 118 boxes): the same code, less time.
DET_SCORE_THR = 0.999


def det_boxes(root) -> int:
    dets = json.loads((root / coco_layout().det_file).read_text())
    return sum(d["score"] >= DET_SCORE_THR for d in dets)


@pytest.fixture(scope="session")
def _torch_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("torch_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        path = imagenet_weights_file("resnet50")
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    return home


@pytest.fixture
def imagenet_cache(_torch_home, monkeypatch):
    """TORCH_HOME with torchvision's ResNet-50 ImageNet file name, random weights inside."""
    monkeypatch.setenv("TORCH_HOME", str(_torch_home))
    return imagenet_weights_file("resnet50")


def dry_run(preset: str, root, **extra) -> object:
    sets = {
        **dict(s.split("=", 1) for s in preset_overrides(root)),
        "train.batch_size": 2,
        "train.max_steps": 2,
        "train.num_threads": 1,
        "data.num_workers": 0,
        "eval.batch_size": 4,
        "eval.det_score_thr": DET_SCORE_THR,
        **extra,
    }
    return build_config(preset, sets)


@pytest.mark.parametrize(
    "preset",
    ["coco_r50_deeppose", "coco_r50_simplebaseline", "coco_r50_ocd", "coco_wholebody_r50_ocd"],
)
def test_preset_trains_two_steps_and_scores_the_detection_file(
    preset, shared_coco_root, imagenet_cache, tmp_path
):
    cfg = dry_run(preset, shared_coco_root)
    assert cfg.model.pretrained == "imagenet" and cfg.data.input_size == (192, 256)
    result = train(cfg, tmp_path / "run", progress=False)
    assert result["steps"] == 2
    assert (
        result["val_instances"] == det_boxes(shared_coco_root) == 7
    )  # detections, not ground-truth boxes
    parts = ("body", "foot", "face", "hand", "wholebody") if "wholebody" in preset else ()
    for key in ("AP", *(f"{part}/AP" for part in parts)):
        assert 0.0 <= result["metrics"][key] <= 1.0, key
    assert (tmp_path / "run" / "predictions.json").is_file()


def test_tcd_preset_takes_an_mmpose_model_zoo_teacher(shared_coco_root, imagenet_cache, tmp_path):
    """coco_r50_tcd with its teacher given as an mmpose 1.x checkpoint file."""
    teacher = build_model(
        ModelConfig(backbone="resnet50", heads=("hm",), deploy_head="hm"), 17, (192, 256), (48, 64)
    )
    state = {k.replace("heads.hm.", "head.", 1): v for k, v in teacher.state_dict().items()}
    path = tmp_path / "td-hm_res50_8xb64-210e_coco-256x192.pth"
    torch.save({"meta": {}, "state_dict": state}, path)
    cfg = dry_run("coco_r50_tcd", shared_coco_root, **{"loss.teacher_run": str(path)})
    result = train(cfg, tmp_path / "run", progress=False)
    assert result["steps"] == 2 and 0.0 <= result["metrics"]["AP"] <= 1.0
    assert result["student_params"] == 23_508_032 + 2048 * 34 + 34  # ResNet-50 and one FC


@pytest.mark.parametrize("profile", COCO_BASES)
def test_every_coco_preset_resolves_on_the_layout(profile, shared_coco_root):
    """Every method of the profile: config ranges, files, layout and one crop of each set."""
    layout = coco_layout()
    for method in METHODS:
        cfg = validate(dry_run(f"{profile}_{method}", shared_coco_root))
        paths = resolve_data(cfg.data, progress=False)
        assert {paths.train_ann, paths.val_ann} <= {shared_coco_root / s.ann for s in layout.splits}
        info = resolve_layout(cfg.data, paths.train_ann)
        train_ds, val_ds = build_datasets(cfg, paths, info)
        assert len(val_ds) == det_boxes(shared_coco_root)
        sample = train_ds[0]
        assert sample["image"].shape == (3, 256, 192)
        assert val_ds[0]["image"].shape == (3, 256, 192)
