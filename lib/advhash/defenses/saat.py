"""SAAT adversarial training: Yuan, Zhang, Wang, Wu, "Semantic-Aware Adversarial Training for Reliable Deep
Hashing Retrieval", IEEE TIFS 2023 (arXiv 2310.14637), the minimax objective of section III-E.

    min_theta  L_hash(x; theta)  -  lambda * mean( h(x_adv) * b_m )  +  mu * mean( (h(x_adv) - sign h(x_adv))^2 ),
    x_adv = argmax_{||x' - x||_inf <= eps}  d_H( h(x'), b_m ),

with b_m the mainstay code of each training item (``advhash.codes.mainstay_codes``) from the current
code table of the training set, refreshed with every batch's clean codes; the inner maximization is
PGD-7 at step 2/255 with random start and tanh scale 1 on the plain relaxed distance mean(h(x') * b_m) (the
paper's d_H and the published adv_training.py L11-13, L16-32; ``inner_loss``: the other SAAT attack losses);
lambda = 1 and mu = 1e-4 as the SAAT code (adv_training.py L97-100; ``docs/methods.md``, section SAAT training).
``tables="published"`` reproduces the published code's shared table storage (L64-74, L94-97).
The SAAT code trains DPH victims (AlexNet/VGG) for 20 epochs with SGD 5e-2 from the clean model.
"""

from __future__ import annotations

import torch

from ..attacks import SAAT
from ..attacks.saat import SAAT_LOSSES
from ..codes import mainstay_codes
from ..models import binarize
from .base import AdversarialTraining


class SAATTraining(AdversarialTraining):
    """SAAT's mainstay-guided minimax adversarial training (Yuan et al., TIFS 2023,
    https://arxiv.org/abs/2310.14637); module docstring for the objective.

    Arguments:
        num_train, bits, num_classes: the training split's size, the code length and label width.
        eps, alpha, steps, random_start, model_mode: the inner SAAT attack (Default: 8/255, 2/255, 7, True, "train").
        inner_loss: the inner attack's objective, an ``advhash.attacks.SAAT`` loss: "inner" (Default: mean(h * b_m),
            the paper's and the published adv_training.py L11-13), "masked" (the SAAT attack's published masked
            loss) or "masked_per_row".
        tables: "paper" (Default: the code table holds sign codes, the loss's table starts empty) or "published"
            (adv_training.py L64-74: the loss's table preinstalled with the training codes and labels, and one
            storage for both tables, so after the mainstay codes of L95 the loss's write of L97 leaves the batch's
            relaxed outputs in the code table; ``AdversarialTraining``).
        weight: lambda of the mainstay alignment of adversarial codes (Default: 1.0).
        quantization_weight: mu of the adversarial codes' quantization term (Default: 1e-4).

    Example::
        >>> defense = SAATTraining(num_train=len(data.train), bits=32, num_classes=data.num_classes)
        >>> robust, history = fit_defended_model(data, clean_model, defense, method="dph", epochs=20)
    """

    name = "saat"

    def __init__(self, *, num_train: int, bits: int, num_classes: int, eps: float = 8 / 255,
                 alpha: float = 2 / 255, steps: int = 7, random_start: bool = True, model_mode: str = "train",
                 weight: float = 1.0, quantization_weight: float = 1e-4, inner_loss: str = "inner",
                 tables: str = "paper"):
        super().__init__(num_train=num_train, bits=bits, num_classes=num_classes, eps=eps, alpha=alpha,
                         steps=steps, random_start=random_start, model_mode=model_mode, tables=tables)
        if inner_loss not in SAAT_LOSSES:
            raise ValueError(f"inner_loss must be one of {SAAT_LOSSES}; got {inner_loss!r}")
        self.weight, self.quantization_weight = float(weight), float(quantization_weight)
        self.inner_loss = inner_loss

    @property
    def config(self):
        return dict(super().config, weight=self.weight, quantization_weight=self.quantization_weight,
                    inner_loss=self.inner_loss)

    def mainstays(self, labels: torch.Tensor) -> torch.Tensor:
        """Mainstay codes (B, K) of a batch's labels against the current code table."""
        return mainstay_codes(labels, self.code_table, self.label_table)

    def batch_loss(self, model, loss, images, labels, indices, *, step: int) -> torch.Tensor:
        attack = SAAT(model, eps=self.eps, alpha=self.alpha, steps=self.steps, random_start=self.random_start,
                      loss=self.inner_loss, scale_schedule="fixed", model_mode=self.model_mode,
                      seed=self.attack_seed(step), keep_history=False)
        adversarial = attack.run(images, self.mainstays(labels))                # inner max: away from b_m
        hashing, relaxed, adversarial_relaxed = self.outer_forward(model, loss, images, adversarial, labels,
                                                                   indices, step=step)
        mainstays = self.mainstays(labels)                                      # refreshed table (L94-95)
        if self.tables == "published":                  # L97: the loss writes h(x) into the shared storage
            with torch.no_grad():
                self.code_table[indices] = relaxed.detach()
        alignment = (adversarial_relaxed * mainstays).mean()
        quantization = (adversarial_relaxed - binarize(adversarial_relaxed).detach()).pow(2).mean()
        return hashing - self.weight * alignment + self.quantization_weight * quantization
