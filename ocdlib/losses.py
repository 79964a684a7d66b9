"""Task losses and the training objective: baselines, OCD, TCD and the reduced head.

The whole of docs/METHOD.md, section 'The losses', lives in `Objective.forward`, one
`if` per term, each switched on by a non-zero weight in `LossConfig`:

    reg                L_reg(y_hat, y, w)                          reg_weight
    hm                 L_hm(H_hat, enc(y), w)                      a = hm_weight
    task_distill       L_reg(y_hat, sg[dec(H)], m)                 b = task_distill_weight
    head_distill       L_hm(enc(y_hat), sg[H], m)                  c = head_distill_weight
    cross_head         L_hm(T_head(adapter(F)), sg[T(x)], 1)       cross_head_weight
    small_hm           L_hm(H_small, enc(y), w)                    small_hm_weight
    small_head_distill L_hm(H_small, sg[H_full], 1)                small_head_distill_weight
    small_task_distill L_hm(H_small, enc(sg[dec(H_full)]), m)      small_task_distill_weight

H in b and c is the online "hm" head, the frozen teacher's heatmaps, or both
(the two losses averaged), per `teacher_source`. m is the source's confidence:
the maximum of each heatmap, clamped to [0, 1]. A term whose weight is 0 is
neither computed nor reported, so a run with every distillation weight at 0 is
the baseline, bit for bit.

Conventions chosen here (docs/METHOD.md, section 'The losses', marks them as the
kit's reconstruction):

- Regression losses are mmpose's: element-wise loss times the keypoint weight,
  then the mean over all N*K*2 entries (SmoothL1 with beta 1 on normalised
  coordinates, as mmpose's DeepPose). RLE follows mmpose's RLELoss: summed
  over keypoints and both axes, averaged over the batch.
- `HeatmapMSELoss` is mmpose 1.x's KeypointMSELoss with target weights (the
  mean of w * (H - G)^2 over every pixel, no factor 0.5), times
  `hm_loss_scale`, because a per-pixel MSE of Gaussians is ~1e-3 and would
  otherwise be drowned by the regression loss.
- For an RLE student, term b is the RLE loss itself against the decoded
  heatmap coordinates (the task loss is the distillation loss, the flow is
  shared), and term c renders the RLE head's mu.
- `head_distill_backbone=False` applies term c to the regression head run
  again on the detached backbone map: term c then trains that head alone and
  leaves the shared backbone (and with it the heatmap head) to the other terms.
- `distill_warmup_steps` switches off every term whose target comes from a
  head still being trained (b, c, small_head_distill, small_task_distill)
  before that step; cross_head reads only the frozen teacher and is never
  delayed.
- Term c treats the teacher map as zero outside its grid: the squared error
  is summed over the whole plane, so the part of enc(y_hat) that falls off
  the grid still counts (its energy is known in closed form). Scored on the
  grid alone, the MSE rewards pushing y_hat off the map, because the rendered
  Gaussian's own energy ||enc(y_hat)||^2 shrinks there; at hm_loss_scale that
  reward beats the regression loss, and about half of an OCD regression head's
  outputs were measured outside the crop after two cpu-profile epochs.
- enc() in term c uses `render_sigma`; enc() in small_task_distill renders a
  ground-truth-like target and so uses the data's `sigma`.
- Distillation weights m cover keypoints unlabelled in ground truth unless
  `distill_unlabelled` is false; then they are zeroed where `reg_weight` is 0.
- Values in the returned terms dict are weighted contributions (they sum to
  "total"), detached.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import codecs
from .configs import Config, LossConfig
from .errors import ConfigError, UnknownNameError
from .metainfo import DatasetInfo

REG_LOSSES = ("smooth_l1", "l1", "rle")
DECODERS = ("argmax", "soft_argmax")
TEACHER_SOURCES = ("teacher", "online", "both")


def _expand_weight(weight: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """(N, K) keypoint weights broadcast over the trailing dims of `like`."""
    if weight is None:
        return torch.ones_like(like)
    weight = weight.to(like.dtype)
    return weight.view(*weight.shape, *([1] * (like.dim() - weight.dim())))


class SmoothL1Loss(nn.Module):
    """mmpose's DeepPose loss: smooth L1 (beta 1) times keypoint weight, mean over all entries."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def forward(self, pred, target, weight=None):
        pred, target = pred.float(), target.float()
        loss = F.smooth_l1_loss(pred, target, reduction="none", beta=self.beta)
        return (loss * _expand_weight(weight, loss)).mean()


