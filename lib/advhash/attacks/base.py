"""The shared base of every attack: argument checks, device, model mode, projection, bookkeeping.

An attack is a small class (torchattacks style) built on a victim, and every attack is called the same way:

    attack = SAAT(victim, eps=8/255)            # victim: advhash.Victim.build(model, data), or a bare model
    adv_images = attack(images, labels)         # labels: the queries' multi-hot labels (N, L)
    attack.set_targets(target_labels)           # targeted attacks (P2P, DHTA, SAAT, SDHA): once, (N, L)
    adv_images = perturb(attack, images, labels, batch_size=128)   # many images, in batches

The codes an attack steers by come from its victim (:meth:`HashingAttack.guide`), once per call; the adversarial
trainers pass their own per-batch guide codes to :meth:`HashingAttack.run`. ``HashingAttack`` does the rest: checks,
device, ``model_mode`` (restored afterwards), projection onto the L-inf ball and [0, 1] (checked), ``snapshots``
and ``history``. Free functions: :func:`perturb`, :func:`perturbation_stats`, :func:`combine_perturbations`
(HAG's ensemble of perturbations r1 + r2 + ...).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import torch

from ..models import binarize
from ..utils import check_choice, check_images, progress
from ..victim import Victim, as_victim

MODEL_MODES = ("eval", "train")
_TOLERANCE = 1e-6  # float32 rounding of images +- eps


class HashingAttack:
    """Base class of the attacks on deep hashing models (L-inf, [0, 1] images).

    Arguments:
        model: the victim, an ``advhash.Victim`` (a hashing model with its codes of the training set and
            the database: what the guided attacks steer by) or a bare hashing model (anything with
            ``hash_logits(images) -> z``), taking raw [0, 1] images.
        eps: maximum perturbation in [0, 1] pixel units (Default: 8/255).
        alpha: step size of one iteration (Default: 2/255).
        steps: number of iterations (Default: 10); 0 returns the start point.
        random_start: start from a uniform point of the eps-ball instead of the clean images.
        model_mode: ``"eval"`` (Default: BatchNorm uses its running statistics, dropout is off) or
            ``"train"`` (batch statistics, dropout on, BatchNorm running statistics are updated), the
            mode SAAT and CgAT generate their adversarial examples in during adversarial training.
            Every module's previous mode is restored after the call.
        seed: seed of the attack's own ``torch.Generator`` (random start): a fresh attack with the
            same seed reproduces a run; successive calls of one attack continue its random stream.

    The call: ``attack(images, labels=None, snapshot_steps=(), snapshot_codes=False)``; ``labels`` (N, L) are the queries'
    multi-hot labels (the non-targeted guided attacks need them; HAG and PGD ignore them). A targeted
    attack takes its target labels once, ``attack.set_targets(target_labels)`` (N, L), one row per image
    of the next calls (``perturb`` cuts them into its batches).

    After a call:
        ``snapshots``: {step: adversarial images (cpu)} for every step in ``snapshot_steps`` (their codes
            (N, K) with ``snapshot_codes=True``); step t is the iterate after t iterations, step 0 the start.
        ``history``: one dict per iteration t = 0 .. steps-1, measured at the iterate x_t the
            iteration starts from (the one ``snapshots[t]`` holds): ``step``, ``loss``,
            ``grad_norm`` (mean per-image L2 norm of the input gradient), ``flipped_fraction``
            (fraction of bits whose sign differs from the clean code), ``scale`` (tanh scale).

    Shape: images (N, C, H, W) float in [0, 1] -> adversarial images of the same shape, dtype and device.
    """

    #: targets: "never" (HAG, PGD, the center attack), "optional" (SAAT, SDHA) or "required" (P2P, DHTA)
    target_mode = "never"

    def __init__(self, model, *, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10,
                 random_start: bool = False, model_mode: str = "eval", seed: int = 0):
        if not (isinstance(eps, (int, float)) and 0 <= eps <= 1):
            raise ValueError(f"eps is in [0,1] pixel units, e.g. 8/255 for 8 grey levels; got eps={eps!r}")
        if not (isinstance(alpha, (int, float)) and alpha > 0):
            raise ValueError(f"alpha (the step size, [0,1] pixel units, e.g. 2/255) must be > 0; got {alpha!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an integer >= 0 (number of iterations); got {steps!r}")
        check_choice("model_mode", model_mode, MODEL_MODES)
        self.victim: Victim = as_victim(model)
        self.model = self.victim.model
        self.eps, self.alpha, self.steps = float(eps), float(alpha), steps
        self.random_start, self.model_mode, self.seed = random_start, model_mode, seed
        self.generator = torch.Generator().manual_seed(seed)
        self.target_labels: torch.Tensor | None = None
        self.snapshots: dict[int, torch.Tensor] = {}
        self.history: list[dict[str, float]] = []
        self._snapshot_steps: frozenset[int] = frozenset()
        self._stats: list[tuple[int, float, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(eps={self.eps * 255:.3g}/255, alpha={self.alpha * 255:.3g}/255, "
                f"steps={self.steps}, random_start={self.random_start}, model_mode={self.model_mode!r})")

    # --- targets ----------------------------------------------------------------------------------
    def set_targets(self, target_labels: torch.Tensor | None) -> "HashingAttack":
        """Make the attack targeted at ``target_labels`` (N, L) multi-hot, one row per image of the next
        calls (``advhash.codes.sample_target_labels`` draws them); ``None`` makes it non-targeted again
        (where it can be). Returns the attack."""
        if target_labels is None:
            if self.target_mode == "required":
                raise ValueError(f"{type(self).__name__} is a targeted attack; it needs target labels")
        else:
            if self.target_mode == "never":
                raise ValueError(f"{type(self).__name__} is a non-targeted attack; it takes no target labels "
                                 "(targeted attacks: P2P, DHTA, SAAT, SDHA)")
            target_labels = check_labels(target_labels, name="target_labels")
        self.target_labels = target_labels
        return self

    @property
    def targeted(self) -> bool:
        return self.target_labels is not None

    # --- the call -------------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None, *,
                 snapshot_steps: Iterable[int] = (), snapshot_codes: bool = False) -> torch.Tensor:
        check_images(images)
        return self.run(images, self.prepare(len(images), labels), snapshot_steps=snapshot_steps,
                        snapshot_codes=snapshot_codes)

    def prepare(self, count: int, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The per-image guide rows of ``count`` images with ``labels``: :meth:`guide` after the checks
        that labels and targets have one row per image."""
        if labels is not None:
            labels = check_labels(labels)
            if len(labels) != count:
                raise ValueError(f"labels need one row per image: {len(labels)} rows for {count} images")
        if self.target_mode == "required" and self.target_labels is None:
            raise ValueError(f"{type(self).__name__} is a targeted attack: call attack.set_targets(target_labels) "
                             "first (advhash.codes.sample_target_labels draws them)")
        if self.target_labels is not None and len(self.target_labels) != count:
            raise ValueError(f"set_targets gave {len(self.target_labels)} target rows for {count} images: one "
                             "target row per attacked image")
        return self.guide(labels, self.target_labels)

    def guide(self, labels: torch.Tensor | None, targets: torch.Tensor | None) -> torch.Tensor | None:
        """What steers each image, one row per image (e.g. center, mainstay or anchor codes), computed
        once from the victim for all images of a call: ``None`` here (the attack needs only the image)."""
        return None

    def run(self, images: torch.Tensor, guide: torch.Tensor | None = None, *,
            snapshot_steps: Iterable[int] = (), snapshot_codes: bool = False) -> torch.Tensor:
        """Attack ``images`` steered by ``guide`` (one row per image, as :meth:`guide` makes them, or
        given directly, e.g. by an adversarial trainer from its own code table). With ``snapshot_codes`` the
        snapshots hold the iterates' codes sign(z) (N, K) instead of the images: what scoring them needs, and
        a few bytes instead of a float32 copy of every image at every mark (eval-mode attacks only)."""
        check_images(images)
        if guide is not None and len(guide) != len(images):
            raise ValueError(f"the guide needs one row per image: {len(guide)} rows for {len(images)} images")
        steps = set(snapshot_steps)
        bad = sorted(s for s in steps if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= self.steps)
        if bad:
            raise ValueError(f"snapshot_steps must be integers in [0, steps={self.steps}]; got {bad}")
        if snapshot_codes and self.model_mode != "eval":
            raise ValueError("snapshot_codes encodes the iterates with the model, which in train mode would update "
                             "its BatchNorm statistics: snapshot images instead, or attack in eval mode")
        self._snapshot_steps, self._snapshot_codes = frozenset(steps), snapshot_codes
        self.snapshots, self.history, self._stats = {}, [], []
        device = next(self.model.parameters()).device
        clean = images.to(device)
        guide = None if guide is None else guide.to(device)
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.train(self.model_mode == "train")
        try:
            adversarial = self.forward(clean, guide).detach()
        finally:
            for module, training in modes:
                module.training = training
        self._finish_history()
        if adversarial.numel():                               # no images: nothing to check (and no min/max)
            distance = (adversarial - clean).abs().max()
            assert distance <= self.eps + _TOLERANCE and adversarial.min() >= 0 and adversarial.max() <= 1, \
                f"{type(self).__name__} left the eps-ball or [0, 1] (L-inf distance {distance.item():.3g})"
        return adversarial.to(images.device)

    def forward(self, images: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    # --- helpers for forward --------------------------------------------------------------------
    def project(self, adv: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Clip ``adv`` to the L-inf ball of radius eps around ``images``, then to [0, 1]."""
        return torch.clamp(torch.minimum(torch.maximum(adv, images - self.eps), images + self.eps), 0, 1)

    def random_init(self, images: torch.Tensor) -> torch.Tensor:
        """A uniform point of the eps-ball around ``images`` (clipped to [0, 1]), drawn on the images' device from
        the attack's generator for that device, seeded with ``seed``: the same numbers on every run on one device
        (a GPU draws other numbers than the CPU, and no host-to-device copy of the noise is made)."""
        noise = torch.rand(images.shape, generator=self.generator_on(images.device), dtype=images.dtype,
                           device=images.device)
        noise = noise.mul_(2 * self.eps).sub_(self.eps)
        return self.project(images + noise, images)

    def generator_on(self, device: torch.device) -> torch.Generator:
        """The attack's random stream on ``device``: ``self.generator`` on the CPU, else one generator per device,
        seeded with ``seed`` when first used; successive calls continue it."""
        if device.type == "cpu":
            return self.generator
        generators = self.__dict__.setdefault("_device_generators", {})
        if str(device) not in generators:
            generators[str(device)] = torch.Generator(device=device).manual_seed(self.seed)
        return generators[str(device)]

    def start_point(self, images: torch.Tensor) -> torch.Tensor:
        """x_0: ``random_init`` with ``random_start``, else a copy of the clean images (snapshot 0)."""
        adv = self.random_init(images) if self.random_start else images.clone()
        self.snapshot(0, adv)
        return adv

    @torch.no_grad()
    def clean_codes(self, images: torch.Tensor) -> torch.Tensor:
        """Sign codes b = sign(z) in {-1, +1} (N, K) of the clean images, in the attack's model mode."""
        return binarize(self.model.hash_logits(images))

    def snapshot(self, step: int, adv: torch.Tensor) -> None:
        """Keep a CPU copy of the iterate after ``step`` iterations (or of its codes, with ``snapshot_codes``)
        if that step was requested."""
        if step in self._snapshot_steps:
            if getattr(self, "_snapshot_codes", False):
                with torch.no_grad():
                    self.snapshots[step] = binarize(self.model.hash_logits(adv.detach())).cpu()
            else:
                self.snapshots[step] = adv.detach().to("cpu", copy=True)

    @torch.no_grad()
    def record(self, step: int, *, loss: torch.Tensor, grad: torch.Tensor, logits: torch.Tensor,
               clean_codes: torch.Tensor, scale: float) -> None:
        """Log iteration ``step`` from tensors the iteration already has (no host sync here; the
        numbers are read once, at the end of the call). ``logits`` are z of the current iterate."""
        grad_norm = grad.flatten(1).norm(dim=1).mean()
        flipped = ((logits >= 0) != (clean_codes > 0)).float().mean()
        self._stats.append((step, float(scale), loss.detach(), grad_norm, flipped))

    def _finish_history(self) -> None:
        if not self._stats:
            return
        values = torch.stack([torch.stack([loss.float(), norm.float(), flipped])
                              for _, _, loss, norm, flipped in self._stats]).cpu().tolist()
        self.history = [dict(step=step, loss=v[0], grad_norm=v[1], flipped_fraction=v[2], scale=scale)
                        for (step, scale, *_), v in zip(self._stats, values)]
        self._stats = []


def check_labels(labels: Any, *, name: str = "labels") -> torch.Tensor:
    """Labels must be a 2-D multi-hot 0/1 matrix (N, L); returned as float32."""
    labels = torch.as_tensor(labels)
    if labels.ndim != 2:
        raise ValueError(f"{name} must be multi-hot rows (N, L), one per image; got shape {tuple(labels.shape)}")
    labels = labels.float()
    if labels.numel() and not ((labels == 0) | (labels == 1)).all():
        raise ValueError(f"{name} must hold 0/1 values (multi-hot); got values "
                         f"{sorted(set(labels.unique().tolist()) - {0.0, 1.0})[:5]}")
    return labels


def perturb(attack, images: torch.Tensor, labels: torch.Tensor | None = None, *, batch_size: int = 128,
            **kwargs) -> torch.Tensor:
    """Run ``attack`` over many images in batches of ``batch_size``: the same call as
    ``attack(images, labels)``, with the same result for every batch size where the attack treats
    images independently. The attack computes its per-image guide rows once for all images
    (``attack.prepare(n, labels)``: the codes it steers by, its targets, CMLA's pair codes), then
    attacks batch by batch (``attack.run(batch, guide_rows)``); ``kwargs`` (e.g. ``snapshot_steps``) go to
    every batch unchanged. Any attack with ``prepare`` and ``run`` works: every :class:`HashingAttack`,
    and ``advhash.crossmodal.CMLA``.

    Afterwards ``attack.snapshots[t]`` holds the step-t iterates of all images (concatenated in
    order) and ``attack.history`` one entry per iteration, each value averaged over the batches
    weighted by batch size, i.e. the mean over all images (``step`` and ``scale`` are the same in
    every batch). The random start continues the attack's random stream from batch to batch.
    """
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if not (hasattr(attack, "prepare") and hasattr(attack, "run")):
        raise TypeError(f"perturb runs attacks with prepare() and run() (HashingAttack, CMLA); got "
                        f"{type(attack).__name__}")
    check_images(images)
    if labels is not None:
        labels = check_labels(labels)
        if len(labels) != len(images):
            raise ValueError(f"labels need one row per image ({len(images)}); got {len(labels)}")
    guide = attack.prepare(len(images), labels)
    outputs, snapshots, histories, sizes = [], {}, [], []
    bar = progress(total=len(images), desc=type(attack).__name__, unit="image")   # a terminal only
    for start in range(0, len(images), batch_size):
        stop = min(start + batch_size, len(images))
        outputs.append(attack.run(images[start:stop], None if guide is None else guide[start:stop], **kwargs))
        bar.update(stop - start)
        for step, snap in attack.snapshots.items():
            snapshots.setdefault(step, []).append(snap)
        histories.append(attack.history)
        sizes.append(stop - start)
    attack.snapshots = {step: torch.cat(parts) for step, parts in sorted(snapshots.items())}
    bar.close()
    attack.history = _average_histories(histories, sizes)
    return torch.cat(outputs) if outputs else images.clone()


def _average_histories(histories: Sequence[list[dict]], sizes: Sequence[int]) -> list[dict]:
    if not histories:
        return []
    total = sum(sizes)
    merged = []
    for entries in zip(*histories):
        row = {}
        for key, value in entries[0].items():   # step and scale are the same in every batch; the rest averages
            row[key] = value if key in ("step", "scale") else sum(e[key] * n for e, n in zip(entries, sizes)) / total
        merged.append(row)
    return merged


@torch.no_grad()
def perturbation_stats(images: torch.Tensor, adversarial: torch.Tensor) -> dict[str, float]:
    """Size of the perturbation r = adversarial - images (both (N, C, H, W) in [0, 1]).

    Returns:
        ``linf_255``: max |r| over all pixels and images, in grey levels (x255);
        ``l2``: mean over images of ||r||_2, in [0, 1] units;
        ``psnr``: mean over the perturbed images of 10 log10(1 / MSE) in dB (peak 1); images left
            unchanged (infinite PSNR) are left out of the mean, and it is ``inf`` when none changed.
    """
    if images.shape != adversarial.shape:
        raise ValueError(f"images {tuple(images.shape)} and adversarial {tuple(adversarial.shape)} differ in shape")
    r = (adversarial.double() - images.double()).flatten(1)
    if r.numel() == 0:
        return dict(linf_255=0.0, l2=0.0, psnr=math.inf)
    mse = r.pow(2).mean(dim=1)
    changed = mse > 0
    psnr = (-10 * torch.log10(mse[changed])).mean().item() if changed.any() else math.inf
    return dict(linf_255=r.abs().max().item() * 255, l2=r.norm(dim=1).mean().item(), psnr=psnr)


@torch.no_grad()
def combine_perturbations(images: torch.Tensor, adversarials: Sequence[torch.Tensor], *, eps: float) -> torch.Tensor:
    """The ensemble of perturbations of HAG's transfer table (Yang et al. 2018, "r1 + r2 + ..."):
    r = sum_i (adversarials[i] - images), clipped to the L-inf ball [-eps, eps], and the result
    ``images + r`` clipped to [0, 1]. All tensors (N, C, H, W) in [0, 1]; eps in [0, 1] units."""
    if not 0 <= eps <= 1:
        raise ValueError(f"eps is in [0,1] pixel units, e.g. 8/255; got eps={eps!r}")
    if len(adversarials) == 0:
        raise ValueError("combine_perturbations needs at least one adversarial batch")
    total = torch.zeros_like(images)
    for adversarial in adversarials:
        if adversarial.shape != images.shape:
            raise ValueError(f"adversarial images {tuple(adversarial.shape)} do not match images {tuple(images.shape)}")
        total += adversarial.to(images) - images
    return (images + total.clamp(-eps, eps)).clamp(0, 1)
