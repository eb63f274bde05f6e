"""CMLA: Li, Gao, Deng, Xie, Liu, "Cross-Modal Learning with Adversarial Samples", NeurIPS 2019.

CMLA perturbs an image (or a text) so that its code stops matching the *other* modality's codes of the
items it should retrieve (inter-modal similarity broken) while staying close to its own modality's codes
(intra-modal similarity kept, so the sample still looks like itself to same-modality search), at a small
distortion. For an image batch x with perturbation variable delta, adversarial images x^ = clamp(x + delta, 0, 1),
relaxed adversarial codes H^ = tanh(z(x^)), the clean codes B^t of the paired texts and B^v of the clean images,
S_ij = 1[i, j share a label] and c the scale of the code products (``inner_product=``):

    Gamma_ij = c H^_i . B^t_j,      Theta_ij = c H^_i . B^v_j,
    J_inter = mean_ij ( S_ij Gamma_ij + log(1 + e^-Gamma_ij) )    the likelihood with S flipped: similar pairs
                                                                   pushed apart, dissimilar ones together,
    J_intra = mean_ij ( log(1 + e^Theta_ij) - S_ij Theta_ij )     the likelihood itself: similarity kept,
    J_dist  = u mean |x^ - x|                                      u the distortion's scale (``distortion_units=``),
    min_delta  inter_weight J_inter + intra_weight J_intra + distortion_weight J_dist,   all weights 1 (Default),

pairs (i, j) within the batch, and the same with the roles of image and text swapped for a text attack (tags
y^ = clamp(y + delta, 0, 1)). Adam from delta = 0 (learning rate 0.5 on the 0-255 pixel scale, i.e. 0.5/255 here,
and 0.002 on tag vectors), 500 iterations.

Where each piece comes from (the published code is ChaoLi1991/CMLA ``demo_learn_AdversarialSampls.py``):
- the paper, as the authors' poster writes its objective (ChaoLi1991/CMLA ``neurips19_CMLA.pdf``, commit dd9d8a0):
  the two likelihood terms with Gamma_ij = 1/2 H^v_i H^t_j^T and Theta_ij = 1/2 H^v_i H^v_j^T (c = 1/2, the
  DCMH/SSAH definition), plus the sum over samples of ||o^ - o||_p, all with weight 1 (sums where advhash takes
  means); its o are those of its D, which it reports on [0, 1] images (D ~ 0.02);
- the published code: the means above with c = 1 (L198-203 for an image attack, L210-215 for a text attack), the L1
  term on 0-255 pixels with weight eps_I = 1 (L201, L93) and on tags with eps_T = 1 (L213, L67); the adversarial
  images clipped to [0, 255] (L186) and tags to [0, 1] (L190) before the network and the L1 term, and the samples
  it keeps clipped again (L79, L104); the noise clipped to [0, 10] pixel levels and [0, 0.01] after every Adam
  step (L232-233, run at L102 and L77).

The options, each named for what it computes:
- ``inner_product``: ``"half"`` (Default, the paper: c = 1/2) or ``"full"`` (the published code: c = 1,
  L198-199 and L210-211).
- ``distortion_units``: ``"unit"`` (Default, the paper's o: J_dist measured on the [0, 1] inputs, u = 1) or
  ``"levels"`` (the published code: an image attack's J_dist measured in 0-255 pixel levels, u = 255 on [0, 1]
  images, L201 with eps_I = 1 at L93). Tags are 0/1 vectors in both, so a text attack's u is 1 either way (L213,
  eps_T = 1 at L67).
- ``constraint``: ``"penalty"`` (Default, the paper: the minimal perturbation is asked of J_dist alone) or
  ``"clip"`` (the published code: after every Adam step delta is clipped to [0, max_noise], one-sided, 10/255 for
  images and 0.01 for tags, L232-233).
The paper does not say how samples are kept in range, so both constraints keep them in [0, 1] as the published
code does (L186, L190): delta itself is not projected, the network and J_dist see clamp(x + delta, 0, 1) with the
gradient of ``tf.clip_by_value`` (1 on [0, 1], bounds included, 0 outside), and the returned sample is
clamp(x + delta, 0, 1). Not reproduced: the published loop keeps the sample made from the noise fetched in the same
session run as the Adam step (L75-79, L100-104), a fetch not ordered against the update (so either the previous
iterate or this step's result before its clip); advhash returns the sample after the step and its clip.

The distortion the paper reports beside every number is D = sqrt( sum (o^ - o)^2 / M ), M the number of
elements of a sample, averaged over samples (:func:`cmla_distortion`; [0, 1] pixel units).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..metrics import relevance

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
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}; got {modality!r}")
        if constraint not in CONSTRAINTS:
            raise ValueError(f"constraint must be one of {CONSTRAINTS}; got {constraint!r}")
        if inner_product not in INNER_PRODUCTS:
            raise ValueError(f"inner_product must be one of {tuple(INNER_PRODUCTS)}; got {inner_product!r}")
        if distortion_units not in DISTORTION_UNITS:
            raise ValueError(f"distortion_units must be one of {DISTORTION_UNITS}; got {distortion_units!r}")
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
