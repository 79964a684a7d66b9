"""Probes of the TCD path: is the frozen teacher's signal what terms b and c receive, and
how does it differ from the online heatmap head that OCD distils from?

`teacher_path_scores` scores the teacher's heatmaps taken through the TCD path
(`Objective._teacher_forward`, then the decode that terms b and c use) on the
validation crops, beside the teacher's own head: the two must agree.

`source_probe` trains a TCD run and an OCD run of the grid with stops (a resumed
run ends exactly where an uninterrupted one does, so these are the grid's runs) and,
at each stop, on a fixed set of augmented training crops, measures for each source of
distillation targets (the teacher, the online head): how far its decoded keypoints
are from the ground truth, its confidence m on labelled and unlabelled keypoints,
and the gradient norm that terms b and c send into the student's regression head.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from ..coco_eval import evaluate_coco
from ..configs import Config
from ..data.dataset import build_datasets
from ..data.device_pipeline import collate_of, finish_batch
from ..data.layout import resolve_layout
from ..data.prepare import resolve_data
from ..engine.checkpoint import load_checkpoint
from ..engine.distributed import resolve_device
from ..engine.evaluate import batch_predictions, predict_dataset
from ..engine.precision import Precision
from ..engine.run_dir import RunDir, read_result, run_lock
from ..engine.trainer import load_teacher, train
from ..errors import ConfigError
from ..losses import Objective, build_objective, heatmap_confidence
from ..models import build_model
from ..paths import REPO_ROOT, reports_home, runs_home
from ..runs import cache as run_cache
from .catalogue import OCD_DEEPPOSE, TCD_DEEPPOSE
from .gather import config_for, teacher_config

PCK_FRACTION = 0.05  # of the crop height: a keypoint within it counts as found
FP32 = Precision(autocast=False, channels_last=False)
# Decimals of the probe's columns in the report tables (fractions and gradient norms).
PROBE_DIGITS = {
    "source PCK": 3, "m, labelled": 3, "m, unlabelled": 3, "|grad b|": 4, "|grad c|": 4,
}  # fmt: skip


@dataclass
class _Setup:
    cfg: Config
    paths: object
    info: object
    train_ds: object
    val_ds: object
    device: torch.device


def _setup(cfg: Config) -> _Setup:
    paths = resolve_data(cfg.data, progress=False)
    info = resolve_layout(cfg.data, paths.train_ann)
    train_ds, val_ds = build_datasets(cfg, paths, info)
    return _Setup(cfg, paths, info, train_ds, val_ds, resolve_device(cfg.train.device))


def _student(cfg: Config, info, device) -> torch.nn.Module:
    return build_model(
        cfg.model, info.num_keypoints, cfg.data.input_size, cfg.data.heatmap_size
    ).to(device)


def _objective(cfg: Config, s: _Setup, precision: Precision, model=None) -> Objective:
    """The run's objective with its teacher loaded as the trainer loads it (eval mode, the
    run's memory format)."""
    teacher = load_teacher(cfg, s.device)
    if teacher is not None:
        teacher = precision.model(teacher)
    model = model if model is not None else precision.model(_student(cfg, s.info, s.device))
    return build_objective(cfg, s.info, model, teacher).to(s.device)


def _coco_ap(preds, s: _Setup, out: Path) -> float:
    cfg = s.cfg
    metrics = evaluate_coco(
        preds,
        s.paths.val_ann,
        s.info,
        out,
        keypoint_score_thr=cfg.eval.keypoint_score_thr,
        oks_nms_thr=cfg.eval.oks_nms_thr,
    )
    return 100.0 * metrics["AP"]


@torch.no_grad()
def _tcd_path_predictions(objective: Objective, s: _Setup, precision: Precision) -> list:
    """The teacher's keypoints as terms b and c see them, mapped back to image pixels."""
    loader = DataLoader(
        s.val_ds, batch_size=s.cfg.eval.batch_size, shuffle=False, collate_fn=collate_of(s.val_ds)
    )
    out = []
    for batch in map(finish_batch, loader):
        images = precision.images(batch["image"].to(s.device))
        with precision.context(s.device):
            _, heatmaps = objective._teacher_forward(images)
        coords = objective.decode(heatmaps).cpu().numpy()
        scores = heatmap_confidence(heatmaps).cpu().numpy()
        out += batch_predictions(batch, coords, scores, s.cfg.data.input_size)
    return out


