"""The SAAT attack (Yuan et al., TIFS 2023): the published masked loss against a per-bit loop (value and
gradient), and the attack built on a victim steering away from the queries' mainstay codes (or, with
``set_targets``, toward the targets'), computed from the victim's training codes (either variant); the paper's
loss is the plain code-guided loop."""

import pytest
import torch

from helpers import BITS, fresh_model, images, mean_hamming, one_hot_labels, random_codes, table_victim

from advhash.attacks import (ATTACKS, SAAT, CenterGuidedAttack, CodeGuidedAttack, build_attack,
                             code_alignment_loss, hag_scale, perturb, saat_loss)
from advhash.codes import mainstay_codes, sample_target_labels
from advhash.metrics import mean_average_precision

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the masked losses, against per-bit loops --------------------------------------------------------------
def reference_published_loss(relaxed, guide, toward, threshold):
    """The published SAAT code's loss (base.py L24-45) and its gradient in h, written per bit with Python numbers:
    s = h g; away: w = 1[s > t], L = sum w (s + 2) s / sum w; toward: w = 1[s < -t], L = -sum w (s + 2) s / sum w,
    one sum over the whole batch (0 when no bit is left)."""
    rows = [[h * g for h, g in zip(row, code)] for row, code in zip(relaxed.tolist(), guide.tolist())]
    mask = [[(s < -threshold) if toward else (s > threshold) for s in row] for row in rows]
    count = sum(map(sum, mask))
    sign = -1.0 if toward else 1.0
    value = sign * sum(w * (s + 2) * s for row, ws in zip(rows, mask) for s, w in zip(row, ws)) / max(count, 1)
    grad = [[sign * w * (2 * s + 2) * g / max(count, 1) for s, w, g in zip(row, ws, code)]
            for row, ws, code in zip(rows, mask, guide.tolist())]
    return value, torch.tensor(grad, dtype=torch.float64)


def ties_and_masked_bits(toward):
    """Relaxed codes with bits exactly at the thresholds, exact zeros, a row entirely past the threshold."""
    g = torch.Generator().manual_seed(1)
    relaxed = torch.rand(5, 9, generator=g, dtype=torch.float64) * 2 - 1
    guide = random_codes(5, seed=2, bits=9).double()
    relaxed[0] = -guide[0] * (-1 if toward else 1) * 0.9            # every bit past the threshold
    relaxed[1, :4] = torch.tensor([-0.5, 0.5, 0.0, -1.0], dtype=torch.float64) * guide[1, :4]   # s at the edges
    relaxed[2, :2] = relaxed[2, 2:4] = 0.25 * guide[2, :2]                                    # tied values
    return relaxed, guide


@pytest.mark.parametrize("toward", [False, True])
@pytest.mark.parametrize("threshold", [-0.5, 0.0, -1.0])
def test_saat_loss_matches_a_per_bit_loop_in_value_and_gradient(toward, threshold):
    relaxed, guide = ties_and_masked_bits(toward)
    relaxed.requires_grad_(True)
    expected, expected_grad = reference_published_loss(relaxed.detach(), guide, toward, threshold)
    value = saat_loss(relaxed, guide, toward=toward, threshold=threshold)
    grad, = torch.autograd.grad(value, relaxed)
    assert value.item() == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert torch.allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)


def test_the_published_targeted_loss_weighs_bits_near_the_threshold_most():
    """The published targeted loss keeps s = h g (w = 1[s < 0.5]) and is not the mirror image of the untargeted
    one: a fully opposed bit (s = -1) gets no gradient (the mirror image would push it hardest)."""
    guide = torch.ones(1, 3, dtype=torch.float64)
    relaxed = torch.tensor([[-1.0, 0.0, 0.45]], dtype=torch.float64, requires_grad=True)
    published, = torch.autograd.grad(saat_loss(relaxed, guide, toward=True), relaxed)
    assert published[0, 0] == 0 and published[0, 2].abs() > published[0, 1].abs() > 0


