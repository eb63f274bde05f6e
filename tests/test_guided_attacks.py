"""Code-guided attacks (CgAT's center-guided attack, P2P, DHTA): they stay in the eps-ball, move the
codes away from the center codes / toward the anchor codes, and run in batches like one call."""

import pytest
import torch

from helpers import BITS, fresh_model, images

from advhash.attacks import (ATTACKS, DHTA, P2P, CenterGuidedAttack, CodeGuidedAttack, build_attack,
                             code_alignment_loss, perturb)
from advhash.codes import center_codes, sample_target_labels
from advhash.metrics import mean_average_precision, targeted_map
from advhash.train import encode

pytestmark = pytest.mark.usefixtures("one_thread")

GUIDED = {"center": CenterGuidedAttack, "p2p": P2P, "dhta": DHTA}


def random_codes(n=6, seed=0):
    return torch.where(torch.rand(n, BITS, generator=torch.Generator().manual_seed(seed)) < 0.5, -1.0, 1.0)


def mean_hamming(codes, guide):
    """Mean number of differing bits per row, counted bit by bit."""
    return sum(sum(a != b for a, b in zip(row, g)) for row, g in zip(codes.tolist(), guide.tolist())) / len(codes)


# --- the published properties -------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GUIDED))
@pytest.mark.parametrize("random_start", [False, True])
def test_adversarial_images_stay_in_the_eps_ball_and_unit_range(name, random_start):
    x = images()
    x[0] = 0.0  # pixels at the borders of [0, 1]
    x[1] = 1.0
    eps = 8 / 255
    attack = build_attack(name, fresh_model(), eps=eps, steps=5, random_start=random_start)
    adversarial = attack(x, random_codes())
    assert adversarial.shape == x.shape and adversarial.dtype == x.dtype
    assert (adversarial - x).abs().max() <= eps + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert not torch.equal(adversarial, x)


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_center_guided_attack_moves_codes_away_from_the_center_codes(trained, variant):
    model, db_codes, database, queries = trained
    centers = center_codes(queries.labels, db_codes, database.labels, variant=variant)
    assert (centers != 0).all(), "every stripes label has positives and negatives"
    clean_codes = encode(model, queries.images)
    attack = CenterGuidedAttack(model, eps=32 / 255, alpha=2 / 255, steps=20)
    adversarial_codes = encode(model, attack(queries.images, centers))
    clean_distance, adversarial_distance = mean_hamming(clean_codes, centers), mean_hamming(adversarial_codes, centers)
    assert clean_distance < BITS / 4, f"clean codes should lie near their centers ({clean_distance:.1f} bits)"
    assert adversarial_distance > BITS / 2, f"distance to the centers {clean_distance:.1f} -> {adversarial_distance:.1f}"
    clean_map = mean_average_precision(clean_codes, db_codes, queries.labels, database.labels)
    adversarial_map = mean_average_precision(adversarial_codes, db_codes, queries.labels, database.labels)
    assert adversarial_map < 0.5 * clean_map, f"mAP {clean_map:.3f} -> {adversarial_map:.3f}"


@pytest.mark.parametrize("attack_class", [P2P, DHTA])
def test_targeted_attacks_move_codes_toward_the_anchor_codes(trained, attack_class):
    model, db_codes, database, queries = trained
    targets = sample_target_labels(queries.labels, database.labels, min_items=attack_class.num_anchors,
                                   generator=torch.Generator().manual_seed(0))
    attack = attack_class(model, eps=32 / 255, steps=30)
    anchors = attack.anchors(targets, db_codes, database.labels)
    clean_codes = encode(model, queries.images)
    adversarial_codes = encode(model, attack(queries.images, anchors))
    clean_distance, adversarial_distance = mean_hamming(clean_codes, anchors), mean_hamming(adversarial_codes, anchors)
    assert adversarial_distance < 0.5 * clean_distance, \
        f"distance to the anchors {clean_distance:.1f} -> {adversarial_distance:.1f} bits"
    clean_tmap = targeted_map(clean_codes, db_codes, targets, database.labels)
    adversarial_tmap = targeted_map(adversarial_codes, db_codes, targets, database.labels)
    assert adversarial_tmap > clean_tmap + 0.3, f"t-MAP {clean_tmap:.3f} -> {adversarial_tmap:.3f}"


def test_code_alignment_loss_matches_a_per_bit_loop():
    g = torch.Generator().manual_seed(0)
    relaxed = torch.rand(4, 6, generator=g, dtype=torch.float64) * 2 - 1
    guide = torch.tensor([[1.0, -1, 0, 1, 1, -1]] * 4, dtype=torch.float64)
    expected = sum(h * c for row, code in zip(relaxed.tolist(), guide.tolist()) for h, c in zip(row, code)) / 24
    assert code_alignment_loss(relaxed, guide, toward=False).item() == pytest.approx(expected, rel=1e-12)
    assert code_alignment_loss(relaxed, guide, toward=True).item() == pytest.approx(-expected, rel=1e-12)
    relaxed.requires_grad_(True)
    grad, = torch.autograd.grad(code_alignment_loss(relaxed, guide, toward=False), relaxed)
    assert (grad[:, 2] == 0).all() and (grad[:, [0, 1, 3, 4, 5]] != 0).all()  # a 0 bit guides nothing


def test_all_zero_guide_codes_leave_the_images_unchanged():
    """The official center code of an item without positives or negatives is all zero: no attack."""
    x = images()
    attack = CenterGuidedAttack(fresh_model(), eps=8 / 255, steps=5, random_start=False)
    assert torch.equal(attack(x, torch.zeros(len(x), BITS)), x)


