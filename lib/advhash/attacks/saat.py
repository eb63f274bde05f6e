"""The SAAT attack: Yuan, Zhang, Wang, Wu, "Semantic-Aware Adversarial Training for Reliable Deep Hashing
Retrieval", IEEE TIFS 2023 (arXiv 2310.14637), section III-D."""

from __future__ import annotations

import torch

from ..codes import mainstay_codes
from .guided import CodeGuidedAttack, code_alignment_loss

SAAT_LOSSES = ("masked", "masked_per_row", "inner")


def saat_loss(adv_relaxed: torch.Tensor, guide_codes: torch.Tensor, *, toward: bool = False,
              threshold: float = -0.5) -> torch.Tensor:
    """The masked objective of the SAAT attack exactly as the published code computes it (SAAT
    ``model/adv_generator/base.py`` L24-35 non-targeted, L37-45 targeted; ``docs/methods.md``, SAAT attack):

        s = h(x_adv) * g                           (per bit, (N, K)),
        away from g  (non-targeted):  w = 1[s > threshold],   L =  sum_qk w (s + 2) s / sum_qk w,
        toward g     (targeted):      w = 1[s < -threshold],  L = -sum_qk w (s + 2) s / sum_qk w,

    one normalization over the whole batch, no gradient through w, threshold -0.5 (the code's -0.5 and 0.5).
    Away from g the loss is minimized at s = -1 and a bit pushed past the threshold leaves it; toward g the
    per-bit gradient -(2s + 2) vanishes for a fully opposed bit (s = -1) and is largest near the threshold.
    Where no bit of the batch is left (sum w = 0) the published code divides 0 by 0 (NaN); this returns 0.
    Shapes: h (N, K), g (N, K) in {-1, +1} -> scalar.
    """
    s = adv_relaxed * guide_codes
    mask = (s.detach() < -threshold) if toward else (s.detach() > threshold)
    mask = mask.to(s.dtype)                                                             # w (N, K)
    total = (mask * (s + 2) * s).sum() / mask.sum().clamp_min(1)
    return -total if toward else total


def saat_row_loss(adv_relaxed: torch.Tensor, guide_codes: torch.Tensor, *, toward: bool = False,
                  threshold: float = -0.5) -> torch.Tensor:
    """advhash's earlier form of the SAAT objective (``loss="masked_per_row"``; not the published code):

        s = h(x_adv) * g  (-s when moving toward g),   w = 1[s > threshold],
        L = mean_q  sum_k w_qk (s_qk + 2) s_qk / sum_k w_qk,

    normalized per query, then averaged (a query with few bits left weighs more than in :func:`saat_loss`), and
    the targeted form the mirror image of the non-targeted one (per bit s^2 - 2s in the unmirrored s, gradient
    largest for a fully opposed bit). Queries whose bits have all left give 0. Shapes: (N, K), (N, K) -> scalar.
    """
    s = adv_relaxed * guide_codes
    s = -s if toward else s
    mask = (s.detach() > threshold).to(s.dtype)                                        # w (N, K)
    per_item = (mask * (s + 2) * s).sum(1) / mask.sum(1).clamp_min(1)
    return per_item.mean()


class SAAT(CodeGuidedAttack):
    r"""The attack of "Semantic-Aware Adversarial Training for Reliable Deep Hashing Retrieval" (Yuan, Zhang,
    Wang, Wu, IEEE TIFS 2023, https://arxiv.org/abs/2310.14637).

    Non-targeted (Default): maximizes the Hamming distance between the adversarial code and the query's
    **mainstay code** b_m (``advhash.codes.mainstay_codes``, from the victim's codes of the training set);
    targeted (after ``attack.set_targets(target_labels)``): minimizes it to the mainstay code of the target
    label. Relaxed by ``tanh(scale z)`` with HAG's growing scale. The objective is the published code's masked
    form (:func:`saat_loss`, ``loss="masked"``, Default: the paper states only the Hamming distance, so the
    published code decides), the plain relaxed distance of section III-D (``loss="inner"``: mean(h * b_m),
    :func:`code_alignment_loss`) or advhash's earlier per-query form (``loss="masked_per_row"``,
    :func:`saat_row_loss`). With sign steps the per-query normalization of "masked_per_row" reaches the same
    non-targeted iterates as "masked" (each query's gradient only changes by a positive factor).

    Distance Measure : Linf

    Arguments:
        model: the victim (``advhash.Victim``: the model with its codes of the training set).
        eps: maximum perturbation, [0, 1] units (Default: 8/255).
        alpha: sign-gradient step size (Default: 1/255).
        steps: number of iterations (Default: 100).
        random_start: (Default: True, as the SAAT code).
        loss: "masked" (Default, published), "inner" (paper) or "masked_per_row".
        threshold: the mask's threshold on s = h * b (Default: -0.5; targeted "masked": w = 1[s < 0.5]).
        scale_schedule: "grow" (Default) or "fixed"; fixed_scale: its scale (Default: 1.0).
        model_mode: "eval" (Default) or "train"; seed: of the random start (Default: 0).
        keep_history: fill ``history`` (Default: True).

    Shape:
        - images: (N, C, H, W) float in [0, 1].
        - labels: (N, L) multi-hot labels of the queries (their mainstay codes steer a non-targeted attack).
        - output: (N, C, H, W) adversarial images in [0, 1], within eps of the images.

    Examples::
        >>> victim = Victim.build(model, data)
        >>> adv_images = perturb(SAAT(victim, eps=8/255, steps=100), images, labels)
        >>> targeted = SAAT(victim, eps=8/255).set_targets(target_labels)
        >>> adv_images = perturb(targeted, images, labels)
    """

    def __init__(self, model, *, eps: float = 8 / 255, alpha: float = 1 / 255, steps: int = 100,
                 random_start: bool = True, loss: str = "masked", threshold: float = -0.5,
                 scale_schedule: str = "grow", fixed_scale: float = 1.0, model_mode: str = "eval", seed: int = 0,
                 keep_history: bool = True):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start,
                         scale_schedule=scale_schedule, fixed_scale=fixed_scale, model_mode=model_mode, seed=seed,
                         keep_history=keep_history)
        if loss not in SAAT_LOSSES:
            raise ValueError(f"loss must be one of {SAAT_LOSSES}; got {loss!r}")
        if not -1 <= threshold <= 1:
            raise ValueError(f"threshold (on s = h * b in [-1, 1]) must be in [-1, 1]; got {threshold!r}")
        self.loss_name, self.threshold = loss, float(threshold)

    target_mode = "optional"

    @property
    def toward(self) -> bool:
        """Targeted attacks move toward the target's mainstay code, the others away from the query's."""
        return self.targeted

    def guide(self, labels, targets):
        """The mainstay code of each target (targeted) or query (N, K), from the victim's training codes."""
        if targets is None and labels is None:
            raise ValueError("SAAT steers each query away from its mainstay code: call attack(images, labels)")
        table_codes, table_labels = self.victim.require("train", "SAAT")
        return mainstay_codes(targets if targets is not None else labels, table_codes, table_labels)

    def loss(self, adv_relaxed, guide_codes):
        if self.loss_name == "inner":
            return code_alignment_loss(adv_relaxed, guide_codes, toward=self.toward)
        if self.loss_name == "masked_per_row":
            return saat_row_loss(adv_relaxed, guide_codes, toward=self.toward, threshold=self.threshold)
        return saat_loss(adv_relaxed, guide_codes, toward=self.toward, threshold=self.threshold)
