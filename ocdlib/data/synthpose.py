"""SynthPose: a procedural, deterministic human pose benchmark in COCO keypoint format.

COCO and days of GPU time are out of reach on a small CPU, so the kit renders
its own benchmark (docs/METHOD.md, section 'SynthPose'). Each image holds a few articulated
figures posed in 3D within joint limits (standing, walking, running, sitting,
crouching, reaching, kicking, random), seen from the front, back or side, over
a cluttered background, partly hidden by each other and by objects, with
camera blur, noise and lighting. The files are standard COCO (or
COCO-WholeBody) keypoint annotations, so the same dataset, training and
COCOeval code runs on SynthPose and on COCO. Left and right differ only by
subtle cues: the figure's left limbs are a shade darker (`left_shade`), and the
face (front) or hair (back) tells which way the figure faces.

Labelling rules (the COCO conventions, made exact by the renderer):

- v=2: the keypoint's pixel shows the figure's own body part at that joint
  (e.g. the upper arm or forearm for an elbow) or bare background.
- v=1: inside the image but covered: by another figure or an object drawn in
  front, by another part of the same figure (an arm across the chest hides the
  far shoulder), or, for the nose, eyes and ears, by the head itself when that
  point faces away from the camera (a figure seen from the back has v=1 eyes;
  an ear stays visible until the head turns about 30 degrees away from it).
  With the default spec about a third of the labelled body keypoints are v=1,
  mostly from overlapping figures and side views.
- v=0: outside the image (coordinates written as 0, 0 as in COCO).
- COCO-WholeBody face points are labelled only when the face is turned towards
  the camera (like the official annotations); then points on its far side are v=1.
- A figure whose visible silhouette is empty is not annotated. A figure with
  fewer than `min_keypoints` labelled body keypoints, or a visible silhouette
  under `min_area_frac` of the image, is annotated like COCO's unlabelled people:
  box and area, all keypoints 0 and num_keypoints=0 (training and COCOeval skip it).
- bbox and area come from the visible silhouette (as COCO derives them from
  the segmentation of what is visible); segmentation is left empty.

The image is a pure function of (seed, split, index, image_size, spec): the body
and whole-body variants of one seed show the same images, only the annotation
files differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..errors import ConfigError, ExistingRunError
from ..metainfo import BODY_NAMES, BODY_SKELETON, COCO_WHOLEBODY
from .synth_textures import (
    HAIR_COLOURS,
    SKIN_TONES,
    background,
    camera_effects,
    capsule_polygons,
    ellipse_points,
    jitter_colour,
    random_colour,
    random_shape,
    shade,
    uniform,
)

# Bump whenever rendering or labelling changes, so cached copies are regenerated.
SYNTHPOSE_VERSION = 1

POSE_MODES = ("stand", "walk", "run", "sit", "crouch", "reach", "kick", "random")
SPLITS = ("train", "val")


@dataclass(frozen=True)
class SynthPoseSpec:
    """Difficulty knobs of SynthPose. Ranges are (low, high), drawn uniformly unless noted."""

    # --- figures
    people_per_image: tuple[int, int] = (1, 4)  # figures per image (at most 16)
    person_height: tuple[float, float] = (0.4, 0.9)  # standing height / image height, log-uniform
    group_prob: float = 0.6  # chance an extra figure stands beside one already placed (overlap)
    group_offset: tuple[float, float] = (0.2, 0.9)  # its centre offset / the wider figure's width
    truncation_prob: float = 0.15  # chance a figure is pushed partly out of the image
    proportion_jitter: float = 0.07  # relative std of each segment length and width
    limb_thickness: tuple[float, float] = (0.8, 1.35)  # multiplier on all limb radii of a figure
    viewpoint_weights: tuple[float, float, float] = (0.45, 0.25, 0.30)  # front, back, side views
    yaw_jitter_deg: float = 25.0  # std of body yaw around its viewpoint
    camera_pitch_deg: float = 10.0  # std of camera elevation (foreshortening of the body)
    rotation_std_deg: float = 10.0  # std of in-plane rotation of a figure
    large_rotation_prob: float = 0.05  # chance of a uniform in-plane rotation (lying, acrobatics)
    pose_weights: tuple[float, ...] = (0.18, 0.18, 0.1, 0.1, 0.08, 0.16, 0.06, 0.14)  # POSE_MODES
    joint_noise_deg: float = 10.0  # std of noise on every joint angle of a pose mode
    left_shade: float = 0.82  # brightness of a figure's left limbs vs its right: the subtle L/R cue
    outline_prob: float = 0.7  # chance that a figure's parts carry a darker outline
    short_sleeves_prob: float = 0.4  # chance of bare forearms
    shorts_prob: float = 0.3  # chance of bare shins
    # --- scene
    occluders: tuple[int, int] = (0, 2)  # objects drawn in front of the figures
    occluder_size: tuple[float, float] = (0.1, 0.35)  # occluder extent / image side
    occluder_on_person_prob: float = 0.75  # chance an occluder is centred on a figure's keypoint
    clutter_shapes: tuple[int, int] = (4, 18)  # random shapes in the background
    limb_clutter_prob: float = 0.3  # share of clutter that is limb-like (tapered jointed chains)
    pattern_prob: float = 0.3  # chance of stripes or a checkerboard behind everything
    texture_strength: float = 1.0  # amplitude of background grain (0: none)
    background_variation: float = 1.0  # colour variation of the smooth background field
    # --- camera
    lighting: float = 0.35  # largest amplitude of a linear light gradient across the image
    brightness: tuple[float, float] = (0.75, 1.2)  # global gain
    colour_cast: float = 0.06  # std of a per-channel gain
    blur_prob: float = 0.3  # chance of defocus blur
    blur_factor: tuple[float, float] = (1.3, 2.5)  # blur strength (down-sampling factor)
    noise_prob: float = 0.5  # chance of sensor noise
    noise_std: tuple[float, float] = (2.0, 8.0)  # noise std in grey levels
    jpeg_quality: int = 90
    # --- labelling
    min_keypoints: int = 3  # fewer labelled body keypoints: annotated with num_keypoints=0
    min_area_frac: float = 0.002  # smaller visible silhouette / image area: num_keypoints=0

    def __post_init__(self):
        def bad(name, why, fix):
            raise ConfigError(f"SynthPoseSpec.{name}={getattr(self, name)!r}: {why}; {fix}")

        for name in (
            "people_per_image",
            "person_height",
            "group_offset",
            "limb_thickness",
            "occluders",
            "occluder_size",
            "clutter_shapes",
            "brightness",
            "blur_factor",
            "noise_std",
        ):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                bad(name, "expected (low, high) with 0 <= low <= high", "swap or fix the bounds")
        if not 1 <= self.people_per_image[0] or self.people_per_image[1] > MAX_PEOPLE:
            bad("people_per_image", f"must lie in 1..{MAX_PEOPLE}", "lower the upper bound")
        if len(self.pose_weights) != len(POSE_MODES) or min(self.pose_weights) < 0:
            bad("pose_weights", f"need {len(POSE_MODES)} weights >= 0 for {POSE_MODES}", "fix it")
        if sum(self.pose_weights) <= 0:
            bad("pose_weights", "all weights are zero", "give at least one mode a weight")
        if len(self.viewpoint_weights) != 3 or sum(self.viewpoint_weights) <= 0:
            bad("viewpoint_weights", "need 3 weights (front, back, side)", "fix it")
        if self.blur_factor[0] < 1.0:
            bad("blur_factor", "must be >= 1 (1 = no blur)", "raise the lower bound")
        if not 1 <= self.jpeg_quality <= 100:
            bad("jpeg_quality", "must lie in 1..100", "use e.g. 90")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthPoseSpec:
        """Inverse of dataclasses.asdict (lists back to tuples), naming unknown fields."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown SynthPoseSpec field(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


