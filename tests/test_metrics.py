"""Retrieval metrics against plain per-query loops, faiss, exhaustive enumeration and Monte Carlo."""

import itertools

import faiss
import numpy as np
import pytest
import torch

from advhash.metrics import (
    average_precision_per_query,
    distance_histograms,
    expected_average_precision,
    hamming_distance,
    hamming_rank,
    mean_average_precision,
    precision_at_n,
    precision_recall_curve,
    precision_within_radius,
    relevance,
    targeted_map,
)
from advhash.metrics import average_precision as average_precision_module


def _problem(seed=0, n_query=40, n_db=300, bits=8, n_labels=6, label_rate=0.15, empty_rows=True):
    """Random {-1, +1} codes and multi-hot labels (numpy), with some all-zero label rows."""
    rng = np.random.default_rng(seed)
    query_codes = np.where(rng.random((n_query, bits)) < 0.5, -1.0, 1.0).astype(np.float32)
    db_codes = np.where(rng.random((n_db, bits)) < 0.5, -1.0, 1.0).astype(np.float32)
    query_labels = (rng.random((n_query, n_labels)) < label_rate).astype(np.float32)
    db_labels = (rng.random((n_db, n_labels)) < label_rate).astype(np.float32)
    if empty_rows:
        query_labels[:3] = 0  # queries that are relevant to nothing
        db_labels[::7] = 0
    return query_codes, db_codes, query_labels, db_labels


# ----------------------------------------------------------------------------------------------
# Independent references: plain numpy loops in the style of the published code (stable argsort).

def _distances_loop(query_codes, db_codes):
    return np.array([[int(np.sum(q != b)) for b in db_codes] for q in query_codes])


def _calc_top_map_loop(query_codes, db_codes, query_labels, db_labels, topk):
    """DeepHash-pytorch CalcTopMap, per-query APs, with np.argsort(kind="stable")."""
    bits = query_codes.shape[1]
    topk = db_codes.shape[0] if topk is None else topk
    aps = []
    for i in range(query_codes.shape[0]):
        gnd = (query_labels[i] @ db_labels.T > 0).astype(np.float32)
        hamm = 0.5 * (bits - query_codes[i] @ db_codes.T)
        ind = np.argsort(hamm, kind="stable")
        tgnd = gnd[ind][0:topk]
        tsum = int(np.sum(tgnd))
        if tsum == 0:
            aps.append(0.0)
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(tgnd == 1)) + 1.0
        aps.append(float(np.mean(count / tindex)))
    return np.array(aps)


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
# Hamming distance and ranking

def test_hamming_distance_counts_differing_bits():
    query_codes, db_codes, _, _ = _problem(n_query=7, n_db=30, bits=13)
    distances = hamming_distance(query_codes, db_codes)
    assert distances.dtype == torch.int64
    np.testing.assert_array_equal(distances.numpy(), _distances_loop(query_codes, db_codes))


@pytest.mark.parametrize("topk", [None, 1, 25, 10_000])
def test_hamming_rank_is_the_stable_argsort(topk):
    query_codes, db_codes, _, _ = _problem(n_query=12, n_db=200, bits=8)
    indices, distances = hamming_rank(query_codes, db_codes, topk=topk, chunk_size=5)
    reference = _distances_loop(query_codes, db_codes)
    k = min(topk or 200, 200)
    assert indices.shape == distances.shape == (12, k)
    for i in range(12):
        order = np.argsort(reference[i], kind="stable")[:k]
        np.testing.assert_array_equal(indices[i].numpy(), order)
        np.testing.assert_array_equal(distances[i].numpy(), reference[i][order])
    by_torch = torch.sort(torch.as_tensor(reference), dim=1, stable=True).indices[:, :k]
    assert torch.equal(indices, by_torch)


def test_long_codes_rank_and_score_like_the_loop():
    """More than 255 bits: distances no longer fit in uint8 and the sort runs on int16."""
    problem = _problem(seed=6, n_query=6, n_db=50, bits=300)
    indices, distances = hamming_rank(*problem[:2])
    reference = _distances_loop(*problem[:2])
    np.testing.assert_array_equal(indices.numpy(), np.argsort(reference, axis=1, kind="stable"))
    np.testing.assert_allclose(average_precision_per_query(*problem, topk=10).numpy(),
                               _calc_top_map_loop(*problem, 10), atol=1e-6, rtol=0)


