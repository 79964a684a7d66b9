"""Pre-train a backbone on a pretext: a run like any other, with its config, hash,
resumable checkpoint, progress line and record.

A run folder `runs/pretrain/<name>-<hash>-s<seed>-<bf16|fp32>/` holds `config.json`,
`checkpoint.pt` (model, optimizer, step and curve; every `checkpoint_every` steps and
on SIGTERM or Ctrl-C), and once finished `backbone.pth` (the backbone's state_dict in
torchvision's layout, which `model.pretrained` loads) and `record.json`: the config,
its hash, the weights' SHA-256, the loss and accuracy curve, the machine and minutes.
Running the same command again resumes an unfinished run at its step (the batch at
a step is a pure function of the seed and the step) and returns a finished one.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

from ..cores import cpu_model, usable_cores
from ..engine.checkpoint import atomic_save, atomic_write_text
from ..engine.interrupt import StopRequest
from ..engine.precision import resolve_precision
from ..errors import ConfigError, RunInterrupted
from ..models.backbones import build_backbone
from ..paths import data_home, runs_home
from ..weights import file_digest
from .config import PretrainConfig
from .pretexts import check_pretext, load_bank, make_batch, pretext_classes


class PretextModel(nn.Module):
    """A backbone with a linear classifier on its pooled last feature map."""

    def __init__(self, backbone: nn.Module, classes: int):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(backbone.out_channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x).mean(dim=(2, 3)))


def pretrain_dir(cfg: PretrainConfig, tag: str) -> Path:
    return runs_home() / "pretrain" / f"{cfg.name}-{cfg.hash}-s{cfg.seed}-{tag}"


def _lr_at(cfg: PretrainConfig, step: int) -> float:
    """Linear warm-up, then a half cosine to zero."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def machine() -> str:
    return f"{cpu_model()}, {usable_cores()} cores, torch threads {torch.get_num_threads()}"


