"""Findings and their uncertainty: a paper's claim compared on per-query scores, with a bootstrap interval and a
verdict (``docs/methods.md``, section "Findings and their uncertainty").

Two levels, one rule:

- ``paired_interval``: two models (or attacks) scored on the same queries; the effect is mean(ours - reference)
  and its interval resamples queries (BCa, ``scipy.stats.bootstrap``).
- ``seed_interval``: the same comparison repeated for several training seeds; the interval resamples seeds and
  queries, crossed (every seed scores the same queries), after rliable's stratified bootstrap over runs.
- ``Estimate.verdict(direction)``: REPRODUCED when the interval excludes zero on the paper's side, NOT REPRODUCED
  when it excludes zero on the other side, INCONCLUSIVE when it contains zero, and "INCONCLUSIVE: n = 12 queries"
  when there are too few queries for an interval worth reading.

Scores are what the paper compares, per query (AP@k of each query, say): effects and published effects are in the
scores' units (mAP as a fraction, not points).
"""

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .utils import check_choice

VERDICTS = ("REPRODUCED", "NOT REPRODUCED", "INCONCLUSIVE")
METHODS = ("BCa", "percentile", "basic")   # what scipy.stats.bootstrap offers


@dataclass(frozen=True)
class Estimate:
    """An effect (ours minus the reference, in the scores' units) with its bootstrap interval.

    ``levels`` names what the interval resamples: ``("queries",)`` or ``("seeds", "queries")``; ``method`` is the
    interval's method as computed (``note`` says why when it is not the one asked for); ``low`` and ``high`` are NaN
    when no interval exists (a single query). ``reference_mean`` is the reference's mean score, for a relative effect.
    """
    estimate: float
    low: float
    high: float
    confidence: float
    n_queries: int
    n_seeds: int
    levels: tuple[str, ...]
    method: str
    reference_mean: float
    note: str = ""

    @property
    def relative(self) -> float:
        """The effect as a percentage of the reference's mean score (CgAT and SAAT state gains this way)."""
        return 100.0 * self.estimate / self.reference_mean if self.reference_mean else float("nan")

    def verdict(self, direction: int, *, min_queries: int = 20) -> str:
        """The verdict on a claim whose effect has the sign ``direction`` (+1: ours above the reference, -1: below).

        REPRODUCED: the interval excludes zero on the claim's side; NOT REPRODUCED: on the other side; INCONCLUSIVE:
        it contains zero; "INCONCLUSIVE: n = 12 queries" when fewer than ``min_queries`` queries (or no interval).
        """
        if direction not in (1, -1):
            raise ValueError(f"direction must be +1 (the claim says ours is higher) or -1 (lower); got {direction!r}")
        if self.n_queries < min_queries or not (np.isfinite(self.low) and np.isfinite(self.high)):
            return f"INCONCLUSIVE: n = {self.n_queries} quer{'y' if self.n_queries == 1 else 'ies'}"
        if self.low > 0 or self.high < 0:
            return "REPRODUCED" if (self.low > 0) == (direction > 0) else "NOT REPRODUCED"
        return "INCONCLUSIVE"

    def __str__(self) -> str:
        seeds = f" x {self.n_seeds} seeds" if "seeds" in self.levels else ""
        return (f"{self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}] "
                f"({self.confidence * 100:g} % {self.method}, {self.n_queries} queries{seeds})")


