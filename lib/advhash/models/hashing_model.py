"""The deep hashing model: normalization -> backbone -> linear hash layer -> tanh(scale * z).

Attacks work in [0, 1] pixel space, so normalization (and resizing to the backbone's input size,
where one is set) happens inside the model: ``model(images)`` takes raw [0, 1] images.

The hash activation is ``h = tanh(scale * z)`` with the tanh scale settable per call
(``model(images, scale=...)``): HashNet's continuation grows it during training (its paper calls it
beta), HAG and SAAT grow it during an attack to fight vanishing gradients. (``alpha`` is only ever an
attack's step size.) Binary codes are ``b = sign(h)`` with sign(0) := +1, so every code is in {-1, +1}^K.

Precision (``model.precision``, set by :func:`set_precision`; not part of the weights or the config): "fp32", or
"bf16", bfloat16 autocast on the backbone only (the normalization, the hash layer, tanh, every loss, code table,
code and metric stay float32), or "auto" (the default): bf16 on CUDA, fp32 elsewhere, so CPU numbers never move.
On CUDA the backbone also runs channels_last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import BACKBONES, MIN_INPUT_SIZE, build_backbone
from ..utils import check_choice

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRECISIONS = ("auto", "fp32", "bf16")


def effective_precision(precision: str, device: torch.device | str) -> str:
    """"fp32" or "bf16": what ``precision`` means on ``device`` ("auto": bf16 on CUDA, fp32 elsewhere)."""
    check_choice("precision", precision, PRECISIONS)
    if precision == "auto":
        return "bf16" if torch.device(device).type == "cuda" else "fp32"
    return precision


def backbone_precision(model: nn.Module, device: torch.device | str) -> str:
    """"bf16" when a ``HashingModel`` inside ``model`` runs its backbone in bfloat16 on ``device``, else "fp32"."""
    return "bf16" if any(effective_precision(module.precision, device) == "bf16" for module in model.modules()
                         if isinstance(module, HashingModel)) else "fp32"


def set_precision(model: nn.Module, precision: str) -> nn.Module:
    """Set the precision of every ``HashingModel`` in ``model`` (itself, or the image network of a cross-modal
    model); returns ``model``."""
    effective_precision(precision, "cpu")         # validates the name
    for module in model.modules():
        if isinstance(module, HashingModel):
            module.precision = precision
    return model


def binarize(h: torch.Tensor) -> torch.Tensor:
    """Binary codes ``b = sign(h)`` in {-1, +1}, with sign(0) := +1 (so no code bit is ever 0)."""
    return torch.where(h >= 0, 1.0, -1.0).to(h.dtype)


class HashingModel(nn.Module):
    """Image hashing network ``x in [0,1]^(C,H,W) -> h = tanh(scale * W f(normalize(x))) in (-1,1)^K``.

    Args:
        backbone: name in ``advhash.models.BACKBONES`` ("small_cnn", "alexnet", "vgg11", "vgg16",
            "resnet18", "resnet50").
        bits: code length K (16, 32, 48, 64 in the papers).
        in_channels: channels of the input images (1 for Fashion-MNIST, 3 for photos). A grey image is
            repeated to 3 channels for torchvision backbones.
        mean, std: per-channel normalization applied inside the model (default 0.5 / 0.5; use
            ``IMAGENET_MEAN``/``IMAGENET_STD`` with ImageNet weights).
        input_size: resize (bilinear) inputs to this square size inside the model, e.g. 224 for the
            paper-scale AlexNet/VGG runs; None keeps the native size (raised to the backbone's minimum).
        weights: None, a local torchvision state-dict file, or a torchvision weights name.

    Shape: images (N, C, H, W) in [0, 1] -> (N, bits) in (-1, 1).
    """

    def __init__(self, backbone: str = "small_cnn", *, bits: int, in_channels: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 input_size: int | None = None, weights: str | Path | None = None):
        super().__init__()
        if not isinstance(bits, int) or bits <= 0:
            raise ValueError(f"bits must be a positive integer (16, 32, 48, 64 in the papers), got {bits!r}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grey) or 3 (RGB), got {in_channels}")
        mean = tuple(mean) if mean is not None else (0.5,) * in_channels
        std = tuple(std) if std is not None else (0.5,) * in_channels
        if len(mean) != in_channels or len(std) != in_channels:
            raise ValueError(f"mean/std need {in_channels} values (one per input channel), got {mean}, {std}")
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
        self.config: dict[str, Any] = dict(backbone=backbone, bits=bits, in_channels=in_channels,
                                           mean=list(mean), std=list(std), input_size=input_size)
        self.bits = bits
        backbone_channels = 1 if backbone == "small_cnn" else 3
        self.repeat_channels = backbone_channels // in_channels if in_channels == 1 else 1
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        self.input_size = input_size
        self.min_input_size = MIN_INPUT_SIZE[backbone]
        self.backbone, feature_dim = build_backbone(
            backbone, in_channels=in_channels if backbone == "small_cnn" else 3, weights=weights)
        self.hash_layer = nn.Linear(feature_dim, bits)
        self.precision = "auto"

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's features (N, feature_dim) of images in [0, 1] (normalized and resized inside)."""
        x = (images - self.mean) / self.std
        size = self.input_size
        if size is None and min(x.shape[-2:]) < self.min_input_size:
            size = self.min_input_size
        if size is not None and (x.shape[-2], x.shape[-1]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        if self.repeat_channels > 1:
            x = x.expand(-1, self.repeat_channels, -1, -1)
        if x.device.type == "cuda":
            if not getattr(self, "_channels_last", False):       # once: the 4-D weights too (same Parameters)
                self.backbone.to(memory_format=torch.channels_last)
                self._channels_last = True
            x = x.contiguous(memory_format=torch.channels_last)
        if effective_precision(getattr(self, "precision", "auto"), x.device) == "fp32":
            return self.backbone(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            features = self.backbone(x)
        return features.float()

    def hash_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The pre-activation z (N, bits) for images in [0, 1]."""
        return self.hash_layer(self.features(images))

    def forward(self, images: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """Relaxed codes h = tanh(scale * z), shape (N, bits)."""
        return torch.tanh(scale * self.hash_logits(images))

    @torch.no_grad()
    def codes(self, images: torch.Tensor) -> torch.Tensor:
        """Binary codes sign(z) in {-1, +1}, shape (N, bits), computed in whatever mode the model is in."""
        return binarize(self.hash_logits(images))


def with_scaled_hash_layer(model: HashingModel, factor: float) -> HashingModel:
    """A copy of ``model`` whose hash layer (weights and bias) is multiplied by ``factor`` > 0.

    z becomes factor * z, so the binary codes sign(z), and every retrieval number, stay exactly the
    same, while tanh(z) saturates as in victims trained long with a quantization term: the setting in
    which HAG's growing tanh scale matters (Yang et al. 2018, the vanishing-gradient problem).
    """
    import copy

    if not factor > 0:
        raise ValueError(f"factor must be positive (it must keep the sign of every logit), got {factor}")
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled.hash_layer.weight.mul_(factor)
        scaled.hash_layer.bias.mul_(factor)
    return scaled


def build_model(config: dict[str, Any], *, weights: str | Path | None = None) -> HashingModel:
    """Rebuild a model from its ``config`` dict (as stored in checkpoints)."""
    return HashingModel(**config, weights=weights)
