"""advhash.metrics.average_precision: mAP (full, @k, targeted) against the published per-query loop, and the
tie-aware mAP against exhaustive enumeration of database orders and Monte Carlo."""

import itertools

import numpy as np
import pytest
import torch
from helpers import calc_top_map_loop as _calc_top_map_loop
from helpers import distances_loop as _distances_loop
from helpers import retrieval_problem as _problem

from advhash.metrics import (
    average_precision_per_query,
    expected_average_precision,
    mean_average_precision,
    precision_at_n,
    precision_within_radius,
    targeted_map,
)
from advhash.metrics import average_precision as average_precision_module


def _stable_ap_rows(distances, relevant, topk, tie_keys):
    """AP@k of many rankings of one query at once: rows of ``tie_keys`` break ties (numpy, vectorized)."""
    n_db = distances.shape[0]
    order = np.argsort(distances[None, :] * n_db + tie_keys, axis=1, kind="stable")[:, :topk]
    rel = relevant[order]  # (trials, k)
    hits = np.cumsum(rel, axis=1)
    total = hits[:, -1]
    prec = np.where(rel, hits / np.arange(1, rel.shape[1] + 1), 0.0).sum(1)
    return np.where(total > 0, prec / np.maximum(total, 1), 0.0)


# ----------------------------------------------------------------------------------------------
# mAP, stable ties

@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("topk", [None, 1, 7, 50, 10_000])
def test_map_matches_calc_top_map_loop(bits, topk):
    problem = _problem(seed=bits, bits=bits)
    reference = _calc_top_map_loop(*problem, topk)
    ours = average_precision_per_query(*problem, topk=topk)
    assert ours.dtype == torch.float64 and ours.shape == (40,)
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-6, rtol=0)
    assert mean_average_precision(*problem, topk=topk) == pytest.approx(reference.mean(), abs=1e-6)
    assert (reference[:3] == 0).all() and (reference > 0).any()  # the data has both kinds of query


@pytest.mark.parametrize("n_labels", [70, 130])  # two packed label words; too wide to pack (matmul)
def test_map_with_wide_label_vocabularies(n_labels):
    problem = _problem(seed=n_labels, n_labels=n_labels, label_rate=0.01)
    problem[2][5:15, 66] = 1  # a label past the first 63-bit word
    problem[3][1::5, 66] = 1
    for topk in (None, 20):
        np.testing.assert_allclose(average_precision_per_query(*problem, topk=topk).numpy(),
                                   _calc_top_map_loop(*problem, topk), atol=1e-6, rtol=0)


def test_map_accepts_numpy_and_torch_and_integer_codes():
    query_codes, db_codes, query_labels, db_labels = _problem()
    from_numpy = mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk=20)
    from_torch = mean_average_precision(torch.from_numpy(query_codes).to(torch.int8), torch.from_numpy(db_codes),
                                        torch.from_numpy(query_labels).bool(), db_labels, topk=20)
    assert from_numpy == from_torch


def test_targeted_map_uses_target_labels():
    query_codes, db_codes, _, db_labels = _problem(seed=5)
    target_labels = np.zeros((40, 6), dtype=np.float32)
    target_labels[:, 2] = 1
    expected = _calc_top_map_loop(query_codes, db_codes, target_labels, db_labels, 30).mean()
    assert targeted_map(query_codes, db_codes, target_labels, db_labels, topk=30) == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="target_labels"):
        targeted_map(query_codes, db_codes, target_labels[:, :5], db_labels)


# ----------------------------------------------------------------------------------------------
# mAP, tie-aware

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("topk", [None, 2, 3, 5])
def test_expected_map_equals_average_over_all_database_orders(seed, topk):
    """Averaging the stable AP over every order of a 6-item database is the exact expectation."""
    query_codes, db_codes, query_labels, db_labels = _problem(seed=seed, n_query=5, n_db=6, bits=3,
                                                              n_labels=3, label_rate=0.4, empty_rows=False)
    orders = np.array(list(itertools.permutations(range(6))))  # (720, 6)
    distances = _distances_loop(query_codes, db_codes)
    relevant = query_labels @ db_labels.T > 0
    tie_keys = np.argsort(orders, axis=1)  # position of each item in the shuffled database
    exact = np.array([_stable_ap_rows(distances[i], relevant[i], topk or 6, tie_keys).mean() for i in range(5)])
    ours = average_precision_per_query(query_codes, db_codes, query_labels, db_labels, topk=topk, ties="expected")
    np.testing.assert_allclose(ours.numpy(), exact, atol=1e-12, rtol=0)


