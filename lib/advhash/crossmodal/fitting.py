"""What DCMH's and SSAH's trainers share (``fit_dcmh``, ``fit_ssah``).

- ``require_texts``: a split's tag vectors, or a clear error when the dataset has no text modality;
- ``fit_cross_modal``: build a new model (or copy a trained one, to fine-tune it), name its checkpoint after
  the data, the training items, the base model and every setting (``advhash.checkpoint.checkpoint_file``), and
  train it, resuming an interrupted run or only loading a finished one.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from ..checkpoint import checkpoint_file, model_digest, weights_tag
from ..fingerprint import modules_of
from ..models import backbone_precision
from ..utils import resolve_device


def require_texts(split, what: str = "the training split") -> torch.Tensor:
    """The split's tag vectors, or a clear error when the dataset has no text modality."""
    if getattr(split, "texts", None) is None:
        raise ValueError(f"{what} has no texts: cross-modal hashing needs a dataset with a tag modality "
                         "(fashion-mosaic, or the DCMH-style .mat files with YAll)")
    return split.texts


def fit_cross_modal(data, build: Callable[[int], torch.nn.Module], train: Callable[..., list[dict[str, Any]]], *,
                    bits: int, epochs: int, backbone: str, base, train_split, checkpoint_dir, name: str, device,
                    seed: int, training: dict[str, Any], weights=None):
    """What ``fit_dcmh`` and ``fit_ssah`` share: copy ``base`` (to fine-tune it) or seed and ``build(in_channels)``
    a new model; name its checkpoint ``<checkpoint_dir>/<name>_<bits>bits_<backbone>_e<epochs>_<tag>.pt``
    (``advhash.checkpoint.checkpoint_file``: the data, the training items and their content, the arithmetic and the
    code of ``train`` and ``build``), the tag hashing also the base model's weights, the pretrained weights of a new
    model (``weights_tag``; absent for a random init) and every setting; then ``train`` it (resuming, starting from
    a finished shorter run, or only loading a finished checkpoint). Returns (model, history)."""
    require_texts(train_split)
    if base is not None:
        model = copy.deepcopy(base)
    else:
        torch.manual_seed(seed)
        model = build(data.image_shape[0] if data.image_shape else 3)
    if model.bits != bits:
        raise ValueError(f"the base model has {model.bits} bits, not {bits}")
    checkpoint_path = None
    if checkpoint_dir is not None:
        settings = dict(config=model.config, base=None if base is None else model_digest(base), seed=seed, **training,
                        **({} if weights is None or base is not None else dict(weights=weights_tag(weights))))
        checkpoint_path = checkpoint_file(checkpoint_dir, f"{name}_{bits}bits_{backbone}", epochs=epochs,
                                          settings=settings, data_name=data.name, train_split=train_split,
                                          precision=backbone_precision(model, resolve_device(device)),
                                          code=modules_of(train, build, type(model)))
    history = train(model, train_split, epochs=epochs, seed=seed, start_from_model=base is not None,
                    checkpoint_path=checkpoint_path, device=device, **training)
    return model.eval(), history
