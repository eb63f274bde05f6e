"""SDHA: Lu, Chen, Sun, Wang, Wang, Yang, "A Smart Adversarial Attack on Deep Hashing Based Image
Retrieval", ICMR 2021 -- the non-targeted (and targeted) baseline of SAAT's Table I.

SDHA attacks a query through the codes r_j of the items relevant to it (R, sharing a label), with a per-bit
surrogate d_j of the Hamming distance and an AP-oriented weight w_j, traded against the perturbation size:

    min_{x'}  ||x' - x||^2 / D  +  (c / K) * S(h(x'), R),      ||x' - x||_inf <= eps,  x' in [0, 1],
    S = -/+ mean_{j in R} w_j d_j  (non-targeted / targeted),   w_j = (d_H(sign h, r_j) + 1e-8)^(-z),

h = tanh(scale z(x')) under HAG's growing scale, c = 25, Adam on the pixels (lr 0.01, 100 iterations). The
formulas and constants are those of SAAT's reimplementation (``model/attack_model/sdha.py``; the ICMR text was
not read); the objective is summed over a batch's images where that code averages it (Adam is invariant to the
factor), so an image's attack does not depend on its batch. ``docs/methods.md``, section SDHA.
"""

from __future__ import annotations

import torch

from ..metrics import relevance
from ..models import binarize
from ..utils import check_choice
from .base import HashingAttack
from .hag import SCALE_SCHEDULES, hag_scale

_DISTANCE_FLOOR = 1e-8   # the code's + 1e-8 before the power (a relevant code equal to the query's)


def sdha_bit_distance(adv_relaxed: torch.Tensor, code_bits: torch.Tensor | float, *, sigma: float,
                      targeted: bool = False) -> torch.Tensor:
    """SDHA's per-bit surrogate of "this bit differs", for relaxed bits h and sign bits r (broadcast):

        non-targeted: 1/2 |h - r| sigmoid(sigma h r) + (1 - sigmoid(sigma h r)),
        targeted:     1/2 |h - r| sigmoid(-sigma h r).
    """
    product = adv_relaxed * code_bits
    gap = (adv_relaxed - code_bits).abs()
    if targeted:
        return 0.5 * gap * torch.sigmoid(-sigma * product)
    gate = torch.sigmoid(sigma * product)
    return 0.5 * gap * gate + (1 - gate)


def sdha_surrogate_distance(adv_relaxed: torch.Tensor, relevant_codes: torch.Tensor, *, sigma: float,
                            targeted: bool = False) -> torch.Tensor:
    """SDHA's dimension-wise surrogate Hamming distance d_j = sum_k (per-bit term of
    :func:`sdha_bit_distance`) between relaxed codes and sign codes. The definition, written directly
    ((N, M, K) memory); :func:`sdha_surrogate_loss` computes the same sum as a matrix product.

    Shapes: adv_relaxed h (N, K), relevant_codes r (M, K) in {-1, +1} -> (N, M).
    """
    return sdha_bit_distance(adv_relaxed[:, None, :], relevant_codes[None, :, :], sigma=sigma,
                             targeted=targeted).sum(-1)


def sdha_rank_weight(adv_relaxed: torch.Tensor, relevant_codes: torch.Tensor, *, z: float) -> torch.Tensor:
    """SDHA's AP-oriented weight w = (d_H(sign h, r) + 1e-8)^(-z), no gradient: with z > 0 the relevant
    items nearest the query (the top of its ranking, where AP is decided) weigh most. (N, K), (M, K) -> (N, M)."""
    with torch.no_grad():
        bits = adv_relaxed.shape[1]
        hamming = 0.5 * (bits - binarize(adv_relaxed) @ relevant_codes.T)
        return (hamming + _DISTANCE_FLOOR).pow(-z)


