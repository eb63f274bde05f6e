"""Per-iteration time of the attacks (HAG, HammingPGD, the code-guided center / DHTA / SAAT attacks, SDHA, and
CMLA on the image network) against a bare forward + backward loop.

The bare loop is the floor any gradient attack pays per iteration: ``h = model(x)``,
``loss = h.sum()``, ``torch.autograd.grad(loss, x)``. The attacks add the loss, the mask, the
projection and the bookkeeping (history, snapshots); their time per iteration includes the
one-off clean forward pass and checks, spread over the iterations of a run. SDHA also scores every
iteration against a table of 3,000 training codes (half of them relevant to each query) and takes
an Adam step. Same batch of 128
images, eval mode; the three runs take turns, best of several repeats (other jobs may share the
cores). Target: ratio <= 1.2.

Run: ``python benchmarks/bench_attacks.py`` (add ``--quick`` to skip resnet18).
"""

from __future__ import annotations

import sys
import time

import torch

from advhash.attacks import DHTA, HAG, SAAT, SDHA, CenterGuidedAttack, HammingPGD
from advhash.crossmodal import CMLA
from advhash.models import HashingModel

BATCH, BITS, TABLE = 128, 32, 3_000
# (backbone, channels, image size, iterations per timed run, repeats: best of)
SETTINGS = [("small_cnn", 1, 28, 20, 7), ("resnet18", 3, 32, 5, 3)]


def bare_loop(model: HashingModel, images: torch.Tensor, steps: int) -> None:
    x = images.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        grad, = torch.autograd.grad(model(x).sum(), x)
        x = (x + 1e-3 * grad.sign()).detach()


def best_ms_per_iteration(runs: dict, steps: int, repeats: int) -> dict[str, float]:
    """Best time of each run in ``runs`` (name -> function), in ms per iteration. The runs take
    turns within every repeat, so a burst of load from other jobs hits them alike."""
    best = {name: float("inf") for name in runs}
    for repeat in range(repeats + 1):  # the first round is a warm-up
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            if repeat:
                best[name] = min(best[name], time.perf_counter() - start)
    return {name: 1000 * seconds / steps for name, seconds in best.items()}


def main(argv: list[str]) -> None:
    torch.manual_seed(0)
    settings = SETTINGS[:1] if "--quick" in argv else SETTINGS
    print(f"batch {BATCH}, {BITS} bits, eval mode, {torch.get_num_threads()} threads")
    print(f"{'backbone':<10} {'input':<8} {'its':>4} {'bare ms/it':>10} {'attack':<12} {'ms/it':>8} {'ratio':>6}")
    for backbone, channels, size, steps, repeats in settings:
        model = HashingModel(backbone, bits=BITS, in_channels=channels).eval()
        images = torch.rand(BATCH, channels, size, size, generator=torch.Generator().manual_seed(0))
        codes = torch.where(torch.rand(BATCH, BITS, generator=torch.Generator().manual_seed(1)) < 0.5, -1.0, 1.0)
        table = torch.where(torch.rand(TABLE, BITS, generator=torch.Generator().manual_seed(2)) < 0.5, -1.0, 1.0)
        table_labels = torch.eye(2)[torch.arange(TABLE) % 2]
        labels = torch.eye(2)[torch.arange(BATCH) % 2]
        attacks = {"HAG": HAG(model, steps=steps), "HammingPGD": HammingPGD(model, steps=steps),
                   "center": CenterGuidedAttack(model, steps=steps), "DHTA": DHTA(model, steps=steps),
                   "SAAT": SAAT(model, steps=steps), "SDHA": SDHA(model, table, table_labels, steps=steps),
                   "CMLA": CMLA(model, modality="image", steps=steps)}
        extra = {"center": (codes,), "DHTA": (codes,), "SAAT": (codes,), "SDHA": (labels,),
                 "CMLA": (labels, -codes, codes)}   # per-image arguments
        runs = {"bare": lambda: bare_loop(model, images, steps)}
        runs.update({name: (lambda a=attack, args=extra.get(name, ()): a(images, *args))
                     for name, attack in attacks.items()})
        ms = best_ms_per_iteration(runs, steps, repeats)
        for name in attacks:
            print(f"{backbone:<10} {channels}x{size}x{size:<3} {steps:>4} {ms['bare']:>10.2f} {name:<12} "
                  f"{ms[name]:>8.2f} {ms[name] / ms['bare']:>6.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
