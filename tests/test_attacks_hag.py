"""HAG (Yang et al., TCYB 2018): the loss against a per-query loop, the mask, the growing tanh scale of the
SAAT code, and the attack lowering the mAP of a trained model, built on its victim or on the bare model."""

import pytest
import torch

from helpers import clean_and_adversarial_map, fresh_model, images

from advhash.attacks import HAG, build_attack, hag_loss, hag_published_loss, hag_scale, perturb

pytestmark = pytest.mark.usefixtures("one_thread")

HAG_SETTINGS = {  # label -> kwargs
    "hag": {},
    "hag_fixed": dict(scale_schedule="fixed"),
    "hag_published_code": dict(variant="published"),
}


# --- the loss ----------------------------------------------------------------------------------------------
def paper_loss_loop(adv, clean, threshold=0.5):
    """The HAG formula written per query and per bit with Python numbers (independent of hag_loss)."""
    total = 0.0
    for f_adv, f_clean in zip(adv.tolist(), clean.tolist()):
        mask = [1.0 if abs(a - (1.0 if c >= 0 else -1.0)) < 1 + threshold else 0.0 for a, c in zip(f_adv, f_clean)]
        inner = sum(w * c * w * a for w, a, c in zip(mask, f_adv, f_clean))  # F'(x_q) F'(x_adv)^T
        total += (inner / len(f_adv) + 1) ** 2
    return total / len(adv)


@pytest.mark.parametrize("threshold", [0.5, 0.2])
def test_hag_loss_matches_a_per_query_loop(threshold):
    g = torch.Generator().manual_seed(3)
    adv = torch.rand(5, 12, generator=g, dtype=torch.float64) * 2 - 1
    clean = torch.rand(5, 12, generator=g, dtype=torch.float64) * 2 - 1
    clean[0, 0] = 0.0  # sign(0) = +1
    expected = paper_loss_loop(adv, clean, threshold)
    got = hag_loss(adv, clean, threshold=threshold)
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


def published_loss_loop(adv, clean, threshold=0.5):
    """SAAT hag.py L17-41 written per query and per bit with Python numbers: w = (sign(1 + t - |a - sign(c)|) + 1) / 2
    with sign(0) = 0 (so w is 1/2 at the threshold), the masked codes, / (sum w + 1e-8), and the balance term
    (weight 1) on the masked adversarial code; also the gradient in the adversarial code."""
    def sign(v):
        return (v > 0) - (v < 0)
    total, balance, grad = 0.0, 0.0, []
    n = len(adv)
    for f_adv, f_clean in zip(adv.tolist(), clean.tolist()):
        k = len(f_adv)
        mask = [(sign(1 + threshold - abs(a - sign(c))) + 1) / 2 for a, c in zip(f_adv, f_clean)]
        m = sum(mask) + 1e-8
        inner = sum((w * a) * (w * c) for w, a, c in zip(mask, f_adv, f_clean)) / m
        mean_masked = sum(w * a for w, a in zip(mask, f_adv)) / k
        total += (inner + 1) ** 2
        balance += mean_masked ** 2
        grad.append([(2 * (inner + 1) * w * w * c / m + 2 * mean_masked * w / k) / n
                     for w, c in zip(mask, f_clean)])
    return total / n + balance / n, torch.tensor(grad, dtype=torch.float64)


@pytest.mark.parametrize("threshold", [0.5, 0.2])
def test_hag_published_loss_matches_the_published_formula_per_bit_with_ties(threshold):
    g = torch.Generator().manual_seed(4)
    adv = torch.rand(5, 12, generator=g, dtype=torch.float64) * 2 - 1
    clean = torch.rand(5, 12, generator=g, dtype=torch.float64) * 2 - 1
    clean[0, 0] = 0.0                                           # sign(0) = 0 in the published code
    adv[1, 0], clean[1, 0] = -threshold, 0.7                    # |a - 1| = 1 + t exactly: w = 1/2
    adv[1, 1], clean[1, 1] = -0.9, 0.3                          # flipped past the threshold: w = 0
    adv[2], clean[2] = -clean[2].sign() * 0.95, clean[2]         # every bit gone: the row adds (0 + 1)^2
    adv.requires_grad_(True)
    expected, expected_grad = published_loss_loop(adv.detach(), clean, threshold)
    value = hag_published_loss(adv, clean, threshold=threshold)
    grad, = torch.autograd.grad(value, adv)
    assert value.item() == pytest.approx(expected, rel=1e-12)
    assert torch.allclose(grad, expected_grad, rtol=1e-10, atol=1e-14)
    assert grad[1, 1] == 0 and grad[1, 0] != 0


