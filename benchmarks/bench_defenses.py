"""Time of one adversarial-training epoch (CgAT, ATRDH, SAAT) against one clean-training epoch.

PGD-k adversarial training pays, per batch, k forward + backward passes of the inner attack, plus
the forward + backward pass of the clean images and of the adversarial images in the outer loss:
about k + 2 clean passes. Target (the issue): adversarial / clean epoch time <= steps + 2, i.e. 9
for the PGD-7 all three defenses train with. The rest (center codes against the training table, ATRDH's
prototype network step, the table update) should stay small.

Setting: Fashion-Mosaic from ``data/`` (synthetic images and labels of the same shape if it has not
been materialized), 1,000 training items, batch 64, small CNN, 32 bits, the defenses' defaults
(eps 8/255, step 2/255, 7 steps, random start, train mode; ATRDH's (4096, 512) prototype network).
Each clean baseline uses the defense's own loss (CgAT: DPSH, ATRDH and SAAT: DPH). The epoch time is the
training loop's own (``history[0]["seconds"]``: the defense's one-off ``prepare`` is left out); the
runs take turns, best of several repeats (other jobs may share the cores).

One torch thread by default (``--threads N`` to change it): a batch of 64 small 28x28 images does
not feed two threads, and when other jobs share the cores two threads stall each other (measured
here: a clean epoch took 12 s on torch's default 2 threads beside another job, 0.8 s on one).

Run: ``python benchmarks/bench_defenses.py`` (``--quick``: one repeat; ``--threads N``).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

from advhash.data import HashingData, InMemorySplit, load_dataset
from advhash.defenses import build_defense
from advhash.losses import build_loss
from advhash.models import HashingModel
from advhash.train import train_hashing

NUM_TRAIN, BATCH, BITS, STEPS = 1_000, 64, 32, 7
REPEATS = 3  # best of; the first round is a warm-up
DATA_ROOT = Path(__file__).resolve().parents[1] / "data"
RUNS = [("cgat", "dpsh"), ("atrdh", "dph"), ("saat", "dph")]  # (defense, its hashing loss)


def training_data() -> HashingData:
    """Fashion-Mosaic's training split (1,000 items), or synthetic uint8 images with its shape."""
    if (DATA_ROOT / "fashion-mosaic" / "meta.json").is_file():
        return load_dataset("fashion-mosaic", root=DATA_ROOT, num_query=100, num_train=NUM_TRAIN, seed=0)
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(NUM_TRAIN, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    labels = (torch.rand(NUM_TRAIN, 10, generator=g) < 0.2).float()
    split = InMemorySplit(images, labels)
    return HashingData("synthetic", train=split, query=split, database=split, class_names=list("abcdefghij"))


def epoch_seconds(data: HashingData, model: HashingModel, method: str, defense_name: str | None) -> float:
    """Seconds of one training epoch of a copy of ``model`` (fresh loss and defense)."""
    loss = build_loss(method, num_train=len(data.train), bits=BITS, num_classes=data.num_classes)
    defense = None if defense_name is None else build_defense(defense_name, num_train=len(data.train), bits=BITS,
                                                             num_classes=data.num_classes, steps=STEPS)
    history = train_hashing(copy.deepcopy(model), loss, data.train, epochs=1, batch_size=BATCH, defense=defense)
    return history[0]["seconds"]


def main(argv: list[str]) -> None:
    repeats = 1 if "--quick" in argv else REPEATS
    torch.set_num_threads(int(argv[argv.index("--threads") + 1]) if "--threads" in argv else 1)
    data = training_data()
    torch.manual_seed(0)
    model = HashingModel("small_cnn", bits=BITS, in_channels=data.image_shape[0])
    runs = {f"clean {method}": (method, None) for _, method in RUNS}
    runs.update({name: (method, name) for name, method in RUNS})
    best = {name: float("inf") for name in runs}
    for repeat in range(repeats + 1):
        for name, (method, defense_name) in runs.items():
            seconds = epoch_seconds(data, model, method, defense_name)
            if repeat:
                best[name] = min(best[name], seconds)
    print(f"{data.name}, {len(data.train)} training items, batch {BATCH}, small_cnn, {BITS} bits, "
          f"PGD-{STEPS}, {torch.get_num_threads()} threads, best of {repeats}")
    print(f"{'defense':<8} {'loss':<6} {'clean s/epoch':>13} {'adv s/epoch':>11} {'ratio':>6} {'target':>7}")
    for name, method in RUNS:
        clean, adversarial = best[f"clean {method}"], best[name]
        ratio = adversarial / clean
        verdict = "ok" if ratio <= STEPS + 2 else "over"
        print(f"{name:<8} {method:<6} {clean:>13.2f} {adversarial:>11.2f} {ratio:>6.2f} {'<= ' + str(STEPS + 2):>7} "
              f"{verdict}")


if __name__ == "__main__":
    main(sys.argv[1:])
