"""Adversarial attacks on deep hashing retrieval (L-inf, [0, 1] images), torchattacks style.

- ``HashingAttack`` the shared base; ``HammingPGD`` the plain baseline: the code-guided attack away from the clean code
- ``HAG``  Yang et al., TCYB 2018 (``variant``: "paper" or "published", the SAAT code's)
- ``CenterGuidedAttack``  Wang et al., "CgAT", WWW 2023: away from the query's center code
- ``P2P``, ``DHTA``  Bai et al., ECCV 2020: toward a target label's anchor code (``CodeGuidedAttack``: their loop)
- ``SAAT``  Yuan et al., TIFS 2023: away from (or toward) a mainstay code
- ``SDHA``  Lu et al., ICMR 2021: away from (or toward) the relevant training codes, Adam on pixels

    victim = Victim.build(model, data)                   # the model and its training / database codes
    attack = build_attack("saat", victim, eps=8/255)     # or SAAT(victim, ...); ATTACKS lists the names
    adv_images = attack(images, labels)                  # labels: the queries' multi-hot labels
    attack.set_targets(target_labels)                    # targeted attacks (P2P, DHTA, SAAT, SDHA), once
    adv_images = perturb(attack, images, labels, batch_size=128)   # many images, in batches
"""

from __future__ import annotations

from .base import HashingAttack, check_labels, combine_perturbations, perturb, perturbation_stats
from .hag import HAG, hag_loss, hag_published_loss, hag_scale
from .center import CenterGuidedAttack
from .guided import CodeGuidedAttack, code_alignment_loss
from .pgd import HammingPGD
from .saat import SAAT, saat_loss
from .sdha import SDHA, sdha_bit_distance, sdha_rank_weight, sdha_surrogate_distance, sdha_surrogate_loss
from .targeted import DHTA, P2P

ATTACKS: dict[str, type[HashingAttack]] = {"pgd": HammingPGD, "hag": HAG, "center": CenterGuidedAttack,
                                           "p2p": P2P, "dhta": DHTA, "saat": SAAT,
                                           "sdha": SDHA}


def build_attack(name: str, victim, **kwargs) -> HashingAttack:
    """Build the attack called ``name`` (a key of ``ATTACKS``) on ``victim`` (an ``advhash.Victim`` or a
    bare model); kwargs go to its class."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of {sorted(ATTACKS)}")
    return ATTACKS[name](victim, **kwargs)


__all__ = ["ATTACKS", "build_attack", "HashingAttack", "check_labels", "HammingPGD", "HAG", "hag_loss",
           "hag_published_loss", "hag_scale", "CodeGuidedAttack", "code_alignment_loss", "CenterGuidedAttack", "P2P", "DHTA",
           "SAAT", "saat_loss",
           "SDHA", "sdha_bit_distance", "sdha_surrogate_distance", "sdha_rank_weight", "sdha_surrogate_loss",
           "perturb", "perturbation_stats", "combine_perturbations"]
