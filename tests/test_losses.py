"""Task losses, the RLE flow, and the Objective's terms (baseline, OCD, TCD, reduced head)."""

from __future__ import annotations

import copy

import pytest
import torch

from ocdlib import codecs
from ocdlib.configs import Config, DataConfig, LossConfig, ModelConfig
from ocdlib.losses import HeatmapMSELoss, L1Loss, RLELoss, SmoothL1Loss, build_objective
from ocdlib.metainfo import COCO_BODY
from ocdlib.models import build_model

K = 17
INPUT = (48, 64)  # (W, H)
HM = (12, 16)
DATA = DataConfig(input_size=INPUT, heatmap_size=HM, sigma=2.0)
NO_WEIGHTS = dict.fromkeys(
    ("reg_weight", "hm_weight", "task_distill_weight", "head_distill_weight", "cross_head_weight",
     "small_hm_weight", "small_head_distill_weight", "small_task_distill_weight"),
    0.0,
)  # fmt: skip


def make_cfg(heads=("reg", "hm", "hm_small"), backbone="resnet18", **loss) -> Config:
    return Config(
        data=DATA,
        model=ModelConfig(backbone=backbone, heads=heads, deploy_head=heads[0]),
        loss=LossConfig(**loss),
    )


_BUILT: dict = {}


def make_model(cfg: Config, seed: int = 0):
    """A fresh model per call; each (backbone, heads, seed) is initialised once, then copied."""
    key = (cfg.model.backbone, cfg.model.heads, seed)
    if key not in _BUILT:
        torch.manual_seed(seed)
        model = build_model(cfg.model, K, INPUT, HM)
        for name in ("hm", "hm_small"):
            if name in model.heads:  # peaked maps with confidences well above 0
                torch.nn.init.normal_(model.heads[name].final_layer.weight, std=0.05)
                torch.nn.init.constant_(model.heads[name].final_layer.bias, 0.3)
        _BUILT[key] = model
    return copy.deepcopy(_BUILT[key])


def make_batch(seed: int = 0, n: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, K, 2, generator=g) * 0.8 + 0.1
    weight = (torch.rand(n, K, generator=g) > 0.25).float()
    heatmaps = codecs.render_heatmaps(codecs.normalized_to_heatmap(target, INPUT, HM), HM, 2.0)
    return {
        "image": torch.randn(n, 3, INPUT[1], INPUT[0], generator=g),
        "reg_target": target,
        "reg_weight": weight,
        "hm_target": heatmaps * weight[..., None, None],
        "hm_weight": weight,
    }


