"""COCO-format keypoint annotations and person detections -> a flat list of `Instance`s.

The keypoint layout is data: `DatasetInfo.part_fields` names the annotation
field of each part (COCO body: `keypoints`; COCO-WholeBody adds `foot_kpts`,
`face_kpts`, `lefthand_kpts`, `righthand_kpts`), so the same loader serves both
and anything else laid out the same way. Every error a user can cause names the
file, the field and a fix.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ocdlib.metainfo import DatasetInfo

log = logging.getLogger(__name__)


class AnnotationError(ValueError):
    """An annotation or detection file that cannot be used as it is."""


class ImageReadError(OSError):
    """An image file that exists but cannot be decoded."""


@dataclass
class Instance:
    """One person box to crop: a ground-truth annotation or a detection."""

    image_id: int
    file_name: str
    image_path: Path
    bbox: tuple[float, float, float, float]  # x, y, w, h in image pixels
    keypoints: np.ndarray  # (K, 3) float32: x, y, v (all zero for detections)
    area: float
    bbox_score: float = 1.0  # 1 for ground truth, the detector's score otherwise
    ann_id: int = -1  # -1 for detections
    width: int = 0  # image size from the annotation file (0 when unknown)
    height: int = 0


# ----------------------------------------------------------------------------- files


def read_json(path: Path, what: str):
    """Parse a JSON file; a missing or malformed file raises an error naming it and the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} file not found: {path}; check the path (data.root and the *_ann fields "
            f"of the config, or --set eval.det_file=...)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(
            f"{path} is not valid JSON ({e}); is it a {what} file? Re-download or regenerate it"
        ) from None


def _load_coco(ann_file: Path):
    """Validated pycocotools COCO object for `ann_file`."""
    from pycocotools.coco import COCO

    data = read_json(ann_file, "annotation")
    if not isinstance(data, dict):
        raise AnnotationError(
            f"{ann_file} is not a COCO annotation file: the top level is a "
            f"{type(data).__name__}, expected an object with 'images', 'annotations' and "
            f"'categories' (a list at the top level is a detection result file: pass it as "
            f"the detection file instead)"
        )
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    if missing:
        raise AnnotationError(
            f"{ann_file} is not a COCO annotation file: missing field(s) {missing}; "
            f"expected 'images', 'annotations' and 'categories' as in COCO's person_keypoints files"
        )
    for i, img in enumerate(data["images"]):
        for key in ("id", "file_name"):
            if key not in img:
                raise AnnotationError(f"{ann_file}: images[{i}] has no '{key}' field")
    for i, ann in enumerate(data["annotations"]):
        for key in ("id", "image_id", "bbox"):
            if key not in ann:
                raise AnnotationError(
                    f"{ann_file}: annotations[{i}] has no '{key}' field; every annotation "
                    f"needs 'id', 'image_id', 'bbox' and the keypoint fields"
                )
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _person_category_ids(coco, ann_file: Path) -> list[int]:
    cats = coco.dataset["categories"]
    ids = [c["id"] for c in cats if c.get("name") == "person"]
    if ids:
        return ids
    if len(cats) == 1:
        return [cats[0]["id"]]
    raise AnnotationError(
        f"{ann_file}: no category named 'person' in 'categories' and more than one category "
        f"({[c.get('name') for c in cats]}); name the keypoint category 'person'"
    )


def _assemble_keypoints(ann: dict, index: int, ann_file: Path, info: DatasetInfo) -> np.ndarray:
    """(K, 3) keypoints of one annotation, concatenated over `info.part_fields`."""
    parts = []
    for part, field in info.part_fields:
        span = info.part_slice(part)
        expected = span.stop - span.start
        if field not in ann:
            raise AnnotationError(
                f"{ann_file}: annotations[{index}] (id {ann.get('id')}) has no '{field}' field, "
                f"which the dataset '{info.name}' needs for its {expected} '{part}' keypoints; "
                f"is --set data.dataset right?"
            )
        values = ann[field]
        if not isinstance(values, list) or len(values) != 3 * expected:
            n = len(values) if isinstance(values, list) else type(values).__name__
            raise AnnotationError(
                f"{ann_file}: annotations[{index}].{field} has {n} values, the dataset "
                f"'{info.name}' expects {expected} keypoints x 3 = {3 * expected}; "
                f"is --set data.dataset right?"
            )
        parts.append(np.asarray(values, dtype=np.float32).reshape(expected, 3))
    kpts = np.concatenate(parts, axis=0)
    if len(kpts) != info.num_keypoints:
        raise AnnotationError(
            f"dataset '{info.name}': part_fields cover {len(kpts)} keypoints, "
            f"not {info.num_keypoints}; fix its DatasetInfo in ocdlib/metainfo.py"
        )
    return kpts


def _clip_box(bbox, width: int, height: int) -> tuple[float, float, float, float] | None:
    """Clip (x, y, w, h) to the image as mmpose does; None if nothing is left."""
    x, y, w, h = (float(v) for v in bbox)
    if width > 0 and height > 0:
        x1, y1 = np.clip(x, 0, width - 1), np.clip(y, 0, height - 1)
        x2, y2 = np.clip(x + w, 0, width - 1), np.clip(y + h, 0, height - 1)
    else:
        x1, y1, x2, y2 = x, y, x + w, y + h
    if not (x2 > x1 and y2 > y1):
        return None
    return float(x1), float(y1), float(x2 - x1), float(y2 - y1)


