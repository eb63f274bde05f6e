"""A notebook's findings: each claim of its section in the registry (``advhash.claims``) with our estimate, its 95 %
interval and a verdict (``advhash.uncertainty``), shown as one table at the top of the report and written as
``metrics/NN_findings.json`` (every number) and ``metrics/NN_verdicts.json`` (the stage's DVC metric). A finding
never fails a run: a NOT REPRODUCED row is a row like any other.

    findings = Findings("04_saat")
    findings.judge(evidence, featured_bits=32)            # every claim of the section, from advhash.evidence
    findings.table()                                      # claim | source | published | ours [95 % interval] | ...
    findings.finish()                                     # the findings table at the top of the report
    findings.write(run.metrics_dir / "04_saat_findings.json")

(``findings.add(claim_id, estimate)`` judges one claim on an estimate computed otherwise.)

Numbers are shown in mAP points (x100) at the registry's precision (``POINT_DECIMALS``), relative effects as
percents (``PERCENT_DECIMALS``); the JSON keeps them in points, rounded to 6 digits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .claims import SECTIONS, Claim, load_claims
from .evidence import claim_estimate
from .report import SUMMARY_HEADING, show_summary
from .results import write_json
from .uncertainty import VERDICTS, Estimate, agreement, magnitude_ratio

__all__ = ["POINT_DECIMALS", "PERCENT_DECIMALS", "FINDINGS_SUFFIX", "VERDICTS_SUFFIX", "Finding", "finding", "Findings",
           "MissingFindingError", "verdicts_path"]

POINT_DECIMALS = 2     # the registry states every published effect in points to 2 decimals (tests/test_claims.py)
PERCENT_DECIMALS = 1   # relative effects, e.g. "+14.2 %"
COLUMNS = ("claim", "source", "published", "ours [95 % interval]", "verdict", "ours / published")


FINDINGS_SUFFIX, VERDICTS_SUFFIX = "_findings.json", "_verdicts.json"


def verdicts_path(findings_path: str | Path) -> Path:
    """The verdicts file beside a findings file: ``metrics/04_saat_verdicts.json`` for ``04_saat_findings.json``."""
    findings_path = Path(findings_path)
    return findings_path.with_name(findings_path.name[:-len(FINDINGS_SUFFIX)] + VERDICTS_SUFFIX)


class MissingFindingError(LookupError):
    """A claim of the section has no finding; the message names every such claim."""


@dataclass(frozen=True)
class Finding:
    """One claim judged: our ``estimate`` (in the scores' units, mAP as a fraction), its ``verdict`` (REPRODUCED,
    NOT REPRODUCED, INCONCLUSIVE or "INCONCLUSIVE: n = 12 queries"), the ``agreement`` line ("direction
    reproduced, magnitude 0.3x the published") and the ``published_effect`` it was compared with, in the
    estimate's units (None where the paper states no magnitude)."""

    claim: Claim
    estimate: Estimate
    verdict: str
    agreement: str
    published_effect: float | None

    @property
    def magnitude(self) -> float | None:
        """Ours as a fraction of the published effect (``advhash.uncertainty.magnitude_ratio``), or None."""
        return magnitude_ratio(self.estimate, self.published_effect)


def published_effect(claim: Claim, estimate: Estimate) -> float | None:
    """The claim's published effect in the estimate's units: a relative percent, where the claim states one,
    applied to our reference's mean (so ours over it is ``Estimate.relative`` over the published percent);
    else the published points / 100; None where the paper states neither (or an effect of 0, which has no ratio)."""
    published = claim.published
    if published.relative_percent is not None and math.isfinite(estimate.relative):
        effect = published.relative_percent / 100 * estimate.reference_mean
    else:
        effect = published.effect
    return effect if effect else None


def finding(claim: Claim, estimate: Estimate, *, min_queries: int = 20) -> Finding:
    """Judge ``claim`` on ``estimate`` (ours minus the claim's reference, e.g. from ``paired_interval`` or
    ``seed_interval``): the verdict in the claim's direction, and how ours compares with the published effect.
    Never raises on the verdict; refuses only an estimate that is not one (NaN, see ``_check_estimate``)."""
    _check_estimate(claim, estimate)
    direction, effect = claim.comparison.direction, published_effect(claim, estimate)
    return Finding(claim, estimate, estimate.verdict(direction, min_queries=min_queries),
                   agreement(estimate, direction=direction, published=effect, min_queries=min_queries), effect)


class Findings:
    """The findings of one notebook (``section``, e.g. "04_saat"): one per claim of the section in the registry
    (``registry``: default the project's ``notebooks/published/claims.yaml``), added as the notebook computes them,
    shown and written in registry order. ``claims`` lists the section's claims, for ``require_available``."""

    def __init__(self, section: str, *, registry: str | Path | None = None, min_queries: int = 20):
        if section not in SECTIONS:
            raise ValueError(f"unknown section {section!r}: use one of {', '.join(SECTIONS)}")
        everything = load_claims(registry)
        self.section, self.min_queries = section, min_queries
        self.claims = [claim for claim in everything if claim.section == section]
        self._sections = {claim.id: claim.section for claim in everything}
        self.findings: dict[str, Finding] = {}

    def add(self, claim_id: str, estimate: Estimate) -> Finding:
        """Judge the claim ``claim_id`` of this section on ``estimate`` and keep the finding; returns it."""
        if claim_id not in self._sections:
            raise ValueError(f"claim {claim_id!r} is not in the claims registry: use one of "
                             f"{', '.join(claim.id for claim in self.claims)} (the claims of {self.section})")
        if self._sections[claim_id] != self.section:
            raise ValueError(f"claim {claim_id!r} belongs to {self._sections[claim_id]}, not {self.section}: judge "
                             "it in its own notebook")
        if claim_id in self.findings:
            raise ValueError(f"claim {claim_id!r} already has a finding ({self.findings[claim_id].verdict}): add "
                             "each claim once")
        claim = next(claim for claim in self.claims if claim.id == claim_id)
        self.findings[claim_id] = finding(claim, estimate, min_queries=self.min_queries)
        return self.findings[claim_id]

    def judge(self, evidence, *, featured_bits: int | None = None, n_resamples: int = 2000,
              seed: int = 0) -> list[Finding]:
        """Judge every claim of the section without a finding yet on ``evidence`` (``advhash.evidence.Evidence``:
        ``claim_estimate`` reads each claim's effect from it); returns the findings in registry order. A claim the
        evidence cannot compare raises ``advhash.claims.MissingResultError`` naming it and what is missing."""
        for claim in self.claims:
            if claim.id not in self.findings:
                self.add(claim.id, claim_estimate(claim, evidence, featured_bits=featured_bits,
                                                  n_resamples=n_resamples, seed=seed))
        return self.ordered()

    def missing(self) -> list[str]:
        """The ids of the section's claims without a finding yet, in registry order."""
        return [claim.id for claim in self.claims if claim.id not in self.findings]

    def ordered(self) -> list[Finding]:
        """The findings added so far, in registry order."""
        return [self.findings[claim.id] for claim in self.claims if claim.id in self.findings]

    def table(self) -> pd.DataFrame:
        """One row per finding, in registry order, indexed by claim id, every cell text (``COLUMNS``): the claim as
        the paper states it, its source ("SAAT, Table II"), the published effect ("+7.11 pts"), ours with its
        interval ("+2.83 [+1.10, +4.50] pts"), the verdict and ours as a fraction of the published effect."""
        rows = [_row(found) for found in self.ordered()]
        return pd.DataFrame(rows, columns=list(COLUMNS),
                            index=pd.Index([found.claim.id for found in self.ordered()], name="id"))

    def markdown(self, invariants_held: int | None = None, invariants_total: int | None = None) -> str:
        """:meth:`table` as a Markdown table, then "9 of 9 invariants hold." when the counts are given."""
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(_markdown_cell(cell) for cell in _row(found)) + " |" for found in self.ordered()]
        if invariants_held is not None or invariants_total is not None:
            lines += ["", _invariants_line(invariants_held, invariants_total)]
        return "\n".join(lines)

    def tally(self) -> str:
        """"4 findings: 2 reproduced, 1 not reproduced, 1 inconclusive"."""
        counts = [sum(found.verdict.split(":")[0] == verdict for found in self.ordered()) for verdict in VERDICTS]
        return f"{len(self.findings)} findings: " + ", ".join(f"{count} {verdict.lower()}"
                                                              for count, verdict in zip(counts, VERDICTS))

    def interpretation(self) -> str:
        """Two or three sentences that read the findings, generated from their verdicts (so they stay true whatever
        the run finds): which claims reproduced, which did not, which this run cannot decide, and how large ours is
        against the published effects, for the closing prose of a notebook."""
        self._require_complete("interpret")
        groups = {verdict: [found for found in self.ordered() if found.verdict.split(":")[0] == verdict]
                  for verdict in VERDICTS}
        words = {"REPRODUCED": "reproduced here (the effect has the paper's sign, its 95 % interval clear of zero)",
                 "NOT REPRODUCED": "did not reproduce (the interval lies on the other side of zero)",
                 "INCONCLUSIVE": "this run cannot decide (the interval contains zero, or too few queries)"}
        parts = [f"{len(found)} of {len(self.findings)} {words[verdict]}: "
                 + "; ".join(f'"{_short(item.claim.claim)}"' for item in found)
                 for verdict, found in groups.items() if found]
        text = "Of this section's claims, " + ". ".join(parts) + "."
        ratios = sorted(found.magnitude for found in groups["REPRODUCED"] if found.magnitude is not None)
        if ratios:
            span = f"{ratios[0]:.2g}x" if len(ratios) == 1 else f"{ratios[0]:.2g}x to {ratios[-1]:.2g}x"
            text += (f" Where the paper states a magnitude, the reproduced effects are {span} the published ones, "
                     "measured on other data, models and budgets than the paper's (the report's opening states ours).")
        return text

    def finish(self) -> str:
        """Check that every claim of the section has a finding, fill the report's findings display (at its top,
        ``advhash.report.open_report``) with the findings table, and return that markdown."""
        self._require_complete("finish")
        text = (f"{SUMMARY_HEADING}: {self.tally()}** (each claim of the papers as they state it; ours minus the "
                f"reference in mAP points x100, with its 95 % interval over "
                f"{_resampled(self.ordered())}; a finding never fails the run)\n\n{self.markdown()}")
        show_summary(text)
        return text

    def to_json(self) -> dict[str, dict]:
        """{claim id: {verdict, estimate, low, high, relative_percent, published_points,
        published_relative_percent, n_queries, n_seeds, levels}}, in mAP points, rounded to 6 digits (None for
        NaN or what the paper does not state)."""
        return {found.claim.id: _record(found) for found in self.ordered()}

    def verdicts(self) -> dict[str, str]:
        """{claim id: verdict}: the stage's DVC metric (one short key per claim, so that ``dvc metrics diff``
        names a verdict that changed and ``dvc metrics show`` stays a line per stage)."""
        return {found.claim.id: found.verdict for found in self.ordered()}

    def write(self, path: str | Path) -> Path:
        """Write :meth:`to_json` through ``advhash.results.write_json`` to ``path`` (``metrics/NN_findings.json``,
        every number of every finding, a plain output that ``advhash.overview`` and the site read) and
        :meth:`verdicts` beside it (``metrics/NN_verdicts.json``, the stage's DVC metric); refuses while a claim of
        the section has no finding. Returns ``path``."""
        self._require_complete("write")
        path = Path(path)
        if not path.name.endswith(FINDINGS_SUFFIX):
            raise ValueError(f"findings file {path}: name it <notebook>{FINDINGS_SUFFIX} (e.g. "
                             f"{self.section}{FINDINGS_SUFFIX}), so that its verdicts file is named alike")
        write_json(self.verdicts(), verdicts_path(path))
        return write_json(self.to_json(), path)

    def _require_complete(self, action: str) -> None:
        if missing := self.missing():
            raise MissingFindingError(
                f"cannot {action} the findings of {self.section}: {len(missing)} claim(s) of the registry have "
                f"none: {', '.join(missing)}. Add them (Findings.add); if this run cannot produce them, "
                "require_available(claim, ...) should have said so before the run computed anything.")


