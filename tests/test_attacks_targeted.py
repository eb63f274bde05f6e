"""P2P and DHTA (Bai et al., ECCV 2020): built on a victim and given their targets once, they move the
query codes toward anchor codes drawn from the victim's database codes and raise the t-MAP of a trained
model; the anchors follow the attack's seed and number of anchors."""

import pytest
import torch

from helpers import fresh_model, images, mean_hamming, one_hot_labels, table_victim

from advhash.attacks import DHTA, P2P, CodeGuidedAttack, build_attack, perturb
from advhash.codes import sample_target_labels
from advhash.metrics import targeted_map
from advhash.victim import Victim

pytestmark = pytest.mark.usefixtures("one_thread")


def draw_targets(queries, victim, min_items, seed=0):
    return sample_target_labels(queries.labels, victim.db_labels, min_items=min_items,
                                generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("attack_class", [P2P, DHTA])
def test_targeted_attacks_move_codes_toward_the_anchor_codes(victim, trained, attack_class):
    _, _, _, queries = trained
    targets = draw_targets(queries, victim, attack_class.num_anchors)
    attack = attack_class(victim, eps=32 / 255, steps=30).set_targets(targets)
    anchors = attack.anchors(targets, victim.db_codes, victim.db_labels)
    assert torch.equal(attack.guide(queries.labels, targets), anchors)
    clean_codes = victim.encode(queries.images)
    adversarial_codes = victim.encode(perturb(attack, queries.images, queries.labels, batch_size=10))
    clean_distance, adversarial_distance = mean_hamming(clean_codes, anchors), mean_hamming(adversarial_codes, anchors)
    assert adversarial_distance < 0.5 * clean_distance, \
        f"distance to the anchors {clean_distance:.1f} -> {adversarial_distance:.1f} bits"
    clean_tmap = targeted_map(clean_codes, victim.db_codes, targets, victim.db_labels)
    adversarial_tmap = targeted_map(adversarial_codes, victim.db_codes, targets, victim.db_labels)
    assert adversarial_tmap > clean_tmap + 0.3, f"t-MAP {clean_tmap:.3f} -> {adversarial_tmap:.3f}"


@pytest.mark.parametrize("attack_class", [P2P, DHTA])
def test_anchors_use_the_attacks_seed_and_its_number_of_anchors(victim, trained, attack_class):
    _, _, _, queries = trained
    targets = draw_targets(queries, victim, 9)
    attack = attack_class(fresh_model(), seed=3)
    anchors = attack.anchors(targets, victim.db_codes, victim.db_labels)
    assert anchors.shape == (len(targets), victim.bits) and set(anchors.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(anchors, attack.anchors(targets, victim.db_codes, victim.db_labels))
    assert torch.equal(anchors, attack_class(fresh_model(), seed=3).anchors(targets, victim.db_codes, victim.db_labels))
    if attack_class is P2P:  # one anchor: the code of one database item with exactly the target label
        for target, anchor in zip(targets.tolist(), anchors.tolist()):
            assert any(code == anchor and label == target
                       for code, label in zip(victim.db_codes.tolist(), victim.db_labels.tolist()))


def test_the_anchors_come_from_the_victims_database_codes_not_its_training_codes():
    x, labels = images(), one_hot_labels(6)
    model = fresh_model()
    table = table_victim(model, seed=2)
    targets = sample_target_labels(labels, table.db_labels, generator=torch.Generator().manual_seed(0))
    other_train = Victim(model, train_codes=-table.train_codes, train_labels=table.train_labels,
                         db_codes=table.db_codes, db_labels=table.db_labels)
    other_db = Victim(model, train_codes=table.train_codes, train_labels=table.train_labels,
                      db_codes=-table.db_codes, db_labels=table.db_labels)
    expected = DHTA(table, steps=3).set_targets(targets)(x, labels)
    assert torch.equal(DHTA(other_train, steps=3).set_targets(targets)(x, labels), expected)
    assert not torch.equal(DHTA(other_db, steps=3).set_targets(targets)(x, labels), expected)
    anchors = DHTA(fresh_model()).anchors(targets, table.db_codes, table.db_labels)
    assert torch.equal(DHTA(fresh_model(), steps=3).run(x, anchors), expected)


def test_a_target_with_too_few_database_items_is_a_clear_error():
    victim = table_victim(fresh_model(), m=20)                      # 5 items a class: enough for P2P, not for DHTA
    targets = one_hot_labels(6)[[1, 0, 3, 2, 1, 0]]
    assert P2P(victim, steps=1).set_targets(targets)(images(), one_hot_labels(6)).shape == images().shape
    with pytest.raises(ValueError, match="fewer than num_anchors=9"):
        DHTA(victim, steps=1).set_targets(targets)(images(), one_hot_labels(6))


def test_targeted_attacks_on_a_bare_model_need_a_victim_for_the_call():
    attack = DHTA(fresh_model(), steps=1).set_targets(one_hot_labels(6))
    with pytest.raises(ValueError, match=r"DHTA steers by the victim's codes of the database: build the attack on "
                                         r"advhash.Victim.build\(model, data\)"):
        attack(images(), one_hot_labels(6))


def test_registry_and_paper_defaults():
    dhta = build_attack("dhta", fresh_model(), eps=4 / 255)
    assert isinstance(dhta, DHTA) and isinstance(dhta, CodeGuidedAttack)
    assert (dhta.eps, dhta.alpha, dhta.steps, dhta.random_start) == (4 / 255, 1 / 255, 100, False)
    assert dhta.toward is True and dhta.scale_schedule == "grow" and dhta.target_mode == "required"
    assert P2P.num_anchors == 1 and DHTA.num_anchors == 9 and issubclass(P2P, DHTA)
    assert isinstance(build_attack("p2p", fresh_model()), P2P)
    assert DHTA(fresh_model(), num_anchors=3).num_anchors == 3 and DHTA.num_anchors == 9
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="num_anchors"):
            DHTA(fresh_model(), num_anchors=bad)
    with pytest.raises(ValueError, match="scale_schedule must be one of"):
        DHTA(fresh_model(), scale_schedule="linear")
