"""The victims of CMLA's tables (notebook 03): DCMH and SSAH at every code length, and their adversarially trained
versions DCMH+ and SSAH+, with the training history of each. Sits above the trainers it orchestrates, as
``advhash.fitting.fit_victims`` does for the image models.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pandas as pd

from .adversarial_training import fit_cmla_training
from .dcmh import fit_dcmh
from .ssah import fit_ssah

__all__ = ["fit_crossmodal_victims"]


def fit_crossmodal_victims(data, bits_list: Iterable[int], *, dcmh: Mapping[str, Any], ssah: Mapping[str, Any],
                           adversarial: Mapping[str, Any], backbone: str = "small_cnn", weights=None,
                           input_size: int | None = None, text_hidden: int = 8192, checkpoint_dir=None,
                           device="cpu", seed: int = 0, all_models_bits: Iterable[int] | None = None
                           ) -> tuple[dict, pd.DataFrame]:
    """The victims of CMLA's Tables 1 and 2 at each code length of ``bits_list``: DCMH (``fit_dcmh``) and SSAH
    (``fit_ssah``) trained from scratch, then DCMH+ and SSAH+, each fine-tuned with its own objective on the
    training set with CMLA samples in front (``fit_cmla_training``). Every fit resumes or loads its checkpoint in
    ``checkpoint_dir``. ``all_models_bits`` (default: every code length) limits SSAH, DCMH+ and SSAH+ to those code
    lengths, DCMH alone being trained at the others (the default profile's CPU budget: SSAH costs ten DCMHs); it must
    be a subset of ``bits_list``.

    dcmh, ssah: ``epochs`` and the training settings of each (``train_dcmh``: batch_size, lr, gamma, eta, ...;
    ``train_ssah``: batch_size, the learning rates, pairwise, ...), shared by the base model and its "+" version;
    ``backbone``, ``weights`` (its pretrained start, None for a random init) and ``input_size`` (the image
    networks) and ``text_hidden`` (DCMH's text network) build the base models. adversarial: the "+" training,
    ``num_adversarial``, ``epochs``, ``steps`` (the CMLA iterations of each sample), ``attack_batch_size`` and
    ``attacks``, {"image": ..., "text": ...} keyword arguments of the two ``CMLA`` attacks that make its samples
    (lr, constraint, weights).

    Returns (models, histories): models {(name, bits): model} for name DCMH, DCMH+, SSAH, SSAH+ in that order at
    each code length (DCMH alone outside ``all_models_bits``); histories one row per (model, bits, epoch) with the training history's columns."""
    where = dict(checkpoint_dir=checkpoint_dir, device=device, seed=seed)
    settings = {"DCMH": dict(dcmh), "SSAH": dict(ssah)}
    epochs = {name: values.pop("epochs") for name, values in settings.items()}
    attacks = adversarial.get("attacks") or {}
    plus = dict(num_adversarial=adversarial["num_adversarial"], epochs=adversarial["epochs"],
                attack_batch_size=adversarial.get("attack_batch_size", 128), **where,
                **{f"{modality}_attack": dict(steps=adversarial["steps"], **attacks.get(modality, {}))
                   for modality in ("image", "text")})
    bits_list = list(bits_list)
    every = set(bits_list) if all_models_bits is None else set(all_models_bits)
    if not every <= set(bits_list):
        raise ValueError(f"all_models_bits {sorted(every)} must be code lengths of bits_list {bits_list}: SSAH and the "
                         f"'+' models are trained only where DCMH is; add {sorted(every - set(bits_list))} to bits_list "
                         "or remove them from all_models_bits")
    models, histories = {}, []
    for bits in bits_list:
        image = dict(backbone=backbone, weights=weights, input_size=input_size)
        bases = {"DCMH": fit_dcmh(data, bits=bits, epochs=epochs["DCMH"], text_hidden=text_hidden, **image, **where,
                                  **settings["DCMH"])}
        if bits in every:
            bases["SSAH"] = fit_ssah(data, bits=bits, epochs=epochs["SSAH"], **image, **where, **settings["SSAH"])
        for name, (base, history) in bases.items():
            models[name, bits] = base
            if bits not in every:
                histories += [dict(model=name, bits=bits, **row) for row in history]
                continue
            tuned, tuned_history, _ = fit_cmla_training(data, base, **plus, **settings[name])
            models[name + "+", bits] = tuned
            histories += [dict(model=label, bits=bits, **row)
                          for label, rows in ((name, history), (name + "+", tuned_history)) for row in rows]
    return models, pd.DataFrame(histories)
