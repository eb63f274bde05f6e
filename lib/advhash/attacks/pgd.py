"""Hamming PGD: the plain non-targeted baseline attack on a hashing model."""

from __future__ import annotations

import torch

from .base import HashingAttack


def hamming_pgd_loss(adv_relaxed: torch.Tensor, clean_codes: torch.Tensor) -> torch.Tensor:
    """mean(h(x_adv) * b_clean) over queries and bits: the relaxed inner product <h, b> / K, whose
    minimum -1 is the largest Hamming distance K (d_H = (K - <b', b>) / 2).

    Shapes: adv_relaxed h = tanh(z(x_adv)) (N, K), clean_codes b in {-1, +1} (N, K) -> scalar.
    """
    return (adv_relaxed * clean_codes).mean()


class HammingPGD(HashingAttack):
    r"""Non-targeted PGD in Hamming space: push each query's code away from its own clean code.

    A baseline, not a paper's method: projected sign-gradient descent (Madry et al., "Towards Deep
    Learning Models Resistant to Adversarial Attacks", ICLR 2018, https://arxiv.org/abs/1706.06083)
    on the hashing loss ``mean(tanh(z(x_adv)) * b_clean)`` (:func:`hamming_pgd_loss`), tanh scale 1.

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
                         model_mode=model_mode, seed=seed)

    def forward(self, images: torch.Tensor, guide: None = None) -> torch.Tensor:
        clean_codes = self.clean_codes(images)                                  # (N, K)
        adv = self.start_point(images)
        for step in range(self.steps):
            adv.requires_grad_(True)
            logits = self.model.hash_logits(adv)                                 # (N, K)
            loss = hamming_pgd_loss(torch.tanh(logits), clean_codes)
            grad, = torch.autograd.grad(loss, adv)
            self.record(step, loss=loss, grad=grad, logits=logits, clean_codes=clean_codes, scale=1.0)
            with torch.no_grad():
                adv = self.project(adv - self.alpha * grad.sign(), images)
            self.snapshot(step + 1, adv)
        return adv
