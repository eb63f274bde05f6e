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


def test_every_member_attacks_at_the_common_budget_with_its_own_step_rule():
    """The ensemble's members at one budget (eps, steps, seed for all): a step alpha and a random start for those
    with one, HAG's growing scale for the center-code attack, P2P and DHTA, DHTA's anchors (9 by default), and
    SDHA's Adam step as its learning rate."""
    budget = dict(eps=0.1, alpha=0.02, steps=7, seed=3)
    common = dict(eps=0.1, steps=7, seed=3)
    stepped = dict(common, alpha=0.02, random_start=True)
    assert {name: robustness.member_settings(name, **budget) for name in UNTARGETED + ("p2p", "dhta")} == {
        "pgd": stepped, "hag": stepped, "saat": stepped, "sdha": dict(common, lr=0.02),
        "center": dict(stepped, scale_schedule="grow"), "p2p": dict(stepped, scale_schedule="grow"),
        "dhta": dict(stepped, scale_schedule="grow", num_anchors=9)}
    assert robustness.member_settings("dhta", num_anchors=4, **budget)["num_anchors"] == 4


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


def test_the_worst_case_is_chosen_query_by_query_not_by_the_members_means(undefended, monkeypatch):
    """Two members, each the stronger on half the queries: the worst case takes each query's stronger member (its
    score and its adversarial code), so robust mAP is below both members' mAP. Taking the member with the lowest
    mean instead would leave it equal to that member's, and still pass "at most every member's mAP"."""
    model, data, queries = undefended
    victim = Victim.build(model, data)
    clean = victim.encode(queries.images)
    even = (torch.arange(len(clean)) % 2 == 0)[:, None]
    fake = {"pgd": torch.where(even, clean, -clean), "sdha": torch.where(even, -clean, clean)}
    monkeypatch.setattr(robustness, "_member_scores", lambda name, victim, queries, budget, *, targeted, **kwargs: (
        query_ap(victim, fake[name], queries.target_labels if targeted else queries.labels, topk=budget.topk),
        fake[name], 1))
    result = worst_case(victim, queries, BUDGET, ("pgd", "sdha"))
    scores = {name: query_ap(victim, codes, queries.labels, topk=BUDGET.topk) for name, codes in fake.items()}
    flipped, unflipped = (query_ap(victim, codes, queries.labels, topk=BUDGET.topk) for codes in (-clean, clean))
    stronger = flipped < unflipped                     # all but the queries without labels (AP 0 either way)
    assert stronger.sum() >= len(clean) - 4 and (flipped <= unflipped).all()
    assert torch.equal(result.worst, flipped), "each query's stronger member"
    assert torch.equal(result.codes, torch.where(stronger[:, None], -clean, fake["pgd"])), "the first on a tie"
    assert result.worst.mean() < min(values.mean() for values in scores.values()) - 0.1
    targeted = worst_case(victim, queries, BUDGET, ("pgd", "sdha"), targeted=True)
    target_scores = torch.stack([query_ap(victim, fake[name], queries.target_labels, topk=BUDGET.topk)
                                 for name in ("pgd", "sdha")])
    assert torch.equal(targeted.worst, target_scores.max(0).values)
    assert torch.equal(targeted.codes, torch.where((target_scores[1] > target_scores[0])[:, None], fake["sdha"],
                                                   fake["pgd"]))


def test_each_member_keeps_the_attackers_best_run_per_query_as_run_by_hand(undefended, monkeypatch):
    """A member's scores, recomputed by hand from its attacks at the budget (its settings, AP@k with the budget's
    k): the lowest AP per query over its restarts (the highest t-AP for the targeted part), each query's code from
    that run (the first run on a tie), one run for a member without a random start, and an untargeted SAAT left
    untargeted. The progress bar names the part."""
    from advhash.attacks import build_attack, perturb

    model, data, queries = undefended
    victim = Victim.build(model, data)
    budget = dataclasses.replace(BUDGET, restarts=2, topk=10)
    bars = []
    monkeypatch.setattr(robustness, "progress", lambda members, desc: bars.append(desc) or members)

    def run(name, seed, targets=None):
        attack = build_attack(name, victim, **robustness.member_settings(
            name, eps=budget.eps, alpha=budget.alpha, steps=budget.steps, seed=seed, num_anchors=2))
        if targets is not None:
            attack.set_targets(targets)
        codes = victim.encode(perturb(attack, queries.images, queries.labels, batch_size=64))
        return codes, query_ap(victim, codes, queries.target_labels if targets is not None else queries.labels,
                               topk=10)

    def best(first, second, *, targeted):
        (codes_1, scores_1), (codes_2, scores_2) = first, second
        better = scores_2 > scores_1 if targeted else scores_2 < scores_1
        return torch.where(better, scores_2, scores_1), torch.where(better[:, None], codes_2, codes_1)

    untargeted = worst_case(victim, queries, budget, ("pgd", "saat", "sdha"), **OPTIONS)
    targeted = worst_case(victim, queries, budget, ("p2p",), targeted=True, **OPTIONS)
    assert bars == ["robustness untargeted", "robustness targeted"]
    assert untargeted.runs == {"pgd": 2, "saat": 2, "sdha": 1} and targeted.runs == {"p2p": 2}
    for name in ("pgd", "saat"):
        scores, _ = best(run(name, 0), run(name, 1), targeted=False)
        assert torch.equal(untargeted.scores[name], scores), name
    assert torch.equal(untargeted.scores["sdha"], run("sdha", 0)[1])
    pgd_runs = [run("pgd", seed) for seed in (0, 1)]
    assert (pgd_runs[0][1] == pgd_runs[1][1]).any(), "a tie to break"
    _, pgd_codes = best(*pgd_runs, targeted=False)
    assert torch.equal(robustness._member_scores("pgd", victim, queries, budget, targeted=False, num_anchors=2,
                                                 batch_size=64)[1], pgd_codes)
    p2p_scores, p2p_codes = best(run("p2p", 0, queries.target_labels), run("p2p", 1, queries.target_labels),
                                 targeted=True)
    assert torch.equal(targeted.worst, p2p_scores) and torch.equal(targeted.codes, p2p_codes)


def test_worst_case_defaults_are_evaluate_robustness_ones_and_it_needs_a_member(undefended):
    import inspect

    own, evaluation = (inspect.signature(function).parameters for function in (worst_case, evaluate_robustness))
    assert [own[name].default for name in ("num_anchors", "batch_size")] == \
        [evaluation[name].default for name in ("num_anchors", "batch_size")] == [9, 256]
    model, data, queries = undefended
    with pytest.raises(ValueError, match="^worst_case needs at least one member$"):
        worst_case(Victim.build(model, data), queries, BUDGET, ())


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
                                              "check:worst case x2 steps", "untargeted:worst case",
                                              "untargeted:worst case rescored"]
    frame = report.per_query             # the chosen codes scored again: what the notebooks' invariant compares
    assert (frame["untargeted:worst case rescored"] == frame["untargeted:worst case"]).all()
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
