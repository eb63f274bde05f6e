"""SAAT's mainstay codes: Yuan, Zhang, Wang, Wu, "Semantic-Aware Adversarial Training for Reliable Deep
Hashing Retrieval", IEEE TIFS 2023 (arXiv 2310.14637), Discriminative Mainstay Features Learning (DMFL),
Theorem 1:

    b_m = argmin_b  sum_{j in P} w_j d_H(b, b_j) - sum_{j in N} (1 / |N|) d_H(b, b_j),
    w_j = cos(y, y_j) / sum_{P} cos(y, y_k),
    b_m = sign( sum_{j in P} w_j b_j  -  (1 / |N|) sum_{j in N} b_j ),

with cos the cosine similarity of the label vectors, P the items with cos > 0 (sharing a label) and N
those with cos = 0; an empty side contributes an empty sum. CgAT's center code (``center.py``) with cosine
instead of Jaccard weights. Two variants (``variant=``, ``MAINSTAY_VARIANTS``) differ only in a tied bit:
``"paper"`` (Default) +1, as sign(0) := +1 for every code here; ``"published"`` 0, the ``torch.sign`` of SAAT
``adv_attack.py`` L14-31 (L30). ``docs/methods.md``, section Mainstay codes.
"""

from __future__ import annotations

import torch

from ..utils import check_choice
from .representative import check_table, representative_directions, representative_objective

MAINSTAY_VARIANTS = ("paper", "published")


def mainstay_codes(labels: torch.Tensor, table_codes: torch.Tensor, table_labels: torch.Tensor, *,
                   variant: str = "paper") -> torch.Tensor:
    """Mainstay codes (SAAT Theorem 1) of items with ``labels``, from a table of labelled codes.

    Args:
        labels: (n, L) multi-hot {0, 1} labels (queries, a training batch, or target labels).
        table_codes: (m, K) codes in {-1, +1} of the table items (the training set's current codes).
        table_labels: (m, L) their multi-hot labels.
        variant: "paper" (Default: a tied bit is +1) or "published" (``torch.sign``: a tied bit is 0, and then
            guides nothing; SAAT adv_attack.py L30).

    Returns:
        (n, K) float codes in {-1, +1} ("paper"), or in {-1, 0, +1} ("published"), on labels' device.

    Example:
        >>> mainstays = mainstay_codes(query_labels, encode(model, data.train), data.train.labels)
    """
    check_choice("variant", variant, MAINSTAY_VARIANTS, hint=" ('paper': a tied bit is +1; 'published': "
                 "torch.sign, a tied bit is 0)")
    check_table(labels, table_codes, table_labels)
    codes = torch.empty(labels.shape[0], table_codes.shape[1], device=labels.device)
    for rows, direction, _, _ in representative_directions(labels, table_codes, table_labels, "cosine"):
        codes[rows] = torch.sign(direction) if variant == "published" else torch.where(direction >= 0, 1.0, -1.0)
    return codes


def mainstay_code_objective(candidates: torch.Tensor, labels: torch.Tensor, table_codes: torch.Tensor,
                            table_labels: torch.Tensor) -> torch.Tensor:
    """psi(b) of SAAT's DMFL, the objective ``mainstay_codes`` minimizes in closed form (both variants: a tied bit
    adds the same value either way), for candidate codes (C, K) in {-1, +1} -> values (n, C)."""
    check_table(labels, table_codes, table_labels)
    return representative_objective(candidates, labels, table_codes, table_labels, "cosine")
