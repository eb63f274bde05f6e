"""Attacks: they stay in the eps-ball, lower mAP, and HAG's loss and schedule match the paper / SAAT."""

import math

import pytest
import torch

from helpers import fresh_model, images

from advhash.attacks import (ATTACKS, HAG, HammingPGD, build_attack, combine_perturbations, hag_loss, hag_scale,
                             perturb, perturbation_stats)
from advhash.metrics import mean_average_precision
from advhash.train import encode

pytestmark = pytest.mark.usefixtures("one_thread")

ATTACK_SETTINGS = {  # name -> (registry name, extra kwargs)
    "pgd": ("pgd", {}),
    "hag": ("hag", {}),
    "hag_fixed": ("hag", dict(scale_schedule="fixed")),
    "hag_published_code": ("hag", dict(optimizer="sgd", normalize="mask", balance_weight=1.0)),
}


def make_attack(setting, model, **kwargs):
    name, extra = ATTACK_SETTINGS[setting]
    return build_attack(name, model, **{**extra, **kwargs})


# --- the published properties: inside the eps-ball, lower mAP ----------------------------------------
@pytest.mark.parametrize("setting", sorted(ATTACK_SETTINGS))
@pytest.mark.parametrize("random_start", [False, True])
def test_adversarial_images_stay_in_the_eps_ball_and_unit_range(setting, random_start):
    x = images()
    x[0] = 0.0  # pixels at the borders of [0, 1]
    x[1] = 1.0
    eps = 8 / 255
    adversarial = make_attack(setting, fresh_model(), eps=eps, steps=5, random_start=random_start)(x)
    assert adversarial.shape == x.shape and adversarial.dtype == x.dtype
    assert (adversarial - x).abs().max() <= eps + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert not torch.equal(adversarial, x)


@pytest.mark.parametrize("setting", sorted(ATTACK_SETTINGS))
def test_eps_zero_returns_the_input(setting):
    x = images()
    assert torch.equal(make_attack(setting, fresh_model(), eps=0.0, steps=3, random_start=True)(x), x)


@pytest.mark.parametrize("setting", ["pgd", "hag", "hag_fixed", "hag_published_code"])
def test_attacks_lower_the_map_of_a_trained_model(trained, setting):
    model, db_codes, database, queries = trained
    clean_map = mean_average_precision(encode(model, queries.images), db_codes, queries.labels, database.labels)
    attack = make_attack(setting, model, eps=32 / 255, alpha=2 / 255, steps=30)
    adversarial = attack(queries.images)
    adversarial_map = mean_average_precision(encode(model, adversarial), db_codes, queries.labels, database.labels)
    assert clean_map > 0.9, f"the tiny model should retrieve the stripes (clean mAP {clean_map:.3f})"
    assert adversarial_map < 0.5 * clean_map, f"{setting}: mAP {clean_map:.3f} -> {adversarial_map:.3f}"
    assert attack.history[-1]["flipped_fraction"] > attack.history[0]["flipped_fraction"]


# --- HAG's loss and scale schedule -----------------------------------------------------------------
def paper_loss_loop(adv, clean, threshold=0.5, normalize="bits", balance_weight=0.0):
    """The HAG formula written per query and per bit with Python numbers (independent of hag_loss)."""
    total, balance = 0.0, 0.0
    for f_adv, f_clean in zip(adv.tolist(), clean.tolist()):
        mask = [1.0 if abs(a - (1.0 if c >= 0 else -1.0)) < 1 + threshold else 0.0 for a, c in zip(f_adv, f_clean)]
        inner = sum(w * c * w * a for w, a, c in zip(mask, f_adv, f_clean))  # F'(x_q) F'(x_adv)^T
        m = len(f_adv) if normalize == "bits" else max(sum(mask), 1.0)
        total += (inner / m + 1) ** 2
        balance += (sum(f_adv) / len(f_adv)) ** 2
    n = len(adv)
    return total / n + balance_weight * balance / n


