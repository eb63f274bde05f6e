"""The sanity checks of a robustness evaluation (``advhash.robustness``), each a function returning a ``Flag``.

A worst case over white-box attacks is only as good as the attacks' gradients (Carlini et al. 2019; Tramer et
al., NeurIPS 2020). Each check asks one question and answers with a ``Flag`` and the numbers behind it:

- :func:`black_box_check`: does a gradient-free random search (:func:`square_search`, Square-style, Andriushchenko
  et al., ECCV 2020) beat the white-box ensemble on more than a few queries? (gradient masking suspected)
- :func:`convergence_check`: does twice the steps still lower robust mAP? (the ensemble has not converged)
- :func:`eps_one_check`: does Hamming PGD at eps = 1 fail to reach the random ranking's mAP?
- :func:`gradient_check`: is the input gradient of the relaxed code alignment zero or not finite on a query?

The random search and the gradient check use the relaxed alignment mean_k tanh(z_k(x')) b_k with the clean code
b (``advhash.attacks.code_alignment_loss``, per query): Hamming PGD's objective.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .attacks import HammingPGD, code_alignment_loss, perturb
from .evaluation import QuerySet
from .metrics import average_precision_per_query, random_ranking_map
from .victim import Victim

__all__ = ["Flag", "query_ap", "square_search", "black_box_check", "convergence_check", "eps_one_check",
           "input_gradient_norms", "gradient_check"]


@dataclass(frozen=True)
class Flag:
    """A sanity check of the evaluation: its name, whether it fired, and the numbers behind it (``evidence`` in
    words; ``scores``: per-query AP the check measured, {column name: (N,) float64}, for the per-query table)."""

    name: str
    fired: bool
    evidence: str
    scores: dict[str, torch.Tensor] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __str__(self) -> str:
        return f"{'FIRED' if self.fired else 'ok'}: {self.name} ({self.evidence})"


def query_ap(victim: Victim, codes: torch.Tensor, labels: torch.Tensor, *, topk: int | None) -> torch.Tensor:
    """AP@k of each query code (N, K) against the victim's database codes, relevance to ``labels`` (N, L): the
    queries' own labels, or their target labels (t-AP). (N,) float64."""
    db_codes, db_labels = victim.require("db", "evaluate_robustness")
    return average_precision_per_query(codes, db_codes, labels, db_labels, topk=topk)


def _alignment(model, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Per query mean_k tanh(z_k(x)) b_k: 1 when the relaxed code equals b, -1 when every bit is flipped."""
    return code_alignment_loss(torch.tanh(model.hash_logits(images)), codes, toward=False, per_query=True)


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
    loss = _alignment(model, best, codes)
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
        trial_loss = _alignment(model, candidate, codes)
        better = trial_loss < loss
        delta[better], best[better], loss[better] = trial[better], candidate[better], trial_loss[better]
    return best


def black_box_check(victim: Victim, queries: QuerySet, clean_codes: torch.Tensor, worst: torch.Tensor, *,
                    eps: float, search_queries: int, seed: int = 0, topk: int | None = None,
                    flag_fraction: float = 0.05) -> Flag:
    """``black_box_beats_white_box``: :func:`square_search` (``search_queries`` forward passes, from the clean codes
    (N, K)) reaches a lower AP@k than the ensemble's per-query worst case ``worst`` (N,) on more than
    ``flag_fraction`` of the queries. Its per-query AP is the flag's ``scores["black box"]``."""
    found = square_search(victim.model, queries.images.to(victim.device), clean_codes.to(victim.device), eps=eps,
                          queries=search_queries, seed=seed)
    black_box = query_ap(victim, victim.encode(found.cpu()), queries.labels, topk=topk)
    beats = black_box < worst - 1e-9
    share = float(beats.float().mean())
    return Flag("black_box_beats_white_box", share > flag_fraction,
                f"random search ({search_queries} queries) mAP {float(black_box.mean()):.3f} vs "
                f"ensemble {float(worst.mean()):.3f}; lower AP on {int(beats.sum())}/{len(beats)} "
                f"queries ({share:.0%}, limit {flag_fraction:.0%})", scores={"black box": black_box})


def convergence_check(worst: torch.Tensor, doubled: torch.Tensor, *, steps: int, delta: float = 0.01) -> Flag:
    """``not_converged``: the worst case at twice the ``steps`` (``doubled``, (N,), ``advhash.robustness.worst_case``
    with a doubled budget) lowers robust mAP by more than ``delta`` below ``worst`` (N,) at ``steps``."""
    drop = float(worst.mean() - doubled.mean())
    return Flag("not_converged", drop > delta,
                f"{2 * steps} steps: robust mAP {float(doubled.mean()):.3f} vs {float(worst.mean()):.3f} "
                f"at {steps} (drop {drop:+.3f}, limit {delta})", scores={"worst case x2 steps": doubled})


def eps_one_check(victim: Victim, queries: QuerySet, *, steps: int, seed: int = 0, topk: int | None = None,
                  batch_size: int = 256, tolerance: float = 0.05) -> Flag:
    """``eps_one_not_random``: Hamming PGD at eps = 1 (step 0.25, ``steps`` iterations, random start), which may
    replace every pixel, leaves mAP@k more than ``tolerance`` above the random ranking's."""
    attack = HammingPGD(victim, eps=1.0, alpha=0.25, steps=steps, random_start=True, seed=seed)
    at_one = float(query_ap(victim, victim.encode(perturb(attack, queries.images, batch_size=batch_size)),
                            queries.labels, topk=topk).mean())
    random_map = random_ranking_map(queries.labels, victim.require("db", "evaluate_robustness")[1], topk=topk)
    return Flag("eps_one_not_random", at_one > random_map + tolerance,
                f"Hamming PGD at eps = 1: mAP {at_one:.3f}; random ranking {random_map:.3f} "
                f"(tolerance {tolerance})")


def input_gradient_norms(model, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Per query L2 norm of the input gradient of the relaxed alignment with ``codes`` (the clean codes): (N,)."""
    images = images.clone().requires_grad_(True)
    grad, = torch.autograd.grad(_alignment(model, images, codes).sum(), images)
    return grad.flatten(1).norm(dim=1)


def gradient_check(victim: Victim, queries: QuerySet, clean_codes: torch.Tensor) -> Flag:
    """``masked_gradients``: the input gradient of the relaxed alignment with the clean codes (N, K) is zero or not
    finite on some query (:func:`input_gradient_norms`)."""
    norms = input_gradient_norms(victim.model, queries.images.to(victim.device),
                                 clean_codes.to(victim.device)).cpu()
    finite = torch.isfinite(norms)
    bad = ~finite | (norms <= 1e-12)
    median = float(norms[finite].median()) if finite.any() else float("nan")
    return Flag("masked_gradients", bool(bad.any()),
                f"input gradient zero or not finite on {int(bad.sum())}/{len(norms)} queries "
                f"(median norm {median:.2e})")
