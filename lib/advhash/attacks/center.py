"""CgAT's center-guided attack: the worst-case adversarial example of Wang, Lin, Li, WWW 2023."""

from __future__ import annotations

from .guided import CodeGuidedAttack


class CenterGuidedAttack(CodeGuidedAttack):
    r"""The attack of "CgAT: Center-Guided Adversarial Training for Deep Hashing-Based Retrieval"
    (Wang, Lin, Li, WWW 2023, https://arxiv.org/abs/2204.10779), section "worst adversarial examples".

    Non-targeted: maximizes the Hamming distance between the adversarial code and the query's
    **center code** c (``advhash.codes.center_codes``, Theorem 1), relaxed as
    ``min mean(tanh(z(x_adv)) * c)`` (:func:`code_alignment_loss`), by PGD. The center code stands for
    the query's whole semantic neighbourhood, so moving away from it moves away from every positive.
    Defaults are the paper's training-time attack (PGD-7, step 2/255, random start); evaluations
    use more iterations (the SAAT authors' center attack: 100 at step 1/255, growing scale).

    Distance Measure : Linf

    Arguments:
        model: hashing model (``advhash.models.HashingModel``) taking [0, 1] images.
        eps: maximum perturbation, [0, 1] units (Default: 8/255).
        alpha: sign-gradient step size (Default: 2/255).
        steps: number of iterations (Default: 7).
        random_start: start from a uniform random point of the eps-ball (Default: True).
        scale_schedule: "fixed" (Default, the CgAT code: tanh(z)) or "grow" (HAG's schedule).
        fixed_scale: tanh scale of the "fixed" schedule (Default: 1.0).
        model_mode: "eval" (Default) or "train" (the CgAT code attacks in train mode during training).
        seed: seed of the random start (Default: 0).
        keep_history: fill ``history`` (Default: True).

    Shape:
        - images: (N, C, H, W) float in [0, 1].
        - center_codes: (N, K) in {-1, +1} (or {-1, 0, +1} from the official variant).
        - output: (N, C, H, W) adversarial images in [0, 1], within eps of the images.

    Examples::
        >>> centers = center_codes(query_labels, encode(model, data.train), data.train.labels)
        >>> attack = CenterGuidedAttack(model, eps=8/255, alpha=1/255, steps=100)
        >>> adv_images = perturb(attack, images, centers)
    """

    toward = False

    def __init__(self, model, *, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 7,
                 random_start: bool = True, scale_schedule: str = "fixed", fixed_scale: float = 1.0,
                 model_mode: str = "eval", seed: int = 0, keep_history: bool = True):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start,
                         scale_schedule=scale_schedule, fixed_scale=fixed_scale, model_mode=model_mode, seed=seed,
                         keep_history=keep_history)

    def forward(self, images, center_codes):
        return super().forward(images, center_codes)
