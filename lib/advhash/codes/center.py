"""CgAT's center codes: Wang, Lin, Li, "CgAT: Center-Guided Adversarial Training for Deep Hashing-Based
Retrieval", WWW 2023 (arXiv 2204.10779), Definition 1 and Theorem 1.

The center code of an item with label y is the code closest to the codes of its positives P (items
sharing a label, S_ij = 1[y_i . y_j > 0]) and farthest from those of its negatives N:

    c_i = argmin_{c in {-1,+1}^K}  sum_{j in P_i} w+_ij d_H(c, b_j)  -  sum_{j in N_i} w-_ij d_H(c, b_j).

With d_H(c, b) = (K - c . b) / 2 the objective is linear in c, so (Theorem 1)

    c_i = sign( sum_{j in P_i} w+_ij b_j  -  sum_{j in N_i} w-_ij b_j ),

for any non-negative weights. Two variants (``variant=``):

- ``"paper"`` (default): a similarity-weighted mean of the positives minus the mean of the negatives,
  w+_ij = J(y_i, y_j) / sum_{P_i} J (J = the Jaccard similarity of the label sets, the quantity the
  official code computes before reducing it to an indicator) and w-_ij = 1 / |N_i|. On single-label
  data J = 1 for every positive, and the two variants agree wherever both sides are non-empty.
  An empty side contributes an empty sum, so an item without negatives gets the sign of its
  positives' weighted mean, and one without positives the opposite of its negatives' mean. A bit
  whose sum is exactly 0 is +1 (sign(0) := +1 as for every code here; either value is optimal).
- ``"official"``: the CgAT code (central_adv_train.py, ``sign(N_n sum_P b - N_p sum_N b)``): plain
  means, w+ = 1/|P_i|, w- = 1/|N_i|, and torch.sign, so a tied bit is 0 and an item with no positive
  or no negative gets the **all-zero code** (which then guides nothing: its attack loss is 0).

The paper's exact choice of weights could not be checked against its text here; Theorem 1 and
both variants hold for any weights, and ``center_code_objective`` states the objective each one minimizes.

Ties are common (a bit on which every table code agrees gives mean(P) = mean(N)), and float32 weights
such as 1/3 do not cancel exactly, so the sum is taken in float64 and |sum| <= 1e-9 counts as 0.
"""

from __future__ import annotations

import torch

CENTER_WEIGHTS = ("paper", "official")
_SIMILARITY = {"paper": "jaccard", "official": "indicator"}   # the weight of a positive in each variant
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


def representative_weights(labels: torch.Tensor, table_labels: torch.Tensor, similarity: str) -> tuple[torch.Tensor, ...]:
    """The weights of a representative code sum_P w+ b - sum_N w- b (CgAT's center, SAAT's mainstay code).

    Positives P_i are the table items sharing a label (S_ij = 1[y_i . y_j > 0]), negatives the rest;
    w+ is proportional to ``similarity`` ("jaccard", "cosine" or "indicator": 1 on every positive) and
    sums to 1 over P_i, w- = 1 / |N_i|. Returns (w+, w-, has_positive, has_negative), w+/w- (n, m).
    """
    positive = (labels @ table_labels.T > 0).to(labels.dtype)                          # S (n, m)
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


def _check(labels, table_codes, table_labels, variant):
    if variant not in CENTER_WEIGHTS:
        raise ValueError(f"variant must be one of {CENTER_WEIGHTS} ('paper' = CgAT's Theorem 1, "
                         f"'official' = the published code); got {variant!r}")
    if labels.ndim != 2 or table_labels.ndim != 2 or table_codes.ndim != 2:
        raise ValueError("labels (n, L), table_codes (m, K) and table_labels (m, L) must be 2-D")
    if labels.shape[1] != table_labels.shape[1]:
        raise ValueError(f"labels have {labels.shape[1]} classes but the code table's labels have "
                         f"{table_labels.shape[1]}; both must use the same label width")
    if table_codes.shape[0] != table_labels.shape[0]:
        raise ValueError(f"the code table has {table_codes.shape[0]} codes but {table_labels.shape[0]} label rows")
    if table_codes.shape[0] == 0:
        raise ValueError("the code table is empty: center codes need the codes of labelled (training) items")


def center_codes(labels: torch.Tensor, table_codes: torch.Tensor, table_labels: torch.Tensor, *,
                 variant: str = "paper") -> torch.Tensor:
    """Center codes (CgAT Theorem 1) of items with ``labels``, from a table of labelled codes.

    Args:
        labels: (n, L) multi-hot {0, 1} labels of the items (queries or a training batch).
        table_codes: (m, K) codes b_j in {-1, +1} (or relaxed codes in [-1, 1]) of the table items,
            usually the current codes of the training set.
        table_labels: (m, L) multi-hot labels of the table items.
        variant: "paper" (default) or "official" (module docstring).

    Returns:
        (n, K) float codes in {-1, +1} ("paper"), or in {-1, 0, +1} ("official"), on labels' device.

    Example:
        >>> centers = center_codes(query_labels, encode(model, data.train), data.train.labels)
    """
    _check(labels, table_codes, table_labels, variant)
    centers = torch.empty(labels.shape[0], table_codes.shape[1], device=labels.device)
    similarity = _SIMILARITY[variant]
    for rows, direction, has_positive, has_negative in representative_directions(labels, table_codes, table_labels,
                                                                                  similarity):
        if variant == "paper":
            centers[rows] = torch.where(direction >= 0, 1.0, -1.0)
        else:
            defined = (has_positive & has_negative).unsqueeze(1)
            centers[rows] = torch.where(defined, torch.sign(direction), 0.0)
    return centers


def center_code_objective(candidates: torch.Tensor, labels: torch.Tensor, table_codes: torch.Tensor,
                          table_labels: torch.Tensor, *, variant: str = "paper") -> torch.Tensor:
    """The objective of CgAT Definition 1 that ``center_codes`` minimizes in closed form:

        J_i(c) = sum_{j in P_i} w+_ij d_H(c, b_j) - sum_{j in N_i} w-_ij d_H(c, b_j),

    with the weights of ``variant``. Shapes: candidates (C, K) in {-1, +1} -> values (n, C).
    """
    _check(labels, table_codes, table_labels, variant)
    return representative_objective(candidates, labels, table_codes, table_labels, _SIMILARITY[variant])
