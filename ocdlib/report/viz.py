"""Drawing keypoints: skeletons on images, grids of samples, ground truth beside predictions.

Figures are built on `matplotlib.figure.Figure` directly, never through
pyplot's global state, so the functions work headless (tests, notebooks run by
papermill, training servers) and do not leak open figures.

A keypoint array is (K, 3): x, y and either a COCO visibility flag (0, 1, 2)
or a predicted score. Flags draw as: 2 a filled dot, 1 (labelled but hidden)
a hollow ring with dashed links, 0 nothing. Scores draw filled when above
`score_thr`. `kind="auto"` treats the third column as flags when every value
is 0, 1 or 2, else as scores.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from ..metainfo import COCO_BODY, COCO_WHOLEBODY, DATASETS, DatasetInfo, layout_from_category


def _as_people(keypoints) -> list[np.ndarray]:
    """(K, 3) or (N, K, 3) (or a list of (K, 3)) -> list of (K, 3) float arrays."""
    if isinstance(keypoints, (list, tuple)) and keypoints and np.ndim(keypoints[0]) == 2:
        return [np.asarray(k, dtype=np.float64) for k in keypoints]
    arr = np.asarray(keypoints, dtype=np.float64)
    if arr.size == 0:
        return []
    if arr.ndim == 2:
        return [arr]
    if arr.ndim == 3:
        return list(arr)
    raise ValueError(f"keypoints of shape {arr.shape}: expected (K, 3) or (N, K, 3)")


def _body_stop(info: DatasetInfo) -> int:
    """End of the body part in the keypoint vector (all keypoints if there is no "body")."""
    for name, _, stop in info.parts:
        if name == "body":
            return stop
    return info.num_keypoints


def _is_flags(third: np.ndarray) -> bool:
    return bool(np.all(np.isin(third, (0.0, 1.0, 2.0))))


def draw_pose(
    ax,
    image,
    keypoints,
    info: DatasetInfo,
    score_thr: float = 0.3,
    kind: str = "auto",
    radius: float | None = None,
    linewidth: float | None = None,
    show_image: bool = True,
):
    """Draw the skeleton(s) of `keypoints` over `image` on a matplotlib Axes.

    `image` is an (H, W, 3) array or PIL image, or None to draw on the Axes as
    it is. `keypoints` is (K, 3) or (N, K, 3) in image pixels; K must match
    `info`. `kind` is "gt" (flags), "pred" (scores) or "auto". Marker size and
    line width default to a fraction of the image size.
    """
    if kind not in ("auto", "gt", "pred"):
        raise ValueError(f"draw_pose(kind={kind!r}): expected 'auto', 'gt' or 'pred'")
    size = None
    if image is not None:
        img = np.asarray(image)
        size = img.shape[:2]
        if show_image:
            ax.imshow(img)
        ax.set_xlim(-0.5, img.shape[1] - 0.5)
        ax.set_ylim(img.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    scale = (min(size) / 256.0) if size else 1.0
    radius = radius if radius is not None else max(6.0, 14.0 * scale)
    linewidth = linewidth if linewidth is not None else max(0.8, 1.6 * scale)
    colours = info.colors() / 255.0
    # Face, hand and foot points are dense: smaller markers and thinner lines than body joints.
    body = np.arange(info.num_keypoints) < _body_stop(info)
    sizes = np.where(body, radius, radius * 0.2)
    widths = np.where(body, linewidth, linewidth * 0.35)
    for kps in _as_people(keypoints):
        if kps.shape != (info.num_keypoints, 3):
            raise ValueError(
                f"keypoints of shape {kps.shape} for {info.name} with {info.num_keypoints} "
                "keypoints: pass (K, 3) arrays of x, y, flag-or-score"
            )
        third = kps[:, 2]
        flags = kind == "gt" or (kind == "auto" and _is_flags(third))
        if flags:
            shown = third > 0
            hidden = third == 1
        else:
            shown = third > score_thr
            hidden = np.zeros_like(shown)
        links = {"-": ([], [], []), "--": ([], [], [])}  # segments, colours, widths
        for a, b in info.skeleton:
            if shown[a] and shown[b]:
                segs, cols, lws = links["--" if hidden[a] or hidden[b] else "-"]
                segs.append(kps[[a, b], :2])
                cols.append((colours[a] + colours[b]) / 2)
                lws.append(min(widths[a], widths[b]))
        for style, (segs, cols, lws) in links.items():
            if segs:
                ax.add_collection(
                    LineCollection(segs, colors=cols, linewidths=lws, linestyles=style)
                )
        solid = shown & ~hidden
        if solid.any():
            ax.scatter(
                kps[solid, 0],
                kps[solid, 1],
                s=sizes[solid],
                c=colours[solid],
                edgecolors="black",
                linewidths=0.4,
                zorder=3,
            )
        if hidden.any():
            ax.scatter(
                kps[hidden, 0],
                kps[hidden, 1],
                s=sizes[hidden],
                facecolors="none",
                edgecolors=colours[hidden],
                linewidths=widths[hidden],
                zorder=3,
            )
    return ax


def pose_grid(
    images_and_keypoints: Sequence,
    info: DatasetInfo | Sequence[DatasetInfo],
    ncols: int = 4,
    titles: Sequence[str] | None = None,
    panel_size: float = 3.0,
    title_size: float = 8,
    **draw_kwargs,
) -> Figure:
    """A grid of panels, one per (image, keypoints) pair; keypoints (K, 3) or (N, K, 3).

    `info` is one layout for all panels or one per panel (body beside whole-body).
    """
    n = len(images_and_keypoints)
    if n == 0:
        raise ValueError("pose_grid: no (image, keypoints) pairs to draw")
    if titles is not None and len(titles) != n:
        raise ValueError(f"pose_grid: {len(titles)} titles for {n} panels")
    infos = [info] * n if isinstance(info, DatasetInfo) else list(info)
    if len(infos) != n:
        raise ValueError(f"pose_grid: {len(infos)} layouts (info) for {n} panels")
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig = Figure(figsize=(panel_size * ncols, panel_size * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_axis_off()
            continue
        image, kps = images_and_keypoints[i]
        draw_pose(ax, image, kps, infos[i], **draw_kwargs)
        if titles is not None:
            ax.set_title(titles[i], fontsize=title_size)
    return fig


def side_by_side(
    image, keypoints_by_label: Mapping[str, np.ndarray], info: DatasetInfo, **draw_kwargs
) -> Figure:
    """One panel per label (e.g. "ground truth", "DeepPose", "OCD") on the same image."""
    labels = list(keypoints_by_label)
    pairs = [(image, keypoints_by_label[k]) for k in labels]
    return pose_grid(pairs, info, ncols=len(labels), titles=labels, **draw_kwargs)


def save_figure(fig: Figure, path, dpi: int = 100) -> Path:
    """Save `fig` to `path` (format from the suffix), creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a Figure to an (H, W, 4) uint8 RGBA array (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


# ---------------------------------------------------------------------------
# Reading annotations straight from COCO JSON (no dependency on the dataset code).


def keypoints_from_annotation(ann: Mapping, info: DatasetInfo) -> np.ndarray:
    """(K, 3) keypoints of one COCO annotation, joining the part fields `info` lists.

    COCO-WholeBody stores body, feet, face and hands in separate fields; their
    confidence-like values in (0, 1] count as hidden-but-labelled (flag 1).
    """
    parts = []
    for _, field in info.part_fields:
        if field not in ann:
            raise KeyError(
                f"annotation {ann.get('id')} has no field {field!r} needed by {info.name}; "
                f"is this a {info.name} annotation file?"
            )
        parts.append(np.asarray(ann[field], dtype=np.float64).reshape(-1, 3))
    kps = np.concatenate(parts)
    if kps.shape[0] != info.num_keypoints:
        raise ValueError(
            f"annotation {ann.get('id')}: {kps.shape[0]} keypoints, {info.name} has "
            f"{info.num_keypoints}"
        )
    v = kps[:, 2]
    kps[:, 2] = np.where(v >= 2, 2.0, np.where(v > 0, 1.0, 0.0))
    return kps


def _layout_of_file(coco: dict) -> DatasetInfo:
    """The layout to draw a COCO-format file with: COCO-WholeBody if it has face fields,
    a built-in layout with the same keypoint names, else the file's own categories[0]."""
    if any("face_kpts" in a for a in coco["annotations"]):
        return COCO_WHOLEBODY
    category = (coco.get("categories") or [{}])[0]
    names = tuple(category.get("keypoints") or ())
    for info in DATASETS.values():
        if info.keypoint_names == names:
            return info
    if not names:
        return COCO_BODY
    # Drawing needs names and links only; OKS sigmas are placeholders never used here.
    return layout_from_category(category, sigmas=(1.0,) * len(names))


def _load_coco_images(ann_file: Path, image_dir: Path, limit: int | None, info=None):
    """[(image array, (N, K, 3) keypoints, file name)] of the first `limit` images with people."""
    from PIL import Image

    with open(ann_file) as f:
        coco = json.load(f)
    if info is None:
        info = _layout_of_file(coco)
    by_image: dict[int, list] = {}
    for ann in coco["annotations"]:
        kps = keypoints_from_annotation(ann, info)
        if kps[:, 2].any():  # people without any labelled keypoint are not drawn
            by_image.setdefault(ann["image_id"], []).append(kps)
    out = []
    for img in coco["images"]:
        if img["id"] not in by_image:
            continue
        path = image_dir / img["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"{path} listed in {ann_file} (images[].file_name) is missing")
        out.append(
            (
                np.asarray(Image.open(path).convert("RGB")),
                np.stack(by_image[img["id"]]),
                img["file_name"],
            )
        )
        if limit is not None and len(out) >= limit:
            break
    return out, info


def sample_figure(
    synth_dir,
    coco_sample_dir=None,
    out_path=None,
    n_synth: int = 8,
    split: str = "val",
    ncols: int = 4,
) -> Figure:
    """A grid of SynthPose samples and of the real COCO sample images, with ground truth.

    `synth_dir` is a SynthPose folder or a list of them (body and whole-body);
    each one's layout is read from its annotations. `coco_sample_dir` holds
    test_coco.json (and optionally test_coco_wholebody.json) beside the images.
    The figure is saved to `out_path` when given.
    """
    dirs = [synth_dir] if isinstance(synth_dir, (str, Path)) else list(synth_dir)
    pairs, infos, titles = [], [], []

    def add(items, info, tag):
        for image, kps, name in items:
            pairs.append((image, kps))
            infos.append(info)
            titles.append(f"{tag} {name}")

    for d in map(Path, dirs):
        ann = d / "annotations" / f"{split}.json"
        if not ann.is_file():
            raise FileNotFoundError(
                f"{ann} not found: is {d} a SynthPose folder (python -m ocdlib synth)?"
            )
        items, info = _load_coco_images(ann, d / "images" / split, n_synth)
        add(items, info, "SynthPose WB" if info is COCO_WHOLEBODY else "SynthPose")
    if coco_sample_dir is not None:
        c = Path(coco_sample_dir)
        for name, info, tag in (
            ("test_coco.json", COCO_BODY, "COCO"),
            ("test_coco_wholebody.json", COCO_WHOLEBODY, "COCO-WB"),
        ):
            if (c / name).is_file():
                add(_load_coco_images(c / name, c, None, info)[0], info, tag)
    if not pairs:
        raise ValueError("sample_figure: nothing to draw (no annotated images found)")
    fig = pose_grid(pairs, infos, ncols=ncols, titles=titles, kind="gt", title_size=7)
    if out_path is not None:
        save_figure(fig, out_path)
    return fig
