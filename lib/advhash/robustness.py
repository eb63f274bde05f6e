"""One robustness number for a deep hashing model: a fixed, adaptive ensemble of attacks, the per-query worst case,
a gradient-free check and sanity flags (``evaluate_robustness``).

Image classification has a standard for "how robust is this model" (a fixed, parameter-free ensemble of strong
attacks run per example, with checks for gradient masking); deep hashing papers each evaluate with the attacks they
choose. This module gathers advhash's hashing attacks into one worst-case number under a stated threat model:

- **Threat model.** L-inf perturbations of radius ``eps`` on [0, 1] query images; a white-box attacker who knows the
  evaluated model and its codes. Every attack is built on the *evaluated* model (``Victim.build``: its own codes of
  the training set and of the database, which retrieval ranks), so a defense is never scored against another
  model's codes or a stale database.
- **Untargeted part** (``UNTARGETED``): Hamming PGD, HAG, SDHA, the center-code attack (CgAT) and the mainstay-code
  attack (SAAT), each with its own default objective and step rule at the common budget (``eps``, ``alpha``,
  ``steps``); the attacks with a random start run ``restarts`` times (seeds ``seed``, ``seed + 1``, ...). For each
  query the lowest AP@k over every run counts: **robust mAP@k** is the mean of the per-query worst case.
- **Targeted part** (``TARGETED``): P2P and DHTA toward the same target labels (``advhash.codes.sample_target_labels``);
  the per-query highest t-AP@k counts (robust t-MAP, lower = more robust).
- **Gradient-free check** (``black_box_queries`` > 0): a Square-style random search (Andriushchenko et al. 2020) on
  the relaxed code alignment mean_k tanh(z_k(x')) b_k with the clean code b, forward passes only, a stated query
  budget. On a sound model it must not beat the white-box ensemble.
- **Flags** (``Flag``, each with its evidence): ``black_box_beats_white_box`` (the random search reaches a lower AP
  than the ensemble on more than ``flag_fraction`` of the queries: gradient masking suspected);
  ``not_converged`` (twice the steps still lowers robust mAP by more than ``convergence_delta``);
  ``eps_one_not_random`` (Hamming PGD at eps = 1 does not bring mAP down to the random ranking's, within
  ``random_tolerance``); ``masked_gradients`` (the input gradient of the code alignment is zero or not finite on
  some queries).

Written here because no library evaluates hashing retrieval under attack (AutoAttack and RobustBench score
classifiers; RobRank scores metric learning); the attacks are advhash's own (``advhash.attacks``).

    >>> report = evaluate_robustness(model, data, eps=8 / 255, steps=100, restarts=2, topk=5000)
    >>> report.robust_map, report.table, report.flags
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd
import torch

from .attacks import build_attack, perturb
from .evaluation import QuerySet, query_set
from .metrics import average_precision_per_query, random_ranking_map
from .utils import check_images, progress
from .victim import Victim

__all__ = ["UNTARGETED", "TARGETED", "Flag", "RobustnessReport", "evaluate_robustness", "leaderboard", "describe",
           "square_search", "member_settings"]

UNTARGETED = ("pgd", "hag", "sdha", "center", "saat")
TARGETED = ("p2p", "dhta")
RANDOM_START = {"pgd", "hag", "center", "saat", "p2p", "dhta"}   # the members whose restarts differ


@dataclass(frozen=True)
class Flag:
    """A sanity check of the evaluation: its name, whether it fired, and the numbers behind it."""

    name: str
    fired: bool
    evidence: str

    def __str__(self) -> str:
        return f"{'FIRED' if self.fired else 'ok'}: {self.name} ({self.evidence})"


@dataclass
class RobustnessReport:
    """What :func:`evaluate_robustness` measured.

    Attributes:
        table: one row per member and one per worst case: ``part`` ("untargeted" / "targeted"), ``attack``,
            ``score`` (mAP@k for the untargeted part, t-MAP@k for the targeted one), ``runs`` (restarts run).
        clean_map: mAP@k of the unattacked queries; robust_map: the untargeted worst case; robust_tmap: the
            targeted worst case (None without targets).
        flags: the sanity checks (``Flag``); budget: eps, alpha, steps, restarts, black-box queries, k, queries.
        per_query: one row per query and member (AP, or t-AP), with the worst cases, when asked for.
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
    if name not in {*UNTARGETED, *TARGETED}:
        raise ValueError(f"unknown ensemble member {name!r}; members: {UNTARGETED + TARGETED}")
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

    def restore(self):
        if self._shadowed is not None:
            self.model.hash_logits = self._shadowed
        else:
            del self.model.hash_logits           # back to the class's method


