"""The SAAT attack: Yuan, Zhang, Wang, Wu, "Semantic-Aware Adversarial Training for Reliable Deep Hashing
Retrieval", IEEE TIFS 2023 (arXiv 2310.14637), section III-D.

Away from the query's mainstay code (or toward a target label's), in one of two forms (``variant=``,
``SAAT_VARIANTS``): ``"published"`` (Default: the published attack as a whole, :func:`saat_loss`, the masked loss
of SAAT ``model/adv_generator/base.py`` L24-45, on mainstay codes with ``torch.sign``'s tie rule, a tied bit 0,
adv_attack.py L30) or ``"paper"`` (the plain relaxed d_H of section III-D, mean(h * b_m),
:func:`code_alignment_loss`, on binary mainstay codes, a tied bit +1; also the inner attack of the published
adv_training.py L11-13). ``docs/methods.md``, section SAAT attack.
"""

from __future__ import annotations

import torch

from ..codes import mainstay_codes
from ..utils import check_choice
from .guided import CodeGuidedAttack, code_alignment_loss

SAAT_VARIANTS = ("published", "paper")


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


class SAAT(CodeGuidedAttack):
    r"""The attack of "Semantic-Aware Adversarial Training for Reliable Deep Hashing Retrieval" (Yuan, Zhang,
    Wang, Wu, IEEE TIFS 2023, https://arxiv.org/abs/2310.14637).

    Non-targeted (Default): maximizes the Hamming distance between the adversarial code and the query's
    **mainstay code** b_m (``advhash.codes.mainstay_codes``, from the victim's codes of the training set);
    targeted (after ``attack.set_targets(target_labels)``): minimizes it to the mainstay code of the target
    label. Relaxed by ``tanh(scale z)`` with HAG's growing scale. ``variant="published"`` (Default: the paper states
    only the Hamming distance and sign(.), so the published code decides) is the published attack: its masked
    objective (:func:`saat_loss`) on mainstay codes from ``torch.sign`` (a tied bit is 0); ``variant="paper"`` the
    plain relaxed distance of section III-D (mean(h * b_m), :func:`code_alignment_loss`) on binary mainstay codes
    (a tied bit is +1).

    Distance Measure : Linf

    Arguments:
        model: the victim (``advhash.Victim``: the model with its codes of the training set).
        eps: maximum perturbation, [0, 1] units (Default: 8/255).
        alpha: sign-gradient step size (Default: 1/255).
        steps: number of iterations (Default: 100).
        random_start: (Default: True, as the SAAT code).
        variant: "published" (Default: the masked loss of base.py L24-45, mainstay codes by ``torch.sign``) or
            "paper" (mean(h * b_m), mainstay codes with ties +1; ``advhash.codes.mainstay_codes``).
        threshold: the published mask's threshold on s = h * b (Default: -0.5; targeted: w = 1[s < 0.5]).
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
                 random_start: bool = True, variant: str = "published", threshold: float = -0.5,
                 scale_schedule: str = "grow", fixed_scale: float = 1.0, model_mode: str = "eval", seed: int = 0,
                 keep_history: bool = True):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start,
                         scale_schedule=scale_schedule, fixed_scale=fixed_scale, model_mode=model_mode, seed=seed,
                         keep_history=keep_history)
        check_choice("variant", variant, SAAT_VARIANTS, hint=" ('published' = the masked loss of SAAT base.py on "
                     "torch.sign's mainstay codes, 'paper' = mean(h * b_m) on binary mainstay codes)")
        if not -1 <= threshold <= 1:
            raise ValueError(f"threshold (on s = h * b in [-1, 1]) must be in [-1, 1]; got {threshold!r}")
        self.variant, self.threshold = variant, float(threshold)

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
        return mainstay_codes(targets if targets is not None else labels, table_codes, table_labels,
                              variant=self.variant)

    def loss(self, adv_relaxed, guide_codes):
        if self.variant == "paper":
            return code_alignment_loss(adv_relaxed, guide_codes, toward=self.toward)
        return saat_loss(adv_relaxed, guide_codes, toward=self.toward, threshold=self.threshold)
