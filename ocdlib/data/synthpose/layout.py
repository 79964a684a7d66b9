"""Point layout: the 133 COCO-WholeBody keypoints first, then the drawing helpers' points."""

from __future__ import annotations

import math

import numpy as np

from ...metainfo import COCO_WHOLEBODY

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
