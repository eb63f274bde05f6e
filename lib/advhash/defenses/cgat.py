"""CgAT: Wang, Lin, Li, "CgAT: Center-Guided Adversarial Training for Deep Hashing-Based Retrieval",
WWW 2023 (arXiv 2204.10779), the min-max objective of section 3.3.

    min_theta  L_hash(x; theta)  -  lambda * mean( h(x_adv) * c ),
    x_adv = argmax_{||x' - x||_inf <= eps}  d_H( h(x'), c ),

with c the center code of each training item (``advhash.codes.center_codes``) from the *current* code table of the training set, refreshed with every batch's clean codes,
computed before the attack and again after the table update (central_adv_train.py L116, L128). The inner
maximization is ``CenterGuidedAttack`` (PGD-7, step 2/255, random start, train mode); lambda = 1; the hashing
loss is any ``advhash.losses`` loss (DPSH there). ``variant="published"`` is the published code as a whole: its
center codes and its shared storage of the code and loss tables (L97-104, L123-124). ``docs/methods.md``, CgAT
training.
"""

from __future__ import annotations

import torch

from ..attacks import CenterGuidedAttack, code_alignment_loss
from ..codes import CENTER_VARIANTS, center_codes
from ..utils import check_choice
from .base import AdversarialTraining


class CgAT(AdversarialTraining):
    """Center-guided adversarial training (Wang, Lin, Li, WWW 2023, https://arxiv.org/abs/2204.10779).

    Arguments:
        num_train, bits, num_classes: the training split's size, the code length and label width.
        eps, alpha, steps, random_start, model_mode: the inner attack (Default: 8/255, 2/255, 7, True,
            "train"; see ``AdversarialTraining``).
        weight: lambda of the center alignment of adversarial codes (Default: 1.0, as the code).
        variant: "paper" (Default: the paper's center codes, sign codes in the code table) or "published" (the
            published code's center codes, ``advhash.codes.center``, and its shared tables, central_adv_train.py
            L97-104, L123-124: the loss's table preinstalled with the training codes, and the batch's relaxed
            outputs written into the code table before the centers of the outer loss; ``AdversarialTraining``).

    Example::
        >>> defense = CgAT(num_train=len(data.train), bits=32, num_classes=data.num_classes)
        >>> robust, history = fit_defended_model(data, clean_model, defense, method="dpsh", epochs=30)
    """

    name = "cgat"

    def __init__(self, *, num_train: int, bits: int, num_classes: int, eps: float = 8 / 255,
                 alpha: float = 2 / 255, steps: int = 7, random_start: bool = True, model_mode: str = "train",
                 weight: float = 1.0, variant: str = "paper"):
        check_choice("variant", variant, CENTER_VARIANTS, hint=" (CgAT as the paper states it, or as the "
                     "published code computes it)")
        super().__init__(num_train=num_train, bits=bits, num_classes=num_classes, eps=eps, alpha=alpha,
                         steps=steps, random_start=random_start, model_mode=model_mode)
        self.weight, self.variant = float(weight), variant

    @property
    def shared_tables(self) -> bool:
        """The published variant's one storage for the code and loss tables (``AdversarialTraining``)."""
        return self.variant == "published"

    @property
    def config(self):
        return dict(super().config, weight=self.weight, variant=self.variant)

    def centers(self, labels: torch.Tensor) -> torch.Tensor:
        """Center codes (B, K) of a batch's labels against the current code table."""
        return center_codes(labels, self.code_table, self.label_table, variant=self.variant)

    @torch.no_grad()
    def update_codes(self, relaxed: torch.Tensor, indices: torch.Tensor) -> None:
        """The batch's rows of the code table: sign(h(x)) (paper), or h(x) itself with ``variant="published"``
        (central_adv_train.py L123-124, one storage: the relaxed write lands last)."""
        if self.shared_tables:
            self.code_table[indices] = relaxed.detach()
        else:
            super().update_codes(relaxed, indices)

    def batch_loss(self, model, loss, images, labels, indices, *, step: int) -> torch.Tensor:
        attack = CenterGuidedAttack(model, eps=self.eps, alpha=self.alpha, steps=self.steps,
                                    random_start=self.random_start, model_mode=self.model_mode,
                                    seed=self.attack_seed(step), keep_history=False)
        adversarial = attack.run(images, self.centers(labels))                   # inner max: away from c
        hashing, _, adversarial_relaxed = self.outer_forward(model, loss, images, adversarial, labels, indices,
                                                             step=step)
        alignment = code_alignment_loss(adversarial_relaxed, self.centers(labels), toward=False)   # <h, c> / K
        return hashing - self.weight * alignment
