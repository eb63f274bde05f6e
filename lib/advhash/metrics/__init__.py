"""Retrieval metrics for Hamming ranking: distances, stable ranking, mAP (full, @k, tie-aware,
targeted) and precision curves.

Codes are {-1, +1} (n, K), labels multi-hot {0, 1} (n, L); an item is relevant to a query when
they share a label (``relevance``, the library's one definition). Ranking is by Hamming distance with ties broken by database order (stable);
``ties="expected"`` gives the tie-aware mAP instead. See each module's docstring for the exact
conventions (``docs/methods.md``, sections Conventions and mAP and tie rules).
"""

from .average_precision import (
    average_precision_per_query,
    expected_average_precision,
    mean_average_precision,
    random_ranking_map,
    targeted_map,
)
from .curves import PrecisionRecallCurve, precision_at_n, precision_recall_curve, precision_within_radius
from .hamming import distance_histograms, hamming_distance, hamming_rank
from .relevance import relevance

__all__ = [
    "hamming_distance",
    "hamming_rank",
    "relevance",
    "distance_histograms",
    "average_precision_per_query",
    "mean_average_precision",
    "random_ranking_map",
    "targeted_map",
    "expected_average_precision",
    "PrecisionRecallCurve",
    "precision_recall_curve",
    "precision_at_n",
    "precision_within_radius",
]
