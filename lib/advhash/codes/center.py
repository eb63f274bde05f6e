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
such as 1/3 do not cancel exactly, so the sum is taken in float64 and |sum| <= 1e-9 counts as 0. The
weights, the sum and the objective are the core shared with SAAT's mainstay codes (``representative.py``).
"""

from __future__ import annotations

import torch

from .representative import check_table, representative_directions, representative_objective

CENTER_WEIGHTS = ("paper", "official")
_SIMILARITY = {"paper": "jaccard", "official": "indicator"}   # the weight of a positive in each variant


def _check(labels, table_codes, table_labels, variant):
    if variant not in CENTER_WEIGHTS:
        raise ValueError(f"variant must be one of {CENTER_WEIGHTS} ('paper' = CgAT's Theorem 1, "
                         f"'official' = the published code); got {variant!r}")
    check_table(labels, table_codes, table_labels)


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
