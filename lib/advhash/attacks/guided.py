"""Code-guided PGD: move each query's relaxed code toward, or away from, a code given per query.

The shared loop of the attacks that steer by a representative code: CgAT's center-guided attack
(away from the query's center code), P2P and DHTA (toward a target label's anchor code), and the
mainstay-code attacks of SAAT. Each subclass fixes ``toward`` and its paper's defaults.
"""

from __future__ import annotations

import torch

from .base import HashingAttack
from .hag import SCALE_SCHEDULES, hag_scale


def code_alignment_loss(adv_relaxed: torch.Tensor, guide_codes: torch.Tensor, *, toward: bool) -> torch.Tensor:
    """mean(h(x_adv) * g) (away from the guide codes g: CgAT Eq. of the center-guided attack) or its
    negative (toward them: P2P / DHTA), over queries and bits. Minimizing it maximizes (away) or
    minimizes (toward) the relaxed Hamming distance d_H = (K - <h, g>) / 2.

    Shapes: adv_relaxed h = tanh(scale z(x_adv)) (N, K), guide_codes g in {-1, 0, +1} (N, K) -> scalar.
    """
    alignment = (adv_relaxed * guide_codes).mean()
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
        if scale_schedule not in SCALE_SCHEDULES:
            raise ValueError(f"scale_schedule must be one of {SCALE_SCHEDULES}; got {scale_schedule!r}")
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
        adv = self.start_point(images)
        for step in range(self.steps):
            scale = self.scale(step)
            adv.requires_grad_(True)
            logits = self.model.hash_logits(adv)                                 # (N, K)
            loss = self.loss(torch.tanh(scale * logits), guide_codes)
            grad, = torch.autograd.grad(loss, adv)
            if self.keep_history:
                self.record(step, loss=loss, grad=grad, logits=logits, clean_codes=clean_codes, scale=scale)
            with torch.no_grad():
                adv = self.project(adv - self.alpha * grad.sign(), images)
            self.snapshot(step + 1, adv)
        return adv
