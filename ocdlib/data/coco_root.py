"""The COCO root that the `coco_*` presets read, where each of its files comes from, and its check.

The layout is not written down a second time here: the annotation files, image
folders and the detection file are read off the presets (`BASES` in
ocdlib/configs/presets.py), relative to their `data.root`. `check_root` verifies a
root (`python -m ocdlib data check --root DIR`); `ocdlib.data.download` fills
it (`python -m ocdlib data coco --root DIR`). Two files have no stable direct
URL and are placed by hand; `MANUAL_STEPS` says how.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..configs import BASES, Config
from ..errors import KitError
from ..models.backbones import imagenet_weights_file, missing_imagenet_message
from .coco import open_image

# The config bases that read a COCO root: every profile whose name starts with "coco".
COCO_BASES = tuple(name for name in BASES if name.startswith("coco"))

# Files with no stable direct URL: where they come from, keyed by file name.
MANUAL_STEPS = {
    "COCO_val2017_detections_AP_H_56_person.json": (
        "the standard COCO val2017 person detections (human AP 56.4) are distributed only "
        "through the download folders linked from the HRNet repository "
        "(github.com/leoxiaobin/deep-high-resolution-net.pytorch, README, 'Data preparation': "
        "the OneDrive / Google Drive folder, file person_detection_results/"
        "COCO_val2017_detections_AP_H_56_person.json) and mmpose's COCO data page "
        "(mmpose.readthedocs.io, 'COCO' under 2D body keypoint datasets); download it in a "
        "browser and place it at {path}"
    ),
    "coco_wholebody_train_v1.0.json": (
        "COCO-WholeBody annotations are distributed from the links in the README of "
        "github.com/jin-s13/COCO-WholeBody (Google Drive / Baidu, 'Download'); download "
        "coco_wholebody_train_v1.0.json and place it at {path}"
    ),
    "coco_wholebody_val_v1.0.json": (
        "COCO-WholeBody annotations are distributed from the links in the README of "
        "github.com/jin-s13/COCO-WholeBody (Google Drive / Baidu, 'Download'); download "
        "coco_wholebody_val_v1.0.json and place it at {path}"
    ),
}
DOWNLOAD_COMMAND = "python -m ocdlib data coco --root {root}"


@dataclass(frozen=True)
class CocoSplit:
    """One annotation file and the image folder its `images[].file_name` live in."""

    ann: str  # relative to the root
    images: str  # relative to the root
    profiles: tuple[str, ...]  # the config bases that read it
    wholebody: bool


@dataclass(frozen=True)
class CocoLayout:
    """What a COCO root holds for the coco_* presets, every path relative to the root."""

    splits: tuple[CocoSplit, ...]
    det_file: str  # the person detections the val split is scored on
    det_split: CocoSplit  # whose images the detections refer to
    # Backbones the presets start from ImageNet weights, each with the profiles that do.
    imagenet: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _relative(path: str, root: str, what: str) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        raise AssertionError(
            f"{what}={path!r} of a coco preset is not under its data.root={root!r}; keep the "
            "coco presets' files under one root (ocdlib/configs/presets.py, _base_coco)"
        ) from None


def coco_layout(configs: dict[str, Config] | None = None) -> CocoLayout:
    """The layout, read off the coco_* profiles' configs (`configs` maps profile -> Config)."""
    configs = configs or {name: BASES[name]() for name in COCO_BASES}
    splits: dict[tuple[str, str], list[str]] = {}
    wholebody: dict[tuple[str, str], bool] = {}
    det_files, det_keys = set(), set()
    imagenet: dict[str, list[str]] = {}
    for name, cfg in configs.items():
        d = cfg.data
        if cfg.model.pretrained == "imagenet":
            imagenet.setdefault(cfg.model.backbone, []).append(name)
        for ann, images in ((d.train_ann, d.train_images), (d.val_ann, d.val_images)):
            key = (ann, images)
            splits.setdefault(key, []).append(name)
            wholebody[key] = d.dataset != "coco"
        if cfg.eval.det_file and d.dataset == "coco":
            det_files.add(_relative(cfg.eval.det_file, d.root, "eval.det_file"))
            det_keys.add((d.val_ann, d.val_images))
    if len(det_files) != 1 or len(det_keys) != 1:
        raise AssertionError(f"the coco presets name {len(det_files)} detection files, expected 1")
    out = {
        key: CocoSplit(key[0], key[1], tuple(names), wholebody[key])
        for key, names in splits.items()
    }
    backbones = tuple((b, tuple(names)) for b, names in imagenet.items())
    return CocoLayout(tuple(out.values()), det_files.pop(), out[det_keys.pop()], backbones)


# ----------------------------------------------------------------------------- the check


@dataclass
class Finding:
    ok: bool
    path: str  # relative to the root (absolute for a file outside it)
    text: str  # counts when ok, what is wrong otherwise
    fix: str = ""
    required: bool = True  # False: only the whole-body presets need it


@dataclass
class RootReport:
    root: Path
    findings: list[Finding] = field(default_factory=list)

    @property
    def missing(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok and f.required]

    def lines(self) -> list[str]:
        out = []
        for f in self.findings:
            tag = "ok  " if f.ok else ("MISS" if f.required else "skip")
            out.append(f"{tag} {f.path}: {f.text}")
            if f.fix and not f.ok:
                out.append(f"     fix: {f.fix}")
        return out


