"""torchvision backbones that return their last (stride 32) feature map.

`build_backbone(name, pretrained)` is the one entry point. Each backbone keeps
torchvision's module names, so a torchvision state_dict (ImageNet weights, or
any file saved from `torchvision.models.<name>().state_dict()`) loads into it
key for key; only the classifier (`fc.*`, `classifier.*`) is dropped.

Weights never come from the network here: a download that hangs on a cluster
node without internet is worse than a clear error. "imagenet" reads the file
torchvision would have downloaded, from the torch hub cache
(`$TORCH_HOME/hub/checkpoints`, torchvision's own setting), and says exactly
which file to place there, and the command that fetches it on a machine with
internet, when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
import torchvision

from ..errors import ConfigError, MissingFileError
from ..weights import kit_weights_names, resolve_weights

# name -> (torchvision builder, its ImageNet weights enum value, feature channels)
# IMAGENET1K_V1 are the classic torchvision weights that mmpose's `torchvision://`
# checkpoints point to.
_BACKBONES = {
    "resnet18": ("resnet18", "ResNet18_Weights", 512),
    "resnet34": ("resnet34", "ResNet34_Weights", 512),
    "resnet50": ("resnet50", "ResNet50_Weights", 2048),
    "resnet101": ("resnet101", "ResNet101_Weights", 2048),
    "resnet152": ("resnet152", "ResNet152_Weights", 2048),
    "mobilenet_v2": ("mobilenet_v2", "MobileNet_V2_Weights", 1280),
}
# Narrow ResNet-18s (torchvision's BasicBlock layout, base width 32 or 16 instead of
# 64): the same architecture family at a quarter or a sixteenth of the FLOPs, for
# training on a CPU. There are no ImageNet weights for them; the kit pre-trains them
# itself (`python -m ocdlib pretrain`, weights in ocdlib/pretrained/).
_NARROW = {"resnet18_w32": 32, "resnet18_w16": 16}
BACKBONE_NAMES = tuple(_BACKBONES) + tuple(_NARROW)
# Keys of torchvision's classification heads, absent from a backbone.
_CLASSIFIER_PREFIXES = ("fc.", "classifier.")


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its pooling and FC: image -> C5 map (stride 32)."""

    def __init__(self, resnet: torchvision.models.ResNet, out_channels: int):
        super().__init__()
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def narrow_resnet18(base: int) -> torchvision.models.ResNet:
    """torchvision's ResNet-18 with stage widths base, 2*base, 4*base, 8*base (64 is standard)."""
    from torchvision.models.resnet import BasicBlock

    net = torchvision.models.resnet18(weights=None)
    widths = (base, 2 * base, 4 * base, 8 * base)
    net.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(base)
    inplanes = base
    for i, width in enumerate(widths):
        stride = 1 if i == 0 else 2
        down = None
        if stride != 1 or inplanes != width:
            down = nn.Sequential(
                nn.Conv2d(inplanes, width, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(width),
            )
        blocks = [BasicBlock(inplanes, width, stride, down), BasicBlock(width, width)]
        setattr(net, f"layer{i + 1}", nn.Sequential(*blocks))
        inplanes = width
    for m in net.modules():  # torchvision's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    net.fc = nn.Linear(inplanes, 1000)
    return net


class MobileNetV2Backbone(nn.Module):
    """torchvision MobileNetV2's `features` (ends in the 1280-channel 1x1 conv, stride 32)."""

    def __init__(self, mobilenet: torchvision.models.MobileNetV2, out_channels: int):
        super().__init__()
        self.features = mobilenet.features
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def imagenet_weights_file(name: str) -> Path:
    """Where torchvision's ImageNet file for backbone `name` sits in the torch hub cache."""
    _, enum_name, _ = _spec(name)
    url = getattr(torchvision.models, enum_name).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def imagenet_fetch_command(names) -> str:
    """A command that, run where there is internet, puts the ImageNet files of the backbones
    `names` into that machine's torch hub cache (torchvision downloads them itself)."""
    calls = "; ".join(f"m.{_spec(n)[0]}(weights='IMAGENET1K_V1')" for n in names)
    return f'python -c "import torchvision.models as m; {calls}"'


def missing_imagenet_message(name: str, path: Path) -> str:
    return (
        f"model.pretrained='imagenet': the ImageNet weights of {name} are not in the torch hub "
        f"cache; this kit never downloads them. Place the file {path.name} (from "
        f"{getattr(torchvision.models, _spec(name)[1]).IMAGENET1K_V1.url}) in {path.parent}: "
        f"on a machine with internet, {imagenet_fetch_command([name])} writes it to "
        "$TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints); copy it here, "
        "or set TORCH_HOME to a folder holding hub/checkpoints/. Or pass a local file with "
        "--set model.pretrained=/path/to/file.pth, or use --set model.pretrained=none"
    )


def build_backbone(name: str, pretrained: str = "none") -> nn.Module:
    """Build backbone `name` with weights `pretrained`: "none", "imagenet", a kit
    pre-training's name or a file path (ocdlib/weights.py).

    The returned module maps (N, 3, H, W) to (N, C, H/32, W/32) (ceil for sizes
    not divisible by 32) and has `out_channels` = C.
    """
    if name in _NARROW:
        backbone: nn.Module = ResNetBackbone(narrow_resnet18(_NARROW[name]), 8 * _NARROW[name])
    else:
        builder, _, channels = _spec(name)
        net = getattr(torchvision.models, builder)(weights=None)
        if name.startswith("resnet"):
            backbone = ResNetBackbone(net, channels)
        else:
            backbone = MobileNetV2Backbone(net, channels)
    if pretrained in ("", "none"):
        return backbone
    if pretrained == "imagenet":
        if name in _NARROW:
            raise ConfigError(
                f"model.backbone={name!r} has no ImageNet weights; use a kit pre-training "
                f"({kit_weights_names()}), a file, or --set model.pretrained=none"
            )
        path = imagenet_weights_file(name)
        if not path.is_file():
            raise MissingFileError(missing_imagenet_message(name, path))
    else:
        path, _, record = resolve_weights(pretrained)
        if record is not None and record.get("backbone") != name:
            raise ConfigError(
                f"model.pretrained={pretrained!r} holds weights of {record.get('backbone')}, "
                f"not of model.backbone={name!r}; pre-train that backbone (python -m ocdlib "
                f"pretrain) or set model.backbone={record.get('backbone')}"
            )
    load_backbone_weights(backbone, path, name)
    return backbone


def load_backbone_weights(backbone: nn.Module, path: Path, name: str) -> None:
    """Load a torchvision-style state_dict from `path` into `backbone`, strictly.

    Accepts the bare state_dict, or one wrapped under "state_dict" / "model";
    a "module." (DataParallel) or "backbone." prefix is stripped. The classifier
    keys are ignored; every other key must match.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or non-PyTorch file
        raise ConfigError(
            f"model.pretrained={str(path)!r}: cannot read it as a PyTorch state_dict ({err})"
        ) from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError(f"model.pretrained={str(path)!r}: expected a state_dict (a dict)")
    for prefix in ("module.", "backbone."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    fix = (
        f"Pass a state_dict of torchvision.models.{name}() or set model.backbone to the "
        "architecture the file was saved from"
    )
    stem, want = state.get("conv1.weight"), getattr(backbone, "conv1", None)
    if stem is not None and want is not None and stem.shape != want.weight.shape:
        raise ConfigError(
            f"model.pretrained={str(path)!r} does not fit backbone {name}: it holds a backbone "
            f"of stem width {stem.shape[0]} ({_name_of_width(stem.shape[0])}), {name} has "
            f"{want.weight.shape[0]}. "
            f"{fix}"
        )
    try:
        result = backbone.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches raise even when not strict
        raise ConfigError(
            f"model.pretrained={str(path)!r} does not fit backbone {name}: {err}. {fix}"
        ) from err
    missing, unexpected = result.missing_keys, result.unexpected_keys
    if missing or unexpected:
        raise ConfigError(
            f"model.pretrained={str(path)!r} does not fit backbone {name}: "
            f"{len(missing)} missing key(s) {missing[:3]}, {len(unexpected)} unexpected "
            f"key(s) {unexpected[:3]}. {fix}"
        )


def _name_of_width(width: int) -> str:
    names = [n for n, w in _NARROW.items() if w == width] or (
        ["resnet18/34/50/101/152"] if width == 64 else ["an unknown architecture"]
    )
    return names[0]


def _spec(name: str) -> tuple[str, str, int]:
    try:
        return _BACKBONES[name]
    except KeyError:
        raise ConfigError(
            f"model.backbone={name!r} is unknown; choose one of {list(BACKBONE_NAMES)}"
        ) from None
