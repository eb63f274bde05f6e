"""advhash.evidence: a claim's effect read from per-query scores, checked against the same effect computed by hand
(numpy means over the rows the claim names), and every comparison it cannot make refused by name."""

import numpy as np
import pytest
import torch

from advhash.claims import MissingResultError, load_claims
from advhash.evidence import Evidence, claim_estimate, extra_seeds
from advhash.findings import Findings

CLAIMS = {claim.id: claim for claim in load_claims()}
ATTACKS = ("HAG", "SDHA", "SAAT")


def _scores(rng, n, level):
    return np.clip(level + 0.05 * rng.standard_normal(n), 0, 1)


@pytest.fixture
def saat_evidence():
    """04's evidence: four models, Table II's attacks and the clean queries, the ensemble; code lengths 16 and 32 at
    seed 0, the featured 32 alone at seeds 1 and 2. Returns (evidence, {(seed, model, attack, bits): scores})."""
    rng, evidence, kept = np.random.default_rng(0), Evidence(), {}
    levels = dict(undefended=0.2, finetune=0.25, atrdh=0.45, saat=0.5)
    for seed in (0, 1, 2):
        for model, level in levels.items():
            for bits in ((16, 32) if seed == 0 else (32,)):
                for attack in (*ATTACKS, "clean"):
                    kept[seed, model, attack, bits] = _scores(rng, 40, level + (0.3 if attack == "clean" else 0))
                    evidence.add(kept[seed, model, attack, bits], metric="map", seed=seed, model=model,
                                 attack=attack, bits=bits)
                if model == "undefended":
                    for attack in ("P2P", "DHTA", "SAAT"):
                        kept[seed, "t", attack, bits] = _scores(rng, 40, 0.3)
                        evidence.add(torch.from_numpy(kept[seed, "t", attack, bits]), metric="t_map", seed=seed,
                                     model=model, attack=attack, bits=bits)
            kept[seed, model, "robust", 32] = _scores(rng, 40, level - 0.1)
            evidence.add(kept[seed, model, "robust", 32], metric="robust_map", seed=seed, model=model, bits=32)
    return evidence, kept


def test_a_seed_level_claim_is_the_mean_over_seeds_of_the_per_query_means_over_attacks(saat_evidence):
    evidence, kept = saat_evidence
    estimate = claim_estimate(CLAIMS["saat-table2-over-atrdh"], evidence, featured_bits=32)
    by_hand = np.mean([np.mean([kept[seed, "saat", attack, 32] - kept[seed, "atrdh", attack, 32]
                                for attack in ATTACKS], axis=0).mean() for seed in (0, 1, 2)])
    assert estimate.estimate == pytest.approx(by_hand, abs=1e-12)
    assert estimate.n_seeds == 3 and estimate.n_queries == 40 and estimate.levels == ("seeds", "queries")
    assert estimate.low < estimate.estimate < estimate.high


def test_a_query_level_claim_reads_the_tables_seed_over_every_code_length(saat_evidence):
    evidence, kept = saat_evidence
    estimate = claim_estimate(CLAIMS["saat-table1-over-hag"], evidence, featured_bits=32)
    by_hand = np.mean([kept[0, "undefended", "SAAT", bits] - kept[0, "undefended", "HAG", bits]
                       for bits in (16, 32)], axis=0).mean()
    assert estimate.estimate == pytest.approx(by_hand, abs=1e-12) and estimate.levels == ("queries",)
    targeted = claim_estimate(CLAIMS["saat-table1-targeted-over-dhta"], evidence, featured_bits=32)
    assert targeted.estimate == pytest.approx(np.mean([kept[0, "t", "SAAT", bits] - kept[0, "t", "DHTA", bits]
                                                       for bits in (16, 32)], axis=0).mean(), abs=1e-12)


def test_findings_judge_every_claim_of_the_section(saat_evidence):
    findings = Findings("04_saat")
    found = findings.judge(saat_evidence[0], featured_bits=32)
    assert [item.claim.id for item in found] == [claim.id for claim in findings.claims] and not findings.missing()
    assert findings.findings["saat-table2-over-undefended"].verdict == "REPRODUCED"


def test_a_comparison_the_run_did_not_make_is_refused_naming_the_claim_and_the_piece():
    evidence = Evidence()
    evidence.add(np.ones(30), metric="map", model="saat", attack="HAG", bits=32)
    with pytest.raises(MissingResultError, match=r"saat-table2-over-atrdh.*models \['atrdh'\]"):
        claim_estimate(CLAIMS["saat-table2-over-atrdh"], evidence, featured_bits=32)
    for attack in ("SDHA", "SAAT"):
        evidence.add(np.ones(30), metric="map", model="saat", attack=attack, bits=32)
    evidence.add(np.ones(30), metric="map", model="atrdh", attack="HAG", bits=32)   # ATRDH under one attack only
    for attack in ("SDHA", "SAAT"):
        evidence.add(np.ones(30), metric="map", model="atrdh", attack=attack, bits=16)
    with pytest.raises(MissingResultError, match=r"not scored under the same .*only ours"):
        claim_estimate(CLAIMS["saat-table2-over-atrdh"], evidence, featured_bits=32)
    with pytest.raises(MissingResultError, match="featured code length"):
        claim_estimate(CLAIMS["saat-table2-over-atrdh"], evidence)


