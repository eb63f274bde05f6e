"""Mean average precision of Hamming ranking: full, @k, tie-aware and targeted (t-MAP).

Definition (DeepHash-pytorch ``CalcTopMap``, SAAT ``cal_map``, CgAT): rank the database by Hamming distance with
the stable tie rule of ``hamming.py``, keep the first k ranks (k = n_db when ``topk`` is None), and

    AP@k(q) = (1 / R_k) * sum_{p <= k, rel(p)} hits(p) / p,

rel(p) whether the item at rank p shares a label with the query, hits(p) the relevant items at ranks 1..p, R_k
those in the top k. A query with R_k = 0 (an all-zero label row included) has AP = 0 and **stays in the mean**.
``topk`` above n_db is clamped to n_db.

``ties="expected"`` gives the tie-aware AP@k, its exact expectation when each group of equal distance is in
uniformly random order (McSherry & Najork, ECIR 2008), extended to a top-k cut that splits a tie group; it does
not depend on the database order. The derivation and the published codes' variants (DHTA-master's dropped
queries, DeepHash-pytorch's ``topK=-1``): ``docs/methods.md``, section mAP and tie rules.
"""

from __future__ import annotations

import torch

from .hamming import RetrievalInputs, check_topk, prepare_inputs, ranked_relevance, tie_group_histograms
from ..utils import check_choice

TIE_RULES = ("stable", "expected")
X_CELLS_PER_CHUNK = 2**20  # (query, x) cells per chunk in the hypergeometric sum


def _stable_average_precision(inputs: RetrievalInputs, k: int, chunk_size: int | None) -> torch.Tensor:
    """AP@k under the stable ranking, float64 (n_q,) on CPU."""
    ap = torch.empty(inputs.query_codes.shape[0], dtype=torch.float64)
    positions = torch.arange(1, k + 1, dtype=torch.float64, device=inputs.query_codes.device)  # p = 1..k
    for rows, relevant in ranked_relevance(inputs, k, chunk_size):  # relevant: (cs, k) bool
        hits = relevant.cumsum(1, dtype=torch.int32)  # hits(p), (cs, k)
        precision_sum = torch.where(relevant, hits / positions, 0.0).sum(1)  # (cs,)
        ap[rows] = (precision_sum / hits[:, -1].clamp(min=1)).cpu()  # R_k = hits(k); 0 / 1 when R_k = 0
    return ap


def _group_contribution(n, r, before, relevant_before):
    """Expected sum of hits(p) / p over the relevant ranks p of one tie group placed in random order.

    The group holds n items of which r are relevant and follows ``before`` items of which
    ``relevant_before`` are relevant. Rank p0 + i (i = 1..n) is relevant with probability r / n and,
    given that, has (i - 1)(r - 1)/(n - 1) relevant items above it inside the group on average, so
    with c = relevant_before + 1 and b = (r - 1)/(n - 1) (0 when n = 1)

        E = (r / n) sum_{i=1..n} (c + (i - 1) b) / (p0 + i)
          = r b + (r / n) (c - b (p0 + 1)) (H(p0 + n) - H(p0)),

    with harmonic numbers H(m) - H(p) = digamma(m + 1) - digamma(p + 1). All arguments float64 and
    broadcastable; 0 where r = 0 (which includes empty groups).
    """
    slope = torch.where(n > 1, (r - 1) / (n - 1).clamp(min=1), 0.0)
    harmonic = torch.digamma(before + n + 1) - torch.digamma(before + 1)
    value = r * slope + (r / n.clamp(min=1)) * (relevant_before + 1 - slope * (before + 1)) * harmonic
    return torch.where(r > 0, value, 0.0)


def _log_binomial(n, k):
    return torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)


