"""The shared loop of the code-guided attacks (advhash.attacks.guided): the alignment loss against a
per-bit loop, away from / toward explicit guide codes (``attack.run``, the adversarial trainers' path),
zero bits, the scale schedules, the history switch and clear errors for guide codes of the wrong shape."""

import pytest
import torch

from helpers import BITS, fresh_model, images, mean_hamming, one_hot_labels, random_codes, table_victim

from advhash.attacks import (DHTA, P2P, SAAT, CenterGuidedAttack, CodeGuidedAttack, build_attack,
                             code_alignment_loss, hag_scale)

pytestmark = pytest.mark.usefixtures("one_thread")

GUIDED = {"center": CenterGuidedAttack, "p2p": P2P, "dhta": DHTA, "saat": SAAT}
SETTINGS = dict(eps=8 / 255, alpha=2 / 255, steps=4, random_start=False)


class _Toward(CodeGuidedAttack):
    toward = True


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


def test_code_alignment_per_query_is_the_mean_over_bits_of_each_row():
    """The per-query form (the robustness checks' random search and gradient check): one value per query."""
    g = torch.Generator().manual_seed(1)
    relaxed = torch.rand(4, 6, generator=g, dtype=torch.float64) * 2 - 1
    guide = random_codes(4, seed=2, bits=6).double()
    expected = [sum(h * c for h, c in zip(row, code)) / 6 for row, code in zip(relaxed.tolist(), guide.tolist())]
    per_query = code_alignment_loss(relaxed, guide, toward=False, per_query=True)
    assert per_query.shape == (4,) and per_query.tolist() == pytest.approx(expected, rel=1e-12)
    assert torch.equal(code_alignment_loss(relaxed, guide, toward=True, per_query=True), -per_query)
    assert code_alignment_loss(-guide, guide, toward=False, per_query=True).tolist() == [-1.0] * 4


def test_run_moves_the_codes_away_from_or_toward_the_guide_codes(trained):
    """With explicit guide codes (the trainers' call): away from the query's own codes, toward their opposite."""
    model, _, _, queries = trained
    x = queries.images
    clean = torch.where(model.hash_logits(x) >= 0, 1.0, -1.0).detach()
    settings = dict(eps=32 / 255, alpha=2 / 255, steps=20, random_start=False)
    away = CodeGuidedAttack(model, **settings).run(x, clean)
    assert mean_hamming(torch.where(model.hash_logits(away) >= 0, 1.0, -1.0), clean) > BITS / 2
    toward = _Toward(model, **settings).run(x, -clean)
    assert mean_hamming(torch.where(model.hash_logits(toward) >= 0, 1.0, -1.0), -clean) < BITS / 2


def test_all_zero_guide_codes_leave_the_images_unchanged():
    """The published center code of an item without positives or negatives is all zero: no attack."""
    x = images()
    attack = CenterGuidedAttack(fresh_model(), eps=8 / 255, steps=5, random_start=False)
    assert torch.equal(attack.run(x, torch.zeros(len(x), BITS)), x)


def test_the_scale_schedules_and_the_history_switch():
    x, codes = images(), random_codes()
    grow = CodeGuidedAttack(fresh_model(), **{**SETTINGS, "steps": 10}, scale_schedule="grow")
    grow.run(x, codes)
    assert [row["scale"] for row in grow.history] == [hag_scale(step, 10) for step in range(10)]
    fixed = CodeGuidedAttack(fresh_model(), **SETTINGS, fixed_scale=0.5)
    assert [fixed.scale(step) for step in range(4)] == [0.5] * 4
    quiet = CodeGuidedAttack(fresh_model(), **SETTINGS, keep_history=False)
    assert torch.equal(quiet.run(x, codes), CodeGuidedAttack(fresh_model(), **SETTINGS).run(x, codes))
    assert quiet.history == []


def test_the_base_loop_has_no_guide_of_its_own():
    attack = CodeGuidedAttack(table_victim(fresh_model()), **SETTINGS)
    with pytest.raises(NotImplementedError):
        attack(images(), one_hot_labels(6))
    with pytest.raises(ValueError, match=r"steers by a guide code per image: call attack\(images, labels\)"):
        attack.run(images())
    with pytest.raises(ValueError, match="scale_schedule must be one of"):
        CodeGuidedAttack(fresh_model(), **SETTINGS, scale_schedule="linear")
    with pytest.raises(ValueError, match="fixed_scale"):
        CodeGuidedAttack(fresh_model(), **SETTINGS, fixed_scale=-1.0)


@pytest.mark.parametrize("name", sorted(GUIDED))
def test_guide_codes_of_the_wrong_shape_are_clear_errors(name):
    attack = build_attack(name, fresh_model(), steps=2)
    x = images(6)
    for bad in (random_codes(6)[:, :8], torch.ones(6, BITS, 1)):
        with pytest.raises(ValueError,
                           match=rf"guide codes must have one row of {BITS} bits per image, shape \(6, {BITS}\)"):
            attack.run(x, bad)
    with pytest.raises(ValueError, match="the guide needs one row per image: 5 rows for 6 images"):
        attack.run(x, random_codes(5))
    with pytest.raises(ValueError, match=f"the guide needs one row per image: {BITS} rows for 6 images"):
        attack.run(x, random_codes(6)[0])                     # one code, not one row per image


@pytest.mark.parametrize("name", sorted(GUIDED))
def test_a_victim_with_codes_of_another_length_is_a_clear_error(name):
    """The guide codes come from the victim's codes: codes of another model (8 bits) do not fit a 16-bit model."""
    model = fresh_model()
    victim = table_victim(fresh_model(bits=8))
    victim.model = model
    attack = build_attack(name, victim, steps=1)
    if attack.target_mode == "required":
        attack.set_targets(one_hot_labels(6)[[1, 0, 3, 2, 1, 0]])
    with pytest.raises(ValueError, match=rf"guide codes must have one row of {BITS} bits per image"):
        attack(images(), one_hot_labels(6))
