"""The experiment grid: which runs each notebook makes, for any profile.

One definition serves the notebooks (each asks for its own rows), the results
notebook (it gathers every row) and the tests. A row is a method preset plus
overrides; key comparisons run on every seed of the profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .configs import Config, build_config
from .engine.runs import get_run, run_dir

# The seeds of each profile: key rows run on all of them, the others on the first.
SEEDS: dict[str, tuple[int, ...]] = {
    "smoke": (0,),
    "cpu": (0, 1),
    "gpu_synth": (0, 1),
    "coco": (0,),
}
# Body and whole-body profile names of each notebook profile.
PROFILE_PRESETS: dict[str, tuple[str, str]] = {
    "smoke": ("smoke", "smoke_wholebody"),
    "cpu": ("cpu", "cpu_wholebody"),
    "gpu_synth": ("gpu_synth", "gpu_synth_wholebody"),
    "coco": ("coco_r50", "coco_wholebody_r50"),
}


@dataclass(frozen=True)
class Experiment:
    notebook: str  # "01".."05"
    label: str  # the row's name in tables
    method: str  # a method of ocdlib.configs.METHODS
    overrides: tuple[tuple[str, Any], ...] = ()
    key: bool = False  # run on every seed of the profile
    wholebody: bool = False
    teacher: str | None = None  # label of the experiment whose run is the TCD teacher
    group: str = field(default="", compare=False)  # the comparison this row belongs to

    def seeds(self, profile: str) -> tuple[int, ...]:
        seeds = SEEDS[profile]
        return seeds if self.key else seeds[:1]


def _e(notebook, label, method, *overrides, **kw) -> Experiment:
    return Experiment(notebook, label, method, tuple(overrides), **kw)


EXPERIMENTS: tuple[Experiment, ...] = (
    # 01: the baselines, each head trained alone.
    _e("01", "DeepPose", "deeppose", key=True, group="baseline"),
    _e("01", "RLE", "rle", key=True, group="baseline"),
    _e("01", "SimpleBaseline (heatmap)", "simplebaseline", key=True, group="baseline"),
    _e("01", "Reduced heatmap head alone", "reduced_alone", group="baseline"),
    # 02: OCD, and one row per loss term.
    _e("02", "OCD-DeepPose", "ocd", key=True, group="ocd"),
    _e("02", "OCD-RLE", "ocd_rle", key=True, group="ocd"),
    # RLE's likelihood terms start about 25x larger than the heatmap loss: scaled down,
    # do they still swamp the heatmap head that the shared backbone also serves?
    _e(
        "02",
        "OCD-RLE: RLE terms x0.1",
        "ocd_rle",
        ("loss.reg_weight", 0.1),
        ("loss.task_distill_weight", 0.1),
        key=True,
        group="ocd",
    ),
    _e(
        "02",
        "OCD: task-loss distillation only (b)",
        "ocd",
        ("loss.head_distill_weight", 0.0),
        group="ablation",
    ),
    _e(
        "02",
        "OCD: head distillation only (c)",
        "ocd",
        ("loss.task_distill_weight", 0.0),
        group="ablation",
    ),
    _e(
        "02",
        "OCD: no distillation (shared backbone only)",
        "ocd",
        ("loss.task_distill_weight", 0.0),
        ("loss.head_distill_weight", 0.0),
        group="ablation",
    ),
    _e(
        "02",
        "OCD: soft-argmax decode",
        "ocd",
        ("loss.distill_decode", "soft_argmax"),
        group="ablation",
    ),
    _e("02", "OCD: render sigma x2", "ocd", ("loss.render_sigma", "2x"), group="ablation"),
    _e(
        "02",
        "OCD: head distillation weight 0.1",
        "ocd",
        ("loss.head_distill_weight", 0.1),
        group="ablation",
    ),
    # 03: TCD with the SimpleBaseline of 01 as the frozen teacher.
    _e("03", "TCD-DeepPose", "tcd", teacher="SimpleBaseline (heatmap)", key=True, group="tcd"),
    _e(
        "03",
        "TCD + online auxiliary head",
        "tcd_aux",
        teacher="SimpleBaseline (heatmap)",
        group="tcd",
    ),
    _e(
        "03",
        "TCD + cross-head term",
        "tcd",
        ("loss.cross_head_weight", 1.0),
        teacher="SimpleBaseline (heatmap)",
        group="tcd",
    ),
    # 04: reduced heads, alone (01) and distilled online from the full head.
    _e("04", "Reduced head + online distillation", "reduced", group="reduced"),
    _e(
        "04",
        "Reduced head N=0 alone",
        "reduced_alone",
        ("model.small_deconv_layers", 0),
        group="reduced",
    ),
    _e(
        "04",
        "Reduced head N=0 + online distillation",
        "reduced",
        ("model.small_deconv_layers", 0),
        group="reduced",
    ),
    # 05: whole body (133 keypoints).
    _e("05", "DeepPose (whole-body)", "deeppose", wholebody=True, group="wholebody"),
    _e("05", "OCD-DeepPose (whole-body)", "ocd", wholebody=True, group="wholebody"),
    _e("05", "SimpleBaseline (whole-body)", "simplebaseline", wholebody=True, group="wholebody"),
)


def experiments(notebook: str | None = None) -> list[Experiment]:
    rows = [e for e in EXPERIMENTS if notebook is None or e.notebook == notebook]
    if not rows:
        raise KeyError(f"no experiment for notebook {notebook!r}")
    return rows


def by_label(label: str) -> Experiment:
    for e in EXPERIMENTS:
        if e.label == label:
            return e
    raise KeyError(f"no experiment labelled {label!r}")


def config_for(exp: Experiment, profile: str, seed: int) -> Config:
    """The Config of one experiment row at one seed (TCD teachers resolved to their runs)."""
    if profile not in PROFILE_PRESETS:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILE_PRESETS)}")
    base = PROFILE_PRESETS[profile][1 if exp.wholebody else 0]
    sets: dict[str, Any] = {"train.seed": seed}
    for key, value in exp.overrides:
        sets[key] = value
    if sets.get("loss.render_sigma") == "2x":  # relative to the profile's target sigma
        sets["loss.render_sigma"] = 2 * build_config(f"{base}_{exp.method}").data.sigma
    if exp.teacher:
        teacher = by_label(exp.teacher)
        sets["loss.teacher_run"] = str(
            run_dir(config_for(teacher, profile, teacher.seeds(profile)[0]))
        )
    return build_config(f"{base}_{exp.method}", sets)


def run_experiment(exp: Experiment, profile: str, progress: bool = True) -> list[dict]:
    """Results of every seed of `exp` (from the run cache, or trained now)."""
    out = []
    for seed in exp.seeds(profile):
        if exp.teacher:
            teacher = by_label(exp.teacher)
            get_run(config_for(teacher, profile, teacher.seeds(profile)[0]), progress=progress)
        cfg = config_for(exp, profile, seed)
        result = get_run(cfg, progress=progress)
        out.append({"experiment": exp, "config": cfg, **result})
    return out
