"""The attack protocol shared by the notebooks: query sets, retrieval scores of clean and adversarial queries,
attacks by name, their budgets, sweeps and iterates.

The unit of evaluation is a victim (``advhash.Victim``: a model with its codes of the training set and
the database, encoded once). Every score ranks the victim's own database codes, so an attack is always
scored against the model it attacked (adaptive). Conventions are those of ``advhash.metrics``:
relevance = share a label, Hamming ranking with ties broken by database order, mAP@k.

    victim, queries = Victim.build(model, data), query_set(data, num_attacked=200, target_min_items=9, seed=0)
    result = evaluate_attack(build_attack("saat", victim, eps=8/255), victim, queries, topk=5000)   # result.score

Elsewhere: code statistics (``advhash.codes.statistics``), defense verdicts (``advhash.defenses.verdict``),
results files (``advhash.results``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import pandas as pd
import torch

from .attacks import ATTACKS, HashingAttack, build_attack, perturb, perturbation_stats
from .codes import sample_target_labels
from .metrics import (average_precision_per_query, mean_average_precision, precision_at_n, precision_recall_curve,
                      precision_within_radius, random_ranking_map, targeted_map)
from .victim import Victim

__all__ = ["QuerySet", "query_set", "retrieval_map", "retrieval_ap", "retrieval_scores", "retrieval_curves",
           "curve_rows",
           "reference_maps", "AttackResult", "evaluate_attack", "attack_scores", "snapshot_scores", "attack_sweep",
           "perturbation_sizes", "check_budget", "robustness_probe", "attack_budgets", "build_attacks",
           "build_attack", "ATTACKS"]


@dataclass
class QuerySet:
    """The attacked queries: clean images (n, C, H, W) in [0, 1], labels (n, L) and, for targeted
    attacks, one target label row each (n, L) sharing no class with the query."""

    images: torch.Tensor
    labels: torch.Tensor
    target_labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.images)

    def head(self, count: int) -> "QuerySet":
        """The first ``count`` queries. Asking for more than the set holds is an error, not a silent cap (the
        caller's text states ``count``): lower the parameter that asks, or attack more queries (``num_attacked``)."""
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= len(self):
            raise ValueError(f"asked for the first {count!r} queries of a query set of {len(self)}: lower the "
                             f"parameter that asks (e.g. curve_queries, num_examples) to at most {len(self)}, or "
                             f"raise num_attacked in the notebook's section of params.yaml")
        targets = None if self.target_labels is None else self.target_labels[:count]
        return QuerySet(self.images[:count], self.labels[:count], targets)


def attacked_indices(data, num_attacked: int) -> torch.Tensor:
    """The indices of the first ``num_attacked`` items of ``data.query``: the attacked queries of
    :func:`query_set` and ``advhash.crossmodal.evaluation.paired_query_set``. Asking for more queries than the
    split holds is an error, not a silent cap: every report states ``num_attacked`` as the number attacked."""
    if isinstance(num_attacked, bool) or not isinstance(num_attacked, int) or num_attacked < 1:
        raise ValueError(f"num_attacked must be a positive integer; got {num_attacked!r}")
    available = len(data.query)
    if num_attacked > available:
        raise ValueError(
            f"num_attacked = {num_attacked} asks for more queries than the query split of "
            f"{getattr(data, 'name', 'the dataset')} holds ({available}); lower num_attacked to at most {available} "
            f"in the notebook's section of params.yaml, or give the query split more items (num_query of the "
            f"split: notebook 01's deep_hashing section for the notebooks that read its victims.json, cmla's for "
            f"notebook 03; for list files, more lines in test_img.txt)")
    return torch.arange(num_attacked)


def query_set(data, num_attacked: int, *, target_min_items: int | None = None, target_rule: str = "published",
              seed: int = 0) -> QuerySet:
    """The first ``num_attacked`` items of ``data.query`` (more than the split holds is a ValueError naming both
    counts and the fix) and, with ``target_min_items`` (n_t of DHTA), one target label each from the
    database's label rows that are disjoint from the query and pass ``target_rule``
    (``advhash.codes.sample_target_labels``, seeded by ``seed``: "published", the published code's, carried by
    more than n_t items, all-zero rows allowed; "nonzero", at least n_t, none all-zero)."""
    attacked = attacked_indices(data, num_attacked)
    images, labels = data.query.batch(attacked)[:2]
    targets = None
    if target_min_items is not None:
        targets = sample_target_labels(labels, data.database.labels, min_items=target_min_items,
                                       rule=target_rule, generator=torch.Generator().manual_seed(seed))
    return QuerySet(images, labels, targets)


def retrieval_map(victim: Victim, codes: torch.Tensor, labels: torch.Tensor, *, topk: int | None,
                  targeted: bool = False) -> float:
    """mAP@k of query ``codes`` (n, K) against the victim's database codes: relevance to ``labels``
    (the queries' own), or t-MAP@k with ``targeted`` (``labels`` are then the target labels)."""
    db_codes, db_labels = victim.require("db", "retrieval_map")
    if targeted:
        return targeted_map(codes, db_codes, labels, db_labels, topk=topk)
    return mean_average_precision(codes, db_codes, labels, db_labels, topk=topk)


def retrieval_ap(victim: Victim, codes: torch.Tensor, labels: torch.Tensor, *, topk: int | None) -> torch.Tensor:
    """AP@k of each query code (n, K) against the victim's database codes, relevance to ``labels`` (the queries'
    own, or their target labels: t-AP@k): (n,) float64, whose mean is :func:`retrieval_map`. The per-query scores
    a finding's interval resamples (``advhash.evidence``)."""
    db_codes, db_labels = victim.require("db", "retrieval_ap")
    return average_precision_per_query(codes, db_codes, labels, db_labels, topk=topk)


def retrieval_scores(query_codes: torch.Tensor, db_codes: torch.Tensor, query_labels: torch.Tensor,
                     db_labels: torch.Tensor, *, topk: int | None) -> dict[str, float]:
    """The clean-retrieval numbers of a hashing model: mAP@k with the stable tie rule and tie-aware, mAP over
    the whole ranking, and the precision of the items within Hamming radius 2 (``advhash.metrics``)."""
    args = (query_codes, db_codes, query_labels, db_labels)
    return dict(map_at_k=mean_average_precision(*args, topk=topk),
                map_at_k_tie_aware=mean_average_precision(*args, topk=topk, ties="expected"),
                map_full=mean_average_precision(*args), precision_radius_2=precision_within_radius(*args, radius=2))


def retrieval_curves(query_codes: torch.Tensor, db_codes: torch.Tensor, query_labels: torch.Tensor,
                     db_labels: torch.Tensor, *, ns: Iterable[int], **columns) -> tuple[list[dict], list[dict]]:
    """The precision-recall curve by Hamming radius (rows: radius, precision, recall) and the precision@N
    curve at ``ns`` (rows: n, precision), each row carrying the extra ``columns`` (e.g. method=..., bits=...)."""
    ns = list(ns)
    pr = curve_rows(precision_recall_curve(query_codes, db_codes, query_labels, db_labels), **columns)
    pn = precision_at_n(query_codes, db_codes, query_labels, db_labels, ns=ns)
    return pr, [dict(columns, n=n, precision=float(p)) for n, p in zip(ns, pn)]


def curve_rows(curve, **columns) -> list[dict]:
    """The points of a ``advhash.metrics.precision_recall_curve`` as table rows (radius, precision,
    recall), each with the extra ``columns`` (e.g. method=..., bits=...)."""
    return [dict(columns, radius=int(r), precision=float(p), recall=float(c))
            for r, p, c in zip(curve.radius, curve.precision, curve.recall)]


@dataclass
class AttackResult:
    """One attack on one victim: the adversarial images and their codes, the score (mAP, or t-MAP when
    targeted) and each query's AP behind it (``query_scores``, (N,) float64, whose mean is ``score``), the
    perturbation's size (``advhash.attacks.perturbation_stats``) and the attack's per-iteration history and
    snapshots: {step: the codes (N, K) of the step-t iterates}."""

    adversarial: torch.Tensor
    codes: torch.Tensor
    score: float
    sizes: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    query_scores: torch.Tensor | None = None


def evaluate_attack(attack: HashingAttack, victim: Victim, queries: QuerySet, *, topk: int | None,
                    targeted: bool = False, batch_size: int = 128, snapshot_steps: Iterable[int] = ()) -> AttackResult:
    """Run ``attack`` (built on ``victim``) on the queries in batches and score the adversarial codes
    against the victim's database: mAP@k (lower = stronger), or with ``targeted`` t-MAP@k toward
    ``queries.target_labels`` (higher = stronger), set on the attack with ``set_targets``."""
    if attack.victim is not victim and not (attack.model is victim.model and attack.victim.db_codes is None
                                            and attack.victim.train_codes is None):
        raise ValueError("the attack was built on another victim than the evaluated one: an evaluation re-attacks "
                         "the model it scores, with that model's codes (build_attack(name, victim))")
    if targeted and queries.target_labels is None:
        raise ValueError("a targeted evaluation needs target labels: query_set(..., target_min_items=n_t)")
    if not targeted and attack.target_mode == "required":
        raise ValueError(f"{type(attack).__name__} is a targeted attack: evaluate it with targeted=True")
    if attack.target_mode != "never":
        attack.set_targets(queries.target_labels if targeted else None)
    adversarial = perturb(attack, queries.images, queries.labels, batch_size=batch_size, snapshot_steps=snapshot_steps,
                          snapshot_codes=True)
    codes = victim.encode(adversarial)
    labels = queries.target_labels if targeted else queries.labels
    scores = retrieval_ap(victim, codes, labels, topk=topk)     # (N,): mAP is their mean, as retrieval_map's
    return AttackResult(adversarial, codes, scores.mean().item(), perturbation_stats(queries.images, adversarial),
                        attack.history, dict(attack.snapshots), scores)


def build_attacks(victim: Victim, settings: Mapping[str, Mapping[str, Any]], names: Iterable[str] | None = None
                  ) -> dict[str, HashingAttack]:
    """The attacks ``names`` (keys of ``settings``: display label -> ``dict(attack=<ATTACKS name>, **kwargs)``),
    each built fresh on ``victim``. A label may differ from the registry name (e.g. "HAG*" is
    ``dict(attack="hag", scale_schedule="fixed")``)."""
    attacks = {}
    for label in (settings if names is None else names):
        if label not in settings:
            raise KeyError(f"no attack settings for {label!r}; known: {sorted(settings)}")
        kwargs = dict(settings[label])
        attacks[label] = build_attack(kwargs.pop("attack", label), victim, **kwargs)
    return attacks


def attack_budgets(attacks: Mapping[str, HashingAttack]) -> pd.DataFrame:
    """The budget of each attack, stated with its results: eps and step in pixel levels (x255), iterations,
    random start. Shape: one row per attack label."""
    return pd.DataFrame([dict(attack=label, steps=attack.steps, step_255=attack.alpha * 255,
                              random_start=attack.random_start, eps_255=attack.eps * 255)
                         for label, attack in attacks.items()]).set_index("attack")


def attack_scores(victims: Mapping[Any, Victim], queries: QuerySet | Mapping[Any, QuerySet],
                  settings: Mapping[str, Mapping[str, Any]], *, topk: int | None, targeted: Iterable[str] = (),
                  batch_size: int = 128, snapshot_steps: Iterable[int] = (), runs: dict | None = None,
                  columns: tuple[str, ...] = ("model", "bits")) -> tuple[pd.DataFrame, dict[tuple, AttackResult]]:
    """Every attack of ``settings`` (see :func:`build_attacks`) on every victim, each built on the victim it
    attacks (adaptive) and run on the queries (one :class:`QuerySet` for all, or ``queries[key]`` per victim)
    by :func:`evaluate_attack`; each attack records its iterates at the ``snapshot_steps`` it reaches.

    Returns (table, runs). table: one row per victim key (a tuple, named by ``columns``) with the two reference
    points, the clean queries' mAP@k ("clean") and that of a random ranking ("random", :func:`reference_maps`),
    with ``targeted`` attacks the clean queries' t-MAP@k toward the targets ("t-MAP clean"), one column per attack
    label (the adversarial queries' mAP@k, or t-MAP@k toward the targets for the labels
    in ``targeted``) and the size of each perturbation, "<label> <size>" for the sizes of
    ``advhash.attacks.perturbation_stats`` (linf_255, l2, psnr). runs: {(*key, label): AttackResult}; pass a
    dict of earlier runs as ``runs`` and an attack already run on a victim is reused, not run again."""
    snapshot_steps, targeted = sorted(set(snapshot_steps)), set(targeted)
    runs = {} if runs is None else runs
    rows = []
    for key, victim in victims.items():
        attacked = queries[key] if isinstance(queries, Mapping) else queries
        for label, attack in build_attacks(victim, settings).items():
            if (*key, label) not in runs:
                runs[(*key, label)] = evaluate_attack(
                    attack, victim, attacked, topk=topk, targeted=label in targeted, batch_size=batch_size,
                    snapshot_steps=[step for step in snapshot_steps if step <= attack.steps])
        clean_targeted = {"t-MAP clean": retrieval_map(victim, victim.encode(attacked.images), attacked.target_labels,
                                                       topk=topk, targeted=True)} if targeted else {}
        rows.append({**dict(zip(columns, key)), **reference_maps(victim, attacked, topk=topk), **clean_targeted,
                     **{label: runs[(*key, label)].score for label in settings},
                     **{f"{label} {size}": value for label in settings
                        for size, value in runs[(*key, label)].sizes.items()}})
    return pd.DataFrame(rows), runs


def perturbation_sizes(runs: Mapping[tuple, AttackResult],
                       columns: tuple[str, ...] = ("model", "bits", "attack")) -> pd.DataFrame:
    """One row per attack run: its key (the ``runs`` of :func:`attack_scores`) named by ``columns``, and the size
    of its perturbation (``advhash.attacks.perturbation_stats``: linf_255, l2, psnr)."""
    return pd.DataFrame([{**dict(zip(columns, key)), **result.sizes} for key, result in runs.items()])


def check_budget(runs: Mapping[tuple, AttackResult | torch.Tensor], queries: QuerySet | Mapping[Any, QuerySet],
                 eps: float) -> float:
    """The L-inf threat model, checked on the images themselves: every adversarial image of ``runs`` (an
    :class:`AttackResult` or a tensor per key) lies within ``eps`` (+1e-6 for float rounding) of its clean query
    (``queries``, or ``queries[key[:-1]]`` per victim as in :func:`attack_scores`). Returns the largest L-inf
    distance in pixel levels (x255); raises AssertionError naming every run that left the ball."""
    largest, outside = 0.0, {}
    for key, run in runs.items():
        clean = queries[key[:-1]] if isinstance(queries, Mapping) else queries
        images = run.adversarial if isinstance(run, AttackResult) else run
        distance = float((images - clean.images).abs().max()) if len(images) else 0.0
        largest = max(largest, distance)
        if distance > eps + 1e-6:
            outside[key] = round(255 * distance, 4)
    assert not outside, f"attacks left the L-inf ball of {255 * eps:.3f}/255 (their L-inf, x255): {outside}"
    return 255 * largest


def robustness_probe(data, queries: QuerySet, attack: Mapping[str, Any], *, topk: int | None,
                     batch_size: int = 128) -> Callable[[Any], dict[str, float]]:
    """A per-epoch evaluation for training curves (the ``evaluate`` of ``advhash.fitting.fit_defended_victims``):
    for a model, its mAP@k on ``queries`` (a fixed subset, e.g. ``queries.head(50)``) clean ("clean_map") and
    under ``attack`` (``dict(attack=<ATTACKS name>, **kwargs)``, built on that model, re-encoded on ``data``:
    "adversarial_map"). Its ``config`` says what determines those numbers, so that a checkpoint's history of
    them is reused only for the same evaluation."""
    def probe(model) -> dict[str, float]:
        victim = Victim.build(model, data)
        built = build_attacks(victim, {"probe": attack})["probe"]
        return dict(clean_map=retrieval_map(victim, victim.encode(queries.images), queries.labels, topk=topk),
                    adversarial_map=evaluate_attack(built, victim, queries, topk=topk, batch_size=batch_size).score)
    # what determines its numbers: part of the name of a checkpoint whose history holds them (fit_defended_model)
    probe.config = dict(queries=len(queries), attack=dict(attack), topk=topk)
    return probe


def snapshot_scores(runs: Mapping[tuple, AttackResult], victims: Mapping[Any, Victim],
                    queries: Mapping[Any, QuerySet], label: str, *, topk: int | None,
                    columns: tuple[str, ...] = ("dataset", "bits"), per_query: bool = False) -> pd.DataFrame:
    """Attack strength vs iterations: mAP@k of the iterates the attack ``label`` recorded on each victim
    (``AttackResult.snapshots``, their codes, in the ``runs`` of :func:`attack_scores`), scored against that
    victim's database with its queries' labels. One row per (victim, iteration), iterations sorted: columns ``columns``,
    iteration, map. With ``per_query``, one row per (victim, iteration, query) instead, queries in their order:
    columns ``columns``, iteration, query, ap (that query's AP@k, :func:`retrieval_ap`; their mean is the map)."""
    rows = []
    for key, victim in victims.items():
        for step, codes in sorted(runs[(*key, label)].snapshots.items()):
            scores = retrieval_ap(victim, codes, queries[key].labels, topk=topk)      # (N,)
            labels = {**dict(zip(columns, key)), "iteration": step}
            rows += ([dict(labels, query=query, ap=score) for query, score in enumerate(scores.tolist())]
                     if per_query else [dict(labels, map=scores.mean().item())])
    return pd.DataFrame(rows, columns=[*columns, "iteration", *(("query", "ap") if per_query else ("map",))])


def attack_sweep(victim: Victim, queries: QuerySet, settings: Mapping[str, Mapping[str, Any]], *,
                 eps_255: float | Iterable[float], steps: int | Iterable[int], step_fraction: float = 1 / 8,
                 topk: int | None, batch_size: int = 128, earlier: pd.DataFrame | None = None) -> pd.DataFrame:
    """Attack strength as the budget or the iterations grow: every attack of ``settings`` (display label ->
    ``dict(attack=<ATTACKS name>, **kwargs)``, as in :func:`build_attacks`, without eps, alpha and steps) run at
    each point of the swept setting, the other one fixed: ``eps_255`` (L-inf budget in pixel levels, eps =
    eps_255 / 255) or ``steps`` (iterations); exactly one of them is a list. Each point is its own run (HAG's and
    SAAT's tanh-scale schedules depend on the total), scored by the mAP@k of the adversarial queries
    (:func:`evaluate_attack`); a point at 0 is the clean queries (no attack is run). An attack with a sign step
    (a class taking ``alpha``) steps ``alpha = step_fraction * eps``.
    Columns: attack, eps_255, steps, map, and the reference points clean and random (:func:`reference_maps`).
    ``earlier``: the rows of an earlier sweep of the same victim, queries, settings and ``step_fraction`` (the caller
    vouches for it); a point it holds (same attack label, eps_255 and steps) is copied, not run again: a sweep of the
    iterations at the budget of a sweep of the budgets shares one point with it, with the same result."""
    swept = [name for name, value in (("eps_255", eps_255), ("steps", steps)) if not isinstance(value, (int, float))]
    if len(swept) != 1:
        raise ValueError(f"attack_sweep sweeps exactly one of eps_255 and steps (a list), the other is a number; "
                         f"got eps_255={eps_255!r}, steps={steps!r}")
    references = reference_maps(victim, queries, topk=topk)
    done = {} if earlier is None else {(row.attack, float(row.eps_255), int(row.steps)): row.map
                                       for row in earlier.itertuples()}
    rows = []
    for label, attack in settings.items():
        kwargs = dict(attack)
        name = kwargs.pop("attack", label)
        for point in (eps_255 if swept == ["eps_255"] else steps):
            budget, iterations = (point, steps) if swept == ["eps_255"] else (eps_255, point)
            score = references["clean"] if point == 0 else done.get((label, float(budget), int(iterations)))
            if score is None:
                eps = budget / 255
                sign_step = dict(alpha=step_fraction * eps) if "alpha" in inspect.signature(ATTACKS[name]).parameters \
                    else {}
                built = build_attack(name, victim, **kwargs, eps=eps, steps=iterations, **sign_step)
                score = evaluate_attack(built, victim, queries, topk=topk, batch_size=batch_size).score
            rows.append(dict(attack=label, eps_255=budget, steps=iterations, map=score, **references))
    return pd.DataFrame(rows, columns=["attack", "eps_255", "steps", "map", "clean", "random"])


def reference_maps(victim: Victim, queries: QuerySet, *, topk: int | None) -> dict[str, float]:
    """The two reference points of an attack's mAP@k on ``victim``: that of the clean queries ("clean", no
    attack) and that of a uniformly random ranking of the database ("random", ``random_ranking_map``: what an
    attack that destroys the ranking reaches)."""
    db_labels = victim.require("db", "reference_maps")[1]
    return dict(clean=retrieval_map(victim, victim.encode(queries.images), queries.labels, topk=topk),
                random=random_ranking_map(queries.labels, db_labels, topk=topk))