def teacher_path_scores(cfg: Config, out_dir: Path) -> pd.DataFrame:
    """AP of a TCD run's teacher on the student's validation crops, four ways: its record
    (flip test), its own head without flip test, and the TCD path (teacher forward, then
    the decode of terms b and c) in fp32 and in the precision this machine trains in.
    Without flip test, the own head and the TCD path in fp32 must agree."""
    if not cfg.loss.teacher_run:
        raise ConfigError(f"{cfg.name}: loss.teacher_run is empty; pass a TCD run's config")
    s = _setup(cfg)
    out_dir = Path(out_dir)
    record = read_result(Path(cfg.loss.teacher_run)) or {}
    rows = [
        ("the teacher's record (flip test)", 100.0 * record.get("metrics", {}).get("AP", np.nan))
    ]
    own = _objective(cfg, s, FP32).teacher
    preds = predict_dataset(
        own, s.val_ds, "hm", cfg.data.input_size, batch_size=cfg.eval.batch_size
    )
    rows.append(("the teacher's own head, no flip test", _coco_ap(preds, s, out_dir / "own")))
    granted = run_cache.run_precision(cfg, s.device)
    for name, precision in (("fp32", FP32), (f"{granted.tag}, as TCD trains", granted)):
        objective = _objective(cfg, s, precision)
        preds = _tcd_path_predictions(objective, s, precision)
        rows.append((f"the TCD path, {name}", _coco_ap(preds, s, out_dir / f"tcd_{name[:4]}")))
    return pd.DataFrame(rows, columns=["how the teacher is scored", "AP"])


# ----------------------------------------------------------------------------- sources


def probe_batches(s: _Setup, n_batches: int, batch_size: int = 32) -> list[dict]:
    """A fixed set of augmented training crops (the same at every stop and for every run)."""
    s.train_ds.set_epoch(0)
    generator = torch.Generator().manual_seed(1234)
    loader = DataLoader(
        s.train_ds,
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
        collate_fn=collate_of(s.train_ds),
    )
    batches = []
    for batch in map(finish_batch, loader):
        batches.append(batch)
        if len(batches) == n_batches:
            break
    return batches


def _grad_norm(loss: torch.Tensor, params) -> float:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))


def source_measures(
    model, objective: Objective, batches: list[dict], precision: Precision, device
) -> list[dict]:
    """For each source of distillation targets this model has (the frozen teacher, its own
    online heatmap head), averaged over `batches`: the decoded keypoints' error against the
    ground truth (crop pixels, and PCK at 5% of the crop height) on labelled keypoints, the
    confidence m on labelled and unlabelled keypoints, the student's own error, and the
    gradient norm of terms b and c (unit weight) on the student's regression head."""
    model.train()  # as in training (batch statistics); the probe's copy is thrown away
    head = objective.reg_head
    params = [p for p in model.heads[head].parameters() if p.requires_grad]
    w, h = objective.input_size
    scale = torch.tensor([w, h], dtype=torch.float32, device=device)
    sums: dict[str, dict[str, list[float]]] = {}
    for batch in batches:
        images = precision.images(batch["image"].to(device))
        target = batch["reg_target"].to(device)
        labelled = batch["reg_weight"].to(device) > 0
        with precision.context(device):
            out = model(images)
            sources = {}
            if objective.teacher is not None:
                sources["teacher"] = objective._teacher_forward(images)[1]
            if "hm" in out:
                sources["online head"] = out["hm"].detach().float()
        y = out[head].float()
        student_err = ((y[..., :2] - target) * scale).norm(dim=-1)[labelled]
        for name, maps in sources.items():
            coords = objective.decode(maps)
            err = ((coords - target) * scale).norm(dim=-1)[labelled]
            m = heatmap_confidence(maps)
            weight = objective._distill_weight(m, {"reg_weight": batch["reg_weight"].to(device)})
            with precision.context(device):
                loss_c = objective.head_distill_loss(y[..., :2], maps, weight)
                loss_b = objective.reg_loss(y, coords, weight)
            row = sums.setdefault(name, {})
            for key, value in (
                ("source error (px)", err.mean()),
                ("source PCK", (err <= PCK_FRACTION * h).float().mean()),
                ("m, labelled", m[labelled].mean()),
                ("m, unlabelled", m[~labelled].mean() if (~labelled).any() else torch.nan),
                ("student error (px)", student_err.mean()),
                ("|grad b|", _grad_norm(loss_b, params)),
                ("|grad c|", _grad_norm(loss_c, params)),
            ):
                row.setdefault(key, []).append(float(torch.as_tensor(value).detach()))
    return [
        {"source": name, **{k: float(np.nanmean(v)) for k, v in row.items()}}
        for name, row in sums.items()
    ]


def _trained_epochs(run_dir: Path, cfg: Config) -> int:
    ckpt = RunDir(run_dir).checkpoint
    return load_checkpoint(ckpt, cfg.hash)["epoch"] if ckpt.is_file() else 0


