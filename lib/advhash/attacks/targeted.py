"""The targeted attacks P2P and DHTA of Bai et al., "Targeted Attack for Deep Hashing based Retrieval", ECCV 2020."""

from __future__ import annotations

import torch

from ..codes import anchor_codes
from .guided import CodeGuidedAttack


class DHTA(CodeGuidedAttack):
    r"""DHTA in "Targeted Attack for Deep Hashing based Retrieval" (Bai, Chen, Li, Wu, Guo, Xia, Yang,
    ECCV 2020, https://arxiv.org/abs/2004.07955).

    Targeted: moves the query's code toward the **anchor code** of a target label, the majority vote
    of the victim's codes of ``num_anchors`` (n_t = 9) database items with that label
    (``advhash.codes.anchor_codes``; :meth:`anchors` builds them), by minimizing
    ``-mean(tanh(scale z(x_adv)) * a)`` (Eq. 6, :func:`code_alignment_loss`) with HAG's growing scale.
    The paper takes L2-normalized gradient steps in normalized input space (eps 0.032 there); here,
    as in the TADH/SAAT reimplementations, sign steps under the L-inf budget on [0, 1] images.
    Success is t-MAP (``advhash.metrics.targeted_map``): higher = stronger.

    Distance Measure : Linf

    Arguments:
        model: the victim (``advhash.Victim``: the model with its codes of the database).
        eps: maximum perturbation, [0, 1] units (Default: 8/255).
        alpha: sign-gradient step size (Default: 1/255).
        steps: number of iterations (Default: 100; the paper: 2,000).
        random_start: (Default: False, as the paper).
        scale_schedule: "grow" (Default, the paper's tanh-scale schedule) or "fixed".
        fixed_scale: tanh scale of the "fixed" schedule (Default: 1.0).
        model_mode: "eval" (Default) or "train".
        seed: seed of the random start and of the anchor draw in :meth:`anchors` (Default: 0).
        num_anchors: n_t, the database items behind each anchor code (Default: 9; P2P: 1).
        keep_history: fill ``history`` (Default: True).

    Shape:
        - images: (N, C, H, W) float in [0, 1].
        - labels: (N, L) the queries' labels (unused: the targets steer); ``set_targets(target_labels)`` first.
        - output: (N, C, H, W) adversarial images in [0, 1], within eps of the images.

    Examples::
        >>> targets = sample_target_labels(labels, victim.db_labels, min_items=9)
        >>> attack = DHTA(victim, eps=8/255, steps=100).set_targets(targets)
        >>> adv_images = perturb(attack, images, labels)
        >>> targeted_map(victim.encode(adv_images), victim.db_codes, targets, victim.db_labels)
    """

    toward = True
    target_mode = "required"
    num_anchors = 9

    def __init__(self, model, *, eps: float = 8 / 255, alpha: float = 1 / 255, steps: int = 100,
                 random_start: bool = False, scale_schedule: str = "grow", fixed_scale: float = 1.0,
                 model_mode: str = "eval", seed: int = 0, num_anchors: int | None = None,
                 keep_history: bool = True):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start,
                         scale_schedule=scale_schedule, fixed_scale=fixed_scale, model_mode=model_mode, seed=seed,
                         keep_history=keep_history)
        if num_anchors is not None:
            if isinstance(num_anchors, bool) or not isinstance(num_anchors, int) or num_anchors < 1:
                raise ValueError(f"num_anchors (n_t) must be a positive integer; got {num_anchors!r}")
            self.num_anchors = num_anchors

    def anchors(self, target_labels: torch.Tensor, db_codes: torch.Tensor, db_labels: torch.Tensor) -> torch.Tensor:
        """The anchor code of each target label from ``num_anchors`` database items (seeded draw)."""
        generator = torch.Generator().manual_seed(self.seed)
        return anchor_codes(target_labels, db_codes, db_labels, num_anchors=self.num_anchors, generator=generator)

    def guide(self, labels, targets):
        """The anchor code of each target label (N, K), from the victim's database codes."""
        if targets is None:
            raise ValueError(f"{type(self).__name__} is a targeted attack: "
                             "call attack.set_targets(target_labels) first")
        db_codes, db_labels = self.victim.require("db", type(self).__name__)
        return self.anchors(targets, db_codes, db_labels)


class P2P(DHTA):
    r"""P2P (point-to-point) in "Targeted Attack for Deep Hashing based Retrieval" (Bai et al., ECCV 2020,
    https://arxiv.org/abs/2004.07955): DHTA with a single anchor (n_t = 1), i.e. the query moves toward
    the code of one randomly chosen database item of the target label. Same arguments, shapes and
    defaults as :class:`DHTA` (``num_anchors`` defaults to 1).

    Examples::
        >>> adv_images = perturb(P2P(victim, eps=8/255, steps=100).set_targets(targets), images, labels)
    """

    num_anchors = 1
