"""Top-down pose dataset: one person box in, one batch-dict sample out.

The sample layout is the batch dict of docs/ARCHITECTURE.md. Training
augmentation draws from a generator seeded by (seed, epoch, index), so a run
gives the same crops whatever the number of data-loader workers; call
`set_epoch` before iterating each epoch (workers are started per epoch when
`persistent_workers` is off, and copy the dataset with its epoch then).

An image that cannot be read mid-run stops the run with its name
(`data.bad_images="error"`), or is replaced by the next readable sample and
reported in the sample's "bad_images" entry (`"skip"`; the trainer counts them
and drops such samples from evaluation).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from ocdlib.codecs import encode_heatmaps, encode_regression
from ocdlib.data.coco import (
    AnnotationError,
    ImageReadError,
    Instance,
    decode_image,
    load_coco_keypoints,
    load_detections,
    open_image,
)
from ocdlib.data.device_decode import read_encoded
from ocdlib.data.transforms import (
    apply_affine,
    bbox_xywh_to_center_scale,
    compose_affine,
    fix_aspect_ratio,
    flip_matrix,
    get_warp_matrix,
    jpeg_draft,
    normalize_image,
    random_bbox_transform,
    random_flip,
    random_half_body,
    warp_image,
)
from ocdlib.metainfo import DatasetInfo

from ..errors import ConfigError

if TYPE_CHECKING:  # configs imports the data package (SynthPose): types only here
    from ocdlib.configs import Config, DataConfig
    from ocdlib.data.prepare import DataPaths

log = logging.getLogger(__name__)

# With data.bad_images=skip, how many unreadable images in a row before giving up.
MAX_REPLACEMENTS = 32


@dataclass(frozen=True)
class CropGeometry:
    """One sample's crop: its keypoints (K, 3, mirrored if flipped) and box in the image,
    the 2x3 map from the image to the crop for them (`warp`) and for the pixels
    (`image_warp`, which also mirrors the image when the sample is flipped)."""

    keypoints: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    warp: np.ndarray
    image_warp: np.ndarray


class TopDownPoseDataset(torch.utils.data.Dataset):
    """Person crops with regression and (optionally) heatmap targets.

    Train mode applies mmpose's top-down augmentation (flip, half-body, random
    shift/scale/rotation, all from `cfg`); eval mode only crops the padded box.
    Detections (keypoints all zero) give zero weights and are meant for eval.
    """

    def __init__(
        self,
        instances: list[Instance],
        info: DatasetInfo,
        cfg: DataConfig,
        train: bool,
        with_heatmaps: bool = True,
        seed: int = 0,
    ):
        if not instances:
            raise ConfigError("TopDownPoseDataset needs at least one instance")
        self.instances = instances
        self.info = info
        self.cfg = cfg
        self.train = train
        self.with_heatmaps = with_heatmaps
        self.seed = int(seed)
        self.epoch = 0
        self.input_size = tuple(int(v) for v in cfg.input_size)  # (W, H)
        self.heatmap_size = tuple(int(v) for v in cfg.heatmap_size)
        self.aspect_ratio = self.input_size[0] / self.input_size[1]
        self._flip_index = info.flip_index
        self._no_keypoints = np.zeros((info.num_keypoints, 3), dtype=np.float32)
        # data.pipeline "device": samples carry the decoded image and the crop's map;
        # the loader stacks them and the training device cuts and encodes (device_pipeline).
        # The one place `data.pipeline` is read: the bank, JPEG decoding on the device
        # and the loader's collate ask the dataset (`on_device`), never the config again.
        self.on_device = cfg.pipeline == "device"
        self.collate_fn = None
        if self.on_device:
            from .device_pipeline import Collate, CropSpec

            hm = self.heatmap_size if with_heatmaps else None
            self.collate_fn = Collate(CropSpec(self.input_size, hm, float(cfg.sigma)))
        # Set by `image_bank.hold_images`: every image decoded once and held on the
        # device; a sample then names its image's row in the bank instead of carrying it.
        self._bank_rows: np.ndarray | None = None
        self._bank_sizes: np.ndarray | None = None
        self._bank_bad: dict[int, str] = {}
        # Set by `device_decode.decodes_on_device`: samples carry their JPEG's bytes.
        self.ship_encoded = False

    def attach_bank(self, rows: np.ndarray, sizes: np.ndarray, bad: dict[int, str]) -> None:
        """Samples refer to images held in a bank: instance i's image is row `rows[i]`,
        of size `sizes[row]` (W, H); `bad` maps unreadable rows to their reading error
        (bad_images=skip)."""
        self._bank_rows, self._bank_sizes, self._bank_bad = rows, sizes, dict(bad)

    @classmethod
    def from_coco(
        cls,
        ann_file,
        image_dir,
        info: DatasetInfo,
        cfg: DataConfig,
        train: bool,
        det_file=None,
        det_score_thr: float = 0.0,
        with_heatmaps: bool = True,
        seed: int = 0,
    ) -> TopDownPoseDataset:
        """Ground-truth boxes of `ann_file`, or the detections of `det_file` when given."""
        if det_file:
            instances = load_detections(det_file, ann_file, image_dir, det_score_thr, info=info)
            if not instances:
                raise AnnotationError(
                    f"{det_file}: no person detection with score >= {det_score_thr} on an image "
                    f"of {ann_file}; lower eval.det_score_thr or check the files"
                )
        else:
            instances = load_coco_keypoints(ann_file, image_dir, info)
        return cls(instances, info, cfg, train, with_heatmaps=with_heatmaps, seed=seed)

    def __len__(self) -> int:
        return len(self.instances)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of `epoch` (training only)."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The generator of sample `index` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def _keypoints(self, inst: Instance) -> np.ndarray:
        kpts = inst.keypoints
        if kpts.shape[0] != self.info.num_keypoints:
            if kpts.shape[0] == 0:
                return self._no_keypoints
            raise AnnotationError(
                f"{inst.ann_file}: annotations[{inst.ann_index}] (id {inst.ann_id}) of "
                f"{inst.file_name}: {kpts.shape[0]} keypoints, the dataset "
                f"'{self.info.name}' has {self.info.num_keypoints}; is --set data.dataset right?"
            )
        return kpts

    def _image(self, inst: Instance, decode: bool = True):
        """The instance's image; with `decode=False` its header only (see `_decode`)."""
        try:
            image = open_image(inst.image_path, listed_in=inst.ann_file or None, decode=decode)
        except ImageReadError as e:
            raise self._read_error(e) from None
        size = (image.width, image.height)
        if inst.width and inst.height and size != (inst.width, inst.height):
            raise AnnotationError(
                f"{inst.ann_file}: images[{inst.image_index}] (id {inst.image_id}) has width "
                f"{inst.width} and height {inst.height}, but the file {inst.image_path} is "
                f"{size[0]}x{size[1]}; fix 'width' and 'height' there (or the image)"
            )
        return image

    def _decode(self, image, inst: Instance):
        try:
            return decode_image(image, inst.image_path, listed_in=inst.ann_file or None)
        except ImageReadError as e:
            raise self._read_error(e) from None

    def _read_error(self, e: ImageReadError) -> ImageReadError:
        if self.cfg.bad_images == "skip":
            return e
        return type(e)(f"{e}, or --set data.bad_images=skip to go on without it")

    def __getitem__(self, index: int) -> dict:
        if self.cfg.bad_images != "skip":
            return self._sample(index)
        bad = []
        for attempt in range(min(MAX_REPLACEMENTS, len(self))):
            i = (index + attempt) % len(self)
            try:
                sample = self._sample(i)
            except ImageReadError as e:
                bad.append(f"{self.instances[i].image_path}\t{e}")
                continue
            # One tab-separated "path, reason" line per image this sample replaces.
            sample["bad_images"] = "\n".join(bad)
            return sample
        raise ImageReadError(
            f"{len(bad)} images in a row cannot be read, the last {bad[-1].split(chr(9))[0]}; "
            f"data.bad_images=skip goes on past single bad files, not a broken image folder: "
            f"check data.root and the *_images fields"
        )

    def crop_geometry(self, index: int, image_width: int) -> CropGeometry:
        """Where sample `index` is cut from its image (this epoch's augmentation drawn)."""
        cfg = self.cfg
        inst = self.instances[index]
        kpts = self._keypoints(inst)
        center, scale = bbox_xywh_to_center_scale(inst.bbox, cfg.padding)
        rot, flipped = 0.0, False
        if self.train:
            rng = self.rng(index)
            kpts, center, flipped = random_flip(
                kpts, center, image_width, self._flip_index, cfg.flip_prob, rng
            )
            center, scale = random_half_body(
                kpts,
                center,
                scale,
                self.info.upper_body_ids,
                self.info.lower_body_ids,
                rng,
                prob=cfg.half_body_prob,
                min_keypoints=cfg.half_body_min_keypoints,
                padding=cfg.half_body_padding,
            )
            center, scale, rot = random_bbox_transform(
                center,
                scale,
                rng,
                shift_factor=cfg.shift_factor,
                shift_prob=cfg.shift_prob,
                scale_factor=tuple(cfg.scale_factor),
                scale_prob=cfg.scale_prob,
                rotate_factor=cfg.rotate_factor,
                rotate_prob=cfg.rotate_prob,
            )
        scale = fix_aspect_ratio(scale, self.aspect_ratio)
        warp = get_warp_matrix(center, scale, rot, self.input_size)
        # Keypoints and centre are already mirrored; the image is mirrored inside the warp.
        image_warp = compose_affine(warp, flip_matrix(image_width)) if flipped else warp
        return CropGeometry(kpts, center, scale, warp, image_warp)

    def targets(self, geometry: CropGeometry) -> dict:
        """Regression (and heatmap) targets of the keypoints in the crop."""
        kpts, warp = geometry.keypoints, geometry.warp
        xy = apply_affine(kpts[:, :2], warp)
        visible = kpts[:, 2]
        reg_target, reg_weight = encode_regression(xy, visible, self.input_size)
        sample = {
            "reg_target": torch.from_numpy(reg_target),
            "reg_weight": torch.from_numpy(reg_weight),
        }
        if self.with_heatmaps:
            hm, hm_weight = encode_heatmaps(
                xy, visible, self.input_size, self.heatmap_size, self.cfg.sigma
            )
            sample["hm_target"] = torch.from_numpy(hm)
            sample["hm_weight"] = torch.from_numpy(hm_weight)
        return sample

    def _sample(self, index: int) -> dict:
        inst = self.instances[index]
        if self._bank_rows is not None:
            return self._held_sample(index, inst)
        # The header gives the size the geometry needs; pixels are decoded after the
        # warp is known, so that data.jpeg_draft can decode a JPEG at a reduced scale.
        image = self._image(inst, decode=False)
        geometry = self.crop_geometry(index, image.width)
        if self.on_device:
            return self._device_sample(inst, image, geometry)
        image_warp = geometry.image_warp
        if self.cfg.jpeg_draft:
            image_warp = jpeg_draft(image, image_warp)
        crop = warp_image(self._decode(image, inst), image_warp, self.input_size)
        sample = {"image": normalize_image(crop), **self.targets(geometry)}
        return self._identity(sample, inst, geometry)

    def _device_sample(self, inst: Instance, image, geometry: CropGeometry) -> dict:
        """The decoded image whole, the map to its crop and the keypoints in crop pixels:
        the crop and its targets are made in batch on the training device."""
        if self.ship_encoded:  # decoded on the device (device_decode.py)
            image.close()
            source = {"encoded": read_encoded(inst.image_path), "path": str(inst.image_path)}
        else:
            pixels = np.array(self._decode(image, inst))  # (H, W, 3) uint8, writable
            source = {"pixels": torch.from_numpy(pixels)}
        return self._identity({**source, **_crop_map(geometry)}, inst, geometry)

    def _held_sample(self, index: int, inst: Instance) -> dict:
        """A device-pipeline sample whose image is held in a bank: geometry only, and
        the image's row there (no file is read)."""
        row = int(self._bank_rows[index])
        if row in self._bank_bad:
            raise ImageReadError(self._bank_bad[row])
        geometry = self.crop_geometry(index, int(self._bank_sizes[row][0]))
        return self._identity({"image_row": row, **_crop_map(geometry)}, inst, geometry)

    def _identity(self, sample: dict, inst: Instance, geometry: CropGeometry) -> dict:
        """`sample` with what evaluation needs to place its predictions back."""
        sample["center"] = torch.from_numpy(np.asarray(geometry.center, dtype=np.float32))
        sample["scale"] = torch.from_numpy(np.asarray(geometry.scale, dtype=np.float32))
        sample["image_id"] = int(inst.image_id)
        sample["bbox_score"] = float(inst.bbox_score)
        sample["area"] = float(inst.area)
        return sample