MAX_PEOPLE = 16  # label maps are 8-bit: 1 + person * NUM_PARTS + part must stay below 255

# ---------------------------------------------------------------------------
# Point layout: the 133 COCO-WholeBody keypoints first, then drawing helpers.

# Part offsets come from the COCO-WholeBody layout (body 17, feet 6, face 68, hands 21 + 21).
NUM_WB = COCO_WHOLEBODY.num_keypoints
FOOT0, FACE0, LHAND0, RHAND0 = (
    COCO_WHOLEBODY.part_slice(part).start for part in ("foot", "face", "lefthand", "righthand")
)
NECK_BASE, NECK_TOP, HEAD_C, HEAD_UP, PELVIS = 133, 134, 135, 136, 137
WAIST_L, WAIST_R, TOE_L, TOE_R = 138, 139, 140, 141
HAIRLINE0 = 142  # five points over the forehead, from the figure's left temple to its right
NUM_POINTS = 147

# Body parts: each keypoint is "visible" only where its own parts are on top.
HEAD, NECK, TORSO = 0, 1, 2
UARM, FARM, HAND, THIGH, SHIN, FOOT = (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14)
NUM_PARTS = 15
OCCLUDER_LABEL = 255

LEFT, RIGHT = 0, 1  # index into the (left, right) part pairs; side sign s = +1 left, -1 right


def _allowed_parts() -> np.ndarray:
    allowed = np.zeros((NUM_WB, NUM_PARTS), dtype=bool)
    allowed[0:5, HEAD] = True
    for i, side in ((0, LEFT), (1, RIGHT)):
        allowed[5 + i, [TORSO, UARM[side]]] = True
        allowed[7 + i, [UARM[side], FARM[side]]] = True
        allowed[9 + i, [FARM[side], HAND[side]]] = True
        allowed[11 + i, [TORSO, THIGH[side]]] = True
        allowed[13 + i, [THIGH[side], SHIN[side]]] = True
        allowed[15 + i, [SHIN[side], FOOT[side]]] = True
        allowed[FOOT0 + 3 * i : FOOT0 + 3 * i + 3, FOOT[side]] = True
        allowed[FOOT0 + 3 * i + 2, SHIN[side]] = True  # heel
        hand0 = LHAND0 if side == LEFT else RHAND0
        allowed[hand0 : hand0 + 21, HAND[side]] = True
        allowed[hand0, FARM[side]] = True  # hand root = wrist
    allowed[FACE0 : FACE0 + 68, HEAD] = True
    return allowed


ALLOWED_PARTS = _allowed_parts()
HEAD_POINTS = np.r_[0:5, FACE0 : FACE0 + 68]  # points that can face away from the camera
# A head point is hidden by its own head when its surface normal's component
# towards the camera is below this. Ears protrude: the far ear stays visible
# until the head has turned about 30 degrees away from the camera.
FACING_MIN = np.zeros(NUM_WB)
FACING_MIN[[3, 4]] = -0.5


def _face_template() -> np.ndarray:
    """The 68 iBUG face points on a unit head: x towards the figure's left, y down.

    Order follows iBUG / COCO-WholeBody: jaw from the figure's right temple to its
    left, right brow, left brow, nose bridge, nose base, right eye, left eye,
    outer lip, inner lip.
    """
    pts = []
    for i in range(17):  # jaw
        t = math.pi * (1.0 - i / 16.0)
        pts.append((0.84 * math.cos(t) * (1 - 0.12 * math.sin(t)), 0.02 + 0.9 * math.sin(t)))
    for x0, x1 in ((-0.62, -0.12), (0.12, 0.62)):  # brows
        for k in range(5):
            x = x0 + (x1 - x0) * k / 4
            pts.append((x, -0.34 - 0.07 * math.sin(math.pi * k / 4)))
    for k in range(4):  # nose bridge, down to the tip
        pts.append((0.0, -0.2 + 0.16 * k))
    for x, y in ((-0.17, 0.36), (-0.09, 0.39), (0.0, 0.41), (0.09, 0.39), (0.17, 0.36)):
        pts.append((x, y))
    # Eyes, each from its image-left corner over the upper lid and back along the
    # lower lid: outer-to-inner for the right eye, inner-to-outer for the left.
    for cx in (-0.33, 0.33):
        w, h, cy = 0.14, 0.055, -0.12
        xs = (cx - w, cx - w / 3, cx + w / 3, cx + w, cx + w / 3, cx - w / 3)
        ys = (cy, cy - h, cy - h, cy, cy + h, cy + h)
        pts.extend(zip(xs, ys))
    outer = (
        (-0.26, 0.6), (-0.16, 0.55), (-0.06, 0.53), (0.0, 0.545), (0.06, 0.53), (0.16, 0.55),
        (0.26, 0.6), (0.17, 0.67), (0.07, 0.7), (0.0, 0.705), (-0.07, 0.7), (-0.17, 0.67),
    )  # fmt: skip
    inner = (
        (-0.2, 0.6), (-0.07, 0.585), (0.0, 0.59), (0.07, 0.585),
        (0.2, 0.6), (0.07, 0.625), (0.0, 0.63), (-0.07, 0.625),
    )  # fmt: skip
    pts.extend(outer)
    pts.extend(inner)
    return np.asarray(pts, dtype=np.float64)


FACE_TEMPLATE = _face_template()
HAIRLINE_TEMPLATE = np.array(
    [(0.84, -0.05), (0.6, -0.48), (0.0, -0.68), (-0.6, -0.48), (-0.84, -0.05)]
)
_HAIRLINE_LOCAL = np.stack(
    [
        HAIRLINE_TEMPLATE[:, 0],
        -1.12 * HAIRLINE_TEMPLATE[:, 1],
        1.05 * np.sqrt(np.clip(1.0 - (HAIRLINE_TEMPLATE**2).sum(1), 0.04, None)),
    ],
    axis=1,
)
# Nose points stand out of the head sphere.
_NOSE_LIFT = np.zeros(68)
_NOSE_LIFT[27:36] = (0.04, 0.09, 0.15, 0.22, 0.08, 0.1, 0.12, 0.1, 0.08)

# ---------------------------------------------------------------------------
# Small rotation helpers (degrees). Frame: x = figure's left, y = up, z = forward.

# Plain-tuple 3D vector algebra: at this size (a few hundred operations per
# figure) Python floats are several times faster than numpy's per-call cost.
# A matrix is a tuple of three row tuples.
_UP = (0.0, 1.0, 0.0)
_X = (1.0, 0.0, 0.0)
_Z = (0.0, 0.0, 1.0)