def _model_at(run_dir: Path, cfg: Config, s: _Setup, precision: Precision):
    model = precision.model(_student(cfg, s.info, s.device))
    model.load_state_dict(load_checkpoint(RunDir(run_dir).checkpoint, cfg.hash)["model"])
    return model


def source_probe(
    runs: dict[str, tuple[Config, Path]], stops: list[int], n_batches: int = 8, out=print
) -> pd.DataFrame:
    """Train each of `runs` ({label: (config, run folder)}) to each epoch of `stops` in
    turn (resuming; a stop already passed is measured only if it is the run's last epoch)
    and measure `source_measures` there. Every config must have the same teacher
    (`loss.teacher_run`): the OCD run is measured against the TCD run's teacher too."""
    teachers = {cfg.loss.teacher_run for cfg, _ in runs.values()} - {""}
    if len(teachers) != 1:
        raise ConfigError(f"source_probe needs one teacher among the runs, got {teachers}")
    teacher_run = teachers.pop()
    rows = []
    for label, (cfg, run_dir) in runs.items():
        run_dir = Path(run_dir)
        probe_cfg = replace(cfg, loss=replace(cfg.loss, teacher_run=teacher_run))
        s = _setup(cfg)
        precision = run_cache.run_precision(cfg, s.device)
        batches = probe_batches(s, n_batches)
        # Held from the first stop to the last: a notebook that gathers this run meanwhile
        # waits for it to finish instead of training it past the stops.
        with run_lock(run_dir):
            for stop in sorted(set(stops) | {cfg.train.epochs}):
                done = _trained_epochs(run_dir, cfg)
                if done > stop or stop > cfg.train.epochs:
                    continue
                if done < stop:
                    out(f"{label}: training to epoch {stop} of {cfg.train.epochs} ({run_dir.name})")
                    train(
                        cfg,
                        run_dir,
                        resume=True,
                        progress=False,
                        stop_after_epochs=stop - done,
                        precision=run_cache.run_precision(cfg),
                    )
                model = _model_at(run_dir, cfg, s, precision)
                objective = _objective(probe_cfg, s, precision, model=model)
                for r in source_measures(model, objective, batches, precision, s.device):
                    rows.append({"run": label, "epoch": stop, **r})
    return pd.DataFrame(rows)


def cached_source_probe(
    runs: dict[str, tuple[Config, Path]],
    stops: list[int],
    n_batches: int = 8,
    out=print,
    train: bool = True,
) -> pd.DataFrame:
    """`source_probe`, kept in runs/probes/ once measured: the checkpoints it measures at
    the stops are gone once the runs finish, so the table is the probe's only record.
    With `train` False a probe not measured yet is named and an empty table returned."""
    key = "_".join(Path(d).name for _, d in runs.values())
    key += f"_stops{'-'.join(map(str, sorted(stops)))}_b{n_batches}"
    path = runs_home() / "probes" / f"{key}.csv"
    if path.is_file():
        return pd.read_csv(path)
    for root in (reports_home(), REPO_ROOT / "reports"):  # a committed record of the probe
        for recorded in sorted(Path(root).glob(f"**/runs/probes/{key}.csv")):
            return pd.read_csv(recorded)
    if not train:
        out(f"the TCD probe has not been measured yet ({path} is missing; not trained here)")
        return pd.DataFrame(columns=["run", "epoch", "source"])
    table = source_probe(runs, stops, n_batches, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)
    return table


PROBE_STOPS = (1, 2, 4, 8, 12)  # epochs of the cpu profile's 16 at which the sources are measured


def grid_probe(profile, n_batches: int = 8, out=print, train: bool = False) -> pd.DataFrame:
    """`cached_source_probe` of the grid's first TCD-DeepPose and OCD-DeepPose runs on
    `profile` (both distil from step 0; the OCD run is measured against TCD's teacher too).
    `train`: train what is missing, teachers first."""
    if train:  # the teacher before its student: the probe trains TCD from step 0
        run_cache.get_run(teacher_config(TCD_DEEPPOSE.teacher, profile), progress=False)
    runs = {}
    for exp in (TCD_DEEPPOSE, OCD_DEEPPOSE):
        cfg = config_for(exp, profile, exp.seeds(profile)[0])
        runs[exp.label] = (cfg, run_cache.run_dir(cfg))
    epochs = runs[TCD_DEEPPOSE.label][0].train.epochs
    stops = [s for s in PROBE_STOPS if s < epochs]
    return cached_source_probe(runs, stops, n_batches, out, train=train)
