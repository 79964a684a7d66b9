"""Formula-driven images: iterated function systems (IFS) drawn by the chaos game.

FractalDB (Kataoka et al., ACCV 2020) pre-trains a classifier on fractals: a class is
one IFS (a few contractive affine maps), its instances are that system with its
parameters jittered, drawn in a random colour at a random place and size. No
natural image, no person and no keypoint is involved, so weights pre-trained on
them cannot carry any knowledge of SynthPose's labels into a pose model.

A class is kept only when its σ-factor (the sum over maps of σ1 + 2 σ2, the
singular values of the map's linear part) lies in [(5 + N)/2, (6 + N)/2] for N
maps: Anderson and Farrell (WACV 2022) found that band gives shapes that are
neither dust nor a filled blob. The linear part is built from its singular values
(A = R(θ) diag(σ1, σ2) R(φ) D, D a diagonal of signs), so every map contracts.

Everything is a pure function of a seed (`numpy.random.default_rng`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw_density", "sample_system", "sigma_band", "system_sigma_factor"]


def sigma_band(n_maps: int) -> tuple[float, float]:
    """The σ-factor range kept for a system of `n_maps` maps."""
    return 0.5 * (5 + n_maps), 0.5 * (6 + n_maps)


def system_sigma_factor(linear: np.ndarray) -> float:
    """Σ_i σ_i1 + 2 σ_i2 of the (N, 2, 2) linear parts."""
    s = np.linalg.svd(linear, compute_uv=False)  # (N, 2), descending
    return float((s[:, 0] + 2 * s[:, 1]).sum())


def _rotation(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def _singular_values(rng: np.random.Generator, n_maps: int) -> np.ndarray:
    """(N, 2) singular values in (0, 1), σ1 >= σ2, whose σ-factor falls in the band."""
    lo, hi = sigma_band(n_maps)
    while True:
        target = rng.uniform(lo, hi)
        # Split the target between maps, then within a map between σ1 and 2 σ2.
        shares = rng.dirichlet(np.ones(n_maps)) * target
        s1 = np.empty(n_maps)
        s2 = np.empty(n_maps)
        ok = True
        for i, share in enumerate(shares):
            # share = s1 + 2 s2 with s2 <= s1 < 1: s1 in [share/3, min(1, share)).
            low, high = share / 3.0, min(0.999, share)
            if high <= low:
                ok = False
                break
            s1[i] = rng.uniform(low, high)
            s2[i] = (share - s1[i]) / 2.0
            if not 0 < s2[i] <= s1[i]:
                ok = False
                break
        if ok:
            return np.stack([s1, s2], axis=1)


def sample_system(rng: np.random.Generator, n_maps: int) -> tuple[np.ndarray, np.ndarray]:
    """One IFS class: (N, 2, 2) linear parts and (N, 2) translations in [-1, 1]."""
    sv = _singular_values(rng, n_maps)
    linear = np.empty((n_maps, 2, 2))
    for i in range(n_maps):
        signs = np.diag(rng.choice([-1.0, 1.0], size=2))
        theta, phi = rng.uniform(0, 2 * np.pi, size=2)
        linear[i] = _rotation(theta) @ np.diag(sv[i]) @ _rotation(phi) @ signs
    shift = rng.uniform(-1.0, 1.0, size=(n_maps, 2))
    return linear, shift


def _probabilities(linear: np.ndarray) -> np.ndarray:
    """Each map drawn in proportion to |det| (the area it covers), as FractalDB does."""
    det = np.abs(np.linalg.det(linear)) + 1e-3
    return det / det.sum(axis=-1, keepdims=True)


def draw_density(
    linear: np.ndarray,
    shift: np.ndarray,
    size: int,
    rng: np.random.Generator,
    walkers: int = 256,
    steps: int = 48,
    burn_in: int = 12,
) -> np.ndarray:
    """Draw B systems by the chaos game: (B, size, size) float32 densities in [0, 1].

    `linear` is (B, N, 2, 2) and `shift` (B, N, 2): one system per image (the
    instances of a class are its jittered copies). Each image runs `walkers`
    independent walkers for `steps` iterations and plots every point after
    `burn_in`; the points are fitted into the square with a margin, keeping the
    aspect ratio, and accumulated into a log-scaled density.
    """
    b, n = linear.shape[:2]
    cum = np.cumsum(_probabilities(linear), axis=-1)  # (B, N)
    pts = rng.uniform(-1, 1, size=(b, walkers, 2))
    kept = []
    rows = np.arange(b)[:, None]
    for step in range(steps):
        pick = (rng.random((b, walkers, 1)) > cum[:, None, :]).sum(-1)  # (B, W)
        pick = np.minimum(pick, n - 1)
        a = linear[rows, pick]  # (B, W, 2, 2)
        t = shift[rows, pick]  # (B, W, 2)
        pts = np.einsum("bwij,bwj->bwi", a, pts) + t
        if step >= burn_in:
            kept.append(pts)
    xy = np.concatenate(kept, axis=1)  # (B, P, 2)
    xy = np.where(np.isfinite(xy), xy, 0.0)
    lo = np.percentile(xy, 0.5, axis=1, keepdims=True)
    hi = np.percentile(xy, 99.5, axis=1, keepdims=True)
    span = np.maximum((hi - lo).max(axis=-1, keepdims=True), 1e-6)
    centre = (lo + hi) / 2
    uv = (xy - centre) / span * (size * 0.9) + size / 2  # (B, P, 2) pixel coordinates
    ij = np.floor(uv).astype(np.int64)
    inside = (ij >= 0).all(-1) & (ij < size).all(-1)
    flat = (np.arange(b)[:, None] * size * size + ij[..., 1] * size + ij[..., 0])[inside]
    counts = np.bincount(flat, minlength=b * size * size).reshape(b, size, size)
    dens = np.log1p(counts.astype(np.float32))
    peak = dens.reshape(b, -1).max(axis=1).reshape(b, 1, 1)
    return dens / np.maximum(peak, 1e-6)