def _add(*vs):
    x = y = z = 0.0
    for v in vs:
        x += v[0]
        y += v[1]
        z += v[2]
    return (x, y, z)


def _mul(v, c: float):
    return (v[0] * c, v[1] * c, v[2] * c)


def _dot(a, b) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _unit(v, fallback):
    n = math.sqrt(_dot(v, v))
    return (v[0] / n, v[1] / n, v[2] / n) if n > 1e-6 else fallback


def _mv(M, v):
    """Matrix times vector."""
    return (_dot(M[0], v), _dot(M[1], v), _dot(M[2], v))


def _mm(A, B):
    """Matrix product."""
    cols = tuple(zip(*B))
    return tuple(tuple(_dot(row, col) for col in cols) for row in A)


def _col(M, i: int):
    return (M[0][i], M[1][i], M[2][i])


def _rot(axis, deg: float):
    """Rotation matrix of `deg` degrees about `axis` (right-hand rule)."""
    x, y, z = axis
    n = math.sqrt(x * x + y * y + z * z)
    x, y, z = x / n, y / n, z / n
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    C = 1.0 - c
    return (
        (c + x * x * C, x * y * C - z * s, x * z * C + y * s),
        (y * x * C + z * s, c + y * y * C, y * z * C - x * s),
        (z * x * C - y * s, z * y * C + x * s, c + z * z * C),
    )


def _swing(abduction: float, flexion: float):
    """Rotation of a limb hanging down: sideways by `abduction`, then forward by `flexion`.

    Closed form of Rx(-flexion) @ Rz(abduction). Column 1 negated is the limb's
    direction; column 0 negated is its rest hinge axis (elbow, knee), which must
    turn with the limb: a hinge axis derived from the limb direction alone
    degenerates when the limb points forward (a seated thigh).
    """
    a, f = math.radians(abduction), math.radians(flexion)
    ca, sa, cf, sf = math.cos(a), math.sin(a), math.cos(f), math.sin(f)
    return ((ca, -sa, 0.0), (cf * sa, cf * ca, sf), (-sf * sa, -sf * ca, cf))


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def _choose(rng: np.random.Generator, weights) -> int:
    """Index drawn with probability proportional to `weights` (cheaper than rng.choice)."""
    cum = np.cumsum(weights)
    return min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(cum) - 1)


# ---------------------------------------------------------------------------
# Poses: a mode (standing, walking, ...) sets mean joint angles, noise spreads them.

LIMITS = {
    "arm_abd": (-10, 180),  # shoulder abduction, 0 = hanging, 90 = horizontal to the side
    "arm_flex": (-70, 180),  # shoulder flexion, positive = forward/up
    "elbow": (0, 155),
    "elbow_twist": (-40, 100),  # rotation of the elbow's bending plane (positive = inwards)
    "wrist": (-60, 60),
    "hip_flex": (-40, 130),  # positive = thigh forward
    "hip_abd": (-15, 60),
    "knee": (0, 155),
    "toe_out": (-15, 35),
    "ankle": (-25, 45),  # positive = toes down
    "lean_fwd": (-25, 60),
    "lean_side": (-30, 30),
    "twist": (-40, 40),
    "head_yaw": (-70, 70),
    "head_pitch": (-35, 45),
    "head_roll": (-30, 30),
}


_SIDE_KEYS = (
    "arm_abd", "arm_flex", "elbow", "elbow_twist", "wrist",
    "hip_flex", "hip_abd", "knee", "toe_out", "ankle",
)  # fmt: skip
_STAND_LO = np.tile([3, -15, 0, 0, -20, -8, 0, 0, 0, -10], 2).astype(np.float64)
_STAND_HI = np.tile([25, 25, 35, 60, 20, 12, 12, 15, 20, 10], 2).astype(np.float64)


def _sample_pose(rng: np.random.Generator, spec: SynthPoseSpec) -> dict[str, Any]:
    mode = POSE_MODES[_choose(rng, spec.pose_weights)]

    def u(lo, hi):
        return uniform(rng, lo, hi)

    a: dict[str, Any] = {
        "lean_fwd": rng.normal(0, 5),
        "lean_side": rng.normal(0, 4),
        "twist": rng.normal(0, 8),
        "head_yaw": rng.normal(0, 25),
        "head_pitch": rng.normal(0, 12),
        "head_roll": rng.normal(0, 8),
    }
    # Standing defaults for both sides in one draw; modes below override some.
    std = rng.uniform(_STAND_LO, _STAND_HI).tolist()
    sides = [dict(zip(_SIDE_KEYS, std[:10])), dict(zip(_SIDE_KEYS, std[10:]))]
    if mode in ("walk", "run"):
        amp = u(15, 35) if mode == "walk" else u(30, 60)
        phase = u(0, 2 * math.pi)
        if mode == "run":
            a["lean_fwd"] += u(5, 20)
        for k, s in enumerate(sides):
            swing = amp * math.sin(phase + k * math.pi)
            s["hip_flex"] = swing
            s["knee"] = (
                u(0, 15) + max(0.0, -swing) * u(0.8, 2.0) + (u(20, 60) if mode == "run" else 0)
            )
            s["arm_flex"] = -0.8 * swing
            s["elbow"] = u(60, 110) if mode == "run" else u(5, 40)
    elif mode == "sit":
        a["lean_fwd"] += u(-10, 15)
        for s in sides:
            s.update(hip_flex=u(70, 105), knee=u(70, 110), hip_abd=u(0, 25))
            s.update(arm_flex=u(0, 60), elbow=u(20, 100))
    elif mode == "crouch":
        a["lean_fwd"] += u(20, 45)
        for s in sides:
            s.update(hip_flex=u(90, 130), knee=u(100, 150), hip_abd=u(5, 35), ankle=u(-25, 0))
            s.update(arm_flex=u(0, 90), elbow=u(0, 120))
    elif mode == "reach":
        for s in sides:
            if rng.random() < 0.75:
                s.update(arm_abd=u(40, 175), arm_flex=u(-20, 120), elbow=u(0, 120))
            s.update(hip_abd=u(0, 25))
    elif mode == "kick":
        k = int(rng.integers(2))
        sides[k].update(hip_flex=u(40, 110), knee=u(0, 70), hip_abd=u(0, 40), ankle=u(0, 40))
        a["lean_fwd"] += u(-20, 5)
        for s in sides:
            s.update(arm_abd=u(20, 100), arm_flex=u(-30, 60), elbow=u(0, 90))
    elif mode == "random":
        for key in ("lean_fwd", "lean_side", "twist"):
            a[key] = u(*LIMITS[key]) * 0.7
        for s in sides:
            for key in s:
                s[key] = u(*LIMITS[key])
    noise = spec.joint_noise_deg
    keys = list(a)
    for key, e in zip(keys, rng.normal(0, noise * 0.5, len(keys)).tolist()):
        a[key] = _clip(a[key] + e, *LIMITS[key])
    for s in sides:
        keys = list(s)
        for key, e in zip(keys, rng.normal(0, noise, len(keys)).tolist()):
            s[key] = _clip(s[key] + e, *LIMITS[key])
    a["sides"] = sides
    a["mode"] = mode
    return a


