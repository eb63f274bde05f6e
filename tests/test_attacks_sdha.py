"""SDHA (Lu et al., ICMR 2021, as SAAT runs it): the surrogate distance, rank weight and per-image objective
against plain Python loops over relevant items and bits; the attack built on a victim, whose training codes
are its table (non-targeted: lower mAP, away from the relevant codes; with ``set_targets``: toward the
target's codes); eps-ball, batch independence, determinism and clear errors."""

import math

import pytest
import torch

from helpers import BITS, fresh_model, images, one_hot_labels, sign_codes, table_victim

from advhash.attacks import (ATTACKS, SDHA, build_attack, hag_scale, perturb, sdha_rank_weight,
                             sdha_surrogate_distance, sdha_surrogate_loss)
from advhash.codes import sample_target_labels
from advhash.metrics import mean_average_precision, targeted_map
from advhash.victim import Victim

pytestmark = pytest.mark.usefixtures("one_thread")


def _sigmoid(v):
    return 1 / (1 + math.exp(-v))


def reference_item_loss(relaxed_row, relevant_rows, *, sigma, z, targeted):
    """One image's S by loops: mean over its relevant codes r of w(r) d(r) (negated when non-targeted)."""
    total = 0.0
    for r in relevant_rows:
        if targeted:
            d = sum(0.5 * abs(h - b) * _sigmoid(-sigma * h * b) for h, b in zip(relaxed_row, r))
        else:
            d = sum(0.5 * abs(h - b) * _sigmoid(sigma * h * b) + 1 - _sigmoid(sigma * h * b)
                    for h, b in zip(relaxed_row, r))
        hamming = sum((1.0 if h >= 0 else -1.0) != b for h, b in zip(relaxed_row, r))
        total += d * (hamming + 1e-8) ** (-z)
    mean = total / len(relevant_rows)
    return mean if targeted else -mean


def random_problem(seed, n=5, m=40, bits=8):
    g = torch.Generator().manual_seed(seed)
    relaxed = torch.rand(n, bits, generator=g, dtype=torch.float64) * 2 - 1
    table = torch.where(torch.rand(m, bits, generator=g) < 0.5, -1.0, 1.0).double()
    table[:3] = sign_codes(relaxed[:3])                               # exact matches: w = 1e-8^-z
    relevant = torch.rand(n, m, generator=g) < 0.3
    relevant[:, 0] = True                                             # every row has a relevant item
    return relaxed, table, relevant


# --- the objective ------------------------------------------------------------------------------------
@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_sdha_surrogate_loss_matches_a_loop_over_relevant_items_and_bits(targeted, seed):
    relaxed, table, relevant = random_problem(seed)
    sigma, z = (10.0, -0.3) if targeted else (5.0, 0.5)
    ours = sdha_surrogate_loss(relaxed, table, relevant, sigma=sigma, z=z, targeted=targeted)
    for i in range(len(relaxed)):
        rows = [table[j].tolist() for j in relevant[i].nonzero().flatten().tolist()]
        expected = reference_item_loss(relaxed[i].tolist(), rows, sigma=sigma, z=z, targeted=targeted)
        assert ours[i].item() == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("targeted", [False, True])
def test_sdha_surrogate_loss_matrix_product_equals_the_direct_definition(targeted):
    relaxed, table, relevant = random_problem(3, m=50)
    relaxed.requires_grad_(True)
    sigma, z = (10.0, -0.3) if targeted else (5.0, 0.5)
    fast = sdha_surrogate_loss(relaxed, table, relevant, sigma=sigma, z=z, targeted=targeted)
    terms = sdha_surrogate_distance(relaxed, table, sigma=sigma, targeted=targeted) * \
        sdha_rank_weight(relaxed, table, z=z)
    direct = (terms * relevant).sum(1) / relevant.sum(1) * (1 if targeted else -1)
    assert torch.allclose(fast, direct, rtol=1e-12, atol=1e-9)
    fast_grad, = torch.autograd.grad(fast.sum(), relaxed)
    direct_grad, = torch.autograd.grad(direct.sum(), relaxed)
    assert torch.allclose(fast_grad, direct_grad, rtol=1e-9, atol=1e-9)


