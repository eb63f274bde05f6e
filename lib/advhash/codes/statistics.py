"""Statistics of binary codes in {-1, +1}^K: how balanced and correlated a model's bits are, and how far
representative codes (a query's own, its center or mainstay code) sit from the database items that share a label
with the query and from those that do not.

    bit_statistics(db_codes)                                 # balance, mean |correlation| between bits
    distances = code_distances({"query code": codes, "center code": centers}, db_codes, labels, db_labels)
    distance_margins(distances)                              # mean distance to positives, negatives, margin
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd
import torch

from ..metrics import hamming_distance, relevance

__all__ = ["bit_correlation", "bit_statistics", "code_distances", "distance_margins"]


def bit_correlation(codes: torch.Tensor) -> torch.Tensor:
    """The correlation between the bits of ``codes`` (n, K) -> (K, K); a constant bit correlates with nothing (0)."""
    return torch.corrcoef(codes.T).nan_to_num(0.0)


def bit_statistics(db_codes: torch.Tensor) -> dict[str, float]:
    """Balance (mean |mean of a bit| over the database: 0 = every bit +1 on half the items, 1 = constant
    bits) and mean |correlation| between distinct bits (a constant bit correlates with nothing)."""
    bit_means = db_codes.mean(0)                                                          # (K,)
    correlation = bit_correlation(db_codes)                                               # (K, K)
    off_diagonal = correlation[~torch.eye(len(correlation), dtype=torch.bool)]
    return dict(balance=float(bit_means.abs().mean()), mean_abs_bit_correlation=float(off_diagonal.abs().mean()))


def code_distances(codes: Mapping[str, torch.Tensor], db_codes: torch.Tensor, labels: torch.Tensor,
                   db_labels: torch.Tensor) -> pd.DataFrame:
    """Hamming distances (``advhash.metrics.hamming_distance``) from each kind of query code (e.g. the query's own
    code, its center or mainstay code; (n, K) each, in {-1, +1}, or {-1, 0, +1} for the published center and
    mainstay codes, whose tied bits are 0) to the database codes ``db_codes`` (n_db, K) of the items that share a
    label with the query (``labels`` (n, L) against ``db_labels`` (n_db, L): "positives") and of those that do not
    ("negatives"). A tied bit counts 1/2, the mean over its two resolutions: d = d_H(b with ties at +1, b_db)
    + 1/2 (ties . b_db). Columns code, relation, distance (float32)."""
    relevant = relevance(labels, db_labels)                                               # (n_q, n_db)
    frames = []
    for kind, kind_codes in codes.items():
        tied = (kind_codes == 0).to(torch.float32)                                        # (n_q, K)
        distances = hamming_distance(kind_codes + tied, db_codes).to(torch.float32)       # d_H, ties at +1
        if tied.any():                                                                    # +1/2 toward +1, -1/2 toward -1
            distances += 0.5 * tied @ db_codes.to(torch.float32).T                        # (n_q, n_db)
        for relation, mask in (("positives", relevant), ("negatives", ~relevant)):
            frames.append(pd.DataFrame(dict(code=kind, relation=relation, distance=distances[mask].numpy())))
    return pd.concat(frames, ignore_index=True)


def distance_margins(distances: pd.DataFrame) -> pd.DataFrame:
    """Mean distance to positives and negatives per kind of code (:func:`code_distances`), and their margin
    (negatives - positives): a semantic representative sits near the positives and far from the negatives."""
    summary = distances.groupby(["code", "relation"]).distance.mean().unstack()
    summary["margin (neg - pos)"] = summary.negatives - summary.positives
    return summary