@dataclass
class _Body:
    """A figure in its own 3D frame (height 1) plus its look."""

    points: np.ndarray  # (NUM_POINTS, 3)
    normals: np.ndarray  # (NUM_POINTS, 3), non-zero for points that can face away
    radii: dict[str, float]
    look: dict[str, Any] = field(default_factory=dict)


def _build_body(rng: np.random.Generator, spec: SynthPoseSpec) -> _Body:
    """Forward kinematics: joint angles and jittered proportions -> 3D points."""
    ang = _sample_pose(rng, spec)
    j = spec.proportion_jitter

    def length(x):
        return x * (1.0 + _clip(rng.normal(0, j), -2.5 * j, 2.5 * j))

    head_r = length(0.062)
    neck, torso = length(0.045), length(0.29)
    shoulder_w, hip_w = length(0.105), length(0.062)
    upper_arm, forearm, hand_len = length(0.165), length(0.145), length(0.1)
    thigh, shin, foot_len = length(0.235), length(0.235), length(0.13)
    t = uniform(rng, *spec.limb_thickness)

    def radius(x):
        return x * t * (1.0 + _clip(rng.normal(0, 2 * j), -0.3, 0.3))

    radii = {
        "uarm0": radius(0.034), "uarm1": radius(0.027), "farm1": radius(0.019),
        "thigh0": radius(0.05), "thigh1": radius(0.037), "shin1": radius(0.024),
        "neck": radius(0.026), "torso": radius(0.062), "foot0": radius(0.02),
        "foot1": radius(0.025), "finger": radius(0.0085), "head": head_r,
    }  # fmt: skip

    P = np.zeros((NUM_POINTS, 3))
    Nrm = np.zeros((NUM_POINTS, 3))
    pts: dict[int, tuple] = {PELVIS: (0.0, 0.0, 0.0)}  # joints, written into P at the end
    R_torso = _mm(
        _mm(_rot(_Z, ang["lean_side"]), _rot(_X, ang["lean_fwd"])), _rot(_UP, ang["twist"])
    )
    side_t, up_t = _col(R_torso, 0), _col(R_torso, 1)
    R_pelvis = _rot(_UP, ang["twist"] * -0.3)
    side_p = _col(R_pelvis, 0)
    neck_base = _mul(up_t, torso)
    neck_top = _add(neck_base, _mul(up_t, neck))
    pts[NECK_BASE], pts[NECK_TOP] = neck_base, neck_top

    hand_dirs, palm_ns = [], []
    for k, s in ((LEFT, 1.0), (RIGHT, -1.0)):
        a = ang["sides"][k]
        # Arm.
        shoulder = _add(neck_base, _mul(up_t, -0.025), _mul(side_t, s * shoulder_w))
        M = _mm(R_torso, _swing(s * a["arm_abd"], a["arm_flex"]))
        d_ua, axis = _mul(_col(M, 1), -1.0), _mul(_col(M, 0), -1.0)
        elbow = _add(shoulder, _mul(d_ua, upper_arm))
        axis = _mv(_rot(d_ua, s * a["elbow_twist"]), axis)  # positive: forearm turns inwards
        d_fa = _mv(_rot(axis, a["elbow"]), d_ua)
        wrist = _add(elbow, _mul(d_fa, forearm))
        hand_dirs.append(_mv(_rot(axis, a["wrist"]), d_fa))
        palm_ns.append(_mul(axis, s))
        pts[5 + k], pts[7 + k], pts[9 + k] = shoulder, elbow, wrist
        # Leg.
        hip = _add(_mul(side_p, s * hip_w), (0.0, -0.02, 0.0))
        M = _mm(R_pelvis, _swing(s * a["hip_abd"], a["hip_flex"]))
        d_th, kaxis = _mul(_col(M, 1), -1.0), _mul(_col(M, 0), -1.0)
        knee = _add(hip, _mul(d_th, thigh))
        d_sh = _mv(_rot(kaxis, -a["knee"]), d_th)  # the knee bends backwards
        ankle = _add(knee, _mul(d_sh, shin))
        # The foot turns with the shin (knee + ankle about the same hinge), toes out a little.
        toe = math.radians(s * a["toe_out"])
        foot_rest = _mv(M, (math.sin(toe), 0.0, math.cos(toe)))
        foot_dir = _mv(_rot(kaxis, -(a["knee"] + a["ankle"])), foot_rest)
        lateral = _mul(_unit(_cross(_mul(d_sh, -1.0), foot_dir), side_p), s)
        heel = _add(ankle, _mul(d_sh, 0.035), _mul(foot_dir, -0.03))
        toe_mid = _add(heel, _mul(foot_dir, foot_len))
        pts[11 + k], pts[13 + k], pts[15 + k] = hip, knee, ankle
        f0 = FOOT0 + 3 * k
        pts[f0] = _add(toe_mid, _mul(lateral, -0.018))  # big toe (medial)
        pts[f0 + 1] = _add(toe_mid, _mul(foot_dir, -0.03), _mul(lateral, 0.024))  # small toe
        pts[f0 + 2] = heel
        pts[(TOE_L, TOE_R)[k]] = _add(toe_mid, _mul(foot_dir, -0.012))
        waist = _add(_mul(hip, 0.82), _mul(shoulder, 0.18), _mul(side_t, s * 0.01))
        pts[(WAIST_L, WAIST_R)[k]] = waist

    # Head: an ellipsoid on the neck, with the face template on its front.
    R_head = _mm(
        _mm(_mm(R_torso, _rot(_UP, ang["head_yaw"])), _rot(_X, ang["head_pitch"])),
        _rot(_Z, ang["head_roll"]),
    )
    side_h, up_h, fwd_h = _col(R_head, 0), _col(R_head, 1), _col(R_head, 2)
    c = _add(neck_top, _mul(up_h, head_r * 0.9), _mul(fwd_h, head_r * 0.1))
    pts[HEAD_C] = c
    pts[HEAD_UP] = _add(c, _mul(up_h, head_r * 1.12))
    for k, s in ((3, 1.0), (4, -1.0)):
        pts[k] = _add(
            c,
            _mul(side_h, s * 0.98 * head_r),
            _mul(fwd_h, -0.08 * head_r),
            _mul(up_h, -0.05 * head_r),
        )
        Nrm[k] = _mul(side_h, s)  # an ear stands out: see FACING_MIN
    P[list(pts)] = list(pts.values())
    _build_hands(rng, P, P[[9, 10]], hand_dirs, palm_ns, hand_len)

    c = np.array(c)
    R_head = np.array(R_head)
    # Face template and hairline on the ellipsoid (semi-axes 1, 1.12, 1.05 head radii).
    face = FACE_TEMPLATE * rng.uniform(0.92, 1.08, (1, 2)) + rng.normal(0, 0.012, (68, 2))
    fx, fy = face[:, 0], face[:, 1]
    fz = np.sqrt(np.clip(1.0 - fx**2 - fy**2, 0.04, None))
    local = np.empty((73, 3))
    local[:68, 0], local[:68, 1], local[:68, 2] = fx, -1.12 * fy, 1.05 * fz + _NOSE_LIFT
    local[68:] = _HAIRLINE_LOCAL
    P[FACE0 : FACE0 + 68] = c + head_r * (local[:68] @ R_head.T)
    P[HAIRLINE0 : HAIRLINE0 + 5] = c + head_r * (local[68:] @ R_head.T)
    normal = np.empty((68, 3))
    normal[:, 0], normal[:, 1], normal[:, 2] = fx, -fy, fz
    Nrm[FACE0 : FACE0 + 68] = normal @ R_head.T
    # COCO head keypoints: nose tip and eye centres (ears above).
    P[0], Nrm[0] = P[FACE0 + 30], fwd_h
    P[1], Nrm[1] = P[FACE0 + 42 : FACE0 + 48].sum(0) / 6, Nrm[FACE0 + 42 : FACE0 + 48].sum(0) / 6
    P[2], Nrm[2] = P[FACE0 + 36 : FACE0 + 42].sum(0) / 6, Nrm[FACE0 + 36 : FACE0 + 42].sum(0) / 6
    return _Body(points=P, normals=Nrm, radii=radii, look=_sample_look(rng, spec, ang["mode"]))


