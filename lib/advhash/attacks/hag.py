"""HAG: Yang, Liu, Deng, Tao, "Adversarial Examples for Hamming Space Search", IEEE TCYB 2018.

The paper's objective (section III): for a query x_q and its adversarial example x_adv,

    min L(x_adv, x_q) = || (1/m) F'(x_q) F'(x_adv)^T + 1 ||^2,   F(x) = tanh(scale H(x)),
    F' = w ⊙ F,   w_k = 1[ |F_k(x_adv) - sign(F_k(x_q))| < 1 + t ],

i.e. drive the inner product of the two relaxed codes to -m (every bit flipped), dropping a bit
from the objective once it has flipped past the threshold t (mask), and growing the tanh scale (the
paper's alpha) during the attack against vanishing gradients (HAG; a fixed scale is the paper's HAG*).

Two named variants (``variant=``, ``HAG_VARIANTS``), each selecting every term at once: ``"paper"`` (Default:
:func:`hag_loss`, sign steps) and ``"published"`` (SAAT ``model/attack_model/hag.py``: :func:`hag_published_loss`,
the clean code at tanh scale 1, SGD lr 100, momentum 0.9). ``docs/methods.md``, section HAG.
"""

from __future__ import annotations

import torch

from ..models import binarize
from ..utils import check_choice
from .base import HashingAttack

HAG_VARIANTS = ("paper", "published")
SCALE_SCHEDULES = ("grow", "fixed")
# (end of the phase in tenths of the iterations, tanh scale): SAAT util.py at 2,000 iterations
# (0.1 below 1000, 0.2 [1000,1200), 0.3 [1200,1400), 0.5 [1400,1600), 0.7 [1600,1800), 1.0 after).
_GROW_PHASES = ((5, 0.1), (6, 0.2), (7, 0.3), (8, 0.5), (9, 0.7), (10, 1.0))


def hag_scale(step: int, steps: int) -> float:
    """HAG's growing tanh scale (the paper's alpha) at iteration ``step`` (0-based) of ``steps``: 0.1 for the
    first 50 % of the iterations, then 0.2, 0.3, 0.5, 0.7 for each next 10 %, 1.0 for the last
    10 % (the paper's update of the hash activation, F = tanh(scale H); the published schedule of
    SAAT util.py, whose boundaries at 2,000 iterations are 1000, 1200, 1400, 1600, 1800)."""
    if not 0 <= step < steps:
        raise ValueError(f"step must be in [0, steps); got step={step}, steps={steps}")
    for end_tenths, scale in _GROW_PHASES:
        if 10 * step < end_tenths * steps:  # exact integer comparison, step / steps < end / 10
            return scale
    return 1.0


def hag_loss(adv_relaxed: torch.Tensor, clean_relaxed: torch.Tensor, *, threshold: float = 0.5) -> torch.Tensor:
    """The HAG objective of the paper (Yang et al. 2018, Eq. of the adversarial loss with the mask w):

        L = mean_q ( (1/K) sum_k w_qk F_k(x_q) F_k(x_adv) + 1 )^2,
        w_qk = 1[ |F_k(x_adv) - sign(F_k(x_q))| < 1 + threshold ]   (no gradient through w),

    m = K bits. sign(0) := +1 as for codes.

    Shapes: adv_relaxed F(x_adv) (N, K) with gradient, clean_relaxed F(x_q) (N, K) (detached) -> scalar.
    """
    clean_relaxed = clean_relaxed.detach()
    with torch.no_grad():
        mask = ((adv_relaxed - binarize(clean_relaxed)).abs() < 1 + threshold).to(adv_relaxed.dtype)  # (N, K)
    inner = (mask * clean_relaxed * adv_relaxed).sum(dim=1)                                   # (N,)
    return (inner / adv_relaxed.shape[1] + 1).pow(2).mean()


