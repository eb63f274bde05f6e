"""Exhaustive search over all 2^K binary codes: the reference every closed-form code is tested against."""

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
