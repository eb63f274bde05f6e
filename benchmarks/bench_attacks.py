"""Per-iteration time of the attacks (every attack of ``advhash.attacks.ATTACKS``: HammingPGD, HAG, the
code-guided center / P2P / DHTA / SAAT attacks and SDHA; and CMLA on the image network) against a bare
forward + backward loop.

The bare loop is the floor any gradient attack pays per iteration: ``h = model(x)``,
``loss = h.sum()``, ``torch.autograd.grad(loss, x)``. The attacks add the loss, the mask, the
projection and the bookkeeping (history, snapshots); their time per iteration includes the
one-off clean forward pass, the checks and the guide codes read from the victim (center, mainstay or
anchor codes), spread over the iterations of a run. Every attack is called the way a user calls it:
built on a victim (``advhash.Victim``) whose training set and database are a table of 3,000 codes (two
classes, so half of them are relevant to each query), given its targets with ``set_targets`` where it
needs them, then ``perturb(attack, images, labels)``. SDHA also scores every iteration against that
table and takes an Adam step. Same batch of 128 images, eval mode; the runs take turns, best of several
repeats (other jobs may share the cores). Target: ratio <= 1.2.

Run: ``python benchmarks/bench_attacks.py`` (add ``--quick`` to skip resnet18).
"""

from __future__ import annotations

import sys
import time

import torch

from advhash.attacks import ATTACKS, build_attack, perturb
from advhash.codes import sample_target_labels
from advhash.crossmodal import CMLA
from advhash.models import HashingModel
from advhash.victim import Victim

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


def random_codes(n: int, bits: int, seed: int) -> torch.Tensor:
    return torch.where(torch.rand(n, bits, generator=torch.Generator().manual_seed(seed)) < 0.5, -1.0, 1.0)


def build_runs(model: HashingModel, images: torch.Tensor, steps: int, *, table: int = TABLE) -> dict:
    """name -> a function running that attack once on ``images``, as a user calls it: every registered
    attack built on a victim whose training set and database are a random table of ``table`` codes with
    two classes, targets drawn for the targeted ones, ``perturb(attack, images, labels)``; and CMLA, the
    cross-modal attack, with its pair's codes."""
    table_labels = torch.eye(2)[torch.arange(table) % 2]
    codes = random_codes(table, model.bits, seed=2)
    victim = Victim(model, train_codes=codes, train_labels=table_labels, db_codes=codes, db_labels=table_labels)
    labels = torch.eye(2)[torch.arange(len(images)) % 2]
    targets = sample_target_labels(labels, table_labels, generator=torch.Generator().manual_seed(0))
    runs = {}
    for name in ATTACKS:
        attack = build_attack(name, victim, steps=steps)
        if attack.target_mode == "required":
            attack.set_targets(targets)
        runs[name] = lambda a=attack: perturb(a, images, labels, batch_size=len(images))
    pair_codes = random_codes(len(images), model.bits, seed=1)
    cmla = CMLA(model, modality="image", steps=steps).set_pairs(-pair_codes, pair_codes)
    runs["cmla"] = lambda: perturb(cmla, images, labels, batch_size=len(images))
    return runs


def main(argv: list[str]) -> None:
    torch.manual_seed(0)
    settings = SETTINGS[:1] if "--quick" in argv else SETTINGS
    print(f"batch {BATCH}, {BITS} bits, eval mode, {torch.get_num_threads()} threads")
    print(f"{'backbone':<10} {'input':<8} {'its':>4} {'bare ms/it':>10} {'attack':<12} {'ms/it':>8} {'ratio':>6}")
    for backbone, channels, size, steps, repeats in settings:
        model = HashingModel(backbone, bits=BITS, in_channels=channels).eval()
        images = torch.rand(BATCH, channels, size, size, generator=torch.Generator().manual_seed(0))
        attacks = build_runs(model, images, steps)
        runs = {"bare": lambda: bare_loop(model, images, steps), **attacks}
        ms = best_ms_per_iteration(runs, steps, repeats)
        for name in attacks:
            print(f"{backbone:<10} {channels}x{size}x{size:<3} {steps:>4} {ms['bare']:>10.2f} {name:<12} "
                  f"{ms[name]:>8.2f} {ms[name] / ms['bare']:>6.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