def _crop_map(geometry: CropGeometry) -> dict:
    """A device-pipeline sample's geometry: the map from its image to the crop, and its
    keypoints in crop pixels with their visibility."""
    kpts = geometry.keypoints
    return {
        "image_warp": torch.from_numpy(np.asarray(geometry.image_warp, dtype=np.float64)),
        "crop_keypoints": torch.from_numpy(apply_affine(kpts[:, :2], geometry.warp)),
        "visible": torch.from_numpy(np.asarray(kpts[:, 2], dtype=np.float32)),
    }


@dataclass
class SkippedImages:
    """What `data.bad_images=skip` left out: each file once, and how many samples it replaced.

    Fed with the "bad_images" entry of each batch; every file is logged the first
    time it is met, and `to_dict()` goes into the run's result.json.
    """

    files: dict[str, str] = field(default_factory=dict)  # path -> why it cannot be read
    replaced: dict[str, int] = field(default_factory=dict)  # "epoch 3" / "eval" -> samples

    def add(self, batch: dict, when: str) -> None:
        for entry in filter(None, batch.get("bad_images", ())):
            # One sample stood in for one whose image is unreadable (its lines also name
            # the bad images tried on the way, counted when their own index comes up).
            self.replaced[when] = self.replaced.get(when, 0) + 1
            for line in entry.split("\n"):
                path, _, why = line.partition("\t")
                if path not in self.files:
                    self.files[path] = why
                    log.warning("skipped an unreadable image (data.bad_images=skip): %s", why)

    @classmethod
    def combine(cls, parts: list[SkippedImages]) -> SkippedImages:
        """One record from those of every rank."""
        out = cls()
        for other in parts:
            out.files.update(other.files)
            for when, n in other.replaced.items():
                out.replaced[when] = out.replaced.get(when, 0) + n
        return out

    def to_dict(self) -> dict:
        return {"files": dict(self.files), "samples_replaced": dict(self.replaced)}

    @classmethod
    def from_dict(cls, d: dict | None) -> SkippedImages:
        d = d or {}
        return cls(dict(d.get("files", {})), dict(d.get("samples_replaced", {})))


def needs_heatmaps(cfg: Config) -> bool:
    """Whether a run trains on heatmap targets (a heatmap head, or a TCD teacher's loss)."""
    return any(h.startswith("hm") for h in cfg.model.heads) or bool(cfg.loss.teacher_run)


def build_datasets(cfg: Config, paths: DataPaths, info: DatasetInfo):
    """The training and validation sets of a run (detections for validation if configured)."""

    def split(ann, images, train: bool, **kw) -> TopDownPoseDataset:
        return TopDownPoseDataset.from_coco(ann, images, info, cfg.data, train=train, **kw)

    train_ds = split(
        paths.train_ann, paths.train_images, True,
        with_heatmaps=needs_heatmaps(cfg), seed=cfg.train.seed,
    )  # fmt: skip
    val_ds = split(
        paths.val_ann, paths.val_images, False, det_file=cfg.eval.det_file or None,
        det_score_thr=cfg.eval.det_score_thr, with_heatmaps=False,
    )  # fmt: skip
    return train_ds, val_ds
