"""Adversarial attacks on deep hashing retrieval (L-inf, [0, 1] images), torchattacks style.

- ``HashingAttack`` the shared base (checks, device, model mode, projection, snapshots, history)
- ``HammingPGD``    the plain non-targeted baseline
- ``HAG``           Yang et al., "Adversarial Examples for Hamming Space Search", TCYB 2018

``build_attack("hag", model, eps=8/255)`` picks one by name (``ATTACKS``); ``perturb`` runs an
attack over many images in batches.
"""

from __future__ import annotations

from .base import HashingAttack, combine_perturbations, perturb, perturbation_stats
from .hag import HAG, hag_loss, hag_scale
from .pgd import HammingPGD, hamming_pgd_loss

ATTACKS: dict[str, type[HashingAttack]] = {"pgd": HammingPGD, "hag": HAG}


def build_attack(name: str, model, **kwargs) -> HashingAttack:
    """Build the attack called ``name`` (a key of ``ATTACKS``) on ``model``; kwargs go to its class."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of {sorted(ATTACKS)}")
    return ATTACKS[name](model, **kwargs)


__all__ = ["ATTACKS", "build_attack", "HashingAttack", "HammingPGD", "HAG", "hag_loss", "hag_scale",
           "hamming_pgd_loss", "perturb", "perturbation_stats", "combine_perturbations"]
