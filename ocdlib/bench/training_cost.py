"""Section 2: what one training step of each method costs, and where OCD's extra time goes.

A step is the trainer's own: `forward_loss` (batch to the device, autocast as
`train.amp` resolves on this device, the method's `Objective`) and
`backward_step` (backward, Adam step), on a batch of random tensors so that
data loading is left out (section 3 times it). TCD includes its frozen
teacher's forward pass.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

import torch

from ..configs import build_config
from ..engine.distributed import resolve_device
from ..engine.precision import Precision
from ..engine.run_dir import read_result
from ..engine.trainer import backward_step, forward_loss
from ..grid.catalogue import DEEPPOSE, OCD_DEEPPOSE, SIMPLEBASELINE, TCD_DEEPPOSE
from ..grid.gather import run_dirs
from ..losses import build_objective, heatmap_confidence
from ..metainfo import get_dataset_info
from ..models import build_model
from ..paths import runs_home
from ..profiles import NotebookProfile
from ..runs.cache import run_precision
from .timing import SEED, Spread, interleaved, ratio_to, synchronizer

STEP_TARGET = 1.45  # OCD step / DeepPose step at ResNet-50 256x192
# After any distillation warm-up, so that every term of the method runs.
STEP_INDEX = 1_000_000
HEADS_ONLY = "OCD, heads only (b = c = 0)"
METHODS = (
    ("DeepPose", "deeppose", {}),
    ("OCD-DeepPose", "ocd", {}),
    (HEADS_ONLY, "ocd", {"loss.task_distill_weight": 0.0, "loss.head_distill_weight": 0.0}),
    ("TCD-DeepPose", "tcd", {}),
    ("SimpleBaseline", "simplebaseline", {}),
)


def step_batch(cfg, k: int, batch: int) -> dict:
    """A fixed synthetic batch of `batch` crops with `k` keypoints at `cfg`'s sizes (the
    training-step benchmarks here and in benchmarks/ time the step, not the data)."""
    w, h = cfg.data.input_size
    hw, hh = cfg.data.heatmap_size
    g = torch.Generator().manual_seed(SEED)
    return {
        "image": torch.randn(batch, 3, h, w, generator=g),
        "reg_target": torch.rand(batch, k, 2, generator=g),
        "reg_weight": torch.ones(batch, k),
        "hm_target": torch.rand(batch, k, hh, hw, generator=g) * 0.1,
        "hm_weight": torch.ones(batch, k),
    }


def step_setup(base: str, method: str, overrides: dict, batch: int, device, extra: dict):
    """One training step of the preset `<base>_<method>` ready to time: (step, model,
    objective, precision, data, cfg), built through the trainer's own functions."""
    sets = {**overrides, "model.pretrained": "none", "train.batch_size": batch, **extra}
    cfg = build_config(f"{base}_{method}", sets)

    def teacher_of(k: int, precision: Precision):  # as trainer.load_teacher leaves it
        tcfg = build_config(f"{base}_simplebaseline", {"model.pretrained": "none", **extra})
        teacher = build_model(tcfg.model, k, tcfg.data.input_size, tcfg.data.heatmap_size)
        return teacher.eval().requires_grad_(False).to(device)

    parts = _step_parts(cfg, device, None, teacher_of if method == "tcd" else None)
    return (*parts, cfg)


def step_of(cfg, device=None, precision=None):
    """One training step of `cfg` as the trainer takes it (its model, heads, loss terms and
    precision, or `precision` where given; TCD with a frozen SimpleBaseline-shaped
    teacher), on random crops."""
    device = torch.device(device) if device else resolve_device(cfg.train.device)

    def teacher_of(k: int, precision: Precision):
        tmodel = replace(cfg.model, heads=("hm",), deploy_head="hm")
        teacher = build_model(tmodel, k, cfg.data.input_size, cfg.data.heatmap_size)
        return precision.model(teacher.eval().requires_grad_(False).to(device))

    return _step_parts(cfg, device, precision, teacher_of if cfg.loss.teacher_run else None)[0]


