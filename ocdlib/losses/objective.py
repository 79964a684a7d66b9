"""The training objective: baselines, OCD, TCD and the reduced head.

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
kit's reconstruction; those of the task losses L_reg and L_hm are in task.py):

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

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import codecs
from ..configs import LossConfig
from ..errors import UnknownNameError
from .task import HeatmapMSELoss, _expand_weight, build_reg_loss


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
