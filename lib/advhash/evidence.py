"""The per-query evidence of a notebook, and the effect a claim of the registry reads from it.

A notebook records every per-query score its findings need (AP@k of each attacked query, say), labelled with what
it was scored under; each claim's ``comparison`` (``notebooks/published/claims.yaml``) then says which rows are
"ours" and which the "reference", and :func:`claim_estimate` pairs them per query and per training seed:

    evidence = Evidence()
    evidence.add(result.query_scores, metric="map", model="saat", attack="SAAT", bits=32, seed=1)
    evidence.add(clean_ap, metric="map", model="saat", attack="clean", bits=32, seed=1)
    findings.judge(evidence, featured_bits=32)          # advhash.findings: every claim of the section

Rule (``docs/methods.md``, "Findings and their uncertainty"): keep the rows of the claim's metric, its models,
attacks, tasks, protocol and code lengths; the rows whose ``compare`` column holds ``ours`` against those holding
``reference``; every other label both sides carry (say three attacks, or two code lengths) is averaged per query, and
must be the same on both sides and for every seed; rows of a sub-experiment (an iterate, a transferred
perturbation) enter only the claims that compare on it; queries are paired by (seed, dataset, query); the interval is
``advhash.uncertainty.seed_interval`` (seeds, then queries; BCa over queries when there is one seed). A claim at the
level "queries" reads the smallest seed recorded only (the run every table shows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from .claims import METRICS, REGISTRY, Claim, MissingResultError, require_available
from .uncertainty import Estimate, seed_interval

__all__ = ["LABELS", "COMPARE_COLUMN", "Evidence", "claim_estimate", "extra_seeds"]

# what a score can be labelled with; queries are identified by (dataset, query) within a seed
LABELS = ("dataset", "model", "attack", "bits", "task", "protocol", "iteration", "perturbation")
# the claims' ``compare`` kinds and the label column each compares on
COMPARE_COLUMN = {"models": "model", "attacks": "attack", "bits": "bits", "tasks": "task",
                  "iterations": "iteration", "perturbations": "perturbation"}
# the claims' filter kinds (a list in the comparison) and the column each filters
FILTER_COLUMN = {"models": "model", "attacks": "attack", "tasks": "task"}
COLUMNS = ("metric", "seed", *LABELS, "query", "score")
# labels that mark a sub-experiment (an attack's iterate, a perturbation crafted on another model): rows carrying one
# are read only by the claims that compare on it, never averaged into another claim's attack or model
SUB_EXPERIMENTS = ("iteration", "perturbation")


class Evidence:
    """Per-query scores, one row per (metric, seed, labels, query): the table every finding of a notebook is
    computed from (:func:`claim_estimate`). Scores are the scores' units (AP as a fraction)."""

    def __init__(self):
        self._parts: list[pd.DataFrame] = []

    def add(self, scores, *, metric: str, seed: int = 0, **labels) -> None:
        """Record ``scores`` ((n,) per query, in query order: query i is the i-th attacked query) of ``metric``
        (one of ``advhash.claims.METRICS``) for training seed ``seed``, labelled by ``labels`` (keys of ``LABELS``:
        model="saat", attack="SAAT", bits=32, ...). Labels a claim compares must be spelled as the registry spells
        them."""
        if metric not in METRICS:
            raise ValueError(f"metric {metric!r} is not one the claims use: use one of {', '.join(METRICS)}")
        if unknown := sorted(set(labels) - set(LABELS)):
            raise ValueError(f"unknown label(s) {unknown}: label scores with {', '.join(LABELS)}")
        if isinstance(scores, torch.Tensor):
            scores = scores.detach().cpu().double().numpy()
        values = np.asarray(scores, dtype=float)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"scores of {metric} {labels}: expected one score per query (1-D, not empty), got shape "
                             f"{values.shape}")
        if not np.isfinite(values).all():
            raise ValueError(f"scores of {metric} {labels}: {int((~np.isfinite(values)).sum())} NaN or infinite "
                             "score(s): score every query")
        part = pd.DataFrame({"query": np.arange(len(values)), "score": values})
        part.insert(0, "metric", metric)
        part.insert(1, "seed", int(seed))
        for name in LABELS:
            part[name] = labels.get(name)
        self._parts.append(part[list(COLUMNS)])

    def add_runs(self, runs, *, seed: int = 0, targeted: Sequence[str] = (), **labels) -> None:
        """Record the per-query scores of attack runs ({(model, bits, attack): AttackResult}, as
        ``advhash.evaluation.attack_scores`` returns them): AP as metric "map", or t-AP as "t_map" for the attack
        labels in ``targeted``; ``labels`` (e.g. dataset=...) go on every row."""
        for (model, bits, attack), result in runs.items():
            self.add(result.query_scores, metric="t_map" if attack in targeted else "map", seed=seed, model=model,
                     attack=attack, bits=bits, **labels)

    def add_ensemble(self, reports, *, seed: int = 0, **labels) -> None:
        """Record the per-query scores of an ensemble leaderboard ({(model, bits): RobustnessReport} run with
        ``per_query=True``, ``advhash.robustness.leaderboard``): the clean queries' AP (metric "map", attack
        "clean") and the ensemble's per-query worst case (metric "robust_map")."""
        for (model, bits), report in reports.items():
            if report.per_query is None:
                raise ValueError(f"the report of {model} at {bits} bits has no per-query scores: run the leaderboard "
                                 "with per_query=True")
            scored = dict(seed=seed, model=model, bits=bits, **labels)
            self.add(report.per_query["clean"], metric="map", attack="clean", **scored)
            self.add(report.per_query["untargeted:worst case"], metric="robust_map", **scored)

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts)

    @property
    def frame(self) -> pd.DataFrame:
        """Every row recorded, in the order added: columns ``COLUMNS`` (a label not given is None)."""
        if not self._parts:
            return pd.DataFrame(columns=list(COLUMNS))
        return pd.concat(self._parts, ignore_index=True)

    def available(self, featured_bits: int | None = None) -> dict:
        """What the evidence holds, by kind, for ``advhash.claims.require_available``."""
        frame = self.frame
        found = {kind: _values(frame, column) for kind, column in COMPARE_COLUMN.items()}
        found["protocols"] = _values(frame, "protocol")
        if found["iterations"]:
            found["iterations"] |= {"first", "last"}
        return dict(found, featured_bits=featured_bits)


