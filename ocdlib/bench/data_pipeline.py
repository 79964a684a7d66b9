"""Section 3: images per second of the training data pipeline, stage by stage.

One process and one thread (the "per core" figure): `TopDownPoseDataset`'s
training samples (augmentation on, heatmap targets on) from JPEG files, split
into the stages of `TopDownPoseDataset._sample`: decode (open, optional JPEG
draft, decode), geometry (augmentation draws and warp matrices), warp (PIL
affine), normalise, targets (regression and heatmaps). Then the whole
`dataset[i]` and a `DataLoader` with 0, 1 and 2 worker processes. Each with
`data.jpeg_draft` off (the default) and on.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset

from ..configs import get_preset
from ..data.coco import decode_image, open_image
from ..data.dataset import TopDownPoseDataset
from ..data.synthpose import generate_synthpose
from ..data.transforms import _MEAN, _STD, jpeg_draft, normalize_image, warp_image
from ..metainfo import COCO_BODY
from ..paths import COCO_SAMPLE_DIR
from .timing import Spread, interleaved, ratio_to

RATE_TARGET = 400.0  # images/s per core at 256x192
COCO_SAMPLE = COCO_SAMPLE_DIR
STAGES = ("decode", "geometry", "warp", "normalise", "targets")


def normalize_before(img: np.ndarray) -> torch.Tensor:
    """The normalisation the kit used before (same values, bit for bit): for comparison.
    It takes the kit's own mean and std, so the two differ in arithmetic only."""
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()
    return (t - _MEAN) / _STD


def datasets(tmp: Path, synth_images: int, coco_sample: Path = COCO_SAMPLE) -> dict:
    """name -> training dataset (draft off): the COCO sample at 256x192 and 128x96, and
    SynthPose at 256x192 (the gpu_synth data) and at the cpu profile's 128x96."""
    out = {}
    coco_cfg = get_preset("coco_r50_deeppose").data
    ann = coco_sample / "test_coco.json"
    if ann.is_file():
        out["COCO sample (4 images, 12 people)"] = TopDownPoseDataset.from_coco(
            ann, coco_sample, COCO_BODY, coco_cfg, train=True
        )
        # At the cpu profile's crop size the larger people are over twice the crop: where
        # data.jpeg_draft has something to save.
        small = dataclasses.replace(coco_cfg, input_size=(96, 128), heatmap_size=(24, 32))
        out["COCO sample at 128x96"] = TopDownPoseDataset.from_coco(
            ann, coco_sample, COCO_BODY, small, train=True
        )
    for name, preset in (("SynthPose 320x320", "gpu_synth"), ("SynthPose cpu profile", "cpu")):
        cfg = get_preset(f"{preset}_deeppose").data
        s = cfg.synth
        root = tmp / preset
        generate_synthpose(
            root, synth_images, 0, s.seed, image_size=s.image_size, spec=s.spec, progress=False
        )
        ds = TopDownPoseDataset.from_coco(
            root / "annotations" / "train.json", root / "images" / "train", COCO_BODY, cfg, True
        )
        out[f"{name}, {len(ds)} people"] = ds
    return out


def with_draft(ds: TopDownPoseDataset, on: bool) -> TopDownPoseDataset:
    return TopDownPoseDataset(
        ds.instances,
        ds.info,
        dataclasses.replace(ds.cfg, jpeg_draft=on),
        train=True,
        with_heatmaps=ds.with_heatmaps,
        seed=ds.seed,
    )


def _stage_pass(ds: TopDownPoseDataset, indices, draft: bool) -> dict:
    """Seconds per sample of each stage over `indices`, as `_sample` runs them (and of the
    previous normalisation on the same crops, for comparison)."""
    acc = dict.fromkeys((*STAGES, "normalise before"), 0.0)
    for i in indices:
        inst = ds.instances[i]
        t0 = time.perf_counter()
        image = open_image(inst.image_path, decode=False)
        t1 = time.perf_counter()
        g = ds.crop_geometry(i, image.width)
        t2 = time.perf_counter()
        image_warp = jpeg_draft(image, g.image_warp) if draft else g.image_warp
        image = decode_image(image, inst.image_path)
        t3 = time.perf_counter()
        crop = warp_image(image, image_warp, ds.input_size)
        t4 = time.perf_counter()
        normalize_image(crop)
        t5 = time.perf_counter()
        ds.targets(g)
        t6 = time.perf_counter()
        normalize_before(crop)
        t7 = time.perf_counter()
        acc["decode"] += (t1 - t0) + (t3 - t2)
        acc["geometry"] += t2 - t1
        acc["warp"] += t4 - t3
        acc["normalise"] += t5 - t4
        acc["targets"] += t6 - t5
        acc["normalise before"] += t7 - t6
    return {k: v / len(indices) for k, v in acc.items()}


