"""The shared core of the representative codes: closed-form codes that stand for an item's label.

A **representative code** of an item with label y is the binary code closest (in Hamming distance) to the
codes of the table items relevant to it (its positives P: sharing a label, ``advhash.metrics.relevance``) and
farthest from the others (its negatives N):

    b* = argmin_{b in {-1,+1}^K}  sum_{j in P} w+_j d_H(b, b_j)  -  sum_{j in N} w-_j d_H(b, b_j)
       = sign(sum_P w+_j b_j - sum_N w-_j b_j)      (linear in b, since d_H(b, b') = (K - b . b') / 2),

w+ summing to 1 over P, w- = 1 / |N|. CgAT's center code (``center.py``) takes w+ the normalized Jaccard
similarity of the label sets (its published code: w+ = 1 / |P|), SAAT's mainstay code (``mainstay.py``) the
normalized cosine similarity. Ties are common (a bit on which every table code agrees), and float32 weights
such as 1/3 do not cancel exactly, so the sum is taken in float64 and |sum| <= 1e-9 counts as 0; each code
(and variant) decides what a tie becomes.
"""

from __future__ import annotations

import torch

from ..metrics import relevance

_QUERY_CHUNK = 1024
_TIE_TOLERANCE = 1e-9  # float64 rounding of an exact tie (sums of at most ~1e6 weights <= 1)


def label_jaccard(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """Jaccard similarity |y_i and y_j| / |y_i or y_j| of multi-hot label rows, (n_a, n_b); 0 where both are empty."""
    inter = labels_a @ labels_b.T                                                      # (n_a, n_b)
    union = labels_a.sum(1, keepdim=True) + labels_b.sum(1) - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), 0.0)


def label_cosine(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity y_i . y_j / (|y_i| |y_j|) of multi-hot label rows, (n_a, n_b); 0 where a row is empty."""
    norms = labels_a.norm(dim=1, keepdim=True) * labels_b.norm(dim=1)
    return torch.where(norms > 0, labels_a @ labels_b.T / norms.clamp_min(1e-12), 0.0)


SIMILARITIES = {"jaccard": label_jaccard, "cosine": label_cosine}


def check_table(labels, table_codes, table_labels) -> None:
    """Clear errors for inputs a representative code cannot be computed from: shapes that disagree, or an
    empty table."""
    if labels.ndim != 2 or table_labels.ndim != 2 or table_codes.ndim != 2:
        raise ValueError("labels (n, L), table_codes (m, K) and table_labels (m, L) must be 2-D")
    if labels.shape[1] != table_labels.shape[1]:
        raise ValueError(f"labels have {labels.shape[1]} classes but the code table's labels have "
                         f"{table_labels.shape[1]}; both must use the same label width")
    if table_codes.shape[0] != table_labels.shape[0]:
        raise ValueError(f"the code table has {table_codes.shape[0]} codes but {table_labels.shape[0]} label rows")
    if table_codes.shape[0] == 0:
        raise ValueError("the code table is empty: center and mainstay codes need the codes of labelled (training) "
                         "items")


def representative_weights(labels: torch.Tensor, table_labels: torch.Tensor, similarity: str) -> tuple[torch.Tensor, ...]:
    """The weights of a representative code sum_P w+ b - sum_N w- b (CgAT's center, SAAT's mainstay code).

    Positives P_i are the table items sharing a label (S_ij = 1[y_i . y_j > 0]), negatives the rest;
    w+ is proportional to ``similarity`` ("jaccard", "cosine" or "indicator": 1 on every positive) and
    sums to 1 over P_i, w- = 1 / |N_i|. Returns (w+, w-, has_positive, has_negative), w+/w- (n, m).
    """
    positive = relevance(labels, table_labels).to(labels.dtype)                        # S (n, m)
    negative = 1 - positive
    weights = positive if similarity == "indicator" else SIMILARITIES[similarity](labels, table_labels) * positive
    positive_weights = weights / weights.sum(1, keepdim=True).clamp_min(1e-12)
    negative_weights = negative / negative.sum(1, keepdim=True).clamp_min(1)
    return positive_weights, negative_weights, positive.sum(1) > 0, negative.sum(1) > 0


def representative_directions(labels, table_codes, table_labels, similarity: str):
    """Yield (rows, sum_P w+ b - sum_N w- b (chunk, K) in float64 with exact ties set to 0, has_positive,
    has_negative) over chunks of the items: the argument of the sign in every closed form here."""
    labels, table_labels = labels.double(), table_labels.to(labels.device).double()
    table_codes = table_codes.to(labels.device).double()
    for start in range(0, labels.shape[0], _QUERY_CHUNK):
        rows = slice(start, start + _QUERY_CHUNK)
        positive, negative, has_positive, has_negative = representative_weights(labels[rows], table_labels, similarity)
        direction = (positive - negative) @ table_codes                                # (chunk, K)
        yield rows, torch.where(direction.abs() <= _TIE_TOLERANCE, 0.0, direction), has_positive, has_negative


def representative_objective(candidates, labels, table_codes, table_labels, similarity: str) -> torch.Tensor:
    """J_i(c) = sum_{j in P_i} w+_ij d_H(c, b_j) - sum_{j in N_i} w-_ij d_H(c, b_j) for candidates (C, K) -> (n, C)."""
    positive, negative, _, _ = representative_weights(labels.float(), table_labels.float(), similarity)
    distances = (candidates.shape[1] - table_codes.float() @ candidates.float().T) / 2  # d_H (m, C)
    return positive @ distances - negative @ distances
