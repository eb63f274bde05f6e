"""Code-guided PGD: move each query's relaxed code toward, or away from, a code given per query.

The shared loop of the attacks that steer by a representative code: Hamming PGD (away from the query's own
clean code), CgAT's center-guided attack (away from the query's center code), P2P and DHTA (toward a target
label's anchor code), and the mainstay-code attacks of SAAT. Each subclass fixes ``toward`` and its paper's
defaults. :func:`code_alignment_loss` is the one home of the relaxed code alignment mean(tanh(z) * b), which the
robustness checks' random search and gradient check also use (``advhash.robustness_checks``).
"""

from __future__ import annotations

import torch

from ..utils import check_choice
from .base import HashingAttack
from .hag import SCALE_SCHEDULES, hag_scale


def code_alignment_loss(adv_relaxed: torch.Tensor, guide_codes: torch.Tensor, *, toward: bool,
                        per_query: bool = False) -> torch.Tensor:
    """mean(h(x_adv) * g) (away from the guide codes g: Hamming PGD with g the clean code b, and CgAT's
    center-guided attack) or its negative (toward them: P2P / DHTA), over queries and bits. Minimizing it
    maximizes (away) or minimizes (toward) the relaxed Hamming distance d_H = (K - <h, g>) / 2; away from the
    clean code its minimum -1 is every bit flipped.

    Shapes: adv_relaxed h = tanh(scale z(x_adv)) (N, K), guide_codes g in {-1, 0, +1} (N, K) -> scalar, or
    (N,) with ``per_query`` (the mean over bits only: one value per query).
    """
    product = adv_relaxed * guide_codes
    alignment = product.mean(1) if per_query else product.mean()
    return -alignment if toward else alignment


class CodeGuidedAttack(HashingAttack):
    """Base of the code-guided attacks: projected sign-gradient descent on ``code_alignment_loss``.

    Arguments (beyond ``HashingAttack``'s):
        scale_schedule: "fixed" (tanh scale ``fixed_scale`` throughout) or "grow" (HAG's growing
            scale, :func:`advhash.attacks.hag_scale`, used by DHTA and SAAT against vanishing gradients).
        fixed_scale: the tanh scale of the "fixed" schedule (Default: 1.0).
        keep_history: fill ``history`` (Default: True); adversarial training turns it off, which saves
            the forward pass of the clean images that the flipped-bit count needs.

    Subclasses say where each image's guide code comes from (:meth:`guide`, from the victim);
    ``forward(images, guide_codes)`` with guide_codes (N, K) in {-1, 0, +1}; a zero bit guides nothing.
    ``run(images, guide_codes)`` attacks with guide codes given directly (the adversarial trainers).
    """

    toward: bool = False

    def __init__(self, model, *, eps: float, alpha: float, steps: int, random_start: bool,
                 scale_schedule: str = "fixed", fixed_scale: float = 1.0, model_mode: str = "eval", seed: int = 0,
                 keep_history: bool = True):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start,
                         model_mode=model_mode, seed=seed)
        self.keep_history = keep_history
        check_choice("scale_schedule", scale_schedule, SCALE_SCHEDULES)
        if not fixed_scale > 0:
            raise ValueError(f"fixed_scale (the tanh scale) must be > 0; got {fixed_scale!r}")
        self.scale_schedule, self.fixed_scale = scale_schedule, float(fixed_scale)

    def scale(self, step: int) -> float:
        """The tanh scale of iteration ``step``."""
        return hag_scale(step, self.steps) if self.scale_schedule == "grow" else self.fixed_scale

    def loss(self, adv_relaxed: torch.Tensor, guide_codes: torch.Tensor) -> torch.Tensor:
        """The objective minimized by each step (subclasses may override): :func:`code_alignment_loss`."""
        return code_alignment_loss(adv_relaxed, guide_codes, toward=self.toward)

    def guide(self, labels, targets) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor, guide_codes: torch.Tensor | None) -> torch.Tensor:
        if guide_codes is None:
            raise ValueError(f"{type(self).__name__} steers by a guide code per image: call attack(images, labels)")
        bits = getattr(self.model, "bits", None)
        if guide_codes.ndim != 2 or guide_codes.shape[0] != images.shape[0] or (bits and guide_codes.shape[1] != bits):
            raise ValueError(f"guide codes must have one row of {bits} bits per image, shape ({images.shape[0]}, "
                             f"{bits}); got {tuple(guide_codes.shape)}")
        guide_codes = guide_codes.to(images.device, images.dtype)
        clean_codes = self.clean_codes(images) if self.keep_history else None   # (N, K)
        return self.descend(images, guide_codes, clean_codes)

    def descend(self, images: torch.Tensor, guide_codes: torch.Tensor, clean_codes: torch.Tensor | None
                ) -> torch.Tensor:
        """The loop: projected sign-gradient steps on :meth:`loss` from :meth:`start_point`; ``clean_codes``
        (N, K) feed the history (None: keep none)."""
        adv = self.start_point(images)
        for step in range(self.steps):
            scale = self.scale(step)
            adv.requires_grad_(True)
            logits = self.model.hash_logits(adv)                                 # (N, K)
            loss = self.loss(torch.tanh(scale * logits), guide_codes)
            grad, = torch.autograd.grad(loss, adv)
            if clean_codes is not None:
                self.record(step, loss=loss, grad=grad, logits=logits, clean_codes=clean_codes, scale=scale)
            with torch.no_grad():
                adv = self.project(adv - self.alpha * grad.sign(), images)
            self.snapshot(step + 1, adv)
        return adv
