"""advhash.robustness: the budget, the ensemble's per-query worst case and its invariant, restarts, the report with
its flags, and the leaderboard."""

import copy
import dataclasses

import pytest
import torch

from helpers import HardSign

import advhash.robustness as robustness
from advhash.robustness import (CHECKS, UNTARGETED, Budget, WorstCase, describe, evaluate_robustness, leaderboard,
                                worst_case)
from advhash.robustness_checks import query_ap
from advhash.victim import Victim

pytestmark = pytest.mark.usefixtures("one_thread")

BUDGET = Budget(eps=48 / 255, alpha=8 / 255, steps=6, topk=None, black_box_queries=60)
OPTIONS = dict(batch_size=64, num_anchors=2)


def test_the_budget_states_its_defaults_and_refuses_no_effort():
    budget = Budget(eps=8 / 255)
    assert (budget.alpha, budget.steps, budget.restarts, budget.topk, budget.seed, budget.black_box_queries) == \
        (8 / 255 / 4, 100, 1, None, 0, 1000)
    assert Budget(eps=8 / 255, restarts=3, seed=5).seeds == [5, 6, 7]
    assert dataclasses.replace(BUDGET, steps=12).alpha == BUDGET.alpha == 8 / 255
    with pytest.raises(dataclasses.FrozenInstanceError):
        budget.eps = 0.1
    with pytest.raises(ValueError, match="restarts and steps must be at least 1"):
        Budget(eps=0.1, restarts=0)
    with pytest.raises(ValueError, match="restarts and steps must be at least 1"):
        Budget(eps=0.1, steps=0)


def test_the_worst_case_is_per_query_at_most_every_member_and_two_runs_agree(undefended):
    model, data, queries = undefended
    report = evaluate_robustness(model, data, BUDGET, queries=queries, per_query=True, checks=(), **OPTIONS)
    frame = report.per_query
    members = [f"untargeted:{name}" for name in UNTARGETED]
    assert (frame["untargeted:worst case"] <= frame[members].min(axis=1) + 1e-12).all()
    assert (frame["untargeted:worst case"] == frame[members].min(axis=1)).all(), "the worst case is a member's"
    assert (frame["targeted:worst case"] == frame[["targeted:p2p", "targeted:dhta"]].max(axis=1)).all()
    assert report.robust_map == pytest.approx(frame["untargeted:worst case"].mean())
    assert report.robust_map <= min(report.member_maps().values()) < report.clean_map
    assert report.clean_map > 0.7, f"the stripes model should retrieve well (clean mAP {report.clean_map:.3f})"
    assert set(report.table.attack) == {*UNTARGETED, "p2p", "dhta", "worst case"}
    assert report.budget["restarts"] == 1 and report.budget["steps"] == 6
    again = evaluate_robustness(model, data, BUDGET, queries=queries, per_query=True, checks=(), **OPTIONS)
    assert again.table.equals(report.table) and again.per_query.equals(frame), "same seed, same numbers"


def test_worst_case_takes_the_attackers_best_per_query_and_counts_the_runs(undefended, monkeypatch):
    model, data, queries = undefended
    victim = Victim.build(model, data)
    clean = victim.encode(queries.images)
    fake = {"pgd": clean, "sdha": -clean}          # two members' adversarial codes, each scored for real below

    def member(name, victim, queries, budget, *, targeted, **kwargs):
        labels = queries.target_labels if targeted else queries.labels
        return query_ap(victim, fake[name], labels, topk=budget.topk), fake[name], 1 if name == "sdha" else 2

    monkeypatch.setattr(robustness, "_member_scores", member)
    untargeted = worst_case(victim, queries, BUDGET, ("pgd", "sdha"))
    scores = torch.stack([query_ap(victim, fake[name], queries.labels, topk=BUDGET.topk) for name in ("pgd", "sdha")])
    assert torch.equal(untargeted.worst, scores.min(0).values) and untargeted.runs == {"pgd": 2, "sdha": 1}
    assert torch.equal(untargeted.codes, torch.where((scores[1] < scores[0])[:, None], -clean, clean))
    targeted = worst_case(victim, queries, BUDGET, ("pgd", "sdha"), targeted=True)
    target_scores = torch.stack([query_ap(victim, fake[name], queries.target_labels, topk=BUDGET.topk)
                                 for name in ("pgd", "sdha")])
    assert torch.equal(targeted.worst, target_scores.max(0).values)
    with pytest.raises(ValueError, match="at least one member"):
        worst_case(victim, queries, BUDGET, ())


