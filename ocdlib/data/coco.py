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

from ocdlib.errors import AnnotationError, ImageMissingError, ImageReadError
from ocdlib.metainfo import DatasetInfo

from ..errors import MissingFileError

log = logging.getLogger(__name__)

__all__ = ["AnnotationError", "ImageMissingError", "ImageReadError", "Instance"]


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
    # Where it came from, for error messages: the file, annotations[i] (-1 for a
    # detection) and images[j].
    ann_file: str = ""
    ann_index: int = -1
    image_index: int = -1


# ----------------------------------------------------------------------------- files


def read_json(path: Path, what: str):
    """Parse a JSON file; a missing or malformed file raises an error naming it and the fix."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
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


def check_unique_ids(data: dict, ann_file: Path) -> None:
    """Every id that pycocotools uses as a key appears once: image ids, annotation ids and
    category ids. pycocotools keeps one entry per id and drops the rest without a word,
    so COCOeval would score fewer people than the file holds."""
    for key in ("images", "annotations", "categories"):
        first: dict = {}
        for i, entry in enumerate(data.get(key, [])):
            if not isinstance(entry, dict) or "id" not in entry:
                continue
            j = first.setdefault(entry["id"], i)
            if j != i:
                raise AnnotationError(
                    f"{ann_file}: {key}[{j}] and {key}[{i}] have the same id {entry['id']!r} "
                    f"({_summary(data[key][j])}; {_summary(entry)}); pycocotools would keep "
                    "only one of them. Give every entry its own id"
                )


def _summary(entry: dict) -> str:
    shown = {k: entry[k] for k in ("file_name", "image_id", "bbox", "name") if k in entry}
    return ", ".join(f"{k} {v}" for k, v in shown.items()) or "no other fields"


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
        for key in ("width", "height"):
            value = img.get(key, 0)
            if not _is_number(value) or value < 0:
                raise AnnotationError(
                    f"{ann_file}: images[{i}] (id {img['id']}).{key} is {value!r}, not a "
                    f"size in pixels; fix it or leave the field out"
                )
    for i, ann in enumerate(data["annotations"]):
        for key in ("id", "image_id", "bbox"):
            if key not in ann:
                raise AnnotationError(
                    f"{ann_file}: annotations[{i}] has no '{key}' field; every annotation "
                    f"needs 'id', 'image_id', 'bbox' and the keypoint fields"
                )
    check_unique_ids(data, ann_file)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _is_number(v) -> bool:
    return (type(v) is int or type(v) is float) and np.isfinite(v)


def _where(ann_file: Path, index: int, ann: dict) -> str:
    return f"{ann_file}: annotations[{index}] (id {ann.get('id')}, image_id {ann.get('image_id')})"


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
        parts.append(_keypoint_values(values, field, ann, index, ann_file, info, span.start))
    kpts = np.concatenate(parts, axis=0)
    if len(kpts) != info.num_keypoints:
        raise AnnotationError(
            f"dataset '{info.name}': part_fields cover {len(kpts)} keypoints, "
            f"not {info.num_keypoints}; fix its DatasetInfo in ocdlib/metainfo.py"
        )
    return kpts


def _keypoint_values(values, field, ann, index, ann_file, info, first) -> np.ndarray:
    """(N, 3) float32 of one keypoint field; every value a finite number, every flag 0, 1 or 2."""
    # A fast path: json gives int or float for every number.
    if not all(type(v) is float or type(v) is int for v in values):
        j = next(j for j, v in enumerate(values) if not (type(v) is float or type(v) is int))
        raise AnnotationError(
            f"{_where(ann_file, index, ann)}.{field}[{j}] is {values[j]!r}, not a number "
            f"({_value_name(j, first, info)}); fix or remove the annotation"
        )
    kpts = np.asarray(values, dtype=np.float64).reshape(-1, 3)
    bad = ~np.isfinite(kpts)
    if bad.any():
        j = int(np.flatnonzero(bad.ravel())[0])
        raise AnnotationError(
            f"{_where(ann_file, index, ann)}.{field}[{j}] is {values[j]}, not a finite "
            f"number ({_value_name(j, first, info)}); fix or remove the annotation"
        )
    flags = kpts[:, 2]
    # COCO-WholeBody's foot, face and hand fields hold a confidence in [0, 1] there.
    bad = ~np.isin(flags, (0, 1, 2)) if field == "keypoints" else (flags < 0) | (flags > 2)
    if bad.any():
        j = 3 * int(np.flatnonzero(bad)[0]) + 2
        raise AnnotationError(
            f"{_where(ann_file, index, ann)}.{field}[{j}] is {values[j]} "
            f"({_value_name(j, first, info)}); a visibility flag must be 0 (not labelled), "
            f"1 (labelled, hidden) or 2 (visible)"
        )
    return kpts.astype(np.float32)


def _value_name(j: int, first: int, info: DatasetInfo) -> str:
    k = first + j // 3
    name = info.keypoint_names[k] if k < info.num_keypoints else "?"
    what = ("x coordinate", "y coordinate", "visibility flag")[j % 3]
    return f"the {what} of keypoint {k} '{name}'"


def _box(ann: dict, index: int, ann_file: Path) -> tuple[float, float, float, float]:
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise AnnotationError(
            f"{_where(ann_file, index, ann)}.bbox is {bbox!r}; it must be [x, y, w, h]"
        )
    for j, v in enumerate(bbox):
        if not _is_number(v):
            raise AnnotationError(
                f"{_where(ann_file, index, ann)}.bbox[{j}] is {v!r}, not a finite number; "
                f"fix or remove the annotation"
            )
    return tuple(float(v) for v in bbox)


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
    image_index = {img["id"]: j for j, img in enumerate(coco.dataset["images"])}
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
        x, y, w, h = _box(ann, index, ann_file)
        # COCO keeps boxes of non-positive size out of training; so do we, counted.
        box = _clip_box((x, y, w, h), width, height) if w > 0 and h > 0 else None
        if box is None:
            skipped["empty box"] += 1
            continue
        area = ann.get("area", box[2] * box[3])
        if not _is_number(area) or area < 0:
            raise AnnotationError(
                f"{_where(ann_file, index, ann)}.area is {area!r}, not an area in square "
                f"pixels; fix it or leave the field out"
            )
        instances.append(
            Instance(
                image_id=int(ann["image_id"]),
                file_name=img["file_name"],
                image_path=image_dir / img["file_name"],
                bbox=box,
                keypoints=kpts,
                area=float(area),
                bbox_score=1.0,
                ann_id=int(ann["id"]),
                width=width,
                height=height,
                ann_file=str(ann_file),
                ann_index=index,
                image_index=image_index[ann["image_id"]],
            )
        )
    if any(skipped.values()):
        detail = ", ".join(f"{n} {why}" for why, n in skipped.items() if n)
        # Crowds and people without a labelled keypoint are COCO's own filter (noted);
        # an annotation of no image or with a box of no size is a fault of the file (warned).
        faulty = skipped["unknown image"] or skipped["empty box"]
        (log.warning if faulty else log.info)(
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
        for j, v in enumerate(bbox):
            if not _is_number(v):
                raise AnnotationError(
                    f"{det_file}: entry [{i}].bbox[{j}] is {v!r}, not a finite number"
                )
        if not _is_number(det["score"]):
            raise AnnotationError(
                f"{det_file}: entry [{i}].score is {det['score']!r}, not a finite number"
            )
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
                ann_file=str(ann_file),
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


def open_image(path, listed_in: str | None = None, decode: bool = True) -> Image.Image:
    """Decoded RGB PIL image; one-line errors for a missing or corrupt file.

    `listed_in` is the annotation file that names the image (the fix is then
    to remove it there); without it the image came from the user directly.
    With `decode=False` only the header is read (size known, pixels not yet
    decoded), so that a JPEG can still be told to decode at a reduced scale
    (`transforms.jpeg_draft`); `decode_image` then finishes the job.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageMissingError(
            f"image file not found: {path}"
            + (
                f", named in {listed_in} ('images'[].file_name); check data.root and the "
                f"*_images fields of the config, or remove the image from {listed_in}"
                if listed_in
                else "; check the path"
            )
        )
    try:
        im = Image.open(path)
    except _DECODE_ERRORS as e:
        raise _read_error(path, listed_in, e) from None
    return decode_image(im, path, listed_in) if decode else im