def test_hag_published_is_the_published_attack_loop():
    """HAG(variant="published") takes the steps of SAAT hag.py L51-77, written plainly here: the
    clean code tanh(z) once at scale 1, SGD (lr 100, momentum 0.9) on the image, get_alpha's schedule, clipping."""
    torch.manual_seed(0)
    model = fresh_model().double()
    x = images(4).double()
    steps, eps = 20, 8 / 255
    attack = HAG(model, eps=eps, steps=steps, variant="published")
    got = attack(x)
    with torch.no_grad():
        clean = torch.tanh(model.hash_logits(x))
    x_hat = x.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([x_hat], lr=100, momentum=0.9)
    schedule = [0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
    for step in range(steps):
        optimizer.zero_grad()
        adv = torch.tanh(schedule[int(step / (steps / 10))] * model.hash_logits(x_hat))
        mask = (torch.sign(1.5 - (adv - clean.sign()).abs()) + 1) / 2
        loss = (((mask * adv) * (mask * clean)).sum(1) / (mask.sum(1) + 1e-8) + 1).pow(2).mean() \
            + (mask * adv).mean(1).pow(2).mean()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            x_hat.copy_(torch.max(torch.min(x_hat, x + eps), x - eps).clamp(0, 1))
    assert torch.allclose(got, x_hat.detach(), atol=1e-12)
    assert (got != x).any()


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


def test_the_published_variant_depends_on_the_batch_size_and_the_paper_variant_does_not():
    """The published variant's SGD steps on a batch mean (as in the SAAT code), so its result depends on the
    batching; the paper's sign steps do not."""
    x = images(10)
    sign = dict(steps=4)
    assert torch.equal(perturb(HAG(fresh_model(), **sign), x, batch_size=3), HAG(fresh_model(), **sign)(x))
    sgd = dict(steps=4, **HAG_SETTINGS["hag_published_code"])
    assert not torch.equal(perturb(HAG(fresh_model(), **sgd), x, batch_size=3), HAG(fresh_model(), **sgd)(x))


def test_hag_defaults_and_bad_settings():
    attack = HAG(fresh_model())
    assert (attack.eps, attack.alpha, attack.steps, attack.random_start) == (8 / 255, 1 / 255, 100, False)
    assert (attack.threshold, attack.scale_schedule, attack.variant, attack.lr, attack.momentum) == \
        (0.5, "grow", "paper", 100.0, 0.9)
    assert attack.target_mode == "never"
    model = fresh_model()
    with pytest.raises(ValueError, match="scale_schedule must be one of"):
        HAG(model, scale_schedule="linear")
    with pytest.raises(ValueError, match=r"variant must be one of \('paper', 'published'\); got 'saat'"):
        HAG(model, variant="saat")
    with pytest.raises(TypeError, match="unexpected keyword argument 'optimizer'"):
        HAG(model, optimizer="sgd")       # no separate axes: the variant selects the loss and the optimizer at once
    with pytest.raises(ValueError, match="the published HAG grows the tanh scale"):
        HAG(model, variant="published", scale_schedule="fixed")
    with pytest.raises(ValueError, match="fixed_scale"):
        HAG(model, fixed_scale=0)
    for bad in (dict(threshold=-0.1), dict(lr=0.0), dict(momentum=1.0)):
        with pytest.raises(ValueError, match="need threshold >= 0"):
            HAG(model, **bad)
