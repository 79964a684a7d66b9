"""Backgrounds, clutter, occluders and camera effects for SynthPose.

Everything here draws with PIL or a few contiguous numpy operations, so that
one CPU core renders well over a hundred images per second, and takes its
randomness from the `numpy.random.Generator` it is given, so that an image is
a pure function of its seed.
"""

from __future__ import annotations

import colorsys
import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

# Skin tones from light to dark; a figure's skin is one of these, jittered.
SKIN_TONES = (
    (255, 224, 196),
    (241, 194, 150),
    (224, 172, 120),
    (198, 134, 90),
    (150, 98, 62),
    (96, 60, 38),
)
HAIR_COLOURS = ((30, 22, 18), (70, 45, 30), (120, 80, 45), (200, 170, 110), (90, 90, 90))

_NOISE_TILE = 512  # side of the fixed noise tile that every image crops from


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One uniform draw; six times cheaper than `uniform(rng, lo, hi)` for a scalar."""
    return lo + (hi - lo) * rng.random()


def random_colour(rng: np.random.Generator, sat=(0.15, 1.0), val=(0.2, 1.0)) -> tuple:
    """A random RGB colour drawn in HSV space, so that saturation and brightness are controlled."""
    h = rng.random()
    s = uniform(rng, *sat)
    v = uniform(rng, *val)
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return (int(r * 255), int(g * 255), int(b * 255))


def jitter_colour(rng: np.random.Generator, colour, amount: float = 12.0) -> tuple:
    return tuple(int(min(255, max(0, c + rng.normal(0.0, amount)))) for c in colour)


def shade(colour, factor: float) -> tuple:
    """`colour` scaled by `factor` (>= 0), clipped to 255."""
    r, g, b = colour
    return (min(255, int(r * factor)), min(255, int(g * factor)), min(255, int(b * factor)))


@lru_cache(maxsize=1)
def noise_tile() -> np.ndarray:
    """A fixed tile of unit Gaussian noise (float32, 512x512x3).

    Drawing fresh noise for every pixel costs more than rendering the whole
    image; a random crop of one fixed tile (same seed in every process) is as
    good for the network and keeps generation deterministic.
    """
    rng = np.random.default_rng(20240601)
    return rng.standard_normal((_NOISE_TILE, _NOISE_TILE, 3), dtype=np.float32)


def noise_patch(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A (height, width, 3) crop of the noise tile at a random offset."""
    tile = noise_tile()
    if height > _NOISE_TILE or width > _NOISE_TILE:
        reps = (math.ceil(height / _NOISE_TILE) + 1, math.ceil(width / _NOISE_TILE) + 1, 1)
        tile = np.tile(tile, reps)
    y0 = int(rng.integers(0, tile.shape[0] - height + 1))
    x0 = int(rng.integers(0, tile.shape[1] - width + 1))
    return tile[y0 : y0 + height, x0 : x0 + width]


