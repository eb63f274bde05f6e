"""CMLA's adversarial training (DCMH+ / SSAH+): Li et al., NeurIPS 2019, section 4.

The adversarial samples of the first ``num_adversarial`` training pairs (the image attacked against its
paired text's codes, the text against its image's codes) are put in front of the training set, with the
labels of their items, and the clean model is fine-tuned on the augmented set (the published code:
5,000 adversarial pairs, 5 epochs; ``demo_AdversarialTraining.py``). Adversarial images are stored as
8-bit images, as the published code stores them (it also passes them through JPEG, which is not
reproduced).
"""

from __future__ import annotations

from typing import Any

import torch

from ..attacks import perturb
from ..checkpoint import checkpoint_file, load_checkpoint, model_digest, save_checkpoint
from ..data import InMemorySplit
from ..fingerprint import modules_of
from ..models import backbone_precision
from ..train import encode
from .cmla import CMLA
from .dcmh import fit_dcmh
from .fitting import require_texts
from .models import CrossModalHashing
from .ssah import SSAHModel, fit_ssah


def cmla_samples(model, images: torch.Tensor, texts: torch.Tensor, labels: torch.Tensor, *,
                 image_attack: dict[str, Any] | None = None, text_attack: dict[str, Any] | None = None,
                 batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """CMLA adversarial images and texts of paired items: each modality attacked against the clean codes of
    its pair and of itself. ``image_attack`` / ``text_attack``: settings of the two ``CMLA`` attacks."""
    image_codes, text_codes = encode(model.image, images), encode(model.text, texts)
    image_cmla = CMLA(model.image, modality="image", **(image_attack or {})).set_pairs(text_codes, image_codes)
    text_cmla = CMLA(model.text, modality="text", **(text_attack or {})).set_pairs(image_codes, text_codes)
    adversarial_images = perturb(image_cmla, images, labels, batch_size=batch_size)
    adversarial_texts = perturb(text_cmla, texts, labels, batch_size=batch_size)
    return adversarial_images, adversarial_texts


def augmented_training_split(model, train_split, *, num_adversarial: int, image_attack=None, text_attack=None,
                             batch_size: int = 128) -> InMemorySplit:
    """The training split with the CMLA samples of its first ``num_adversarial`` pairs put in front."""
    texts = require_texts(train_split).float()
    if not 0 < num_adversarial <= len(train_split):
        raise ValueError(f"num_adversarial must be in [1, {len(train_split)}] (the training pairs); got {num_adversarial}")
    labels, first = train_split.labels, torch.arange(num_adversarial)
    adversarial_images, adversarial_texts = cmla_samples(model, train_split.batch(first)[0], texts[first],
                                                         labels[first], image_attack=image_attack,
                                                         text_attack=text_attack, batch_size=batch_size)
    as_bytes = lambda x: (x.clamp(0, 1) * 255).round().to(torch.uint8)
    stored = getattr(train_split, "images", None)                               # uint8 already in memory
    if not isinstance(stored, torch.Tensor):
        stored = torch.cat([as_bytes(train_split.batch(chunk)[0]) for chunk in torch.arange(len(train_split)).split(256)])
    return InMemorySplit(torch.cat([as_bytes(adversarial_images), stored]), torch.cat([labels[first], labels]),
                         texts=torch.cat([adversarial_texts, texts]))


def stored_training_split(data, base, *, name: str, checkpoint_dir, **sampling) -> InMemorySplit:
    """:func:`augmented_training_split` of ``data.train`` against ``base`` (``sampling``: num_adversarial,
    image_attack, text_attack, batch_size), made once and stored beside the checkpoints: a rerun that loads the
    "+" model needs its augmented split only to name its checkpoint (which hashes the split's content), and making
    its samples again cost a third of stage 03 with the checkpoints kept. The file,
    ``<checkpoint_dir>/<name>_samples_<bits>bits_<backbone>_e0_<tag>.pt``, is named like a checkpoint
    (``advhash.checkpoint.checkpoint_file``) after everything that determines the samples: the data, the training
    items and their content, the thread count and precision, the code of the attack, the base model's weights and
    ``sampling``; the settings stored inside are checked on load (``weights_only=True``), so a copied or renamed
    file is refused. Without ``checkpoint_dir`` the split is made and not stored."""
    if checkpoint_dir is None:
        return augmented_training_split(base, data.train, **sampling)
    device = next(base.parameters()).device
    path = checkpoint_file(checkpoint_dir, f"{name}_samples_{base.bits}bits_{base.image.config['backbone']}",
                           epochs=0, settings=dict(base=model_digest(base), **sampling), data_name=data.name,
                           train_split=data.train, precision=backbone_precision(base, device),
                           code=modules_of(augmented_training_split, CMLA))
    if path.exists():
        state = load_checkpoint(path)
        return InMemorySplit(state["images"], state["labels"], texts=state["texts"])
    augmented = augmented_training_split(base, data.train, **sampling)
    save_checkpoint(dict(images=augmented.images, labels=augmented.labels, texts=augmented.texts), path)
    return augmented


def fit_cmla_training(data, base, *, num_adversarial: int = 5000, epochs: int = 5, image_attack=None,
                      text_attack=None, attack_batch_size: int = 128, checkpoint_dir=None, **training):
    """DCMH+ / SSAH+ : fine-tune ``base`` (a trained ``CrossModalHashing`` or ``SSAHModel``) with its own
    objective (``fit_dcmh`` / ``fit_ssah``, which ``training`` goes to) on the training set augmented with CMLA
    samples (:func:`augmented_training_split`, stored beside the checkpoints: :func:`stored_training_split`). Returns
    the fine-tuned model, its history and the augmented split."""
    if isinstance(base, SSAHModel):
        fit, name = fit_ssah, "ssah+"
    elif isinstance(base, CrossModalHashing):
        fit, name = fit_dcmh, "dcmh+"
    else:
        raise TypeError(f"base must be a trained CrossModalHashing (DCMH) or SSAHModel; got {type(base).__name__}")
    augmented = stored_training_split(data, base, name=name, checkpoint_dir=checkpoint_dir,
                                      num_adversarial=min(num_adversarial, len(data.train)),
                                      image_attack=image_attack, text_attack=text_attack, batch_size=attack_batch_size)
    model, history = fit(data, bits=base.bits, epochs=epochs, base=base, train_split=augmented,
                         backbone=base.image.config["backbone"], checkpoint_dir=checkpoint_dir, name=name, **training)
    return model, history, augmented