def _short(claim: str) -> str:
    """A claim's first clause ("HAG successfully attacks deep hashing models"), for a sentence that lists several."""
    return claim.split(";")[0].strip()


def _resampled(found: list[Finding]) -> str:
    seeds = sorted({item.estimate.n_seeds for item in found if "seeds" in item.estimate.levels})
    return "queries" + (f" and training seeds ({'/'.join(map(str, seeds))} seeds)" if seeds else "")


def _check_estimate(claim: Claim, estimate: Estimate) -> None:
    """Refuse what is not an Estimate, a NaN or infinite effect, and NaN interval ends beside two or more queries
    (only a single query has no interval)."""
    if not isinstance(estimate, Estimate):
        raise TypeError(f"claim {claim.id!r}: expected an advhash.uncertainty.Estimate (from paired_interval or "
                        f"seed_interval), got {type(estimate).__name__}")
    ends_missing = not (math.isfinite(estimate.low) and math.isfinite(estimate.high))
    if not math.isfinite(estimate.estimate) or (ends_missing and estimate.n_queries > 1):
        raise ValueError(f"claim {claim.id!r}: the estimate has NaN or infinite values ({estimate}): score every "
                         "query of both sides, or drop the unscored ones from both")


def _signed(value: float, decimals: int) -> str:
    return f"{round(value, decimals) + 0.0:+.{decimals}f}"   # + 0.0: no "-0.00"


