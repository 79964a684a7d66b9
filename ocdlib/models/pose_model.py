"""A backbone with named heads; `build_model` builds it from a `ModelConfig`.

One class serves every method: a DeepPose baseline is a backbone with a "reg"
head, OCD adds an "hm" head on the same backbone, the reduced-head study adds
"hm_small". Training sees every head's output (`forward`); evaluation and
deployment see one head (`predict`, `export_student`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn

from ..configs import ModelConfig
from ..errors import ConfigError, UnknownNameError
from .backbones import build_backbone
from .heads import HeatmapHead, RegressionHead, RLEHead

# Every head a model can have, with the name tables give it.
HEAD_NAMES = {"reg": "regression", "rle": "RLE", "hm": "heatmap", "hm_small": "heatmap (reduced)"}


class PoseModel(nn.Module):
    """Shared backbone + named heads.

    `input_size` and `heatmap_size` are (W, H), mmpose order; they travel with
    the model so that decoding needs nothing else.
    """

    def __init__(
        self,
        backbone: nn.Module,
        heads: Mapping[str, nn.Module],
        input_size: Sequence[int],
        heatmap_size: Sequence[int],
    ):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(dict(heads))
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))

    def forward(
        self, x: torch.Tensor, return_features: bool = False, detached: Sequence[str] = ()
    ) -> dict[str, torch.Tensor]:
        """Every head's raw output keyed by head name, plus "features" (the backbone map).

        Each head named in `detached` also runs on the backbone map cut from the
        graph, as "<name>_detached": a loss on that output trains the head alone.
        """
        feat = self.backbone(x)
        out = {name: head(feat) for name, head in self.heads.items()}
        for name in detached:
            out[f"{name}_detached"] = self.heads[name](feat.detach())
        if return_features:
            out["features"] = feat
        return out

    @torch.no_grad()
    def predict(
        self, images: torch.Tensor, head: str, flip_index=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised coordinates (N, K, 2) and scores (N, K) from head `head`.

        With `flip_index` (the dataset's flip permutation) the horizontally
        flipped batch is run too, its raw output mapped back and averaged with
        the plain one before decoding. Call `model.eval()` first.
        """
        if head not in self.heads:
            raise UnknownNameError(f"model has no head {head!r}; its heads: {list(self.heads)}")
        module = self.heads[head]
        out = module(self.backbone(images))
        if flip_index is not None:
            flipped = module(self.backbone(images.flip(-1)))
            out = 0.5 * (out + module.flip_back(flipped, flip_index, self.input_size))
        return module.decode(out, self.input_size, self.heatmap_size)


def build_head(name: str, cfg: ModelConfig, in_channels: int, num_keypoints: int, heatmap_size):
    if name == "reg":
        return RegressionHead(in_channels, num_keypoints)
    if name == "rle":
        return RLEHead(in_channels, num_keypoints)
    if name == "hm":
        return HeatmapHead(
            in_channels, num_keypoints, cfg.hm_deconv_layers, cfg.hm_deconv_channels, heatmap_size
        )
    if name == "hm_small":
        return HeatmapHead(
            in_channels,
            num_keypoints,
            cfg.small_deconv_layers,
            cfg.small_deconv_channels,
            heatmap_size,
        )
    raise ConfigError(f"model.heads: unknown head {name!r}; choose from {list(HEAD_NAMES)}")


def build_model(
    model_cfg: ModelConfig,
    num_keypoints: int,
    input_size: Sequence[int],
    heatmap_size: Sequence[int],
) -> PoseModel:
    """The `PoseModel` a `ModelConfig` describes (backbone weights per `model_cfg.pretrained`)."""
    heads = tuple(model_cfg.heads)
    if not heads:
        raise ConfigError(f"model.heads is empty; choose one or more of {list(HEAD_NAMES)}")
    unknown = [h for h in heads if h not in HEAD_NAMES]
    if unknown:
        raise ConfigError(
            f"model.heads: unknown head {unknown[0]!r}; choose from {list(HEAD_NAMES)}"
        )
    if len(set(heads)) != len(heads):
        raise ConfigError(f"model.heads={list(heads)} names a head twice")
    if model_cfg.deploy_head not in heads:
        raise ConfigError(
            f"model.deploy_head={model_cfg.deploy_head!r} is not in model.heads={list(heads)}; "
            "set model.deploy_head to the head to keep after training"
        )
    backbone = build_backbone(model_cfg.backbone, model_cfg.pretrained)
    return PoseModel(
        backbone,
        {
            name: build_head(name, model_cfg, backbone.out_channels, num_keypoints, heatmap_size)
            for name in heads
        },
        input_size,
        heatmap_size,
    )


def export_student(model: nn.Module, head: str) -> PoseModel:
    """A deep copy holding only the backbone and head `head`, in eval mode.

    This is the deployed model: after OCD/TCD its parameters are exactly those
    of the plain single-head model (the heatmap head and the objective's
    adapters stay behind).
    """
    model = getattr(model, "module", model)  # DistributedDataParallel
    if head not in model.heads:
        raise UnknownNameError(
            f"model.deploy_head={head!r}: the model has heads {list(model.heads)}; "
            "choose one of them"
        )
    student = PoseModel(
        copy.deepcopy(model.backbone),
        {head: copy.deepcopy(model.heads[head])},
        model.input_size,
        model.heatmap_size,
    )
    return student.eval()
