"""Exhaustive search over all 2^K binary codes: the reference every closed-form code is tested against
(``closed_form_gap``: a closed form's distance to the brute-force minimum)."""

from __future__ import annotations

from typing import Callable

import torch

MAX_BRUTE_FORCE_BITS = 20


def all_codes(bits: int) -> torch.Tensor:
    """Every code of {-1, +1}^bits, shape (2^bits, bits), in binary counting order (bit 0 is the
    most significant: row 0 is all -1, the last row all +1)."""
    if not isinstance(bits, int) or not 1 <= bits <= MAX_BRUTE_FORCE_BITS:
        raise ValueError(f"brute force enumerates 2^bits codes; bits must be in [1, {MAX_BRUTE_FORCE_BITS}], got {bits!r}")
    integers = torch.arange(2**bits).unsqueeze(1)                       # (2^K, 1)
    powers = 2 ** torch.arange(bits - 1, -1, -1)                          # (K,)
    return ((integers // powers) % 2).float() * 2 - 1


def brute_force_minimum(objective: Callable[[torch.Tensor], torch.Tensor], bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimize ``objective`` over all codes by enumeration.

    Args:
        objective: maps candidate codes (2^K, K) to their values (n, 2^K), one row per item.
        bits: K.

    Returns:
        (minimum values (n,), one minimizing code per item (n, K), the first in ``all_codes`` order).
        Several codes can tie for the minimum, so compare a closed form by its objective value.
    """
    candidates = all_codes(bits)
    values = objective(candidates)                                       # (n, 2^K)
    best, index = values.min(dim=1)
    return best, candidates[index]


def closed_form_gap(closed_form: Callable[..., torch.Tensor], objective: Callable[..., torch.Tensor],
                    labels: torch.Tensor, table_codes: torch.Tensor, table_labels: torch.Tensor, *,
                    bits: int) -> dict[str, float | int]:
    """The brute-force check of a closed-form code (Theorem 1 of CgAT and of SAAT) on the first ``bits`` bits of a
    code table: the objective of the closed-form code of each query, ``closed_form(labels, table, table_labels)``
    (e.g. ``advhash.codes.mainstay_codes``), against its minimum over all 2^bits codes of
    ``objective(candidates, labels, table, table_labels) -> (n_query, n_candidates)`` (e.g.
    ``mainstay_code_objective``). Queries whose closed-form code has a zero bit (the published center code of an
    item with no positive or no negative) are not candidates and are counted apart.
    Returns bits, candidates, queries checked, zero_codes and max_gap (0 when the closed form is optimal)."""
    table_codes = table_codes[:, :bits]
    closed = closed_form(labels, table_codes, table_labels)
    defined = (closed != 0).all(1)
    best, _ = brute_force_minimum(lambda candidates: objective(candidates, labels, table_codes, table_labels), bits)
    gap = (torch.diagonal(objective(closed, labels, table_codes, table_labels)) - best)[defined]
    return dict(bits=bits, candidates=2**bits, queries=int(defined.sum()), zero_codes=int((~defined).sum()),
                max_gap=gap.abs().max().item() if len(gap) else 0.0)