def test_saat_losses_without_bits_left_are_zero():
    guide = random_codes(4, seed=3)
    assert saat_loss(-0.8 * guide, guide).item() == 0.0
    assert saat_loss(0.8 * guide, guide).item() == pytest.approx((0.8 + 2) * 0.8)
    assert saat_loss(0.8 * guide, guide, toward=True).item() == 0.0        # every s = 0.8 >= 0.5: none left


# --- the attack -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("variant", ["published", "paper"])
def test_saat_follows_hags_growing_scale_in_both_modes(targeted, variant):
    x, labels = images(), one_hot_labels(6)
    victim = table_victim(fresh_model())
    attack = SAAT(victim, eps=8 / 255, alpha=2 / 255, steps=5, variant=variant)
    if targeted:
        attack.set_targets(sample_target_labels(labels, victim.db_labels, generator=torch.Generator().manual_seed(0)))
    adversarial = attack(x, labels)
    assert attack.toward is targeted
    assert (adversarial - x).abs().max() <= 8 / 255 + 1e-6 and not torch.equal(adversarial, x)
    assert [r["scale"] for r in attack.history] == [hag_scale(step, 5) for step in range(5)]


@pytest.mark.parametrize("variant", ["published", "paper"])
def test_saat_attack_moves_codes_away_from_the_mainstay_codes(victim, trained, variant):
    _, _, _, queries = trained
    mainstays = mainstay_codes(queries.labels, victim.train_codes, victim.train_labels, variant=variant)
    attack = SAAT(victim, eps=32 / 255, alpha=2 / 255, steps=30, variant=variant)
    assert torch.equal(attack.guide(queries.labels, None), mainstays)
    clean_codes = victim.encode(queries.images)
    adversarial_codes = victim.encode(attack(queries.images, queries.labels))
    clean_distance = mean_hamming(clean_codes, mainstays)
    adversarial_distance = mean_hamming(adversarial_codes, mainstays)
    assert clean_distance < BITS / 4, f"clean codes should lie near their mainstay codes ({clean_distance:.1f} bits)"
    assert adversarial_distance > BITS / 2, \
        f"distance to the mainstays {clean_distance:.1f} -> {adversarial_distance:.1f} bits"
    clean_map = mean_average_precision(clean_codes, victim.db_codes, queries.labels, victim.db_labels)
    adversarial_map = mean_average_precision(adversarial_codes, victim.db_codes, queries.labels, victim.db_labels)
    assert adversarial_map < 0.5 * clean_map, f"mAP {clean_map:.3f} -> {adversarial_map:.3f}"


def test_targeted_saat_attack_moves_codes_toward_the_target_mainstay_codes(victim, trained):
    _, _, _, queries = trained
    targets = sample_target_labels(queries.labels, victim.db_labels, generator=torch.Generator().manual_seed(0))
    target_mainstays = mainstay_codes(targets, victim.train_codes, victim.train_labels)
    attack = SAAT(victim, eps=32 / 255, alpha=2 / 255, steps=30).set_targets(targets)
    assert torch.equal(attack.guide(queries.labels, targets), target_mainstays), "the targets steer, not the labels"
    clean_codes = victim.encode(queries.images)
    adversarial_codes = victim.encode(perturb(attack, queries.images, queries.labels, batch_size=10))
    clean_distance = mean_hamming(clean_codes, target_mainstays)
    adversarial_distance = mean_hamming(adversarial_codes, target_mainstays)
    assert adversarial_distance < 0.5 * clean_distance, \
        f"distance to the target mainstays {clean_distance:.1f} -> {adversarial_distance:.1f} bits"


class _TowardGuided(CodeGuidedAttack):
    toward = True


