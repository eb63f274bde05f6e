"""A defense paper's headline, "defense A is more robust than defense B", measured on a results table: the gain of
A over B per attack and code length (:func:`defense_gain`) and its mean, per attack and overall
(:func:`defense_verdict`), numbers for a table or a metrics file.

    gain = defense_verdict(results, "saat", "atrdh", higher_is_better={"HAG": True, "DHTA": False})
    gain.points, gain.per_attack          # mean gain in mAP points (x100), overall and per attack

These are point estimates on one training run. Whether a paper's claim holds is a finding, judged on per-query
scores with its 95 % interval over queries and training seeds (``advhash.findings``, ``advhash.evidence``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import pandas as pd

__all__ = ["defense_gain", "Verdict", "defense_verdict"]


def defense_gain(results: pd.DataFrame, better: str, worse: str, *, higher_is_better: Mapping[str, bool],
                 model_column: str = "model") -> pd.DataFrame:
    """Per attack and code length, how much model ``better`` beats model ``worse``: in points (x100) and
    relative to ``worse``'s number (%). ``results`` has one row per (model, bits) and one column per
    attack in ``higher_is_better`` (True: mAP, more is more robust; False: t-MAP, less is more robust). The code
    lengths are those both models have (a profile may train the defenses at some code lengths only); none in
    common is a ValueError naming both models' code lengths."""
    by = results.set_index([model_column, "bits"])
    lengths = {name: set(results.bits[results[model_column] == name]) for name in (better, worse)}
    common = sorted(lengths[better] & lengths[worse])
    if not common:
        raise ValueError(f"{better!r} (bits {sorted(lengths[better])}) and {worse!r} (bits {sorted(lengths[worse])}) "
                         "share no code length in the results table: nothing to compare")
    rows = []
    for bits in common:
        for attack, higher in higher_is_better.items():
            a, b = by.loc[(better, bits), attack], by.loc[(worse, bits), attack]
            gain = (a - b) if higher else (b - a)
            rows.append(dict(attack=attack, bits=bits, points=100 * gain, relative=100 * gain / max(b, 1e-12)))
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Verdict:
    """A paper's headline "defense ``better`` is more robust than ``worse``" measured on our numbers: the gain of
    :func:`defense_gain` averaged over attacks and code lengths, in points (x100) and relative to ``worse`` (%),
    and per attack (points). ``holds``: the mean gain is positive (the sign of a point estimate, not a verdict:
    the verdict with its interval is ``advhash.findings``'); ``str()`` gives the numbers."""

    better: str
    worse: str
    points: float
    relative: float
    per_attack: dict[str, float]

    @property
    def holds(self) -> bool:
        return self.points > 0

    def summary(self) -> dict[str, float]:
        """The numbers for a metrics file: mean gain in points and relative (%)."""
        return dict(points=self.points, relative=self.relative)

    def __str__(self) -> str:
        attacks = ", ".join(f"{attack} {gain:+.2f}" for attack, gain in self.per_attack.items())
        return (f"{self.better} against {self.worse}: mean gain {self.points:+.2f} points "
                f"({self.relative:+.1f} % of {self.worse}'s); per attack, points: {attacks}")


def defense_verdict(results: pd.DataFrame, better: str, worse: str, *, higher_is_better: Mapping[str, bool],
                    model_column: str = "model") -> Verdict:
    """Measure "``better`` is more robust than ``worse``" on ``results`` (as :func:`defense_gain`): a
    :class:`Verdict` holding the mean gain overall and per attack."""
    gains = defense_gain(results, better, worse, higher_is_better=higher_is_better, model_column=model_column)
    per_attack = gains.groupby("attack", sort=False).points.mean()
    return Verdict(better, worse, float(gains.points.mean()), float(gains.relative.mean()),
                   {attack: float(gain) for attack, gain in per_attack.items()})