def _relaxed_alignment(model, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Per query mean_k tanh(z_k(x)) b_k: 1 when the relaxed code equals b, -1 when every bit is flipped."""
    return (torch.tanh(model.hash_logits(images)) * codes).mean(1)


@torch.no_grad()
def square_search(model, images: torch.Tensor, codes: torch.Tensor, *, eps: float, queries: int, seed: int = 0,
                  p_init: float = 0.3) -> torch.Tensor:
    """A gradient-free L-inf attack: Square-style random search (Andriushchenko et al., ECCV 2020, Algorithm 1 with
    its schedule of square sizes) minimizing the relaxed alignment with ``codes`` (the clean codes), one forward pass
    of the batch per query of the budget. Starts from vertical stripes of +-eps; each iteration sets one random
    square per image to +-eps per channel and keeps it where the objective drops. Images (N, C, H, W) in [0, 1] ->
    adversarial images in [0, 1] within eps."""
    generator = torch.Generator().manual_seed(seed)
    n, c, h, w = images.shape
    device = images.device

    def draw(*shape):
        return (torch.randint(0, 2, shape, generator=generator).float() * 2 - 1).to(device)

    delta = eps * draw(n, c, 1, w).expand(n, c, h, w).clone()
    best = (images + delta).clamp(0, 1)
    loss = _relaxed_alignment(model, best, codes)
    for step in range(1, queries):
        fraction = p_init / 2 ** sum(step > t for t in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
        side = max(1, min(h, w, int(round((fraction * h * w) ** 0.5))))
        top = torch.randint(0, h - side + 1, (n,), generator=generator).tolist()
        left = torch.randint(0, w - side + 1, (n,), generator=generator).tolist()
        values = eps * draw(n, c, 1, 1)
        trial = delta.clone()
        for i in range(n):
            trial[i, :, top[i]:top[i] + side, left[i]:left[i] + side] = values[i]
        candidate = (images + trial).clamp(0, 1)
        trial_loss = _relaxed_alignment(model, candidate, codes)
        better = trial_loss < loss
        delta[better], best[better], loss[better] = trial[better], candidate[better], trial_loss[better]
    return best


def _input_gradients(model, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Per query L2 norm of the input gradient of the relaxed alignment with the clean codes."""
    images = images.clone().requires_grad_(True)
    grad, = torch.autograd.grad(_relaxed_alignment(model, images, codes).sum(), images)
    return grad.flatten(1).norm(dim=1)


def evaluate_robustness(model, data, *, eps: float, alpha: float | None = None, steps: int = 100, restarts: int = 1,
                        topk: int | None = None, queries: QuerySet | None = None, num_queries: int = 100,
                        attacks: Sequence[str] = UNTARGETED, targeted_attacks: Sequence[str] = TARGETED,
                        num_anchors: int = 9, black_box_queries: int = 1000,
                        checks: Sequence[str] = ("black_box", "convergence", "eps_one", "gradients"),
                        flag_fraction: float = 0.05, convergence_delta: float = 0.01, random_tolerance: float = 0.05,
                        per_query: bool = False, seed: int = 0, batch_size: int = 256,
                        victim: Victim | None = None) -> RobustnessReport:
    """Robust mAP@k of ``model`` on ``data`` under the ensemble (module docstring), with its flags.

    Args:
        model: the hashing model evaluated (eval mode); ``victim``: its ``Victim`` when already built (its codes
            must be the model's own), else built here from ``data``.
        eps, alpha, steps: the common budget (``alpha`` Default: eps / 4); restarts: runs of each member with a
            random start (seeds ``seed`` .. ``seed + restarts - 1``).
        topk: k of mAP@k (None: the whole database); queries: a ``QuerySet`` (with target labels for the targeted
            part), else the first ``num_queries`` of ``data.query`` with targets of ``num_anchors`` items.
        attacks, targeted_attacks: the members (Default: ``UNTARGETED``, ``TARGETED``; () skips a part).
        black_box_queries: the random search's query budget (0 skips it); checks: which flags to compute.
        per_query: keep the per-query table; batch_size: of the attacks.

    Returns: a :class:`RobustnessReport`. Deterministic for a seed on one machine and thread count.
    """
    if restarts < 1 or steps < 1:
        raise ValueError(f"restarts and steps must be at least 1; got {restarts}, {steps}")
    unknown = sorted(set(checks) - {"black_box", "convergence", "eps_one", "gradients"})
    if unknown:
        raise ValueError(f"unknown checks {unknown}; choose from black_box, convergence, eps_one, gradients")
    alpha = eps / 4 if alpha is None else alpha
    model.eval()
    victim = victim if victim is not None else Victim.build(model, data)
    if victim.model is not model:
        raise ValueError("the victim holds another model: the evaluation re-attacks the model it scores")
    if queries is None:
        queries = query_set(data, num_queries, target_min_items=num_anchors if targeted_attacks else None, seed=seed)
    check_images(queries.images, what="the query images")
    db_codes, db_labels = victim.require("db", "evaluate_robustness")
    k = topk

    def ap(codes, labels):
        return average_precision_per_query(codes, db_codes, labels, db_labels, topk=k)

    clean_codes = victim.encode(queries.images)
    clean_ap = ap(clean_codes, queries.labels)
    counter = _Counter(model)
    began = time.perf_counter()
    try:
        def run_part(names, targeted, steps_, seeds):
            """Per-query scores of each member (best run for the attacker) and their worst case."""
            labels = queries.target_labels if targeted else queries.labels
            pick = torch.maximum if targeted else torch.minimum
            members, runs_of = {}, {}
            for name in progress(names, desc=f"robustness {'targeted' if targeted else 'untargeted'}"):
                runs = seeds if name in RANDOM_START else seeds[:1]
                for run_seed in runs:
                    attack = build_attack(name, victim, **member_settings(name, eps=eps, alpha=alpha, steps=steps_,
                                                                          seed=run_seed, num_anchors=num_anchors))
                    if attack.target_mode != "never":
                        attack.set_targets(queries.target_labels if targeted else None)
                    adversarial = perturb(attack, queries.images, queries.labels, batch_size=batch_size)
                    per_run = ap(victim.encode(adversarial), labels)
                    members[name] = per_run if name not in members else pick(members[name], per_run)
                runs_of[name] = len(runs)
            worst = None
            for values in members.values():
                worst = values if worst is None else pick(worst, values)
            return members, runs_of, worst

        columns, scores = {}, []
        seeds = [seed + r for r in range(restarts)]
        worst = targeted = None
        parts = [("untargeted", attacks)]
        if targeted_attacks and queries.target_labels is not None:
            parts.append(("targeted", targeted_attacks))
        for part, names in parts:
            if not names:
                continue
            members, runs_of, part_worst = run_part(names, part == "targeted", steps, seeds)
            for name, values in members.items():
                columns[part, name] = values
                scores.append(dict(part=part, attack=name, score=float(values.mean()), runs=runs_of[name]))
            scores.append(dict(part=part, attack="worst case", score=float(part_worst.mean()), runs=0))
            if part == "targeted":
                targeted = part_worst
            else:
                worst = part_worst
        ensemble_cost = dict(forward=counter.forward, backward=counter.backward,
                             seconds=time.perf_counter() - began)

        flags, check_began = [], time.perf_counter()
        if worst is not None and "black_box" in checks and black_box_queries > 0:
            found = square_search(model, queries.images.to(victim.device),
                                  clean_codes.to(victim.device), eps=eps, queries=black_box_queries, seed=seed)
            black_box = ap(victim.encode(found.cpu()), queries.labels)
            columns["check", "black box"] = black_box
            beats = black_box < worst - 1e-9
            share = float(beats.float().mean())
            flags.append(Flag("black_box_beats_white_box", share > flag_fraction,
                              f"random search ({black_box_queries} queries) mAP {float(black_box.mean()):.3f} vs "
                              f"ensemble {float(worst.mean()):.3f}; lower AP on {int(beats.sum())}/{len(beats)} "
                              f"queries ({share:.0%}, limit {flag_fraction:.0%})"))
        if worst is not None and "convergence" in checks:
            _, _, doubled = run_part(attacks, False, 2 * steps, seeds)
            columns["check", "worst case x2 steps"] = doubled
            drop = float(worst.mean() - doubled.mean())
            flags.append(Flag("not_converged", drop > convergence_delta,
                              f"{2 * steps} steps: robust mAP {float(doubled.mean()):.3f} vs {float(worst.mean()):.3f} "
                              f"at {steps} (drop {drop:+.3f}, limit {convergence_delta})"))
        if "eps_one" in checks:
            attack = build_attack("pgd", victim, **member_settings("pgd", eps=1.0, alpha=0.25, steps=steps, seed=seed))
            at_one = float(ap(victim.encode(perturb(attack, queries.images, batch_size=batch_size)),
                              queries.labels).mean())
            random_map = random_ranking_map(queries.labels, db_labels, topk=k)
            flags.append(Flag("eps_one_not_random", at_one > random_map + random_tolerance,
                              f"Hamming PGD at eps = 1: mAP {at_one:.3f}; random ranking {random_map:.3f} "
                              f"(tolerance {random_tolerance})"))
        if "gradients" in checks:
            norms = _input_gradients(model, queries.images.to(victim.device), clean_codes.to(victim.device)).cpu()
            finite = torch.isfinite(norms)
            bad = ~finite | (norms <= 1e-12)
            median = float(norms[finite].median()) if finite.any() else float("nan")
            flags.append(Flag("masked_gradients", bool(bad.any()),
                              f"input gradient zero or not finite on {int(bad.sum())}/{len(norms)} queries "
                              f"(median norm {median:.2e})"))
        check_cost = dict(forward=counter.forward - ensemble_cost["forward"],
                          backward=counter.backward - ensemble_cost["backward"],
                          seconds=time.perf_counter() - check_began)
    finally:
        counter.restore()

    table = pd.DataFrame(scores, columns=["part", "attack", "score", "runs"])
    frame = None
    if per_query:
        frame = pd.DataFrame({"query": range(len(clean_ap)), "clean": clean_ap.numpy(),
                              **{f"{part}:{name}": values.numpy() for (part, name), values in columns.items()}})
        for part, values in (("untargeted", worst), ("targeted", targeted)):
            if values is not None:
                frame[f"{part}:worst case"] = values.numpy()
    budget = dict(eps_255=round(eps * 255, 3), alpha_255=round(alpha * 255, 3), steps=steps, restarts=restarts,
                  black_box_queries=black_box_queries if "black_box" in checks else 0, k=k, queries=len(clean_ap))
    return RobustnessReport(table=table, clean_map=float(clean_ap.mean()),
                            robust_map=float(worst.mean()) if worst is not None else float("nan"),
                            robust_tmap=None if targeted is None else float(targeted.mean()), flags=flags,
                            budget=budget, per_query=frame,
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


def leaderboard(victims, data, queries: QuerySet, *, eps: float, checks_bits: Sequence[int] | None = None,
                **settings) -> tuple[pd.DataFrame, dict]:
    """:func:`evaluate_robustness` of every model of ``victims`` ({(model name, bits): Victim}, each with its own
    codes) on the same queries and budget (``settings``). Returns (frame, reports): one row per model and code
    length with clean mAP, robust mAP (the ensemble's worst case), each member's mAP, the strongest single member
    (``best single``), how far that number overstates robustness (``overstated`` = best single - robust), robust
    t-MAP and the flags that fired ("not checked" where none ran); reports {(model, bits): RobustnessReport}.
    ``checks_bits``: the code lengths whose models also get the checks (None: all); the checks cost about as much
    as the ensemble again, and a sound evaluation at one code length vouches for the protocol."""
    rows, reports = [], {}
    for (name, bits), victim in victims.items():
        run_settings = dict(settings)
        if checks_bits is not None and bits not in checks_bits:
            run_settings["checks"] = ()
        report = evaluate_robustness(victim.model, data, queries=queries, eps=eps, victim=victim, **run_settings)
        members = report.member_maps()
        strongest = min(members.values()) if members else float("nan")
        rows.append(dict(model=name, bits=bits, clean=report.clean_map, robust=report.robust_map, **members,
                         **{"best single": strongest, "overstated": strongest - report.robust_map,
                            "robust t-MAP": report.robust_tmap,
                            "flags": (", ".join(flag.name for flag in report.flags if flag.fired) or "none")
                            if report.flags else "not checked"}))
        reports[name, bits] = report
    return pd.DataFrame(rows), reports
