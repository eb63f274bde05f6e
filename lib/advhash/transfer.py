"""Transfer of adversarial queries between victims, and ensembles of perturbations (HAG, Yang et al. 2018,
the transfer table): an attack crafted on each victim is evaluated on every victim, and so are ensembles
r_1 + r_2 + ... of those perturbations, clipped back into the attack's eps-ball
(``advhash.attacks.combine_perturbations``), so that every row has the same budget.

    table, perturbed, scores = transfer_table(victims, queries, dict(attack="hag", eps=8 / 255, steps=100),
                                              ensembles=[(1, 2), (1, 2, 3)], topk=5000)
    kinds = transfer_comparisons(scores, {"DPH s0": ("dph", "vgg16", 0), ...}, ensemble=(1, 2, 3))

Rows are named after the victim each perturbation was crafted on ("r1: <victim>", numbered from 1 in the
order of ``victims``) or after the ensemble ("r1 + r2", "r1 + ... + r3"), columns after the victim it is
evaluated on; "none" is the clean queries. ``scores`` holds each query's AP@k behind every cell, and
:func:`transfer_comparisons` reads from them, per victim and query, the perturbations HAG's transfer claims compare
(own against transferred, a second seed against another backbone, an ensemble against its members alone).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pandas as pd
import torch

from .attacks import build_attack, combine_perturbations, perturb
from .evaluation import QuerySet, retrieval_ap
from .victim import Victim

__all__ = ["PERTURBATIONS", "ensemble_label", "craft_perturbations", "transfer_scores", "transfer_table",
           "transfer_comparisons"]

# the kinds of perturbation HAG's transfer claims compare (notebooks/published/claims.yaml, section 02_hag)
PERTURBATIONS = ("own", "transferred", "second seed", "other backbone", "ensemble", "single")


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


def transfer_scores(victims: Mapping[str, Victim], queries: QuerySet, perturbed: Mapping[str, torch.Tensor], *,
                    topk: int | None) -> dict[str, dict[str, torch.Tensor]]:
    """Each query's AP@k (``advhash.evaluation.retrieval_ap``, relevance to ``queries.labels``) under each row of
    ``perturbed`` (:func:`craft_perturbations`: {row: images (N, C, H, W)}) on every victim, ranked against that
    victim's database: {row: {victim: (N,) float64}}. The mean of each is a cell of :func:`transfer_table`."""
    return {source: {target: retrieval_ap(victim, victim.encode(images), queries.labels, topk=topk)
                     for target, victim in victims.items()} for source, images in perturbed.items()}


def transfer_table(victims: Mapping[str, Victim], queries: QuerySet, attack: Mapping[str, Any], *,
                   ensembles: Iterable[Iterable[int]] = (), topk: int | None, batch_size: int = 128
                   ) -> tuple[pd.DataFrame, dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """HAG's transfer table: mAP@k of each row of :func:`craft_perturbations` (the clean queries, the attack
    crafted on each victim, the ensembles) evaluated on every victim with the queries' labels; rows = crafted on,
    columns = evaluated on (the victims' labels). Returns (table, {row: perturbed images}, {row: {victim: each
    query's AP@k}}): the table's cells are the means of the per-query scores (:func:`transfer_scores`)."""
    perturbed = craft_perturbations(victims, queries.images, attack, ensembles=ensembles, batch_size=batch_size)
    scores = transfer_scores(victims, queries, perturbed, topk=topk)
    table = pd.DataFrame({target: {source: scores[source][target].mean().item() for source in perturbed}
                          for target in victims})
    return table, perturbed, scores


def transfer_comparisons(scores: Mapping[str, Mapping[str, torch.Tensor]],
                         identities: Mapping[str, tuple[str, str, int]], *, ensemble: Iterable[int]
                         ) -> dict[tuple[str, str], torch.Tensor]:
    """Per victim, each query's AP@k under the kinds of perturbation (``PERTURBATIONS``) that HAG's transfer
    claims compare (Yang et al., IEEE TCYB 2018, the transfer table; ``notebooks/published/claims.yaml``), read
    from the per-query ``scores`` of :func:`transfer_table`:

    - "own": the perturbation crafted on the victim itself; "transferred": the mean over those crafted on each
      other victim (the paper: its own perturbation against the other three DPH models');
    - "second seed": the mean over those crafted on a model of the same method and backbone with another seed (the
      paper's starred twin); "other backbone": the mean over those crafted on a model of the same method with
      another backbone (the other VGG); both only for the victims that have both;
    - "ensemble": the ensemble of the victim numbers ``ensemble`` (from 1, as in :func:`craft_perturbations`);
      "single": the mean over its members' perturbations alone (the paper: r1 + ... + r4 against r1 ... r4).

    ``identities``: {victim label: (method, backbone, seed)} of every victim of the table, in its order (r1, r2,
    ...). Returns {(victim, kind): (N,) float64}, victims in the table's order."""
    names = list(identities)
    sources = {name: f"r{number}: {name}" for number, name in enumerate(names, 1)}
    if missing := [row for row in sources.values() if row not in scores]:
        raise KeyError(f"the scores hold no row {missing}: pass the victims' identities in the order of the "
                       f"victims the table was crafted on (its rows: {list(scores)})")
    members = list(ensemble)
    if not members or min(members) < 1 or max(members) > len(names):
        raise ValueError(f"the ensemble is a list of victim numbers from 1 to {len(names)}; got {members}")
    combined = ensemble_label(members)
    if combined not in scores:
        raise KeyError(f"the scores hold no ensemble {combined!r}: craft it (ensembles=[{tuple(members)}])")

    def mean(rows: list[str], target: str) -> torch.Tensor:
        return torch.stack([scores[row][target] for row in rows]).mean(0)

    kinds = {}
    for name, (method, backbone, seed) in identities.items():
        kinds[name, "own"] = scores[sources[name]][name]
        if len(names) > 1:
            kinds[name, "transferred"] = mean([sources[other] for other in names if other != name], name)
        twins = [sources[other] for other, (m, b, s) in identities.items()
                 if (m, b) == (method, backbone) and s != seed]
        others = [sources[other] for other, (m, b, _) in identities.items() if m == method and b != backbone]
        if twins and others:
            kinds[name, "second seed"], kinds[name, "other backbone"] = mean(twins, name), mean(others, name)
        kinds[name, "ensemble"] = scores[combined][name]
        kinds[name, "single"] = mean([sources[names[number - 1]] for number in members], name)
    return kinds
