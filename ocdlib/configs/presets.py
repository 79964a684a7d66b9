"""Presets: a config base (data, backbone, schedule) combined with a method (heads and
loss terms). Preset names are "<base>_<method>", e.g. "cpu_ocd" or "coco_r50_deeppose";
a bare base name means its DeepPose baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..errors import ConfigError, UnknownNameError
from ..synth_spec import SynthPoseSpec
from .schema import (
    Config,
    DataConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    SynthConfig,
    TrainConfig,
    override,
)

__all__ = [
    "BASES", "CPU_EPOCHS", "CPU_PRETRAINED_WEIGHTS", "CPU_SYNTH_SPEC", "GPU_SYNTH_EPOCHS",
    "GPU_SYNTH_IMAGES", "METHODS",
    "build_config", "get_preset", "preset_names"
]  # fmt: skip


def _base_smoke() -> Config:
    """Seconds on a CPU: for tests and nbval. Numbers from it mean nothing."""
    return Config(
        data=DataConfig(
            synth=SynthConfig(train=48, val=12, seed=0, image_size=(128, 128)),
            input_size=(48, 64),
            heatmap_size=(12, 16),
            sigma=1.5,
            num_workers=0,
        ),
        model=ModelConfig(backbone="resnet18", hm_deconv_channels=64, small_deconv_channels=32),
        train=TrainConfig(
            epochs=2, batch_size=16, lr=1e-3, warmup_iters=0, milestones=(), num_threads=1
        ),
        eval=EvalConfig(batch_size=32),
    )


# SynthPose for the cpu profile: one figure per image and light clutter, so that
# models trained from scratch for minutes on two CPU cores learn enough to be
# told apart (measured in docs/CALIBRATION.md). The
# full-difficulty defaults of SynthPoseSpec are used by gpu_synth.
CPU_SYNTH_SPEC = SynthPoseSpec(
    people_per_image=(1, 1),
    person_height=(0.6, 0.9),
    truncation_prob=0.05,
    rotation_std_deg=5.0,
    large_rotation_prob=0.0,
    occluders=(0, 1),
    occluder_size=(0.1, 0.2),
    clutter_shapes=(0, 4),
    limb_clutter_prob=0.0,
    pattern_prob=0.0,
    texture_strength=0.3,
    background_variation=0.5,
    blur_prob=0.1,
    noise_prob=0.2,
)


CPU_EPOCHS = 16  # x 4000 crops


def _base_cpu() -> Config:
    """The default SynthPose reproduction on a 2-core CPU (narrow ResNet-18 from scratch, 128x96).

    Calibrated on the DeepPose and SimpleBaseline learning curves (docs/CALIBRATION.md):
    64k training crops, Adam at lr 2e-3 (1e-3 left SimpleBaseline
    at 32.7 AP, under its 35 AP floor), lr x0.1 for the last two epochs (a cosine
    schedule did worse for the heatmap model at this budget), bf16 autocast where the CPU
    has it, L1 as the regression task loss (SmoothL1 with beta 1 is a squared error on
    coordinates in [0, 1] and learns about 2.5x slower from scratch), and lighter
    augmentation than mmpose's (rotation 30 degrees, scale 0.75-1.25) for a short schedule.
    """
    return Config(
        data=DataConfig(
            synth=SynthConfig(
                train=4000, val=300, seed=0, image_size=(128, 128), spec=CPU_SYNTH_SPEC
            ),
            input_size=(96, 128),
            heatmap_size=(24, 32),
            sigma=1.5,
            rotate_factor=30.0,
            scale_factor=(0.75, 1.25),
            num_workers=0,
        ),
        model=ModelConfig(backbone="resnet18_w32", hm_deconv_channels=64, small_deconv_channels=32),
        loss=LossConfig(reg_loss="l1"),
        train=TrainConfig(
            epochs=CPU_EPOCHS,
            batch_size=32,
            lr=2e-3,
            warmup_iters=100,
            milestones=(CPU_EPOCHS - 2,),
        ),
        eval=EvalConfig(batch_size=64),
    )


def _base_cpu_wholebody() -> Config:
    """The cpu profile on SynthPose-WholeBody (133 keypoints) at a higher resolution.

    Faces and hands are a few pixels wide at 128x96 and their OKS sigmas are a fraction
    of the body's, so the whole-body runs get 192x192 images and 160x120 crops."""
    cfg = _base_cpu()
    data = replace(
        cfg.data,
        dataset="coco_wholebody",
        synth=replace(cfg.data.synth, wholebody=True, image_size=(192, 192)),
        input_size=(120, 160),
        heatmap_size=(30, 40),
        sigma=1.5,
    )
    return replace(cfg, data=data)


