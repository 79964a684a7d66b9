"""Command line: python -m ocdlib {synth,data,presets,train,pretrain,eval,export,predict,
reproduce,readme,records,bench}."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import KitError, RunInterrupted
from .predict import DEFAULT_DET_THR
from .profiles import NOTEBOOK_PROFILES, notebook_profile


def cmd_data_check(args) -> int:
    from .data.coco_root import check_root, preset_overrides

    root = Path(args.root)
    print(f"checking {root} (COCO's training annotations take a minute to load)", file=sys.stderr)
    report = check_root(root, wholebody=args.wholebody, decode=args.decode)
    print("\n".join(report.lines()))
    if report.missing:
        print(
            f"error: {len(report.missing)} problem(s) in the COCO root {root}; each has its fix "
            "above",
            file=sys.stderr,
        )
        return 1
    sets = " ".join(f"--set {s}" for s in preset_overrides(root))
    print(
        f"the COCO root {root} is complete; train with: python -m ocdlib train "
        f"--config coco_r50_ocd {sets}"
    )
    return 0


def cmd_data_coco(args) -> int:
    from .data.download import download_coco

    root = Path(args.root)
    todo = download_coco(root, url=args.url, keep_archives=args.keep_archives)
    for path, how, needed in todo:
        who = "every coco preset" if needed else "only the coco_wholebody_* presets"
        print(f"manual step ({who} need {path}): {how}")
    print(f"then check the root: python -m ocdlib data check --root {root}")
    return 0


def cmd_presets(args) -> int:
    from .configs import BASES, METHODS

    print("notebook profiles (reproduce --profile NAME; the notebooks' `profile` parameter):")
    for p in NOTEBOOK_PROFILES.values():
        print(f"  {p.name:<10} {p.about}")
        print(
            f"  {'':<10} body rows on {p.body}, whole-body rows on {p.wholebody}; seeds {p.seeds}"
        )
    print("config presets (train --config PRESET) are <config base>_<method>:")
    print("  config bases:", " ".join(BASES))
    print("  methods:        ", " ".join(METHODS))
    if args.show:
        from .configs import get_preset

        print(get_preset(args.show).to_json())
    return 0


def cmd_train(args) -> int:
    from .configs import build_config
    from .engine.trainer import train
    from .runs.cache import run_dir, run_precision

    cfg = build_config(args.config, args.set)
    out = Path(args.out) if args.out else run_dir(cfg)
    print(f"config {cfg.name} ({cfg.hash}) -> {out}", file=sys.stderr)
    precision = run_precision(cfg)
    result = train(cfg, out, resume=args.resume, progress=not args.no_progress, precision=precision)
    if result:
        print(json.dumps(result.get("metrics", result), indent=1))
    return 0


def cmd_eval(args) -> int:
    from .engine.evaluate import evaluate_run

    metrics, out = evaluate_run(args.run, args.head, args.ann, args.images, args.boxes, args.out)
    print(json.dumps(metrics, indent=1))
    print(f"predictions and metrics written to {out}", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from .export import export_onnx

    export_onnx(Path(args.run), Path(args.out), check=not args.no_check)
    return 0


def cmd_predict(args) -> int:
    from .predict import predict_image

    written = predict_image(
        Path(args.run), Path(args.image), args.boxes, args.out, args.det_thr, args.json
    )
    print("wrote " + ", ".join(map(str, written)))
    return 0


def cmd_reproduce(args) -> int:
    profile = notebook_profile(args.profile)
    if args.minutes is not None and args.out:  # a GPU allocation: records, no notebooks
        from .reproduce.timebox import reproduce_within

        reproduce_within(profile, args.minutes, Path(args.out), jobs=args.jobs or 1)
        return 0
    if args.out:
        raise KitError("reproduce --out goes with --minutes (the folder for the run records)")
    from .reproduce import reproduce

    return reproduce(
        profile=profile,
        only=args.only,
        jobs=args.jobs,
        train_missing=not args.no_train,
        minutes=args.minutes,
    )


def cmd_pretrain(args) -> int:
    from .pretrain import install_weights, pretrain, pretrain_config

    cfg = pretrain_config(args.config, args.set)
    command = "python -m ocdlib " + " ".join(args.argv)
    record = pretrain(cfg, Path(args.out) if args.out else None, command=command)
    if args.install:
        from .pretrain import pretrain_dir

        run = Path(args.out) if args.out else pretrain_dir(cfg, record["precision_tag"])
        target = install_weights(run, args.install)
        print(f"installed as model.pretrained={args.install}: {target} and its record")
    print(json.dumps({k: record[k] for k in ("name", "hash", "sha256", "minutes", "final_acc")}))
    return 0


def _add_pretrain_parser(sub) -> None:
    from .pretrain import PRETRAIN_PRESETS

    p = sub.add_parser(
        "pretrain",
        help="pre-train a backbone on generated images, no natural images or keypoints "
        "(resumable; weights for model.pretrained)",
    )
    p.add_argument("--config", required=True, choices=sorted(PRETRAIN_PRESETS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", help="run folder (default: runs/pretrain/<name>-<hash>-s<seed>-<tag>)")
    p.add_argument(
        "--install",
        metavar="NAME",
        help="copy the finished weights and record to ocdlib/pretrained/NAME.{pth,json}, "
        "where model.pretrained=NAME finds them",
    )
    p.set_defaults(func=cmd_pretrain)


def cmd_records(args) -> int:
    from .paths import report_dir
    from .reproduce import train_grid, write_profile_records
    from .runs.records import records_home

    profile = notebook_profile(args.profile)
    dest = Path(args.out) if args.out else records_home(report_dir(profile))
    trained: list[str] = []
    if args.train:  # each run's record written as it finishes
        command = f"python -m ocdlib records --profile {profile.name} --train"
        trained = train_grid(
            profile, use_records=True, command=command, announce=True, records=dest
        )
    write_profile_records(profile, dest, recorded=trained)
    return 0


def cmd_readme(args) -> int:
    from .report.readme import main

    return main(check=args.check)


def cmd_bench(args) -> int:
    from .bench.run import PLANS, SECTIONS, run_bench
    from .paths import reports_home

    out = Path(args.out) if args.out else reports_home()
    plan = PLANS["quick" if args.quick else args.plan]
    command = "python -m ocdlib " + " ".join(args.argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run_bench(args.device, plan, out, tuple(args.only or SECTIONS), command)
    print(f"wrote {out / 'perf.md'} and {out / 'perf.json'}")
    return 0


def _add_data_parsers(sub) -> None:
    """COCO: check a root, download it."""
    p = sub.add_parser("data", help="COCO: check a root (data check), download it (data coco)")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("check", help="check a COCO root against the coco_* presets")
    p.add_argument("--root", default="data/coco", help="the COCO root (default: data/coco)")
    p.add_argument(
        "--wholebody", action="store_true", help="also require the COCO-WholeBody annotations"
    )
    p.add_argument(
        "--decode", type=int, default=8, metavar="N", help="images per split to decode (8)"
    )
    p.set_defaults(func=cmd_data_check)
    p = data_sub.add_parser(
        "coco", help="download COCO 2017 images and keypoint annotations (resumable)"
    )
    p.add_argument("--root", default="data/coco", help="where to put COCO (default: data/coco)")
    p.add_argument(
        "--url",
        help="base URL of a mirror with COCO's paths (default: $OCDLIB_COCO_URL or "
        "http://images.cocodataset.org)",
    )
    p.add_argument(
        "--keep-archives", action="store_true", help="keep the zip files after extracting"
    )
    p.set_defaults(func=cmd_data_coco)


def _add_run_parsers(sub) -> None:
    """One run: presets, train, pretrain, eval, export, predict."""
    p = sub.add_parser("presets", help="list the notebook profiles and the config presets")
    p.add_argument("--show", metavar="PRESET", help="print one preset's resolved config")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("train", help="train a preset (resumable)")
    p.add_argument("--config", required=True, metavar="PRESET", help="e.g. cpu_ocd")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", help="run directory (default: runs/<name>-<hash>-s<seed>)")
    p.add_argument("--resume", action="store_true", help="continue from checkpoint.pt")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    _add_pretrain_parser(sub)

    p = sub.add_parser("eval", help="evaluate a finished run (COCO OKS AP)")
    p.add_argument("--run", required=True)
    p.add_argument("--ann", help="COCO keypoint annotation file (default: the run's val set)")
    p.add_argument("--images", help="image folder of --ann")
    p.add_argument("--boxes", help="COCO detection results file (default: GT boxes)")
    p.add_argument(
        "--head",
        help="score this head instead of the deployed one, e.g. the heatmap head 'hm' of an "
        "OCD run (output folder: <run>/eval_<head>)",
    )
    p.add_argument("--out", help="output folder (default: <run>/eval)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="export the deployed student to ONNX")
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="draw a run's keypoints on an image")
    p.add_argument("--run", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--boxes", help="COCO detection results JSON, or x,y,w,h (default: whole image)")
    p.add_argument("--out", help="output PNG (default: <image>.pose.png)")
    p.add_argument(
        "--det-thr",
        type=float,
        default=DEFAULT_DET_THR,
        metavar="SCORE",
        help=f"keep detections of --boxes FILE with at least this score (default "
        f"{DEFAULT_DET_THR}, as mmpose's top-down demo)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="also write the keypoints as COCO keypoint results beside the picture (.json)",
    )
    p.set_defaults(func=cmd_predict)


def _add_reproduce_parsers(sub) -> None:
    """The grid: reproduce, readme, records, bench."""
    p = sub.add_parser("reproduce", help="run the notebooks in order with papermill")
    p.add_argument(
        "--profile",
        default="cpu",
        choices=list(NOTEBOOK_PROFILES),
        help="; ".join(f"{p.name}: {p.about}" for p in NOTEBOOK_PROFILES.values()),
    )
    p.add_argument("--only", nargs="*", help="notebook prefixes, e.g. 02 06")
    p.add_argument(
        "--minutes",
        type=float,
        help="keep within this many minutes: the key comparisons train first, runs that cannot "
        "finish in time are not started, and the notebooks report on what finished (naming the "
        "rows that did not); with --out, for a short GPU allocation: records, no notebooks",
    )
    p.add_argument(
        "--out",
        help="with --minutes: write the finished runs' records and records.tar.gz here instead "
        "of running the notebooks (what a GPU allocation brings back; docs/GPU.md)",
    )
    p.add_argument(
        "--no-train",
        action="store_true",
        help="train nothing: the notebooks report on the finished runs and name the missing ones",
    )
    p.add_argument(
        "--jobs",
        type=int,
        help="training runs side by side, each with cores/jobs threads (default: one per core "
        "this process may use, so taskset or a container's CPU limit is respected)",
    )
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser(
        "readme", help="rewrite README.md's results block from reports/ (--check: only compare)"
    )
    p.add_argument("--check", action="store_true", help="exit 1 if the block is stale")
    p.set_defaults(func=cmd_readme)

    p = sub.add_parser(
        "records",
        help="copy the records of a profile's finished runs (config, result, evaluations, log; "
        "no weights) to reports/<profile>/runs/, where `reproduce --no-train` reads them",
    )
    p.add_argument("--profile", default="cpu_full", choices=list(NOTEBOOK_PROFILES))
    p.add_argument("--out", help="folder for the records (default: reports/<profile>/runs/)")
    p.add_argument(
        "--train",
        action="store_true",
        help="first train the grid's runs that neither the run cache nor a committed record "
        "holds (side by side, teachers first), so that every run of the grid gets a record",
    )
    p.set_defaults(func=cmd_records)

    p = sub.add_parser(
        "bench",
        help="measure model, training-step, data-pipeline and COCOeval speed; "
        "writes perf.md and perf.json",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--quick", action="store_true", help="few rounds on small batches (about a minute)"
    )
    p.add_argument(
        "--plan", default="full", choices=["full", "quick", "tiny"], help=argparse.SUPPRESS
    )
    p.add_argument("--only", nargs="*", choices=["model", "training", "data", "eval"])
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    p.add_argument("--out", help="folder for perf.md and perf.json (default: reports/)")
    p.set_defaults(func=cmd_bench)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocdlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    from .data.synthpose import add_synth_subparser

    add_synth_subparser(sub)

    _add_data_parsers(sub)
    _add_run_parsers(sub)
    _add_reproduce_parsers(sub)

    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except RunInterrupted as e:  # a clean stop on SIGTERM / Ctrl-C: saved, resumable
        print(f"stopped: {e}", file=sys.stderr)
        return e.exit_status
    # What a user can fix is one line on stderr, no traceback: the kit's own errors (bad
    # data, a config out of range, an unknown name, a missing file, a run locked by another
    # writer). Anything else is a bug in the kit and keeps its traceback.
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
