"""advhash.metrics.hamming: Hamming distances and the stable ranking against plain loops and faiss, long
codes, chunking and devices, and the input checks every metric shares."""

import faiss
import numpy as np
import pytest
import torch
from helpers import calc_top_map_loop as _calc_top_map_loop
from helpers import distances_loop as _distances_loop
from helpers import retrieval_problem as _problem

from advhash.metrics import (
    average_precision_per_query,
    distance_histograms,
    hamming_distance,
    hamming_rank,
    mean_average_precision,
    precision_at_n,
    precision_recall_curve,
)


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


# ----------------------------------------------------------------------------------------------
# Chunking, devices

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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    problem = _problem(seed=14, n_db=2000, bits=16)
    cuda_problem = [torch.from_numpy(x).cuda() for x in problem]
    for ties in ("stable", "expected"):
        assert mean_average_precision(*cuda_problem, topk=100, ties=ties) == pytest.approx(
            mean_average_precision(*problem, topk=100, ties=ties), abs=1e-12)
    assert torch.equal(hamming_rank(*cuda_problem[:2], topk=100)[0].cpu(), hamming_rank(*problem[:2], topk=100)[0])


# ----------------------------------------------------------------------------------------------
# Bad inputs (``prepare_inputs``, shared by every metric)

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
