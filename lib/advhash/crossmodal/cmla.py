"""CMLA: Li, Gao, Deng, Xie, Liu, "Cross-Modal Learning with Adversarial Samples", NeurIPS 2019.

CMLA perturbs an image (or a text) so that its code stops matching the *other* modality's codes of the items it
should retrieve (inter-modal similarity broken) while staying close to its own modality's codes (intra-modal
similarity kept), at a small distortion. With x^ = clamp(x + delta, 0, 1), H^ = tanh(z(x^)), S_ij = 1[i, j share a
label] in the batch, Gamma = c H^ B^o' and Theta = c H^ B^s' (B^o, B^s: clean codes of the other and the same modality):

    min_delta  mean(S Gamma + log(1 + e^-Gamma)) + mean(log(1 + e^Theta) - S Theta) + u mean|x^ - x|,

Adam from delta = 0. Each option is the paper's form (Default) or the published code's (ChaoLi1991/CMLA
``demo_learn_AdversarialSampls.py``): ``inner_product`` "half" / "full" (c = 1/2 / 1, L198-199), ``distortion_units``
"unit" / "levels" (u = 1 / 255 on images, L201), ``constraint`` "penalty" / "clip" (delta clipped to [0, max_noise]
after each step, L232-233). The distortion reported beside every number is D = sqrt(sum (o^ - o)^2 / M) per sample,
averaged (:func:`cmla_distortion`). Every published line, the [0, 1] box, the departures: ``docs/methods.md``, CMLA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..metrics import relevance
from ..utils import check_choice

CONSTRAINTS = ("penalty", "clip")
MODALITIES = ("image", "text")
INNER_PRODUCTS = {"half": 0.5, "full": 1.0}            # c of Gamma, Theta = c H^ B^T: the paper, the published code
DISTORTION_UNITS = ("unit", "levels")                  # J_dist on the [0, 1] inputs (paper), on 0-255 levels (code)
_DEFAULTS = {"image": dict(lr=0.5 / 255, max_noise=10 / 255), "text": dict(lr=0.002, max_noise=0.01)}


def cmla_inter_loss(adv_relaxed: torch.Tensor, other_codes: torch.Tensor, similarity: torch.Tensor, *,
                    scale: float = 0.5) -> torch.Tensor:
    """J_inter = mean_ij (S_ij Gamma_ij + log(1 + e^-Gamma_ij)), Gamma = scale * H^ B_other^T: the cross-modal
    likelihood with the similarity flipped. ``scale`` 0.5 (Default) is the paper's Gamma; 1 is the published code's
    (ChaoLi1991/CMLA demo_learn_AdversarialSampls.py L198, L200 and L210, L212). (n, K), (m, K), (n, m) -> scalar."""
    gamma = scale * adv_relaxed @ other_codes.T
    return (similarity * gamma + F.softplus(-gamma)).mean()


def cmla_intra_loss(adv_relaxed: torch.Tensor, own_codes: torch.Tensor, similarity: torch.Tensor, *,
                    scale: float = 0.5) -> torch.Tensor:
    """J_intra = mean_ij (log(1 + e^Theta_ij) - S_ij Theta_ij), Theta = scale * H^ B_own^T: the same-modality
    likelihood, kept. ``scale`` 0.5 (Default) is the paper's Theta; 1 is the published code's (ChaoLi1991/CMLA
    demo_learn_AdversarialSampls.py L199, L202 and L211, L214). (n, K), (m, K), (n, m) -> scalar."""
    theta = scale * adv_relaxed @ own_codes.T
    return (F.softplus(theta) - similarity * theta).mean()


@torch.no_grad()
def cmla_distortion(original: torch.Tensor, adversarial: torch.Tensor) -> float:
    """The paper's D = sqrt(sum (o^ - o)^2 / M) per sample (M its number of elements), averaged over samples."""
    if original.shape != adversarial.shape:
        raise ValueError(f"original {tuple(original.shape)} and adversarial {tuple(adversarial.shape)} differ")
    if original.numel() == 0:
        return 0.0
    difference = (adversarial.double() - original.double()).flatten(1)
    return difference.pow(2).mean(1).sqrt().mean().item()


