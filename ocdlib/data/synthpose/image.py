"""One image: render it and label its people."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ...errors import ConfigError
from ...synth_spec import SPLITS, SynthPoseSpec
from .drawing import _draw_person
from .layout import ALLOWED_PARTS, FACE0, FACING_MIN, HEAD_POINTS, NUM_PARTS, NUM_WB, OCCLUDER_LABEL
from .placing import _place_people, _Placed
from .textures import background, camera_effects, random_colour, random_shape, uniform


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