def hag_published_loss(adv_relaxed: torch.Tensor, clean_relaxed: torch.Tensor, *,
                       threshold: float = 0.5) -> torch.Tensor:
    """The HAG loss exactly as the published code computes it (SAAT ``model/attack_model/hag.py`` L17-41):

        w_qk = (sign(1 + t - |F_k(x_adv) - sign(F_k(x_q))|) + 1) / 2        in {0, 1/2, 1},
        m_q  = sum_k w_qk,
        L    = mean_q ( sum_k (w F(x_adv))_qk (w F(x_q))_qk / (m_q + 1e-8) + 1 )^2
               + mean_q ( mean_k w_qk F_k(x_adv) )^2,

    with torch's sign (sign(0) = 0: a bit exactly at the threshold counts one half, and a clean code of exactly 0
    gives sign 0), the mask computed from F(x_adv) (sign has no gradient), the balance weight beta = 1 (L33) on the
    *masked* adversarial code, and a query with no bit left contributing 1 (0 / 1e-8). The clean code F(x_q) is
    the caller's: the published attack computes it once, at tanh scale 1 (L53).

    Shapes: adv_relaxed F(x_adv) (N, K) with gradient, clean_relaxed F(x_q) (N, K) (detached) -> scalar.
    """
    clean_relaxed = clean_relaxed.detach()
    mask = (torch.sign((1 + threshold) - (adv_relaxed - torch.sign(clean_relaxed)).abs()) + 1) / 2     # (N, K)
    masked_adv, masked_clean = mask * adv_relaxed, mask * clean_relaxed
    inner = (masked_adv * masked_clean).sum(dim=1) / (mask.sum(dim=1) + 1e-8)
    return (inner + 1).pow(2).mean() + masked_adv.mean(dim=1).pow(2).mean()


