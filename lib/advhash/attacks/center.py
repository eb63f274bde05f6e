"""CgAT's center-guided attack: the worst-case adversarial example of Wang, Lin, Li, WWW 2023."""

from __future__ import annotations

from ..codes import CENTER_VARIANTS, center_codes
from ..utils import check_choice
from .base import check_labels
from .guided import CodeGuidedAttack


class CenterGuidedAttack(CodeGuidedAttack):
    r"""The attack of "CgAT: Center-Guided Adversarial Training for Deep Hashing-Based Retrieval"
    (Wang, Lin, Li, WWW 2023, https://arxiv.org/abs/2204.10779), section "worst adversarial examples".

    Non-targeted: maximizes the Hamming distance between the adversarial code and the query's
    **center code** c (``advhash.codes.center_codes``, Theorem 1, from the victim's codes of the
    training set and the query's labels), relaxed as
    ``min mean(tanh(z(x_adv)) * c)`` (:func:`code_alignment_loss`), by PGD. The center code stands for
    the query's whole semantic neighbourhood, so moving away from it moves away from every positive.
    Defaults are the paper's training-time attack (PGD-7, step 2/255, random start); evaluations
    use more iterations (the SAAT authors' center attack: 100 at step 1/255, growing scale).

    Distance Measure : Linf

    Arguments:
        model: the victim (``advhash.Victim``: the model with its codes of the training set).
        eps: maximum perturbation, [0, 1] units (Default: 8/255).
        alpha: sign-gradient step size (Default: 2/255).
        steps: number of iterations (Default: 7).
        random_start: start from a uniform random point of the eps-ball (Default: True).
        variant: center codes of the "paper" (Default, Theorem 1) or the "published" code
            (``advhash.codes.center_codes``).
        scale_schedule: "fixed" (Default, the CgAT code: tanh(z)) or "grow" (HAG's schedule).
        fixed_scale: tanh scale of the "fixed" schedule (Default: 1.0).
        model_mode: "eval" (Default) or "train" (the CgAT code attacks in train mode during training).
        seed: seed of the random start (Default: 0).
        keep_history: fill ``history`` (Default: True).

    Shape:
        - images: (N, C, H, W) float in [0, 1].
        - labels: (N, L) multi-hot labels of the queries (their center codes steer the attack).
        - output: (N, C, H, W) adversarial images in [0, 1], within eps of the images.

    Examples::
        >>> victim = Victim.build(model, data)
        >>> attack = CenterGuidedAttack(victim, eps=8/255, alpha=1/255, steps=100)
        >>> adv_images = perturb(attack, images, labels)
    """

    toward = False

    def __init__(self, model, *, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 7,
                 random_start: bool = True, variant: str = "paper", scale_schedule: str = "fixed",
                 fixed_scale: float = 1.0, model_mode: str = "eval", seed: int = 0, keep_history: bool = True):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start,
                         scale_schedule=scale_schedule, fixed_scale=fixed_scale, model_mode=model_mode, seed=seed,
                         keep_history=keep_history)
        self.variant = check_choice("variant", variant, CENTER_VARIANTS)

    def guide(self, labels, targets):
        """The center code of each query (N, K), from the victim's training codes."""
        if labels is None:
            raise ValueError("CenterGuidedAttack steers each query away from its center code: "
                             "call attack(images, labels)")
        table_codes, table_labels = self.victim.require("train", type(self).__name__)
        return center_codes(check_labels(labels), table_codes, table_labels, variant=self.variant)
