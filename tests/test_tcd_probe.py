"""The TCD path: what the frozen teacher sees and what terms b and c receive from it.

Each test would catch one way a frozen teacher could hurt for a wrong reason: a decode
that loses the teacher's accuracy, a teacher fed other crops or run in training mode or
another precision, targets in another coordinate convention than the ground truth's."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ocdlib.codecs import normalized_to_heatmap
from ocdlib.engine.evaluate import predict_dataset
from ocdlib.engine.precision import Precision
from ocdlib.engine.trainer import forward_loss
from ocdlib.grid import tcd_probe
from ocdlib.grid.catalogue import OCD_DEEPPOSE, SIMPLEBASELINE, TCD_DEEPPOSE
from ocdlib.grid.gather import config_for
from ocdlib.profiles import NOTEBOOK_PROFILES as PROFILES
from ocdlib.runs.cache import get_run, run_dir


@pytest.fixture(scope="module")
def teacher_and_student(tmp_path_factory):
    root = tmp_path_factory.mktemp("tcdprobe")
    mp = pytest.MonkeyPatch()
    mp.setenv("OCDLIB_DATA", str(root / "data"))
    mp.setenv("OCDLIB_RUNS", str(root / "runs"))
    get_run(config_for(SIMPLEBASELINE, PROFILES["smoke"], 0), progress=False)
    yield root, config_for(TCD_DEEPPOSE, PROFILES["smoke"], 0)
    mp.undo()


def test_the_tcd_path_gives_the_teachers_own_keypoints_and_ap(teacher_and_student):
    root, cfg = teacher_and_student
    s = tcd_probe._setup(cfg)
    objective = tcd_probe._objective(cfg, s, tcd_probe.FP32)
    own = predict_dataset(objective.teacher, s.val_ds, "hm", cfg.data.input_size)
    via_tcd = tcd_probe._tcd_path_predictions(objective, s, tcd_probe.FP32)
    assert len(own) == len(via_tcd) == len(s.val_ds)
    for a, b in zip(own, via_tcd):
        assert a.image_id == b.image_id
        np.testing.assert_allclose(b.keypoints, a.keypoints, atol=1e-3)
        np.testing.assert_allclose(b.keypoint_scores, a.keypoint_scores, atol=1e-6)
    scores = tcd_probe.teacher_path_scores(cfg, root / "probe")
    ap = dict(zip(scores.iloc[:, 0], scores["AP"]))
    assert len(scores) == 4 and all(math.isfinite(v) for v in ap.values())
    assert ap["the TCD path, fp32"] == pytest.approx(ap["the teacher's own head, no flip test"])


class Spy(torch.nn.Module):
    """Wraps the teacher's backbone and records what it is called with."""

    def __init__(self, inner, calls):
        super().__init__()
        self.inner, self.calls = inner, calls

    def forward(self, x):
        self.calls.append(
            {
                "images": x,
                "training": any(m.training for m in self.inner.modules()),
                "autocast": torch.is_autocast_enabled("cpu"),
                "channels_last": x.is_contiguous(memory_format=torch.channels_last),
            }
        )
        return self.inner(x)


@pytest.mark.parametrize("autocast", [False, True])
def test_the_teacher_sees_the_students_augmented_crop_in_eval_mode_and_its_precision(
    teacher_and_student, autocast
):
    _, cfg = teacher_and_student
    s = tcd_probe._setup(cfg)
    precision = Precision(autocast=autocast, channels_last=autocast)
    objective = tcd_probe._objective(cfg, s, precision)
    calls = []
    objective.teacher.backbone = Spy(objective.teacher.backbone, calls)
    s.train_ds.set_epoch(0)
    batch = next(iter(DataLoader(s.train_ds, batch_size=8, shuffle=False)))
    student = precision.model(tcd_probe._student(cfg, s.info, s.device)).train()
    objective.train()
    seen = {}

    def keep_images(module, args):
        seen["images"] = args[0]

    student.backbone.register_forward_pre_hook(keep_images)
    forward_loss(student, objective, batch, step=0, precision=precision, device=s.device)
    (call,) = calls
    assert call["images"] is seen["images"]  # the very tensor the student saw (flip, warp)
    assert not call["training"] and not objective.teacher.training
    assert call["autocast"] == autocast and call["channels_last"] == autocast


def test_distillation_targets_use_the_ground_truths_normalisation_and_codec(
    teacher_and_student,
):
    _, cfg = teacher_and_student
    s = tcd_probe._setup(cfg)
    # The OCD config's dataset renders heatmap targets beside the regression ones.
    ocd = config_for(OCD_DEEPPOSE, PROFILES["smoke"], 0)
    s_ocd = tcd_probe._setup(ocd)
    objective = tcd_probe._objective(cfg, s, Precision(False, False))
    s_ocd.train_ds.set_epoch(0)
    batch = next(iter(DataLoader(s_ocd.train_ds, batch_size=16, shuffle=False)))
    target, labelled = batch["reg_target"], batch["reg_weight"] > 0
    hm = batch["hm_target"].float()
    # dec() of a ground-truth heatmap gives the regression target back, to a fraction of
    # a heatmap pixel (the map's own sampling), in the same normalised coordinates.
    decoded = objective.decode(hm)
    size = (hm.shape[-1], hm.shape[-2])
    gap = normalized_to_heatmap(decoded - target, cfg.data.input_size, size).abs()
    assert labelled.any() and gap[labelled].max() < 0.25
    # enc() of the regression target at the data's sigma is the ground-truth heatmap.
    rendered = objective.render(target, size, cfg.data.sigma)
    assert (rendered - hm)[labelled].abs().max() < 1e-4
    assert objective.reg_loss(target, decoded, labelled.float()) < 0.25 / min(size)


def test_source_probe_measures_teacher_and_online_head_at_each_stop(teacher_and_student):
    _, cfg = teacher_and_student
    ocd = config_for(OCD_DEEPPOSE, PROFILES["smoke"], 0)
    runs = {"TCD-DeepPose": (cfg, run_dir(cfg)), "OCD-DeepPose": (ocd, run_dir(ocd))}
    table = tcd_probe.source_probe(runs, stops=[1], n_batches=1, out=lambda *a: None)
    epochs = cfg.train.epochs
    got = {(r.run, r.epoch, r.source) for r in table.itertuples()}
    assert got == {
        (run, e, source)
        for e in sorted({1, epochs})
        for run, sources in (
            ("TCD-DeepPose", ["teacher"]),
            ("OCD-DeepPose", ["teacher", "online head"]),
        )
        for source in sources
    }
    for column in ("source error (px)", "source PCK", "m, labelled", "|grad b|", "|grad c|"):
        assert table[column].notna().all() and (table[column] >= 0).all(), column
    # Both runs ended as the grid's runs: finished, in the run cache.
    assert all((d / "result.json").is_file() for _, d in runs.values())


def test_the_grid_probe_trains_the_teacher_before_its_student_from_an_empty_cache(homes):
    """`reproduce` runs the probe before the grid: from an empty run cache it must train
    SimpleBaseline's first seed (TCD's teacher) first, not fail on its missing folder."""
    profile = PROFILES["smoke"]
    teacher = config_for(SIMPLEBASELINE, profile, 0)
    assert not run_dir(teacher).exists()
    table = tcd_probe.grid_probe(profile, n_batches=1, out=lambda *a, **k: None, train=True)
    assert (run_dir(teacher) / "result.json").is_file()
    assert len(table) > 0