def extra_seeds(seed: int, training_seeds: Sequence[int], *, section: str) -> list[int]:
    """The training seeds beyond ``seed`` (whose models every table shows) that a notebook trains for its findings,
    in order; refuses, naming the parameter, its params.yaml ``section`` and the fix, a list that repeats a seed or
    does not hold ``seed`` as its smallest (a claim of one training run reads the smallest seed recorded)."""
    seeds = list(training_seeds)
    if len(set(seeds)) != len(seeds) or seed not in seeds or seed != min(seeds):
        raise ValueError(f"training_seeds = {seeds} (params.yaml, section {section}): list each seed once, with seed "
                         f"= {seed} (the models every table shows) as the smallest, e.g. training_seeds: "
                         f"[{seed}, {seed + 1}, {seed + 2}]")
    return [value for value in seeds if value != seed]


def _values(frame: pd.DataFrame, column: str) -> set:
    return set(frame[column].dropna().unique().tolist()) if column in frame else set()   # plain ints in messages


def _side_value(claim: Claim, rows: pd.DataFrame, name) -> object:
    """The label value of one side of the comparison: "first" and "last" of iterations are the smallest and
    largest iteration after 0 that the rows hold."""
    comparison = claim.comparison
    if comparison.compare == "iterations" and name in ("first", "last"):
        marks = sorted(value for value in rows["iteration"].dropna().unique() if value > 0)
        if len(marks) < 2:
            raise MissingResultError(f"claim {claim.id!r} ({claim.section}) compares the first and last iterations, "
                                     f"but the run recorded {marks or 'none'} after 0: record at least two marks")
        return marks[0] if name == "first" else marks[-1]
    return name