class HAG(HashingAttack):
    r"""HAG in the paper "Adversarial Examples for Hamming Space Search" (Yang, Liu, Deng, Tao,
    IEEE Transactions on Cybernetics 2018,
    https://ieeexplore.ieee.org/search/searchresult.jsp?queryText=Adversarial%20Examples%20for%20Hamming%20Space%20Search).

    Non-targeted: makes the query's code dissimilar to its own clean code by minimizing
    :func:`hag_loss` with a growing tanh scale (:func:`hag_scale`). Defaults follow the paper.

    Distance Measure : Linf

    Arguments:
        model: the victim (``advhash.Victim``) or a bare hashing model taking [0, 1] images; HAG needs
            only the query's own code.
        eps: maximum perturbation, [0, 1] units (Default: 8/255).
        alpha: sign-gradient step size of the "paper" variant (Default: 1/255).
        steps: number of iterations (Default: 100; the paper's profile and the published code use 2,000).
        random_start: start from a random point of the eps-ball (Default: False, as the paper).
        threshold: t of the mask w (Default: 0.5).
        scale_schedule: "grow" (Default, HAG: :func:`hag_scale` over ``steps``) or "fixed"
            (``fixed_scale`` throughout: HAG* of the paper's table, fixed activation; "paper" variant only).
        fixed_scale: the tanh scale of the "fixed" schedule (Default: 1.0).
        variant: "paper" (Default: :func:`hag_loss` with the clean code at the current scale, sign steps
            x <- Proj(x - alpha sign(grad))) or "published" (exactly SAAT hag.py L13-77: :func:`hag_published_loss`
            with the clean code computed once at tanh scale 1 (L53), SGD with ``lr``/``momentum`` on the
            perturbation, then projection; the loss is a batch mean, so its step size depends on the batch size,
            as in that code).
        lr, momentum: of the "published" variant's SGD (Default: 100.0, 0.9, hag.py L13-14).
        model_mode: "eval" (Default) or "train" (see ``HashingAttack``).
        seed: seed of the random start (Default: 0).

    Shape:
        - images: (N, C, H, W) float in [0, 1].
        - output: (N, C, H, W) adversarial images in [0, 1], within eps of the images.

    Examples::
        >>> attack = HAG(model, eps=8/255, alpha=1/255, steps=100)
        >>> adv_images = attack(images, labels, snapshot_steps=(0, 10, 50, 100))   # labels unused
        >>> [row["grad_norm"] for row in attack.history]      # vanishing gradients, grow vs fixed
        >>> published = HAG(model, variant="published", steps=2000)   # the SAAT code's HAG, step for step
    """

    def __init__(self, model, *, eps: float = 8 / 255, alpha: float = 1 / 255, steps: int = 100,
                 random_start: bool = False, threshold: float = 0.5, scale_schedule: str = "grow",
                 fixed_scale: float = 1.0, variant: str = "paper", lr: float = 100.0, momentum: float = 0.9,
                 model_mode: str = "eval", seed: int = 0):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start,
                         model_mode=model_mode, seed=seed)
        check_choice("scale_schedule", scale_schedule, SCALE_SCHEDULES)
        check_choice("variant", variant, HAG_VARIANTS, hint=" ('paper' = the paper's loss and sign steps, "
                     "'published' = SAAT hag.py's loss and SGD)")
        if variant == "published" and scale_schedule != "grow":
            raise ValueError("the published HAG grows the tanh scale (SAAT util.py get_alpha); HAG* "
                             "(scale_schedule='fixed') is a form of the paper's variant: use variant='paper'")
        if not fixed_scale > 0:
            raise ValueError(f"fixed_scale (the tanh scale of HAG*) must be > 0; got {fixed_scale!r}")
        if threshold < 0 or lr <= 0 or not 0 <= momentum < 1:
            raise ValueError(f"need threshold >= 0, lr > 0 and momentum in [0, 1); got {threshold}, {lr}, {momentum}")
        self.threshold, self.scale_schedule, self.fixed_scale = threshold, scale_schedule, float(fixed_scale)
        self.variant, self.lr, self.momentum = variant, lr, momentum

    def scale(self, step: int) -> float:
        """The tanh scale of iteration ``step``."""
        return hag_scale(step, self.steps) if self.scale_schedule == "grow" else self.fixed_scale

    def forward(self, images: torch.Tensor, guide: None = None) -> torch.Tensor:
        with torch.no_grad():
            clean_logits = self.model.hash_logits(images)                       # (N, K), computed once
        if self.variant == "published":
            return self._published_steps(images, clean_logits)
        return self._paper_steps(images, clean_logits)

    def _paper_steps(self, images: torch.Tensor, clean_logits: torch.Tensor) -> torch.Tensor:
        """Sign steps on :func:`hag_loss`, F(x_q) = tanh(scale z_q) at the current scale."""
        clean_codes = binarize(clean_logits)
        adv = self.start_point(images)
        clean_relaxed, clean_scale = None, None
        for step in range(self.steps):
            scale = self.scale(step)
            if scale != clean_scale:  # F(x_q) = tanh(scale z_q), recomputed only when the scale changes
                clean_relaxed, clean_scale = torch.tanh(scale * clean_logits), scale
            adv.requires_grad_(True)
            logits = self.model.hash_logits(adv)                                 # (N, K)
            loss = hag_loss(torch.tanh(scale * logits), clean_relaxed, threshold=self.threshold)
            grad, = torch.autograd.grad(loss, adv)
            with torch.no_grad():
                adv = self.project(adv - self.alpha * grad.sign(), images)
            self.record(step, loss=loss, grad=grad, logits=logits, clean_codes=clean_codes, scale=scale)
            self.snapshot(step + 1, adv)
        return adv.detach()

    def _published_steps(self, images: torch.Tensor, clean_logits: torch.Tensor) -> torch.Tensor:
        """SAAT hag.py L51-77: SGD on the perturbation of :func:`hag_published_loss`, F(x_q) once at scale 1."""
        clean_codes = binarize(clean_logits)
        clean_relaxed = torch.tanh(clean_logits)                                 # hag.py L53
        adv = self.start_point(images)
        delta = (adv - images).requires_grad_(True)
        optimizer = torch.optim.SGD([delta], lr=self.lr, momentum=self.momentum)
        for step in range(self.steps):
            scale = self.scale(step)
            adv = images + delta
            logits = self.model.hash_logits(adv)                                 # (N, K)
            loss = hag_published_loss(torch.tanh(scale * logits), clean_relaxed, threshold=self.threshold)
            grad, = torch.autograd.grad(loss, delta)
            delta.grad = grad
            optimizer.step()
            with torch.no_grad():
                delta.copy_(self.project(images + delta, images) - images)
                adv = images + delta
            self.record(step, loss=loss, grad=grad, logits=logits, clean_codes=clean_codes, scale=scale)
            self.snapshot(step + 1, adv)
        return adv.detach()
