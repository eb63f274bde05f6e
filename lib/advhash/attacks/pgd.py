"""Hamming PGD: the plain non-targeted baseline attack on a hashing model, the code-guided attack
(``advhash.attacks.guided``) guided away from each query's own clean code."""

from __future__ import annotations

import torch

from .guided import CodeGuidedAttack


class HammingPGD(CodeGuidedAttack):
    r"""Non-targeted PGD in Hamming space: push each query's code away from its own clean code.

    A baseline, not a paper's method: projected sign-gradient descent (Madry et al., "Towards Deep
    Learning Models Resistant to Adversarial Attacks", ICLR 2018, https://arxiv.org/abs/1706.06083)
    on the hashing loss ``mean(tanh(z(x_adv)) * b_clean)`` (:func:`code_alignment_loss` away from the
    clean code b = sign(z(x))), tanh scale 1: the code-guided attack with the clean code as guide.

    Distance Measure : Linf

    Arguments:
        model: the victim (``advhash.Victim``) or a bare hashing model taking [0, 1] images.
        eps: maximum perturbation, [0, 1] units (Default: 8/255).
        alpha: step size (Default: 2/255).
        steps: number of steps (Default: 10).
        random_start: start from a uniform random point of the eps-ball (Default: True).
        model_mode: "eval" (Default) or "train" (see ``HashingAttack``).
        seed: seed of the random start (Default: 0).

    Shape:
        - images: (N, C, H, W) float in [0, 1].
        - output: (N, C, H, W) adversarial images in [0, 1], within eps of the images.

    Examples::
        >>> attack = HammingPGD(model, eps=8/255, alpha=2/255, steps=10)
        >>> adv_images = attack(images, labels)                 # labels unused: PGD needs the image only
        >>> mean_average_precision(victim.encode(adv_images), victim.db_codes, labels, victim.db_labels)
    """

    def __init__(self, model, *, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10,
                 random_start: bool = True, model_mode: str = "eval", seed: int = 0):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start,
                         scale_schedule="fixed", fixed_scale=1.0, model_mode=model_mode, seed=seed)

    def guide(self, labels, targets) -> None:
        return None                       # the guide is each image's own clean code, computed in forward

    def forward(self, images: torch.Tensor, guide: None = None) -> torch.Tensor:
        clean_codes = self.clean_codes(images)                                  # (N, K): the guide
        return self.descend(images, clean_codes, clean_codes)