def sdha_surrogate_loss(adv_relaxed: torch.Tensor, table_codes: torch.Tensor, relevant: torch.Tensor, *,
                        sigma: float, z: float, targeted: bool = False) -> torch.Tensor:
    """Per-image S of the module docstring: -(non-targeted) or +(targeted) the mean over the relevant
    table items j of w_j d_j.

    Computed without the (N, M, K) tensor: a sign bit r is +1 or -1, so each per-bit term is
    f(h, r) = a(h) + r b(h) with a = (f(h, 1) + f(h, -1)) / 2 and b = (f(h, 1) - f(h, -1)) / 2, and
    d_ij = sum_k a(h_ik) + (b(h_i) . r_j), one matrix product for all pairs (exact for codes in {-1, +1}).

    Shapes: adv_relaxed (N, K); table_codes (M, K) in {-1, +1}; relevant (N, M) bool, every row with at
    least one True -> (N,).
    """
    plus = sdha_bit_distance(adv_relaxed, 1.0, sigma=sigma, targeted=targeted)          # f(h, +1) (N, K)
    minus = sdha_bit_distance(adv_relaxed, -1.0, sigma=sigma, targeted=targeted)        # f(h, -1)
    weights = relevant.to(adv_relaxed.dtype) * sdha_rank_weight(adv_relaxed, table_codes, z=z)  # (N, M)
    weighted_sum = (0.5 * (plus + minus).sum(1) * weights.sum(1) +
                    (0.5 * (plus - minus) * (weights @ table_codes)).sum(1))            # sum_j w_ij d_ij
    mean = weighted_sum / relevant.sum(1).to(adv_relaxed.dtype)
    return mean if targeted else -mean


