"""Fitting a cross-modal model: what DCMH's and SSAH's trainers share (``fit_dcmh``, ``fit_ssah``).

- ``require_texts``: a split's tag vectors, or a clear error when the dataset has no text modality;
- ``fit_cross_modal``: build a new model (or copy a trained one, to fine-tune it), name its checkpoint after
  the data, the training items, the base model and every setting (``advhash.checkpoint``), and train it,
  resuming an interrupted run or only loading a finished one;
- ``fit_crossmodal_victims``: the victims of CMLA's tables at every code length, DCMH and SSAH and their
  adversarially trained versions DCMH+ and SSAH+, with the training history of each.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Mapping

import pandas as pd
import torch

from ..checkpoint import checkpoint_lock, model_digest, run_file, split_digest, train_items_tag, weights_tag
from ..fingerprint import code_fingerprint, modules_of
from ..models import backbone_precision
from ..train import numeric_setting
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
    (``advhash.checkpoint.run_file``), the tag hashing the data, the training items and their content, the base
    model's weights, the pretrained weights of a new model (``weights_tag``; absent for a random init), the code of
    ``train`` and ``build`` (``advhash.fingerprint.code_fingerprint``) and every setting; then ``train`` it
    (resuming, starting from a finished shorter run, or only loading a finished checkpoint). Returns (model,
    history)."""
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
        settings = dict(data=data.name, train_items=train_items_tag(train_split), content=split_digest(train_split),
                        config=model.config, base=None if base is None else model_digest(base), seed=seed, **training,
                        **({} if weights is None or base is not None else dict(weights=weights_tag(weights))),
                        **numeric_setting(backbone_precision(model, resolve_device(device))),
                        code=code_fingerprint(*modules_of(train, build, type(model))))
        checkpoint_path = run_file(checkpoint_dir, f"{name}_{bits}bits_{backbone}", epochs=epochs, settings=settings)
    with checkpoint_lock(checkpoint_path):        # one writer per checkpoint
        history = train(model, train_split, epochs=epochs, seed=seed, start_from_model=base is not None,
                        checkpoint_path=checkpoint_path, device=device, **training)
    return model.eval(), history


def fit_crossmodal_victims(data, bits_list: Iterable[int], *, dcmh: Mapping[str, Any], ssah: Mapping[str, Any],
                           adversarial: Mapping[str, Any], backbone: str = "small_cnn", weights=None,
                           input_size: int | None = None, text_hidden: int = 8192, checkpoint_dir=None,
                           device="cpu", seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """The victims of CMLA's Tables 1 and 2 at each code length of ``bits_list``: DCMH (``fit_dcmh``) and SSAH
    (``fit_ssah``) trained from scratch, then DCMH+ and SSAH+, each fine-tuned with its own objective on the
    training set with CMLA samples in front (``fit_cmla_training``). Every fit resumes or loads its checkpoint in
    ``checkpoint_dir``.

    dcmh, ssah: ``epochs`` and the training settings of each (``train_dcmh``: batch_size, lr, gamma, eta, ...;
    ``train_ssah``: batch_size, the learning rates, pairwise, ...), shared by the base model and its "+" version;
    ``backbone``, ``weights`` (its pretrained start, None for a random init) and ``input_size`` (the image
    networks) and ``text_hidden`` (DCMH's text network) build the base models. adversarial: the "+" training,
    ``num_adversarial``, ``epochs``, ``steps`` (the CMLA iterations of each sample), ``attack_batch_size`` and
    ``attacks``, {"image": ..., "text": ...} keyword arguments of the two ``CMLA`` attacks that make its samples
    (lr, constraint, weights).

    Returns (models, histories): models {(name, bits): model} for name DCMH, DCMH+, SSAH, SSAH+ in that order at
    each code length; histories one row per (model, bits, epoch) with the training history's columns."""
    from .adversarial_training import fit_cmla_training      # here: it fits with dcmh and ssah, which import this
    from .dcmh import fit_dcmh
    from .ssah import fit_ssah

    where = dict(checkpoint_dir=checkpoint_dir, device=device, seed=seed)
    settings = {"DCMH": dict(dcmh), "SSAH": dict(ssah)}
    epochs = {name: values.pop("epochs") for name, values in settings.items()}
    attacks = adversarial.get("attacks") or {}
    plus = dict(num_adversarial=adversarial["num_adversarial"], epochs=adversarial["epochs"],
                attack_batch_size=adversarial.get("attack_batch_size", 128), **where,
                **{f"{modality}_attack": dict(steps=adversarial["steps"], **attacks.get(modality, {}))
                   for modality in ("image", "text")})
    models, histories = {}, []
    for bits in bits_list:
        image = dict(backbone=backbone, weights=weights, input_size=input_size)
        bases = {"DCMH": fit_dcmh(data, bits=bits, epochs=epochs["DCMH"], text_hidden=text_hidden, **image, **where,
                                  **settings["DCMH"]),
                 "SSAH": fit_ssah(data, bits=bits, epochs=epochs["SSAH"], **image, **where, **settings["SSAH"])}
        for name, (base, history) in bases.items():
            tuned, tuned_history, _ = fit_cmla_training(data, base, **plus, **settings[name])
            models[name, bits], models[name + "+", bits] = base, tuned
            histories += [dict(model=label, bits=bits, **row)
                          for label, rows in ((name, history), (name + "+", tuned_history)) for row in rows]
    return models, pd.DataFrame(histories)
