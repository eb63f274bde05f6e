"""SAAT (Yuan et al., TIFS 2023): mainstay codes against brute force over all 2^K codes with an objective
written here, the masked attack loss against a per-bit loop, the attack's published properties (eps-ball,
away from / toward the mainstay codes), and SAAT adversarial training against a hand-written objective,
its inner attack and a bit-identical resume."""

import copy
import itertools
import math
from functools import partial

import numpy as np
import pytest
import torch

from helpers import BITS, all_images, fresh_model, images, same_weights, sign_codes, stripes, stripes_data
from helpers import random_table as shared_random_table

from advhash.attacks import (ATTACKS, SAAT, CenterGuidedAttack, CodeGuidedAttack, build_attack,
                             code_alignment_loss, hag_scale, perturb, saat_loss)
from advhash.checkpoint import load_checkpoint
from advhash.codes import (center_code_objective, center_codes, mainstay_code_objective, mainstay_codes,
                           sample_target_labels)
from advhash.defenses import DEFENSES, SAATTraining, build_defense, fit_defended_model
from advhash.losses import build_loss
from advhash.train import encode, fit_hashing_model

random_table = partial(shared_random_table, rate=0.35)   # denser labels than the center-code tests

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------
# Independent references: cosine weights and the DMFL objective psi(b) with Python loops

def _cosine_loop(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0


def _mainstay_weights_loop(label, table_labels):
    """SAAT weights of one item: positives share a class, w_j = cos / sum_P cos; negatives 1 / |N|.
    Lists of (table index, weight)."""
    positives = [j for j, y in enumerate(table_labels) if any(a and b for a, b in zip(label, y))]
    negatives = [j for j in range(len(table_labels)) if j not in positives]
    cosines = {j: _cosine_loop(label, table_labels[j]) for j in positives}
    total = sum(cosines.values())
    return [(j, cosines[j] / total) for j in positives], [(j, 1.0 / len(negatives)) for j in negatives]


def reference_mainstay_objective(candidates, label, table_codes, table_labels):
    """psi(b) = sum_P w_j d_H(b, b_j) - sum_N (1/|N|) d_H(b, b_j), d_H = number of differing bits; (C,)."""
    candidates, table_codes = np.asarray(candidates), np.asarray(table_codes)
    distances = (candidates[:, None, :] != table_codes[None, :, :]).sum(-1).astype(np.float64)   # (C, m)
    positives, negatives = _mainstay_weights_loop(label, table_labels)
    values = np.zeros(len(candidates))
    for j, w in positives:
        values += w * distances[:, j]
    for j, w in negatives:
        values -= w * distances[:, j]
    return values


def reference_mainstay_codes(labels, table_codes, table_labels):
    """Theorem 1 one item and bit at a time: sign(sum_P w b - mean_N b), a tie (|sum| <= 1e-9) is +1."""
    codes = []
    table_codes, table_labels = table_codes.tolist(), table_labels.tolist()
    for label in labels.tolist():
        positives, negatives = _mainstay_weights_loop(label, table_labels)
        code = []
        for k in range(len(table_codes[0])):
            direction = sum(w * table_codes[j][k] for j, w in positives)
            direction -= sum(w * table_codes[j][k] for j, w in negatives)
            code.append(1.0 if direction >= -1e-9 else -1.0)
        codes.append(code)
    return torch.tensor(codes)


def every_code(bits):
    return np.array(list(itertools.product([-1.0, 1.0], repeat=bits)))


# ----------------------------------------------------------------------------------------------
# Mainstay codes (SAAT Theorem 1)

@pytest.mark.parametrize("bits", [6, 7, 8, 9, 10])
def test_mainstay_codes_reach_the_brute_force_minimum(bits):
    labels, table_codes, table_labels = random_table(bits, bits=bits)
    positives = [_mainstay_weights_loop(y, table_labels.tolist()) for y in labels.tolist()]
    assert not positives[0][0] and not positives[1][0] and not positives[2][1], "the edge cases are there"
    codes = mainstay_codes(labels, table_codes, table_labels)
    assert codes.shape == (len(labels), bits) and set(codes.unique().tolist()) <= {-1.0, 1.0}
    candidates = every_code(bits)
    for label, code in zip(labels.tolist(), codes.tolist()):
        values = reference_mainstay_objective(candidates, label, table_codes.tolist(), table_labels.tolist())
        own = reference_mainstay_objective([code], label, table_codes.tolist(), table_labels.tolist())[0]
        assert own == pytest.approx(values.min(), abs=1e-9), f"label {label}: {own} > brute-force {values.min()}"


def test_mainstay_code_objective_matches_the_reference_objective():
    bits = 7
    labels, table_codes, table_labels = random_table(3, bits=bits)
    candidates = every_code(bits)
    values = mainstay_code_objective(torch.tensor(candidates), labels, table_codes, table_labels)
    assert values.shape == (len(labels), 2**bits)
    for row, label in enumerate(labels.tolist()):
        expected = reference_mainstay_objective(candidates, label, table_codes.tolist(), table_labels.tolist())
        np.testing.assert_allclose(values[row].double().numpy(), expected, atol=1e-5)


def test_mainstay_codes_match_theorem_1_bit_by_bit():
    labels, table_codes, table_labels = random_table(11, n=40, m=60, bits=12)
    assert torch.equal(mainstay_codes(labels, table_codes, table_labels),
                       reference_mainstay_codes(labels, table_codes, table_labels))


def test_an_item_without_negatives_gets_its_positives_cosine_weighted_sign():
    table_labels = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0], [1, 0, 1, 1], [0, 1, 1, 1]])
    table_codes = torch.tensor([[1.0, -1, 1], [1, -1, -1], [-1, 1, -1], [1, 1, 1], [1, 1, 1]])
    query = torch.tensor([[1.0, 1, 0, 0]])     # every table item carries class 0 or 1: no negatives
    # cos with {0, 1}: 1/sqrt2, 1/sqrt2, 1, 1/sqrt6, 1/sqrt6
    weights = [_cosine_loop(query[0].tolist(), y) for y in table_labels.tolist()]
    weighted_sum = [sum(w * b[k] for w, b in zip(weights, table_codes.tolist())) for k in range(3)]
    expected = [1.0 if s >= 0 else -1.0 for s in weighted_sum]
    assert expected == [1.0, 1.0, -1.0]        # bit 2 differs from the unweighted majority (+1, three of five)
    assert mainstay_codes(query, table_codes, table_labels).tolist() == [expected]