# Hand layout, thumb then fingers: base position along the hand and across it
# (towards the thumb), spread of the direction, length scale, curl share.
_HAND_BASE_ALONG = np.array([0.12, 0.42, 0.42, 0.42, 0.42])
_HAND_BASE_ACROSS = np.array([0.12, 0.11, 0.035, -0.04, -0.11])
_HAND_SPREAD = np.array([0.0, 0.12, 0.02, -0.08, -0.18])
_HAND_SEGMENTS = np.array(
    [
        [0.2, 0.16, 0.13],
        [0.24, 0.15, 0.11],
        [0.26, 0.16, 0.12],
        [0.25, 0.15, 0.11],
        [0.2, 0.12, 0.1],
    ]
)
_CURL_SHARE = np.array([1.0, 1.1, 0.8])


def _build_hands(rng, P, wrists, dirs_hand, palm_ns, hand_len) -> None:
    """21 points per hand: wrist root, then thumb and four fingers, each from base to tip.

    Arguments hold the left then the right hand (3-vectors). The palm faces
    `palm_ns` (towards the body for a hanging arm), turned by a random
    pronation; fingers curl in the plane of their direction and the palm
    normal, so every joint is a closed-form cos/sin step. Both hands are
    computed at once: at this size numpy's per-call cost dominates.
    """
    normals, thumbs = [], []
    for k, s in ((LEFT, 1.0), (RIGHT, -1.0)):
        d = dirs_hand[k]
        n = _mv(_rot(d, uniform(rng, -60, 90) * s), palm_ns[k])
        n = _unit(_add(n, _mul(d, -_dot(n, d))), _Z)
        normals.append(n)
        thumbs.append(_mul(_cross(n, d), s))
    n, thumb = np.array(normals)[:, None, :], np.array(thumbs)[:, None, :]  # (2, 1, 3)
    d = np.array(dirs_hand)[:, None, :]
    curl = rng.uniform(0, 85, (2, 1)) + rng.normal(0, 10, (2, 5))
    curl[:, 0] *= 0.6
    spread = rng.uniform(0.3, 1.5, (2, 1))
    bases = wrists[:, None, :] + hand_len * (
        _HAND_BASE_ALONG[None, :, None] * d + _HAND_BASE_ACROSS[None, :, None] * thumb
    )  # (2, 5, 3)
    fdirs = d + (_HAND_SPREAD * spread)[:, :, None] * thumb
    fdirs[:, 0] = 0.55 * d[:, 0] + 0.8 * thumb[:, 0] - 0.25 * n[:, 0]
    fdirs /= np.linalg.norm(fdirs, axis=2, keepdims=True)
    perp = n - (fdirs * n).sum(2, keepdims=True) * fdirs  # palm normal, minus its part along
    perp /= np.maximum(np.linalg.norm(perp, axis=2, keepdims=True), 1e-6)
    ang = np.radians(np.cumsum(np.maximum(curl, 0.0)[:, :, None] * _CURL_SHARE, axis=2))
    steps = (hand_len * _HAND_SEGMENTS)[None, :, :, None] * (
        np.cos(ang)[..., None] * fdirs[:, :, None, :] + np.sin(ang)[..., None] * perp[:, :, None, :]
    )  # (2, 5, 3, 3)
    block = np.concatenate([bases[:, :, None, :], bases[:, :, None, :] + np.cumsum(steps, 2)], 2)
    for k, h0 in ((LEFT, LHAND0), (RIGHT, RHAND0)):
        P[h0] = wrists[k]
        P[h0 + 1 : h0 + 21] = block[k].reshape(20, 3)


def _sample_look(rng: np.random.Generator, spec: SynthPoseSpec, mode: str) -> dict[str, Any]:
    """Colours of a figure: skin, hair, clothes (sleeves and shorts bare or not), outline."""
    skin = jitter_colour(rng, SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], 10)
    hair = (
        jitter_colour(rng, HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))], 10)
        if rng.random() < 0.92
        else shade(skin, 0.9)
    )
    shirt = random_colour(rng, sat=(0.2, 1.0), val=(0.2, 1.0))
    pants = random_colour(rng, sat=(0.1, 0.9), val=(0.12, 0.8))
    shoes = random_colour(rng, sat=(0.0, 0.6), val=(0.05, 0.6))
    sleeve = skin if rng.random() < spec.short_sleeves_prob else shirt
    shin = skin if rng.random() < spec.shorts_prob else pants
    return {
        "skin": skin,
        "hair": hair,
        "shirt": shirt,
        "pants": pants,
        "shoes": shoes,
        "sleeve": sleeve,
        "shin": shin,
        "lips": shade((skin[0], int(skin[1] * 0.75), int(skin[2] * 0.75)), 0.8),
        "outline": rng.random() < spec.outline_prob,
        "mode": mode,
    }


# ---------------------------------------------------------------------------
# Placing figures in the image.


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


# ---------------------------------------------------------------------------
# Drawing.


# Limbs as capsules: (start point, end point, start radius, end radius, look colour, part).
_LIMBS = tuple(
    (a + k, b + k, r0, r1, colour, part[k], tie, k)
    for k in (LEFT, RIGHT)
    for a, b, r0, r1, colour, part, tie in (
        (5, 7, "uarm0", "uarm1", "shirt", UARM, 1),
        (7, 9, "uarm1", "farm1", "sleeve", FARM, 2),
        (11, 13, "thigh0", "thigh1", "pants", THIGH, 1),
        (13, 15, "thigh1", "shin1", "shin", SHIN, 2),
    )
) + tuple(
    (FOOT0 + 3 * k + 2, (TOE_L, TOE_R)[k], "foot0", "foot1", "shoes", FOOT[k], 3, k)
    for k in (LEFT, RIGHT)
)
_LIMB_P0 = [limb[0] for limb in _LIMBS] + [NECK_BASE, NECK_BASE]
_LIMB_P1 = [limb[1] for limb in _LIMBS] + [PELVIS, NECK_TOP]


