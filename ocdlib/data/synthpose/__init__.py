"""SynthPose: a procedural, deterministic human pose benchmark in COCO keypoint format.

COCO and days of GPU time are out of reach on a small CPU, so the kit renders
its own benchmark (docs/METHOD.md, section 'SynthPose'). Each image holds a few articulated
figures posed in 3D within joint limits (standing, walking, running, sitting,
crouching, reaching, kicking, random), seen from the front, back or side, over
a cluttered background, partly hidden by each other and by objects, with
camera blur, noise and lighting. The files are standard COCO (or
COCO-WholeBody) keypoint annotations, so the same dataset, training and
COCOeval code runs on SynthPose and on COCO. Left and right differ only by
subtle cues: the figure's left limbs are a shade darker (`left_shade`), and the
face (front) or hair (back) tells which way the figure faces.

Labelling rules (the COCO conventions, made exact by the renderer):

- v=2: the keypoint's pixel shows the figure's own body part at that joint
  (e.g. the upper arm or forearm for an elbow) or bare background.
- v=1: inside the image but covered: by another figure or an object drawn in
  front, by another part of the same figure (an arm across the chest hides the
  far shoulder), or, for the nose, eyes and ears, by the head itself when that
  point faces away from the camera (a figure seen from the back has v=1 eyes;
  an ear stays visible until the head turns about 30 degrees away from it).
  With the default spec about a third of the labelled body keypoints are v=1,
  mostly from overlapping figures and side views.
- v=0: outside the image (coordinates written as 0, 0 as in COCO).
- COCO-WholeBody face points are labelled only when the face is turned towards
  the camera (like the official annotations); then points on its far side are v=1.
- A figure whose visible silhouette is empty is not annotated. A figure with
  fewer than `min_keypoints` labelled body keypoints, or a visible silhouette
  under `min_area_frac` of the image, is annotated like COCO's unlabelled people:
  box and area, all keypoints 0 and num_keypoints=0 (training and COCOeval skip it).
- bbox and area come from the visible silhouette (as COCO derives them from
  the segmentation of what is visible); segmentation is left empty.

The image is a pure function of (seed, split, index, image_size, spec): the body
and whole-body variants of one seed show the same images, only the annotation
files differ.

The package follows the generator's stages (what a copy looks like, its spec, is
`ocdlib/synth_spec.py`, so that the configs read it without the renderer):
`layout` (the points a figure is built from), `rotations`, `poses`, `placing`,
`drawing`, `image` (one image and its labels), `coco_files` (the annotation files
and a whole copy), `textures` (backgrounds, colours, camera effects) and `cli`.
"""

from ...synth_spec import POSE_MODES, SPLITS, SYNTHPOSE_VERSION, SynthPoseSpec
from .cli import add_synth_subparser, run_synth
from .coco_files import generate_synthpose
from .image import SynthSample, render_synthpose_image
from .layout import NUM_PARTS, OCCLUDER_LABEL

__all__ = [
    "NUM_PARTS",
    "OCCLUDER_LABEL",
    "POSE_MODES",
    "SPLITS",
    "SYNTHPOSE_VERSION",
    "SynthPoseSpec",
    "SynthSample",
    "add_synth_subparser",
    "generate_synthpose",
    "render_synthpose_image",
    "run_synth",
]
