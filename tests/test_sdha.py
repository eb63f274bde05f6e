"""SDHA (Lu et al., ICMR 2021, as SAAT runs it): the surrogate distance, rank weight and per-image objective
against plain Python loops over relevant items and bits; the attack's published behaviour on a trained model
(non-targeted: lower mAP, away from the relevant codes; targeted: toward the target's codes); eps-ball,
batch independence, determinism and clear errors."""

import math

import pytest
import torch

from helpers import BITS, fresh_model, images, sign_codes

from advhash.attacks import (ATTACKS, SDHA, build_attack, hag_scale, perturb, sdha_rank_weight,
                             sdha_surrogate_distance, sdha_surrogate_loss)
from advhash.codes import sample_target_labels
from advhash.metrics import mean_average_precision, targeted_map
from advhash.train import encode

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


def random_problem(seed, n=5, m=40, bits=8, classes=4):
    g = torch.Generator().manual_seed(seed)
    relaxed = torch.rand(n, bits, generator=g, dtype=torch.float64) * 2 - 1
    table = torch.where(torch.rand(m, bits, generator=g) < 0.5, -1.0, 1.0).double()
    table[:3] = sign_codes(relaxed[:3])                               # exact matches: w = 1e-8^-z
    relevant = torch.rand(n, m, generator=g) < 0.3
    relevant[:, 0] = True                                             # every row has a relevant item
    return relaxed, table, relevant


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


def test_sdha_images_stay_in_the_eps_ball_and_history_follows_hag_scale():
    x = images()
    x[0], x[1] = 0.0, 1.0
    model = fresh_model()
    table = torch.where(torch.rand(30, BITS, generator=torch.Generator().manual_seed(1)) < 0.5, -1.0, 1.0)
    table_labels = torch.nn.functional.one_hot(torch.arange(30) % 4, 4).float()
    labels = torch.nn.functional.one_hot(torch.arange(6) % 4, 4).float()
    for targeted in (False, True):
        attack = SDHA(model, table, table_labels, eps=8 / 255, steps=5, targeted=targeted)
        adversarial = attack(x, labels)
        assert (adversarial - x).abs().max() <= 8 / 255 + 1e-6
        assert adversarial.min() >= 0 and adversarial.max() <= 1 and not torch.equal(adversarial, x)
        assert [r["scale"] for r in attack.history] == [hag_scale(step, 5) for step in range(5)]
        assert all(p.grad is None for p in model.parameters()), "the attack must not leave gradients on the model"


def test_sdha_lowers_map_and_pushes_codes_away_from_the_relevant_codes(trained):
    model, db_codes, database, queries = trained
    clean_codes = encode(model, queries.images)
    attack = SDHA(model, db_codes, database.labels, eps=32 / 255, steps=40)
    adversarial_codes = encode(model, attack(queries.images, queries.labels))
    clean = mean_average_precision(clean_codes, db_codes, queries.labels, database.labels)
    adversarial = mean_average_precision(adversarial_codes, db_codes, queries.labels, database.labels)
    assert clean > 0.9 and adversarial < 0.5 * clean, f"mAP {clean:.3f} -> {adversarial:.3f}"
    relevant = queries.labels @ database.labels.T > 0

    def mean_relevant_distance(codes):
        distances = (BITS - codes @ db_codes.T) / 2
        return (distances * relevant).sum() / relevant.sum()
    assert mean_relevant_distance(adversarial_codes) > mean_relevant_distance(clean_codes) + BITS / 4


def test_targeted_sdha_raises_targeted_map(trained):
    model, db_codes, database, queries = trained
    targets = sample_target_labels(queries.labels, database.labels, generator=torch.Generator().manual_seed(0))
    attack = SDHA(model, db_codes, database.labels, eps=32 / 255, steps=40, targeted=True)
    clean = targeted_map(encode(model, queries.images), db_codes, targets, database.labels)
    adversarial = targeted_map(encode(model, attack(queries.images, targets)), db_codes, targets, database.labels)
    assert adversarial > clean + 0.4, f"t-MAP {clean:.3f} -> {adversarial:.3f}"


def test_sdha_without_relevant_items_moves_away_from_its_own_code(trained):
    model, db_codes, database, queries = trained
    unseen = torch.zeros(len(queries), 5)
    unseen[:, 4] = 1                                 # a class no training item carries
    table_labels = torch.cat([database.labels, torch.zeros(len(database), 1)], dim=1)
    attack = SDHA(model, db_codes, table_labels, eps=32 / 255, steps=40)
    clean_codes = encode(model, queries.images)
    adversarial_codes = encode(model, attack(queries.images, unseen))
    assert (adversarial_codes != clean_codes).float().mean() > 0.25
    with pytest.raises(ValueError, match="share no class with any training item"):
        SDHA(model, db_codes, table_labels, steps=2, targeted=True)(queries.images, unseen)


def test_sdha_is_deterministic_and_independent_of_the_batching(trained):
    model, db_codes, database, queries = trained
    x, labels = queries.images[:12], queries.labels[:12]
    run = lambda batch_size: perturb(SDHA(model, db_codes, database.labels, eps=16 / 255, steps=8), x, labels,
                                     batch_size=batch_size)
    whole = run(12)
    assert torch.equal(run(12), whole)
    assert torch.allclose(run(5), whole, atol=1e-6)


def test_sdha_registry_defaults_and_bad_inputs():
    model = fresh_model()
    table = torch.ones(10, BITS)
    table_labels = torch.eye(4)[torch.arange(10) % 4]
    assert ATTACKS["sdha"] is SDHA
    attack = build_attack("sdha", model, table_codes=table, table_labels=table_labels)
    assert (attack.eps, attack.alpha, attack.steps, attack.sigma, attack.z) == (8 / 255, 0.01, 100, 5.0, 0.5)
    targeted = SDHA(model, table, table_labels, targeted=True)
    assert (targeted.sigma, targeted.z) == (10.0, -0.3)
    with pytest.raises(ValueError, match="bits"):
        SDHA(model, torch.ones(10, BITS + 1), table_labels)
    with pytest.raises(ValueError, match="one row per training item"):
        SDHA(model, table, table_labels[:9])
    with pytest.raises(ValueError, match="sign codes"):
        SDHA(model, table * 0.5, table_labels)
    with pytest.raises(ValueError, match=r"eps is in \[0,1\]"):
        SDHA(model, table, table_labels, eps=8)
    with pytest.raises(ValueError, match="multi-hot like the table"):
        SDHA(model, table, table_labels, steps=1)(images(2), torch.ones(2, 5))
    with pytest.raises(ValueError, match="one label row per image"):
        SDHA(model, table, table_labels, steps=1)(images(3), torch.eye(4)[:2])
