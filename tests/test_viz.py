"""Keypoint drawing: pixels change where points are drawn, and only there; grids; files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from ocdlib.data.synthpose import generate_synthpose
from ocdlib.metainfo import COCO_BODY, COCO_WHOLEBODY
from ocdlib.report.viz import (
    draw_pose,
    figure_to_array,
    keypoints_from_annotation,
    pose_grid,
    sample_figure,
    save_figure,
    side_by_side,
)

GREY = np.full((64, 48, 3), 128, dtype=np.uint8)


def _render(keypoints, info=COCO_BODY, **kwargs):
    """(rendered RGBA array, function mapping image (x, y) to array (row, col))."""
    fig = Figure(figsize=(2, 2), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    draw_pose(ax, GREY, keypoints, info, **kwargs)
    arr = figure_to_array(fig)

    def to_pixel(x, y):
        dx, dy = ax.transData.transform((x, y))
        return int(round(arr.shape[0] - dy)), int(round(dx))

    return arr, to_pixel


def _body(v: int, score: float | None = None) -> np.ndarray:
    kp = np.zeros((17, 3))
    kp[:, 0] = np.linspace(8, 40, 17)
    kp[:, 1] = np.linspace(8, 56, 17)
    kp[:, 2] = v if score is None else score
    return kp


def _changed(a, b, row, col, r=2) -> bool:
    return bool(
        np.any(
            a[row - r : row + r + 1, col - r : col + r + 1]
            != b[row - r : row + r + 1, col - r : col + r + 1]
        )
    )


def test_points_change_the_image_where_they_are_and_v0_is_not_drawn():
    plain, to_pixel = _render(np.zeros((0, 17, 3)))
    kp = _body(2)
    kp[16] = (24.0, 60.0, 0)  # unlabelled: must leave its pixels alone
    drawn, _ = _render(kp)
    for x, y, _ in kp[:16]:
        assert _changed(plain, drawn, *to_pixel(x, y)), (x, y)
    row, col = to_pixel(24.0, 60.0)
    assert not _changed(plain, drawn, row, col, r=1)


def test_hidden_points_are_hollow_and_low_scores_are_skipped():
    points_only = dataclasses.replace(COCO_BODY, skeleton=())  # no links through the centres
    plain, to_pixel = _render(np.zeros((0, 17, 3)))
    one = np.zeros((17, 3))
    one[8] = (24.0, 32.0, 2)
    filled, _ = _render(one, points_only, radius=200)
    one[8, 2] = 1
    hollow, _ = _render(one, points_only, radius=200)
    row, col = to_pixel(24.0, 32.0)
    assert _changed(plain, hollow, row, col, r=8)  # the ring itself is drawn
    assert np.array_equal(hollow[row, col], plain[row, col])  # the ring's centre stays clear
    assert not np.array_equal(filled[row, col], plain[row, col])
    low, _ = _render(_body(0, score=0.1), score_thr=0.3)
    assert np.array_equal(low, plain)
    high, _ = _render(_body(0, score=0.9), score_thr=0.3)
    assert not np.array_equal(high, plain)


def test_wrong_keypoint_count_names_the_layout():
    fig = Figure()
    with pytest.raises(ValueError, match="17 keypoints"):
        draw_pose(fig.add_subplot(), GREY, np.zeros((5, 3)), COCO_BODY)


def test_grid_side_by_side_and_save(tmp_path):
    pairs = [(GREY, _body(2)), (GREY, np.stack([_body(2), _body(1)])), (GREY, _body(1))]
    fig = pose_grid(pairs, COCO_BODY, ncols=2, titles=["a", "b", "c"])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4 and [ax.get_title() for ax in fig.axes[:3]] == ["a", "b", "c"]
    fig = side_by_side(GREY, {"ground truth": _body(2), "OCD": _body(0, score=0.8)}, COCO_BODY)
    assert [ax.get_title() for ax in fig.axes] == ["ground truth", "OCD"]
    path = save_figure(fig, tmp_path / "deep" / "folder" / "pair.png")
    assert path.is_file() and path.stat().st_size > 1000


def test_wholebody_annotation_to_keypoints(coco_sample_dir):
    coco = json.loads((coco_sample_dir / "test_coco_wholebody.json").read_text())
    ann = next(a for a in coco["annotations"] if a["righthand_valid"])
    kp = keypoints_from_annotation(ann, COCO_WHOLEBODY)
    assert kp.shape == (133, 3)
    assert set(np.unique(kp[:, 2])) <= {0.0, 1.0, 2.0}
    assert np.allclose(
        kp[:17, :2].ravel(), np.asarray(ann["keypoints"]).reshape(17, 3)[:, :2].ravel()
    )
    with pytest.raises(KeyError, match="foot_kpts"):
        keypoints_from_annotation({"id": 1, "keypoints": [0] * 51}, COCO_WHOLEBODY)


def test_sample_figure_draws_synthpose_and_coco(tmp_path, coco_sample_dir):
    body, wb = tmp_path / "body", tmp_path / "wb"
    generate_synthpose(body, 0, 3, seed=1, image_size=(96, 96), progress=False)
    generate_synthpose(wb, 0, 2, seed=1, wholebody=True, image_size=(96, 96), progress=False)
    out = tmp_path / "figs" / "samples.png"
    fig = sample_figure([body, wb], coco_sample_dir, out, n_synth=3)
    assert out.is_file()
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert sum(t.startswith("SynthPose WB") for t in titles) == 2
    assert sum(t.startswith("SynthPose ") and "WB" not in t for t in titles) == 3
    assert sum(t.startswith("COCO ") for t in titles) == 4
    assert sum(t.startswith("COCO-WB ") for t in titles) == 4