def test_an_item_without_positives_gets_the_opposite_of_its_negatives():
    table_labels = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0]])
    table_codes = torch.tensor([[1.0, -1, 1, -1], [1, -1, -1, -1], [-1, 1, -1, -1]])
    queries = torch.tensor([[0.0, 0, 1], [0, 0, 0]])  # a class nobody carries, and no label at all
    expected = [[-1.0, 1.0, 1.0, 1.0]] * 2            # minus the sign of the negatives' sums (1, -1, -1, -3)
    assert mainstay_codes(queries, table_codes, table_labels).tolist() == expected


def test_tied_bits_are_plus_one_even_with_irrational_cosine_weights():
    """Query {0}; seven positives of cosine 1/2, 1/2, 1/sqrt3, 1/sqrt3, 1/2, 1/sqrt5, 1/sqrt2 and three
    negatives. Bit 0: every code is +1, bit 1: every code is -1, so sum_P w b - mean_N b = +-(sum_P w - 1)
    = 0, which float64 weights miss by a few 1e-16 on this table; bit 2: the positives are -1 and the
    negatives +1 (no tie)."""
    query = torch.tensor([[1.0, 0, 0, 0, 0, 0]])
    positive_labels = [[1.0, 0, 1, 1, 1, 0], [1, 0, 1, 0, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 1, 0],
                       [1, 0, 0, 1, 1, 1], [1, 0, 1, 1, 1, 1], [1, 0, 0, 0, 0, 1]]
    negative_labels = [[0.0, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]]
    table_labels = torch.tensor(positive_labels + negative_labels)
    table_codes = torch.tensor([[1.0, -1, -1]] * 7 + [[1.0, -1, 1]] * 3)
    positives, negatives = _mainstay_weights_loop(query[0].tolist(), table_labels.tolist())
    assert len(positives) == 7 and len(negatives) == 3
    assert [w / positives[0][1] for _, w in positives] == \
        pytest.approx([1, 1, 2 / math.sqrt(3), 2 / math.sqrt(3), 1, 2 / math.sqrt(5), math.sqrt(2)])
    assert mainstay_codes(query, table_codes, table_labels).tolist() == [[1.0, 1.0, -1.0]]
    assert mainstay_codes(query.double(), table_codes.double(), table_labels.double()).tolist() == [[1.0, 1.0, -1.0]]
    values = reference_mainstay_objective(every_code(3), query[0].tolist(), table_codes.tolist(),
                                          table_labels.tolist())
    assert (np.abs(values - values.min()) < 1e-9).sum() == 4, "bits 0 and 1 are ties: 4 optimal codes"