def test_sdha_distance_grows_as_bits_flip_and_weight_favours_the_nearest_items():
    code = torch.tensor([[1.0, 1.0, -1.0, 1.0]])
    flips = torch.stack([code[0] * torch.tensor([(-1.0 if k < n else 1.0) for k in range(4)]) for n in range(5)])
    relaxed = 0.9 * code.double()
    distance = sdha_surrogate_distance(relaxed, flips.double(), sigma=5.0)[0]
    assert (distance[1:] > distance[:-1]).all(), f"the surrogate should grow with the Hamming distance: {distance}"
    weight = sdha_rank_weight(relaxed, flips.double(), z=0.5)[0]
    assert (weight[1:] < weight[:-1]).all() and weight[1].item() == pytest.approx(1.0)
    targeted_weight = sdha_rank_weight(relaxed, flips.double(), z=-0.3)[0]
    assert (targeted_weight[1:] > targeted_weight[:-1]).all()
    assert not sdha_rank_weight(relaxed.requires_grad_(), flips.double(), z=0.5).requires_grad


# --- the attack ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("targeted", [False, True])
def test_sdha_images_stay_in_the_eps_ball_and_history_follows_hag_scale(targeted):
    x, labels = images(), one_hot_labels(6)
    x[0], x[1] = 0.0, 1.0
    model = fresh_model()
    victim = table_victim(model, m=30, seed=1)
    attack = SDHA(victim, eps=8 / 255, steps=5)
    if targeted:
        attack.set_targets(sample_target_labels(labels, victim.train_labels, min_items=1,
                                               generator=torch.Generator().manual_seed(0)))
    adversarial = attack(x, labels)
    assert (adversarial - x).abs().max() <= 8 / 255 + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1 and not torch.equal(adversarial, x)
    assert [r["scale"] for r in attack.history] == [hag_scale(step, 5) for step in range(5)]
    assert all(p.grad is None for p in model.parameters()), "the attack must not leave gradients on the model"


def test_sdha_lowers_map_and_pushes_codes_away_from_the_relevant_codes(victim, trained):
    _, _, _, queries = trained
    clean_codes = victim.encode(queries.images)
    attack = SDHA(victim, eps=32 / 255, steps=40)
    adversarial_codes = victim.encode(attack(queries.images, queries.labels))
    clean = mean_average_precision(clean_codes, victim.db_codes, queries.labels, victim.db_labels)
    adversarial = mean_average_precision(adversarial_codes, victim.db_codes, queries.labels, victim.db_labels)
    assert clean > 0.9 and adversarial < 0.5 * clean, f"mAP {clean:.3f} -> {adversarial:.3f}"
    relevant = queries.labels @ victim.train_labels.T > 0

    def mean_relevant_distance(codes):
        distances = (BITS - codes @ victim.train_codes.T) / 2
        return (distances * relevant).sum() / relevant.sum()
    assert mean_relevant_distance(adversarial_codes) > mean_relevant_distance(clean_codes) + BITS / 4


def test_targeted_sdha_raises_targeted_map(victim, trained):
    _, _, _, queries = trained
    targets = sample_target_labels(queries.labels, victim.db_labels, generator=torch.Generator().manual_seed(0))
    attack = SDHA(victim, eps=32 / 255, steps=40).set_targets(targets)
    assert torch.equal(attack.guide(queries.labels, targets), targets), "the targets steer, not the labels"
    clean = targeted_map(victim.encode(queries.images), victim.db_codes, targets, victim.db_labels)
    adversarial_codes = victim.encode(attack(queries.images, queries.labels))
    adversarial = targeted_map(adversarial_codes, victim.db_codes, targets, victim.db_labels)
    assert adversarial > clean + 0.4, f"t-MAP {clean:.3f} -> {adversarial:.3f}"


def test_the_table_is_the_victims_training_codes(victim, trained):
    """Another training table (the same items with every code flipped) steers another attack; the
    database codes play no part."""
    _, _, _, queries = trained
    x, labels = queries.images[:8], queries.labels[:8]
    expected = SDHA(victim, steps=5)(x, labels)
    other_db = Victim(victim.model, train_codes=victim.train_codes, train_labels=victim.train_labels,
                      db_codes=-victim.db_codes, db_labels=victim.db_labels)
    assert torch.equal(SDHA(other_db, steps=5)(x, labels), expected)
    other_train = Victim(victim.model, train_codes=-victim.train_codes, train_labels=victim.train_labels)
    assert not torch.equal(SDHA(other_train, steps=5)(x, labels), expected)