def test_hamming_rank_agrees_with_faiss():
    query_codes, db_codes, _, _ = _problem(seed=3, n_query=20, n_db=1000, bits=16)
    k = 60
    index = faiss.IndexBinaryFlat(16)
    index.add(np.packbits(db_codes > 0, axis=1))
    faiss_distances, faiss_indices = index.search(np.packbits(query_codes > 0, axis=1), k)
    indices, distances = hamming_rank(query_codes, db_codes, topk=k)
    np.testing.assert_array_equal(distances.numpy(), faiss_distances)
    for i in range(20):
        last = distances[i, -1].item()  # the group at the cut may be split differently by faiss
        inside = distances[i] < last
        assert set(indices[i][inside].tolist()) == set(faiss_indices[i][faiss_distances[i] < last].tolist())


def test_relevance_is_shared_label():
    _, _, query_labels, db_labels = _problem(n_query=9, n_db=40)
    expected = np.array([[bool(np.any(q * d)) for d in db_labels] for q in query_labels])
    np.testing.assert_array_equal(relevance(query_labels, db_labels).numpy(), expected)
    assert not relevance(query_labels, db_labels)[:3].any()  # all-zero label rows match nothing


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
# Curves

def test_precision_recall_curve_matches_loop():
    problem = _problem(seed=8, bits=8)
    query_codes, db_codes, query_labels, db_labels = problem
    distances = _distances_loop(query_codes, db_codes)
    relevant = query_labels @ db_labels.T > 0
    precision, recall = np.zeros(9), np.zeros(9)
    with_relevant = [i for i in range(40) if relevant[i].any()]
    for r in range(9):
        for i in range(40):
            retrieved = distances[i] <= r
            precision[r] += relevant[i][retrieved].mean() if retrieved.any() else 0.0
        for i in with_relevant:
            recall[r] += relevant[i][distances[i] <= r].sum() / relevant[i].sum()
    curve = precision_recall_curve(*problem)
    np.testing.assert_array_equal(curve.radius.numpy(), np.arange(9))
    np.testing.assert_allclose(curve.precision.numpy(), precision / 40, atol=1e-12)
    np.testing.assert_allclose(curve.recall.numpy(), recall / len(with_relevant), atol=1e-12)
    assert curve.recall[-1].item() == pytest.approx(1.0)
    assert precision_within_radius(*problem, radius=2) == pytest.approx(curve.precision[2].item(), abs=1e-12)


def test_recall_is_zero_when_no_query_has_relevant_items():
    query_codes, db_codes, query_labels, db_labels = _problem()
    curve = precision_recall_curve(query_codes, db_codes, np.zeros_like(query_labels), db_labels)
    assert (curve.recall == 0).all() and (curve.precision == 0).all()


def test_precision_within_radius_counts_empty_retrievals_as_zero():
    query_codes, db_codes, query_labels, db_labels = _problem(seed=9, bits=16, n_db=150)
    distances = _distances_loop(query_codes, db_codes)
    relevant = query_labels @ db_labels.T > 0
    scores = [relevant[i][distances[i] <= 2].mean() if (distances[i] <= 2).any() else 0.0 for i in range(40)]
    assert any((distances[i] > 2).all() for i in range(40))  # some queries retrieve nothing
    assert precision_within_radius(query_codes, db_codes, query_labels, db_labels) == pytest.approx(np.mean(scores))


