"""The notebook profiles: what `reproduce --profile` and the notebooks run.

A notebook profile names the two config bases its rows are built on (one for
body rows, one for whole-body rows; see `ocdlib.configs.BASES`), the seeds of
its key rows and the folder under reports/ that its tables go to. It is the one
definition: `reproduce`, the notebooks, the experiment grid, the CLI help and
`python -m ocdlib presets` all read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class NotebookProfile:
    name: str
    body: str  # config base of the body rows (ocdlib.configs.BASES)
    wholebody: str  # config base of the whole-body rows
    seeds: tuple[int, ...]  # key rows run on all of them, the others on the first
    report_folder: str  # under reports/; "" is reports/ itself
    about: str  # one line for the CLI help

    def config_base(self, wholebody: bool) -> str:
        return self.wholebody if wholebody else self.body


NOTEBOOK_PROFILES: dict[str, NotebookProfile] = {
    p.name: p
    for p in (
        NotebookProfile(
            "smoke", "smoke", "smoke_wholebody", (0,), "smoke",
            "seconds: checks that every notebook runs (nbval); its numbers mean nothing",
        ),
        NotebookProfile(
            "cpu", "cpu_pretrained", "cpu_pretrained_wholebody", (0, 1, 2), "",
            "the CPU reproduction on SynthPose (make reproduce): the key comparisons on three "
            "seeds and the floors, from a backbone the kit pre-trained without natural images "
            "or keypoints (the paper's regime in miniature: its models start from ImageNet "
            "weights)",
        ),
        NotebookProfile(
            "cpu_full", "cpu_pretrained", "cpu_pretrained_wholebody", (0, 1, 2), "cpu_full",
            "every row of the cpu grid (make reproduce-full): the ablations, reduced heads, "
            "whole-body regression and investigations too; shares cpu's runs",
        ),
        NotebookProfile(
            "cpu_scratch", "cpu", "cpu_wholebody", (0, 1, 2), "cpu_scratch",
            "the cpu reproduction with every model trained from scratch (the kit's first "
            "regime, where DeepPose has barely begun to learn)",
        ),
        NotebookProfile(
            "cpu_scratch_full", "cpu", "cpu_wholebody", (0, 1, 2), "cpu_scratch_full",
            "every row of the cpu_scratch grid; shares cpu_scratch's runs",
        ),
        NotebookProfile(
            "gpu_synth", "gpu_synth", "gpu_synth_wholebody", (0, 1), "gpu_synth",
            "SynthPose at COCO size (256x192, ResNet-50) on one GPU",
        ),
        NotebookProfile(
            "coco", "coco_r50", "coco_wholebody_r50", (0,), "coco",
            "the paper's recipe on real COCO (needs the data and GPUs)",
        ),
    )
}  # fmt: skip


def notebook_profile(name: str | NotebookProfile) -> NotebookProfile:
    """The profile called `name` (a record passes through: entry points resolve a profile
    once and hand the record down)."""
    if isinstance(name, NotebookProfile):
        return name
    try:
        return NOTEBOOK_PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"unknown profile {name!r}; choose from {list(NOTEBOOK_PROFILES)} "
            "(python -m ocdlib presets lists them)"
        ) from None