# The paper's regime in miniature: the cpu profile's recipe from a backbone pre-trained
# without natural images or keypoints (ocdlib/pretrained/, `python -m ocdlib pretrain`),
# as every model of the paper starts from ImageNet weights. Chosen on the baselines
# (docs/CALIBRATION.md, reports/pretraining/calibration.md). The schedule stays the
# from-scratch one (16 epochs): 9 epochs would bring make reproduce within the hour but
# left SimpleBaseline under its 35 AP floor and DeepPose at two thirds of its AP
# (reports/pretraining/calibration.md, docs/CALIBRATION.md).
CPU_PRETRAINED_WEIGHTS = "synth_rotation_w32"


def _base_cpu_pretrained() -> Config:
    """The cpu profile's recipe from the kit's pre-trained narrow ResNet-18."""
    cfg = _base_cpu()
    return replace(cfg, model=replace(cfg.model, pretrained=CPU_PRETRAINED_WEIGHTS))


def _base_cpu_pretrained_wholebody() -> Config:
    cfg = _base_cpu_wholebody()
    return replace(cfg, model=replace(cfg.model, pretrained=CPU_PRETRAINED_WEIGHTS))


# gpu_synth's size: one run of 12 epochs of 15,000 images (about 37,400 figures an
# epoch, 450 k crops) lets DeepPose, SimpleBaseline and OCD of one seed finish in one
# 9-minute command on an H200 (docs/GPU.md has the arithmetic).
GPU_SYNTH_IMAGES = 15000
GPU_SYNTH_EPOCHS = 12


def _base_gpu_synth() -> Config:
    """SynthPose at the COCO crop size with ResNet-50 from scratch: 450 k crops a run."""
    return Config(
        data=DataConfig(
            synth=SynthConfig(train=GPU_SYNTH_IMAGES, val=1000, seed=0, image_size=(320, 320)),
            input_size=(192, 256),
            heatmap_size=(48, 64),
            sigma=2.0,
            # The cpu pipeline's 12 loader processes fed OCD-R50 2,400 images/s on an
            # H100 with 16 cores, below the model's 2,891 (reports/gpu_synth/throughput.md).
            # The device pipeline cuts and encodes on the GPU from images decoded once
            # and held there (data.hold_images), so the workers only draw the geometry.
            pipeline="device",
            num_workers=4,
        ),
        model=ModelConfig(backbone="resnet50"),
        # mmpose's steps at 81% and 95% of 210 epochs; here at 10 and 11 of 12.
        train=TrainConfig(
            epochs=GPU_SYNTH_EPOCHS,
            batch_size=128,
            lr=1e-3,
            warmup_iters=500,
            milestones=(GPU_SYNTH_EPOCHS - 2, GPU_SYNTH_EPOCHS - 1),
        ),
        eval=EvalConfig(batch_size=256),
    )


def _coco_data(dataset: str = "coco") -> DataConfig:
    if dataset == "coco":
        train_ann = "annotations/person_keypoints_train2017.json"
        val_ann = "annotations/person_keypoints_val2017.json"
    else:
        train_ann = "annotations/coco_wholebody_train_v1.0.json"
        val_ann = "annotations/coco_wholebody_val_v1.0.json"
    return DataConfig(
        dataset=dataset,
        root="data/coco",
        train_ann=train_ann,
        train_images="train2017",
        val_ann=val_ann,
        val_images="val2017",
        input_size=(192, 256),
        heatmap_size=(48, 64),
        sigma=2.0,
        num_workers=4,
    )


def _base_coco(backbone: str, dataset: str = "coco") -> Callable[[], Config]:
    """mmpose's COCO recipe: Adam 5e-4 at batch 512, 500-iteration warm-up, 210 epochs."""

    def make() -> Config:
        return Config(
            data=_coco_data(dataset),
            model=ModelConfig(backbone=backbone, pretrained="imagenet"),
            train=TrainConfig(
                epochs=210,
                batch_size=512,
                lr=5e-4,
                warmup_iters=500,
                milestones=(170, 200),
            ),
            eval=EvalConfig(
                flip_test=True,
                det_file="data/coco/person_detection_results/"
                "COCO_val2017_detections_AP_H_56_person.json",
                batch_size=256,
            ),
        )

    return make


