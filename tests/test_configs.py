"""Config presets, overrides and hashing."""

from __future__ import annotations

import pytest

from ocdlib.configs import (
    BASES,
    METHODS,
    Config,
    build_config,
    get_preset,
    override,
    preset_names,
)


def test_every_preset_resolves_and_round_trips():
    for name in preset_names():
        cfg = get_preset(name)
        assert cfg.name == name
        assert Config.from_dict(cfg.to_dict()) == cfg
        assert cfg.model.deploy_head in cfg.model.heads


def test_bare_profile_means_deeppose():
    assert get_preset("cpu").model.heads == ("reg",)
    assert get_preset("cpu") == get_preset("cpu_deeppose")


def test_hash_is_stable_and_tracks_content_not_name():
    a = get_preset("cpu_ocd")
    assert a.hash == get_preset("cpu_ocd").hash
    assert override(a, "name", "other").hash == a.hash
    assert override(a, "train.seed", 1).hash != a.hash


def test_overrides_are_typed():
    cfg = build_config("cpu_ocd", ["train.lr=0.002", "data.input_size=[64, 96]", "train.amp=false"])
    assert cfg.train.lr == 0.002 and cfg.data.input_size == (64, 96) and cfg.train.amp is False
    cfg = build_config("cpu", {"loss.distill_decode": "soft_argmax", "train.epochs": 3})
    assert cfg.loss.distill_decode == "soft_argmax" and cfg.train.epochs == 3


@pytest.mark.parametrize(
    "item, fragment",
    [
        ("train.lrr=1", "no field 'lrr'"),
        ("train.lr=fast", "expected float"),
        ("train.amp=1", "expected true or false"),
        ("train=1", "is a section"),
        ("lr", "expected key=value"),
    ],
)
def test_bad_override_says_what_to_do(item, fragment):
    with pytest.raises(ValueError, match=fragment):
        build_config("cpu", [item])


def test_unknown_preset_lists_the_choices():
    with pytest.raises(KeyError, match="base in"):
        get_preset("cpu_magic")


def test_coco_presets_follow_the_mmpose_recipe():
    for profile in ("coco_r50", "coco_r101", "coco_r152"):
        cfg = get_preset(f"{profile}_deeppose")
        t = cfg.train
        assert (t.batch_size, t.lr, t.warmup_iters, t.epochs, t.milestones) == (
            512,
            5e-4,
            500,
            210,
            (170, 200),
        )
        assert cfg.data.input_size == (192, 256) and cfg.data.heatmap_size == (48, 64)
        assert cfg.eval.flip_test and cfg.eval.det_file.endswith("AP_H_56_person.json")
    assert set(METHODS) >= {"deeppose", "rle", "simplebaseline", "ocd", "tcd", "reduced"}
    assert "coco_wholebody_r50" in BASES


def test_synthpose_knobs_are_config_fields():
    cfg = build_config("cpu", ["data.synth.spec.people_per_image=[1, 2]"])
    assert cfg.data.synth.spec.people_per_image == (1, 2)
    assert cfg.hash != get_preset("cpu").hash
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="people_per_image"):
        build_config("cpu", ["data.synth.spec.people_per_image=[3, 1]"])
    with pytest.raises(ValueError, match="no field 'crowds'"):
        build_config("cpu", ["data.synth.spec.crowds=3"])


def test_a_hash_neutral_field_at_its_default_leaves_the_hash_alone():
    from dataclasses import dataclass, field

    from ocdlib.configs import HASH_NEUTRAL_DEFAULT, _hash_dict

    @dataclass(frozen=True)
    class Old:
        a: int = 1

    @dataclass(frozen=True)
    class New:
        a: int = 1
        b: str = field(default="off", metadata=HASH_NEUTRAL_DEFAULT)

    assert _hash_dict(New()) == _hash_dict(Old())
    assert _hash_dict(New(b="on")) == {"a": 1, "b": "on"}


def test_a_tcd_run_hash_names_its_teacher_by_run_folder_not_by_location():
    a = build_config("cpu_tcd", ["loss.teacher_run=/home/a/ocd/runs/cpu_sb-0123456789-s0"])
    b = build_config("cpu_tcd", ["loss.teacher_run=runs/cpu_sb-0123456789-s0"])
    c = build_config("cpu_tcd", ["loss.teacher_run=runs/cpu_sb-9876543210-s0"])
    assert a.hash == b.hash != c.hash


def test_importing_the_configs_loads_neither_torch_nor_the_renderer():
    import subprocess
    import sys

    code = (
        "import sys, ocdlib.configs\n"
        "heavy = [m for m in ('torch', 'PIL', 'ocdlib.data.synthpose.image',"
        " 'ocdlib.data.dataset') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