# --- batching with per-image codes ---------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GUIDED))
def test_perturb_with_per_image_codes_in_batches_matches_one_call(name):
    x, codes = images(10), random_codes(10)
    whole = build_attack(name, fresh_model(), steps=4, random_start=False)
    expected = whole(x, codes, snapshot_steps=(0, 4))
    batched = build_attack(name, fresh_model(), steps=4, random_start=False)
    result = perturb(batched, x, codes, batch_size=3, snapshot_steps=(0, 4))
    assert torch.equal(result, expected)
    assert torch.equal(batched.snapshots[4], expected) and torch.equal(batched.snapshots[0], x)
    assert len(batched.history) == 4
    for merged, single in zip(batched.history, whole.history):
        assert merged["flipped_fraction"] == pytest.approx(single["flipped_fraction"], abs=1e-6)
        assert merged["loss"] == pytest.approx(single["loss"], rel=1e-5, abs=1e-9)  # a mean of batch means


def test_perturb_pairs_each_image_with_its_own_code():
    """Swapping two images and their codes swaps the two adversarial images."""
    x, codes = images(6), random_codes(6)
    order = torch.tensor([1, 0, 2, 3, 4, 5])
    attack = CenterGuidedAttack(fresh_model(), steps=3, random_start=False)
    straight = perturb(attack, x, codes, batch_size=2)
    swapped = perturb(attack, x[order], codes[order], batch_size=2)
    assert torch.equal(swapped, straight[order])


def test_perturb_rejects_per_image_tensors_of_the_wrong_length():
    attack = P2P(fresh_model(), steps=2)
    with pytest.raises(ValueError, match=r"per-image argument 0 must be a tensor with one row per image \(6\); got 5"):
        perturb(attack, images(6), random_codes(5), batch_size=3)
    with pytest.raises(ValueError, match="per-image argument 0 must be a tensor.*got list"):
        perturb(attack, images(6), random_codes(6).tolist(), batch_size=3)


@pytest.mark.parametrize("name", sorted(GUIDED))
def test_guide_codes_of_the_wrong_shape_are_clear_errors(name):
    attack = build_attack(name, fresh_model(), steps=2)
    x = images(6)
    for bad in (random_codes(6)[:, :8], random_codes(5), random_codes(6)[0], torch.ones(6, BITS, 1)):
        with pytest.raises(ValueError, match=rf"guide codes must have one row of {BITS} bits per image, shape \(6, {BITS}\)"):
            attack(x, bad)


# --- model mode, determinism, registry, anchors --------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GUIDED))
@pytest.mark.parametrize("model_mode", ["eval", "train"])
def test_model_mode_is_used_during_the_attack_and_restored_after(name, model_mode):
    model = fresh_model()
    model.train(model_mode == "eval")  # the opposite of the attack's mode
    seen = []
    model.hash_layer.register_forward_hook(lambda module, args, out: seen.append(module.training))
    build_attack(name, model, steps=2, model_mode=model_mode)(images(), random_codes())
    assert seen and all(mode == (model_mode == "train") for mode in seen)
    assert model.training == (model_mode == "eval") and model.backbone.training == (model_mode == "eval")


@pytest.mark.parametrize("name", sorted(GUIDED))
def test_same_seed_same_output(name):
    x, codes = images(), random_codes()
    first = build_attack(name, fresh_model(), steps=3, random_start=True, seed=5)(x, codes)
    second = build_attack(name, fresh_model(), steps=3, random_start=True, seed=5)(x, codes)
    assert torch.equal(first, second)
    other = build_attack(name, fresh_model(), steps=3, random_start=True, seed=6)(x, codes)
    assert not torch.equal(first, other)


def test_registry_and_paper_defaults():
    assert {name: ATTACKS[name] for name in GUIDED} == GUIDED
    assert all(issubclass(cls, CodeGuidedAttack) for cls in GUIDED.values())
    center = build_attack("center", fresh_model())
    assert (center.eps, center.alpha, center.steps, center.random_start) == (8 / 255, 2 / 255, 7, True)
    assert center.toward is False and center.scale_schedule == "fixed"
    dhta = build_attack("dhta", fresh_model(), eps=4 / 255)
    assert (dhta.eps, dhta.alpha, dhta.steps, dhta.random_start) == (4 / 255, 1 / 255, 100, False)
    assert dhta.toward is True and dhta.scale_schedule == "grow"
    assert P2P.num_anchors == 1 and DHTA.num_anchors == 9 and issubclass(P2P, DHTA)
    with pytest.raises(ValueError, match="scale_schedule must be one of"):
        DHTA(fresh_model(), scale_schedule="linear")
    with pytest.raises(ValueError, match="fixed_scale"):
        CenterGuidedAttack(fresh_model(), fixed_scale=0)


@pytest.mark.parametrize("attack_class", [P2P, DHTA])
def test_anchors_use_the_attacks_seed_and_its_number_of_anchors(trained, attack_class):
    _, db_codes, database, queries = trained
    targets = sample_target_labels(queries.labels, database.labels, generator=torch.Generator().manual_seed(0))
    attack = attack_class(fresh_model(), seed=3)
    anchors = attack.anchors(targets, db_codes, database.labels)
    assert anchors.shape == (len(targets), BITS) and set(anchors.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(anchors, attack.anchors(targets, db_codes, database.labels))
    assert torch.equal(anchors, attack_class(fresh_model(), seed=3).anchors(targets, db_codes, database.labels))
    if attack_class is P2P:  # one anchor: the code of one database item with exactly the target label
        for target, anchor in zip(targets.tolist(), anchors.tolist()):
            assert any(code == anchor and label == target
                       for code, label in zip(db_codes.tolist(), database.labels.tolist()))