def test_on_single_label_data_mainstay_codes_are_the_paper_center_codes():
    g = torch.Generator().manual_seed(4)
    table_labels = torch.nn.functional.one_hot(torch.randint(0, 4, (41,), generator=g), 4).float()
    table_codes = torch.where(torch.rand(41, 12, generator=g) < 0.5, -1.0, 1.0)
    labels = torch.cat([torch.eye(4), torch.zeros(1, 4)])
    assert torch.equal(mainstay_codes(labels, table_codes, table_labels),
                       center_codes(labels, table_codes, table_labels, variant="paper"))
    candidates = torch.tensor(every_code(6))
    assert torch.allclose(mainstay_code_objective(candidates, labels, table_codes[:, :6], table_labels),
                          center_code_objective(candidates, labels, table_codes[:, :6], table_labels))


def test_cosine_weights_give_another_code_than_jaccard_weights_on_multi_label_data():
    """Query {0, 1}. Positive A = {0}: Jaccard 1/2, cosine 1/sqrt2; positive B = {0, 2, 3, 4, 5}: Jaccard 1/6,
    cosine 1/sqrt10. Two A items with bit 0 = +1 and five B items with bit 0 = -1: Jaccard weighs the
    bit to 2/2 - 5/6 > 0, cosine to 2/sqrt2 - 5/sqrt10 < 0. Two negatives cancel on bit 0."""
    a, b, negative = [1.0, 0, 0, 0, 0, 0], [1.0, 0, 1, 1, 1, 1], [0.0, 0, 1, 0, 0, 0]
    table_labels = torch.tensor([a] * 2 + [b] * 5 + [negative] * 2)
    table_codes = torch.tensor([[1.0, 1]] * 2 + [[-1.0, 1]] * 5 + [[1.0, -1], [-1.0, -1]])
    query = torch.tensor([[1.0, 1, 0, 0, 0, 0]])
    mainstay = mainstay_codes(query, table_codes, table_labels)
    center = center_codes(query, table_codes, table_labels, variant="paper")
    assert mainstay.tolist() == [[-1.0, 1.0]] and center.tolist() == [[1.0, 1.0]]
    values = reference_mainstay_objective(every_code(2), query[0].tolist(), table_codes.tolist(), table_labels.tolist())
    own, centers = (reference_mainstay_objective(c.tolist(), query[0].tolist(), table_codes.tolist(),
                                                 table_labels.tolist())[0] for c in (mainstay, center))
    assert own == pytest.approx(values.min(), abs=1e-12) and centers > own + 0.05, \
        "the center code is not optimal for SAAT's cosine-weighted objective"


def test_mainstay_code_bad_inputs_are_clear_errors():
    labels, table_codes, table_labels = random_table(0)
    with pytest.raises(ValueError, match="labels have 5 classes but the code table's labels have 4"):
        mainstay_codes(labels, table_codes, table_labels[:, :4])
    with pytest.raises(ValueError, match="labels have 4 classes but the code table's labels have 5"):
        mainstay_code_objective(torch.tensor(every_code(8)), labels[:, :4], table_codes, table_labels)
    with pytest.raises(ValueError, match="the code table has 30 codes but 29 label rows"):
        mainstay_codes(labels, table_codes, table_labels[:29])
    with pytest.raises(ValueError, match="the code table is empty"):
        mainstay_codes(labels, table_codes[:0], table_labels[:0])
    with pytest.raises(ValueError, match="must be 2-D"):
        mainstay_codes(labels[0], table_codes, table_labels)