def test_sdha_without_relevant_items_moves_away_from_its_own_code(victim, trained):
    _, _, _, queries = trained
    unseen = torch.zeros(len(queries), 5)
    unseen[:, 4] = 1                                 # a class no training item carries
    wider = Victim(victim.model, train_codes=victim.train_codes,
                   train_labels=torch.cat([victim.train_labels, torch.zeros(len(victim.train_labels), 1)], dim=1))
    clean_codes = victim.encode(queries.images)
    adversarial_codes = victim.encode(SDHA(wider, eps=32 / 255, steps=40)(queries.images, unseen))
    assert (adversarial_codes != clean_codes).float().mean() > 0.25
    with pytest.raises(ValueError, match="share no class with any training item"):
        SDHA(wider, steps=2).set_targets(unseen)(queries.images, unseen)


def test_sdha_is_deterministic_and_independent_of_the_batching(victim, trained):
    _, _, _, queries = trained
    x, labels = queries.images[:12], queries.labels[:12]
    run = lambda batch_size: perturb(SDHA(victim, eps=16 / 255, steps=8), x, labels, batch_size=batch_size)
    whole = run(12)
    assert torch.equal(run(12), whole)
    assert torch.allclose(run(5), whole, atol=1e-6)


def test_sdha_registry_defaults_and_modes():
    victim = table_victim(fresh_model(), m=10)
    assert ATTACKS["sdha"] is SDHA
    attack = build_attack("sdha", victim)
    assert (attack.eps, attack.alpha, attack.steps, attack.sigma, attack.z) == (8 / 255, 0.01, 100, 5.0, 0.5)
    assert attack.target_mode == "optional" and not attack.targeted
    attack.set_targets(one_hot_labels(3))
    assert (attack.sigma, attack.z) == (10.0, -0.3), "the targeted defaults follow set_targets"
    assert "targeted=True" in repr(attack)
    attack.set_targets(None)
    assert (attack.sigma, attack.z) == (5.0, 0.5)
    chosen = SDHA(victim, sigma=3.0, z=0.1).set_targets(one_hot_labels(3))
    assert (chosen.sigma, chosen.z) == (3.0, 0.1), "explicit settings hold in either mode"


def test_sdha_bad_inputs_are_clear_errors():
    model = fresh_model()
    table_labels = one_hot_labels(10)
    x, labels = images(2), one_hot_labels(2)

    def on_table(codes, labels=table_labels):
        return SDHA(Victim(model, train_codes=codes, train_labels=labels), steps=1)

    with pytest.raises(ValueError, match="train_codes have 17 bits but the model has 16"):
        on_table(torch.ones(10, BITS + 1))(x, labels)
    with pytest.raises(ValueError, match="SDHA steers by labels, one row per image"):
        on_table(torch.ones(10, BITS)).run(x)
    with pytest.raises(ValueError, match="sign codes"):
        on_table(torch.ones(10, BITS) * 0.5)(x, labels)
    with pytest.raises(ValueError, match="one row per item"):
        Victim(model, train_codes=torch.ones(10, BITS), train_labels=table_labels[:9])
    with pytest.raises(ValueError, match=r"eps is in \[0,1\]"):
        SDHA(model, eps=8)
    with pytest.raises(ValueError, match="surrogate_weight"):
        SDHA(model, surrogate_weight=0)
    with pytest.raises(ValueError, match="scale_schedule must be one of"):
        SDHA(model, scale_schedule="linear")
    with pytest.raises(ValueError, match=r"labels must be \(N, 4\) multi-hot like the training labels"):
        on_table(torch.ones(10, BITS))(x, torch.ones(2, 5))
    with pytest.raises(ValueError, match="labels need one row per image: 2 rows for 3 images"):
        on_table(torch.ones(10, BITS))(images(3), labels)
    with pytest.raises(ValueError, match=r"call attack\(images, labels\)"):
        on_table(torch.ones(10, BITS))(x)
    with pytest.raises(ValueError, match="SDHA steers by the victim's codes of the training set"):
        SDHA(model, steps=1)(x, labels)
