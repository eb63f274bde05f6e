"""SAAT's mainstay codes: Yuan, Zhang, Wang, Wu, "Semantic-Aware Adversarial Training for Reliable Deep
Hashing Retrieval", IEEE TIFS 2023 (arXiv 2310.14637), Discriminative Mainstay Features Learning (DMFL),
Theorem 1.

The mainstay code of an item is the code closest to its relevant items and farthest from its
irrelevant ones, the relevant ones weighted by how similar their labels are:

    b_m = argmin_b  sum_{j in P} w_j d_H(b, b_j) - sum_{j in N} (1 / |N|) d_H(b, b_j),
    w_j = cos(y, y_j) / sum_{P} cos(y, y_k),

    b_m = sign( sum_{j in P} w_j b_j  -  (1 / |N|) sum_{j in N} b_j )          (Theorem 1),

with cos the cosine similarity of the label vectors, P the items with cos > 0 (sharing a label) and N
those with cos = 0; the SAAT code computes this (adv_attack.py; ``docs/methods.md``, section Mainstay
codes, for its tied bits). It is
CgAT's center code (``center.py``) with cosine instead of Jaccard weights on the positives: on
single-label data the two coincide. An empty side contributes an empty sum; a tied bit is +1.
"""

from __future__ import annotations

import torch

from .representative import check_table, representative_directions, representative_objective


def mainstay_codes(labels: torch.Tensor, table_codes: torch.Tensor, table_labels: torch.Tensor) -> torch.Tensor:
    """Mainstay codes (SAAT Theorem 1) of items with ``labels``, from a table of labelled codes.

    Args:
        labels: (n, L) multi-hot {0, 1} labels (queries, a training batch, or target labels).
        table_codes: (m, K) codes in {-1, +1} of the table items (the training set's current codes).
        table_labels: (m, L) their multi-hot labels.

    Returns:
        (n, K) float codes in {-1, +1} on labels' device.

    Example:
        >>> mainstays = mainstay_codes(query_labels, encode(model, data.train), data.train.labels)
    """
    check_table(labels, table_codes, table_labels)
    codes = torch.empty(labels.shape[0], table_codes.shape[1], device=labels.device)
    for rows, direction, _, _ in representative_directions(labels, table_codes, table_labels, "cosine"):
        codes[rows] = torch.where(direction >= 0, 1.0, -1.0)
    return codes


def mainstay_code_objective(candidates: torch.Tensor, labels: torch.Tensor, table_codes: torch.Tensor,
                            table_labels: torch.Tensor) -> torch.Tensor:
    """psi(b) of SAAT's DMFL, the objective ``mainstay_codes`` minimizes in closed form, for candidate codes
    (C, K) in {-1, +1} -> values (n, C)."""
    check_table(labels, table_codes, table_labels)
    return representative_objective(candidates, labels, table_codes, table_labels, "cosine")