def test_precision_at_n_matches_loop():
    problem = _problem(seed=10, bits=8)
    query_codes, db_codes, query_labels, db_labels = problem
    distances = _distances_loop(query_codes, db_codes)
    relevant = query_labels @ db_labels.T > 0
    ns = [1, 10, 37, 300]
    expected = [np.mean([relevant[i][np.argsort(distances[i], kind="stable")[:n]].sum() / n for i in range(40)])
                for n in ns]
    np.testing.assert_allclose(precision_at_n(*problem, ns=ns).numpy(), expected, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Chunking, determinism, devices

@pytest.mark.parametrize("chunk_size", [1, 3, 10**6])
def test_chunked_equals_unchunked(chunk_size):
    problem = _problem(seed=12)
    for ties in ("stable", "expected"):
        whole = average_precision_per_query(*problem, topk=25, ties=ties, chunk_size=10**6)
        chunked = average_precision_per_query(*problem, topk=25, ties=ties, chunk_size=chunk_size)
        np.testing.assert_allclose(chunked.numpy(), whole.numpy(), atol=1e-12, rtol=0)
    whole_curve, chunked_curve = precision_recall_curve(*problem), precision_recall_curve(*problem, chunk_size=chunk_size)
    np.testing.assert_allclose(chunked_curve.precision.numpy(), whole_curve.precision.numpy(), atol=1e-12)
    np.testing.assert_allclose(chunked_curve.recall.numpy(), whole_curve.recall.numpy(), atol=1e-12)
    np.testing.assert_allclose(precision_at_n(*problem, ns=[5, 50], chunk_size=chunk_size).numpy(),
                               precision_at_n(*problem, ns=[5, 50]).numpy(), atol=1e-12)
    assert torch.equal(torch.stack(hamming_rank(*problem[:2], chunk_size=chunk_size)),
                       torch.stack(hamming_rank(*problem[:2])))
    assert all(torch.equal(a, b) for a, b in zip(distance_histograms(*problem, chunk_size=chunk_size),
                                                 distance_histograms(*problem)))


def test_same_inputs_same_number():
    problem = _problem(seed=13)
    for ties in ("stable", "expected"):
        assert mean_average_precision(*problem, topk=30, ties=ties) == mean_average_precision(*problem, topk=30, ties=ties)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    problem = _problem(seed=14, n_db=2000, bits=16)
    cuda_problem = [torch.from_numpy(x).cuda() for x in problem]
    for ties in ("stable", "expected"):
        assert mean_average_precision(*cuda_problem, topk=100, ties=ties) == pytest.approx(
            mean_average_precision(*problem, topk=100, ties=ties), abs=1e-12)
    assert torch.equal(hamming_rank(*cuda_problem[:2], topk=100)[0].cpu(), hamming_rank(*problem[:2], topk=100)[0])


# ----------------------------------------------------------------------------------------------
# Bad inputs

def _bad(name, value):
    problem = dict(zip(["query_codes", "db_codes", "query_labels", "db_labels"], _problem(n_query=5, n_db=20)))
    problem[name] = value
    return problem


@pytest.mark.parametrize("name, value, message", [
    ("query_codes", np.zeros((5, 8)), r"only -1 and \+1.*sign\(\).*map 0 to \+1"),
    ("db_codes", np.full((20, 8), 0.5), r"db_codes must hold only -1 and \+1"),
    ("db_codes", np.ones((20, 16)), r"K=8 bits but db_codes have K=16"),
    ("query_labels", np.ones((5, 4)), r"L=4 label columns but db_labels have L=6"),
    ("db_labels", np.full((20, 6), 2.0), r"db_labels must be multi-hot with entries 0 or 1"),
    ("query_labels", np.ones((4, 6)), r"query_codes has 5 rows but query_labels has 4"),
    ("query_codes", np.ones(8), r"2-D"),
    ("db_codes", np.ones((0, 8)), r"no rows"),
])
def test_bad_inputs_say_what_to_fix(name, value, message):
    with pytest.raises(ValueError, match=message):
        mean_average_precision(**_bad(name, value))


@pytest.mark.parametrize("topk", [0, -3, 2.5, True])
def test_topk_must_be_positive(topk):
    problem = _problem(n_query=5, n_db=20)
    with pytest.raises(ValueError, match="topk must be a positive integer"):
        mean_average_precision(*problem, topk=topk)
    with pytest.raises(ValueError, match="topk must be a positive integer"):
        hamming_rank(*problem[:2], topk=topk)


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