# ----------------------------------------------------------------------------------------------
# The masked loss, against a per-item, per-bit loop

def reference_saat_loss(relaxed, guide, toward, threshold):
    """mean_i sum_k w (s + 2) s / sum_k w, s = +-h g, w = 1[s > threshold]; an item without bits left adds 0."""
    total = 0.0
    for row, code in zip(relaxed.tolist(), guide.tolist()):
        kept = [(-h * g if toward else h * g) for h, g in zip(row, code)]
        kept = [s for s in kept if s > threshold]
        total += sum((s + 2) * s for s in kept) / len(kept) if kept else 0.0
    return total / len(relaxed)


def random_codes(n=6, seed=0, bits=BITS):
    return torch.where(torch.rand(n, bits, generator=torch.Generator().manual_seed(seed)) < 0.5, -1.0, 1.0)


@pytest.mark.parametrize("toward", [False, True])
@pytest.mark.parametrize("threshold", [-0.5, 0.0, -1.0])
def test_saat_loss_matches_a_per_bit_loop(toward, threshold):
    g = torch.Generator().manual_seed(1)
    relaxed = torch.rand(5, 9, generator=g, dtype=torch.float64) * 2 - 1
    guide = random_codes(5, seed=2, bits=9).double()
    relaxed[0] = -guide[0] * (-1 if toward else 1) * 0.9            # every bit past -0.5: the row adds 0
    expected = reference_saat_loss(relaxed, guide, toward, threshold)
    value = saat_loss(relaxed, guide, toward=toward, threshold=threshold)
    assert value.item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("toward", [False, True])
def test_saat_loss_gradient_leaves_out_the_bits_already_past_the_threshold(toward):
    h = torch.tensor([[-0.9, -0.5, -0.49, 0.0, 0.7, 0.2],
                      [-0.9, -0.6, -0.51, -1.0, -0.7, -0.5]], dtype=torch.float64)   # s = h * g (g = +1)
    guide = torch.ones(2, 6, dtype=torch.float64)
    relaxed = (-h if toward else h).requires_grad_(True)   # the same s either way
    value = saat_loss(relaxed, guide, toward=toward)
    grad, = torch.autograd.grad(value, relaxed)
    s, kept = h[0], h[0] > -0.5                            # s = -0.5 exactly is masked (w = 1[s > -0.5])
    assert kept.tolist() == [False, False, True, True, True, True]
    assert (grad[0, :2] == 0).all() and (grad[0, 2:] != 0).all()
    # d/dh of (s + 2) s / |kept| / N for the kept bits: (2 s + 2) g / 4 / 2
    expected = (2 * s[kept] + 2) / kept.sum() / 2
    assert torch.allclose(grad[0, kept].abs(), expected.abs(), rtol=1e-12)
    assert (grad[1] == 0).all(), "a row with every bit past the threshold has no gradient"
    assert value.item() == pytest.approx(sum((x + 2) * x for x in s[kept].tolist()) / 4 / 2, rel=1e-12)


def test_saat_loss_of_rows_without_bits_left_is_zero():
    guide = random_codes(4, seed=3)
    assert saat_loss(-0.8 * guide, guide).item() == 0.0
    assert saat_loss(0.8 * guide, guide, toward=True).item() == 0.0
    assert saat_loss(0.8 * guide, guide).item() == pytest.approx((0.8 + 2) * 0.8)


# ----------------------------------------------------------------------------------------------
# The SAAT attack

def mean_hamming(codes, guide):
    """Mean number of differing bits per row, counted bit by bit."""
    return sum(sum(a != b for a, b in zip(row, g)) for row, g in zip(codes.tolist(), guide.tolist())) / len(codes)


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("loss", ["masked", "inner"])
@pytest.mark.parametrize("random_start", [False, True])
def test_saat_adversarial_images_stay_in_the_eps_ball_and_unit_range(targeted, loss, random_start):
    x = images()
    x[0] = 0.0  # pixels at the borders of [0, 1]
    x[1] = 1.0
    eps = 8 / 255
    attack = SAAT(fresh_model(), eps=eps, alpha=2 / 255, steps=5, random_start=random_start, targeted=targeted,
                  loss=loss)
    adversarial = attack(x, random_codes())
    assert adversarial.shape == x.shape and adversarial.dtype == x.dtype
    assert (adversarial - x).abs().max() <= eps + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert not torch.equal(adversarial, x)
    assert [r["scale"] for r in attack.history] == [hag_scale(step, 5) for step in range(5)]   # HAG's growing scale


