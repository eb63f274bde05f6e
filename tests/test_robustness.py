"""advhash.robustness: the ensemble's per-query worst case, restarts, the gradient-free check and the flags."""

import copy

import pytest
import torch

from helpers import BITS, stripes, stripes_data

from advhash.evaluation import query_set
from advhash.losses import build_loss
from advhash.models import HashingModel
from advhash.robustness import UNTARGETED, describe, evaluate_robustness, leaderboard, square_search
from advhash.victim import Victim
from advhash.train import encode, train_hashing
from advhash.metrics import mean_average_precision

pytestmark = pytest.mark.usefixtures("one_thread")

BUDGET = dict(eps=48 / 255, alpha=8 / 255, steps=6, topk=None, black_box_queries=60, batch_size=64, num_anchors=2)


@pytest.fixture(scope="module")
def undefended(one_thread):
    """A DPSH model on 96 multi-label stripes (clean mAP high), its data and 24 queries with target labels."""
    train = stripes(96, seed=3, multi_label=True, signal=0.4)
    data = stripes_data(train, stripes(24, seed=4, multi_label=True, signal=0.4))
    torch.manual_seed(0)
    model = HashingModel("small_cnn", bits=BITS, in_channels=1)
    train_hashing(model, build_loss("dpsh", num_train=96, bits=BITS, num_classes=4), train, epochs=12,
                  batch_size=32, lr=0.05)
    queries = query_set(data, 24, target_min_items=2, target_rule="advhash", seed=0)
    return model.eval(), data, queries


def test_the_worst_case_is_per_query_at_most_every_member_and_two_runs_agree(undefended):
    model, data, queries = undefended
    report = evaluate_robustness(model, data, queries=queries, per_query=True, checks=(), **BUDGET)
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
    again = evaluate_robustness(model, data, queries=queries, per_query=True, checks=(), **BUDGET)
    assert again.table.equals(report.table) and again.per_query.equals(frame), "same seed, same numbers"


def test_restarts_never_raise_the_worst_case(undefended):
    model, data, queries = undefended
    settings = dict(BUDGET, attacks=("pgd", "center"), targeted_attacks=(), checks=(), per_query=True)
    one = evaluate_robustness(model, data, queries=queries, restarts=1, **settings)
    two = evaluate_robustness(model, data, queries=queries, restarts=2, **settings)
    assert (two.per_query["untargeted:worst case"] <= one.per_query["untargeted:worst case"] + 1e-12).all()
    assert two.table.set_index("attack").runs["pgd"] == 2


def test_the_black_box_check_lowers_the_map_of_an_undefended_model_and_stays_in_the_ball(undefended):
    model, data, queries = undefended
    codes = encode(model, queries.images)
    found = square_search(model, queries.images, codes, eps=48 / 255, queries=100, seed=0)
    assert (found - queries.images).abs().max() <= 48 / 255 + 1e-6 and found.min() >= 0 and found.max() <= 1
    db = encode(model, data.database)
    clean = mean_average_precision(codes, db, queries.labels, data.database.labels)
    attacked = mean_average_precision(encode(model, found), db, queries.labels, data.database.labels)
    assert attacked < clean - 0.05, f"random search: mAP {clean:.3f} -> {attacked:.3f}"


class HardSign(torch.nn.Module):
    """A model whose forward passes through a hard sign: its input gradient is zero everywhere (gradient
    masking by construction), while its codes still retrieve."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.bits = model, model.bits

    def hash_logits(self, images):
        return torch.sign(self.inner.hash_logits(images))

    def forward(self, images, scale=1.0):
        return torch.tanh(scale * self.hash_logits(images))


def test_the_masking_flag_fires_on_a_hard_sign_model_and_not_on_a_normal_one(undefended):
    model, data, queries = undefended
    settings = dict(BUDGET, attacks=("pgd",), targeted_attacks=(), checks=("gradients", "black_box"))
    normal = evaluate_robustness(model, data, queries=queries, **settings)
    masked = evaluate_robustness(HardSign(copy.deepcopy(model)).eval(), data, queries=queries, **settings)
    flags = {name: {flag.name: flag for flag in report.flags} for name, report in (("normal", normal),
                                                                                    ("masked", masked))}
    assert flags["masked"]["masked_gradients"].fired and "24/24 queries" in flags["masked"]["masked_gradients"].evidence
    assert not flags["normal"]["masked_gradients"].fired, flags["normal"]["masked_gradients"]
    assert masked.robust_map > normal.robust_map, "a white-box attack gets nowhere on the masked model"
    assert flags["masked"]["black_box_beats_white_box"].fired, flags["masked"]["black_box_beats_white_box"]
    assert masked.suspicious


def test_the_convergence_and_eps_one_checks_state_their_evidence(undefended):
    model, data, queries = undefended
    report = evaluate_robustness(model, data, queries=queries, attacks=("pgd",), targeted_attacks=(),
                                 checks=("convergence", "eps_one"), **BUDGET)
    flags = {flag.name: flag for flag in report.flags}
    assert set(flags) == {"not_converged", "eps_one_not_random"}
    assert "12 steps: robust mAP" in flags["not_converged"].evidence
    assert not flags["eps_one_not_random"].fired, flags["eps_one_not_random"]
    assert report.cost["checks_forward"] > 0 and report.cost["ensemble_backward"] > 0
    assert "robust mAP" in report.summary()


def test_bad_settings_are_clear_errors(undefended):
    model, data, queries = undefended
    with pytest.raises(ValueError, match="unknown checks"):
        evaluate_robustness(model, data, queries=queries, eps=0.1, checks=("speed",))
    with pytest.raises(ValueError, match="unknown ensemble member 'fgsm'"):
        evaluate_robustness(model, data, queries=queries, eps=0.1, attacks=("fgsm",), checks=())
    with pytest.raises(ValueError, match="restarts and steps must be at least 1"):
        evaluate_robustness(model, data, queries=queries, eps=0.1, restarts=0)


def test_the_leaderboard_checks_only_the_code_lengths_asked_for_and_states_what_it_skipped(undefended):
    model, data, queries = undefended
    victim = Victim.build(model, data)
    settings = dict(BUDGET, attacks=("pgd", "hag"), targeted_attacks=(), checks=("gradients",))
    board, reports = leaderboard({("undefended", 16): victim, ("undefended", 32): victim}, data, queries,
                                 checks_bits=[32], **settings)
    assert board.set_index("bits")["flags"].to_dict() == {16: "not checked", 32: "none"}
    assert reports["undefended", 16].flags == [] and len(reports["undefended", 32].flags) == 1
    row = board.iloc[0]
    assert row.robust <= min(row.pgd, row.hag) and row.overstated == pytest.approx(min(row.pgd, row.hag) - row.robust)
    text = describe(reports).splitlines()                    # the budget once, the cost, each model's flags
    assert text[0].startswith("budget: eps_255") and text[1].startswith("cost: ensemble")
    assert "not checked" in text[2] and "ok: masked_gradients" in text[3] and len(text) == 4