class L1Loss(nn.Module):
    """|pred - target| times keypoint weight, mean over all entries."""

    def forward(self, pred, target, weight=None):
        loss = (pred.float() - target.float()).abs()
        return (loss * _expand_weight(weight, loss)).mean()


class HeatmapMSELoss(nn.Module):
    """Target-weighted heatmap MSE (mean over all pixels of w_k (H - G)^2), times `scale`."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, pred, target, weight=None):
        loss = (pred.float() - target.float()) ** 2
        return (loss * _expand_weight(weight, loss)).mean() * self.scale


class RealNVP(nn.Module):
    """A 2-D RealNVP flow: the learned density of RLE's normalised error.

    Six affine coupling layers with alternating masks; each has a scale net and
    a translation net (2 -> 64 -> 64 -> 2, LeakyReLU; tanh bounds the scale),
    initialised near the identity (Xavier, gain 0.01), over a standard normal
    prior. The same shape as the RLE paper's flow and mmpose's.
    """

    def __init__(self, num_layers: int = 6, hidden: int = 64):
        super().__init__()
        masks = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).repeat(num_layers // 2, 1)
        self.register_buffer("masks", masks)

        def mlp(bounded: bool) -> nn.Sequential:
            layers = [nn.Linear(2, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden)]
            layers += [nn.LeakyReLU(), nn.Linear(hidden, 2)] + ([nn.Tanh()] if bounded else [])
            return nn.Sequential(*layers)

        self.scale_nets = nn.ModuleList(mlp(True) for _ in range(num_layers))
        self.shift_nets = nn.ModuleList(mlp(False) for _ in range(num_layers))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, gain=0.01)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log density of points x (M, 2): invert the couplings down to the prior."""
        z = x
        log_det = x.new_zeros(x.shape[0])
        for i in reversed(range(len(self.masks))):
            keep = self.masks[i]
            z_kept = z * keep
            s = self.scale_nets[i](z_kept) * (1 - keep)
            t = self.shift_nets[i](z_kept) * (1 - keep)
            z = z_kept + (1 - keep) * (z - t) * torch.exp(-s)
            log_det = log_det - s.sum(dim=1)
        log_prior = -0.5 * (z**2).sum(dim=1) - math.log(2 * math.pi)
        return log_prior + log_det


class RLELoss(nn.Module):
    """Residual Log-likelihood Estimation (Li et al., ICCV 2021), Laplace residual.

    Input is the RLE head's (N, K, 4) output (mu_x, mu_y, sigma_x, sigma_y) with
    sigma in (0, 1). The error (mu - y) / sigma is scored by a Laplace density
    times the flow's learned correction; the flow trains with the model (its
    parameters belong to this loss, hence to the Objective). Sigma is clamped
    to [1e-6, 1] so that log(sigma) and the division stay finite as the
    sigmoid saturates; everything runs in float32 with autocast off.
    """

    SIGMA_MIN = 1e-6

    def __init__(self):
        super().__init__()
        self.flow = RealNVP()

    def forward(self, pred, target, weight=None):
        with torch.autocast(pred.device.type, enabled=False):
            pred, target = pred.float(), target.float()
            mu, sigma = pred[..., :2], pred[..., 2:4].clamp(self.SIGMA_MIN, 1.0)
            error = (mu - target) / sigma
            log_phi = self.flow.log_prob(error.reshape(-1, 2)).view(*error.shape[:-1], 1)
            nf_loss = torch.log(sigma) - log_phi
            laplace = torch.log(2 * sigma) + error.abs()
            loss = (nf_loss + laplace) * _expand_weight(weight, error)
            return loss.sum() / pred.shape[0]