def decode_image(im: Image.Image, path, listed_in: str | None = None) -> Image.Image:
    """Decode an image opened with `open_image(..., decode=False)` into RGB."""
    try:
        im.load()  # decodes now, so that a corrupt file fails here; closes the file
        return im if im.mode == "RGB" else im.convert("RGB")
    except _DECODE_ERRORS as e:
        raise _read_error(Path(path), listed_in, e) from None


_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)


def _read_error(path: Path, listed_in: str | None, e: Exception) -> ImageReadError:
    fix = f"re-create it or remove it from {listed_in}" if listed_in else "pass a JPEG or PNG image"
    return ImageReadError(
        f"cannot decode image {path}: the file is corrupt or not an image ({e}); {fix}"
    )


def read_image(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB array of an image file."""
    return np.asarray(open_image(path))


def check_images(instances: list[Instance], field: str = "data.*_images") -> None:
    """Raise one one-line error naming the image files the instances need that do not exist.

    Only existence is checked (a stat per file); whether a file decodes is found
    when it is read (see data.bad_images).
    """
    missing: dict[str, str] = {}
    for inst in instances:
        path = str(inst.image_path)
        if path not in missing and not inst.image_path.is_file():
            missing[path] = inst.ann_file
    if missing:
        paths = sorted(missing)
        listed_in = sorted(set(missing.values()) - {""})
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        raise ImageMissingError(
            f"{len(paths)} image file(s) named in {', '.join(listed_in) or 'the annotations'} "
            f"('images'[].file_name) not found: {shown}; check data.root and {field}, or "
            f"remove them from the annotation file"
        )
