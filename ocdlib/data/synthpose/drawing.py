"""Drawing a figure."""

from __future__ import annotations

import math

from .layout import (
    FACE0,
    FACING_MIN,
    FARM,
    FOOT,
    FOOT0,
    HAIRLINE0,
    HAND,
    HEAD,
    HEAD_C,
    HEAD_UP,
    LEFT,
    LHAND0,
    NECK,
    NECK_BASE,
    NECK_TOP,
    PELVIS,
    RHAND0,
    RIGHT,
    SHIN,
    THIGH,
    TOE_L,
    TOE_R,
    TORSO,
    UARM,
    WAIST_L,
    WAIST_R,
)
from .placing import _Placed
from .textures import capsule_polygons, ellipse_points, shade

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