def _draw_person(draw, ldraw, person: _Placed, label_base: int, left_shade: float) -> None:
    """Paint one figure's parts back to front, into the image and the label map."""
    b, z, sc = person.body, person.depth, person.scale
    r = {k: v * sc for k, v in b.radii.items()}
    look = b.look
    xy = person.xy
    P = [tuple(p) for p in xy.tolist()]
    outline = look["outline"]

    def colours(name, k):
        fill = look[name] if k == RIGHT else shade(look[name], left_shade)
        return fill, (shade(fill, 0.55) if outline else None)

    # Every capsule of the figure in one vectorised call: limbs, torso core, neck.
    r0 = [r[limb[2]] for limb in _LIMBS] + [r["torso"], r["neck"]]
    r1 = [r[limb[3]] for limb in _LIMBS] + [r["torso"], r["neck"]]
    # Flat [x0, y0, x1, y1, ...] lists: PIL takes them without building point tuples.
    polys = capsule_polygons(xy[_LIMB_P0], xy[_LIMB_P1], r0, r1).reshape(len(r0), -1).tolist()

    def polygon(poly, fill, edge, label):
        def paint(d, ld):
            d.polygon(poly, fill=fill, outline=edge)
            ld.polygon(poly, fill=label)

        return paint

    parts = []  # (depth, tie-break, paint function)
    for i, (i0, i1, _, _, name, part, tie, k) in enumerate(_LIMBS):
        paint = polygon(polys[i], *colours(name, k), label_base + part)
        parts.append(((z[i0] + z[i1]) / 2, tie, paint))
    for k, h0 in ((LEFT, LHAND0), (RIGHT, RHAND0)):
        skin = colours("skin", k)[0]
        hand = _hand_part(P, h0, r["finger"], skin, label_base + HAND[k])
        parts.append((float(z[h0 : h0 + 21].sum()) / 21, 3, hand))

    torso_poly, neck_poly = polys[-2], polys[-1]

    def torso(d, ld):
        shirt, edge_s = colours("shirt", RIGHT)
        pants, edge_p = colours("pants", RIGHT)
        label = label_base + TORSO
        quad = [P[5], P[6], P[12], P[11]]
        hips = [P[WAIST_L], P[WAIST_R], P[12], P[11]]
        d.polygon(torso_poly, fill=shirt, outline=edge_s)
        d.polygon(quad, fill=shirt, outline=edge_s)
        d.polygon(hips, fill=pants, outline=edge_p)
        for poly in (torso_poly, quad, hips):
            ld.polygon(poly, fill=label)

    # Where head, neck and torso overlap (chin over chest) the head is in front
    # from any viewpoint, so they never sort behind the torso.
    z_torso = float(z[5] + z[6] + z[11] + z[12]) / 4
    z_neck = max(float(z[NECK_BASE] + z[NECK_TOP]) / 2, z_torso)
    parts.append((z_torso, 0, torso))
    parts.append((z_neck, 5, polygon(neck_poly, look["skin"], None, label_base + NECK)))
    head = _head_part(person, P, r["head"], label_base + HEAD)
    parts.append((max(float(z[HEAD_C]), z_neck), 6, head))
    parts.sort(key=lambda t: (t[0], t[1]))
    for _, _, paint in parts:
        paint(draw, ldraw)


def _hand_part(P, h0, finger_r, skin, label):
    """Painter of a hand: palm polygon and one polyline per finger, in skin and label."""

    def paint(d, ld):
        wr = P[h0]
        palm = [wr, P[h0 + 1], P[h0 + 2], P[h0 + 5], P[h0 + 9], P[h0 + 13], P[h0 + 17]]
        width = max(1, int(round(2 * finger_r)))
        for dd, colour in ((d, skin), (ld, label)):
            dd.polygon(palm, fill=colour)
            dd.line([P[h0 + 1], P[h0 + 2], P[h0 + 3], P[h0 + 4]], fill=colour, width=width)
            for f in range(4):
                i = h0 + 5 + 4 * f
                dd.line([P[i], P[i + 1], P[i + 2], P[i + 3]], fill=colour, width=width)

    return paint


def _head_part(person: _Placed, P, head_r, label):
    """Painter of a head: hair ellipse, ears, and a face with features when it faces us.

    The face polygon follows the iBUG jaw points and the hairline, so the
    whole-body face keypoints sit on visible edges; features (eyes, brows,
    nose, lips) are drawn only where their points face the camera.
    """
    look, facing = person.body.look, person.facing

    def paint(d, ld):
        cx, cy = P[HEAD_C]
        ux, uy = P[HEAD_UP]
        angle = math.atan2(uy - cy, ux - cx) + math.pi / 2
        outline = shade(look["hair"], 0.6) if look["outline"] else None
        head = ellipse_points(cx, cy, head_r, head_r * 1.12, angle)
        d.polygon(head, fill=look["hair"], outline=outline)
        ld.polygon(head, fill=label)
        skin = look["skin"]
        for k in (3, 4):  # ears
            if facing[k] >= FACING_MIN[k]:
                ex, ey = P[k]
                er = 0.22 * head_r
                d.ellipse((ex - er, ey - er, ex + er, ey + er), fill=shade(skin, 0.92))
                ld.ellipse((ex - er, ey - er, ex + er, ey + er), fill=label)
        if facing[0] <= -0.15:
            return  # seen from the back: only hair
        face = [P[FACE0 + i] for i in range(17)] + [P[HAIRLINE0 + i] for i in range(5)]
        d.polygon(face, fill=skin)
        feature = (30, 24, 22)
        f = FACE0

        def shown(i0, i1):
            return float(facing[f + i0 : f + i1].sum()) > 0.05 * (i1 - i0)

        if shown(36, 42):
            d.polygon([P[f + i] for i in range(36, 42)], fill=feature)
        if shown(42, 48):
            d.polygon([P[f + i] for i in range(42, 48)], fill=feature)
        if shown(17, 22):
            d.line([P[f + i] for i in range(17, 22)], fill=look["hair"], width=1)
        if shown(22, 27):
            d.line([P[f + i] for i in range(22, 27)], fill=look["hair"], width=1)
        if shown(27, 36):
            nose = shade(skin, 0.72)
            d.line([P[f + i] for i in range(27, 31)], fill=nose, width=1)
            d.line([P[f + i] for i in range(31, 36)], fill=nose, width=1)
        if shown(48, 60):
            d.polygon([P[f + i] for i in range(48, 60)], fill=look["lips"])

    return paint


# ---------------------------------------------------------------------------
# One image.


@dataclass
class SynthSample:
    """One rendered image with its figures' labels (before writing to COCO JSON)."""

    image: Image.Image
    label_map: np.ndarray  # (H, W) uint8: 0 background, 255 occluder, else 1 + person * 15 + part
    people: list[dict[str, Any]]  # per figure: keypoints (133, 3), bbox, area, num_keypoints, ...


