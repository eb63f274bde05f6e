"""HAG (Yang et al., TCYB 2018): the loss against a per-query loop, the mask, the growing tanh scale of the
SAAT code, and the attack lowering the mAP of a trained model, built on its victim or on the bare model."""

import pytest
import torch

from helpers import clean_and_adversarial_map, fresh_model, images

from advhash.attacks import HAG, build_attack, hag_loss, hag_scale, perturb

pytestmark = pytest.mark.usefixtures("one_thread")

HAG_SETTINGS = {  # label -> kwargs
    "hag": {},
    "hag_fixed": dict(scale_schedule="fixed"),
    "hag_published_code": dict(optimizer="sgd", normalize="mask", balance_weight=1.0),
}


# --- the loss ----------------------------------------------------------------------------------------------
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
    with pytest.raises(ValueError, match="normalize must be one of"):
        hag_loss(adv, clean, normalize="items")


# --- the scale schedule --------------------------------------------------------------------------------
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


# --- the published property: a lower mAP ---------------------------------------------------------------
@pytest.mark.parametrize("setting", sorted(HAG_SETTINGS))
def test_hag_lowers_the_map_of_a_trained_model(victim, trained, setting):
    _, _, _, queries = trained
    attack = build_attack("hag", victim, eps=32 / 255, alpha=2 / 255, steps=30, **HAG_SETTINGS[setting])
    clean_map, adversarial_map = clean_and_adversarial_map(victim, attack, queries)
    assert clean_map > 0.9, f"the tiny model should retrieve the stripes (clean mAP {clean_map:.3f})"
    assert adversarial_map < 0.5 * clean_map, f"{setting}: mAP {clean_map:.3f} -> {adversarial_map:.3f}"
    assert attack.history[-1]["flipped_fraction"] > attack.history[0]["flipped_fraction"]


def test_hag_on_the_bare_model_is_hag_on_its_victim(victim, trained):
    _, _, _, queries = trained
    x = queries.images[:8]
    on_victim = HAG(victim, steps=5)(x, queries.labels[:8])
    assert torch.equal(HAG(victim.model, steps=5)(x), on_victim)


def test_published_code_options_depend_on_the_batch_size_and_the_paper_options_do_not():
    """The SGD option steps on a batch mean (as in the SAAT code), so its result depends on the batching;
    the default sign steps do not."""
    x = images(10)
    sign = dict(steps=4)
    assert torch.equal(perturb(HAG(fresh_model(), **sign), x, batch_size=3), HAG(fresh_model(), **sign)(x))
    sgd = dict(steps=4, **HAG_SETTINGS["hag_published_code"])
    assert not torch.equal(perturb(HAG(fresh_model(), **sgd), x, batch_size=3), HAG(fresh_model(), **sgd)(x))


def test_hag_defaults_and_bad_settings():
    attack = HAG(fresh_model())
    assert (attack.eps, attack.alpha, attack.steps, attack.random_start) == (8 / 255, 1 / 255, 100, False)
    assert (attack.threshold, attack.scale_schedule, attack.normalize, attack.optimizer) == \
        (0.5, "grow", "bits", "sign")
    assert attack.balance_weight == 0.0 and attack.target_mode == "never"
    model = fresh_model()
    with pytest.raises(ValueError, match="scale_schedule must be one of"):
        HAG(model, scale_schedule="linear")
    with pytest.raises(ValueError, match="normalize must be one of"):
        HAG(model, normalize="items")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        HAG(model, optimizer="adam")
    with pytest.raises(ValueError, match="fixed_scale"):
        HAG(model, fixed_scale=0)
    for bad in (dict(threshold=-0.1), dict(balance_weight=-1.0), dict(lr=0.0), dict(momentum=1.0)):
        with pytest.raises(ValueError, match="need threshold >= 0"):
            HAG(model, **bad)
