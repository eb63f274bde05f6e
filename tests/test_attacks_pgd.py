"""Hamming PGD, the plain non-targeted baseline: its loss (the code alignment away from the clean code) against a
per-bit loop, its steps, the code-guided attack guided by the clean code, and the attack lowering the mAP of a
trained model, built on its victim or on the bare model."""

import pytest
import torch

from helpers import clean_and_adversarial_map, fresh_model, images, random_codes

from advhash.attacks import CodeGuidedAttack, HammingPGD, build_attack, code_alignment_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_pgd_loss_matches_a_per_bit_loop():
    g = torch.Generator().manual_seed(0)
    relaxed = torch.rand(4, 6, generator=g, dtype=torch.float64) * 2 - 1
    codes = random_codes(4, seed=1, bits=6).double()
    expected = sum(h * b for row, code in zip(relaxed.tolist(), codes.tolist()) for h, b in zip(row, code)) / 24
    assert code_alignment_loss(relaxed, codes, toward=False).item() == pytest.approx(expected, rel=1e-12)
    assert code_alignment_loss(-codes, codes, toward=False).item() == -1.0   # every bit flipped: the minimum


def test_pgd_takes_sign_steps_from_its_start():
    """One step without random start: x - alpha * sign(grad) of the loss, clipped to the ball and [0, 1]."""
    model, x = fresh_model(), images()
    attack = HammingPGD(model, eps=8 / 255, alpha=2 / 255, steps=1, random_start=False)
    adversarial = attack(x)
    clean_codes = torch.where(model.hash_logits(x) >= 0, 1.0, -1.0).detach()
    start = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(code_alignment_loss(torch.tanh(model.hash_logits(start)), clean_codes, toward=False),
                                start)
    assert torch.equal(adversarial, (x - 2 / 255 * grad.sign()).clamp(0, 1))
    assert attack.history[0]["scale"] == 1.0


@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_is_the_code_guided_attack_away_from_the_clean_code(random_start):
    """The same iterates, history and snapshots as CodeGuidedAttack.run with each image's clean code as guide."""
    model, x = fresh_model(), images()
    settings = dict(eps=8 / 255, alpha=2 / 255, steps=3, random_start=random_start, seed=4)
    pgd = HammingPGD(model, **settings)
    guided = CodeGuidedAttack(model, **settings)
    clean_codes = torch.where(model.hash_logits(x) >= 0, 1.0, -1.0).detach()
    assert isinstance(pgd, CodeGuidedAttack) and not pgd.toward
    assert torch.equal(pgd(x, snapshot_steps=(0, 3)), guided.run(x, clean_codes, snapshot_steps=(0, 3)))
    assert pgd.history == guided.history and all(torch.equal(pgd.snapshots[t], guided.snapshots[t]) for t in (0, 3))


def test_pgd_lowers_the_map_of_a_trained_model(victim, trained):
    _, _, _, queries = trained
    attack = build_attack("pgd", victim, eps=32 / 255, alpha=2 / 255, steps=30)
    clean_map, adversarial_map = clean_and_adversarial_map(victim, attack, queries)
    assert clean_map > 0.9, f"the tiny model should retrieve the stripes (clean mAP {clean_map:.3f})"
    assert adversarial_map < 0.5 * clean_map, f"mAP {clean_map:.3f} -> {adversarial_map:.3f}"
    assert attack.history[-1]["flipped_fraction"] > attack.history[0]["flipped_fraction"]


def test_pgd_on_the_bare_model_is_pgd_on_its_victim(victim, trained):
    _, _, _, queries = trained
    x = queries.images[:8]
    on_victim = HammingPGD(victim, steps=4, seed=2)(x, queries.labels[:8])
    assert torch.equal(HammingPGD(victim.model, steps=4, seed=2)(x), on_victim)


def test_pgd_defaults():
    attack = HammingPGD(fresh_model())
    assert (attack.eps, attack.alpha, attack.steps, attack.random_start, attack.model_mode) == \
        (8 / 255, 2 / 255, 10, True, "eval")
    assert attack.target_mode == "never" and not attack.targeted
