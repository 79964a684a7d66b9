"""COCO files: annotations, categories, and generating a whole copy."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, ExistingRunError, GenerationAbandoned
from ...metainfo import BODY_NAMES, BODY_SKELETON
from ...synth_spec import SYNTHPOSE_VERSION, SynthPoseSpec
from .image import render_synthpose_image
from .layout import FACE0, FOOT0, LHAND0, NUM_WB, RHAND0


def _round_kpts(kps: np.ndarray) -> list:
    out = []
    for x, y, v in kps.tolist():
        if v > 0:
            out += [round(x, 2), round(y, 2), int(v)]
        else:
            out += [0, 0, 0]
    return out


def _part_box(kps: np.ndarray, height: int, width: int) -> list[float]:
    lab = kps[kps[:, 2] > 0]
    if len(lab) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = lab[:, :2].min(0)
    x1, y1 = lab[:, :2].max(0)
    pad = 0.1 * max(x1 - x0, y1 - y0) + 1.0
    x0, y0 = max(0.0, x0 - pad), max(0.0, y0 - pad)
    x1, y1 = min(width - 1.0, x1 + pad), min(height - 1.0, y1 + pad)
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def _coco_annotation(person, ann_id, image_id, wholebody, height, width) -> dict[str, Any]:
    kps = person["keypoints"]
    ann = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "bbox": [round(v, 2) for v in person["bbox"]],
        "area": person["area"],
        "segmentation": [],
        "num_keypoints": person["num_keypoints"],
        "keypoints": _round_kpts(kps[:17]),
    }
    if wholebody:
        ann["foot_kpts"] = _round_kpts(kps[FOOT0:FACE0])
        ann["face_kpts"] = _round_kpts(kps[FACE0:LHAND0])
        ann["lefthand_kpts"] = _round_kpts(kps[LHAND0:RHAND0])
        ann["righthand_kpts"] = _round_kpts(kps[RHAND0:NUM_WB])
        for name, sl in (
            ("face", slice(FACE0, LHAND0)),
            ("lefthand", slice(LHAND0, RHAND0)),
            ("righthand", slice(RHAND0, NUM_WB)),
        ):
            ann[f"{name}_box"] = _part_box(kps[sl], height, width)
        for name, sl in (
            ("face", slice(FACE0, LHAND0)),
            ("lefthand", slice(LHAND0, RHAND0)),
            ("righthand", slice(RHAND0, NUM_WB)),
            ("foot", slice(FOOT0, FACE0)),
        ):
            ann[f"{name}_valid"] = bool((kps[sl, 2] > 0).any())
    return ann


def _categories() -> list[dict[str, Any]]:
    return [
        {
            "id": 1,
            "name": "person",
            "supercategory": "person",
            "keypoints": list(BODY_NAMES),
            "skeleton": [[a + 1, b + 1] for a, b in BODY_SKELETON],
        }
    ]


def _render_chunk(job) -> list[tuple[int, list[dict[str, Any]]]]:
    """Render and save images `indices` of one split (runs in a worker process)."""
    seed, split, indices, image_size, spec, image_dir = job
    out = []
    for index in indices:
        sample = render_synthpose_image(seed, split, index, image_size, spec)
        sample.image.save(
            Path(image_dir) / _file_name(index), format="JPEG", quality=spec.jpeg_quality
        )
        out.append((index, sample.people))
    return out


def _worker_pool(workers: int):
    """A process pool; forked on Linux, since a spawned worker re-imports torch (seconds)."""
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method).Pool(workers)


def _file_name(index: int) -> str:
    return f"{index + 1:07d}.jpg"


def _split_stats(images: int, anns: list[dict[str, Any]], hw) -> dict[str, Any]:
    """Counts of one split; "figures" are annotated figures, "instances" those with keypoints."""
    labelled = [a for a in anns if a["num_keypoints"] > 0]
    counts = np.zeros(3, dtype=np.int64)
    for a in labelled:
        v = np.asarray(a["keypoints"][2::3], dtype=np.int64)
        for key in ("foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts"):
            if key in a:
                v = np.concatenate([v, np.asarray(a[key][2::3], dtype=np.int64)])
        counts += np.bincount(v, minlength=3)[:3]
    total = max(1, int(counts.sum()))
    return {
        "images": images,
        "figures": len(anns),
        "instances": len(labelled),
        "unlabelled_instances": len(anns) - len(labelled),
        "figures_per_image": round(len(anns) / max(1, images), 3),
        "instances_per_image": round(len(labelled) / max(1, images), 3),
        "keypoints_v0": int(counts[0]),
        "keypoints_v1": int(counts[1]),
        "keypoints_v2": int(counts[2]),
        "frac_v1": round(float(counts[1]) / total, 4),
        "frac_v2": round(float(counts[2]) / total, 4),
        "mean_area_frac": round(
            float(np.mean([a["area"] for a in labelled])) / (hw[0] * hw[1]) if labelled else 0.0, 4
        ),
    }


def generate_synthpose(
    out_dir,
    n_train: int,
    n_val: int,
    seed: int,
    wholebody: bool = False,
    image_size: tuple[int, int] = (256, 256),
    spec: SynthPoseSpec = SynthPoseSpec(),  # noqa: B008 (frozen, so a safe default)
    progress: bool = True,
    workers: int = 1,
    give_up=None,
) -> dict[str, Any]:
    """Write a SynthPose copy into `out_dir` and return its statistics.

    Layout: images/{train,val}/NNNNNNN.jpg, annotations/{train,val}.json (COCO
    keypoints, or COCO-WholeBody when `wholebody`), and synthpose.json with the
    spec, seed, sizes and statistics. `image_size` is (H, W). The files are
    byte-identical for the same arguments, whatever `workers` is. `give_up`, if given, is
    asked after each chunk of images; when it returns a reason, generation stops with
    GenerationAbandoned (a time box that has run out).
    """
    from tqdm import tqdm

    out = Path(out_dir)
    height, width = (int(v) for v in image_size)
    if height < 32 or width < 32:
        raise ConfigError(f"image_size={image_size}: SynthPose needs at least 32x32 pixels")
    if n_train < 0 or n_val < 0:
        raise ConfigError(f"n_train={n_train}, n_val={n_val}: image counts must be >= 0")
    if out.exists() and any(out.iterdir()):
        if not (out / "synthpose.json").is_file():
            raise ExistingRunError(
                f"{out} is not empty and holds no synthpose.json; give an empty or new folder"
            )
        for sub in ("images", "annotations"):  # a previous SynthPose copy: replace it
            shutil.rmtree(out / sub, ignore_errors=True)
        (out / "synthpose.json").unlink()
    workers = max(1, int(workers))
    start = time.perf_counter()
    stats: dict[str, Any] = {}
    bar = tqdm(total=n_train + n_val, desc="SynthPose", unit="img", disable=not progress)
    pool = _worker_pool(workers) if workers > 1 else None
    try:
        for split, count in (("train", n_train), ("val", n_val)):
            image_dir = out / "images" / split
            image_dir.mkdir(parents=True, exist_ok=True)
            chunk = max(1, min(64, count // (4 * workers) + 1))
            jobs = [
                (
                    seed,
                    split,
                    range(i, min(count, i + chunk)),
                    (height, width),
                    spec,
                    str(image_dir),
                )
                for i in range(0, count, chunk)
            ]
            results = pool.imap(_render_chunk, jobs) if pool else map(_render_chunk, jobs)
            images, anns = [], []
            for chunk_result in results:
                for index, people in chunk_result:
                    image_id = index + 1
                    images.append(
                        {
                            "id": image_id,
                            "file_name": _file_name(index),
                            "height": height,
                            "width": width,
                        }
                    )
                    for person in people:
                        anns.append(
                            _coco_annotation(
                                person, len(anns) + 1, image_id, wholebody, height, width
                            )
                        )
                    bar.update(1)
                if give_up is not None and (why := give_up()):
                    raise GenerationAbandoned(f"SynthPose generation into {out} abandoned: {why}")
            coco = {
                "info": {
                    "description": f"SynthPose {'whole-body ' if wholebody else ''}{split}",
                    "version": str(SYNTHPOSE_VERSION),
                    "seed": seed,
                },
                "images": images,
                "annotations": anns,
                "categories": _categories(),
            }
            (out / "annotations").mkdir(parents=True, exist_ok=True)
            with open(out / "annotations" / f"{split}.json", "w") as f:
                json.dump(coco, f, separators=(",", ":"))
            stats[split] = _split_stats(len(images), anns, (height, width))
    finally:
        bar.close()
        if pool is not None:
            if sys.exc_info()[0] is not None:
                pool.terminate()  # abandoned or failed: the chunks still queued are not wanted
            pool.close()
            pool.join()
    elapsed = time.perf_counter() - start
    meta = {
        "version": SYNTHPOSE_VERSION,
        "seed": seed,
        "n_train": n_train,
        "n_val": n_val,
        "image_size": [height, width],
        "wholebody": wholebody,
        "dataset": "coco_wholebody" if wholebody else "coco",
        "spec": dataclasses.asdict(spec),
        "statistics": stats,
    }
    # Timing stays out of the file so that the same arguments give the same bytes.
    with open(out / "synthpose.json", "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    n = n_train + n_val
    return {
        **stats,
        "images": n,
        "instances": sum(s["instances"] for s in stats.values()),
        "elapsed_s": round(elapsed, 3),
        "images_per_s": round(n / elapsed, 1) if elapsed > 0 else float("inf"),
        "out_dir": str(out),
    }
