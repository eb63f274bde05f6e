"""advhash.robustness_checks: the gradient-free random search and each sanity check of the robustness evaluation,
called on its own (a Flag with its evidence)."""

import copy

import pytest
import torch

from helpers import HardSign

from advhash.attacks import code_alignment_loss
from advhash.metrics import average_precision_per_query, mean_average_precision
from advhash.robustness_checks import (Flag, black_box_check, convergence_check, eps_one_check, gradient_check,
                                       input_gradient_norms, query_ap, square_search)
from advhash.train import encode
from advhash.victim import Victim

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checked(undefended):
    """The undefended stripes model as a victim, its queries and their clean codes."""
    model, data, queries = undefended
    victim = Victim.build(model, data)
    return victim, queries, victim.encode(queries.images)


def test_the_black_box_check_lowers_the_map_of_an_undefended_model_and_stays_in_the_ball(undefended):
    model, data, queries = undefended
    codes = encode(model, queries.images)
    found = square_search(model, queries.images, codes, eps=48 / 255, queries=100, seed=0)
    assert (found - queries.images).abs().max() <= 48 / 255 + 1e-6 and found.min() >= 0 and found.max() <= 1
    db = encode(model, data.database)
    clean = mean_average_precision(codes, db, queries.labels, data.database.labels)
    attacked = mean_average_precision(encode(model, found), db, queries.labels, data.database.labels)
    assert attacked < clean - 0.05, f"random search: mAP {clean:.3f} -> {attacked:.3f}"


def test_the_random_search_never_raises_the_alignment_it_minimizes(checked):
    victim, queries, codes = checked
    model = victim.model
    found = square_search(model, queries.images, codes, eps=16 / 255, queries=30, seed=1)
    with torch.no_grad():
        def alignment(images):
            return code_alignment_loss(torch.tanh(model.hash_logits(images)), codes, toward=False, per_query=True)
        start = square_search(model, queries.images, codes, eps=16 / 255, queries=1, seed=1)
        assert (alignment(found) <= alignment(start)).all()


def test_query_ap_is_the_per_query_ap_against_the_victims_database(checked):
    victim, queries, codes = checked
    expected = average_precision_per_query(codes, victim.db_codes, queries.labels, victim.db_labels, topk=10)
    assert torch.equal(query_ap(victim, codes, queries.labels, topk=10), expected)
    with pytest.raises(ValueError, match="database"):
        query_ap(Victim(victim.model), codes, queries.labels, topk=None)


def test_the_black_box_check_fires_only_when_the_search_beats_the_ensemble_often_enough(checked):
    victim, queries, codes = checked
    settings = dict(eps=48 / 255, search_queries=20, seed=0, topk=None)
    never = black_box_check(victim, queries, codes, torch.zeros(len(codes), dtype=torch.float64), **settings)
    assert not never.fired and "lower AP on 0/24 queries" in never.evidence
    always = black_box_check(victim, queries, codes, torch.full((len(codes),), 2.0, dtype=torch.float64), **settings)
    assert always.fired and always.name == "black_box_beats_white_box" and "24/24" in always.evidence
    assert torch.equal(always.scores["black box"], never.scores["black box"]) and len(never.scores["black box"]) == 24


def test_the_convergence_check_compares_the_worst_case_at_twice_the_steps():
    worst = torch.tensor([0.5, 0.5], dtype=torch.float64)
    converged = convergence_check(worst, worst - 0.005, steps=10)
    assert not converged.fired and converged.evidence.startswith("20 steps: robust mAP 0.495 vs 0.500 at 10")
    not_converged = convergence_check(worst, worst - 0.1, steps=10, delta=0.05)
    assert not_converged.fired and "drop +0.100, limit 0.05" in not_converged.evidence
    assert torch.equal(not_converged.scores["worst case x2 steps"], worst - 0.1)


def test_the_eps_one_check_reaches_the_random_ranking_on_an_undefended_model(checked):
    victim, queries, _ = checked
    flag = eps_one_check(victim, queries, steps=6, seed=0, topk=None, batch_size=64)
    assert flag.name == "eps_one_not_random" and not flag.fired, flag
    assert flag.evidence.startswith("Hamming PGD at eps = 1: mAP") and "(tolerance 0.05)" in flag.evidence
    assert eps_one_check(victim, queries, steps=6, seed=0, batch_size=64, tolerance=-1.0).fired


def test_the_gradient_check_fires_on_a_hard_sign_model_only(checked):
    victim, queries, codes = checked
    normal = gradient_check(victim, queries, codes)
    assert not normal.fired and "0/24 queries" in normal.evidence
    assert (input_gradient_norms(victim.model, queries.images, codes) > 0).all()
    masked = gradient_check(Victim(HardSign(copy.deepcopy(victim.model)).eval()), queries, codes)
    assert masked.fired and "24/24 queries" in masked.evidence


def test_a_flag_reads_as_its_verdict_and_its_scores_do_not_change_its_identity():
    flag = Flag("not_converged", True, "drop +0.1", scores={"worst case x2 steps": torch.zeros(2)})
    assert str(flag) == "FIRED: not_converged (drop +0.1)"
    assert str(Flag("masked_gradients", False, "0/2")) == "ok: masked_gradients (0/2)"
    assert flag == Flag("not_converged", True, "drop +0.1") and hash(flag) == hash(Flag("not_converged", True,
                                                                                        "drop +0.1"))