def measure_dataset(ds: TopDownPoseDataset, samples: int, rounds: int, batch: int, workers):
    """One dataset with data.jpeg_draft off and on: stages, whole samples, DataLoaders."""
    indices = [i % len(ds) for i in range(samples)]
    variants = {"off": with_draft(ds, False), "on": with_draft(ds, True)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core: torch's own ops in normalise must not spread
    try:
        stage_runs = {f"{v} {s}": [] for v in variants for s in (*STAGES, "normalise before")}
        for r in range(rounds):
            for v, d in variants.items():
                d.set_epoch(r)
                for stage, t in _stage_pass(d, indices, v == "on").items():
                    stage_runs[f"{v} {stage}"].append(t)
        whole = {}
        for v, d in variants.items():
            d.set_epoch(0)
            whole[v] = lambda d=d: [d[i] for i in indices]
        whole_times = interleaved(whole, rounds, warmup=1)
    finally:
        torch.set_num_threads(threads)
    per_sample = {v: Spread.of(t / len(indices) for t in ts) for v, ts in whole_times.items()}
    stages = {k: Spread.of(v).scaled(1000) for k, v in stage_runs.items()}

    loader_times = {}  # the default setting (draft off) only: workers are what changes
    for w in workers:
        loader = DataLoader(Subset(variants["off"], indices), batch_size=batch, num_workers=w)
        loader_times[f"off {w}"] = lambda loader=loader: [None for _ in loader]
    loader_rates = interleaved(loader_times, rounds, warmup=1)
    return {
        "samples": samples,
        "per_sample_s": per_sample,
        # images/s with the draft on over images/s with it off, round by round
        "draft_speedup": ratio_to(whole_times, "off", "on"),
        "stages_ms": stages,
        "loader_images_per_s": {k: Spread.of(t).inverted(samples) for k, t in loader_rates.items()},
        "crop": f"{ds.input_size[1]}x{ds.input_size[0]}",
        "draft_share": _draft_share(ds, indices),
    }


def _draft_share(ds: TopDownPoseDataset, indices) -> float:
    """Fraction of samples (this epoch's draws) that data.jpeg_draft decodes reduced."""
    reduced = 0
    ds.set_epoch(1000)
    for i in indices:
        inst = ds.instances[i]
        with Image.open(inst.image_path) as im:
            g = ds.crop_geometry(i, im.width)
            reduced += jpeg_draft(im, g.image_warp) is not g.image_warp
    return reduced / len(indices)


def section(results: dict, workers) -> dict:
    tables, data, targets = [], {}, []
    for name, res in results.items():
        rows = []
        for v in ("off", "on"):
            rate = res["per_sample_s"][v].inverted()
            total = sum(res["stages_ms"][f"{v} {s}"].median for s in STAGES)
            speedup = res["draft_speedup"].text("{:.2f}", "x") if v == "on" else "1.00x"
            cells = [f"draft {v}", rate.text("{:.0f}"), speedup]
            for s in STAGES:
                t = res["stages_ms"][f"{v} {s}"]
                cells.append(f"{t.median:.2f} ({100 * t.median / total:.0f}%)")
            cells.append(f"{res['stages_ms'][f'{v} normalise before'].median:.2f}")
            for w in workers:
                rate_w = res["loader_images_per_s"].get(f"{v} {w}")
                cells.append(rate_w.text("{:.0f}") if rate_w else "-")
            rows.append(cells)
        tables.append(
            {
                "caption": f"{name}, {res['crop']} crops, {res['samples']} samples a round; "
                f"data.jpeg_draft reduces {100 * res['draft_share']:.0f}% of them",
                "columns": ["setting", "images/s, 1 core", "ratio to draft off"]
                + [f"{s} ms" for s in STAGES]
                + ["normalise ms, previous code"]
                + [f"DataLoader images/s, {w} workers" for w in workers],
                "rows": rows,
            }
        )
        data[name] = {
            "crop": res["crop"],
            "samples": res["samples"],
            "draft_share": res["draft_share"],
            "draft_speedup": res["draft_speedup"].as_dict(),
            "images_per_s_one_core": {
                v: res["per_sample_s"][v].inverted().as_dict(1) for v in ("off", "on")
            },
            "stages_ms": {k: v.as_dict() for k, v in res["stages_ms"].items()},
            "loader_images_per_s": {k: v.as_dict(1) for k, v in res["loader_images_per_s"].items()},
        }
        if res["crop"] == "256x192":
            for v in ("off", "on"):
                rate = res["per_sample_s"][v].inverted()
                met = rate.median >= RATE_TARGET
                targets.append(
                    {
                        "target": f">= {RATE_TARGET:.0f} images/s per core at 256x192 ({name}, "
                        f"draft {v})",
                        "met": met,
                        "measured": rate.median,
                        "sentence": f"{name}, 256x192 crops, data.jpeg_draft {v}: "
                        f"{rate.median:.0f} images/s on one core (IQR {rate.q1:.0f}-{rate.q3:.0f}) "
                        f"against a target of >= {RATE_TARGET:.0f}: {'met' if met else 'not met'}.",
                    }
                )
    notes = [
        "images/s, 1 core: the whole dataset[i] (decode, augmentation, warp, normalise, "
        "targets) in this process with one torch thread; stage columns time the same steps "
        "one by one (share of their sum in brackets). DataLoader figures include starting "
        "the workers, as each epoch of a run does.",
        "data.jpeg_draft decodes a JPEG at 1/2, 1/4 or 1/8 scale only where the crop takes "
        "at most one pixel in 2, 4 or 8 of it (people much larger than the crop); keypoint "
        "targets are unchanged and crops differ only by the box prefilter of the reduced "
        "decode (tests/test_data.py). It is off by default; the presets leave it off.",
    ]
    return {
        "title": "3. Data pipeline",
        "tables": tables,
        "data": {"datasets": data},
        "targets": targets,
        "notes": notes,
    }


def decode_scales(rounds: int, coco_sample: Path = COCO_SAMPLE) -> dict[str, Spread] | None:
    """Milliseconds to decode the COCO sample's images at full, 1/2, 1/4 and 1/8 scale (PIL's
    JPEG draft mode): how much a reduced decode can save at best."""
    files = sorted(coco_sample.glob("*.jpg"))
    if not files:
        return None

    def decode(scale: int):
        def run():
            for f in files:
                im = open_image(f, decode=False)
                if scale > 1:
                    im.draft("RGB", (im.width // scale, im.height // scale))
                decode_image(im, f)

        return run

    variants = {f"1/{s}" if s > 1 else "full": decode(s) for s in (1, 2, 4, 8)}
    times = interleaved(variants, rounds, repeat=5, warmup=1)
    return {
        name: (Spread.of(t).scaled(1000 / len(files)), ratio_to(times, name, "full"))
        for name, t in times.items()
    }


def measure(samples: int, rounds: int, batch: int, synth_images: int, workers) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            name: measure_dataset(ds, samples, rounds, batch, workers)
            for name, ds in datasets(Path(tmp), synth_images).items()
        }
    out = section(results, workers)
    scales = decode_scales(rounds)
    if scales:
        out["tables"].append(
            {
                "caption": "JPEG decode of the COCO sample's 4 images (about 640x430) at a "
                "reduced scale (PIL draft mode), one core",
                "columns": ["scale", "ms per image", "ratio to full"],
                "rows": [
                    [name, t.text("{:.2f}"), r.text("{:.2f}", "x")]
                    for name, (t, r) in scales.items()
                ],
            }
        )
        out["data"]["jpeg_decode_ms"] = {
            name: {"ms": t.as_dict(), "ratio_to_full": r.as_dict()}
            for name, (t, r) in scales.items()
        }
        out["notes"].append(
            "A reduced JPEG decode skips part of the inverse DCT and colour conversion, not "
            "the entropy decoding of the whole file, so even 1/8 scale saves well under 8x."
        )
    return out