@lru_cache(maxsize=64)
def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights of a linear interpolation from n_in grid nodes to n_out pixels."""
    pos = np.linspace(0.0, n_in - 1.0, n_out)
    lo = np.minimum(pos.astype(np.int64), n_in - 2)
    frac = (pos - lo).astype(np.float32)
    m = np.zeros((n_out, n_in), dtype=np.float32)
    m[np.arange(n_out), lo] = 1.0 - frac
    m[np.arange(n_out), lo + 1] = frac
    return m


_CIRCLE = np.exp(1j * np.linspace(0.0, 2.0 * math.pi, 14, endpoint=False))


def ellipse_points(cx, cy, ax, ay, angle) -> list[tuple[float, float]]:
    """14-gon of an ellipse, semi-axes (ax, ay), rotated by `angle` radians (PIL cannot rotate)."""
    c, s = math.cos(angle), math.sin(angle)
    x, y = ax * _CIRCLE.real, ay * _CIRCLE.imag
    px = cx + c * x - s * y
    py = cy + s * x + c * y
    return list(zip(px.tolist(), py.tolist()))


_CAP_STEPS = 6  # segments per half-circle of a capsule's rounded ends
_CAP_ANGLES = np.linspace(0.0, math.pi, _CAP_STEPS + 1)


def capsule_polygons(p0, p1, r0, r1) -> np.ndarray:
    """Outlines of tapered limbs, all at once: (N, 2 * (_CAP_STEPS + 1), 2) polygons.

    A limb from p0 (radius r0) to p1 (radius r1) is a quadrilateral closed by
    two half-discs, drawn as one polygon: one PIL call per limb instead of
    three, and an outline without seams at the joints. p0, p1: (N, 2); r0, r1: (N,).
    """
    p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    d = p1 - p0
    length = np.hypot(d[:, 0], d[:, 1])[:, None]
    u = np.where(length > 1e-6, d / np.maximum(length, 1e-6), np.array([1.0, 0.0]))
    n = u[:, ::-1] * np.array([-1.0, 1.0])
    c, s = np.cos(_CAP_ANGLES)[None, :, None], np.sin(_CAP_ANGLES)[None, :, None]
    r0 = np.asarray(r0, dtype=np.float64)[:, None, None]
    r1 = np.asarray(r1, dtype=np.float64)[:, None, None]
    end = p1[:, None] + r1 * (c * n[:, None] + s * u[:, None])  # from +n round to -n
    start = p0[:, None] - r0 * (c * n[:, None] + s * u[:, None])  # from -n round to +n
    return np.concatenate([end, start], axis=1)


def background(rng: np.random.Generator, height: int, width: int, spec) -> Image.Image:
    """A textured, cluttered background: smooth colour field, grain, pattern, random shapes.

    Part of the clutter is limb-like (tapered, jointed chains in clothing and
    skin colours), so a figure cannot be found as "the only elongated shape".
    The colour field is a separable linear interpolation of a coarse random
    grid (two small matrix products per channel), several times cheaper than
    resizing an image.
    """
    gh, gw = int(rng.integers(2, 7)), int(rng.integers(2, 7))
    base = np.array(random_colour(rng, sat=(0.0, 0.7), val=(0.25, 0.95)), dtype=np.float32)
    coarse = base[:, None, None] + rng.normal(0.0, 60.0 * spec.background_variation, (3, gh, gw))
    wy, wx = _interp_matrix(height, gh), _interp_matrix(width, gw).T
    planes = wy @ coarse.astype(np.float32) @ wx  # (3, H, W)
    if spec.texture_strength > 0 and rng.random() < 0.7:
        grain = noise_patch(rng, height, width)[:, :, 0]
        planes += grain * np.float32(spec.texture_strength * uniform(rng, 4.0, 18.0))
    np.clip(planes, 0, 255, out=planes)
    planes = planes.astype(np.uint8)
    img = Image.merge("RGB", [Image.fromarray(p, "L") for p in planes])
    if rng.random() < spec.pattern_prob:
        colour = random_colour(rng, sat=(0.0, 0.6), val=(0.3, 0.95))
        mask = _pattern_mask(rng, height, width, int(255 * uniform(rng, 0.4, 1.0)))
        img = Image.composite(Image.new("RGB", (width, height), colour), img, mask)

    draw = ImageDraw.Draw(img)
    size = min(height, width)
    n = int(rng.integers(spec.clutter_shapes[0], spec.clutter_shapes[1] + 1))
    for _ in range(n):
        if rng.random() < spec.limb_clutter_prob:
            _limb_clutter(rng, draw, height, width, size)
        else:
            extent = size * uniform(rng, 0.04, 0.3)
            random_shape(rng, draw, height, width, extent, random_colour(rng))
    return img


def _pattern_mask(rng, height, width, alpha: int) -> Image.Image:
    """An "L" mask (0 or `alpha`) of stripes at a random angle, or of a checkerboard."""
    step = uniform(rng, 6.0, 28.0)
    if rng.random() < 0.7:
        mask = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(mask)
        angle = uniform(rng, 0.0, math.pi)
        c, s = math.cos(angle), math.sin(angle)
        thick = max(1, int(step * uniform(rng, 0.15, 0.5)))
        reach = height + width
        cx, cy = width / 2.0, height / 2.0
        for k in np.arange(-reach / 2.0, reach / 2.0, step).tolist():
            ox, oy = cx + c * k, cy + s * k
            draw.line(
                ((ox - s * reach, oy + c * reach), (ox + s * reach, oy - c * reach)),
                fill=alpha,
                width=thick,
            )
        return mask
    cell = max(4, int(step))
    ny, nx = height // cell + 1, width // cell + 1
    board = ((np.arange(ny)[:, None] + np.arange(nx)[None, :]) % 2 * alpha).astype(np.uint8)
    big = Image.fromarray(board, "L").resize((nx * cell, ny * cell), Image.NEAREST)
    return big.crop((0, 0, width, height))


def _limb_clutter(rng, draw, height, width, size) -> None:
    """A chain of two or three tapered segments that looks like a stray arm or leg."""
    x, y = uniform(rng, 0, width), uniform(rng, 0, height)
    length = size * uniform(rng, 0.08, 0.22)
    radius = size * uniform(rng, 0.012, 0.035)
    angle = uniform(rng, 0, 2 * math.pi)
    joints, radii = [(x, y)], [radius]
    for _ in range(int(rng.integers(2, 4))):
        x, y = x + length * math.cos(angle), y + length * math.sin(angle)
        joints.append((x, y))
        radii.append(radii[-1] * uniform(rng, 0.7, 1.0))
        angle += uniform(rng, -1.6, 1.6)
    if rng.random() < 0.4:
        colour = jitter_colour(rng, SKIN_TONES[int(rng.integers(len(SKIN_TONES)))])
    else:
        colour = random_colour(rng)
    edge = shade(colour, 0.55) if rng.random() < 0.5 else None
    polys = capsule_polygons(joints[:-1], joints[1:], radii[:-1], radii[1:])
    for poly in polys.reshape(len(polys), -1).tolist():  # flat [x0, y0, x1, y1, ...]
        draw.polygon(poly, fill=colour, outline=edge)


def random_shape(rng, draw, height, width, extent, colour, label_draw=None, label=0, centre=None):
    """An ellipse, box, bar or polygon of about `extent` pixels, anywhere (or around `centre`)."""
    if centre is None:
        cx, cy = uniform(rng, 0, width), uniform(rng, 0, height)
    else:
        cx, cy = centre
    kind = int(rng.integers(4))
    edge = shade(colour, 0.6) if rng.random() < 0.4 else None
    if kind == 0:  # ellipse
        ax, ay = extent * uniform(rng, 0.3, 0.7), extent * uniform(rng, 0.3, 0.7)
        pts = ellipse_points(cx, cy, ax, ay, uniform(rng, 0, math.pi))
    elif kind == 1:  # rotated box
        a, b = extent * uniform(rng, 0.25, 0.7), extent * uniform(rng, 0.25, 0.7)
        pts = _rotated_box(cx, cy, a, b, uniform(rng, 0, math.pi))
    elif kind == 2:  # long bar (a pole, a table edge)
        a, b = extent * uniform(rng, 0.6, 1.4), extent * uniform(rng, 0.05, 0.15)
        pts = _rotated_box(cx, cy, a, b, uniform(rng, 0, math.pi))
    else:  # irregular polygon
        n = int(rng.integers(3, 8))
        ang = np.sort(rng.uniform(0, 2 * math.pi, n))
        rad = extent * rng.uniform(0.25, 0.7, n)
        pts = list(zip((cx + rad * np.cos(ang)).tolist(), (cy + rad * np.sin(ang)).tolist()))
    draw.polygon(pts, fill=colour, outline=edge)
    if label_draw is not None:
        label_draw.polygon(pts, fill=label)


def _rotated_box(cx, cy, a, b, angle):
    c, s = math.cos(angle), math.sin(angle)
    corners = ((a, b), (-a, b), (-a, -b), (a, -b))
    return [(cx + c * x - s * y, cy + s * x + c * y) for x, y in corners]


def camera_effects(rng: np.random.Generator, img: Image.Image, spec) -> Image.Image:
    """Blur, a lighting gradient, global brightness, a colour cast and sensor noise.

    The gain map is built on rows of W*3 interleaved values so that every numpy
    operation runs on contiguous memory (broadcasting over a trailing axis of 3
    is several times slower).
    """
    width, height = img.size
    if rng.random() < spec.blur_prob:
        # A down- and up-sample blurs like a small Gaussian at a fraction of the cost.
        f = 1.0 / uniform(rng, *spec.blur_factor)
        small = img.resize((max(1, int(width * f)), max(1, int(height * f))), Image.BILINEAR)
        img = small.resize((width, height), Image.BILINEAR)

    arr = np.asarray(img, dtype=np.float32).reshape(height, width * 3)
    gain = uniform(rng, *spec.brightness) * (1.0 + rng.normal(0.0, spec.colour_cast, 3))
    row_gain = np.tile(gain.astype(np.float32), width)  # (W*3,)
    angle = uniform(rng, 0, 2 * math.pi)
    amp = uniform(rng, 0.0, spec.lighting)
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32) * np.float32(math.cos(angle) * amp)
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32) * np.float32(math.sin(angle) * amp)
    gmap = (1.0 + ys)[:, None] * row_gain[None, :] + (np.repeat(xs, 3) * row_gain)[None, :]
    arr *= gmap
    if rng.random() < spec.noise_prob:
        sigma = np.float32(uniform(rng, *spec.noise_std))
        arr += noise_patch(rng, height, width).reshape(height, width * 3) * sigma
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8).reshape(height, width, 3), "RGB")
