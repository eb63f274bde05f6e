"""Precision-recall by Hamming radius, precision at N, and precision within Hamming radius 2.

Conventions (all averages are over queries, relevance S = 1[y_q . y_db > 0]):

* **Hamming-radius retrieval** (``precision_recall_curve``, ``precision_within_radius``): a query
  retrieves every database item at distance <= r, so the result does not depend on any tie rule.
  A query that retrieves nothing scores precision 0 and stays in the precision mean (the classic
  "failing to retrieve anything counts as zero precision" of the radius-2 protocol).
  Recall is averaged over the queries that have at least one relevant database item; queries with
  none (e.g. an all-zero label row) have no defined recall and are left out of the recall mean, so
  recall reaches exactly 1 at r = K. If no query has a relevant item, recall is 0 at every radius.
* **Precision at N** (``precision_at_n``): the first N items of the stable ranking of
  ``hamming.py`` (ties by database order); all queries count, including those with no relevant item.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple, Sequence

import torch

from .hamming import prepare_inputs, ranked_relevance, tie_group_histograms


class PrecisionRecallCurve(NamedTuple):
    """One point per Hamming radius r = 0..K: int64 radius, float64 precision and recall, (K + 1,) CPU
    tensors (plot ``recall`` against ``precision``)."""

    radius: torch.Tensor
    precision: torch.Tensor
    recall: torch.Tensor


def _within_radius(counts: torch.Tensor, relevant_counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query and radius r: items retrieved at distance <= r and relevant ones among them, float64 (n_q, K+1)."""
    return counts.cumsum(1).to(torch.float64).cpu(), relevant_counts.cumsum(1).to(torch.float64).cpu()


def precision_recall_curve(query_codes, db_codes, query_labels, db_labels, *,
                           chunk_size: int | None = None) -> PrecisionRecallCurve:
    """Precision and recall of Hamming-radius retrieval for every radius r = 0..K.

    For query q and radius r, with N_q(r) items within distance r, of which T_q(r) relevant, and
    R_q relevant items in the whole database:

        precision(r) = mean_q T_q(r) / N_q(r)      (0 where N_q(r) = 0; all queries),
        recall(r)    = mean_{q: R_q > 0} T_q(r) / R_q.

    Args:
        query_codes: (n_q, K) in {-1, +1}; db_codes: (n_db, K) in {-1, +1}.
        query_labels: (n_q, L) multi-hot {0, 1}; db_labels: (n_db, L) multi-hot {0, 1}.
        chunk_size: queries per chunk (None: automatic).

    Returns:
        PrecisionRecallCurve(radius, precision, recall), each (K + 1,).
    """
    inputs = prepare_inputs(query_codes, db_codes, query_labels, db_labels)
    retrieved, hits = _within_radius(*tie_group_histograms(inputs, chunk_size))  # (n_q, K+1)
    precision = torch.where(retrieved > 0, hits / retrieved.clamp(min=1), 0.0).mean(0)
    relevant_total = hits[:, -1:]  # R_q: everything is retrieved at r = K, (n_q, 1)
    has_relevant = relevant_total[:, 0] > 0
    if bool(has_relevant.any()):
        recall = (hits[has_relevant] / relevant_total[has_relevant]).mean(0)
    else:
        recall = torch.zeros_like(precision)
    radius = torch.arange(inputs.bits + 1)
    return PrecisionRecallCurve(radius, precision, recall)


def precision_within_radius(query_codes, db_codes, query_labels, db_labels, *, radius: int = 2,
                            chunk_size: int | None = None) -> float:
    """Precision within Hamming radius ``radius`` (2 by default, the classic protocol): mean over all
    queries of T_q(r) / N_q(r), where a query retrieving nothing counts as 0 (module docstring).

    A radius above K retrieves everything (the fraction of relevant items in the database).
    """
    if isinstance(radius, bool) or not isinstance(radius, numbers.Integral) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer Hamming distance, got {radius!r}")
    inputs = prepare_inputs(query_codes, db_codes, query_labels, db_labels)
    retrieved, hits = _within_radius(*tie_group_histograms(inputs, chunk_size))
    r = min(int(radius), inputs.bits)
    precision = torch.where(retrieved[:, r] > 0, hits[:, r] / retrieved[:, r].clamp(min=1), 0.0)
    return precision.mean().item()


def precision_at_n(query_codes, db_codes, query_labels, db_labels, *, ns: Sequence[int] = (100, 500, 1000),
                   chunk_size: int | None = None) -> torch.Tensor:
    """P@N: mean over all queries of (relevant items among the first N of the stable ranking) / N.

    Args:
        query_codes, db_codes, query_labels, db_labels: as in ``precision_recall_curve``.
        ns: the values of N, each between 1 and n_db (a P@N curve: ``ns=range(100, 1001, 100)``).
        chunk_size: queries per chunk (None: automatic).

    Returns:
        float64 (len(ns),) CPU tensor, in the order of ``ns``.
    """
    inputs = prepare_inputs(query_codes, db_codes, query_labels, db_labels)
    n_db = inputs.db_codes.shape[0]
    ns = list(ns)
    if not ns or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= n_db for n in ns):
        raise ValueError(f"ns must be a non-empty list of integers between 1 and n_db={n_db}, got {ns!r}; "
                         f"drop the values above the database size")
    columns = torch.tensor(ns, dtype=torch.int64, device=inputs.query_codes.device) - 1  # rank N -> column N - 1
    hits_sum = torch.zeros(len(ns), dtype=torch.float64)
    for _, relevant in ranked_relevance(inputs, max(ns), chunk_size):  # (cs, max N) bool
        hits = relevant.cumsum(1, dtype=torch.int64)[:, columns]  # relevant among the first N, (cs, len(ns))
        hits_sum += hits.sum(0).to(torch.float64).cpu()
    return hits_sum / inputs.query_codes.shape[0] / torch.tensor(ns, dtype=torch.float64)