@pytest.mark.parametrize("targeted", [False, True])
def test_the_paper_loss_is_the_code_alignment_loss(targeted):
    x, codes = images(), random_codes()
    settings = dict(eps=8 / 255, alpha=1 / 255, steps=6, random_start=True, seed=2, scale_schedule="grow")
    targets = one_hot_labels(6) if targeted else None

    def saat(**kwargs):
        return SAAT(fresh_model(), **settings, **kwargs).set_targets(targets)

    inner = saat(variant="paper")
    guided = (_TowardGuided if targeted else CodeGuidedAttack)(fresh_model(), **settings)
    relaxed = torch.rand(6, BITS, generator=torch.Generator().manual_seed(5)) * 2 - 1
    assert torch.equal(inner.loss(relaxed, codes), code_alignment_loss(relaxed, codes, toward=targeted))
    assert torch.equal(inner.run(x, codes), guided.run(x, codes))
    assert [r["loss"] for r in inner.history] == [r["loss"] for r in guided.history]
    masked = saat()
    assert torch.equal(masked.loss(relaxed, codes), saat_loss(relaxed, codes, toward=targeted))
    assert not torch.equal(masked.run(x, codes), saat(variant="paper").run(x, codes)), "the masked loss takes other steps"


def test_non_targeted_saat_with_the_paper_loss_is_the_center_guided_attack_on_single_label_data():
    """On single-label data the mainstay code is the paper's center code: the same attack, from the same victim."""
    x, labels = images(), one_hot_labels(6)
    victim = table_victim(fresh_model())
    settings = dict(eps=8 / 255, alpha=2 / 255, steps=4, random_start=True, seed=1)
    saat = SAAT(victim, variant="paper", scale_schedule="fixed", **settings)
    assert torch.equal(saat(x, labels), CenterGuidedAttack(victim, **settings)(x, labels))


def test_saat_in_batches_matches_one_call_and_is_seeded():
    x, labels = images(10), one_hot_labels(10)
    victim = table_victim(fresh_model())
    whole = SAAT(victim, steps=4, random_start=False)(x, labels)
    assert torch.equal(perturb(SAAT(victim, steps=4, random_start=False), x, labels, batch_size=3), whole)
    first = SAAT(victim, steps=3, seed=5)(x, labels)
    assert torch.equal(first, SAAT(victim, steps=3, seed=5)(x, labels))
    assert not torch.equal(first, SAAT(victim, steps=3, seed=6)(x, labels))


def test_saat_on_a_bare_model_needs_a_victim_for_the_call():
    with pytest.raises(ValueError, match=r"SAAT steers by the victim's codes of the training set"):
        SAAT(fresh_model(), steps=1)(images(), one_hot_labels(6))
    with pytest.raises(ValueError, match="training set"):
        SAAT(fresh_model(), steps=1).set_targets(one_hot_labels(6))(images())


def test_saat_registry_defaults_and_bad_settings():
    assert ATTACKS["saat"] is SAAT and issubclass(SAAT, CodeGuidedAttack)
    attack = build_attack("saat", fresh_model())
    assert (attack.eps, attack.alpha, attack.steps, attack.random_start) == (8 / 255, 1 / 255, 100, True)
    assert attack.toward is False and attack.scale_schedule == "grow" and attack.target_mode == "optional"
    assert (attack.variant, attack.threshold) == ("published", -0.5)
    assert attack.set_targets(one_hot_labels(3)).toward is True
    assert attack.set_targets(None).toward is False
    with pytest.raises(ValueError, match=r"variant must be one of \('published', 'paper'\); got 'masked'"):
        SAAT(fresh_model(), variant="masked")
    with pytest.raises(TypeError, match="loss"):
        SAAT(fresh_model(), loss="masked_per_row")      # removed: the form is the variant, loss and ties together
    with pytest.raises(ValueError, match=r"variant must be one of \('published', 'paper'\); got 'official'"):
        SAAT(fresh_model(), variant="official")
    for threshold in (-1.5, 2.0, float("nan")):
        with pytest.raises(ValueError, match=r"threshold \(on s = h \* b in \[-1, 1\]\) must be in \[-1, 1\]"):
            SAAT(fresh_model(), threshold=threshold)
    with pytest.raises(ValueError, match="scale_schedule must be one of"):
        SAAT(fresh_model(), scale_schedule="linear")
    with pytest.raises(ValueError, match=rf"guide codes must have one row of {BITS} bits per image"):
        SAAT(fresh_model(), steps=1).run(images(6), random_codes(6)[:, :8])