# The config bases: the data, model and schedule a preset builds on (a preset is
# `<base>_<method>`). A notebook profile (ocdlib/profiles.py) is another thing: what
# `reproduce --profile` runs, built on one base for body rows and one for whole-body.
BASES: dict[str, Callable[[], Config]] = {
    "smoke": _base_smoke,
    "cpu": _base_cpu,
    "cpu_pretrained": _base_cpu_pretrained,
    "gpu_synth": _base_gpu_synth,
    **{f"coco_{b}": _base_coco(f"resnet{b[1:]}") for b in ("r50", "r101", "r152")},
    "coco_wholebody_r50": _base_coco("resnet50", "coco_wholebody"),
}


def _wholebody(cfg: Config) -> Config:
    data = replace(
        cfg.data, dataset="coco_wholebody", synth=replace(cfg.data.synth, wholebody=True)
    )
    return replace(cfg, data=data)


for _p in ("smoke", "gpu_synth"):
    BASES[f"{_p}_wholebody"] = (lambda p: lambda: _wholebody(BASES[p]()))(_p)
BASES["cpu_wholebody"] = _base_cpu_wholebody
BASES["cpu_pretrained_wholebody"] = _base_cpu_pretrained_wholebody


def _method(cfg: Config, heads, deploy, **loss) -> Config:
    """The method's heads and loss terms; the regression task loss is the base's unless
    the method names its own (RLE)."""
    model = replace(cfg.model, heads=tuple(heads), deploy_head=deploy)
    base = LossConfig(reg_loss=cfg.loss.reg_loss)
    return replace(cfg, model=model, loss=replace(base, **loss))


# Each method: heads on the shared backbone, the deployed head, and the loss terms.
METHODS: dict[str, Callable[[Config], Config]] = {
    "deeppose": lambda c: _method(c, ["reg"], "reg"),
    "rle": lambda c: _method(c, ["rle"], "rle", reg_loss="rle"),
    "simplebaseline": lambda c: _method(c, ["hm"], "hm", reg_weight=0.0, hm_weight=1.0),
    "ocd": lambda c: _method(
        c, ["reg", "hm"], "reg", hm_weight=1.0, task_distill_weight=1.0, head_distill_weight=1.0
    ),
    "ocd_rle": lambda c: _method(
        c,
        ["rle", "hm"],
        "rle",
        reg_loss="rle",
        hm_weight=1.0,
        task_distill_weight=1.0,
        head_distill_weight=1.0,
    ),
    # TCD needs a heatmap teacher: --set loss.teacher_run=runs/<simplebaseline run> or
    # an mmpose model-zoo checkpoint, --set loss.teacher_run=td-hm_res50_...-256x192.pth.
    "tcd": lambda c: _method(c, ["reg"], "reg", task_distill_weight=1.0, head_distill_weight=1.0),
    "tcd_aux": lambda c: _method(
        c,
        ["reg", "hm"],
        "reg",
        hm_weight=1.0,
        task_distill_weight=1.0,
        head_distill_weight=1.0,
        teacher_source="both",
    ),
    "reduced": lambda c: _method(
        c,
        ["hm", "hm_small"],
        "hm_small",
        reg_weight=0.0,
        hm_weight=1.0,
        small_hm_weight=1.0,
        small_head_distill_weight=1.0,
        small_task_distill_weight=1.0,
    ),
    "reduced_alone": lambda c: _method(
        c, ["hm_small"], "hm_small", reg_weight=0.0, small_hm_weight=1.0
    ),
}


def preset_names() -> list[str]:
    return [f"{p}_{m}" for p in BASES for m in METHODS]


def get_preset(name: str) -> Config:
    """Resolve "<base>_<method>" (or a bare base, meaning DeepPose) to a Config."""
    if name in BASES:
        name = f"{name}_deeppose"
    for method in sorted(METHODS, key=len, reverse=True):
        base = name[: -len(method) - 1]
        if name.endswith("_" + method) and base in BASES:
            return replace(METHODS[method](BASES[base]()), name=name)
    raise UnknownNameError(
        f"unknown preset {name!r}; presets are <base>_<method> with base in "
        f"{sorted(BASES)} and method in {sorted(METHODS)} (python -m ocdlib presets)"
    )


def build_config(preset: str, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """A preset with `key=value` overrides applied (from --set or papermill parameters)."""
    cfg = get_preset(preset)
    items = overrides.items() if isinstance(overrides, dict) else overrides or []
    for item in items:
        if isinstance(item, str):
            if "=" not in item:
                raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=0.001")
            key, value = item.split("=", 1)
        else:
            key, value = item
        cfg = override(cfg, key.strip(), value)
    return cfg
