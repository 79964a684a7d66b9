"""Run records: what a finished run leaves for the reports, without its weights.

A record is a copy of a run folder's config.json, result.json and evals.json, the
scores of its other heads (eval_<head>/metrics.json), its log.csv gzipped, and
`pictures.json`: the deployed student's keypoints on the first validation images and on
the COCO sample, what the keypoint pictures draw. A few hundred kB where the run
folder holds megabytes of checkpoints.
Records are committed under reports/<profile>/runs/<run folder name>/, so that the
results of runs trained elsewhere (a lent GPU, an earlier machine) outlive their run
cache: with `reproduce --no-train` the notebooks read a run from its record where the
run cache lacks it. Tables, claims and learning curves need nothing more; pictures of
a model's keypoints and its latency need its weights, and are left out without them.

A record must be of the config that asks for it: its folder is named after the config
hash, and a record whose config.json hashes otherwise is refused, naming both hashes.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..configs import Config
from ..data.prepare import resolve_data
from ..engine.evaluate import head_metrics, predict_people
from ..engine.run_dir import (
    CONFIG,
    EVALS,
    LOG,
    RESULT,
    RunDir,
    has_weights,
    load_run_config,
    load_run_model,
)
from ..errors import KitError, MissingFileError
from ..paths import COCO_SAMPLE_DIR, REPO_ROOT, reports_home

RECORD_FILES = (CONFIG, RESULT, EVALS)
PICTURES = "pictures.json"
PICTURE_IMAGES = 4  # images of each set kept: the pictures draw 3 of SynthPose, 4 of COCO's


def coco_sample_ann(dataset: str) -> Path:
    """The COCO sample's annotation file for a run's keypoint layout."""
    name = "test_coco_wholebody.json" if dataset == "coco_wholebody" else "test_coco.json"
    return COCO_SAMPLE_DIR / name


def picture_predictions(run_dir: Path) -> dict | None:
    """The deployed student's keypoints on the first validation images ("val") and on
    the COCO sample ("coco_sample"), as pictures.json keeps them; None without weights."""
    if not has_weights(run_dir):
        return None
    model, cfg = load_run_model(run_dir, student=True)
    paths = resolve_data(cfg.data, progress=False)
    sets = {"val": (paths.val_ann, paths.val_images)}
    if coco_sample_ann(cfg.data.dataset).is_file():
        sets["coco_sample"] = (coco_sample_ann(cfg.data.dataset), COCO_SAMPLE_DIR)
    out = {}
    for name, (ann, images) in sets.items():
        ids, people = predict_people(model, cfg, ann, images, n_images=PICTURE_IMAGES)
        out[name] = {
            "image_ids": ids,
            "people": {str(k): np.round(v, 2).tolist() for k, v in people.items()},
        }
    return out


def recorded_predictions(run_dir: Path, picture_set: str) -> tuple[list[int], dict] | None:
    """What a record's pictures.json holds of `picture_set`: (image ids, {image_id: (N, K, 3)}),
    or None where it has none."""
    path = Path(run_dir) / PICTURES
    if not path.is_file():
        return None
    stored = json.loads(path.read_text()).get(picture_set)
    if not stored:
        return None
    people = {int(k): np.asarray(v, dtype=np.float32) for k, v in stored["people"].items()}
    return stored["image_ids"], people


class StaleRecordError(KitError):
    """A committed run record whose config is not the one the grid asks for."""


class CorruptRecordError(KitError):
    """A committed run record whose file cannot be read (truncated, half-written)."""


def _read_json(path: Path) -> dict:
    """A record's JSON file, or an error naming the file and the fix."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptRecordError(
            f"the run record file {path} cannot be read ({err}; truncated?): restore it "
            f"with `git checkout -- {path}`, or delete its folder {Path(path).parent} and "
            "train the run again"
        ) from None


def records_home(report_folder: Path | None = None) -> Path:
    """reports/<profile>/runs/ for one profile's report folder; reports/ for all of them."""
    return Path(report_folder or reports_home()) / "runs"


