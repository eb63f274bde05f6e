"""The shared base of every attack: argument checks, device, model mode, projection, bookkeeping.

An attack is a small class with ``forward(images, ...)`` (torchattacks style). The base class
``HashingAttack`` does everything else around it:

- checks the arguments (``eps`` in [0, 1] pixel units, e.g. 8/255) and the images ([0, 1] floats);
- moves the images to the model's device and back;
- puts the model in ``model_mode`` for the attack and restores every module's own mode afterwards;
- projects onto the L-inf ball and [0, 1], and checks the result really lies there;
- keeps ``snapshots`` (attack strength vs iterations from one run) and a per-iteration ``history``.

Free functions: :func:`perturb` (many images in batches), :func:`perturbation_stats` and
:func:`combine_perturbations` (HAG's ensemble of perturbations r1 + r2 + ...).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from ..models import binarize

MODEL_MODES = ("eval", "train")
_TOLERANCE = 1e-6  # float32 rounding of images +- eps


class HashingAttack:
    """Base class of the attacks on deep hashing models (L-inf, [0, 1] images).

    Arguments:
        model: an ``advhash.models.HashingModel`` (anything with ``hash_logits(images) -> z`` and
            ``forward(images, alpha) -> tanh(alpha * z)``), taking raw [0, 1] images.
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

    After a call:
        ``snapshots``: {step: adversarial images (cpu)} for every step in ``snapshot_steps``;
            step t is the iterate after t iterations, step 0 the start point.
        ``history``: one dict per iteration t = 0 .. steps-1, measured at the iterate x_t the
            iteration starts from (the one ``snapshots[t]`` holds): ``step``, ``loss``,
            ``grad_norm`` (mean per-image L2 norm of the input gradient), ``flipped_fraction``
            (fraction of bits whose sign differs from the clean code), ``scale`` (tanh scale).

    Shape: images (N, C, H, W) float in [0, 1] -> adversarial images of the same shape, dtype and device.
    """

    def __init__(self, model: nn.Module, *, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10,
                 random_start: bool = False, model_mode: str = "eval", seed: int = 0):
        if not (isinstance(eps, (int, float)) and 0 <= eps <= 1):
            raise ValueError(f"eps is in [0,1] pixel units, e.g. 8/255 for 8 grey levels; got eps={eps!r}")
        if not (isinstance(alpha, (int, float)) and alpha > 0):
            raise ValueError(f"alpha (the step size, [0,1] pixel units, e.g. 2/255) must be > 0; got {alpha!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an integer >= 0 (number of iterations); got {steps!r}")
        if model_mode not in MODEL_MODES:
            raise ValueError(f"model_mode must be one of {MODEL_MODES}; got {model_mode!r}")
        self.model = model
        self.eps, self.alpha, self.steps = float(eps), float(alpha), steps
        self.random_start, self.model_mode, self.seed = random_start, model_mode, seed
        self.generator = torch.Generator().manual_seed(seed)
        self.snapshots: dict[int, torch.Tensor] = {}
        self.history: list[dict[str, float]] = []
        self._snapshot_steps: frozenset[int] = frozenset()
        self._stats: list[tuple[int, float, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(eps={self.eps * 255:.3g}/255, alpha={self.alpha * 255:.3g}/255, "
                f"steps={self.steps}, random_start={self.random_start}, model_mode={self.model_mode!r})")

    # --- the call -------------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, *args, snapshot_steps: Iterable[int] = (), **kwargs) -> torch.Tensor:
        check_images(images)
        steps = set(snapshot_steps)
        bad = sorted(s for s in steps if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= self.steps)
        if bad:
            raise ValueError(f"snapshot_steps must be integers in [0, steps={self.steps}]; got {bad}")
        self._snapshot_steps = frozenset(steps)
        self.snapshots, self.history, self._stats = {}, [], []
        device = next(self.model.parameters()).device
        clean = images.to(device)
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.train(self.model_mode == "train")
        try:
            adversarial = self.forward(clean, *args, **kwargs).detach()
        finally:
            for module, training in modes:
                module.training = training
        self._finish_history()
        distance = (adversarial - clean).abs().max() if adversarial.numel() else torch.tensor(0.0)
        assert distance <= self.eps + _TOLERANCE and adversarial.min() >= 0 and adversarial.max() <= 1, \
            f"{type(self).__name__} left the eps-ball or [0, 1] (L-inf distance {distance.item():.3g})"
        return adversarial.to(images.device)

    def forward(self, images: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    # --- helpers for forward --------------------------------------------------------------------
    def project(self, adv: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Clip ``adv`` to the L-inf ball of radius eps around ``images``, then to [0, 1]."""
        return torch.clamp(torch.minimum(torch.maximum(adv, images - self.eps), images + self.eps), 0, 1)

    def random_init(self, images: torch.Tensor) -> torch.Tensor:
        """A uniform point of the eps-ball around ``images`` (clipped to [0, 1]), drawn from the
        attack's seeded generator on the CPU, so the start is the same on every device."""
        noise = torch.rand(images.shape, generator=self.generator, dtype=images.dtype)
        noise = noise.to(images.device).mul_(2 * self.eps).sub_(self.eps)
        return self.project(images + noise, images)

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
        """Keep a CPU copy of the iterate after ``step`` iterations if that step was requested."""
        if step in self._snapshot_steps:
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


def check_images(images: Any) -> None:
    """Images must be a floating tensor (N, C, H, W) with values in [0, 1]."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        kind = f"{images.dtype} tensor" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a float tensor with values in [0, 1] (e.g. uint8 / 255); got a {kind}")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"images must have values in [0, 1] (normalization happens inside the model); got "
                         f"range [{images.min().item():.3g}, {images.max().item():.3g}]")


def perturb(attack: HashingAttack, images: torch.Tensor, *per_image: torch.Tensor, batch_size: int = 128,
            **kwargs) -> torch.Tensor:
    """Run ``attack`` over many images in batches of ``batch_size``. ``per_image`` tensors (one row
    per image, e.g. the center codes or target codes a guided attack steers by) are cut into the same
    batches and passed positionally after the images; ``kwargs`` (e.g. ``snapshot_steps``) go to
    every call unchanged.

    Afterwards ``attack.snapshots[t]`` holds the step-t iterates of all images (concatenated in
    order) and ``attack.history`` one entry per iteration, each value averaged over the batches
    weighted by batch size, i.e. the mean over all images (``step`` and ``scale`` are the same in
    every batch). Any attack with this calling convention works, e.g. ``advhash.crossmodal.CMLA``.
    The random start continues the attack's random stream from batch to batch.
    """
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    for index, rows in enumerate(per_image):
        if not isinstance(rows, torch.Tensor) or len(rows) != len(images):
            size = len(rows) if isinstance(rows, torch.Tensor) else type(rows).__name__
            raise ValueError(f"per-image argument {index} must be a tensor with one row per image "
                             f"({len(images)}); got {size}")
    outputs, snapshots, histories, sizes = [], {}, [], []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        outputs.append(attack(batch, *(rows[start:start + batch_size] for rows in per_image), **kwargs))
        for step, snap in attack.snapshots.items():
            snapshots.setdefault(step, []).append(snap)
        histories.append(attack.history)
        sizes.append(len(batch))
    attack.snapshots = {step: torch.cat(parts) for step, parts in sorted(snapshots.items())}
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