class SDHA(HashingAttack):
    r"""SDHA in "A Smart Adversarial Attack on Deep Hashing Based Image Retrieval" (Lu, Chen, Sun, Wang, Wang,
    Yang, ICMR 2021, https://dl.acm.org/doi/10.1145/3460426.3463640), as SAAT's experiments run it.

    Non-targeted (Default): pushes the query's code away from the victim's codes of the training items
    relevant to it, weighting the nearest ones most; targeted (after ``attack.set_targets(target_labels)``):
    pulls it toward the codes of the items of the target label. Adam on the pixels against the
    perturbation's MSE plus the surrogate (module docstring: formulas, constants, provenance).

    Distance Measure : Linf (the box), plus the L2 penalty of the objective

    Arguments:
        model: the victim (``advhash.Victim``: the model with its codes of the training set, the
            attacker's code table r_j).
        eps: maximum perturbation, [0, 1] units (Default: 8/255).
        lr: Adam's learning rate on the pixels (Default: 0.01).
        steps: number of iterations (Default: 100).
        sigma: the surrogate's sigmoid slope (Default: 5 non-targeted, 10 targeted).
        z: exponent of the rank weight (Default: 0.5 non-targeted, -0.3 targeted).
        surrogate_weight: c, the surrogate weighs c / K against the MSE (Default: 25).
        scale_schedule: "grow" (Default: HAG's growing tanh scale) or "fixed"; fixed_scale: (Default: 1.0).
        model_mode: "eval" (Default) or "train"; seed: unused (no random start), kept for the common signature.

    Shape:
        - images: (N, C, H, W) float in [0, 1].
        - labels: (N, L) multi-hot labels of the queries (non-targeted: their relevant items steer).
        - output: (N, C, H, W) adversarial images in [0, 1], within eps of the images.

    Examples::
        >>> attack = SDHA(Victim.build(model, data), eps=8/255)
        >>> adv_images = perturb(attack, images, labels)
    """

    target_mode = "optional"

    def __init__(self, model, *, eps: float = 8 / 255, lr: float = 0.01, steps: int = 100,
                 sigma: float | None = None, z: float | None = None, surrogate_weight: float = 25.0,
                 scale_schedule: str = "grow", fixed_scale: float = 1.0, model_mode: str = "eval", seed: int = 0):
        super().__init__(model, eps=eps, alpha=lr, steps=steps, random_start=False, model_mode=model_mode, seed=seed)
        check_choice("scale_schedule", scale_schedule, SCALE_SCHEDULES)
        if not surrogate_weight > 0:
            raise ValueError(f"surrogate_weight must be > 0; got {surrogate_weight!r}")
        self._sigma, self._z = sigma, z
        self.surrogate_weight = float(surrogate_weight)
        self.scale_schedule, self.fixed_scale = scale_schedule, fixed_scale

    @property
    def sigma(self) -> float:
        return float(self._sigma if self._sigma is not None else (10.0 if self.targeted else 5.0))

    @property
    def z(self) -> float:
        return float(self._z if self._z is not None else (-0.3 if self.targeted else 0.5))

    def __repr__(self) -> str:
        return (f"SDHA(eps={self.eps * 255:.3g}/255, lr={self.alpha}, steps={self.steps}, targeted={self.targeted}, "
                f"sigma={self.sigma}, z={self.z})")

    def scale(self, step: int) -> float:
        return hag_scale(step, self.steps) if self.scale_schedule == "grow" else self.fixed_scale

    def table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The attacker's code table: the victim's sign codes of the training items (M, K) and labels (M, L)."""
        table_codes, table_labels = self.victim.require("train", "SDHA")
        bits = getattr(self.model, "bits", None)
        if bits and table_codes.shape[1] != bits:
            raise ValueError(f"the victim's training codes have {table_codes.shape[1]} bits, the model {bits}: "
                             "encode the training set with the attacked model")
        if not ((table_codes == 1) | (table_codes == -1)).all():
            raise ValueError("the victim's training codes must be sign codes in {-1, +1} (encode(model, data.train))")
        return table_codes.float(), table_labels.float()

    def guide(self, labels, targets):
        """SDHA steers by labels: the target labels when targeted, else the queries' own (N, L)."""
        guide = targets if targets is not None else labels
        if guide is None:
            raise ValueError("SDHA pushes each query away from its relevant training items: "
                             "call attack(images, labels)")
        table_labels = self.table()[1]
        if guide.shape[1] != table_labels.shape[1]:
            raise ValueError(f"labels must be (N, {table_labels.shape[1]}) multi-hot like the training labels; got "
                             f"{tuple(guide.shape)}")
        return guide

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            raise ValueError("SDHA steers by labels, one row per image: call attack(images, labels) or "
                             "attack.run(images, labels)")
        labels = labels.to(images.device)
        table, table_labels = (t.to(images.device) for t in self.table())     # checked once per batch
        relevant = relevance(labels, table_labels)                                  # (N, M) items sharing a label
        clean_codes = self.clean_codes(images)                                      # (N, K)
        orphans = ~relevant.any(1)
        if orphans.any():
            if self.targeted:
                rows = orphans.nonzero().flatten().tolist()
                raise ValueError(f"target labels of rows {rows[:10]} share no class with any training item: pick "
                                 "targets present in the training set (advhash.codes.sample_target_labels)")
            # the code's fallback: an image with no relevant item is pushed away from its own clean code
            table = torch.cat([table, clean_codes[orphans]])
            extra = torch.zeros(len(images), int(orphans.sum()), dtype=torch.bool, device=images.device)
            extra[orphans.nonzero().flatten(), torch.arange(int(orphans.sum()), device=images.device)] = True
            relevant = torch.cat([relevant, extra], dim=1)
        adv = images.clone()
        self.snapshot(0, adv)
        adv.requires_grad_(True)
        optimizer = torch.optim.Adam([adv], lr=self.alpha, betas=(0.9, 0.999))
        pixels = images[0].numel()
        for step in range(self.steps):
            scale = self.scale(step)
            logits = self.model.hash_logits(adv)
            relaxed = torch.tanh(scale * logits)
            distortion = (adv - images).pow(2).flatten(1).sum(1) / pixels                # per-image MSE (N,)
            surrogate = sdha_surrogate_loss(relaxed, table, relevant, sigma=self.sigma, z=self.z,
                                            targeted=self.targeted)
            loss = (distortion + self.surrogate_weight / logits.shape[1] * surrogate).sum()
            adv.grad, = torch.autograd.grad(loss, adv)       # the input's gradient only: model weights untouched
            self.record(step, loss=loss / len(images), grad=adv.grad, logits=logits.detach(),
                        clean_codes=clean_codes, scale=scale)
            optimizer.step()
            with torch.no_grad():
                adv.copy_(self.project(adv, images))
            self.snapshot(step + 1, adv)
        return adv.detach()