@pytest.mark.parametrize("loss", ["masked", "inner"])
def test_saat_attack_moves_codes_away_from_the_mainstay_codes(trained, loss):
    model, db_codes, database, queries = trained
    mainstays = mainstay_codes(queries.labels, db_codes, database.labels)
    clean_codes = encode(model, queries.images)
    attack = SAAT(model, eps=32 / 255, alpha=2 / 255, steps=30, loss=loss)
    adversarial_codes = encode(model, attack(queries.images, mainstays))
    clean_distance = mean_hamming(clean_codes, mainstays)
    adversarial_distance = mean_hamming(adversarial_codes, mainstays)
    assert clean_distance < BITS / 4, f"clean codes should lie near their mainstay codes ({clean_distance:.1f} bits)"
    assert adversarial_distance > BITS / 2, \
        f"distance to the mainstays {clean_distance:.1f} -> {adversarial_distance:.1f} bits"


def test_targeted_saat_attack_moves_codes_toward_the_target_mainstay_codes(trained):
    model, db_codes, database, queries = trained
    targets = sample_target_labels(queries.labels, database.labels, generator=torch.Generator().manual_seed(0))
    target_mainstays = mainstay_codes(targets, db_codes, database.labels)
    clean_codes = encode(model, queries.images)
    attack = SAAT(model, eps=32 / 255, alpha=2 / 255, steps=30, targeted=True)
    adversarial_codes = encode(model, attack(queries.images, target_mainstays))
    clean_distance = mean_hamming(clean_codes, target_mainstays)
    adversarial_distance = mean_hamming(adversarial_codes, target_mainstays)
    assert adversarial_distance < 0.5 * clean_distance, \
        f"distance to the target mainstays {clean_distance:.1f} -> {adversarial_distance:.1f} bits"


class _TowardGuided(CodeGuidedAttack):
    toward = True


@pytest.mark.parametrize("targeted", [False, True])
def test_inner_loss_is_the_code_alignment_loss(targeted):
    x, codes = images(), random_codes()
    settings = dict(eps=8 / 255, alpha=1 / 255, steps=6, random_start=True, seed=2, scale_schedule="grow")
    saat = SAAT(fresh_model(), targeted=targeted, loss="inner", **settings)
    guided = (_TowardGuided if targeted else CodeGuidedAttack)(fresh_model(), **settings)
    relaxed = torch.rand(6, BITS, generator=torch.Generator().manual_seed(5)) * 2 - 1
    assert torch.equal(saat.loss(relaxed, codes), code_alignment_loss(relaxed, codes, toward=targeted))
    assert torch.equal(saat(x, codes), guided(x, codes))
    assert [r["loss"] for r in saat.history] == [r["loss"] for r in guided.history]
    masked = SAAT(fresh_model(), targeted=targeted, **settings)
    assert torch.equal(masked.loss(relaxed, codes), saat_loss(relaxed, codes, toward=targeted))
    assert not torch.equal(masked(x, codes), saat(x, codes)), "the masked loss takes other steps"


def test_non_targeted_saat_with_the_inner_loss_is_the_center_guided_attack_given_the_same_codes():
    x, codes = images(), random_codes()
    settings = dict(eps=8 / 255, alpha=2 / 255, steps=4, random_start=True, seed=1)
    saat = SAAT(fresh_model(), loss="inner", scale_schedule="fixed", **settings)
    assert torch.equal(saat(x, codes), CenterGuidedAttack(fresh_model(), **settings)(x, codes))