def expected_average_precision(counts: torch.Tensor, relevant_counts: torch.Tensor, k: int) -> torch.Tensor:
    """Tie-aware AP@k from the tie-group tables of ``distance_histograms``: float64 (n_q,) on CPU.

    E[AP@k] over independent uniform orders within each group of equal distance. Groups that end
    within the top k contribute A = sum of ``_group_contribution`` and R_before relevant items
    (fixed numbers). A group straddling the cut keeps m of its n items (r relevant); the number X of
    relevant among those m is hypergeometric(n, r, m), and given X = x the kept items are in random
    order, so their contribution C(x) is ``_group_contribution`` with (m, x) for (n, r). Hence

        E[AP@k] = sum_x P(X = x) (A + C(x)) / (R_before + x)   (0 where R_before + x = 0).

    Args:
        counts, relevant_counts: (n_q, K + 1) tie-group sizes n_d and relevant counts r_d.
        k: the cut, 1 <= k <= n_db.
    """
    n = counts.to(torch.float64).cpu()  # (n_q, K+1)
    r = relevant_counts.to(torch.float64).cpu()
    end = n.cumsum(1)
    before = end - n  # items ranked above each group
    relevant_before = r.cumsum(1) - r
    full = end <= k  # groups wholly inside the top k
    a_full = torch.where(full, _group_contribution(n, r, before, relevant_before), 0.0).sum(1)  # A, (n_q,)
    r_full = torch.where(full, r, 0.0).sum(1)  # R_before, (n_q,)

    straddle = (before < k) & (end > k)  # at most one group per query
    n_cut = torch.where(straddle, n, 0.0).sum(1)  # (n_q,); 0 when k falls on a group boundary
    r_cut = torch.where(straddle, r, 0.0).sum(1)
    before_cut = torch.where(straddle, before, 0.0).sum(1)
    kept = torch.where(straddle, k - before, 0.0).sum(1)  # m
    x_low = (kept - (n_cut - r_cut)).clamp(min=0)
    x_high = torch.minimum(kept, r_cut)

    ap = torch.empty_like(a_full)
    width = int(x_high.max()) + 1
    rows_per_chunk = max(1, X_CELLS_PER_CHUNK // width)
    x = torch.arange(width, dtype=torch.float64)[None, :]  # (1, X)
    for start in range(0, n.shape[0], rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        n_c, r_c, m = n_cut[rows, None], r_cut[rows, None], kept[rows, None]  # (cq, 1)
        possible = (x >= x_low[rows, None]) & (x <= x_high[rows, None])  # (cq, X)
        log_p = _log_binomial(r_c, x) + _log_binomial(n_c - r_c, m - x) - _log_binomial(n_c, m)
        prob = torch.where(possible, torch.exp(torch.where(possible, log_p, 0.0)), 0.0)
        prob = prob / prob.sum(1, keepdim=True)  # renormalise away lgamma rounding
        contribution = _group_contribution(m, x, before_cut[rows, None], r_full[rows, None])  # C(x)
        denominator = r_full[rows, None] + x
        value = torch.where(denominator > 0, (a_full[rows, None] + contribution) / denominator.clamp(min=1), 0.0)
        ap[rows] = (prob * value).sum(1)
    return ap


def _average_precision(inputs: RetrievalInputs, topk, ties: str, chunk_size) -> torch.Tensor:
    check_choice("ties", ties, TIE_RULES, hint=": 'stable' ranks equal distances by database order, 'expected' "
                 "averages over random orders within ties")
    k = check_topk(topk, inputs.db_codes.shape[0])
    if ties == "stable":
        return _stable_average_precision(inputs, k, chunk_size)
    return expected_average_precision(*tie_group_histograms(inputs, chunk_size), k)


def average_precision_per_query(query_codes, db_codes, query_labels, db_labels, *, topk: int | None = None,
                                ties: str = "stable", chunk_size: int | None = None) -> torch.Tensor:
    """AP@k of every query (module docstring for the definition): float64 (n_q,) on CPU.

    Args:
        query_codes: (n_q, K) in {-1, +1}; db_codes: (n_db, K) in {-1, +1}.
        query_labels: (n_q, L) multi-hot {0, 1}; db_labels: (n_db, L) multi-hot {0, 1}.
        topk: the cut k; None (default) ranks the whole database (full mAP); above n_db is clamped.
        ties: "stable" (ties by database order, default) or "expected" (tie-aware expectation).
        chunk_size: queries per chunk (None: automatic).
    """
    inputs = prepare_inputs(query_codes, db_codes, query_labels, db_labels)
    return _average_precision(inputs, topk, ties, chunk_size)


def mean_average_precision(query_codes, db_codes, query_labels, db_labels, *, topk: int | None = None,
                           ties: str = "stable", chunk_size: int | None = None) -> float:
    """mAP@k = mean over all queries of AP@k (module docstring; DeepHash-pytorch CalcTopMap / CalcMap).

    Arguments as in ``average_precision_per_query``. Queries without a relevant item in the top k
    count as 0 and stay in the mean.

    Example:
        >>> mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk=5000)
        >>> mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk=5000, ties="expected")
    """
    return average_precision_per_query(query_codes, db_codes, query_labels, db_labels, topk=topk, ties=ties,
                                       chunk_size=chunk_size).mean().item()


def targeted_map(query_codes, db_codes, target_labels, db_labels, *, topk: int | None = None,
                 ties: str = "stable", chunk_size: int | None = None) -> float:
    """t-MAP: mAP@k with each query's **target** label in place of its own label.

    The success measure of targeted attacks (P2P and DHTA, Bai et al., ECCV 2020; SAAT): the
    adversarial query codes should retrieve items of the target class, so higher t-MAP means a
    stronger attack. Same definition, ties and arguments as ``mean_average_precision``, with
    ``target_labels`` (n_q, L) multi-hot {0, 1}.
    """
    inputs = prepare_inputs(query_codes, db_codes, target_labels, db_labels, query_labels_name="target_labels")
    return _average_precision(inputs, topk, ties, chunk_size).mean().item()


def random_ranking_map(query_labels, db_labels, *, topk: int | None = None) -> float:
    """The mAP@k of a uniformly random ranking: the baseline every hashing model must beat.

    Computed exactly as the tie-aware mAP of codes that tie every database item (one constant bit),
    i.e. the expectation over a random order of the whole database; it depends only on the labels.
    """
    query_codes = torch.ones(len(query_labels), 1)
    db_codes = torch.ones(len(db_labels), 1)
    return mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk=topk, ties="expected")
