"""ATRDH (advhash.defenses.atrdh): the objective (DPH plus the adversarial pairwise term, the prototype
network's step) against a hand-written reference."""

import copy

import pytest
import torch
from helpers import DEFENSE_BITS, DEFENSE_CLASSES, SMALL_PROTOTYPES, all_images, same_weights, sign_codes, stripes

from advhash.defenses import ATRDH
from advhash.losses import build_loss

BITS, CLASSES = DEFENSE_BITS, DEFENSE_CLASSES   # the stripes of conftest's ``base``
pytestmark = pytest.mark.usefixtures("one_thread")


def dph_pairs(codes, other_codes, labels):
    """sum_ij (u_i . v_j / K - (2 S_ij - 1))^2 / (B * B), one pair at a time."""
    codes, other_codes, labels = codes.double().tolist(), other_codes.double().tolist(), labels.tolist()
    total = 0.0
    for u, y in zip(codes, labels):
        for v, y_other in zip(other_codes, labels):
            similar = any(a and b for a, b in zip(y, y_other))
            total += (sum(a * b for a, b in zip(u, v)) / BITS - (1.0 if similar else -1.0)) ** 2
    return total / (len(codes) * len(other_codes))


def test_atrdh_objective_is_dph_plus_the_adversarial_pairwise_term(base, inner_attacks):
    train = stripes(48, seed=2, multi_label=True)
    model = copy.deepcopy(base[0]).train()
    loss = build_loss("dph", num_train=48, bits=BITS, num_classes=CLASSES, pairs="batch")
    defense = ATRDH(num_train=48, bits=BITS, num_classes=CLASSES, steps=3, weight=2.0,
                    prototype_hidden=SMALL_PROTOTYPES)
    defense.prepare(model, train, seed=0)
    indices = torch.randperm(48, generator=torch.Generator().manual_seed(0))[:12]
    images, labels = all_images(train)[indices], train.labels[indices]
    # the prototype network's step, by hand: Adam(lr, betas (0.5, 0.999)) on the least-squares objective
    targets = defense.target_labels(12, step=4)
    assert all(row.sum() > 0 and any(torch.equal(row, y) for y in train.labels) for row in targets)
    prototype_net = copy.deepcopy(defense.prototype_net)
    optimizer = torch.optim.Adam(prototype_net.parameters(), lr=1e-4, betas=(0.5, 0.999))
    prototypes = prototype_net(targets)
    similarity = 2 * (targets @ train.labels.T > 0).float() - 1
    fit = (prototypes @ defense.code_table.T / BITS - similarity).pow(2).mean()
    (fit + 1e-4 * (prototypes - sign_codes(prototypes).detach()).pow(2).mean()).backward()
    optimizer.step()

    value = defense.batch_loss(model, loss, images, labels, indices, step=4)

    assert same_weights(defense.prototype_net, prototype_net)
    (attack, _, guide, adversarial), = inner_attacks
    assert attack.toward, "ATRDH's inner attack is targeted"
    with torch.no_grad():
        assert torch.equal(guide, sign_codes(prototype_net(targets))), "toward the prototypes sign(P(t))"
        relaxed, adversarial_relaxed = model(images), model(adversarial)
    expected = dph_pairs(relaxed, relaxed, labels) + 2.0 * dph_pairs(adversarial_relaxed, relaxed, labels)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert torch.equal(defense.code_table[indices], sign_codes(relaxed))
