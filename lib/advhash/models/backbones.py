"""Feature extractors: torchvision backbones and a small CNN for 28x28 / 32x32 / 56x56 images on CPU.

Each builder returns ``(module, feature_dim)``: the module maps normalized images (N, C, H, W) to
features (N, feature_dim). torchvision backbones lose their last classification layer, as in the
deep hashing literature (DPSH/HashNet/DPH replace fc8 of AlexNet/VGG with the hash layer).

Weights: ``None`` (random init, the only choice offline here), a path to a local torchvision
state dict (e.g. ``alexnet-owt-7be5be79.pth``), or a torchvision weights name such as
``"IMAGENET1K_V1"`` (torchvision downloads it where a network exists).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torchvision import models as tv_models


class SmallCNN(nn.Module):
    """Three conv blocks (16-32-64 channels, BatchNorm, ReLU, max-pool) and a 256-d fully connected
    layer: a CPU-sized stand-in for AlexNet on small images (any size >= 8x8), about 2 MFLOP a
    28x28 image, so that training and 100-step attacks run in seconds on two cores."""

    def __init__(self, in_channels: int = 1, feature_dim: int = 256):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.MaxPool2d(2))

        self.features = nn.Sequential(block(in_channels, 16), block(16, 32), block(32, 64),
                                      nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(64 * 4, feature_dim), nn.ReLU(inplace=True))
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _load_weights(model: nn.Module, weights: str | Path | None, builder: Callable) -> nn.Module:
    if weights is None:
        return model
    if Path(weights).is_file():
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return model
    if isinstance(weights, str) and "/" not in weights and not weights.endswith((".pth", ".pt")):
        try:      # a torchvision weights name: torch's hub cache if the file is there, else a download
            return builder(weights=weights)
        except OSError as error:      # URLError and every socket failure are OSErrors
            cache = Path(torch.hub.get_dir()) / "checkpoints"
            raise RuntimeError(
                f"torchvision weights {weights!r} are not in torch's cache ({cache}) and could not be downloaded "
                f"({type(error).__name__}: {error}); pass a local torchvision state dict "
                "(weights: path/to/the .pth file) or run once where the network is reachable") from error
    raise FileNotFoundError(f"weights file {weights} does not exist; pass None for random init, a local "
                            "torchvision state dict, or a torchvision weights name like 'IMAGENET1K_V1'")


def _torchvision_classifier_net(name: str, weights) -> tuple[nn.Module, int]:
    """AlexNet / VGG: keep features + classifier up to fc7 (4096-d), drop fc8."""
    builder = getattr(tv_models, name)
    net = _load_weights(builder(weights=None), weights, builder)
    net.classifier = nn.Sequential(*list(net.classifier.children())[:-1])
    return net, 4096


def _torchvision_resnet(name: str, weights) -> tuple[nn.Module, int]:
    """ResNet: global-pooled features, fc replaced by identity."""
    builder = getattr(tv_models, name)
    net = _load_weights(builder(weights=None), weights, builder)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, feature_dim


BACKBONES: dict[str, Callable[..., tuple[nn.Module, int]]] = {
    "small_cnn": lambda in_channels, weights: (SmallCNN(in_channels), 256),
    "alexnet": lambda in_channels, weights: _torchvision_classifier_net("alexnet", weights),
    "vgg11": lambda in_channels, weights: _torchvision_classifier_net("vgg11", weights),
    "vgg16": lambda in_channels, weights: _torchvision_classifier_net("vgg16", weights),
    "resnet18": lambda in_channels, weights: _torchvision_resnet("resnet18", weights),
    "resnet50": lambda in_channels, weights: _torchvision_resnet("resnet50", weights),
}

# Inputs smaller than this are resized up inside the model (AlexNet's stride-4 stem needs >= 63 px).
MIN_INPUT_SIZE = {"small_cnn": 8, "alexnet": 64, "vgg11": 32, "vgg16": 32, "resnet18": 32, "resnet50": 32}


def build_backbone(name: str, *, in_channels: int, weights: str | Path | None = None) -> tuple[nn.Module, int]:
    """Build a backbone by name (see ``BACKBONES``). torchvision nets take 3 channels; the hashing
    model repeats a grey channel for them."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    if name == "small_cnn" and weights is not None:
        raise ValueError("small_cnn has no pretrained weights; pass weights=None")
    return BACKBONES[name](in_channels, weights)