def test_the_invariant_names_the_member_and_the_query_it_fails_on():
    scores = {"pgd": torch.tensor([0.5, 0.2, 0.9], dtype=torch.float64),
              "hag": torch.tensor([0.4, 0.3, 0.7], dtype=torch.float64)}                   # AP is float64
    result = WorstCase(scores, {}, torch.tensor([0.4, 0.2, 0.7], dtype=torch.float64), torch.ones(3, 4))
    robustness._check_worst_case(result, torch.tensor([0.4, 0.2, 0.7], dtype=torch.float64), targeted=False)
    with pytest.raises(AssertionError, match=r"code of query 2 scores 0.8 when scored again, not the 0.7 it"):
        robustness._check_worst_case(result, torch.tensor([0.4, 0.2, 0.8], dtype=torch.float64), targeted=False)
    weaker = WorstCase(scores, {}, torch.tensor([0.4, 0.2, 0.8], dtype=torch.float64), torch.ones(3, 4))
    with pytest.raises(AssertionError, match=r"weaker than member 'hag' on query 2"):
        robustness._check_worst_case(weaker, torch.tensor([0.4, 0.2, 0.8], dtype=torch.float64), targeted=False)
    with pytest.raises(AssertionError, match=r"weaker than member 'pgd' on query 0"):
        robustness._check_worst_case(result, torch.tensor([0.4, 0.2, 0.7], dtype=torch.float64), targeted=True)
    with pytest.raises(AssertionError, match=r"query 1"):                                 # a NaN never passes
        robustness._check_worst_case(result, torch.tensor([0.4, float("nan"), 0.7], dtype=torch.float64), targeted=False)


def test_the_worst_case_check_fails_when_a_query_is_scored_with_the_others(undefended, monkeypatch):
    """A scoring that depended on the other queries of the batch (here: every query scored as the batch mean) would
    make the per-query worst case a different number when its codes are scored again: the check catches it."""
    model, data, queries = undefended
    victim = Victim.build(model, data)
    clean = victim.encode(queries.images)
    real = robustness.query_ap

    def batch_mean_ap(victim, codes, labels, *, topk):
        scores = real(victim, codes, labels, topk=topk)
        return scores.mean().expand_as(scores).clone() if codes is not clean and codes is not fake_b else scores

    fake_b = -clean
    monkeypatch.setattr(robustness, "_member_scores", lambda name, victim, queries, budget, **kwargs: (
        real(victim, clean if name == "pgd" else fake_b, queries.labels, topk=budget.topk),
        clean if name == "pgd" else fake_b, 1))
    monkeypatch.setattr(robustness, "query_ap", batch_mean_ap)
    with pytest.raises(AssertionError, match="when scored again"):
        worst_case(victim, queries, BUDGET, ("pgd", "sdha"))


def test_restarts_never_raise_the_worst_case(undefended):
    model, data, queries = undefended
    settings = dict(OPTIONS, attacks=("pgd", "center"), targeted_attacks=(), checks=(), per_query=True)
    one = evaluate_robustness(model, data, dataclasses.replace(BUDGET, restarts=1), queries=queries, **settings)
    two = evaluate_robustness(model, data, dataclasses.replace(BUDGET, restarts=2), queries=queries, **settings)
    assert (two.per_query["untargeted:worst case"] <= one.per_query["untargeted:worst case"] + 1e-12).all()
    assert two.table.set_index("attack").runs["pgd"] == 2


