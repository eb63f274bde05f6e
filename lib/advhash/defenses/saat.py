"""SAAT adversarial training: Yuan, Zhang, Wang, Wu, "Semantic-Aware Adversarial Training for Reliable Deep
Hashing Retrieval", IEEE TIFS 2023 (arXiv 2310.14637), the minimax objective of section III-E.

    min_theta  L_hash(x; theta)  -  lambda * mean( h(x_adv) * b_m )  +  mu * mean( (h(x_adv) - sign h(x_adv))^2 ),
    x_adv = argmax_{||x' - x||_inf <= eps}  d_H( h(x'), b_m ),

with b_m the mainstay code of each training item (``advhash.codes.mainstay_codes``) from the current code table of
the training set, refreshed with every batch's clean codes; the inner maximization is PGD-7 at step 2/255 with
random start and tanh scale 1 on mean(h(x') * b_m) (the paper's d_H, which the published adv_training.py L11-13,
L16-32 also uses); lambda = 1 and mu = 1e-4 as the SAAT code (L97-100). ``variant="published"`` is the published
code as a whole: ``torch.sign``'s tie rule for the mainstay codes and its shared table storage (L64-74, L94-97).
``docs/methods.md``, section SAAT training.
"""

from __future__ import annotations

import torch

from ..attacks import SAAT, code_alignment_loss
from ..codes import MAINSTAY_VARIANTS, mainstay_codes
from ..models import binarize
from ..utils import check_choice
from .base import AdversarialTraining


class SAATTraining(AdversarialTraining):
    """SAAT's mainstay-guided minimax adversarial training (Yuan et al., TIFS 2023,
    https://arxiv.org/abs/2310.14637); module docstring for the objective.

    Arguments:
        num_train, bits, num_classes: the training split's size, the code length and label width.
        eps, alpha, steps, random_start, model_mode: the inner SAAT attack (Default: 8/255, 2/255, 7, True, "train").
        variant: "paper" (Default: a tied bit of a mainstay code is +1; the code table holds sign codes, the loss's
            table starts empty) or "published" (``torch.sign``, adv_attack.py L30: a tied bit is 0; and
            adv_training.py L64-74: the loss's table preinstalled with the training codes and labels, one storage
            for both tables, so after the mainstay codes of L95 the loss's write of L97 leaves the batch's relaxed
            outputs in the code table; ``AdversarialTraining``).
        weight: lambda of the mainstay alignment of adversarial codes (Default: 1.0).
        quantization_weight: mu of the adversarial codes' quantization term (Default: 1e-4).

    Example::
        >>> defense = SAATTraining(num_train=len(data.train), bits=32, num_classes=data.num_classes)
        >>> robust, history = fit_defended_model(data, clean_model, defense, method="dph", epochs=20)
    """

    name = "saat"

    def __init__(self, *, num_train: int, bits: int, num_classes: int, eps: float = 8 / 255,
                 alpha: float = 2 / 255, steps: int = 7, random_start: bool = True, model_mode: str = "train",
                 weight: float = 1.0, quantization_weight: float = 1e-4, variant: str = "paper"):
        check_choice("variant", variant, MAINSTAY_VARIANTS, hint=" (SAAT training as the paper states it, or as "
                     "the published code computes it)")
        super().__init__(num_train=num_train, bits=bits, num_classes=num_classes, eps=eps, alpha=alpha,
                         steps=steps, random_start=random_start, model_mode=model_mode)
        self.weight, self.quantization_weight = float(weight), float(quantization_weight)
        self.variant = variant

    @property
    def shared_tables(self) -> bool:
        """The published variant's one storage for the code and loss tables (``AdversarialTraining``)."""
        return self.variant == "published"

    @property
    def config(self):
        return dict(super().config, weight=self.weight, quantization_weight=self.quantization_weight,
                    variant=self.variant)

    def mainstays(self, labels: torch.Tensor) -> torch.Tensor:
        """Mainstay codes (B, K) of a batch's labels against the current code table."""
        return mainstay_codes(labels, self.code_table, self.label_table, variant=self.variant)

    def batch_loss(self, model, loss, images, labels, indices, *, step: int) -> torch.Tensor:
        attack = SAAT(model, eps=self.eps, alpha=self.alpha, steps=self.steps, random_start=self.random_start,
                      variant="paper", scale_schedule="fixed", model_mode=self.model_mode,
                      seed=self.attack_seed(step), keep_history=False)
        # inner max: away from b_m by mean(h * b_m) (SAAT's "paper" loss, the published training's too), b_m given
        adversarial = attack.run(images, self.mainstays(labels))
        hashing, relaxed, adversarial_relaxed = self.outer_forward(model, loss, images, adversarial, labels,
                                                                   indices, step=step)
        mainstays = self.mainstays(labels)                                      # refreshed table (L94-95)
        if self.shared_tables:                          # L97: the loss writes h(x) into the shared storage
            with torch.no_grad():
                self.code_table[indices] = relaxed.detach()
        alignment = code_alignment_loss(adversarial_relaxed, mainstays, toward=False)        # <h, b_m> / K
        quantization = (adversarial_relaxed - binarize(adversarial_relaxed).detach()).pow(2).mean()
        return hashing - self.weight * alignment + self.quantization_weight * quantization