def build_reg_loss(name: str) -> nn.Module:
    if name == "smooth_l1":
        return SmoothL1Loss()
    if name == "l1":
        return L1Loss()
    if name == "rle":
        return RLELoss()
    raise ConfigError(f"loss.reg_loss={name!r} is unknown; choose one of {list(REG_LOSSES)}")


def heatmap_confidence(heatmaps: torch.Tensor) -> torch.Tensor:
    """m_k: the maximum of each heatmap, clamped to [0, 1] (N, K)."""
    return heatmaps.amax(dim=(-2, -1)).clamp(0.0, 1.0)


def _size_of(heatmaps: torch.Tensor) -> tuple[int, int]:
    return int(heatmaps.shape[-1]), int(heatmaps.shape[-2])


def _resize_heatmaps(heatmaps: torch.Tensor, size_wh: tuple[int, int]) -> torch.Tensor:
    """Bilinear resampling that keeps corner pixel centres fixed (the UDP convention)."""
    if _size_of(heatmaps) == tuple(size_wh):
        return heatmaps
    w, h = size_wh
    return F.interpolate(heatmaps, size=(h, w), mode="bilinear", align_corners=True)


class Objective(nn.Module):
    """The training loss of one run; `forward(model, batch, step) -> (total, terms)`.

    Owns what the loss trains besides the model: the RLE flow and the
    cross-head adapter (so the optimizer must include `objective.parameters()`
    and checkpoints its `state_dict()`). The frozen teacher is held but not
    registered as a submodule: it is no part of the state_dict or parameters,
    `.train()` leaves it in eval mode, and `.to(device)` still moves it.
    """

    def __init__(
        self,
        loss_cfg: LossConfig,
        input_size: tuple[int, int],
        heatmap_size: tuple[int, int],
        data_sigma: float,
        reg_head: str,
        teacher: nn.Module | None = None,
        adapter: nn.Module | None = None,
    ):
        super().__init__()
        self.cfg = loss_cfg
        self.input_size = tuple(input_size)
        self.heatmap_size = tuple(heatmap_size)
        self.data_sigma = data_sigma
        self.reg_head = reg_head
        self.reg_loss = build_reg_loss(loss_cfg.reg_loss)
        self.hm_loss = HeatmapMSELoss(loss_cfg.hm_loss_scale)
        self.adapter = adapter
        object.__setattr__(self, "teacher", teacher)  # deliberately not a submodule

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.teacher is not None:
            self.teacher._apply(fn)
        return self

    # -- sources of distillation targets -------------------------------------------------

    def _teacher_forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen teacher's backbone map and heatmaps, without graph."""
        if self.teacher.training:
            self.teacher.eval()
        with torch.no_grad():
            feat = self.teacher.backbone(images)
            heatmaps = self.teacher.heads["hm"](feat)
        return feat, heatmaps.float()

    def _sources(self, out, teacher_hm) -> list[torch.Tensor]:
        """Detached heatmaps that teach terms b and c: teacher, online head, or both."""
        if self.teacher is None or self.cfg.teacher_source == "online":
            return [out["hm"].detach().float()]
        if self.cfg.teacher_source == "teacher":
            return [teacher_hm]
        return [teacher_hm, out["hm"].detach().float()]

    def decode(self, heatmaps: torch.Tensor) -> torch.Tensor:
        """dec(H): normalised coordinates from detached heatmaps, per `distill_decode`."""
        with torch.no_grad():
            if self.cfg.distill_decode == "soft_argmax":
                coords = codecs.soft_argmax(heatmaps)
            else:
                coords, _ = codecs.decode_heatmaps(heatmaps, refine=True)
            coords = torch.as_tensor(coords, dtype=torch.float32, device=heatmaps.device)
            return codecs.heatmap_to_normalized(coords, self.input_size, _size_of(heatmaps))

    def render(self, coords_norm: torch.Tensor, size_wh, sigma: float) -> torch.Tensor:
        """enc(c): normalised coordinates rendered as Gaussians on a (W, H) grid, differentiably."""
        coords_hm = codecs.normalized_to_heatmap(coords_norm.float(), self.input_size, size_wh)
        return codecs.render_heatmaps(coords_hm, size_wh, sigma)

    def head_distill_loss(self, coords_norm, heatmaps, weight) -> torch.Tensor:
        """Term c: L_hm(enc(y_hat), sg[H], m), with H taken as zero outside its grid.

        The mean is over the grid's pixels as in `HeatmapMSELoss`, but the squared
        error of the rendered Gaussian off the grid is added: the energy of an
        unbounded Gaussian on an integer grid, pi * sigma^2 (relative error
        2 * exp(-pi^2 sigma^2) per axis: 1e-4 at sigma 1, 1e-9 at 1.5), minus the
        energy it has on the grid.
        """
        size = _size_of(heatmaps)
        sigma = self.cfg.render_sigma
        rendered = self.render(coords_norm, size, sigma)
        sq = (rendered - heatmaps.float()) ** 2
        outside = (math.pi * sigma * sigma - (rendered**2).sum((-2, -1))).clamp_min(0.0)
        per_map = sq.sum((-2, -1)) + outside  # (N, K)
        w = _expand_weight(weight, per_map)
        return (per_map * w).mean() / (size[0] * size[1]) * self.hm_loss.scale

    def _distill_weight(self, confidence: torch.Tensor, batch) -> torch.Tensor:
        if self.cfg.distill_unlabelled:
            return confidence
        return confidence * (batch["reg_weight"] > 0).to(confidence.dtype)

    # -- the loss ------------------------------------------------------------------------

    def forward(self, model: nn.Module, batch: dict, step: int):
        cfg = self.cfg
        images = batch["image"]
        need_features = cfg.cross_head_weight > 0
        distill_on = step >= cfg.distill_warmup_steps
        b = cfg.task_distill_weight if distill_on else 0.0
        c = cfg.head_distill_weight if distill_on else 0.0
        detach_c = c > 0 and not cfg.head_distill_backbone
        out = model(
            images, return_features=need_features, detached=(self.reg_head,) if detach_c else ()
        )
        small_head = cfg.small_head_distill_weight if distill_on else 0.0
        small_task = cfg.small_task_distill_weight if distill_on else 0.0

        teacher_feat = teacher_hm = None
        if self.teacher is not None and (
            cfg.cross_head_weight > 0 or ((b > 0 or c > 0) and cfg.teacher_source != "online")
        ):
            teacher_feat, teacher_hm = self._teacher_forward(images)

        terms: dict[str, torch.Tensor] = {}

        def add(name: str, weight: float, value: torch.Tensor) -> None:
            terms[name] = weight * value

        if cfg.reg_weight > 0:
            add(
                "reg",
                cfg.reg_weight,
                self.reg_loss(out[self.reg_head], batch["reg_target"], batch["reg_weight"]),
            )
        if cfg.hm_weight > 0:
            add("hm", cfg.hm_weight, self.hm_loss(out["hm"], *self._gt_heatmaps(batch)))
        if b > 0 or c > 0:
            sources = self._sources(out, teacher_hm)
            y_raw = out[self.reg_head]
            if b > 0:
                losses = [
                    self.reg_loss(
                        y_raw,
                        self.decode(h),
                        self._distill_weight(heatmap_confidence(h), batch),
                    )
                    for h in sources
                ]
                add("task_distill", b, sum(losses) / len(losses))
            if c > 0:
                y_c = out[f"{self.reg_head}_detached"] if detach_c else y_raw
                losses = [
                    self.head_distill_loss(
                        y_c[..., :2], h, self._distill_weight(heatmap_confidence(h), batch)
                    )
                    for h in sources
                ]
                add("head_distill", c, sum(losses) / len(losses))
        if cfg.cross_head_weight > 0:
            add(
                "cross_head",
                cfg.cross_head_weight,
                self._cross_head(out, teacher_feat, teacher_hm, batch),
            )
        if cfg.small_hm_weight > 0:
            add(
                "small_hm",
                cfg.small_hm_weight,
                self.hm_loss(out["hm_small"], *self._gt_heatmaps(batch)),
            )
        if small_head > 0 or small_task > 0:
            small = out["hm_small"]
            full = out["hm"].detach().float()
            if small_head > 0:
                target = _resize_heatmaps(full, _size_of(small))
                ones = torch.ones(small.shape[:2], device=small.device)
                add(
                    "small_head_distill",
                    small_head,
                    self.hm_loss(small, target, self._distill_weight(ones, batch)),
                )
            if small_task > 0:
                target = self.render(self.decode(full), _size_of(small), self.data_sigma)
                weight = self._distill_weight(heatmap_confidence(full), batch)
                add("small_task_distill", small_task, self.hm_loss(small, target, weight))

        if not terms:  # only during the warm-up of a run whose only terms are distillation
            total = sum(v.sum() for v in out.values()) * 0.0  # a zero that backward accepts
        else:
            values = list(terms.values())
            total = values[0]
            for v in values[1:]:
                total = total + v
        result = {name: v.detach() for name, v in terms.items()}
        result["total"] = total.detach()
        return total, result

    def _gt_heatmaps(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        if "hm_target" not in batch:
            raise UnknownNameError(
                "the batch has no 'hm_target' but a heatmap term is on (loss.hm_weight or "
                "loss.small_hm_weight); build the dataset with heatmap targets (with_heatmaps=True)"
            )
        return batch["hm_target"], batch["hm_weight"]

    def _cross_head(self, out, teacher_feat, teacher_hm, batch) -> torch.Tensor:
        """Student map -> adapter -> the teacher's frozen head, matched to the teacher's own maps.

        The teacher's parameters are frozen (requires_grad False), but the graph
        runs through its head, so the gradient reaches the adapter and the
        student's backbone.
        """
        feat = self.adapter(out["features"])
        if feat.shape[-2:] != teacher_feat.shape[-2:]:
            feat = F.interpolate(
                feat, size=teacher_feat.shape[-2:], mode="bilinear", align_corners=False
            )
        pred = self.teacher.heads["hm"](feat)
        ones = torch.ones(pred.shape[:2], device=pred.device)
        return self.hm_loss(pred, teacher_hm, self._distill_weight(ones, batch))


def build_objective(
    cfg: Config, info: DatasetInfo, model: nn.Module, teacher: nn.Module | None = None
) -> Objective:
    """Check `cfg.loss` against the model's heads and the teacher, and build the Objective."""
    L = cfg.loss
    model = getattr(model, "module", model)  # DistributedDataParallel
    heads = set(model.heads)
    for name, head in model.heads.items():
        if getattr(head, "num_keypoints", info.num_keypoints) != info.num_keypoints:
            raise ConfigError(
                f"the model's {name!r} head predicts {head.num_keypoints} keypoints, but "
                f"data.dataset={info.name!r} has {info.num_keypoints}; build the model with "
                "info.num_keypoints"
            )
    if L.reg_loss not in REG_LOSSES:
        raise ConfigError(
            f"loss.reg_loss={L.reg_loss!r} is unknown; choose one of {list(REG_LOSSES)}"
        )
    if L.distill_decode not in DECODERS:
        raise ConfigError(
            f"loss.distill_decode={L.distill_decode!r} is unknown; choose one of {list(DECODERS)}"
        )
    if L.teacher_source not in TEACHER_SOURCES:
        raise ConfigError(
            f"loss.teacher_source={L.teacher_source!r} is unknown; "
            f"choose one of {list(TEACHER_SOURCES)}"
        )
    weights = {
        f.name: getattr(L, f.name) for f in dataclasses.fields(L) if f.name.endswith("_weight")
    }
    for name, value in weights.items():
        if value < 0:
            raise ConfigError(f"loss.{name}={value} is negative; weights must be >= 0")
    if not any(v > 0 for v in weights.values()):
        raise ConfigError(f"every loss weight is 0 ({weights}); set at least loss.reg_weight > 0")

    def need(head: str, because: str) -> None:
        if head not in heads:
            raise ConfigError(
                f"{because} needs the {head!r} head, but model.heads={sorted(heads)}; add "
                f"{head!r} to model.heads or set that weight to 0"
            )

    reg_head = "rle" if L.reg_loss == "rle" else "reg"
    for name in ("reg_weight", "task_distill_weight", "head_distill_weight"):
        if getattr(L, name) > 0:
            need(reg_head, f"loss.{name} with loss.reg_loss={L.reg_loss!r}")
    if L.hm_weight > 0:
        need("hm", "loss.hm_weight")
    if L.small_hm_weight > 0:
        need("hm_small", "loss.small_hm_weight")
    for name in ("small_head_distill_weight", "small_task_distill_weight"):
        if getattr(L, name) > 0:
            need("hm_small", f"loss.{name}")
            need("hm", f"loss.{name}")

    if L.teacher_run and teacher is None:
        raise ConfigError(
            f"loss.teacher_run={L.teacher_run!r} is set but no teacher model was passed to "
            "build_objective; load it first (ocdlib.engine.trainer.load_teacher)"
        )
    if teacher is None:
        if L.cross_head_weight > 0:
            raise ConfigError(
                "loss.cross_head_weight > 0 needs a heatmap teacher; set loss.teacher_run to a "
                "finished heatmap run or set loss.cross_head_weight=0"
            )
        if L.task_distill_weight > 0 or L.head_distill_weight > 0:
            need("hm", "loss.task_distill_weight / head_distill_weight without a teacher")
    else:
        teacher = getattr(teacher, "module", teacher)
        if "hm" not in getattr(teacher, "heads", {}):
            raise ConfigError(
                f"loss.teacher_run={L.teacher_run!r}: the teacher has no 'hm' head; TCD needs a "
                "heatmap teacher"
            )
        if tuple(teacher.input_size) != tuple(cfg.data.input_size):
            raise ConfigError(
                f"loss.teacher_run={L.teacher_run!r}: the teacher's input size "
                f"{teacher.input_size} differs from data.input_size={cfg.data.input_size}; "
                "train the teacher at the student's input size"
            )
        teacher_k = teacher.heads["hm"].num_keypoints
        if teacher_k != info.num_keypoints:
            raise ConfigError(
                f"loss.teacher_run={L.teacher_run!r}: the teacher predicts {teacher_k} "
                f"keypoints, data.dataset={cfg.data.dataset!r} has {info.num_keypoints}"
            )
        if L.teacher_source in ("online", "both") and (
            L.task_distill_weight > 0 or L.head_distill_weight > 0
        ):
            need("hm", f"loss.teacher_source={L.teacher_source!r}")
        teacher.eval().requires_grad_(False)

    adapter = None
    if L.cross_head_weight > 0:
        c_student = model.backbone.out_channels
        c_teacher = teacher.backbone.out_channels
        adapter = nn.Identity() if c_student == c_teacher else nn.Conv2d(c_student, c_teacher, 1)
    return Objective(
        L,
        cfg.data.input_size,
        cfg.data.heatmap_size,
        cfg.data.sigma,
        reg_head,
        teacher=teacher,
        adapter=adapter,
    )