def _annotation_counts(path: Path) -> tuple[dict | None, str]:
    """(the parsed file, a one-line summary) or (None, what is wrong)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"does not load as JSON ({e})"
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations")):
        return None, "is not a COCO annotation file (no 'images' and 'annotations')"
    anns = data["annotations"]
    with_kpts = sum(1 for a in anns if a.get("num_keypoints", 0) > 0)
    return data, (
        f"{len(data['images'])} images, {len(anns)} person annotations ({with_kpts} with keypoints)"
    )


def check_root(
    root: Path,
    wholebody: bool = False,
    decode: int = 8,
    layout: CocoLayout | None = None,
    weights: bool = True,
) -> RootReport:
    """Check `root` against the coco presets' layout; never raises for a missing file.

    Annotation files must load and list their images; every listed image must be in
    its folder; `decode` images per split, spread over the file, must decode; the
    detection file must load and refer to val images. Whole-body files are required
    only with `wholebody`. With `weights`, the ImageNet files of the presets' backbones
    must be in the torch hub cache.
    """
    root = Path(root)
    layout = layout or coco_layout()
    report = RootReport(root)
    fetch = DOWNLOAD_COMMAND.format(root=root)
    val_ids: set | None = None
    checked: dict[str, set[str]] = {}  # image folder -> the names already found there
    for split in layout.splits:
        required = wholebody or not split.wholebody
        ann_path = root / split.ann
        name = Path(split.ann).name
        manual = MANUAL_STEPS.get(name, "").format(path=ann_path)
        if not ann_path.is_file():
            text = f"annotation file not found (read by {', '.join(split.profiles)})"
            report.findings.append(Finding(False, split.ann, text, manual or fetch, required))
        else:
            data, text = _annotation_counts(ann_path)
            fix = manual or f"re-download it: delete it and run {fetch}"
            report.findings.append(Finding(data is not None, split.ann, text, fix, required))
            if data is not None:
                names = {img["file_name"] for img in data["images"]}
                if not names <= checked.get(split.images, set()):
                    found = _check_images(root, split, data, decode, fetch, required)
                    report.findings.extend(found)
                    if all(f.ok for f in found):
                        checked[split.images] = checked.get(split.images, set()) | names
                if split == layout.det_split:
                    val_ids = {img["id"] for img in data["images"]}
    report.findings.append(_check_detections(root, layout.det_file, val_ids))
    if weights:
        for backbone, profiles in layout.imagenet:
            path = imagenet_weights_file(backbone)
            ok = path.is_file() and path.stat().st_size > 0
            text = f"ImageNet weights of {backbone} (read by {', '.join(profiles)})"
            text += "" if ok else " not in the torch hub cache"
            fix = missing_imagenet_message(backbone, path)
            report.findings.append(Finding(ok, str(path), text, fix))
    return report


def _check_images(root, split: CocoSplit, data, decode, fetch, required) -> list[Finding]:
    folder = root / split.images
    if not folder.is_dir():
        text = f"image folder not found ({len(data['images'])} images named in {split.ann})"
        return [Finding(False, split.images, text, fetch, required)]
    present = {p.name for p in folder.iterdir()}
    names = [img["file_name"] for img in data["images"]]
    absent = [n for n in names if Path(n).name not in present]
    if absent:
        shown = ", ".join(absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
        text = f"{len(absent)} of {len(names)} images named in {split.ann} are missing: {shown}"
        fix = f"an interrupted extraction? run {fetch} again (it resumes and re-extracts)"
        return [Finding(False, split.images, text, fix, required)]
    step = max(1, len(names) // max(decode, 1))
    sample = names[::step][:decode]
    for n in sample:
        try:
            open_image(folder / n)
        except KitError as e:
            fix = f"delete {folder / n} and run {fetch} again"
            return [Finding(False, split.images, str(e), fix, required)]
    text = f"{len(names)} images present ({len(present)} files), {len(sample)} decoded"
    return [Finding(True, split.images, text, "", required)]


def _check_detections(root: Path, det_file: str, val_ids: set | None) -> Finding:
    path = root / det_file
    manual = MANUAL_STEPS[Path(det_file).name].format(path=path)
    if not path.is_file():
        return Finding(False, det_file, "person detection file not found", manual)
    try:
        dets = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return Finding(False, det_file, f"does not load as JSON ({e})", manual)
    if not isinstance(dets, list) or not all(
        isinstance(d, dict) and {"image_id", "bbox", "score"} <= set(d) for d in dets
    ):
        text = "is not a COCO detection result file (a list of {image_id, bbox, score})"
        return Finding(False, det_file, text, manual)
    images = {d["image_id"] for d in dets}
    text = f"{len(dets)} person boxes on {len(images)} images"
    if val_ids is not None:
        unknown = len(images - val_ids)
        if unknown == len(images) and images:
            text += ", none of them on a val image: is it the val2017 file?"
            return Finding(False, det_file, text, manual)
        if unknown:
            text += f" ({unknown} images not in the val annotations)"
    return Finding(True, det_file, text)


def preset_overrides(root: Path, layout: CocoLayout | None = None) -> list[str]:
    """The --set arguments that point a coco preset at `root`."""
    layout = layout or coco_layout()
    return [f"data.root={root}", f"eval.det_file={Path(root) / layout.det_file}"]