def paired_interval(ours, reference, *, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0,
                    method: str = "BCa") -> Estimate:
    """The effect mean(ours - reference) over queries scored by both, and its bootstrap interval over queries.

    The paired bootstrap (Efron and Tibshirani, *An Introduction to the Bootstrap*, 1993: resample the query pairs;
    BCa, their chapter 14) as ``scipy.stats.bootstrap(paired=True, method=method)`` computes it, seeded by a numpy
    Generator (same ``seed``, same interval). Where BCa is undefined (every difference equal: its acceleration is
    0/0) the percentile interval (chapter 13) stands in, and ``Estimate.note`` says so.

    ours, reference: (n_queries,) scores of the same queries in the same order.
    """
    ours, reference = _paired_scores(ours, reference)
    method = _check_settings(confidence, n_resamples, method)
    differences = ours - reference   # (n_queries,)
    found = dict(estimate=float(differences.mean()), confidence=confidence, n_queries=len(differences), n_seeds=1,
                 levels=("queries",), reference_mean=float(reference.mean()))
    if len(differences) < 2:
        return Estimate(low=float("nan"), high=float("nan"), method="none",
                        note="one query: no interval", **found)
    low, high = _scipy_interval(ours, reference, confidence, n_resamples, seed, method)
    note = ""
    if not (np.isfinite(low) and np.isfinite(high)):
        note = f"{method} undefined (every difference is {differences[0]:+.3g}): percentile interval"
        method = "percentile"
        low, high = _scipy_interval(ours, reference, confidence, n_resamples, seed, method)
    return Estimate(low=low, high=high, method=method, note=note, **found)


