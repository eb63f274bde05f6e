"""advhash.findings: verdicts of real registry claims on synthetic per-query scores with a known effect, a NOT
REPRODUCED row kept in every view (table, markdown, JSON), the number formatting, registry order and the errors."""

import dataclasses
import json
import re

import numpy as np
import pytest

import advhash.findings as findings_module
from advhash.claims import claims_for
from advhash.findings import Findings, MissingFindingError, finding
from advhash.report import SUMMARY_HEADING
from advhash.uncertainty import paired_interval

SECTION = "05_cgat"
POSITIVE, TARGETED, ZERO, FEW = ("cgat-over-atrdh", "cgat-over-atrdh-targeted", "cgat-over-atrdh-ensemble",
                                 "cgat-over-undefended")   # 05's claims, in registry order


def scores(effect: float, *, n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ours, reference) per-query APs: reference uniform on [0.3, 0.7], ours = reference + effect + noise whose
    mean is exactly zero (so a zero effect is exactly zero)."""
    rng = np.random.default_rng(seed)
    reference = rng.uniform(0.3, 0.7, n)
    noise = rng.normal(0, 0.05, n)
    return reference + effect + noise - noise.mean(), reference


@pytest.fixture(scope="module")
def estimates():
    return {POSITIVE: paired_interval(*scores(+0.03)),      # CgAT above ATRDH, as claimed (+1)
            TARGETED: paired_interval(*scores(+0.03)),      # t-MAP up where the claim says down (-1)
            ZERO: paired_interval(*scores(0.0)),
            FEW: paired_interval(*scores(+0.03, n=12))}


@pytest.fixture
def findings(estimates):
    found = Findings(SECTION)
    for claim_id in reversed(list(estimates)):              # added out of order on purpose
        found.add(claim_id, estimates[claim_id])
    return found


def test_each_verdict_follows_the_interval_and_the_claims_direction(findings):
    verdicts = {claim_id: found.verdict for claim_id, found in findings.findings.items()}
    assert verdicts == {POSITIVE: "REPRODUCED", TARGETED: "NOT REPRODUCED", ZERO: "INCONCLUSIVE",
                        FEW: "INCONCLUSIVE: n = 12 queries"}
    assert findings.missing() == []


def test_a_relative_published_effect_is_compared_with_our_relative_effect(findings, estimates):
    headline = findings.findings[POSITIVE]
    ratio = estimates[POSITIVE].relative / 14.17                       # cgat-over-atrdh: +14.17 % relative
    assert headline.magnitude == pytest.approx(ratio)
    assert headline.agreement == f"direction reproduced, magnitude {ratio:.2g}x the published"
    assert findings.findings[ZERO].published_effect is None            # the paper states no magnitude


def test_a_not_reproduced_finding_is_never_dropped(findings):
    table, markdown, record = findings.table(), findings.markdown(9, 9), findings.to_json()
    assert table.loc[TARGETED, "verdict"] == "NOT REPRODUCED"
    assert "| NOT REPRODUCED |" in markdown
    assert record[TARGETED]["verdict"] == "NOT REPRODUCED"
    assert len(table) == len(record) == markdown.count("\n| ") == 4


def test_rows_follow_the_registry_and_read_as_text(findings):
    claims = claims_for(SECTION)
    table = findings.table()
    assert list(table.index) == [claim.id for claim in claims] == list(findings.to_json())
    assert list(table["claim"]) == [claim.claim for claim in claims]
    assert table.loc[POSITIVE, "source"] == "CgAT, abstract"
    assert table.loc[POSITIVE, "published"] == "+14.2 %"
    assert table.loc[ZERO, "published"] == "not stated"
    assert re.fullmatch(r"\+\d+\.\d % \(\+\d\.\d\d \[\+\d\.\d\d, \+\d\.\d\d\] pts\)",   # percents first, as published
                        table.loc[POSITIVE, "ours [95 % interval]"])
    assert re.fullmatch(r"[+-]0\.\d\d \[-\d\.\d\d, \+\d\.\d\d\] pts", table.loc[ZERO, "ours [95 % interval]"])
    text = table.to_string() + findings.markdown(9, 9)
    for pandas_repr in ("dtype", "Name:", "...", "nan"):
        assert pandas_repr not in text
    assert not re.search(r"\d\.\d{3}", text)                           # nothing beyond the published precision


def test_finish_fills_the_reports_summary_with_the_table(findings, monkeypatch):
    shown = []
    monkeypatch.setattr(findings_module, "show_summary", shown.append)
    text = findings.finish()
    assert text.startswith(f"{SUMMARY_HEADING}: 4 findings: 1 reproduced, 1 not reproduced, 2 inconclusive** (each "
                           "claim of the papers as they state it;")
    assert text.endswith(findings.markdown()) and "invariants" not in text
    assert shown == [text]


def test_markdown_is_a_table_then_the_invariants_line(findings):
    lines = findings.markdown(8, 9).splitlines()
    assert lines[0] == "| claim | source | published | ours [95 % interval] | verdict | ours / published |"
    assert lines[1] == "|---|---|---|---|---|---|"
    assert lines[-1] == "8 of 9 invariants hold."
    assert "invariants" not in findings.markdown()
    with pytest.raises(ValueError, match="0 <= held <= total"):
        findings.markdown(10, 9)


def test_published_points_show_at_the_registrys_precision(estimates):
    saat = Findings("04_saat")
    saat.add("saat-table2-over-atrdh", estimates[POSITIVE])            # published +7.11 points
    row = saat.table().loc["saat-table2-over-atrdh"]
    assert (row["source"], row["published"]) == ("SAAT, Table II", "+7.11 pts")
    assert re.fullmatch(r"\+\d\.\d\d \[\+\d\.\d\d, \+\d\.\d\d\] pts", row["ours [95 % interval]"])
    assert row["ours / published"] == f"{estimates[POSITIVE].estimate / 0.0711:.2g}x"


def test_json_is_short_keyed_in_points_and_written_through_results(findings, estimates, tmp_path):
    record = findings.to_json()[POSITIVE]
    assert set(record) == {"verdict", "estimate", "low", "high", "relative_percent", "published_points",
                           "published_relative_percent", "n_queries", "n_seeds", "levels"}
    assert record["estimate"] == round(100 * estimates[POSITIVE].estimate, 6)
    assert (record["published_points"], record["published_relative_percent"]) == (None, 14.17)
    assert (record["n_queries"], record["n_seeds"], record["levels"]) == (200, 1, "queries")
    path = findings.write(tmp_path / "metrics" / "05_cgat_findings.json")
    assert json.loads(path.read_text()) == findings.to_json()
    verdicts = json.loads((tmp_path / "metrics" / "05_cgat_verdicts.json").read_text())   # the DVC metric
    assert verdicts == {claim_id: record["verdict"] for claim_id, record in findings.to_json().items()}
    with pytest.raises(ValueError, match=r"name it <notebook>_findings.json \(e.g. 05_cgat_findings.json\)"):
        findings.write(tmp_path / "findings.json")


def test_a_single_query_gives_a_row_without_an_interval():
    claim = claims_for(SECTION)[0]
    found = finding(claim, paired_interval([0.6], [0.5]))
    assert found.verdict == "INCONCLUSIVE: n = 1 query"


def test_adding_a_claim_twice_or_one_not_of_the_section_is_an_error(findings, estimates):
    with pytest.raises(ValueError, match=f"{POSITIVE}.*already has a finding"):
        findings.add(POSITIVE, estimates[POSITIVE])
    with pytest.raises(ValueError, match="'cgat-over-nothing' is not in the claims registry"):
        findings.add("cgat-over-nothing", estimates[POSITIVE])
    with pytest.raises(ValueError, match="'saat-table2-over-atrdh' belongs to 04_saat, not 05_cgat"):
        findings.add("saat-table2-over-atrdh", estimates[POSITIVE])
    with pytest.raises(ValueError, match="unknown section '06_nothing'"):
        Findings("06_nothing")


def test_an_estimate_with_nan_is_an_error(estimates):
    found = Findings(SECTION)
    for nan in (dict(estimate=float("nan")), dict(low=float("nan"), high=float("nan"))):
        with pytest.raises(ValueError, match=f"{POSITIVE}.*NaN"):
            found.add(POSITIVE, dataclasses.replace(estimates[POSITIVE], **nan))
    with pytest.raises(TypeError, match="expected an advhash.uncertainty.Estimate"):
        found.add(POSITIVE, 0.03)
    assert found.missing() == [claim.id for claim in claims_for(SECTION)]


def test_finish_and_write_name_every_claim_without_a_finding(estimates, tmp_path):
    found = Findings(SECTION)
    found.add(ZERO, estimates[ZERO])
    assert found.missing() == [POSITIVE, TARGETED, FEW]
    for action in (lambda: found.finish(), lambda: found.write(tmp_path / "05_cgat_findings.json")):
        with pytest.raises(MissingFindingError, match=f"{POSITIVE}, {TARGETED}, {FEW}.*require_available"):
            action()
    assert not (tmp_path / "05_cgat_findings.json").exists()