def _published_text(claim: Claim) -> str:
    points, relative = claim.published.points, claim.published.relative_percent
    parts = ([f"{_signed(points, POINT_DECIMALS)} pts"] if points is not None else []) + \
            ([f"{_signed(relative, PERCENT_DECIMALS)} %"] if relative is not None else [])
    return " ".join([parts[0], *(f"({part})" for part in parts[1:])]) if parts else "not stated"


def _ours_text(found: Finding) -> str:
    estimate, d = found.estimate, POINT_DECIMALS
    if math.isfinite(estimate.low) and math.isfinite(estimate.high):
        text = f"{_signed(100 * estimate.estimate, d)} [{_signed(100 * estimate.low, d)}, " \
               f"{_signed(100 * estimate.high, d)}] pts"
    else:
        text = f"{_signed(100 * estimate.estimate, d)} pts (no interval)"
    published = found.claim.published
    if published.relative_percent is not None and math.isfinite(estimate.relative):
        relative = f"{_signed(estimate.relative, PERCENT_DECIMALS)} %"
        # a paper that states only a relative gain is compared in percents first (as advhash.overview shows it)
        text = f"{relative} ({text})" if published.points is None else f"{text} ({relative})"
    return text


def _row(found: Finding) -> list[str]:
    ratio = found.magnitude
    return [found.claim.claim, f"{found.claim.source.paper}, {found.claim.source.where}",
            _published_text(found.claim), _ours_text(found), found.verdict,
            "not stated" if ratio is None else f"{ratio:.2g}x"]


def _markdown_cell(text: str) -> str:
    return text.replace("|", r"\|").replace("*", r"\*").replace("\n", " ")


def _invariants_line(held, total) -> str:
    if not (isinstance(held, int) and isinstance(total, int) and 0 <= held <= total):
        raise ValueError(f"invariants: give held and total as counts with 0 <= held <= total, got {held!r} of "
                         f"{total!r}")
    return f"{held} of {total} invariants hold."


def _record(found: Finding) -> dict:
    estimate, published = found.estimate, found.claim.published

    def number(value):
        return round(value, 6) if value is not None and math.isfinite(value) else None

    return dict(verdict=found.verdict, estimate=number(100 * estimate.estimate), low=number(100 * estimate.low),
                high=number(100 * estimate.high), relative_percent=number(estimate.relative),
                published_points=published.points, published_relative_percent=published.relative_percent,
                n_queries=estimate.n_queries, n_seeds=estimate.n_seeds, levels="+".join(estimate.levels))