def render_synthpose_image(
    seed: int,
    split: str,
    index: int,
    image_size: tuple[int, int] = (256, 256),
    spec: SynthPoseSpec = SynthPoseSpec(),  # noqa: B008 (frozen, so a safe default)
) -> SynthSample:
    """Render image `index` of `split`; a pure function of its arguments."""
    if split not in SPLITS:
        raise ConfigError(f"split {split!r}: expected one of {SPLITS}")
    height, width = (int(v) for v in image_size)
    rng = np.random.default_rng([int(seed), SPLITS.index(split), int(index)])

    img = background(rng, height, width, spec)
    labels = Image.new("L", (width, height), 0)
    draw, ldraw = ImageDraw.Draw(img), ImageDraw.Draw(labels)
    people = _place_people(rng, spec, height, width)
    for j, person in enumerate(people):
        _draw_person(draw, ldraw, person, 1 + j * NUM_PARTS, spec.left_shade)

    n_occ = int(rng.integers(spec.occluders[0], spec.occluders[1] + 1))
    side = min(height, width)
    for _ in range(n_occ):
        centre = None
        if people and rng.random() < spec.occluder_on_person_prob:
            person = people[int(rng.integers(len(people)))]
            centre = tuple(person.xy[int(rng.integers(17))])
        extent = side * uniform(rng, *spec.occluder_size)
        colour = random_colour(rng, sat=(0.0, 0.9), val=(0.15, 0.95))
        random_shape(rng, draw, height, width, extent, colour, ldraw, OCCLUDER_LABEL, centre)

    img = camera_effects(rng, img, spec)
    return SynthSample(img, np.asarray(labels), _label_people(people, labels, spec))


def _label_people(people: list[_Placed], labels: Image.Image, spec) -> list[dict[str, Any]]:
    """Keypoint visibility, visible-silhouette box and area of every figure from the label map."""
    width, height = labels.size
    label_map = np.asarray(labels)
    hist = labels.histogram()
    owner = np.zeros(256, dtype=np.int64)  # label -> person index + 1
    part = np.zeros(256, dtype=np.int64)
    for j in range(len(people)):
        owner[1 + j * NUM_PARTS : 1 + (j + 1) * NUM_PARTS] = j + 1
        part[1 + j * NUM_PARTS : 1 + (j + 1) * NUM_PARTS] = np.arange(NUM_PARTS)
    owner_map = owner.astype(np.uint8)[label_map]
    min_area = spec.min_area_frac * height * width
    kp_index = np.arange(NUM_WB)
    out = []
    for j, person in enumerate(people):
        lo, hi = 1 + j * NUM_PARTS, 1 + (j + 1) * NUM_PARTS
        area = sum(hist[lo:hi])
        if area == 0:
            continue  # entirely hidden or outside the image: not annotated
        mask = owner_map == j + 1
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        x0, y0, x1, y1 = cols[0], rows[0], cols[-1] + 1, rows[-1] + 1
        bbox = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]

        xy = person.xy[:NUM_WB]
        x, y = xy[:, 0], xy[:, 1]
        inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
        xi = np.minimum(np.maximum(np.rint(x), 0), width - 1).astype(np.int64)
        yi = np.minimum(np.maximum(np.rint(y), 0), height - 1).astype(np.int64)
        lab = label_map[yi, xi]
        own = (owner[lab] == j + 1) & ALLOWED_PARTS[kp_index, part[lab]]
        visible = (lab == 0) | own
        visible[HEAD_POINTS] &= person.facing[HEAD_POINTS] >= FACING_MIN[HEAD_POINTS]
        v = np.where(inside, np.where(visible, 2, 1), 0)
        if person.facing[0] < 0.0:  # face turned away: COCO-WholeBody leaves it unlabelled
            v[FACE0 : FACE0 + 68] = 0
        kps = np.zeros((NUM_WB, 3))
        kps[:, :2] = np.where(v[:, None] > 0, xy, 0.0)
        kps[:, 2] = v
        num = int((v[:17] > 0).sum())
        if num < spec.min_keypoints or area < min_area:
            kps[:] = 0.0
            num = 0
        out.append(
            {
                "keypoints": kps,
                "bbox": bbox,
                "area": float(area),
                "num_keypoints": num,
                "mode": person.body.look["mode"],
                "figure": j,  # draw order: its labels are 1 + j * NUM_PARTS + part
            }
        )
    return out


# ---------------------------------------------------------------------------
# COCO files.


def _round_kpts(kps: np.ndarray) -> list:
    out = []
    for x, y, v in kps.tolist():
        if v > 0:
            out += [round(x, 2), round(y, 2), int(v)]
        else:
            out += [0, 0, 0]
    return out


def _part_box(kps: np.ndarray, height: int, width: int) -> list[float]:
    lab = kps[kps[:, 2] > 0]
    if len(lab) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = lab[:, :2].min(0)
    x1, y1 = lab[:, :2].max(0)
    pad = 0.1 * max(x1 - x0, y1 - y0) + 1.0
    x0, y0 = max(0.0, x0 - pad), max(0.0, y0 - pad)
    x1, y1 = min(width - 1.0, x1 + pad), min(height - 1.0, y1 + pad)
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def _coco_annotation(person, ann_id, image_id, wholebody, height, width) -> dict[str, Any]:
    kps = person["keypoints"]
    ann = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "bbox": [round(v, 2) for v in person["bbox"]],
        "area": person["area"],
        "segmentation": [],
        "num_keypoints": person["num_keypoints"],
        "keypoints": _round_kpts(kps[:17]),
    }
    if wholebody:
        ann["foot_kpts"] = _round_kpts(kps[FOOT0:FACE0])
        ann["face_kpts"] = _round_kpts(kps[FACE0:LHAND0])
        ann["lefthand_kpts"] = _round_kpts(kps[LHAND0:RHAND0])
        ann["righthand_kpts"] = _round_kpts(kps[RHAND0:NUM_WB])
        for name, sl in (
            ("face", slice(FACE0, LHAND0)),
            ("lefthand", slice(LHAND0, RHAND0)),
            ("righthand", slice(RHAND0, NUM_WB)),
        ):
            ann[f"{name}_box"] = _part_box(kps[sl], height, width)
        for name, sl in (
            ("face", slice(FACE0, LHAND0)),
            ("lefthand", slice(LHAND0, RHAND0)),
            ("righthand", slice(RHAND0, NUM_WB)),
            ("foot", slice(FOOT0, FACE0)),
        ):
            ann[f"{name}_valid"] = bool((kps[sl, 2] > 0).any())
    return ann


def _categories() -> list[dict[str, Any]]:
    return [
        {
            "id": 1,
            "name": "person",
            "supercategory": "person",
            "keypoints": list(BODY_NAMES),
            "skeleton": [[a + 1, b + 1] for a, b in BODY_SKELETON],
        }
    ]


def _render_chunk(job) -> list[tuple[int, list[dict[str, Any]]]]:
    """Render and save images `indices` of one split (runs in a worker process)."""
    seed, split, indices, image_size, spec, image_dir = job
    out = []
    for index in indices:
        sample = render_synthpose_image(seed, split, index, image_size, spec)
        sample.image.save(
            Path(image_dir) / _file_name(index), format="JPEG", quality=spec.jpeg_quality
        )
        out.append((index, sample.people))
    return out


def _worker_pool(workers: int):
    """A process pool; forked on Linux, since a spawned worker re-imports torch (seconds)."""
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method).Pool(workers)


def _file_name(index: int) -> str:
    return f"{index + 1:07d}.jpg"