@pytest.mark.parametrize("normalize", ["bits", "mask"])
@pytest.mark.parametrize("balance_weight", [0.0, 1.0])
@pytest.mark.parametrize("threshold", [0.5, 0.2])
def test_hag_loss_matches_a_per_query_loop(normalize, balance_weight, threshold):
    g = torch.Generator().manual_seed(3)
    adv = torch.rand(5, 12, generator=g, dtype=torch.float64) * 2 - 1
    clean = torch.rand(5, 12, generator=g, dtype=torch.float64) * 2 - 1
    clean[0, 0] = 0.0  # sign(0) = +1
    expected = paper_loss_loop(adv, clean, threshold, normalize, balance_weight)
    got = hag_loss(adv, clean, threshold=threshold, normalize=normalize, balance_weight=balance_weight)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_hag_mask_drops_a_bit_once_it_flipped_past_the_threshold():
    clean = torch.tensor([[0.9, 0.9, -0.9, 0.9]])
    # bit 0 flipped to -0.6: |-0.6 - 1| = 1.6 >= 1.5, dropped; bit 1 at -0.4: 1.4 < 1.5, kept
    adv = torch.tensor([[-0.6, -0.4, -0.8, 0.3]], requires_grad=True)
    loss = hag_loss(adv, clean, threshold=0.5)
    inner = 0.9 * -0.4 + -0.9 * -0.8 + 0.9 * 0.3
    assert loss.item() == pytest.approx((inner / 4 + 1) ** 2)
    grad, = torch.autograd.grad(loss, adv)
    assert grad[0, 0] == 0 and (grad[0, 1:] != 0).all()
    by_mask = hag_loss(adv, clean, threshold=0.5, normalize="mask")
    assert by_mask.item() == pytest.approx((inner / 3 + 1) ** 2)  # 3 bits left in the mask
    balanced = hag_loss(adv, clean, threshold=0.5, balance_weight=2.0)
    assert balanced.item() == pytest.approx(loss.item() + 2.0 * ((-0.6 - 0.4 - 0.8 + 0.3) / 4) ** 2)


def test_hag_scale_reproduces_the_saat_schedule_at_2000_iterations():
    expected = {0: 0.1, 999: 0.1, 1000: 0.2, 1199: 0.2, 1200: 0.3, 1399: 0.3, 1400: 0.5, 1599: 0.5,
                1600: 0.7, 1799: 0.7, 1800: 1.0, 1999: 1.0}
    assert {step: hag_scale(step, 2000) for step in expected} == expected
    assert [hag_scale(step, 10) for step in range(10)] == [0.1] * 5 + [0.2, 0.3, 0.5, 0.7, 1.0]
    with pytest.raises(ValueError, match="step must be in"):
        hag_scale(2000, 2000)


def test_hag_grows_the_scale_and_hag_star_keeps_the_fixed_scale():
    x = images()
    grow = HAG(fresh_model(), steps=10)
    grow(x)
    assert [row["scale"] for row in grow.history] == [hag_scale(step, 10) for step in range(10)]
    fixed = HAG(fresh_model(), steps=10, scale_schedule="fixed", fixed_scale=0.3)
    fixed(x)
    assert [row["scale"] for row in fixed.history] == [0.3] * 10


# --- model mode, determinism, snapshots, history ---------------------------------------------------
@pytest.mark.parametrize("setting", ["pgd", "hag"])
@pytest.mark.parametrize("model_mode", ["eval", "train"])
@pytest.mark.parametrize("was_training", [False, True])
def test_model_mode_is_used_during_the_attack_and_restored_after(setting, model_mode, was_training):
    model = fresh_model()
    model.train(was_training)
    frozen_bn = model.backbone.features[0][1]
    frozen_bn.eval()  # a module in its own mode (e.g. frozen BatchNorm) keeps it
    seen = []
    model.hash_layer.register_forward_hook(lambda module, args, out: seen.append(module.training))
    make_attack(setting, model, steps=2, model_mode=model_mode)(images())
    assert seen and all(mode == (model_mode == "train") for mode in seen)
    assert model.training == was_training and model.backbone.training == was_training
    assert not frozen_bn.training


@pytest.mark.parametrize("setting", sorted(ATTACK_SETTINGS))
def test_same_seed_same_output_and_random_start_moves_the_start(setting):
    x = images()
    first = make_attack(setting, fresh_model(), steps=3, random_start=True, seed=5)
    second = make_attack(setting, fresh_model(), steps=3, random_start=True, seed=5)
    assert torch.equal(first(x, snapshot_steps=[0]), second(x, snapshot_steps=[0]))
    other = make_attack(setting, fresh_model(), steps=3, random_start=True, seed=6)
    other(x, snapshot_steps=[0])
    assert not torch.equal(first.snapshots[0], other.snapshots[0])
    assert 0 < (first.snapshots[0] - x).abs().max() <= 8 / 255 + 1e-6
    plain = make_attack(setting, fresh_model(), steps=3, random_start=False)
    plain(x, snapshot_steps=[0])
    assert torch.equal(plain.snapshots[0], x)