def score_other_heads(run_dir: Path) -> None:
    """Score the heatmap head that trains beside a run's deployed head (what the notebooks
    show as "the heatmap head inside"), while the weights are here: a record has none."""
    model = load_run_config(run_dir).model
    if "hm" in model.heads and model.deploy_head != "hm" and RunDir(run_dir).checkpoint.is_file():
        head_metrics(run_dir, "hm")


def write_record(run_dir: Path, dest_root: Path) -> Path:
    """Copy a finished run's record into `dest_root`/<run folder name>/ and return it."""
    run_dir = Path(run_dir)
    if not RunDir(run_dir).is_finished():
        raise MissingFileError(f"{run_dir} has no result.json: only a finished run has a record")
    score_other_heads(run_dir)
    dest = Path(dest_root) / run_dir.name
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in RECORD_FILES:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, tmp / name)
    for scores in sorted(run_dir.glob("eval_*/metrics.json")):  # other heads' scores
        (tmp / scores.parent.name).mkdir()
        shutil.copyfile(scores, tmp / scores.parent.name / scores.name)
    pictures = picture_predictions(run_dir)
    if pictures is not None:
        (tmp / PICTURES).write_text(json.dumps(pictures, separators=(",", ":")))
    elif (dest / PICTURES).is_file():  # a record rewritten where the weights are gone
        shutil.copyfile(dest / PICTURES, tmp / PICTURES)
    if (run_dir / LOG).is_file():
        # mtime 0: the same log packs to the same bytes, so rewriting a record changes nothing.
        with (
            open(run_dir / LOG, "rb") as src,
            gzip.GzipFile(tmp / f"{LOG}.gz", "wb", 6, mtime=0) as out,
        ):
            shutil.copyfileobj(src, out)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    return dest


def _candidates(cfg: Config, roots: Iterable[Path]) -> list[Path]:
    stem = f"{cfg.name}-{cfg.hash}-s{cfg.train.seed}"
    found = []
    for root in roots:
        if not Path(root).is_dir():
            continue
        for d in sorted(Path(root).glob(f"{stem}*")):
            if d.name == stem or d.name in (f"{stem}-bf16", f"{stem}-fp32"):
                found.append(d)
    return found


def record_roots() -> list[Path]:
    """Every reports/**/runs/ folder, where committed records live (one glob: a caller
    that looks up many configs passes it to `find_record`)."""
    homes = dict.fromkeys([reports_home(), REPO_ROOT / "reports"])
    return [r for home in homes for r in sorted(Path(home).glob("**/runs"))]


def other_record_roots(dest_root: Path, roots: Iterable[Path] | None = None) -> list[Path]:
    """`roots` (default `record_roots()`) less `dest_root`: where a run is recorded
    already when a command writes records to `dest_root` (a run is committed once, for
    every profile)."""
    dest = Path(dest_root).resolve()
    return [r for r in (record_roots() if roots is None else roots) if r.resolve() != dest]


def find_record(cfg: Config, roots: Iterable[Path] | None = None) -> Path | None:
    """The committed record of `cfg` (any precision; its result.json says which), or None.

    Searched under every reports/**/runs/ folder unless `roots` is given. A record
    whose config.json is not `cfg` (another hash) raises StaleRecordError."""
    for d in _candidates(cfg, record_roots() if roots is None else roots):
        recorded = Config.from_dict(_read_json(RunDir(d).config))
        if recorded.hash != cfg.hash:
            raise StaleRecordError(
                f"the run record {d} holds config {recorded.hash}, but the grid asks for "
                f"{cfg.hash} ({cfg.name}, seed {cfg.train.seed}); the grid's config has "
                "changed since the run: train it again, or delete the stale record"
            )
        if RunDir(d).is_finished():
            return d
    return None


def read_record(directory: Path) -> dict:
    """A record's result.json, with the folder it came from as `run_dir`."""
    result = _read_json(RunDir(Path(directory)).result)
    return {**result, "run_dir": str(directory)}
