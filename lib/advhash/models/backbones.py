"""Feature extractors: torchvision backbones and a small CNN for 28x28 / 32x32 / 56x56 images on CPU.

Each builder returns ``(module, feature_dim)``: the module maps normalized images (N, C, H, W) to
features (N, feature_dim). torchvision backbones lose their last classification layer, as in the
deep hashing literature (DPSH/HashNet/DPH replace fc8 of AlexNet/VGG with the hash layer).

Weights: ``None`` (random init, the only choice offline here), a path to a local torchvision
state dict (e.g. ``alexnet-owt-7be5be79.pth``), or a torchvision weights name such as
``"IMAGENET1K_V1"`` (torchvision downloads it where a network exists).

A weights file is the ``state_dict()`` of the torchvision model of the backbone's name, saved with
``torch.save(model.state_dict(), path)`` (torchvision's own downloads are such files); the keys of one saved from
``nn.DataParallel`` / ``DistributedDataParallel`` (all prefixed ``module.``) are taken without the prefix. A
``Path``, or a name with a folder separator or ending in ``.pth`` / ``.pt``, always means a file: when it is not
there the error says so (moved or deleted), instead of trying it as a weights name. Anything else that does not
fit (another architecture, a truncated file, a training checkpoint, a mistyped weights name) is an error naming
the file or name, what differs and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

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


def weights_file(weights: str | Path | None) -> Path | None:
    """The local file a ``weights`` setting names, or None (a random init, or a torchvision weights name).

    A ``Path``, a name holding a folder separator or ending in ``.pth`` / ``.pt``, or an existing file is a file;
    one that is not there raises ``FileNotFoundError`` naming it as moved or deleted, wherever the setting is read
    (building a model, naming its checkpoint, loading a victim manifest), so that it is never mistaken for a
    weights name and a missing file is never blamed on the data."""
    if weights is None:
        return None
    path, text = Path(weights), str(weights)
    if not (isinstance(weights, os.PathLike) or "/" in text or os.sep in text or text.endswith((".pth", ".pt"))
            or path.is_file()):
        return None
    if not path.is_file():
        where = "" if path.is_absolute() else f" (looked for at {path.absolute()})"
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(
            f"weights file {text} {what}{where}: it was moved, renamed or deleted since the settings named it. Put "
            "it back, or set weights to where it is now (params.yaml, the notebook's weights), or to null for a "
            "random init or a torchvision weights name such as 'IMAGENET1K_V1'")
    return path


def _architecture_of(state: dict[str, torch.Tensor]) -> str | None:
    """The torchvision backbone (a name of ``BACKBONES``) whose state dict has exactly the keys and shapes of
    ``state``, or None. Built on the meta device: no memory, milliseconds."""
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    for name in BACKBONES:
        if name == "small_cnn":
            continue
        with torch.device("meta"):
            net = getattr(tv_models, name)(weights=None)
        if {key: tuple(value.shape) for key, value in net.state_dict().items()} == shapes:
            return name
    return None


def _listed(keys: list[str], shown: int = 5) -> str:
    """At most ``shown`` keys, then how many more."""
    more = f", ... ({len(keys) - shown} more)" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def _read_state_dict(path: Path, name: str) -> dict[str, torch.Tensor]:
    """The state dict in weights file ``path`` (for torchvision ``name``), without a DataParallel ``module.``
    prefix; a clear error when the file cannot be read or holds no plain state dict."""
    saved = f"torch.save(torchvision.models.{name}().state_dict(), path)"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:       # truncated, empty, not a torch file, or a pickled model weights_only refuses
        raise ValueError(
            f"weights file {path} ({path.stat().st_size} bytes) cannot be read as a state dict "
            f"({type(error).__name__}: {str(error).split('. ')[0][:200]}): it is truncated (an interrupted download "
            f"or copy), not a "
            f"torch file, or a whole pickled model. Download or copy it again; a weights file must be saved with "
            f"{saved}") from error
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        keys = sorted(map(str, state)) if isinstance(state, dict) else []
        inside = f"a dict of {_listed(keys)}" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise ValueError(
            f"weights file {path} holds {inside}, not a state dict (parameter name -> tensor) of torchvision {name}: "
            f"a training checkpoint's weights are one of its entries (e.g. 'state_dict' or 'model'); save that "
            f"entry alone, as {saved} does")
    if state and all(key.startswith("module.") for key in state):      # saved from DataParallel / DDP
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def _load_weights(model: nn.Module, weights: str | Path | None, builder: Callable) -> nn.Module:
    """``model`` (torchvision ``builder``'s, random init) with ``weights``: None, a local state dict file
    (:func:`weights_file`), or a torchvision weights name. Each fault is an error naming the file or name, what
    differs and the fix."""
    name = builder.__name__
    path = weights_file(weights)
    if path is not None:
        state = _read_state_dict(path, name)
        _check_fits(model, state, path, name)
        model.load_state_dict(state)
        return model
    if weights is None:
        return model
    names = tv_models.get_model_weights(name)
    if str(weights).removeprefix(f"{names.__name__}.") not in names.__members__:
        raise ValueError(f"unknown torchvision weights name {weights!r} for {name}: its valid names are "
                         f"{', '.join(names.__members__)}; or give the path of a local state dict file "
                         "(with a folder, or ending in .pth)")
    try:      # a torchvision weights name: torch's hub cache if the file is there, else a download
        return builder(weights=weights)
    except OSError as error:      # URLError and every socket failure are OSErrors
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise RuntimeError(
            f"torchvision weights {weights!r} are not in torch's cache ({cache}) and could not be downloaded "
            f"({type(error).__name__}: {error}); pass a local torchvision state dict "
            "(weights: path/to/the .pth file) or run once where the network is reachable") from error


def _check_fits(model: nn.Module, state: dict[str, Any], path: Path, name: str) -> None:
    """Refuse a state dict whose keys or shapes are not those of torchvision ``name``'s ``model``, naming the file,
    a few of the keys that differ and their counts, the architecture it fits (when it is one of ``BACKBONES``),
    and the fix; instead of torch's thousands of characters of keys without the file name."""
    own = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    reshaped = [f"{key} {tuple(state[key].shape)} vs {own[key]}" for key in own
                if key in state and tuple(state[key].shape) != own[key]]
    if not (missing or unexpected or reshaped):
        return
    found = ((missing, "keys missing"), (unexpected, "unexpected keys"), (reshaped, "of another shape (file vs model)"))
    parts = [f"{len(keys)} {what} ({_listed(keys)})" for keys, what in found if keys]
    fits = _architecture_of(state)
    guess = f"It holds a torchvision {fits} state dict: set backbone: {fits} for it, or give" if fits else "Give"
    raise ValueError(f"weights file {path} does not fit backbone {name} (torchvision.models.{name}): "
                     f"{'; '.join(parts)}. {guess} a weights file of {name}, saved with "
                     f"torch.save(torchvision.models.{name}().state_dict(), path)")


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
