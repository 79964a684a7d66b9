"""Command line: python -m ocdlib synth ..."""

from __future__ import annotations

import argparse
import dataclasses
import json

from ...errors import ConfigError
from ...synth_spec import SynthPoseSpec
from .coco_files import generate_synthpose


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected HxW, e.g. 256x192") from None
    return h, w


def add_synth_subparser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "synth",
        help="generate a SynthPose copy (COCO keypoint format)",
        description="Render the SynthPose benchmark into DIR/images and DIR/annotations.",
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--train", type=int, default=2000, metavar="N", help="training images")
    p.add_argument("--val", type=int, default=300, metavar="M", help="validation images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wholebody", action="store_true", help="133 COCO-WholeBody keypoints")
    p.add_argument("--size", type=_parse_size, default=(256, 256), metavar="HxW")
    p.add_argument("--workers", type=int, default=1, help="processes (same files for any count)")
    p.add_argument(
        "--spec",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="override a SynthPoseSpec knob, e.g. --spec occluders=[0,4] (JSON values)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_synth)
    return p


def _spec_from_overrides(items: list[str]) -> SynthPoseSpec:
    d = dataclasses.asdict(SynthPoseSpec())
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in d:
            raise ConfigError(f"--spec {item!r}: expected KNOB=VALUE with KNOB one of {sorted(d)}")
        try:
            d[key] = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(f"--spec {item!r}: value is not JSON (e.g. 0.3 or [1, 4])") from None
    return SynthPoseSpec.from_dict(d)


def run_synth(args) -> int:
    stats = generate_synthpose(
        args.out,
        n_train=args.train,
        n_val=args.val,
        seed=args.seed,
        wholebody=args.wholebody,
        image_size=tuple(args.size),
        spec=_spec_from_overrides(args.spec),
        progress=not args.no_progress,
        workers=args.workers,
    )
    print(json.dumps(stats, indent=1))
    return 0
