"""Dataset metainfo: keypoint names, flip pairs, OKS sigmas, skeleton and colours.

Each dataset is one `DatasetInfo` value. Code never branches on a dataset's
name: it reads these fields. Sigmas are the official COCO / COCO-WholeBody /
CrowdPose OKS sigmas; names follow the official annotation files. Any other
layout is read from an annotation file's `categories[0]` (`layout_from_category`,
dataset name "from_file").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from .errors import ConfigError, UnknownNameError

BODY_NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
BODY_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip
# 0-based links of the COCO person category's skeleton.
BODY_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12),
    (5, 6), (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2),
    (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip

FOOT_NAMES = (
    "left_big_toe",
    "left_small_toe",
    "left_heel",
    "right_big_toe",
    "right_small_toe",
    "right_heel",
)
FOOT_SIGMAS = (0.068, 0.066, 0.066, 0.092, 0.094, 0.094)

# Face: the 68-point iBUG layout, in its order.
FACE_NAMES = tuple(f"face-{i}" for i in range(68))
FACE_SIGMAS = (
    0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031, 0.025, 0.020, 0.023,
    0.029, 0.032, 0.037, 0.038, 0.043, 0.041, 0.045, 0.013, 0.012, 0.011,
    0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015, 0.009, 0.007, 0.007,
    0.007, 0.012, 0.009, 0.008, 0.016, 0.010, 0.017, 0.011, 0.009, 0.011,
    0.009, 0.007, 0.013, 0.008, 0.011, 0.012, 0.010, 0.034, 0.008, 0.008,
    0.009, 0.008, 0.008, 0.007, 0.010, 0.008, 0.009, 0.009, 0.009, 0.007,
    0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.010, 0.008,
)  # fmt: skip
# Mirror pairs of the 68-point face (contour, brows, nose base, eyes, mouth).
FACE_FLIP_PAIRS = (
    tuple((i, 16 - i) for i in range(8))
    + ((17, 26), (18, 25), (19, 24), (20, 23), (21, 22))
    + ((31, 35), (32, 34))
    + ((36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46))
    + ((48, 54), (49, 53), (50, 52), (59, 55), (58, 56))
    + ((60, 64), (61, 63), (67, 65))
)
FACE_SKELETON = (
    tuple((i, i + 1) for i in range(16))  # jaw line
    + tuple((i, i + 1) for i in range(17, 21))  # right brow
    + tuple((i, i + 1) for i in range(22, 26))  # left brow
    + tuple((i, i + 1) for i in range(27, 30))  # nose bridge
    + tuple((i, i + 1) for i in range(31, 35))  # nose base
    + tuple((i, 36 + (i - 35) % 6) for i in range(36, 42))  # eye
    + tuple((i, 42 + (i - 41) % 6) for i in range(42, 48))  # eye
    + tuple((i, 48 + (i - 47) % 12) for i in range(48, 60))  # outer lip
    + tuple((i, 60 + (i - 59) % 8) for i in range(60, 68))  # inner lip
)

FINGERS = ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")


def _hand_names(side: str) -> tuple[str, ...]:
    names = [f"{side}_hand_root"]
    for finger in FINGERS:
        names += [f"{side}_{finger}{j}" for j in range(1, 5)]
    return tuple(names)


HAND_SIGMAS = (
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018,
    0.024, 0.022, 0.026, 0.017, 0.021, 0.021, 0.032, 0.020, 0.019, 0.022,
    0.031,
)  # fmt: skip
# Root -> finger base -> ... -> tip for each of the five fingers.
HAND_SKELETON = tuple(
    (0 if j == 0 else 1 + 4 * f + j - 1, 1 + 4 * f + j) for f in range(5) for j in range(4)
)

BODY_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
UPPER_BODY_IDS = tuple(range(11))
LOWER_BODY_IDS = tuple(range(11, 17))


@dataclass(frozen=True)
class DatasetInfo:
    """Everything the code needs to know about a keypoint layout.

    `parts` maps a part name to its (start, stop) slice of the keypoint vector;
    for COCO-WholeBody it also says which annotation field holds the part.
    """

    name: str
    keypoint_names: tuple[str, ...]
    sigmas: tuple[float, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    upper_body_ids: tuple[int, ...]
    lower_body_ids: tuple[int, ...]
    parts: tuple[tuple[str, int, int], ...]
    # COCO annotation field of each part, in keypoint order (body first).
    part_fields: tuple[tuple[str, str], ...] = (("body", "keypoints"),)

    def __post_init__(self):
        k = len(self.keypoint_names)
        if len(self.sigmas) != k:
            raise ConfigError(f"{self.name}: {len(self.sigmas)} sigmas for {k} keypoints")
        for a, b in self.flip_pairs + self.skeleton:
            if not (0 <= a < k and 0 <= b < k):
                raise ConfigError(f"{self.name}: link ({a}, {b}) outside 0..{k - 1}")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @cached_property
    def flip_index(self) -> np.ndarray:
        """Permutation that maps keypoint i to its mirror image after a horizontal flip."""
        perm = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    @cached_property
    def sigmas_array(self) -> np.ndarray:
        return np.asarray(self.sigmas, dtype=np.float64)

    def part_slice(self, part: str) -> slice:
        for name, start, stop in self.parts:
            if name == part:
                return slice(start, stop)
        raise UnknownNameError(
            f"{self.name} has no part {part!r}; parts: {[p[0] for p in self.parts]}"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DatasetInfo:
        def pairs(v):
            return tuple(tuple(x) for x in v)

        return cls(
            name=d["name"],
            keypoint_names=tuple(d["keypoint_names"]),
            sigmas=tuple(float(v) for v in d["sigmas"]),
            flip_pairs=pairs(d["flip_pairs"]),
            skeleton=pairs(d["skeleton"]),
            upper_body_ids=tuple(d["upper_body_ids"]),
            lower_body_ids=tuple(d["lower_body_ids"]),
            parts=tuple((str(n), int(a), int(b)) for n, a, b in d["parts"]),
            part_fields=pairs(d["part_fields"]),
        )

    def colors(self) -> np.ndarray:
        """One RGB colour (0-255) per keypoint: left side, right side, centre and parts differ."""
        out = np.zeros((self.num_keypoints, 3), dtype=np.uint8)
        for i, name in enumerate(self.keypoint_names):
            if name.startswith(("left", "l_")):
                out[i] = (0, 200, 0)
            elif name.startswith(("right", "r_")):
                out[i] = (255, 128, 0)
            elif name.startswith("face"):
                out[i] = (240, 240, 240)
            else:
                out[i] = (51, 153, 255)
        return out


def _offset(pairs, k):
    return tuple((a + k, b + k) for a, b in pairs)


COCO_BODY = DatasetInfo(
    name="coco",
    keypoint_names=BODY_NAMES,
    sigmas=BODY_SIGMAS,
    flip_pairs=BODY_FLIP_PAIRS,
    skeleton=BODY_SKELETON,
    upper_body_ids=UPPER_BODY_IDS,
    lower_body_ids=LOWER_BODY_IDS,
    parts=(("body", 0, 17),),
)

_LH, _RH = _hand_names("left"), _hand_names("right")
COCO_WHOLEBODY = DatasetInfo(
    name="coco_wholebody",
    keypoint_names=BODY_NAMES + FOOT_NAMES + FACE_NAMES + _LH + _RH,
    sigmas=BODY_SIGMAS + FOOT_SIGMAS + FACE_SIGMAS + HAND_SIGMAS + HAND_SIGMAS,
    flip_pairs=(
        BODY_FLIP_PAIRS
        + ((17, 20), (18, 21), (19, 22))
        + _offset(FACE_FLIP_PAIRS, 23)
        + tuple((91 + i, 112 + i) for i in range(21))
    ),
    skeleton=(
        BODY_SKELETON
        + ((15, 17), (15, 18), (15, 19), (16, 20), (16, 21), (16, 22))
        + _offset(FACE_SKELETON, 23)
        + ((9, 91), (10, 112))
        + _offset(HAND_SKELETON, 91)
        + _offset(HAND_SKELETON, 112)
    ),
    upper_body_ids=UPPER_BODY_IDS + tuple(range(23, 133)),
    lower_body_ids=LOWER_BODY_IDS + tuple(range(17, 23)),
    parts=(
        ("body", 0, 17),
        ("foot", 17, 23),
        ("face", 23, 91),
        ("lefthand", 91, 112),
        ("righthand", 112, 133),
    ),
    part_fields=(
        ("body", "keypoints"),
        ("foot", "foot_kpts"),
        ("face", "face_kpts"),
        ("lefthand", "lefthand_kpts"),
        ("righthand", "righthand_kpts"),
    ),
)

CROWDPOSE_NAMES = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
    "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle", "head", "neck",
)  # fmt: skip
CROWDPOSE = DatasetInfo(
    name="crowdpose",
    keypoint_names=CROWDPOSE_NAMES,
    sigmas=(
        0.079,
        0.079,
        0.072,
        0.072,
        0.062,
        0.062,
        0.107,
        0.107,
        0.087,
        0.087,
        0.089,
        0.089,
        0.079,
        0.079,
    ),  # fmt: skip
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    # mmpose's CrowdPose skeleton.
    skeleton=(
        (10, 8),
        (8, 6),
        (11, 9),
        (9, 7),
        (6, 7),
        (0, 6),
        (1, 7),
        (0, 1),
        (0, 2),
        (1, 3),
        (2, 4),
        (3, 5),
        (12, 13),
        (1, 13),
        (0, 13),
    ),  # fmt: skip
    upper_body_ids=(0, 1, 2, 3, 4, 5, 12, 13),
    lower_body_ids=(6, 7, 8, 9, 10, 11),
    parts=(("body", 0, 14),),
)

DATASETS = {info.name: info for info in (COCO_BODY, COCO_WHOLEBODY, CROWDPOSE)}
# data.dataset value that reads the layout from the annotation file.
FROM_FILE = "from_file"


def get_dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown dataset {name!r}; known: {sorted(DATASETS)}, or {FROM_FILE!r} to read "
            "the layout from the annotation file"
        ) from None


# ----------------------------------------------------------------------------- any layout

# Prefix pairs that name the two sides of a keypoint: left_wrist / right_wrist, l_eye / r_eye.
SIDE_PREFIXES = (("left_", "right_"), ("l_", "r_"))
# Names of the lower body, for the half-body augmentation of a layout read from a file.
LOWER_BODY_WORDS = ("hip", "knee", "ankle", "foot", "toe", "heel")


def flip_pairs_from_names(names) -> tuple[tuple[int, int], ...]:
    """Mirror pairs found from left/right names (left_*/right_*, l_*/r_*, any case)."""
    index = {n.lower(): i for i, n in enumerate(names)}
    pairs = []
    for i, name in enumerate(names):
        low = name.lower()
        for left, right in SIDE_PREFIXES:
            if low.startswith(left) and right + low[len(left) :] in index:
                pairs.append((i, index[right + low[len(left) :]]))
                break
    return tuple(pairs)


def index_pairs(pairs, names) -> tuple[tuple[int, int], ...]:
    """`data.flip_pairs` as 0-based index pairs; each side a keypoint name or an index."""
    names, k = list(names), len(names)
    out = []
    for pair in pairs:
        try:
            a, b = (names.index(v) if isinstance(v, str) else int(v) for v in pair)
        except ValueError:
            raise ConfigError(
                f"config field data.flip_pairs: {list(pair)} names a keypoint not in {names}"
            ) from None
        if not (0 <= a < k and 0 <= b < k):
            raise ConfigError(f"config field data.flip_pairs: {list(pair)} is outside 0..{k - 1}")
        out.append((a, b))
    return tuple(out)


def layout_from_category(
    category: dict, sigmas, flip_pairs=(), name: str = FROM_FILE, where: str = "categories[0]"
) -> DatasetInfo:
    """The layout of a COCO keypoint category: its `keypoints` names and 1-based `skeleton`.

    `flip_pairs` (0-based indices or pairs of names) overrides the pairs found from
    the names; `sigmas` gives one OKS sigma per keypoint. Raises ValueError naming
    `where` and the field.
    """
    names = category.get("keypoints")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            f"{where}.keypoints must be the list of keypoint names (as in COCO's person "
            f"category), got {names!r}"
        )
    k = len(names)
    skeleton = []
    for link in category.get("skeleton") or []:
        pair = isinstance(link, list) and len(link) == 2
        if not (pair and all(isinstance(v, int) for v in link)):
            raise ConfigError(f"{where}.skeleton: link {link!r} is not a pair of keypoint numbers")
        a, b = link[0] - 1, link[1] - 1  # COCO's skeleton counts from 1
        if not (0 <= a < k and 0 <= b < k):
            raise ConfigError(
                f"{where}.skeleton: link {link} is outside 1..{k} (COCO skeletons count from 1)"
            )
        skeleton.append((a, b))
    flip = index_pairs(flip_pairs, names) if flip_pairs else flip_pairs_from_names(names)
    if len(sigmas) != k:
        raise ConfigError(
            f"data.sigmas has {len(sigmas)} values, {where}.keypoints names {k} keypoints; "
            "give one OKS sigma per keypoint"
        )
    lower = tuple(i for i, n in enumerate(names) if any(w in n.lower() for w in LOWER_BODY_WORDS))
    return DatasetInfo(
        name=name,
        keypoint_names=tuple(names),
        sigmas=tuple(float(s) for s in sigmas),
        flip_pairs=flip,
        skeleton=tuple(skeleton),
        upper_body_ids=tuple(i for i in range(k) if i not in lower),
        lower_body_ids=lower,
        parts=(("body", 0, k),),
    )