@pytest.mark.parametrize("topk", [None, 15, 40])
def test_expected_map_matches_monte_carlo(topk):
    query_codes, db_codes, query_labels, db_labels = _problem(seed=11, n_query=8, n_db=120, bits=5,
                                                              n_labels=4, label_rate=0.3)
    distances = _distances_loop(query_codes, db_codes)
    relevant = query_labels @ db_labels.T > 0
    rng = np.random.default_rng(1234)
    trials = 4000
    tie_keys = np.argsort(rng.random((trials, 120)), axis=1)  # a random database order per trial
    ours = average_precision_per_query(query_codes, db_codes, query_labels, db_labels, topk=topk, ties="expected")
    for i in range(8):
        samples = _stable_ap_rows(distances[i], relevant[i], topk or 120, tie_keys)
        standard_error = samples.std() / np.sqrt(trials)
        assert abs(ours[i].item() - samples.mean()) <= 5 * standard_error + 1e-12, (i, ours[i].item(), samples.mean())


@pytest.mark.parametrize("topk", [None, 1, 5, 20])
def test_expected_map_equals_stable_map_without_ties(topk):
    bits = 32
    rng = np.random.default_rng(7)
    query = np.where(rng.random(bits) < 0.5, -1.0, 1.0)
    db_codes = np.repeat(query[None], bits + 1, axis=0)
    for j in range(bits + 1):
        db_codes[j, :j] *= -1  # item j at distance j: no ties
    db_codes = db_codes[rng.permutation(bits + 1)]
    query_codes = np.repeat(query[None], 6, axis=0)
    query_labels = (rng.random((6, 5)) < 0.3).astype(np.float32)
    db_labels = (rng.random((bits + 1, 5)) < 0.3).astype(np.float32)
    stable = average_precision_per_query(query_codes, db_codes, query_labels, db_labels, topk=topk)
    expected = average_precision_per_query(query_codes, db_codes, query_labels, db_labels, topk=topk, ties="expected")
    np.testing.assert_allclose(expected.numpy(), stable.numpy(), atol=1e-10, rtol=0)


def test_expected_map_ignores_database_order_and_chunks_its_hypergeometric_sum(monkeypatch):
    query_codes, db_codes, query_labels, db_labels = _problem(seed=4, n_db=400, bits=6)
    first = average_precision_per_query(query_codes, db_codes, query_labels, db_labels, topk=90, ties="expected")
    shuffle = np.random.default_rng(0).permutation(400)
    shuffled = average_precision_per_query(query_codes, db_codes[shuffle], query_labels, db_labels[shuffle],
                                           topk=90, ties="expected")
    np.testing.assert_allclose(shuffled.numpy(), first.numpy(), atol=1e-12, rtol=0)
    monkeypatch.setattr(average_precision_module, "X_CELLS_PER_CHUNK", 7)
    small_chunks = average_precision_per_query(query_codes, db_codes, query_labels, db_labels, topk=90,
                                               ties="expected")
    np.testing.assert_allclose(small_chunks.numpy(), first.numpy(), atol=1e-12, rtol=0)


def test_expected_average_precision_from_tables():
    """One query, one tie group of 4 items with 2 relevant, cut at 2: E[AP@2] by hand.

    X ~ hypergeometric(4, 2, 2): P(X=0) = 1/6, P(1) = 4/6, P(2) = 1/6. X=1: the relevant item is at
    rank 1 or 2 with equal chance, AP = (1 + 1/2)/2. X=2: AP = 1.
    """
    counts = torch.tensor([[0, 4, 0]])
    relevant_counts = torch.tensor([[0, 2, 0]])
    value = expected_average_precision(counts, relevant_counts, 2).item()
    assert value == pytest.approx(4 / 6 * 0.75 + 1 / 6 * 1.0, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Determinism, bad arguments, the random-ranking baseline

def test_same_inputs_same_number():
    problem = _problem(seed=13)
    for ties in ("stable", "expected"):
        assert mean_average_precision(*problem, topk=30, ties=ties) == mean_average_precision(*problem, topk=30, ties=ties)


def test_other_bad_arguments():
    problem = _problem(n_query=5, n_db=20)
    with pytest.raises(ValueError, match="ties must be one of"):
        mean_average_precision(*problem, ties="random")
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        mean_average_precision(*problem, chunk_size=0)
    with pytest.raises(ValueError, match="between 1 and n_db=20"):
        precision_at_n(*problem, ns=[10, 50])
    with pytest.raises(ValueError, match="radius must be a non-negative integer"):
        precision_within_radius(*problem, radius=-1)


def test_random_ranking_map_is_the_mean_over_shuffled_databases():
    from advhash.metrics import random_ranking_map
    g = torch.Generator().manual_seed(7)
    query_labels = (torch.rand(20, 4, generator=g) < 0.3).float()
    db_labels = (torch.rand(60, 4, generator=g) < 0.3).float()
    codes_q, codes_db = torch.ones(20, 1), torch.ones(60, 1)
    trials = [mean_average_precision(codes_q, codes_db, query_labels, db_labels[torch.randperm(60, generator=g)],
                                     topk=15) for _ in range(3000)]
    estimate = sum(trials) / len(trials)
    assert random_ranking_map(query_labels, db_labels, topk=15) == pytest.approx(estimate, abs=0.005)