def _step_parts(cfg, device, precision: Precision | None, teacher_of=None):
    """(step, model, objective, precision, data): `cfg`'s model and objective on `device`
    at `precision` (the one `train.amp` resolves to there when None), an Adam optimiser
    and a fixed random batch; `teacher_of(k, precision)` builds a frozen teacher."""
    info = get_dataset_info(cfg.data.dataset)
    k = info.num_keypoints
    torch.manual_seed(SEED)
    model = build_model(cfg.model, k, cfg.data.input_size, cfg.data.heatmap_size).to(device)
    precision = precision or run_precision(cfg, device)
    model = precision.model(model)
    teacher = teacher_of(k, precision) if teacher_of else None
    objective = build_objective(cfg, info, model, teacher).to(device)
    params = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.train.lr)
    model.train()
    data = step_batch(cfg, k, cfg.train.batch_size)

    def step():
        total, _ = forward_loss(model, objective, data, STEP_INDEX, precision, device)
        backward_step(total, objective, optimizer, cfg.train.grad_clip, None)

    return step, model, objective, precision, data


def _loss_parts(model, objective, precision, data, device) -> dict:
    """OCD's terms b and c alone, on the heads' own outputs: decoding H, term b (forward
    and backward), term c (rendering enc(y), forward and backward)."""
    with torch.no_grad(), precision.context(device):
        out = model(precision.images(data["image"].to(device)))
    hm = out["hm"].detach().float()
    y = out[objective.reg_head].detach().float().requires_grad_(True)
    conf = heatmap_confidence(hm)

    def decode():
        objective.decode(hm)

    def term_b():
        objective.reg_loss(y, objective.decode(hm), conf).backward()

    def term_c():
        objective.head_distill_loss(y[..., :2], hm, conf).backward()

    return {
        "dec(H): heatmap decode": decode,
        "term b: L_reg(y, sg[dec(H)], m), forward + backward": term_b,
        "term c: L_hm(enc(y), sg[H], m), forward + backward": term_c,
    }


def measure_group(profile: str, batch: int, rounds: int, device, extra: dict | None = None):
    """Step times of every method at one profile's model and crop size, interleaved."""
    extra = extra or {}
    sync = synchronizer(device)
    steps, parts, precision_name, size = {}, {}, "", ""
    for label, method, overrides in METHODS:
        step, model, objective, precision, data, cfg = step_setup(
            profile, method, overrides, batch, device, extra
        )
        steps[label] = step
        precision_name = precision.name
        w, h = cfg.data.input_size
        size = f"{cfg.model.backbone} {h}x{w}"
        if label == "OCD-DeepPose":
            parts = _loss_parts(model, objective, precision, data, device)
    times = interleaved(steps, rounds, repeat=1, warmup=1, sync=sync)
    part_times = interleaved(parts, rounds, repeat=5, warmup=2, sync=sync)
    return {
        "profile": profile,
        "size": size,
        "batch": batch,
        "precision": precision_name,
        "times": times,
        "part_times": part_times,
    }


def cached_training_times(profile: NotebookProfile) -> dict:
    """Training wall time of the OCD, SimpleBaseline (TCD's teacher) and TCD runs of the
    experiment grid, from the run cache's result.json files (nothing is trained)."""
    found = {}
    for exp in (DEEPPOSE, OCD_DEEPPOSE, SIMPLEBASELINE, TCD_DEEPPOSE):
        results = [read_result(d) for d in run_dirs(exp, profile)]
        secs = [r["train_time_s"] for r in results if r and "train_time_s" in r]
        if secs:
            found[exp.label] = {"runs": len(secs), "train_time_s": statistics.mean(secs)}
    return {"profile": profile.name, "runs_home": str(runs_home()), "runs": found}


def _ms(times) -> Spread:
    return Spread.of(times).scaled(1000)


