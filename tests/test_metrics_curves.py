"""advhash.metrics.curves: precision-recall by Hamming radius, precision within a radius and P@N, against
plain per-query loops."""

import numpy as np
import pytest
from helpers import distances_loop as _distances_loop
from helpers import retrieval_problem as _problem

from advhash.metrics import precision_at_n, precision_recall_curve, precision_within_radius


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
