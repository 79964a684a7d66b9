"""Placing figures in the image."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...synth_spec import SynthPoseSpec
from .layout import NUM_WB
from .poses import _Body, _build_body
from .rotations import _UP, _X, _choose, _clip, _mm, _rot
from .textures import uniform


@dataclass
class _Placed:
    body: _Body
    xy: np.ndarray  # (NUM_POINTS, 2) image pixels
    depth: np.ndarray  # (NUM_POINTS,) towards the camera
    facing: np.ndarray  # (NUM_POINTS,) normal component towards the camera (0 if n/a)
    scale: float  # pixels per body height
    order_key: float = 0.0


def _view(rng: np.random.Generator, spec: SynthPoseSpec, body: _Body) -> tuple:
    """Rotate the body into the camera frame; return 2D points (height units), depth, facing."""
    view = _choose(rng, spec.viewpoint_weights)
    yaw = (0.0, 180.0, 90.0 if rng.random() < 0.5 else -90.0)[view]
    yaw += rng.normal(0, spec.yaw_jitter_deg)
    R = np.array(_mm(_rot(_X, rng.normal(0, spec.camera_pitch_deg)), _rot(_UP, yaw)))
    P = body.points @ R.T
    facing = (body.normals @ R.T)[:, 2]
    if rng.random() < spec.large_rotation_prob:
        roll = uniform(rng, -180, 180)
    else:
        roll = rng.normal(0, spec.rotation_std_deg)
    c, s = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    x, y = P[:, 0], -P[:, 1]  # image y points down
    xy = np.empty((len(x), 2))
    xy[:, 0], xy[:, 1] = c * x - s * y, s * x + c * y
    return xy, P[:, 2], facing


def _place_people(rng: np.random.Generator, spec: SynthPoseSpec, height: int, width: int):
    """Pose, view, scale and place every figure of an image; returned back to front."""
    n = int(rng.integers(spec.people_per_image[0], spec.people_per_image[1] + 1))
    lo, hi = spec.person_height
    people: list[_Placed] = []
    for _ in range(n):
        body = _build_body(rng, spec)
        xy, depth, facing = _view(rng, spec, body)
        scale = math.exp(uniform(rng, math.log(lo), math.log(hi))) * height
        xy = xy * scale
        margin = 0.07 * scale
        x0, y0 = xy.min(0) - margin
        x1, y1 = xy.max(0) + margin
        bw, bh = x1 - x0, y1 - y0
        if people and rng.random() < spec.group_prob:
            ref = people[int(rng.integers(len(people)))]
            rx0, ry0 = ref.xy[:NUM_WB].min(0)
            rx1, ry1 = ref.xy[:NUM_WB].max(0)
            # Beside the other figure, overlapping it partly (a full overlap is rare in photos).
            offset = uniform(rng, *spec.group_offset) * (1.0 if rng.random() < 0.5 else -1.0)
            cx = (rx0 + rx1) / 2 + offset * max(rx1 - rx0, bw)
            cy = (ry0 + ry1) / 2 + uniform(rng, -0.25, 0.25) * (ry1 - ry0)
        else:
            cx = uniform(rng, min(bw / 2, width / 2), max(width - bw / 2, width / 2))
            cy = uniform(rng, min(bh / 2, height / 2), max(height - bh / 2, height / 2))
        # Keep the figure in the image unless it is meant to be truncated.
        cx = _clip(cx, min(bw / 2, width / 2), max(width - bw / 2, width / 2))
        cy = _clip(cy, min(bh / 2, height / 2), max(height - bh / 2, height / 2))
        if rng.random() < spec.truncation_prob:
            out = uniform(rng, 0.15, 0.5)
            side = int(rng.integers(4))
            if side == 0:
                cx = -bw / 2 + bw * (1 - out)
            elif side == 1:
                cx = width + bw / 2 - bw * (1 - out)
            elif side == 2:
                cy = -bh / 2 + bh * (1 - out)
            else:
                cy = height + bh / 2 - bh * (1 - out)
        xy = xy + np.array([cx - (x0 + x1) / 2, cy - (y0 + y1) / 2])
        people.append(
            _Placed(body, xy, depth, facing, scale, order_key=scale * uniform(rng, 0.75, 1.25))
        )
    # Larger (closer) figures tend to be in front.
    people.sort(key=lambda p: p.order_key)
    return people
