"""CgAT (advhash.defenses.cgat): the objective against a hand-written reference (center codes in exact
fractions), and fine-tuning that makes the model more robust to the center-guided attack."""

import copy
from fractions import Fraction

import pytest
import torch
from helpers import DEFENSE_BITS, DEFENSE_CLASSES, all_images, published_tables_step, sign_codes, stripes

from advhash.attacks import CenterGuidedAttack
from advhash.codes import center_codes
from advhash.defenses import CgAT, fit_defended_model
from advhash.losses import build_loss
from advhash.metrics import mean_average_precision
from advhash.train import encode, train_hashing

BITS, CLASSES = DEFENSE_BITS, DEFENSE_CLASSES   # the stripes of conftest's ``base``
pytestmark = pytest.mark.usefixtures("one_thread")


def reference_center_codes(labels, table_codes, table_labels, variant):
    """CgAT Theorem 1, one item and bit at a time in exact fractions: sign(sum_P w+ b - sum_N w- b) with
    w+ = Jaccard / its sum ("paper") or 1/|P| ("published"), w- = 1/|N|; a tie is +1 ("paper") or 0, and
    an item without positives or negatives gets the all-zero code ("published")."""
    centers = []
    for y in labels.int().tolist():
        positives, negatives = [], []
        for code, other in zip(table_codes.int().tolist(), table_labels.int().tolist()):
            shared = sum(a * b for a, b in zip(y, other))
            union = sum(max(a, b) for a, b in zip(y, other))
            if shared:
                positives.append((Fraction(shared, union) if variant == "paper" else Fraction(1), code))
            else:
                negatives.append(code)
        total = sum(weight for weight, _ in positives)
        center = []
        for k in range(BITS):
            direction = sum(weight * code[k] for weight, code in positives) / total if positives else Fraction(0)
            direction -= Fraction(sum(code[k] for code in negatives), len(negatives)) if negatives else 0
            if variant == "paper":
                center.append(1.0 if direction >= 0 else -1.0)
            else:
                center.append(float((direction > 0) - (direction < 0)) if positives and negatives else 0.0)
        centers.append(center)
    return torch.tensor(centers)


# variant="published" (its center codes and the shared tables together): test_published_tables_share_one_storage
@pytest.mark.parametrize("variant", ["paper"])
def test_cgat_objective_is_the_hashing_loss_minus_the_center_alignment_of_adversarial_codes(base, variant,
                                                                                            inner_attacks):
    train = stripes(48, seed=2, multi_label=True)
    model = copy.deepcopy(base[0])
    loss = build_loss("dpsh", num_train=48, bits=BITS, num_classes=CLASSES)
    defense = CgAT(num_train=48, bits=BITS, num_classes=CLASSES, steps=3, weight=0.5, variant=variant)
    defense.prepare(model, train, seed=0)
    with torch.no_grad():
        table = sign_codes(model.eval().hash_logits(all_images(train)))         # prepared table: eval-mode codes
    model.train()
    fresh_loss = copy.deepcopy(loss)
    indices = torch.randperm(48, generator=torch.Generator().manual_seed(0))[:12]
    images, labels = all_images(train)[indices], train.labels[indices]

    value = defense.batch_loss(model, loss, images, labels, indices, step=0)

    (attack, attacked, guide, adversarial), = inner_attacks
    assert isinstance(attack, CenterGuidedAttack) and attack.steps == 3
    assert torch.equal(attacked, images) and not torch.equal(adversarial, images)
    assert torch.equal(guide, reference_center_codes(labels, table, train.labels, variant)), \
        "the attack steers away from the center codes of the table before the batch"
    with torch.no_grad():
        relaxed = model(images)                                                 # train mode, as in the loop
        table[indices] = sign_codes(relaxed)
        centers = reference_center_codes(labels, table, train.labels, variant)  # after the batch's update
        assert len(centers.unique(dim=0)) > 1
        alignment = (model(adversarial) * centers).mean()
        expected = fresh_loss(relaxed, labels, indices) - 0.5 * alignment
    assert torch.equal(defense.code_table, table)
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def published_center_codes(labels, table, table_labels):
    """hash_center_code of CgAT central_adv_train.py L39-49 in Python floats, for tables of relaxed values:
    sign(|N| sum_P b - |P| sum_N b) with sign(0) = 0 (all-zero without positives or negatives)."""
    codes = []
    for y in labels.tolist():
        positive = [any(a and b for a, b in zip(y, other)) for other in table_labels.tolist()]
        n_negative = positive.count(False)
        n_positive = len(positive) - n_negative
        code = []
        for k in range(table.shape[1]):
            column = table[:, k].tolist()
            value = n_negative * sum(b for b, p in zip(column, positive) if p) \
                - n_positive * sum(b for b, p in zip(column, positive) if not p)
            code.append(float((value > 0) - (value < 0)))
        codes.append(code)
    return torch.tensor(codes)


