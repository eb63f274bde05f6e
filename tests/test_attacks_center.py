"""CgAT's center-guided attack (Wang et al., WWW 2023): built on a victim, it steers each query away from
its center code computed from the victim's training codes, lowers the mAP of a trained model, and keeps
the paper's training-time defaults."""

import pytest
import torch

from helpers import BITS, fresh_model, images, mean_hamming, one_hot_labels, random_codes, table_victim

from advhash.attacks import CenterGuidedAttack, CodeGuidedAttack, build_attack
from advhash.codes import center_codes
from advhash.metrics import mean_average_precision
from advhash.victim import Victim

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("variant", ["paper", "published"])
def test_center_guided_attack_moves_codes_away_from_the_center_codes(victim, trained, variant):
    _, _, _, queries = trained
    centers = center_codes(queries.labels, victim.train_codes, victim.train_labels, variant=variant)
    assert (centers != 0).all(), "every stripes label has positives and negatives"
    attack = CenterGuidedAttack(victim, eps=32 / 255, alpha=2 / 255, steps=20, variant=variant)
    assert torch.equal(attack.guide(queries.labels, None), centers)
    clean_codes = victim.encode(queries.images)
    adversarial_codes = victim.encode(attack(queries.images, queries.labels))
    clean_distance, adversarial_distance = mean_hamming(clean_codes, centers), mean_hamming(adversarial_codes, centers)
    assert clean_distance < BITS / 4, f"clean codes should lie near their centers ({clean_distance:.1f} bits)"
    assert adversarial_distance > BITS / 2, \
        f"distance to the centers {clean_distance:.1f} -> {adversarial_distance:.1f}"
    clean_map = mean_average_precision(clean_codes, victim.db_codes, queries.labels, victim.db_labels)
    adversarial_map = mean_average_precision(adversarial_codes, victim.db_codes, queries.labels, victim.db_labels)
    assert adversarial_map < 0.5 * clean_map, f"mAP {clean_map:.3f} -> {adversarial_map:.3f}"


def test_the_center_codes_come_from_the_victims_training_codes_not_its_database():
    x, labels = images(), one_hot_labels(6)
    model = fresh_model()
    table = table_victim(model, seed=1)
    other_db = Victim(model, train_codes=table.train_codes, train_labels=table.train_labels,
                      db_codes=-table.db_codes, db_labels=table.db_labels)
    other_train = Victim(model, train_codes=-table.train_codes, train_labels=table.train_labels,
                         db_codes=table.db_codes, db_labels=table.db_labels)
    settings = dict(steps=3, random_start=False)
    expected = CenterGuidedAttack(table, **settings)(x, labels)
    assert torch.equal(CenterGuidedAttack(other_db, **settings)(x, labels), expected)
    assert not torch.equal(CenterGuidedAttack(other_train, **settings)(x, labels), expected)
    centers = center_codes(labels, table.train_codes, table.train_labels)
    assert torch.equal(CenterGuidedAttack(fresh_model(), **settings).run(x, centers), expected)


def test_a_query_without_positives_keeps_its_image_under_the_published_center_code():
    """The published center code of a label no training item carries is all zero: that query is not attacked."""
    x = images()
    labels = torch.cat([one_hot_labels(6), torch.zeros(6, 1)], dim=1)
    labels[0] = torch.tensor([0.0, 0, 0, 0, 1])                      # class 4: no training item carries it
    victim = table_victim(fresh_model())
    victim.train_labels = torch.cat([victim.train_labels, torch.zeros(len(victim.train_labels), 1)], dim=1)
    published = CenterGuidedAttack(victim, steps=3, random_start=False, variant="published")
    adversarial = published(x, labels)
    assert torch.equal(adversarial[0], x[0]) and not torch.equal(adversarial[1:], x[1:])
    paper = CenterGuidedAttack(victim, steps=3, random_start=False)
    assert not torch.equal(paper(x, labels)[0], x[0]), "the paper's center code is never zero"


def test_center_attack_on_a_bare_model_needs_a_victim_for_the_call_but_not_for_run():
    attack = CenterGuidedAttack(fresh_model(), steps=2)
    with pytest.raises(ValueError, match=r"CenterGuidedAttack steers by the victim's codes of the training set: "
                                         r"build the attack on advhash.Victim.build\(model, data\)"):
        attack(images(), one_hot_labels(6))
    assert attack.run(images(), random_codes()).shape == images().shape


def test_registry_and_paper_defaults():
    center = build_attack("center", fresh_model())
    assert isinstance(center, CenterGuidedAttack) and isinstance(center, CodeGuidedAttack)
    assert (center.eps, center.alpha, center.steps, center.random_start) == (8 / 255, 2 / 255, 7, True)
    assert center.toward is False and center.scale_schedule == "fixed" and center.variant == "paper"
    assert center.target_mode == "never" and center.keep_history
    with pytest.raises(ValueError, match="fixed_scale"):
        CenterGuidedAttack(fresh_model(), fixed_scale=0)
    with pytest.raises(ValueError, match=r"variant must be one of \('paper', 'published'\); got 'median'"):
        CenterGuidedAttack(table_victim(fresh_model()), variant="median")   # refused when built, not when called