def _split_stats(images: int, anns: list[dict[str, Any]], hw) -> dict[str, Any]:
    """Counts of one split; "figures" are annotated figures, "instances" those with keypoints."""
    labelled = [a for a in anns if a["num_keypoints"] > 0]
    counts = np.zeros(3, dtype=np.int64)
    for a in labelled:
        v = np.asarray(a["keypoints"][2::3], dtype=np.int64)
        for key in ("foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts"):
            if key in a:
                v = np.concatenate([v, np.asarray(a[key][2::3], dtype=np.int64)])
        counts += np.bincount(v, minlength=3)[:3]
    total = max(1, int(counts.sum()))
    return {
        "images": images,
        "figures": len(anns),
        "instances": len(labelled),
        "unlabelled_instances": len(anns) - len(labelled),
        "figures_per_image": round(len(anns) / max(1, images), 3),
        "instances_per_image": round(len(labelled) / max(1, images), 3),
        "keypoints_v0": int(counts[0]),
        "keypoints_v1": int(counts[1]),
        "keypoints_v2": int(counts[2]),
        "frac_v1": round(float(counts[1]) / total, 4),
        "frac_v2": round(float(counts[2]) / total, 4),
        "mean_area_frac": round(
            float(np.mean([a["area"] for a in labelled])) / (hw[0] * hw[1]) if labelled else 0.0, 4
        ),
    }


def generate_synthpose(
    out_dir,
    n_train: int,
    n_val: int,
    seed: int,
    wholebody: bool = False,
    image_size: tuple[int, int] = (256, 256),
    spec: SynthPoseSpec = SynthPoseSpec(),  # noqa: B008 (frozen, so a safe default)
    progress: bool = True,
    workers: int = 1,
) -> dict[str, Any]:
    """Write a SynthPose copy into `out_dir` and return its statistics.

    Layout: images/{train,val}/NNNNNNN.jpg, annotations/{train,val}.json (COCO
    keypoints, or COCO-WholeBody when `wholebody`), and synthpose.json with the
    spec, seed, sizes and statistics. `image_size` is (H, W). The files are
    byte-identical for the same arguments, whatever `workers` is.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    height, width = (int(v) for v in image_size)
    if height < 32 or width < 32:
        raise ConfigError(f"image_size={image_size}: SynthPose needs at least 32x32 pixels")
    if n_train < 0 or n_val < 0:
        raise ConfigError(f"n_train={n_train}, n_val={n_val}: image counts must be >= 0")
    if out.exists() and any(out.iterdir()):
        if not (out / "synthpose.json").is_file():
            raise ExistingRunError(
                f"{out} is not empty and holds no synthpose.json; give an empty or new folder"
            )
        for sub in ("images", "annotations"):  # a previous SynthPose copy: replace it
            shutil.rmtree(out / sub, ignore_errors=True)
        (out / "synthpose.json").unlink()
    workers = max(1, int(workers))
    start = time.perf_counter()
    stats: dict[str, Any] = {}
    bar = tqdm(total=n_train + n_val, desc="SynthPose", unit="img", disable=not progress)
    pool = _worker_pool(workers) if workers > 1 else None
    try:
        for split, count in (("train", n_train), ("val", n_val)):
            image_dir = out / "images" / split
            image_dir.mkdir(parents=True, exist_ok=True)
            chunk = max(1, min(64, count // (4 * workers) + 1))
            jobs = [
                (
                    seed,
                    split,
                    range(i, min(count, i + chunk)),
                    (height, width),
                    spec,
                    str(image_dir),
                )
                for i in range(0, count, chunk)
            ]
            results = pool.imap(_render_chunk, jobs) if pool else map(_render_chunk, jobs)
            images, anns = [], []
            for chunk_result in results:
                for index, people in chunk_result:
                    image_id = index + 1
                    images.append(
                        {
                            "id": image_id,
                            "file_name": _file_name(index),
                            "height": height,
                            "width": width,
                        }
                    )
                    for person in people:
                        anns.append(
                            _coco_annotation(
                                person, len(anns) + 1, image_id, wholebody, height, width
                            )
                        )
                    bar.update(1)
            coco = {
                "info": {
                    "description": f"SynthPose {'whole-body ' if wholebody else ''}{split}",
                    "version": str(SYNTHPOSE_VERSION),
                    "seed": seed,
                },
                "images": images,
                "annotations": anns,
                "categories": _categories(),
            }
            (out / "annotations").mkdir(parents=True, exist_ok=True)
            with open(out / "annotations" / f"{split}.json", "w") as f:
                json.dump(coco, f, separators=(",", ":"))
            stats[split] = _split_stats(len(images), anns, (height, width))
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    elapsed = time.perf_counter() - start
    meta = {
        "version": SYNTHPOSE_VERSION,
        "seed": seed,
        "n_train": n_train,
        "n_val": n_val,
        "image_size": [height, width],
        "wholebody": wholebody,
        "dataset": "coco_wholebody" if wholebody else "coco",
        "spec": dataclasses.asdict(spec),
        "statistics": stats,
    }
    # Timing stays out of the file so that the same arguments give the same bytes.
    with open(out / "synthpose.json", "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    n = n_train + n_val
    return {
        **stats,
        "images": n,
        "instances": sum(s["instances"] for s in stats.values()),
        "elapsed_s": round(elapsed, 3),
        "images_per_s": round(n / elapsed, 1) if elapsed > 0 else float("inf"),
        "out_dir": str(out),
    }


# ---------------------------------------------------------------------------
# Command line: python -m ocdlib synth ...


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected HxW, e.g. 256x192") from None
    return h, w


def add_synth_subparser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "synth",
        help="generate a SynthPose copy (COCO keypoint format)",
        description="Render the SynthPose benchmark into DIR/images and DIR/annotations.",
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--train", type=int, default=2000, metavar="N", help="training images")
    p.add_argument("--val", type=int, default=300, metavar="M", help="validation images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wholebody", action="store_true", help="133 COCO-WholeBody keypoints")
    p.add_argument("--size", type=_parse_size, default=(256, 256), metavar="HxW")
    p.add_argument("--workers", type=int, default=1, help="processes (same files for any count)")
    p.add_argument(
        "--spec",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="override a SynthPoseSpec knob, e.g. --spec occluders=[0,4] (JSON values)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_synth)
    return p


def _spec_from_overrides(items: list[str]) -> SynthPoseSpec:
    d = dataclasses.asdict(SynthPoseSpec())
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in d:
            raise ConfigError(f"--spec {item!r}: expected KNOB=VALUE with KNOB one of {sorted(d)}")
        try:
            d[key] = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(f"--spec {item!r}: value is not JSON (e.g. 0.3 or [1, 4])") from None
    return SynthPoseSpec.from_dict(d)


def run_synth(args) -> int:
    stats = generate_synthpose(
        args.out,
        n_train=args.train,
        n_val=args.val,
        seed=args.seed,
        wholebody=args.wholebody,
        image_size=tuple(args.size),
        spec=_spec_from_overrides(args.spec),
        progress=not args.no_progress,
        workers=args.workers,
    )
    print(json.dumps(stats, indent=1))
    return 0