def seed_interval(per_seed, *, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> Estimate:
    """The effect over training seeds and queries, with a two-level bootstrap interval: seeds, then queries.

    per_seed: one ``(ours, reference)`` pair of (n_queries,) scores per training seed, the same queries in every
    pair; a sequence, or a mapping {training seed: pair} (errors then name the seed). The effect is the mean over
    seeds of mean(ours - reference). Each resample draws ``n_seeds`` seeds with replacement and ``n_queries``
    queries with replacement, the same queries for every drawn seed (seeds and queries are crossed: every seed
    scores the same queries; the bootstrap of a crossed design resamples both factors independently, McCullagh,
    Bernoulli 2000, and Owen, Annals of Applied Statistics 2007); the interval is the percentile interval of the
    resampled effects. This follows rliable's ``StratifiedBootstrap`` (Agarwal et al., NeurIPS 2021: runs resampled
    with replacement, percentile intervals) with queries as a second factor. Written here because
    ``scipy.stats.bootstrap`` resamples one factor only. With one seed it is ``paired_interval`` (BCa over
    queries), ``levels == ("queries",)``.
    """
    pairs = list(per_seed.items()) if isinstance(per_seed, Mapping) else list(enumerate(per_seed))
    if not pairs:
        raise ValueError("per_seed is empty: give one (ours, reference) pair of per-query scores per training seed")
    label = "seed" if isinstance(per_seed, Mapping) else "seed at position"
    scores = [_paired_scores(*_pair(pair, f"{label} {name}"), name=f"{label} {name}") for name, pair in pairs]
    if len(scores) == 1:
        return paired_interval(*scores[0], confidence=confidence, n_resamples=n_resamples, seed=seed)
    _check_settings(confidence, n_resamples, "percentile")
    lengths = {name: len(ours) for (name, _), (ours, _) in zip(pairs, scores)}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"every seed must score the same queries; queries per seed: {lengths}")
    differences = np.stack([ours - reference for ours, reference in scores])   # (n_seeds, n_queries)
    effects = _two_level_means(differences, n_resamples, np.random.default_rng(seed))   # (n_resamples,)
    low, high = np.quantile(effects, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Estimate(estimate=float(differences.mean()), low=float(low), high=float(high), confidence=confidence,
                    n_queries=differences.shape[1], n_seeds=len(scores), levels=("seeds", "queries"),
                    method="percentile", reference_mean=float(np.mean([ref.mean() for _, ref in scores])))


def magnitude_ratio(estimate, published) -> float | None:
    """Ours as a fraction of the published effect (0.3: a third of it; negative: the other sign); None when the
    paper gives no effect. ``estimate`` is an ``Estimate`` or a number, in the units of ``published``."""
    if published is None:
        return None
    if published == 0:
        raise ValueError("published effect is 0: no ratio to it; give None where the paper states no magnitude")
    ours = estimate.estimate if isinstance(estimate, Estimate) else float(estimate)
    return ours / published


def agreement(estimate: Estimate, *, direction: int, published=None, min_queries: int = 20) -> str:
    """One line on ours against the paper: "direction reproduced, magnitude 0.3x the published" and its kin.

    ``published`` is the paper's effect in the estimate's units (``Estimate.relative`` for a relative one), or None.
    """
    verdict = estimate.verdict(direction, min_queries=min_queries)
    ratio = magnitude_ratio(estimate, published)
    magnitude = "" if ratio is None else f", magnitude {ratio:.2g}x the published"
    if verdict == "REPRODUCED":
        return f"direction reproduced{magnitude or ' (the paper states no magnitude)'}"
    if verdict == "NOT REPRODUCED":
        return f"opposite direction{magnitude}"
    why = "the interval contains zero" if verdict == "INCONCLUSIVE" else verdict.split(": ", 1)[1]
    return f"direction not established ({why}){magnitude}"


def _scipy_interval(ours, reference, confidence, n_resamples, seed, method) -> tuple[float, float]:
    """scipy's paired bootstrap interval of mean(ours - reference), its warnings on degenerate data silenced: the
    caller reads a NaN end as "undefined"."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)   # BCa's 0/0 acceleration when every difference is equal
        result = stats.bootstrap((ours, reference), lambda a, b, axis: np.mean(a - b, axis=axis), paired=True,
                                 vectorized=True, n_resamples=n_resamples, confidence_level=confidence,
                                 method=method, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _two_level_means(differences: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples,) means of resamples of ``differences`` (n_seeds, n_queries), seeds and queries crossed: per
    resample, n_seeds seeds with replacement and one set of n_queries queries with replacement, the same queries
    for every drawn seed (every seed scores the same queries, so a query that is hard for one seed is hard for all:
    drawing queries apart per seed would average that shared effect away and give intervals too narrow). In chunks
    of resamples, so memory stays near 2**22 scores whatever the number of queries."""
    n_seeds, n_queries = differences.shape
    means = np.empty(n_resamples)
    chunk = max(1, 2**22 // max(n_queries * n_seeds, 1))
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        seeds = rng.integers(n_seeds, size=(size, n_seeds))                  # (size, n_seeds)
        queries = rng.integers(n_queries, size=(size, n_queries))            # (size, n_queries)
        per_seed = differences[seeds[:, :, None], queries[:, None, :]]       # (size, n_seeds, n_queries)
        means[start:start + size] = per_seed.mean(axis=(1, 2))
    return means


def _pair(pair, name: str):
    """The (ours, reference) of one seed, or an error naming the seed."""
    try:
        ours, reference = pair
    except (TypeError, ValueError):
        size = f" of length {len(pair)}" if hasattr(pair, "__len__") else ""
        raise ValueError(f"{name}: expected an (ours, reference) pair of per-query scores, "
                         f"got {type(pair).__name__}{size}") from None
    return ours, reference


def _paired_scores(ours, reference, *, name: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Both score arrays as 1-D floats of one length, without NaN or infinity, or an error naming the culprit."""
    where = f"{name}: " if name else ""
    arrays = []
    for label, values in (("ours", ours), ("reference", reference)):
        values = np.asarray(values, dtype=float)
        if values.ndim != 1:
            raise ValueError(f"{where}{label} must be one score per query (1-D), got shape {values.shape}")
        if values.size == 0:
            raise ValueError(f"{where}{label} is empty: score at least one query")
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ValueError(f"{where}{label} has {bad.size} NaN or infinite score(s), first at query {bad[0]} "
                             f"(value {values[bad[0]]}): score every query, or drop it from both arrays")
        arrays.append(values)
    if len(arrays[0]) != len(arrays[1]):
        raise ValueError(f"{where}ours has {len(arrays[0])} scores and reference {len(arrays[1])}: paired scores "
                         f"need the same queries in the same order")
    return arrays[0], arrays[1]


def _check_settings(confidence: float, n_resamples: int, method: str) -> str:
    """The method's name as ``METHODS`` spells it; or refuse a confidence outside (0, 1), a non-positive number of
    resamples or a method scipy lacks."""
    if not 0 < confidence < 1:
        hint = f" (a percentage? use {confidence / 100:g})" if 1 < confidence < 100 else ""
        raise ValueError(f"confidence must lie in (0, 1), e.g. 0.95; got {confidence}{hint}")
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer (e.g. 2000); got {n_resamples}")
    spelled = {name.lower(): name for name in METHODS}          # any case: "bca" is "BCa"
    return check_choice("method", spelled.get(str(method).lower(), method), METHODS)
