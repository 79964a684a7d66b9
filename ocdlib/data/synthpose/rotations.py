"""Small rotation helpers (degrees). Frame: x = the figure's left, y = up, z = forward."""

from __future__ import annotations

import math

import numpy as np

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