def test_saat_in_batches_matches_one_call_and_is_seeded():
    x, codes = images(10), random_codes(10)
    whole = SAAT(fresh_model(), steps=4, random_start=False)(x, codes)
    assert torch.equal(perturb(SAAT(fresh_model(), steps=4, random_start=False), x, codes, batch_size=3), whole)
    first = SAAT(fresh_model(), steps=3, seed=5)(x, codes)
    assert torch.equal(first, SAAT(fresh_model(), steps=3, seed=5)(x, codes))
    assert not torch.equal(first, SAAT(fresh_model(), steps=3, seed=6)(x, codes))


def test_saat_registry_defaults_and_bad_settings():
    assert ATTACKS["saat"] is SAAT and issubclass(SAAT, CodeGuidedAttack)
    attack = build_attack("saat", fresh_model())
    assert (attack.eps, attack.alpha, attack.steps, attack.random_start) == (8 / 255, 1 / 255, 100, True)
    assert attack.toward is False and attack.scale_schedule == "grow"
    assert (attack.loss_name, attack.threshold) == ("masked", -0.5)
    assert build_attack("saat", fresh_model(), targeted=True).toward is True
    with pytest.raises(ValueError, match=r"loss must be one of \('masked', 'inner'\); got 'hag'"):
        SAAT(fresh_model(), loss="hag")
    for threshold in (-1.5, 2.0, float("nan")):
        with pytest.raises(ValueError, match=r"threshold \(on s = h \* b in \[-1, 1\]\) must be in \[-1, 1\]"):
            SAAT(fresh_model(), threshold=threshold)
    with pytest.raises(ValueError, match="scale_schedule must be one of"):
        SAAT(fresh_model(), scale_schedule="linear")
    with pytest.raises(ValueError, match=rf"guide codes must have one row of {BITS} bits per image"):
        SAAT(fresh_model(), steps=1)(images(6), random_codes(6)[:, :8])


# ----------------------------------------------------------------------------------------------
# SAAT adversarial training

DEFENSE_BITS, CLASSES = 8, 4


@pytest.fixture(scope="module")
def base(one_thread):
    """A clean DPSH model on 64 stripes (the model SAAT fine-tunes) and its data."""
    train = stripes(64)
    data = stripes_data(train, stripes(16, seed=1))
    model, _ = fit_hashing_model(data, method="dpsh", bits=DEFENSE_BITS, epochs=4, batch_size=32, lr=0.05)
    return model.eval(), data


@pytest.mark.parametrize("method, step", [("dpsh", 0), ("hashnet", 400)])   # hashnet: tanh scale sqrt(3)
def test_saat_objective_is_hashing_minus_mainstay_alignment_plus_quantization(base, method, step, inner_attacks):
    train = stripes(48, seed=2, multi_label=True)
    model = copy.deepcopy(base[0])
    loss = build_loss(method, num_train=48, bits=DEFENSE_BITS, num_classes=CLASSES)
    scale = loss.alpha(step)
    assert (scale == 1.0) == (method == "dpsh")
    defense = SAATTraining(num_train=48, bits=DEFENSE_BITS, num_classes=CLASSES, steps=3, weight=0.5,
                           quantization_weight=0.3)
    defense.prepare(model, train, seed=0)
    with torch.no_grad():
        table = sign_codes(model.eval().hash_logits(all_images(train)))          # prepared table: eval-mode codes
    model.train()
    fresh_loss = copy.deepcopy(loss)
    indices = torch.randperm(48, generator=torch.Generator().manual_seed(0))[:12]
    batch, labels = all_images(train)[indices], train.labels[indices]

    value = defense.batch_loss(model, loss, batch, labels, indices, step=step)

    (attack, attacked, guide, adversarial), = inner_attacks
    assert type(attack) is SAAT and not attack.toward and attack.loss_name == "masked"
    assert (attack.steps, attack.eps, attack.alpha, attack.random_start) == (3, 8 / 255, 2 / 255, True)
    assert (attack.scale_schedule, attack.fixed_scale, attack.model_mode) == ("fixed", 1.0, "train")
    assert attack.seed == defense.attack_seed(step) and not attack.keep_history
    assert torch.equal(attacked, batch) and not torch.equal(adversarial, batch)
    assert torch.equal(guide, reference_mainstay_codes(labels, table, train.labels)), \
        "the attack steers away from the mainstay codes of the table before the batch"
    relaxed = model(batch, alpha=scale)                                          # train mode, as in the loop
    table[indices] = sign_codes(relaxed.detach())
    mainstays = reference_mainstay_codes(labels, table, train.labels)             # after the batch's update
    assert len(mainstays.unique(dim=0)) > 1
    adversarial_relaxed = model(adversarial, alpha=scale)
    alignment = (adversarial_relaxed * mainstays).mean()
    quantization = (adversarial_relaxed - sign_codes(adversarial_relaxed.detach())).pow(2).mean()
    expected = fresh_loss(relaxed, labels, indices) - 0.5 * alignment + 0.3 * quantization
    assert torch.equal(defense.code_table, table)
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(0.3 * quantization.item()) > 1e-4 * abs(expected.item()), "the quantization term is visible"
    # the same gradient: nothing flows through the attack or through sign(h(x_adv))
    parameters = [p for p in model.parameters() if p.requires_grad]
    for got, want in zip(torch.autograd.grad(value, parameters), torch.autograd.grad(expected, parameters)):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)