def pretrain(
    cfg: PretrainConfig,
    out: Path | None = None,
    command: str = "",
    say=None,
    progress_every: int = 50,
    stop_at_step: int | None = None,
) -> dict | None:
    """Pre-train (or resume, or return the finished record of) the run of `cfg`.

    `stop_at_step` saves the run at that step and returns None, as a stop signal
    would (the tests resume from there)."""
    say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
    check_pretext(cfg.pretext)
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise ConfigError("pretrain: steps and batch_size must be at least 1")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    precision = resolve_precision(cfg.amp, device)
    out = Path(out) if out else pretrain_dir(cfg, precision.tag)
    record_file = out / "record.json"
    if record_file.is_file():
        say(f"pretrain: {out} is finished; its weights are {out / 'backbone.pth'}")
        return json.loads(record_file.read_text())
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True), out / "config.json")

    bank = load_bank(cfg, data_home() / "pretrain", say)
    torch.manual_seed(cfg.seed)
    model = PretextModel(build_backbone(cfg.backbone, "none"), pretext_classes(cfg))
    model = precision.model(model.to(device))
    opt = torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=True,
        weight_decay=cfg.weight_decay,
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    state = {"step": 0, "curve": [], "seconds": 0.0}
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file():
        saved = torch.load(ckpt, map_location=device, weights_only=False)
        if saved.get("hash") != cfg.hash:
            raise ConfigError(
                f"{ckpt} was written by config {saved.get('hash')}, not {cfg.hash}; "
                f"remove {out} to start it again"
            )
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        state = saved["state"]
        say(f"pretrain: resuming {out.name} at step {state['step']}/{cfg.steps}")

    def save() -> None:
        payload = {
            "hash": cfg.hash,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "state": state,
        }
        atomic_save(payload, ckpt)

    model.train()
    started = time.monotonic() - state["seconds"]
    window: list[tuple[float, float]] = []
    say(
        f"pretrain {cfg.name} ({cfg.hash}): {cfg.pretext} on {cfg.backbone}, {cfg.steps} steps "
        f"of {cfg.batch_size}, {precision.name} -> {out}"
    )
    with StopRequest() as stop:
        while state["step"] < cfg.steps:
            step = state["step"]
            images, labels = make_batch(bank, cfg, step)
            images, labels = images.to(device, non_blocking=True), labels.to(device)
            for group in opt.param_groups:
                group["lr"] = _lr_at(cfg, step)
            with precision.context(device):
                logits = model(precision.images(images))
            loss = loss_fn(logits.float(), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_value = loss.item()  # one sync a step: the pretext's steps are short anyway
            if not math.isfinite(loss_value):
                raise ConfigError(
                    f"pretrain {cfg.name}: the loss is {loss_value} at step {step}; lower lr "
                    f"(--set lr={cfg.lr / 2:g}) and remove {out} to start again"
                )
            acc = (logits.argmax(1) == labels).float().mean().item()
            window.append((loss_value, acc))
            state["step"] = step + 1
            state["seconds"] = time.monotonic() - started
            if state["step"] % progress_every == 0 or state["step"] == cfg.steps:
                mean_loss = sum(w[0] for w in window) / len(window)
                mean_acc = sum(w[1] for w in window) / len(window)
                window.clear()
                state["curve"].append(
                    {
                        "step": state["step"],
                        "loss": round(mean_loss, 4),
                        "acc": round(mean_acc, 4),
                        "minutes": round(state["seconds"] / 60, 3),
                    }
                )
                eta = state["seconds"] / state["step"] * (cfg.steps - state["step"]) / 60
                say(
                    f"pretrain {cfg.name}: step {state['step']}/{cfg.steps} loss {mean_loss:.3f} "
                    f"acc {mean_acc:.3f} · {state['seconds'] / 60:.1f} min, ETA {eta:.1f} min"
                )
            if state["step"] in cfg.snapshots:
                _save_backbone(model, out / f"backbone-step{state['step']}.pth")
            if state["step"] % cfg.checkpoint_every == 0:
                save()
            if state["step"] == stop_at_step:
                save()
                return None
            if stop.requested:
                save()
                raise RunInterrupted(
                    f"pretrain {cfg.name} stopped at step {state['step']}/{cfg.steps}, saved; "
                    "the same command resumes it",
                    stop.signum,
                )
    return _finish(cfg, out, model, state, precision.tag, command, say)


def _save_backbone(model: PretextModel, path: Path) -> None:
    """The backbone alone, fp32 and contiguous (torchvision's layout)."""
    state = model.backbone.state_dict()
    atomic_save({k: v.detach().float().contiguous() for k, v in state.items()}, path)


def _finish(cfg, out: Path, model, state, tag: str, command: str, say) -> dict:
    weights = out / "backbone.pth"
    _save_backbone(model, weights)
    curve = state["curve"]
    record = {
        "name": cfg.name,
        "config": cfg.to_dict(),
        "hash": cfg.hash,
        "seed": cfg.seed,
        "precision_tag": tag,
        "sha256": file_digest(weights),
        "bytes": weights.stat().st_size,
        "backbone": cfg.backbone,
        "minutes": round(state["seconds"] / 60, 2),
        "images_seen": cfg.steps * cfg.batch_size,
        "final_loss": curve[-1]["loss"] if curve else None,
        "final_acc": curve[-1]["acc"] if curve else None,
        "curve": curve,
        "machine": machine(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": command or f"python -m ocdlib pretrain --config {cfg.name}",
    }
    atomic_write_text(json.dumps(record, indent=1), out / "record.json")
    (out / "checkpoint.pt").unlink(missing_ok=True)
    say(
        f"pretrain {cfg.name}: done in {record['minutes']:.1f} min, final acc "
        f"{record['final_acc']}; weights {weights} (sha256 {record['sha256'][:12]})"
    )
    return record


def install_weights(run: Path, name: str) -> Path:
    """Copy a finished pre-training's weights and record into ocdlib/pretrained/ as `name`,
    where `model.pretrained=<name>` finds them (the files to commit)."""
    import shutil

    from ..weights import KIT_WEIGHTS_DIR

    record_file = run / "record.json"
    if not record_file.is_file():
        raise ConfigError(f"{run} is not a finished pre-training (no record.json)")
    record = json.loads(record_file.read_text())
    KIT_WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    target = KIT_WEIGHTS_DIR / f"{name}.pth"
    shutil.copyfile(run / "backbone.pth", target)
    if file_digest(target) != record["sha256"]:
        raise ConfigError(f"{target}: copied weights do not match {record_file}")
    atomic_write_text(json.dumps(record, indent=1), KIT_WEIGHTS_DIR / f"{name}.json")
    return target
