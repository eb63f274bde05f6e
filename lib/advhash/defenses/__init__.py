"""Adversarial training defenses for deep hashing, as resumable trainers on top of ``advhash.train``.

- ``CgAT``   Wang, Lin, Li, "CgAT: Center-Guided Adversarial Training for Deep Hashing-Based Retrieval", WWW 2023
- ``ATRDH``  Wang, Zhang, Lu, Xu, "Targeted Attack and Defense for Deep Hashing", SIGIR 2021
- ``SAATTraining``  Yuan, Zhang, Wang, Wu, "Semantic-Aware Adversarial Training for Reliable Deep Hashing
  Retrieval", TIFS 2023 (registered as "saat")
- ``FineTune``  the clean control: the same fine-tune with the hashing loss alone (registered as "finetune")

``fit_defended_model(data, clean_model, CgAT(...), method="dpsh", epochs=...)`` fine-tunes a trained
model with a defense, checkpointing every epoch; ``DEFENSES`` / ``build_defense`` pick one by name;
``advhash.defenses.verdict`` checks a paper's "A is more robust than B" on a results table (imported from there:
kept out of this package's import, so out of the defended checkpoints' code fingerprint).
"""

from __future__ import annotations

from ..checkpoint import model_digest  # re-exported: its home is advhash.checkpoint, with the other naming helpers
from .atrdh import ATRDH, PrototypeNet, prototype_loss
from .base import AdversarialTraining, fit_defended_model
from .cgat import CgAT
from .finetune import FineTune
from .saat import SAATTraining

DEFENSES: dict[str, type] = {"finetune": FineTune, "cgat": CgAT, "atrdh": ATRDH, "saat": SAATTraining}


def build_defense(name: str, **kwargs) -> AdversarialTraining | FineTune:
    """Build the defense called ``name`` (a key of ``DEFENSES``); kwargs go to its class."""
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; choose one of {sorted(DEFENSES)}")
    return DEFENSES[name](**kwargs)


def fit_defense(name: str, data, base_model, *, eps: float, alpha: float, steps: int, method: str, epochs: int,
                settings: dict | None = None, **training):
    """Fine-tune ``base_model`` with the defense called ``name`` ("finetune": the clean control) whose
    inner attack has budget ``eps``, step ``alpha`` and ``steps`` iterations, on ``data.train``.
    ``settings``: {defense name: its own keyword arguments} (e.g. ``{"saat": dict(weight=1.0)}``), so one
    dict serves a loop over defenses; ``training`` goes to :func:`fit_defended_model` (lr, checkpoint_dir,
    device, seed, ...). Returns (model in eval mode, per-epoch history)."""
    defense = build_defense(name, num_train=len(data.train), bits=base_model.bits, num_classes=data.num_classes,
                            eps=eps, alpha=alpha, steps=steps, **(settings or {}).get(name, {}))
    return fit_defended_model(data, base_model, defense, method=method, epochs=epochs, **training)


__all__ = ["DEFENSES", "build_defense", "fit_defense", "AdversarialTraining", "FineTune", "CgAT", "ATRDH",
           "SAATTraining", "PrototypeNet", "prototype_loss", "fit_defended_model", "model_digest"]
