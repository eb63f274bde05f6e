"""The cost of the robustness ensemble (``advhash.robustness.evaluate_robustness``) beside the sum of its members.

Each member is run alone the way a user runs one attack (``advhash.evaluation.evaluate_attack`` on a victim built
from the model: re-encode the database, attack, encode, score), then the ensemble with the same budget and
restarts, without its checks. Reported: forward and backward passes (images through the hash layer) and seconds,
best of several repeats (the runs take turns, so a burst of load from other jobs hits them alike), and the ratio
ensemble / sum of members. Target: ratio <= 1.2. The checks (black-box search, doubled steps, eps = 1, gradients)
are timed apart: they are what the ensemble adds on purpose.

Run: ``python benchmarks/bench_robustness.py`` (``--quick``: fewer queries and steps).
"""

from __future__ import annotations

import sys
import time

import torch

from advhash.data import HashingData, InMemorySplit
from advhash.evaluation import evaluate_attack, query_set
from advhash.models import HashingModel
from advhash.robustness import TARGETED, UNTARGETED, Budget, _Counter, evaluate_robustness, member_settings
from advhash.attacks import build_attack
from advhash.victim import Victim

BITS, CLASSES = 32, 10


def synthetic_data(n_train: int, n_db: int, n_query: int) -> HashingData:
    """Multi-label random images (1 x 28 x 28): what matters here is the cost, not the numbers."""
    g = torch.Generator().manual_seed(0)

    def split(n):
        labels = (torch.rand(n, CLASSES, generator=g) < 0.3).float()
        labels[torch.arange(n), torch.randint(0, CLASSES, (n,), generator=g)] = 1.0
        return InMemorySplit(torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8), labels)
    return HashingData("synthetic", train=split(n_train), query=split(n_query), database=split(n_db),
                       class_names=[str(c) for c in range(CLASSES)])


def main(quick: bool) -> None:
    torch.set_num_threads(1)
    queries_n, steps, restarts, repeats = (32, 5, 2, 2) if quick else (100, 20, 2, 3)
    data = synthetic_data(1000, 2000, queries_n)
    torch.manual_seed(0)
    model = HashingModel("small_cnn", bits=BITS, in_channels=1).eval()
    queries = query_set(data, queries_n, target_min_items=9, target_rule="nonzero", seed=0)
    eps, alpha = 8 / 255, 2 / 255
    budget = Budget(eps=eps, alpha=alpha, steps=steps, restarts=restarts, black_box_queries=10 * steps)

    def members():
        for targeted, names in ((False, UNTARGETED), (True, TARGETED)):
            for name in names:
                for seed in range(restarts if name != "sdha" else 1):
                    victim = Victim.build(model, data)
                    attack = build_attack(name, victim, **member_settings(name, eps=eps, alpha=alpha, steps=steps,
                                                                          seed=seed))
                    evaluate_attack(attack, victim, queries, topk=None, targeted=targeted, batch_size=256)

    def ensemble():
        evaluate_robustness(model, data, budget, queries=queries, checks=(), batch_size=256)

    def checks():
        evaluate_robustness(model, data, budget, queries=queries, batch_size=256)

    results = {}
    for name, run in (("sum of members", members), ("ensemble", ensemble), ("ensemble + checks", checks)):
        best = float("inf")
        for _ in range(repeats):
            counter = _Counter(model)
            began = time.perf_counter()
            try:
                run()
            finally:
                counter.restore()
            best = min(best, time.perf_counter() - began)
        results[name] = (counter.forward, counter.backward, best)
    print(f"small_cnn, {BITS} bits, {queries_n} queries, {steps} steps, {restarts} restarts, db 2000, train 1000")
    print(f"{'run':<20} {'forward':>10} {'backward':>10} {'seconds':>9}")
    for name, (forward, backward, seconds) in results.items():
        print(f"{name:<20} {forward:>10} {backward:>10} {seconds:>9.2f}")
    ratio = results["ensemble"][2] / results["sum of members"][2]
    print(f"ensemble / sum of members: {ratio:.2f} in seconds (target <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'}),"
          f" {results['ensemble'][0] / results['sum of members'][0]:.2f} in forward passes")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
