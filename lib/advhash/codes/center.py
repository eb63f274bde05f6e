"""CgAT's center codes: Wang, Lin, Li, "CgAT: Center-Guided Adversarial Training for Deep Hashing-Based
Retrieval", WWW 2023 (arXiv 2204.10779), Definition 1 and Theorem 1.

The center code of an item is the code closest to its positives P (sharing a label) and farthest from its
negatives N; the objective is linear in c, so (Theorem 1)

    c_i = argmin_c  sum_{P_i} w+_ij d_H(c, b_j) - sum_{N_i} w-_ij d_H(c, b_j)
        = sign( sum_{P_i} w+_ij b_j  -  sum_{N_i} w-_ij b_j ).

Two variants (``variant=``, ``CENTER_VARIANTS``): ``"paper"`` (Default: w+ the Jaccard similarity of the label
sets, normalized over P_i, w- = 1/|N_i|, an empty side an empty sum, a tied bit +1) and ``"published"`` (CgAT
``central_adv_train.py`` L39-49: w+ = 1/|P_i|, ``torch.sign`` so a tied bit is 0, and the all-zero code for an
item with no positive or no negative). Sums in float64, |sum| <= 1e-9 a tie (``representative.py``);
``docs/methods.md``, section Center codes.
"""

from __future__ import annotations

import torch

from ..utils import check_choice
from .representative import check_table, representative_directions, representative_objective

CENTER_VARIANTS = ("paper", "published")
_SIMILARITY = {"paper": "jaccard", "published": "indicator"}   # the weight of a positive in each variant


def _check(labels, table_codes, table_labels, variant):
    check_choice("variant", variant, CENTER_VARIANTS, hint=" ('paper' = CgAT's Theorem 1 with Jaccard weights, "
                 "'published' = the CgAT code's central_adv_train.py)")
    check_table(labels, table_codes, table_labels)


def center_codes(labels: torch.Tensor, table_codes: torch.Tensor, table_labels: torch.Tensor, *,
                 variant: str = "paper") -> torch.Tensor:
    """Center codes (CgAT Theorem 1) of items with ``labels``, from a table of labelled codes.

    Args:
        labels: (n, L) multi-hot {0, 1} labels of the items (queries or a training batch).
        table_codes: (m, K) codes b_j in {-1, +1} (or relaxed codes in [-1, 1]) of the table items,
            usually the current codes of the training set.
        table_labels: (m, L) multi-hot labels of the table items.
        variant: "paper" (default) or "published" (module docstring).

    Returns:
        (n, K) float codes in {-1, +1} ("paper"), or in {-1, 0, +1} ("published"), on labels' device.

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
