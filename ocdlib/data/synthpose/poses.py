"""Poses: a mode (standing, walking, ...) sets mean joint angles, noise spreads them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...synth_spec import POSE_MODES, SynthPoseSpec
from .layout import (
    _HAIRLINE_LOCAL,
    _NOSE_LIFT,
    FACE0,
    FACE_TEMPLATE,
    FOOT0,
    HAIRLINE0,
    HEAD_C,
    HEAD_UP,
    LEFT,
    LHAND0,
    NECK_BASE,
    NECK_TOP,
    NUM_POINTS,
    PELVIS,
    RHAND0,
    RIGHT,
    TOE_L,
    TOE_R,
    WAIST_L,
    WAIST_R,
)
from .rotations import (
    _UP,
    _X,
    _Z,
    _add,
    _choose,
    _clip,
    _col,
    _cross,
    _dot,
    _mm,
    _mul,
    _mv,
    _rot,
    _swing,
    _unit,
)
from .textures import HAIR_COLOURS, SKIN_TONES, jitter_colour, random_colour, shade, uniform

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