def test_different_queries_on_the_two_sides_are_refused():
    evidence = Evidence()
    for attack in ATTACKS:
        evidence.add(np.ones(30), metric="map", model="saat", attack=attack, bits=32)
        evidence.add(np.ones(20), metric="map", model="atrdh", attack=attack, bits=32)
    with pytest.raises(MissingResultError, match="same seeds and queries"):
        claim_estimate(CLAIMS["saat-table2-over-atrdh"], evidence, featured_bits=32)


def test_first_and_last_iterations_are_the_smallest_and_largest_marks_after_zero():
    evidence, rng = Evidence(), np.random.default_rng(1)
    marks = {mark: _scores(rng, 25, 0.9 - mark / 200) for mark in (0, 5, 20, 100)}
    for bits in (16, 32):
        for mark, scores in marks.items():
            evidence.add(scores, metric="map", attack="HAG", bits=bits, iteration=mark)
    estimate = claim_estimate(CLAIMS["hag-iterations"], evidence)
    assert estimate.estimate == pytest.approx((marks[100] - marks[5]).mean(), abs=1e-12)


def test_bad_scores_and_labels_are_refused_with_what_to_change():
    evidence = Evidence()
    with pytest.raises(ValueError, match="metric 'mAP' is not one the claims use"):
        evidence.add(np.ones(3), metric="mAP")
    with pytest.raises(ValueError, match=r"unknown label\(s\) \['defense'\]"):
        evidence.add(np.ones(3), metric="map", defense="saat")
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        evidence.add(np.array([0.5, np.nan]), metric="map", model="saat")
    with pytest.raises(ValueError, match="one score per query"):
        evidence.add(np.ones((2, 2)), metric="map", model="saat")
    assert len(evidence) == 0 and list(evidence.frame.columns)[:2] == ["metric", "seed"]


def _defense_evidence(levels: dict, *, seeds=(0, 1, 2), n=30) -> Evidence:
    """What 05 records through add_runs and add_ensemble: synthetic attack runs and per-query ensemble reports of
    four models, seed 0 at two code lengths and the other seeds at the featured 32 bits only."""
    from types import SimpleNamespace

    import pandas as pd

    rng, evidence = np.random.default_rng(0), Evidence()
    for seed in seeds:
        keys = [(model, bits) for bits in ((16, 32) if seed == 0 else (32,)) for model in levels]
        runs = {(model, bits, attack): SimpleNamespace(query_scores=_scores(
            rng, n, 1 - levels[model] if attack in ("P2P", "DHTA") else levels[model]))
            for model, bits in keys for attack in ("center", "HAG", "PGD", "P2P", "DHTA")}
        reports = {key: SimpleNamespace(per_query=pd.DataFrame({
            "query": range(n), "clean": _scores(rng, n, 0.8),
            "untargeted:worst case": _scores(rng, n, levels[key[0]] - 0.1)})) for key in keys}
        evidence.add_runs(runs, seed=seed, targeted=("P2P", "DHTA"), dataset="fashion-mosaic")
        evidence.add_ensemble(reports, seed=seed, dataset="fashion-mosaic")
    return evidence


def test_attack_runs_and_ensemble_reports_are_recorded_so_that_every_defense_claim_is_judged():
    evidence = _defense_evidence(dict(undefended=0.2, finetune=0.25, atrdh=0.4, cgat=0.5))
    frame = evidence.frame
    assert set(frame.metric) == {"map", "t_map", "robust_map"} and set(frame.seed) == {0, 1, 2}
    assert set(frame[frame.metric == "t_map"].attack) == {"P2P", "DHTA"}
    assert set(frame[frame.metric == "map"].attack) == {"center", "HAG", "PGD", "clean"}
    found = {item.claim.id: item for item in Findings("05_cgat").judge(evidence, featured_bits=32, n_resamples=500)}
    assert len(found) == 4 and all(item.verdict == "REPRODUCED" for item in found.values())
    headline = found["cgat-over-atrdh"].estimate
    assert headline.n_seeds == 3 and headline.levels == ("seeds", "queries")
    assert headline.estimate == pytest.approx(0.1, abs=0.02) and headline.relative == pytest.approx(25, abs=5)
    worse = _defense_evidence(dict(undefended=0.2, finetune=0.25, atrdh=0.5, cgat=0.4), seeds=(0,))
    found = {item.claim.id: item for item in Findings("05_cgat").judge(worse, featured_bits=32, n_resamples=500)}
    assert [found[key].verdict for key in ("cgat-over-atrdh", "cgat-over-atrdh-targeted",
                                           "cgat-over-atrdh-ensemble")] == ["NOT REPRODUCED"] * 3
    assert found["cgat-over-atrdh"].estimate.levels == ("queries",)       # one seed: queries only


def test_an_ensemble_report_without_per_query_scores_is_refused():
    from types import SimpleNamespace

    with pytest.raises(ValueError, match="atrdh at 32 bits has no per-query scores: run the leaderboard with "
                                         "per_query=True"):
        Evidence().add_ensemble({("atrdh", 32): SimpleNamespace(per_query=None)})


@pytest.mark.parametrize("seed, training_seeds", [(3, [0, 1, 2]), (0, [0, 1, 1]), (1, [0, 1])])
def test_training_seeds_hold_the_tables_seed_as_their_smallest_once(seed, training_seeds):
    with pytest.raises(ValueError, match=rf"training_seeds = .* \(params.yaml, section cgat\): list each seed once, "
                                         rf"with seed = {seed} .* as the smallest"):
        extra_seeds(seed, training_seeds, section="cgat")
    assert extra_seeds(0, [0, 2, 1], section="cgat") == [2, 1]