def test_the_masking_flag_fires_on_a_hard_sign_model_and_not_on_a_normal_one(undefended):
    model, data, queries = undefended
    settings = dict(OPTIONS, attacks=("pgd",), targeted_attacks=(), checks=("gradients", "black_box"))
    normal = evaluate_robustness(model, data, BUDGET, queries=queries, **settings)
    masked = evaluate_robustness(HardSign(copy.deepcopy(model)).eval(), data, BUDGET, queries=queries, **settings)
    flags = {name: {flag.name: flag for flag in report.flags} for name, report in (("normal", normal),
                                                                                    ("masked", masked))}
    assert flags["masked"]["masked_gradients"].fired and "24/24 queries" in flags["masked"]["masked_gradients"].evidence
    assert not flags["normal"]["masked_gradients"].fired, flags["normal"]["masked_gradients"]
    assert masked.robust_map > normal.robust_map, "a white-box attack gets nowhere on the masked model"
    assert flags["masked"]["black_box_beats_white_box"].fired, flags["masked"]["black_box_beats_white_box"]
    assert masked.suspicious


def test_the_convergence_and_eps_one_checks_state_their_evidence(undefended):
    model, data, queries = undefended
    report = evaluate_robustness(model, data, BUDGET, queries=queries, attacks=("pgd",), targeted_attacks=(),
                                 checks=("convergence", "eps_one"), **OPTIONS)
    flags = {flag.name: flag for flag in report.flags}
    assert set(flags) == {"not_converged", "eps_one_not_random"}
    assert "12 steps: robust mAP" in flags["not_converged"].evidence
    assert not flags["eps_one_not_random"].fired, flags["eps_one_not_random"]
    assert report.cost["checks_forward"] > 0 and report.cost["ensemble_backward"] > 0
    assert "robust mAP" in report.summary()


def test_every_check_runs_in_a_fixed_order_and_keeps_its_per_query_scores(undefended):
    model, data, queries = undefended
    report = evaluate_robustness(model, data, BUDGET, queries=queries, attacks=("pgd",), targeted_attacks=(),
                                 checks=tuple(reversed(CHECKS)), per_query=True, **OPTIONS)
    assert [flag.name for flag in report.flags] == ["black_box_beats_white_box", "not_converged",
                                                    "eps_one_not_random", "masked_gradients"]
    assert list(report.per_query.columns) == ["query", "clean", "untargeted:pgd", "check:black box",
                                              "check:worst case x2 steps", "untargeted:worst case"]
    assert report.budget["black_box_queries"] == 60


def test_bad_settings_are_clear_errors(undefended):
    model, data, queries = undefended
    budget = Budget(eps=0.1)
    with pytest.raises(ValueError, match="each check must be one of .*; got 'speed'"):
        evaluate_robustness(model, data, budget, queries=queries, checks=("speed",))
    with pytest.raises(ValueError, match="an ensemble member must be one of .*; got 'fgsm'"):
        evaluate_robustness(model, data, budget, queries=queries, attacks=("fgsm",), checks=())
    with pytest.raises(ValueError, match="restarts and steps must be at least 1"):
        evaluate_robustness(model, data, Budget(eps=0.1, restarts=0), queries=queries)


def test_the_leaderboard_checks_only_the_code_lengths_asked_for_and_states_what_it_skipped(undefended):
    model, data, queries = undefended
    victim = Victim.build(model, data)
    settings = dict(OPTIONS, attacks=("pgd", "hag"), targeted_attacks=(), checks=("gradients",))
    board, reports = leaderboard({("undefended", 16): victim, ("undefended", 32): victim}, data, queries, BUDGET,
                                 checks_bits=[32], **settings)
    assert board.set_index("bits")["flags"].to_dict() == {16: "not checked", 32: "none"}
    assert reports["undefended", 16].flags == [] and len(reports["undefended", 32].flags) == 1
    row = board.iloc[0]
    assert row.robust <= min(row.pgd, row.hag) and row.overstated == pytest.approx(min(row.pgd, row.hag) - row.robust)
    text = describe(reports).splitlines()                    # the budget once, the cost, each model's flags
    assert text[0].startswith("budget: eps_255") and text[1].startswith("cost: ensemble")
    assert "not checked" in text[2] and "ok: masked_gradients" in text[3] and len(text) == 4