def test_published_tables_share_one_storage_as_the_published_code(base, inner_attacks):
    """variant="published" (CgAT central_adv_train.py L97-130), against the published step written plainly with
    ONE tensor standing for U_ben, B_ben and the DPSH loss's U: preinstalled with the training codes, the batch's
    relaxed outputs written over its signs (L123-124) before the centers of the outer loss (L128), and the DPSH
    loss pairing with every training row (L126; model/hashing_loss.py L77-90)."""
    train = stripes(48, seed=2, multi_label=True)
    model = copy.deepcopy(base[0])
    loss = build_loss("dpsh", num_train=48, bits=BITS, num_classes=CLASSES, pairs="table")
    defense = CgAT(num_train=48, bits=BITS, num_classes=CLASSES, steps=3, variant="published")
    shared, indices, images, labels, value = published_tables_step(defense, loss, model, train)

    (_, _, guide, adversarial), = inner_attacks
    assert torch.equal(guide, published_center_codes(labels, shared, train.labels))               # L116
    ben = model(images)
    shared[indices] = ben.detach()                                                                # L123-124
    centers = published_center_codes(labels, shared, train.labels)                               # L128
    theta = ben @ shared.T * 0.5
    s = (labels @ train.labels.T > 0).float()
    hashing = ((1 + (-theta.abs()).exp()).log() + theta.clamp(min=0) - s * theta).mean() \
        + 0.001 * (ben - ben.sign()).pow(2).mean()
    expected = hashing - (model(adversarial) * centers).mean()
    assert torch.equal(defense.code_table, shared)
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def test_cgat_fine_tuning_makes_the_model_more_robust_to_the_center_guided_attack(base):
    """Against the same attack (eps 16/255, PGD-10 away from each model's own center codes), CgAT's
    fine-tuning keeps the clean mAP and raises the adversarial one well above a clean fine-tuning
    of the same length (on these stripes: ~0.83 vs ~0.52; the base model: 0.56)."""
    model, data = base
    eps = 16 / 255
    queries = all_images(data.query)

    def adversarial_map(victim):
        db_codes = encode(victim, data.database)
        centers = center_codes(data.query.labels, db_codes, data.database.labels)
        attack = CenterGuidedAttack(victim, eps=eps, alpha=eps / 4, steps=10, random_start=False)
        clean = mean_average_precision(encode(victim, queries), db_codes, data.query.labels, data.database.labels)
        attacked = encode(victim, attack.run(queries, centers))
        return clean, mean_average_precision(attacked, db_codes, data.query.labels, data.database.labels)

    defense = CgAT(num_train=len(data.train), bits=BITS, num_classes=CLASSES, eps=eps, alpha=eps / 4, steps=3)
    robust, _ = fit_defended_model(data, model, defense, method="dpsh", epochs=6, batch_size=32, lr=0.05)
    clean_tuned = copy.deepcopy(model)
    train_hashing(clean_tuned, build_loss("dpsh", num_train=len(data.train), bits=BITS, num_classes=CLASSES),
                  data.train, epochs=6, batch_size=32, lr=0.05)
    robust_clean, robust_adversarial = adversarial_map(robust)
    _, tuned_adversarial = adversarial_map(clean_tuned)
    assert robust_clean > 0.95, f"CgAT should keep the clean mAP, got {robust_clean:.3f}"
    assert robust_adversarial > tuned_adversarial + 0.15, \
        f"adversarial mAP: CgAT {robust_adversarial:.3f} vs clean fine-tuning {tuned_adversarial:.3f}"


def test_cgat_refuses_an_unknown_center_code_variant_and_names_its_variant_in_the_config():
    assert CgAT(num_train=4, bits=BITS, num_classes=CLASSES, variant="published").config["variant"] == "published"
    with pytest.raises(ValueError, match=r"variant must be one of \('paper', 'published'\); got 'official'"):
        CgAT(num_train=4, bits=BITS, num_classes=CLASSES, variant="official")