def claim_estimate(claim: Claim, evidence: Evidence | pd.DataFrame, *, featured_bits: int | None = None,
                   n_resamples: int = 2000, seed: int = 0) -> Estimate:
    """The effect ``claim`` implies (ours minus its reference, averaged as the module docstring says) on
    ``evidence``, with its 95 % interval over seeds and queries (``advhash.uncertainty.seed_interval``).

    Refuses, naming the claim and what is missing, a comparison the evidence cannot make: a model, attack, task,
    code length or protocol it lacks (``require_available``), a side without rows, or sides labelled differently
    (ours under three attacks, the reference under two)."""
    frame = evidence.frame if isinstance(evidence, Evidence) else evidence
    available = evidence.available(featured_bits) if isinstance(evidence, Evidence) else None
    if available is not None:
        require_available(claim, available)
    comparison, where = claim.comparison, f"claim {claim.id!r} ({claim.section})"
    rows = frame[frame.metric == comparison.metric]
    if rows.empty:
        raise MissingResultError(f"{where} needs {comparison.metric} scores; the run recorded "
                                 f"{sorted(frame.metric.unique()) or 'none'}. Record them, or correct the claim in "
                                 f"{REGISTRY}.")
    if comparison.level == "queries":           # one training run: the seed of the tables (the smallest recorded)
        rows = rows[rows.seed == rows.seed.min()]
    for column in SUB_EXPERIMENTS:              # an iterate or a transferred perturbation enters only its own claims
        if COMPARE_COLUMN[comparison.compare] != column:
            rows = rows[rows[column].isna()]
    for kind, column in FILTER_COLUMN.items():
        if names := getattr(comparison, kind):
            rows = rows[rows[column].isin(names)]
    if comparison.protocol is not None:
        rows = rows[rows.protocol == comparison.protocol]
    if comparison.compare != "bits":
        rows = rows[rows.bits.isin(_bits(claim, rows, featured_bits))]
    column = COMPARE_COLUMN[comparison.compare]
    sides = {side: rows[rows[column] == _side_value(claim, rows, getattr(comparison, side))]
             for side in ("ours", "reference")}
    for side, side_rows in sides.items():
        if side_rows.empty:
            raise MissingResultError(f"{where}: no {comparison.metric} scores for {column} "
                                     f"{getattr(comparison, side)!r} ({side}) under its filters; the rows left hold "
                                     f"{column} {sorted(map(str, rows[column].dropna().unique()))}")
    per_seed = _paired(where, column, sides)
    return seed_interval(per_seed, n_resamples=n_resamples, seed=seed)


def _bits(claim: Claim, rows: pd.DataFrame, featured_bits: int | None) -> Sequence[int]:
    bits = claim.comparison.bits
    if bits == "all":
        return sorted(rows.bits.dropna().unique())
    if bits == "featured":
        if featured_bits is None:
            raise MissingResultError(f"claim {claim.id!r} ({claim.section}) is judged at the featured code length: "
                                     "pass featured_bits")
        return [featured_bits]
    return list(bits)


def _paired(where: str, column: str, sides: dict[str, pd.DataFrame]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{seed: (ours, reference)} per-query means over the labels both sides share, paired by (dataset, query)."""
    key = ["seed", "dataset", "query"]
    averaged = [name for name in LABELS if name not in (column, "dataset")]
    means, combos = {}, {}
    for side, rows in sides.items():
        rows = rows.fillna({name: "-" for name in averaged + ["dataset"]})
        labelled = rows[["seed", *averaged]].drop_duplicates()        # per seed: each seed averages the same labels
        combos[side] = {tuple(combo) for combo in labelled.itertuples(index=False)}
        means[side] = rows.groupby(key, sort=True).score.mean()
    seeds = {seed for seed, *_ in combos["ours"] | combos["reference"]}
    if len(seeds) > 1:
        per_seed = {seed: {tuple(labels) for s, *labels in combos["ours"] if s == seed} for seed in seeds}
        if len({frozenset(labels) for labels in per_seed.values()}) > 1:
            counts = {seed: len(labels) for seed, labels in sorted(per_seed.items())}
            raise MissingResultError(f"{where}: the training seeds are not scored under the same "
                                     f"{'/'.join(averaged)} (combinations per seed: {counts}); record every seed "
                                     "under the same attacks, code lengths and models")
    if combos["ours"] != combos["reference"]:
        only = {side: sorted(map(str, combos[side] - combos[other]))[:3]
                for side, other in (("ours", "reference"), ("reference", "ours"))}
        raise MissingResultError(f"{where}: ours and the reference are not scored under the same "
                                 f"seed/{'/'.join(averaged)}: only ours {only['ours']}, only the reference "
                                 f"{only['reference']}")
    if not means["ours"].index.equals(means["reference"].index):
        raise MissingResultError(f"{where}: ours and the reference do not score the same seeds and queries "
                                 f"({len(means['ours'])} against {len(means['reference'])})")
    seeds = means["ours"].index.get_level_values("seed")
    return {int(seed): (means["ours"][seeds == seed].to_numpy(), means["reference"][seeds == seed].to_numpy())
            for seed in sorted(set(seeds))}
