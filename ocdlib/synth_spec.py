"""The SynthPose spec: what a generated copy looks like (sizes, people, difficulty), its version."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

# Bump whenever rendering or labelling changes, so cached copies are regenerated.
SYNTHPOSE_VERSION = 1

POSE_MODES = ("stand", "walk", "run", "sit", "crouch", "reach", "kick", "random")
SPLITS = ("train", "val")


@dataclass(frozen=True)
class SynthPoseSpec:
    """Difficulty knobs of SynthPose. Ranges are (low, high), drawn uniformly unless noted."""

    # --- figures
    people_per_image: tuple[int, int] = (1, 4)  # figures per image (at most 16)
    person_height: tuple[float, float] = (0.4, 0.9)  # standing height / image height, log-uniform
    group_prob: float = 0.6  # chance an extra figure stands beside one already placed (overlap)
    group_offset: tuple[float, float] = (0.2, 0.9)  # its centre offset / the wider figure's width
    truncation_prob: float = 0.15  # chance a figure is pushed partly out of the image
    proportion_jitter: float = 0.07  # relative std of each segment length and width
    limb_thickness: tuple[float, float] = (0.8, 1.35)  # multiplier on all limb radii of a figure
    viewpoint_weights: tuple[float, float, float] = (0.45, 0.25, 0.30)  # front, back, side views
    yaw_jitter_deg: float = 25.0  # std of body yaw around its viewpoint
    camera_pitch_deg: float = 10.0  # std of camera elevation (foreshortening of the body)
    rotation_std_deg: float = 10.0  # std of in-plane rotation of a figure
    large_rotation_prob: float = 0.05  # chance of a uniform in-plane rotation (lying, acrobatics)
    pose_weights: tuple[float, ...] = (0.18, 0.18, 0.1, 0.1, 0.08, 0.16, 0.06, 0.14)  # POSE_MODES
    joint_noise_deg: float = 10.0  # std of noise on every joint angle of a pose mode
    left_shade: float = 0.82  # brightness of a figure's left limbs vs its right: the subtle L/R cue
    outline_prob: float = 0.7  # chance that a figure's parts carry a darker outline
    short_sleeves_prob: float = 0.4  # chance of bare forearms
    shorts_prob: float = 0.3  # chance of bare shins
    # --- scene
    occluders: tuple[int, int] = (0, 2)  # objects drawn in front of the figures
    occluder_size: tuple[float, float] = (0.1, 0.35)  # occluder extent / image side
    occluder_on_person_prob: float = 0.75  # chance an occluder is centred on a figure's keypoint
    clutter_shapes: tuple[int, int] = (4, 18)  # random shapes in the background
    limb_clutter_prob: float = 0.3  # share of clutter that is limb-like (tapered jointed chains)
    pattern_prob: float = 0.3  # chance of stripes or a checkerboard behind everything
    texture_strength: float = 1.0  # amplitude of background grain (0: none)
    background_variation: float = 1.0  # colour variation of the smooth background field
    # --- camera
    lighting: float = 0.35  # largest amplitude of a linear light gradient across the image
    brightness: tuple[float, float] = (0.75, 1.2)  # global gain
    colour_cast: float = 0.06  # std of a per-channel gain
    blur_prob: float = 0.3  # chance of defocus blur
    blur_factor: tuple[float, float] = (1.3, 2.5)  # blur strength (down-sampling factor)
    noise_prob: float = 0.5  # chance of sensor noise
    noise_std: tuple[float, float] = (2.0, 8.0)  # noise std in grey levels
    jpeg_quality: int = 90
    # --- labelling
    min_keypoints: int = 3  # fewer labelled body keypoints: annotated with num_keypoints=0
    min_area_frac: float = 0.002  # smaller visible silhouette / image area: num_keypoints=0

    def __post_init__(self):
        def bad(name, why, fix):
            raise ConfigError(f"SynthPoseSpec.{name}={getattr(self, name)!r}: {why}; {fix}")

        for name in (
            "people_per_image",
            "person_height",
            "group_offset",
            "limb_thickness",
            "occluders",
            "occluder_size",
            "clutter_shapes",
            "brightness",
            "blur_factor",
            "noise_std",
        ):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                bad(name, "expected (low, high) with 0 <= low <= high", "swap or fix the bounds")
        if not 1 <= self.people_per_image[0] or self.people_per_image[1] > MAX_PEOPLE:
            bad("people_per_image", f"must lie in 1..{MAX_PEOPLE}", "lower the upper bound")
        if len(self.pose_weights) != len(POSE_MODES) or min(self.pose_weights) < 0:
            bad("pose_weights", f"need {len(POSE_MODES)} weights >= 0 for {POSE_MODES}", "fix it")
        if sum(self.pose_weights) <= 0:
            bad("pose_weights", "all weights are zero", "give at least one mode a weight")
        if len(self.viewpoint_weights) != 3 or sum(self.viewpoint_weights) <= 0:
            bad("viewpoint_weights", "need 3 weights (front, back, side)", "fix it")
        if self.blur_factor[0] < 1.0:
            bad("blur_factor", "must be >= 1 (1 = no blur)", "raise the lower bound")
        if not 1 <= self.jpeg_quality <= 100:
            bad("jpeg_quality", "must lie in 1..100", "use e.g. 90")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthPoseSpec:
        """Inverse of dataclasses.asdict (lists back to tuples), naming unknown fields."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown SynthPoseSpec field(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


MAX_PEOPLE = 16  # label maps are 8-bit: 1 + person * NUM_PARTS + part must stay below 255