def grad_norm(module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


# -- task losses ---------------------------------------------------------------------------


def test_regression_losses_weight_then_mean():
    pred = torch.zeros(1, 2, 2)
    target = torch.tensor([[[0.5, 0.5], [3.0, 3.0]]])
    weight = torch.tensor([[1.0, 0.0]])
    # Smooth L1 (beta 1): 0.5 * 0.5^2 on the 2 weighted entries, mean over all 4.
    assert float(SmoothL1Loss()(pred, target, weight)) == pytest.approx(2 * 0.125 / 4)
    assert float(L1Loss()(pred, target, weight)) == pytest.approx(2 * 0.5 / 4)
    assert float(L1Loss()(pred, target)) == pytest.approx((0.5 + 0.5 + 3 + 3) / 4)


def test_heatmap_mse_is_weighted_and_scaled():
    pred = torch.zeros(1, 2, 4, 4)
    target = torch.ones(1, 2, 4, 4)
    weight = torch.tensor([[1.0, 0.0]])
    assert float(HeatmapMSELoss()(pred, target, weight)) == pytest.approx(0.5)
    assert float(HeatmapMSELoss(scale=1000.0)(pred, target, weight)) == pytest.approx(500.0)


def rle_output(mu, sigma):
    return torch.cat([mu, torch.full_like(mu, sigma)], dim=-1)


def test_rle_loss_prefers_smaller_errors_and_stays_finite():
    torch.manual_seed(0)
    loss = RLELoss()
    target = torch.full((2, K, 2), 0.5)
    weight = torch.ones(2, K)
    with torch.no_grad():
        values = [float(loss(rle_output(target + e, 0.1), target, weight)) for e in (0, 0.05, 0.2)]
        by_sigma = {
            s: float(loss(rle_output(target + 0.02, s), target, weight)) for s in (0.001, 0.02, 0.9)
        }
    assert values[0] < values[1] < values[2]
    # At a fixed small error, the best sigma is neither 0 nor 1.
    assert by_sigma[0.02] < by_sigma[0.001] and by_sigma[0.02] < by_sigma[0.9]

    err = target + 0.02
    for mu, sigma in [
        (err, 0.0),
        (err, 1e-30),
        (err, 1.0),
        (target + 1e3, 1e-7),
        (target - 1e4, 1),
    ]:
        out = rle_output(mu, sigma).requires_grad_(True)
        value = loss(out, target, weight)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(out.grad).all()
    # Weight 0 keypoints do not count.
    half = weight.clone()
    half[:, K // 2 :] = 0
    bad = target.clone()
    bad[:, K // 2 :] += 0.4
    with torch.no_grad():
        assert torch.equal(
            loss(rle_output(bad, 0.1), target, half), loss(rle_output(target, 0.1), target, half)
        )


# -- the objective ---------------------------------------------------------------------------


def test_zero_distillation_weights_give_the_baseline_exactly():
    batch = make_batch()
    base_cfg = make_cfg(heads=("reg",))
    ocd_cfg = make_cfg(hm_weight=0.0, task_distill_weight=0.0, head_distill_weight=0.0)
    base, base_terms = build_objective(base_cfg, COCO_BODY, make_model(base_cfg))(
        make_model(base_cfg), batch, 0
    )
    model = make_model(ocd_cfg)
    ocd, ocd_terms = build_objective(ocd_cfg, COCO_BODY, model)(model, batch, 0)
    assert set(ocd_terms) == {"reg", "total"} == set(base_terms)
    assert torch.equal(ocd, base)  # the extra heads change nothing
    reg_only = SmoothL1Loss()(
        model(batch["image"])["reg"], batch["reg_target"], batch["reg_weight"]
    )
    assert torch.equal(ocd, reg_only)

    # With the ground-truth heatmap term on, the total is exactly reg + a * hm.
    a = 0.7
    cfg = make_cfg(hm_weight=a)
    total, terms = build_objective(cfg, COCO_BODY, model)(model, batch, 0)
    out = model(batch["image"])
    reg = SmoothL1Loss()(out["reg"], batch["reg_target"], batch["reg_weight"])
    hm = HeatmapMSELoss(cfg.loss.hm_loss_scale)(out["hm"], batch["hm_target"], batch["hm_weight"])
    assert set(terms) == {"reg", "hm", "total"}
    assert torch.equal(total, reg + a * hm)


def test_ocd_terms_sum_to_total():
    cfg = make_cfg(hm_weight=1.0, task_distill_weight=2.0, head_distill_weight=0.5)
    model = make_model(cfg)
    total, terms = build_objective(cfg, COCO_BODY, model)(model, make_batch(), 0)
    assert set(terms) == {"reg", "hm", "task_distill", "head_distill", "total"}
    parts = sum(v for k, v in terms.items() if k != "total")
    torch.testing.assert_close(total.detach(), parts)
    assert all(not v.requires_grad for v in terms.values())
    assert total.requires_grad


TERMS = {
    "reg": dict(reg_weight=1.0),
    "hm": dict(hm_weight=1.0),
    "task_distill": dict(task_distill_weight=1.0),
    "head_distill": dict(head_distill_weight=1.0),
    "task_distill_rle": dict(task_distill_weight=1.0, reg_loss="rle"),
    "head_distill_rle": dict(head_distill_weight=1.0, reg_loss="rle"),
    "task_distill_soft": dict(task_distill_weight=1.0, distill_decode="soft_argmax"),
    "small_hm": dict(small_hm_weight=1.0),
    "small_head_distill": dict(small_head_distill_weight=1.0),
    "small_task_distill": dict(small_task_distill_weight=1.0),
}


@pytest.mark.parametrize("term", list(TERMS))
def test_each_term_alone_trains_the_backbone(term):
    cfg = make_cfg(heads=("reg", "rle", "hm", "hm_small"), **{**NO_WEIGHTS, **TERMS[term]})
    model = make_model(cfg)
    objective = build_objective(cfg, COCO_BODY, model)
    total, terms = objective(model, make_batch(), 0)
    assert set(terms) == {term.removesuffix("_rle").removesuffix("_soft"), "total"}
    assert total.item() > 0
    total.backward()
    assert grad_norm(model.backbone) > 0


def test_distillation_targets_are_stop_gradient():
    """Only b and c on: the heatmap head that teaches gets no gradient, the student does."""
    cfg = make_cfg(**{**NO_WEIGHTS, "task_distill_weight": 1.0, "head_distill_weight": 1.0})
    model = make_model(cfg)
    total, _ = build_objective(cfg, COCO_BODY, model)(model, make_batch(), 0)
    total.backward()
    assert grad_norm(model.heads["hm"]) == 0
    assert grad_norm(model.heads["reg"]) > 0 and grad_norm(model.backbone) > 0

    model.zero_grad(set_to_none=True)
    cfg = make_cfg(
        **{**NO_WEIGHTS, "small_head_distill_weight": 1.0, "small_task_distill_weight": 1}
    )
    total, _ = build_objective(cfg, COCO_BODY, model)(model, make_batch(), 0)
    total.backward()
    assert grad_norm(model.heads["hm"]) == 0 and grad_norm(model.heads["hm_small"]) > 0


@pytest.mark.parametrize(
    ("heads", "reg_loss"), [(("reg", "hm"), "smooth_l1"), (("rle", "hm"), "rle")]
)
def test_head_distillation_off_the_backbone_trains_the_regression_head_only(heads, reg_loss):
    """head_distill_backbone=False: same term c value, its gradient stops at the head."""
    grads, values = {}, {}
    for through in (True, False):
        cfg = make_cfg(
            heads=heads,
            reg_loss=reg_loss,
            **{**NO_WEIGHTS, "head_distill_weight": 1.0, "head_distill_backbone": through},
        )
        model = make_model(cfg)
        total, terms = build_objective(cfg, COCO_BODY, model)(model, make_batch(), 0)
        total.backward()
        values[through] = terms["head_distill"]
        grads[through] = {
            name: grad_norm(module)
            for name, module in [("backbone", model.backbone), *model.heads.items()]
        }
    assert torch.allclose(values[True], values[False])
    assert grads[True]["backbone"] > 0 and grads[False]["backbone"] == 0
    assert grads[False][heads[0]] == pytest.approx(grads[True][heads[0]], rel=1e-5)
    assert grads[False]["hm"] == 0

    # with the task loss on, the backbone still learns from it
    cfg = make_cfg(
        heads=heads, reg_loss=reg_loss, head_distill_weight=1.0, head_distill_backbone=False
    )
    model = make_model(cfg)
    total, _ = build_objective(cfg, COCO_BODY, model)(model, make_batch(), 0)
    total.backward()
    assert grad_norm(model.backbone) > 0


def test_distill_unlabelled_switch():
    """Distillation ignores ground-truth weights unless distill_unlabelled is false."""
    labelled = make_batch()
    labelled["reg_weight"] = torch.ones(2, K)
    partly = dict(labelled, reg_weight=labelled["reg_weight"].clone())
    partly["reg_weight"][:, ::2] = 0
    for unlabelled in (True, False):
        cfg = make_cfg(
            **{**NO_WEIGHTS, "task_distill_weight": 1.0, "head_distill_weight": 1.0},
            distill_unlabelled=unlabelled,
        )
        model = make_model(cfg)
        objective = build_objective(cfg, COCO_BODY, model)
        _, all_terms = objective(model, labelled, 0)
        _, part_terms = objective(model, partly, 0)
        for term in ("task_distill", "head_distill"):
            if unlabelled:
                assert torch.equal(all_terms[term], part_terms[term])
            else:
                assert float(part_terms[term]) < 0.9 * float(all_terms[term])


def test_warmup_switches_distillation_on_at_the_step():
    cfg = make_cfg(
        hm_weight=1.0,
        task_distill_weight=1.0,
        head_distill_weight=1.0,
        small_head_distill_weight=1.0,
        distill_warmup_steps=5,
    )
    model = make_model(cfg)
    objective = build_objective(cfg, COCO_BODY, model)
    batch = make_batch()
    _, early = objective(model, batch, 4)
    _, late = objective(model, batch, 5)
    assert set(early) == {"reg", "hm", "total"}
    assert set(late) == {"reg", "hm", "task_distill", "head_distill", "small_head_distill", "total"}

    only = make_cfg(**{**NO_WEIGHTS, "task_distill_weight": 1.0, "distill_warmup_steps": 5})
    total, terms = build_objective(only, COCO_BODY, model)(model, batch, 0)
    assert set(terms) == {"total"} and total.item() == 0.0
    total.backward()  # a zero with a graph: the training loop needs no special case


def make_teacher(backbone="resnet18", seed=7):
    cfg = make_cfg(heads=("hm",), backbone=backbone)
    teacher = make_model(cfg, seed=seed)
    teacher.train()
    with torch.no_grad():  # BN running statistics away from their init
        teacher(make_batch(seed=3, n=4)["image"])
    return teacher


def test_teacher_is_frozen_and_cross_head_trains_the_student():
    teacher = make_teacher(backbone="mobilenet_v2")  # 1280 channels: the adapter is a conv
    snapshot = {k: v.clone() for k, v in teacher.state_dict().items()}
    cfg = make_cfg(
        heads=("reg",),
        task_distill_weight=1.0,
        head_distill_weight=1.0,
        cross_head_weight=1.0,
        teacher_run="runs/teacher",
    )
    model = make_model(cfg)
    objective = build_objective(cfg, COCO_BODY, model, teacher)
    assert isinstance(objective.adapter, torch.nn.Conv2d)
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in objective.parameters()}
    assert not any(k.startswith("teacher") for k in objective.state_dict())

    params = list(model.parameters()) + list(objective.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    objective.train()
    model.train()
    for step in range(2):
        total, terms = objective(model, make_batch(seed=step), step)
        assert set(terms) == {"reg", "task_distill", "head_distill", "cross_head", "total"}
        optimizer.zero_grad()
        total.backward()
        assert grad_norm(objective.adapter) > 0 and grad_norm(model.backbone) > 0
        assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
        optimizer.step()
    assert not teacher.training
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, snapshot[k]), k


def test_cross_head_alone_reaches_the_backbone_with_identity_adapter():
    teacher = make_teacher()
    cfg = make_cfg(heads=("reg",), **{**NO_WEIGHTS, "cross_head_weight": 1.0}, teacher_run="t")
    model = make_model(cfg)
    objective = build_objective(cfg, COCO_BODY, model, teacher)
    assert isinstance(objective.adapter, torch.nn.Identity)
    total, terms = objective(model, make_batch(), 0)
    assert set(terms) == {"cross_head", "total"}
    total.backward()
    assert grad_norm(model.backbone) > 0


def test_teacher_source_both_averages_teacher_and_online():
    teacher = make_teacher()
    batch = make_batch()
    values = {}
    for source in ("teacher", "online", "both"):
        cfg = make_cfg(
            heads=("reg", "hm"),
            task_distill_weight=1.0,
            head_distill_weight=1.0,
            teacher_source=source,
            teacher_run="t",
        )
        model = make_model(cfg)
        _, terms = build_objective(cfg, COCO_BODY, model, teacher)(model, batch, 0)
        values[source] = terms
    for term in ("task_distill", "head_distill"):
        assert float(values["teacher"][term]) != pytest.approx(float(values["online"][term]))
        expected = 0.5 * (values["teacher"][term] + values["online"][term])
        torch.testing.assert_close(values["both"][term], expected)


def test_objective_to_moves_the_teacher():
    teacher = make_teacher()
    cfg = make_cfg(heads=("reg",), task_distill_weight=1.0, teacher_run="t")
    objective = build_objective(cfg, COCO_BODY, make_model(cfg), teacher)
    objective.to(torch.float64)
    assert next(teacher.parameters()).dtype == torch.float64


@pytest.mark.parametrize(
    "heads, loss, match",
    [
        (("reg",), dict(hm_weight=1.0), "loss.hm_weight needs the 'hm' head"),
        (("reg",), dict(task_distill_weight=1.0), "needs the 'hm' head"),
        (("reg", "hm"), dict(reg_loss="rle"), "needs the 'rle' head"),
        (("hm",), dict(), "loss.reg_weight .*needs the 'reg' head"),
        (("reg", "hm"), dict(small_hm_weight=1.0), "needs the 'hm_small' head"),
        (("reg",), dict(cross_head_weight=1.0), "needs a heatmap teacher"),
        (("reg",), dict(teacher_run="runs/x"), "no teacher model was passed"),
        (("reg",), dict(reg_loss="l2"), "loss.reg_loss='l2'"),
        (("reg",), dict(distill_decode="mean"), "loss.distill_decode"),
        (("reg",), dict(teacher_source="ta"), "loss.teacher_source"),
        (("reg",), dict(reg_weight=-1.0), "negative"),
        (("reg",), dict(reg_weight=0.0), "every loss weight is 0"),
    ],
)
def test_build_objective_names_the_field_to_fix(heads, loss, match):
    cfg = make_cfg(heads=heads, **loss)
    with pytest.raises(ValueError, match=match):
        build_objective(cfg, COCO_BODY, make_model(cfg))


def test_head_distillation_does_not_reward_leaving_the_heatmap_grid():
    cfg = make_cfg(**{**NO_WEIGHTS, "head_distill_weight": 1.0, "render_sigma": 2.0})
    objective = build_objective(cfg, COCO_BODY, make_model(cfg))
    ones = torch.ones(1, 1)

    def loss_at(x, y, heatmaps):
        coords = torch.tensor([[[x, y]]], requires_grad=True)
        loss = objective.head_distill_loss(coords, heatmaps, ones)
        (grad,) = torch.autograd.grad(loss, coords)
        return loss.item(), grad.abs().max().item()

    # An empty teacher map: every position of y_hat costs the same, and none is pulled.
    empty = torch.zeros(1, 1, HM[1], HM[0])
    inside, g_in = loss_at(0.5, 0.5, empty)
    for x, y in ((0.0, 0.5), (-0.3, 0.5), (0.5, 1.4), (-2.0, -2.0)):
        value, grad = loss_at(x, y, empty)
        assert value == pytest.approx(inside, rel=1e-6)
        assert grad < 1e-6 and g_in < 1e-6
    # A teacher Gaussian at the centre: y_hat there costs (almost) nothing, a shift costs
    # more, and a prediction off the grid costs the most.
    p = torch.tensor([[[0.5, 0.5]]])
    target = objective.render(p, HM, 2.0)
    at_p, _ = loss_at(0.5, 0.5, target)
    assert at_p == pytest.approx(0.0, abs=1e-2)  # the target is cut at the grid edge
    shifted, _ = loss_at(0.6, 0.5, target)
    assert shifted > at_p + 0.1
    assert loss_at(-0.5, 0.5, target)[0] > shifted
    # Where the rendered Gaussian lies on the grid it is the plain heatmap MSE.
    q = torch.tensor([[[0.55, 0.5]]])
    plain = HeatmapMSELoss(objective.hm_loss.scale)(objective.render(q, HM, 2.0), target, ones)
    assert loss_at(0.55, 0.5, target)[0] == pytest.approx(plain.item(), rel=1e-2)