def load_coco_keypoints(ann_file, image_dir, info: DatasetInfo) -> list[Instance]:
    """Person instances with keypoints from a COCO keypoint annotation file.

    Keeps annotations of the person category with iscrowd 0, at least one
    labelled keypoint (v > 0, over all parts) and a box that is non-empty after
    clipping to the image. Skipped annotations are counted and reported in one
    warning. Image files are not opened here (see `check_images`).
    """
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    coco = _load_coco(ann_file)
    person = set(_person_category_ids(coco, ann_file))
    images = coco.imgs
    skipped = {"crowd": 0, "no keypoints": 0, "empty box": 0, "unknown image": 0}
    instances: list[Instance] = []
    for index, ann in enumerate(coco.dataset["annotations"]):
        if ann.get("category_id", next(iter(person))) not in person:
            continue
        if ann.get("iscrowd", 0):
            skipped["crowd"] += 1
            continue
        kpts = _assemble_keypoints(ann, index, ann_file, info)
        if not (kpts[:, 2] > 0).any():
            skipped["no keypoints"] += 1
            continue
        img = images.get(ann["image_id"])
        if img is None:
            skipped["unknown image"] += 1
            continue
        width, height = int(img.get("width", 0)), int(img.get("height", 0))
        box = _clip_box(ann["bbox"], width, height)
        if box is None:
            skipped["empty box"] += 1
            continue
        instances.append(
            Instance(
                image_id=int(ann["image_id"]),
                file_name=img["file_name"],
                image_path=image_dir / img["file_name"],
                bbox=box,
                keypoints=kpts,
                area=float(ann.get("area", box[2] * box[3])),
                bbox_score=1.0,
                ann_id=int(ann["id"]),
                width=width,
                height=height,
            )
        )
    if any(skipped.values()):
        detail = ", ".join(f"{n} {why}" for why, n in skipped.items() if n)
        log.warning(
            "%s: kept %d person annotations, skipped %d (%s)",
            ann_file,
            len(instances),
            sum(skipped.values()),
            detail,
        )
    if not instances:
        raise AnnotationError(
            f"{ann_file}: no usable person instance in 'annotations' (need category 'person', "
            f"iscrowd 0, labelled keypoints and a non-empty bbox); check the file and --set "
            f"data.dataset"
        )
    return instances


def load_detections(
    det_file, ann_file, image_dir, score_thr: float = 0.0, info: DatasetInfo | None = None
) -> list[Instance]:
    """Person boxes from a COCO detection result file (list of image_id, category_id, bbox, score).

    Keeps category 1 (person) with score >= `score_thr`; image names come from
    `ann_file`. Detections of images absent from `ann_file` are dropped with a
    warning that counts them. With `info`, keypoints are zeros of shape (K, 3),
    else (0, 3).
    """
    det_file, ann_file, image_dir = Path(det_file), Path(ann_file), Path(image_dir)
    dets = read_json(det_file, "detection")
    if not isinstance(dets, list):
        raise AnnotationError(
            f"{det_file} is not a COCO detection result file: expected a list of "
            f"{{image_id, category_id, bbox, score}} objects, found a {type(dets).__name__}"
        )
    coco = _load_coco(ann_file)
    images = coco.imgs
    num_keypoints = info.num_keypoints if info is not None else 0
    instances: list[Instance] = []
    unknown, empty = 0, 0
    for i, det in enumerate(dets):
        if not isinstance(det, dict):
            raise AnnotationError(f"{det_file}: entry [{i}] is not an object")
        missing = [key for key in ("image_id", "bbox", "score") if key not in det]
        if missing:
            raise AnnotationError(
                f"{det_file}: entry [{i}] has no {missing} field(s); each detection needs "
                f"image_id, category_id, bbox (x, y, w, h) and score"
            )
        bbox = det["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise AnnotationError(f"{det_file}: entry [{i}].bbox must be [x, y, w, h], got {bbox}")
        if det.get("category_id", 1) != 1 or det["score"] < score_thr:
            continue
        img = images.get(det["image_id"])
        if img is None:
            unknown += 1
            continue
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            empty += 1
            continue
        instances.append(
            Instance(
                image_id=int(det["image_id"]),
                file_name=img["file_name"],
                image_path=image_dir / img["file_name"],
                bbox=(x, y, w, h),
                keypoints=np.zeros((num_keypoints, 3), dtype=np.float32),
                area=w * h,
                bbox_score=float(det["score"]),
                ann_id=-1,
                width=int(img.get("width", 0)),
                height=int(img.get("height", 0)),
            )
        )
    if unknown:
        log.warning(
            "%s: %d detections refer to image ids not in %s and were dropped",
            det_file,
            unknown,
            ann_file,
        )
    if empty:
        log.warning("%s: %d detections with an empty box were dropped", det_file, empty)
    return instances


# ----------------------------------------------------------------------------- images


def _missing_hint(path: Path) -> str:
    return (
        f"image file not found: {path}; check data.root and the *_images fields of the "
        f"config (the file name comes from the annotation file's 'images' list), "
        f"or remove the image from the annotation file"
    )


def open_image(path) -> Image.Image:
    """Decoded RGB PIL image; clear errors for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(_missing_hint(path))
    try:
        im = Image.open(path)
        im.load()  # decodes now, so that a corrupt file fails here; closes the file
        return im if im.mode == "RGB" else im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(
            f"cannot decode image {path}: the file is corrupt or not an image ({e}); "
            f"re-download it or remove it from the annotation file"
        ) from None


def read_image(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB array of an image file."""
    return np.asarray(open_image(path))


def check_images(instances: list[Instance]) -> None:
    """Raise one error listing every image file the instances need that does not exist."""
    missing = sorted({str(inst.image_path) for inst in instances if not inst.image_path.is_file()})
    if missing:
        shown = "\n  ".join(missing[:20])
        more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise FileNotFoundError(
            f"{len(missing)} image file(s) not found:\n  {shown}{more}\n"
            f"check data.root and the *_images fields of the config"
        )