def section(groups: list[dict], cache: dict) -> dict:
    tables, data, targets, notes = [], [], [], []
    for g in groups:
        times, batch = g["times"], g["batch"]
        rows = []
        for label in times:
            t = _ms(times[label])
            r = ratio_to(times, label, "DeepPose")
            rows.append(
                [
                    label,
                    t.text("{:.0f}"),
                    f"{batch / (t.median / 1000):.1f}",
                    r.text("{:.2f}", "x"),
                ]
            )
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        extra = med["OCD-DeepPose"] - med["DeepPose"]
        head = med[HEADS_ONLY] - med["DeepPose"]
        terms = med["OCD-DeepPose"] - med[HEADS_ONLY]
        parts = {k: _ms(v) for k, v in g["part_times"].items()}
        split = [
            ["OCD step - DeepPose step (all of OCD's extra)", f"{extra:.1f}", "100%"],
            [
                "heatmap head and its ground-truth loss (heads-only step - DeepPose step)",
                f"{head:.1f}",
                _share(head, extra),
            ],
            ["terms b and c (OCD step - heads-only step)", f"{terms:.1f}", _share(terms, extra)],
        ] + [[f"alone: {k}", v.text("{:.2f}"), _share(v.median, extra)] for k, v in parts.items()]
        caption = (
            f"Training step, {g['profile']} presets ({g['size']}), batch {batch}, {g['precision']}"
        )
        tables.append(
            {
                "caption": caption,
                "columns": ["method", "ms per step", "crops/s", "ratio to DeepPose"],
                "rows": rows,
            }
        )
        tables.append(
            {
                "caption": f"Where OCD's extra time goes, {g['profile']} presets ({g['size']}), "
                f"batch {batch}",
                "columns": ["part", "ms per step", "share of OCD's extra"],
                "rows": split,
            }
        )
        data.append(
            {k: v for k, v in g.items() if k not in ("times", "part_times")}
            | {
                "ms_per_step": {k: _ms(v).as_dict() for k, v in times.items()},
                "ratio_to_deeppose": {k: ratio_to(times, k, "DeepPose").as_dict() for k in times},
                "ocd_extra_ms": {"total": extra, "heatmap_head": head, "terms_b_c": terms},
                "loss_parts_ms": {k: v.as_dict() for k, v in parts.items()},
            }
        )
        if g["profile"].startswith("coco_r50"):
            r = ratio_to(times, "OCD-DeepPose", "DeepPose")
            met = r.median <= STEP_TARGET
            targets.append(
                {
                    "target": f"OCD step <= {STEP_TARGET}x DeepPose step at {g['size']}",
                    "met": met,
                    "measured": r.median,
                    "sentence": f"OCD-DeepPose's training step, {g['profile']} presets "
                    f"({g['size']}), batch {batch}: "
                    f"{r.median:.2f}x DeepPose's (IQR {r.q1:.2f}-{r.q3:.2f}) against a target of "
                    f"<= {STEP_TARGET}x: {'met' if met else 'not met'}.",
                }
            )
    runs = cache["runs"]
    if runs:
        rows = [[k, str(v["runs"]), f"{v['train_time_s'] / 60:.1f}"] for k, v in runs.items()]
        ocd = runs.get("OCD-DeepPose", {}).get("train_time_s")
        sb = runs.get("SimpleBaseline (heatmap)", {}).get("train_time_s")
        tcd = runs.get("TCD-DeepPose", {}).get("train_time_s")
        if ocd and sb and tcd:
            rows.append(
                [
                    "OCD / (teacher + TCD)",
                    "-",
                    f"{ocd / 60:.1f} / {(sb + tcd) / 60:.1f} = {ocd / (sb + tcd):.2f}x",
                ]
            )
        tables.append(
            {
                "caption": f"Whole training runs of the {cache['profile']} profile, from the run "
                f"cache ({cache['runs_home']}); mean over seeds",
                "columns": ["row", "runs", "training minutes"],
                "rows": rows,
            }
        )
    else:
        notes.append(
            f"Whole training runs (OCD against teacher + TCD): no runs in the cache "
            f"({cache['runs_home']}, {cache['profile']} profile)."
        )
    notes.append(
        "A step: the trainer's forward_loss and backward_step (forward, loss, backward, Adam) "
        "on random tensors; medians over interleaved rounds, interquartile range in brackets; "
        "ratios are per-round ratios to DeepPose. TCD includes its frozen teacher's forward "
        "(a SimpleBaseline of the same size, random weights)."
    )
    return {
        "title": "2. Training cost",
        "tables": tables,
        "data": {"groups": data, "run_cache": cache},
        "targets": targets,
        "notes": notes,
    }


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole > 0 else "-"