@pytest.mark.parametrize("setting", ["pgd", "hag", "hag_published_code"])
def test_snapshots_and_history(setting):
    x = images()
    attack = make_attack(setting, fresh_model(), steps=5, random_start=True)
    adversarial = attack(x, snapshot_steps=(0, 2, 5))
    assert sorted(attack.snapshots) == [0, 2, 5]
    assert torch.equal(attack.snapshots[5], adversarial)
    assert attack.snapshots[0].device.type == "cpu" and attack.snapshots[0].shape == x.shape
    assert [row["step"] for row in attack.history] == list(range(5))
    for row in attack.history:
        assert set(row) == {"step", "loss", "grad_norm", "flipped_fraction", "scale"}
        assert row["grad_norm"] > 0 and 0 <= row["flipped_fraction"] <= 1 and math.isfinite(row["loss"])
    assert attack.history[0]["flipped_fraction"] == pytest.approx(
        (encode(attack.model, attack.snapshots[0]) != encode(attack.model, x)).float().mean().item())


def test_perturb_in_batches_matches_one_call_and_merges_snapshots():
    x = images(10)
    whole = HAG(fresh_model(), steps=4)
    expected = whole(x, snapshot_steps=(0, 4))
    batched = HAG(fresh_model(), steps=4)
    result = perturb(batched, x, batch_size=4, snapshot_steps=(0, 4))
    assert torch.allclose(result, expected, atol=1e-6)
    assert sorted(batched.snapshots) == [0, 4] and batched.snapshots[4].shape == x.shape
    assert len(batched.history) == 4
    for merged, single in zip(batched.history, whole.history):
        assert merged["flipped_fraction"] == pytest.approx(single["flipped_fraction"], abs=1e-6)
        assert merged["loss"] == pytest.approx(single["loss"], rel=1e-5)  # batch means, weighted by size


# --- bad inputs --------------------------------------------------------------------------------------
def test_bad_arguments_are_clear_errors():
    model = fresh_model()
    with pytest.raises(ValueError, match=r"eps is in \[0,1\] pixel units, e.g. 8/255"):
        HAG(model, eps=8)
    with pytest.raises(ValueError, match=r"eps is in \[0,1\]"):
        HammingPGD(model, eps=-0.1)
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        HAG(model, steps=-1)
    with pytest.raises(ValueError, match="alpha"):
        HammingPGD(model, alpha=0)
    with pytest.raises(ValueError, match="model_mode must be one of"):
        HAG(model, model_mode="training")
    with pytest.raises(ValueError, match=r"unknown attack 'fgsm'; choose one of \[.*'hag'.*'pgd'.*\]"):
        build_attack("fgsm", model)
    attack = HAG(model, steps=2)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        attack(images() * 255)
    with pytest.raises(ValueError, match="float tensor"):
        attack((images() * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="snapshot_steps"):
        attack(images(), snapshot_steps=[3])


def test_registry_builds_attacks_by_name():
    assert {"pgd": HammingPGD, "hag": HAG}.items() <= ATTACKS.items()
    attack = build_attack("hag", fresh_model(), eps=4 / 255, steps=3)
    assert isinstance(attack, HAG) and attack.eps == 4 / 255 and attack.steps == 3


# --- perturbation statistics and the ensemble of perturbations ---------------------------------------
def test_perturbation_stats_by_hand():
    x = torch.zeros(2, 1, 2, 2)
    adversarial = x.clone()
    adversarial[0, 0, 0, 0] = 0.1  # image 0: one pixel +0.1; image 1 unchanged
    stats = perturbation_stats(x, adversarial)
    assert stats["linf_255"] == pytest.approx(25.5)
    assert stats["l2"] == pytest.approx((0.1 + 0.0) / 2)
    assert stats["psnr"] == pytest.approx(10 * math.log10(1 / (0.01 / 4)))  # unchanged image left out
    assert perturbation_stats(x, x) == {"linf_255": 0.0, "l2": 0.0, "psnr": math.inf}


def test_combine_perturbations_sums_then_clips():
    x = torch.tensor([[[[0.5, 0.5, 0.99, 0.02]]]])
    r1 = torch.tensor([[[[3, -3, 3, -3]]]]) / 255
    r2 = torch.tensor([[[[4, 2, 4, -1]]]]) / 255
    combined = combine_perturbations(x, [x + r1, x + r2], eps=5 / 255)
    expected = torch.tensor([[[[0.5 + 5 / 255, 0.5 - 1 / 255, 1.0, 0.02 - 4 / 255]]]])
    assert torch.allclose(combined, expected.clamp(0, 1), atol=1e-6)
