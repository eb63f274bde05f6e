"""One robustness number for a deep hashing model: a fixed ensemble of attacks at one ``Budget``, the per-query
worst case (``worst_case``), and the sanity checks of ``advhash.robustness_checks`` (``evaluate_robustness``).

In the AutoAttack / torchattacks ``MultiAttack`` way: L-inf perturbations of radius ``eps`` on [0, 1] queries, a
white-box attacker who knows the evaluated model and its codes; every member is built on the *evaluated* model
(``Victim.build``). Untargeted members (``UNTARGETED``: Hamming PGD, HAG, SDHA, center-code, mainstay-code) each
run ``restarts`` times where they have a random start, and per query the lowest AP@k over every run counts:
**robust mAP@k** is the mean of that worst case. Targeted members (``TARGETED``: P2P, DHTA) score the highest
t-AP@k per query (robust t-MAP). Definitions and design: ``docs/methods.md`` (Robust mAP).

    >>> budget = Budget(eps=8 / 255, steps=100, restarts=2, topk=5000)
    >>> report = evaluate_robustness(model, data, budget)
    >>> report.robust_map, report.table, report.flags
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import pandas as pd
import torch

from .attacks import build_attack, perturb
from .evaluation import QuerySet, query_set
from .robustness_checks import (Flag, black_box_check, convergence_check, eps_one_check, gradient_check,
                                query_ap)
from .utils import check_choice, check_images, progress
from .victim import Victim

__all__ = ["UNTARGETED", "TARGETED", "CHECKS", "Budget", "WorstCase", "RobustnessReport", "member_settings",
           "worst_case", "evaluate_robustness", "leaderboard", "describe"]

UNTARGETED = ("pgd", "hag", "sdha", "center", "saat")
TARGETED = ("p2p", "dhta")
RANDOM_START = {"pgd", "hag", "center", "saat", "p2p", "dhta"}   # the members whose restarts differ
CHECKS = ("black_box", "convergence", "eps_one", "gradients")


@dataclass(frozen=True)
class Budget:
    """The threat model and the attacker's effort, the same for every member and check.

    Attributes:
        eps: L-inf radius in [0, 1] pixel units (e.g. 8/255).
        alpha: step size of every member (Default: eps / 4); SDHA takes it as its Adam learning rate.
        steps: iterations of every member (Default: 100).
        restarts: runs of each member with a random start, seeds ``seed`` .. ``seed + restarts - 1`` (Default: 1).
        topk: k of mAP@k (Default: None, the whole database).
        seed: seed of the first run, of the random search and of the query draw (Default: 0).
        black_box_queries: query budget of the gradient-free check (Default: 1000; 0 skips it).
    """

    eps: float
    alpha: float | None = None
    steps: int = 100
    restarts: int = 1
    topk: int | None = None
    seed: int = 0
    black_box_queries: int = 1000

    def __post_init__(self):
        if self.restarts < 1 or self.steps < 1:
            raise ValueError(f"restarts and steps must be at least 1; got {self.restarts}, {self.steps}")
        if self.alpha is None:
            object.__setattr__(self, "alpha", self.eps / 4)

    @property
    def seeds(self) -> list[int]:
        """The seeds of the restarts."""
        return [self.seed + r for r in range(self.restarts)]


@dataclass
class RobustnessReport:
    """What :func:`evaluate_robustness` measured.

    Attributes:
        table: one row per member and one per worst case: ``part`` ("untargeted" / "targeted"), ``attack``,
            ``score`` (mAP@k for the untargeted part, t-MAP@k for the targeted one), ``runs`` (restarts run).
        clean_map: mAP@k of the unattacked queries; robust_map: the untargeted worst case; robust_tmap: the
            targeted worst case (None without targets).
        flags: the sanity checks (``Flag``); budget: eps, alpha, steps, restarts, black-box queries, k, queries.
        per_query: one row per query and member (AP, or t-AP), with the worst cases and their adversarial codes
            scored again (``<part>:worst case rescored``), when asked for.
        cost: forward and backward passes and seconds of the ensemble and of the checks.
    """

    table: pd.DataFrame
    clean_map: float
    robust_map: float
    robust_tmap: float | None
    flags: list[Flag]
    budget: dict[str, Any]
    per_query: pd.DataFrame | None = None
    cost: dict[str, float] = field(default_factory=dict)

    @property
    def suspicious(self) -> bool:
        """Whether any flag fired."""
        return any(flag.fired for flag in self.flags)

    def member_maps(self) -> dict[str, float]:
        """mAP@k under each untargeted member."""
        rows = self.table[(self.table.part == "untargeted") & (self.table.attack != "worst case")]
        return dict(zip(rows.attack, rows.score))

    def budget_text(self) -> str:
        """The budget in words: "eps_255 8.0, alpha_255 2.0, steps 100, ..."."""
        return ", ".join(f"{key} {value}" for key, value in self.budget.items())

    def summary(self) -> str:
        """Robust mAP with its budget, and the flags."""
        budget = self.budget_text()
        tmap = "" if self.robust_tmap is None else f", robust t-MAP {self.robust_tmap:.3f}"
        return (f"clean mAP {self.clean_map:.3f}, robust mAP {self.robust_map:.3f}{tmap} ({budget}); "
                + "; ".join(map(str, self.flags)))


def member_settings(name: str, *, eps: float, alpha: float, steps: int, seed: int, num_anchors: int = 9
                    ) -> dict[str, Any]:
    """The fixed settings of ensemble member ``name`` at the common budget: each attack's own objective and step
    rule (HAG, SAAT, P2P and DHTA with HAG's growing scale; SDHA its Adam steps of size ``alpha``), a random start for
    the members that have one, and ``seed``."""
    check_choice("an ensemble member", name, UNTARGETED + TARGETED)
    common = dict(eps=eps, steps=steps, seed=seed)
    if name == "sdha":
        return dict(common, lr=alpha)
    settings = dict(common, alpha=alpha, random_start=True)
    if name in ("center", "p2p", "dhta"):
        settings["scale_schedule"] = "grow"
    if name == "dhta":
        settings["num_anchors"] = num_anchors
    return settings


class _Counter:
    """Counts forward passes (images through ``hash_logits``) of a model, and backward passes through them."""

    def __init__(self, model):
        self.model, self.forward, self.backward = model, 0, 0
        self._original = model.hash_logits
        self._shadowed = model.__dict__.get("hash_logits")      # an outer counter's wrapper, kept counting

        def counted(images, *args, **kwargs):
            self.forward += len(images)
            out = self._original(images, *args, **kwargs)
            if out.requires_grad:
                out.register_hook(self._count_backward(len(images)))
            return out
        model.hash_logits = counted

    def _count_backward(self, n):
        def hook(grad):
            self.backward += n
            return grad
        return hook

    def cost(self, began: float, since: dict[str, float] | None = None) -> dict[str, float]:
        """Passes counted (minus those of ``since``, an earlier cost) and seconds since ``began``."""
        since = since or dict(forward=0, backward=0)
        return dict(forward=self.forward - since["forward"], backward=self.backward - since["backward"],
                    seconds=time.perf_counter() - began)

    def restore(self):
        if self._shadowed is not None:
            self.model.hash_logits = self._shadowed
        else:
            del self.model.hash_logits           # back to the class's method


class WorstCase(NamedTuple):
    """The per-query scores (N,) of each member (its attacker's best run), the runs of each, their worst case, the
    adversarial codes (N, K) that reach it (each query's code from the member and run that scored worst), and those
    codes scored again (``rescored``, (N,)): what the invariant "the worst case is at most every member, query by
    query" is checked on, so that it compares a measurement with the members, not the members' minimum with itself."""

    scores: dict[str, torch.Tensor]
    runs: dict[str, int]
    worst: torch.Tensor
    codes: torch.Tensor
    rescored: torch.Tensor | None = None


def _member_scores(name: str, victim: Victim, queries: QuerySet, budget: Budget, *, targeted: bool,
                   num_anchors: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-query AP@k (t-AP@k when ``targeted``) of member ``name``, the attacker's best over its runs, the
    adversarial codes (N, K) of that best run per query (the first run on a tie), and the number of runs."""
    labels = queries.target_labels if targeted else queries.labels
    seeds = budget.seeds if name in RANDOM_START else budget.seeds[:1]
    best = best_codes = None
    for seed in seeds:
        attack = build_attack(name, victim, **member_settings(name, eps=budget.eps, alpha=budget.alpha,
                                                              steps=budget.steps, seed=seed, num_anchors=num_anchors))
        if attack.target_mode != "never":
            attack.set_targets(queries.target_labels if targeted else None)
        codes = victim.encode(perturb(attack, queries.images, queries.labels, batch_size=batch_size))
        scores = query_ap(victim, codes, labels, topk=budget.topk)
        if best is None:
            best, best_codes = scores, codes
        else:
            better = scores > best if targeted else scores < best
            best, best_codes = torch.where(better, scores, best), torch.where(better[:, None], codes, best_codes)
    return best, best_codes, len(seeds)


def _check_worst_case(result: WorstCase, rescored: torch.Tensor, *, targeted: bool) -> None:
    """The ensemble's invariant, on the worst case's own adversarial codes scored again (``rescored``, (N,)): per
    query they score what the worst case says, and are at least as strong as every member. AssertionError naming
    the query (and the member) otherwise; a NaN never passes."""
    same = rescored == result.worst
    if not same.all():
        query = int((~same).nonzero()[0])
        raise AssertionError(f"the worst case's adversarial code of query {query} scores {float(rescored[query])} "
                             f"when scored again, not the {float(result.worst[query])} it was chosen for")
    for name, scores in result.scores.items():
        holds = rescored >= scores if targeted else rescored <= scores
        if not holds.all():
            query = int((~holds).nonzero()[0])
            raise AssertionError(f"the ensemble's worst case is weaker than member {name!r} on query {query}: "
                                 f"{float(rescored[query])} vs {float(scores[query])}")


def worst_case(victim: Victim, queries: QuerySet, budget: Budget, members: Sequence[str], *, targeted: bool = False,
               num_anchors: int = 9, batch_size: int = 256) -> WorstCase:
    """Run every member at ``budget`` on ``queries`` and take, per query, the attacker's best: the lowest AP@k
    (untargeted: relevance to the queries' labels) or the highest t-AP@k (``targeted``: to their target labels),
    over every member and run (the first member on a tie). Each query's worst adversarial code is then scored
    again, and must score what was chosen and be at least as strong as every member (:func:`_check_worst_case`).
    ``num_anchors``: DHTA's; ``batch_size``: the attacks'."""
    if not members:
        raise ValueError("worst_case needs at least one member")
    scores, codes, runs = {}, {}, {}
    for name in progress(members, desc=f"robustness {'targeted' if targeted else 'untargeted'}"):
        scores[name], codes[name], runs[name] = _member_scores(name, victim, queries, budget, targeted=targeted,
                                                               num_anchors=num_anchors, batch_size=batch_size)
    stacked = torch.stack(list(scores.values()))                                          # (members, N)
    choice = stacked.argmax(0) if targeted else stacked.argmin(0)                         # first member on a tie
    rows = torch.arange(stacked.shape[1])
    worst = stacked[choice, rows]
    chosen = torch.stack(list(codes.values()))[choice, rows]
    labels = queries.target_labels if targeted else queries.labels
    result = WorstCase(scores, runs, worst, chosen, query_ap(victim, chosen, labels, topk=budget.topk))
    _check_worst_case(result, result.rescored, targeted=targeted)
    return result


def _run_checks(victim: Victim, queries: QuerySet, clean_codes: torch.Tensor, budget: Budget,
                untargeted: WorstCase | None, checks: Sequence[str], attacks: Sequence[str], **options) -> list[Flag]:
    """The flags of ``checks``, in a fixed order (``options``: num_anchors and batch_size of the ensemble)."""
    flags = []
    if untargeted is not None and "black_box" in checks and budget.black_box_queries > 0:
        flags.append(black_box_check(victim, queries, clean_codes, untargeted.worst, eps=budget.eps,
                                     search_queries=budget.black_box_queries, seed=budget.seed, topk=budget.topk))
    if untargeted is not None and "convergence" in checks:
        doubled = worst_case(victim, queries, dataclasses.replace(budget, steps=2 * budget.steps), attacks,
                             **options).worst
        flags.append(convergence_check(untargeted.worst, doubled, steps=budget.steps))
    if "eps_one" in checks:
        flags.append(eps_one_check(victim, queries, steps=budget.steps, seed=budget.seed, topk=budget.topk,
                                   batch_size=options["batch_size"]))
    if "gradients" in checks:
        flags.append(gradient_check(victim, queries, clean_codes))
    return flags


def _tables(parts: dict[str, WorstCase], flags: list[Flag], clean_ap: torch.Tensor, per_query: bool
            ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The report's table (one row per member and worst case) and, with ``per_query``, its per-query frame."""
    rows = []
    for part, result in parts.items():
        rows += [dict(part=part, attack=name, score=float(values.mean()), runs=result.runs[name])
                 for name, values in result.scores.items()]
        rows.append(dict(part=part, attack="worst case", score=float(result.worst.mean()), runs=0))
    table = pd.DataFrame(rows, columns=["part", "attack", "score", "runs"])
    if not per_query:
        return table, None
    columns = {f"{part}:{name}": values.numpy() for part, result in parts.items()
               for name, values in result.scores.items()}
    columns.update({f"check:{name}": values.numpy() for flag in flags for name, values in flag.scores.items()})
    columns.update({f"{part}:worst case": result.worst.numpy() for part, result in parts.items()})
    columns.update({f"{part}:worst case rescored": result.rescored.numpy() for part, result in parts.items()
                    if result.rescored is not None})
    return table, pd.DataFrame({"query": range(len(clean_ap)), "clean": clean_ap.numpy(), **columns})


def evaluate_robustness(model, data, budget: Budget, *, queries: QuerySet | None = None, num_queries: int = 100,
                        attacks: Sequence[str] = UNTARGETED, targeted_attacks: Sequence[str] = TARGETED,
                        num_anchors: int = 9, checks: Sequence[str] = CHECKS, per_query: bool = False,
                        batch_size: int = 256, victim: Victim | None = None) -> RobustnessReport:
    """Robust mAP@k of ``model`` on ``data`` under the ensemble (module docstring) at ``budget``, with its flags.

    Args:
        model: the hashing model evaluated (eval mode); ``victim``: its ``Victim`` when already built (its codes
            must be the model's own), else built here from ``data``.
        budget: a :class:`Budget` (eps, alpha, steps, restarts, topk, seed, black-box queries).
        queries: a ``QuerySet`` (with target labels for the targeted part), else the first ``num_queries`` of
            ``data.query`` with targets of ``num_anchors`` items.
        attacks, targeted_attacks: the members (Default: ``UNTARGETED``, ``TARGETED``; () skips a part);
            num_anchors: DHTA's.
        checks: which flags to compute (of ``CHECKS``; ``advhash.robustness_checks``); per_query: keep the
            per-query table; batch_size: of the attacks.

    Returns: a :class:`RobustnessReport`. Deterministic for a seed on one machine and thread count.
    """
    for name in checks:
        check_choice("each check", name, CHECKS)
    model.eval()
    victim = victim if victim is not None else Victim.build(model, data)
    if victim.model is not model:
        raise ValueError("the victim holds another model: the evaluation re-attacks the model it scores")
    if queries is None:
        queries = query_set(data, num_queries, target_min_items=num_anchors if targeted_attacks else None,
                            seed=budget.seed)
    check_images(queries.images, what="the query images")
    victim.require("db", "evaluate_robustness")
    clean_codes = victim.encode(queries.images)
    clean_ap = query_ap(victim, clean_codes, queries.labels, topk=budget.topk)
    options = dict(num_anchors=num_anchors, batch_size=batch_size)
    members = {"untargeted": attacks}
    if targeted_attacks and queries.target_labels is not None:
        members["targeted"] = targeted_attacks
    counter = _Counter(model)
    began = time.perf_counter()
    try:
        parts = {part: worst_case(victim, queries, budget, names, targeted=part == "targeted", **options)
                 for part, names in members.items() if names}
        ensemble_cost, began = counter.cost(began), time.perf_counter()
        flags = _run_checks(victim, queries, clean_codes, budget, parts.get("untargeted"), checks, attacks, **options)
        check_cost = counter.cost(began, since=ensemble_cost)
    finally:
        counter.restore()
    table, frame = _tables(parts, flags, clean_ap, per_query)
    summary = dict(eps_255=round(budget.eps * 255, 3), alpha_255=round(budget.alpha * 255, 3), steps=budget.steps,
                   restarts=budget.restarts, black_box_queries=budget.black_box_queries if "black_box" in checks else 0,
                   k=budget.topk, queries=len(clean_ap))
    untargeted, targeted = parts.get("untargeted"), parts.get("targeted")
    return RobustnessReport(table=table, clean_map=float(clean_ap.mean()),
                            robust_map=float(untargeted.worst.mean()) if untargeted is not None else float("nan"),
                            robust_tmap=None if targeted is None else float(targeted.worst.mean()), flags=flags,
                            budget=summary, per_query=frame,
                            cost={**{f"ensemble_{key}": value for key, value in ensemble_cost.items()},
                                  **{f"checks_{key}": value for key, value in check_cost.items()}})


def describe(reports: dict) -> str:
    """The leaderboard's evaluation in words (``reports`` as :func:`leaderboard` returns them): the budget once,
    the ensemble's cost, then each model's flags with their evidence ("not checked" where no check ran)."""
    if not reports:
        return "no model evaluated"
    checked = [report for report in reports.values() if report.flags] or list(reports.values())
    lines = ["budget: " + checked[0].budget_text()]
    ensemble, checks = (sum(report.cost.get(f"{part}_seconds", 0.0) for report in reports.values())
                        for part in ("ensemble", "checks"))
    lines.append(f"cost: ensemble {ensemble:.0f} s, checks {checks:.0f} s over {len(reports)} models")
    for (name, bits), report in reports.items():
        lines.append(f"{name:>10} {bits:>3} bits: " + ("; ".join(map(str, report.flags)) or "not checked"))
    return "\n".join(lines)


def leaderboard(victims, data, queries: QuerySet, budget: Budget, *, checks_bits: Sequence[int] | None = None,
                **options) -> tuple[pd.DataFrame, dict]:
    """:func:`evaluate_robustness` of every model of ``victims`` ({(model name, bits): Victim}, each with its own
    codes) on the same queries at the same ``budget``; ``options``: evaluate_robustness's others (attacks,
    num_anchors, checks, batch_size, ...). Returns (frame, reports): one row per model and code length with clean
    mAP, robust mAP (the ensemble's worst case), each member's mAP, the strongest single member (``best single``),
    how far that number overstates robustness (``overstated`` = best single - robust), robust t-MAP and the flags
    that fired ("not checked" where none ran); reports {(model, bits): RobustnessReport}. ``checks_bits``: the
    code lengths whose models also get the checks (None: all); the checks cost about as much as the ensemble
    again, and a sound evaluation at one code length vouches for the protocol."""
    rows, reports = [], {}
    for (name, bits), victim in victims.items():
        run_options = dict(options)
        if checks_bits is not None and bits not in checks_bits:
            run_options["checks"] = ()
        report = evaluate_robustness(victim.model, data, budget, queries=queries, victim=victim, **run_options)
        members = report.member_maps()
        strongest = min(members.values()) if members else float("nan")
        rows.append(dict(model=name, bits=bits, clean=report.clean_map, robust=report.robust_map, **members,
                         **{"best single": strongest, "overstated": strongest - report.robust_map,
                            "robust t-MAP": report.robust_tmap,
                            "flags": (", ".join(flag.name for flag in report.flags if flag.fired) or "none")
                            if report.flags else "not checked"}))
        reports[name, bits] = report
    return pd.DataFrame(rows), reports