class CMLA:
    r"""The adversarial samples of "Cross-Modal Learning with Adversarial Samples" (Li, Gao, Deng, Xie, Liu,
    NeurIPS 2019, https://papers.nips.cc/paper/9262-cross-modal-learning-with-adversarial-samples).

    Perturbs one modality of a batch of pairs so that its codes leave the other modality's codes of
    similar items while keeping its own modality's (module docstring for the objective, the constraints and
    which option is the paper's and which the published code's).

    Distance Measure : L1 penalty (paper), or one-sided clipping (the published code)

    Arguments:
        network: the attacked modality's network (``model.image`` or ``model.text`` of a
            ``CrossModalHashing``; anything with ``hash_logits``).
        modality: "image" (Default; inputs in [0, 1]) or "text" (tag vectors in [0, 1]).
        steps: Adam iterations (Default: 500).
        lr: Adam's learning rate (Default: 0.5/255 for images, 0.002 for texts).
        constraint: "penalty" (Default, the paper) or "clip" (the published code, demo_learn_AdversarialSampls.py
            L232-233). The samples stay in [0, 1] under both (L186, L190).
        max_noise: the clip's upper bound (Default: 10/255 for images, 0.01 for texts; "clip" only).
        inner_product: "half" (Default, the paper: Gamma, Theta = 1/2 H^ B^T) or "full" (the published code:
            H^ B^T, L198-199 and L210-211).
        distortion_units: "unit" (Default, the paper: mean|x^ - x| on the [0, 1] inputs) or "levels" (the published
            code: an image attack's L1 term on 0-255 pixel levels, 255 mean|x^ - x| on [0, 1] images, L201 with
            eps_I = 1 at L93). A text attack's term is mean|y^ - y| under both (L213, eps_T = 1 at L67).
        inter_weight, intra_weight, distortion_weight: weights of J_inter, J_intra, J_dist (Default: 1, 1, 1).

    The call is every attack's, ``attack(inputs, labels)``; the codes of the attacked pairs are given once,
    ``attack.set_pairs(other_codes, own_codes)``, as a targeted image attack takes its targets.

    Shape:
        - inputs: (N, C, H, W) images in [0, 1] or (N, T) tag vectors in [0, 1].
        - labels: (N, L) multi-hot; S is computed within the batch.
        - set_pairs: other_codes (N, K), the clean codes of the other modality of the same items (the paired
          texts of an image batch); own_codes (N, K), the clean codes of the inputs themselves.
        - output: adversarial inputs of the inputs' shape, in [0, 1].

    Examples::
        >>> attack = CMLA(model.image, modality="image", steps=500)
        >>> attack.set_pairs(encode(model.text, texts), encode(model.image, images))
        >>> adv_images = perturb(attack, images, labels, batch_size=128)
        >>> published = CMLA(model.image, constraint="clip", inner_product="full", distortion_units="levels")

    ``advhash.attacks.perturb`` runs it in batches (128 in the published code; S is formed within each batch).
    """

    def __init__(self, network, *, modality: str = "image", steps: int = 500, lr: float | None = None,
                 constraint: str = "penalty", max_noise: float | None = None, inner_product: str = "half",
                 distortion_units: str = "unit", inter_weight: float = 1.0, intra_weight: float = 1.0,
                 distortion_weight: float = 1.0):
        check_choice("modality", modality, MODALITIES)
        check_choice("constraint", constraint, CONSTRAINTS)
        check_choice("inner_product", inner_product, INNER_PRODUCTS)
        check_choice("distortion_units", distortion_units, DISTORTION_UNITS)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an integer >= 0; got {steps!r}")
        lr = _DEFAULTS[modality]["lr"] if lr is None else lr
        max_noise = _DEFAULTS[modality]["max_noise"] if max_noise is None else max_noise
        if not lr > 0 or not max_noise > 0:
            raise ValueError(f"lr and max_noise must be > 0; got {lr!r}, {max_noise!r}")
        if modality == "image" and max_noise > 1:
            raise ValueError(f"max_noise is in [0, 1] pixel units for images, e.g. 10/255; got {max_noise!r}")
        self.network, self.modality, self.steps, self.lr = network, modality, steps, float(lr)
        self.constraint, self.max_noise = constraint, float(max_noise)
        self.inner_product, self.distortion_units = inner_product, distortion_units
        self.inter_weight, self.intra_weight = float(inter_weight), float(intra_weight)
        self.distortion_weight = float(distortion_weight)
        self.history: list[dict[str, float]] = []
        self.snapshots: dict[int, torch.Tensor] = {}
        self.pair_codes: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def product_scale(self) -> float:
        """c of Gamma, Theta = c H^ B^T: 0.5 for ``inner_product="half"``, 1 for ``"full"``."""
        return INNER_PRODUCTS[self.inner_product]

    @property
    def distortion_scale(self) -> float:
        """u of J_dist = u mean|x^ - x|: 255 for an image attack with ``distortion_units="levels"``, else 1."""
        return 255.0 if self.modality == "image" and self.distortion_units == "levels" else 1.0

    def __repr__(self) -> str:
        return (f"CMLA(modality={self.modality!r}, steps={self.steps}, lr={self.lr:.4g}, "
                f"constraint={self.constraint!r}, max_noise={self.max_noise:.4g}, "
                f"inner_product={self.inner_product!r}, distortion_units={self.distortion_units!r})")

    def loss(self, adv_relaxed, difference, labels, other_codes, own_codes) -> dict[str, torch.Tensor]:
        """The terms J_inter, J_intra, J_dist (module docstring) and their weighted sum (``total``), for a batch;
        ``difference`` is x^ - x, the adversarial inputs (after the box) less the clean ones."""
        similarity = relevance(labels, labels).float()
        scale = self.product_scale
        terms = dict(inter=cmla_inter_loss(adv_relaxed, other_codes, similarity, scale=scale),
                     intra=cmla_intra_loss(adv_relaxed, own_codes, similarity, scale=scale),
                     distortion=self.distortion_scale * difference.abs().mean())
        terms["total"] = (self.inter_weight * terms["inter"] + self.intra_weight * terms["intra"] +
                          self.distortion_weight * terms["distortion"])
        return terms

    @staticmethod
    def adversarial(inputs: torch.Tensor, perturbation: torch.Tensor) -> torch.Tensor:
        """x^ = clamp(x + delta, 0, 1): the sample the network and J_dist see, and the one returned
        (demo_learn_AdversarialSampls.py L186, L190; L79, L104). Its gradient is the published code's
        (``tf.clip_by_value``, a minimum then a maximum): 1 where 0 <= x + delta <= 1, bounds included, so a
        pixel or tag at 0 or 1 moves from delta = 0; 0 outside. (``torch.clamp`` drops it on the bounds.)"""
        value = inputs + perturbation
        return torch.where(value > 1, 1.0, torch.where(value < 0, 0.0, value))

    def set_pairs(self, other_codes: torch.Tensor, own_codes: torch.Tensor) -> "CMLA":
        """The clean codes of the attacked pairs, one row per input of the next calls: ``other_codes`` (N, K)
        of the other modality (the paired texts of an image batch), ``own_codes`` (N, K) of the inputs
        themselves (``perturb`` cuts them into its batches). Returns the attack."""
        other_codes, own_codes = torch.as_tensor(other_codes).float(), torch.as_tensor(own_codes).float()
        if other_codes.ndim != 2 or other_codes.shape != own_codes.shape:
            raise ValueError(f"other_codes and own_codes are (N, K) codes of the same pairs; got "
                             f"{tuple(other_codes.shape)} and {tuple(own_codes.shape)}")
        bits = getattr(self.network, "bits", other_codes.shape[1])
        if other_codes.shape[1] != bits:
            raise ValueError(f"codes must have the network's {bits} bits; got {other_codes.shape[1]}")
        self.pair_codes = (other_codes, own_codes)
        return self

    def prepare(self, count: int, labels: torch.Tensor) -> torch.Tensor:
        """The per-input guide rows of ``count`` inputs: [labels | other codes | own codes] (N, L + 2K), cut into
        batches by ``advhash.attacks.perturb`` and split again by :meth:`run`."""
        if self.pair_codes is None:
            raise ValueError("CMLA needs the clean codes of the attacked pairs: call attack.set_pairs(other_codes, "
                             "own_codes) first")
        if labels is None:
            raise ValueError("CMLA forms S from the labels: call attack(inputs, labels)")
        other_codes, own_codes = self.pair_codes
        labels = torch.as_tensor(labels).float()
        if not (len(labels) == len(other_codes) == count):
            raise ValueError(f"one row of labels and of the pairs' codes (set_pairs) per input ({count}); got "
                             f"{len(labels)} and {len(other_codes)}")
        return torch.cat([labels, other_codes, own_codes], dim=1)

    def __call__(self, inputs: torch.Tensor, labels: torch.Tensor, *, snapshot_steps=()) -> torch.Tensor:
        return self.run(inputs, self.prepare(len(inputs), labels), snapshot_steps=snapshot_steps)

    def run(self, inputs: torch.Tensor, guide: torch.Tensor, *, snapshot_steps=()) -> torch.Tensor:
        """Attack ``inputs`` with the guide rows of :meth:`prepare` (one per input).
        ``snapshot_steps``: iteration counts t whose adversarial inputs are kept in ``snapshots[t]`` (CPU);
        Adam from delta = 0 with no schedule, so the iterate after t steps is what a t-step attack returns."""
        bits = getattr(self.network, "bits", None) or self.pair_codes[0].shape[1]
        labels, other_codes, own_codes = guide[:, :-2 * bits], guide[:, -2 * bits:-bits], guide[:, -bits:]
        n = len(inputs)
        wanted = sorted(set(snapshot_steps))
        if any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= self.steps for t in wanted):
            raise ValueError(f"snapshot_steps must be integers in [0, steps={self.steps}]; got {wanted}")
        if not (len(labels) == len(other_codes) == len(own_codes) == n):
            raise ValueError(f"one row of labels, other_codes and own_codes per input ({n}); got "
                             f"{len(labels)}, {len(other_codes)}, {len(own_codes)}")
        bits = getattr(self.network, "bits", other_codes.shape[1])
        if other_codes.shape[1] != bits or own_codes.shape[1] != bits:
            raise ValueError(f"codes must have the network's {bits} bits; got {other_codes.shape[1]} and "
                             f"{own_codes.shape[1]}")
        if inputs.numel() and (inputs.min() < 0 or inputs.max() > 1):
            raise ValueError("images must be floats in [0, 1] (normalization happens inside the model)"
                             if self.modality == "image" else "tag vectors must be in [0, 1]")
        device = next(self.network.parameters()).device
        clean = inputs.to(device).float()
        labels, other_codes, own_codes = (t.to(device).float() for t in (labels, other_codes, own_codes))
        modes = [(module, module.training) for module in self.network.modules()]
        self.network.eval()
        stats, self.snapshots = [], {}
        try:
            perturbation = torch.zeros_like(clean, requires_grad=True)
            optimizer = torch.optim.Adam([perturbation], lr=self.lr)
            if 0 in wanted:
                self.snapshots[0] = clean.cpu().clone()
            for step in range(1, self.steps + 1):
                adversarial = self.adversarial(clean, perturbation)
                relaxed = torch.tanh(self.network.hash_logits(adversarial))
                terms = self.loss(relaxed, adversarial - clean, labels, other_codes, own_codes)
                perturbation.grad, = torch.autograd.grad(terms["total"], perturbation)   # model weights untouched
                optimizer.step()
                if self.constraint == "clip":
                    with torch.no_grad():
                        perturbation.clamp_(0, self.max_noise)
                if step in wanted:
                    self.snapshots[step] = self.adversarial(clean, perturbation.detach()).to(inputs.device, copy=True)
                stats.append(torch.stack([terms[key].detach() for key in ("total", "inter", "intra", "distortion")]))
        finally:
            for module, training in modes:
                module.training = training
        values = torch.stack(stats).cpu().tolist() if stats else []
        self.history = [dict(step=i + 1, loss=v[0], inter=v[1], intra=v[2], distortion=v[3])
                        for i, v in enumerate(values)]
        return self.adversarial(clean, perturbation.detach()).to(inputs.device)