def test_interrupted_saat_run_resumes_to_identical_weights(tmp_path, base):
    model, data = base

    def run(epochs, checkpoint_dir=None):
        defense = build_defense("saat", num_train=len(data.train), bits=DEFENSE_BITS, num_classes=CLASSES, steps=2)
        robust, history = fit_defended_model(data, model, defense, method="dph", epochs=epochs,
                                             checkpoint_dir=checkpoint_dir, batch_size=32, lr=0.05, seed=3)
        return robust, history, defense

    uninterrupted, history, defense = run(2)
    assert not same_weights(uninterrupted, model)
    run(1, tmp_path)                                                               # "interrupted" after epoch 1
    (path,) = tmp_path.iterdir()
    assert path.name.startswith("saat_dph_8bits_small_cnn_") and load_checkpoint(path)["epoch"] == 1
    resumed, resumed_history, resumed_defense = run(2, tmp_path)
    assert same_weights(uninterrupted, resumed)
    assert [r["loss"] for r in resumed_history] == [r["loss"] for r in history]
    assert torch.equal(resumed_defense.code_table, defense.code_table)


def test_a_finished_defended_run_of_another_notebook_is_reused_read_only(tmp_path, base):
    model, data = base
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"

    def run(checkpoint_dir, weight=1.0):
        defense = build_defense("saat", num_train=len(data.train), bits=DEFENSE_BITS, num_classes=CLASSES, steps=2,
                                weight=weight)
        return fit_defended_model(data, model, defense, method="dph", epochs=1, checkpoint_dir=checkpoint_dir,
                                  reuse_from=(first_dir,), batch_size=32, lr=0.05, seed=3)

    trained, history = run(first_dir)
    (written,) = first_dir.iterdir()
    stamp = written.stat().st_mtime_ns
    reused, reused_history = run(second_dir)
    assert same_weights(trained, reused) and reused_history == history
    assert written.stat().st_mtime_ns == stamp and not second_dir.exists()
    other, _ = run(second_dir, weight=2.0)                                         # other settings: trained anew
    assert len(list(second_dir.iterdir())) == 1 and not same_weights(other, trained)


def test_saat_training_registry_defaults_and_config():
    assert DEFENSES["saat"] is SAATTraining
    defense = build_defense("saat", num_train=10, bits=DEFENSE_BITS, num_classes=CLASSES)
    assert type(defense) is SAATTraining
    assert (defense.eps, defense.alpha, defense.steps, defense.random_start, defense.model_mode) == \
        (8 / 255, 2 / 255, 7, True, "train")
    assert (defense.weight, defense.quantization_weight) == (1.0, 1e-4)
    assert defense.config == dict(name="saat", eps=8 / 255, alpha=2 / 255, steps=7, random_start=True,
                                  model_mode="train", weight=1.0, quantization_weight=1e-4)
    assert defense.code_table.shape == (10, DEFENSE_BITS) and defense.label_table.shape == (10, CLASSES)
    with pytest.raises(ValueError, match=r"eps is in \[0,1\] pixel units"):
        build_defense("saat", num_train=10, bits=DEFENSE_BITS, num_classes=CLASSES, eps=8)
