"""Transfer of adversarial queries between victims, and ensembles of perturbations (HAG, Yang et al. 2018,
the transfer table): an attack crafted on each victim is evaluated on every victim, and so are ensembles
r_1 + r_2 + ... of those perturbations, clipped back into the attack's eps-ball
(``advhash.attacks.combine_perturbations``), so that every row has the same budget.

    table, perturbed = transfer_table(victims, queries, dict(attack="hag", eps=8 / 255, steps=100),
                                      ensembles=[(1, 2), (1, 2, 3)], topk=5000)

Rows are named after the victim each perturbation was crafted on ("r1: <victim>", numbered from 1 in the
order of ``victims``) or after the ensemble ("r1 + r2", "r1 + ... + r3"), columns after the victim it is
evaluated on; "none" is the clean queries.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pandas as pd
import torch

from .attacks import build_attack, combine_perturbations, perturb
from .evaluation import QuerySet, retrieval_map
from .victim import Victim

__all__ = ["ensemble_label", "craft_perturbations", "transfer_table"]


def ensemble_label(members: Iterable[int]) -> str:
    """The name of an ensemble of perturbations, by victim number: "r1 + r3", or "r1 + ... + r5" for a run of
    more than two consecutive numbers."""
    members = list(members)
    if len(members) > 2 and members == list(range(members[0], members[-1] + 1)):
        return f"r{members[0]} + ... + r{members[-1]}"
    return " + ".join(f"r{number}" for number in members)


def craft_perturbations(victims: Mapping[str, Victim], images: torch.Tensor, attack: Mapping[str, Any], *,
                        ensembles: Iterable[Iterable[int]] = (), batch_size: int = 128) -> dict[str, torch.Tensor]:
    """The perturbed images of each row of the transfer table: "none" (``images`` themselves), the ``attack``
    (``dict(attack=<ATTACKS name>, **kwargs)``, with its ``eps``) crafted on each victim, "r<i>: <label>" for the
    i-th victim (from 1), and each ensemble of ``ensembles`` (victim numbers, from 1; named by
    :func:`ensemble_label`): the sum of the members' perturbations clipped into the eps-ball and [0, 1]
    (``advhash.attacks.combine_perturbations``). An ensemble naming a number beyond the victims is left out."""
    settings = dict(attack)
    name = settings.pop("attack")
    crafted = [perturb(build_attack(name, victim, **settings), images, batch_size=batch_size)
               for victim in victims.values()]
    perturbed = {"none": images, **{f"r{number}: {label}": adversarial
                                    for number, (label, adversarial) in enumerate(zip(victims, crafted), 1)}}
    for members in map(list, ensembles):
        if not members or min(members) < 1:
            raise ValueError(f"an ensemble is a list of victim numbers from 1; got {members}")
        if max(members) <= len(crafted):
            perturbed[ensemble_label(members)] = combine_perturbations(images, [crafted[m - 1] for m in members],
                                                                       eps=settings["eps"])
    return perturbed


def transfer_table(victims: Mapping[str, Victim], queries: QuerySet, attack: Mapping[str, Any], *,
                   ensembles: Iterable[Iterable[int]] = (), topk: int | None, batch_size: int = 128
                   ) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
    """HAG's transfer table: mAP@k of each row of :func:`craft_perturbations` (the clean queries, the attack
    crafted on each victim, the ensembles) evaluated on every victim with the queries' labels; rows = crafted on,
    columns = evaluated on (the victims' labels). Returns (table, {row: perturbed images})."""
    perturbed = craft_perturbations(victims, queries.images, attack, ensembles=ensembles, batch_size=batch_size)
    table = pd.DataFrame({target: {source: retrieval_map(victim, victim.encode(images), queries.labels, topk=topk)
                                   for source, images in perturbed.items()} for target, victim in victims.items()})
    return table, perturbed
