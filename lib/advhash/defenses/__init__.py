"""Adversarial training defenses for deep hashing, as resumable trainers on top of ``advhash.train``.

- ``CgAT``   Wang, Lin, Li, "CgAT: Center-Guided Adversarial Training for Deep Hashing-Based Retrieval", WWW 2023
- ``ATRDH``  Wang, Zhang, Lu, Xu, "Targeted Attack and Defense for Deep Hashing", SIGIR 2021
- ``SAATTraining``  Yuan, Zhang, Wang, Wu, "Semantic-Aware Adversarial Training for Reliable Deep Hashing
  Retrieval", TIFS 2023 (registered as "saat")

``fit_defended_model(data, clean_model, CgAT(...), method="dpsh", epochs=...)`` fine-tunes a trained
model with a defense, checkpointing every epoch; ``DEFENSES`` / ``build_defense`` pick one by name.
"""

from __future__ import annotations

from .atrdh import ATRDH, PrototypeNet, prototype_loss
from .base import AdversarialTraining, fit_defended_model, model_digest
from .cgat import CgAT
from .saat import SAATTraining

DEFENSES: dict[str, type[AdversarialTraining]] = {"cgat": CgAT, "atrdh": ATRDH, "saat": SAATTraining}


def build_defense(name: str, **kwargs) -> AdversarialTraining:
    """Build the defense called ``name`` (a key of ``DEFENSES``); kwargs go to its class."""
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; choose one of {sorted(DEFENSES)}")
    return DEFENSES[name](**kwargs)


__all__ = ["DEFENSES", "build_defense", "AdversarialTraining", "CgAT", "ATRDH", "SAATTraining", "PrototypeNet",
           "prototype_loss", "fit_defended_model", "model_digest"]
