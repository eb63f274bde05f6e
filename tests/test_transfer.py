"""advhash.transfer: HAG's transfer table, an attack crafted on each victim and evaluated on every victim, and
ensembles of perturbations clipped back into the budget; each query's AP behind the table, and the kinds of
perturbation the transfer claims compare."""

from types import SimpleNamespace

import pytest
import torch

from helpers import fresh_model

from advhash.attacks import build_attack, combine_perturbations, perturb
from advhash.evaluation import QuerySet, retrieval_ap, retrieval_map
from advhash.transfer import (PERTURBATIONS, craft_perturbations, ensemble_label, transfer_comparisons,
                              transfer_scores, transfer_table)
from advhash.victim import Victim

pytestmark = pytest.mark.usefixtures("one_thread")

ATTACK = dict(attack="hag", eps=16 / 255, alpha=4 / 255, steps=3)


@pytest.fixture(scope="module")
def setup(trained, victim):
    _, _, database, queries = trained
    other = Victim.build(fresh_model(seed=3), SimpleNamespace(train=database, database=database))
    attacked = QuerySet(queries.images[:12], queries.labels[:12])
    return {"trained": victim, "fresh": other}, attacked


def test_ensemble_label_names_a_run_of_more_than_two_victims_by_its_ends():
    assert ensemble_label([1, 2]) == "r1 + r2" and ensemble_label((1, 3)) == "r1 + r3"
    assert ensemble_label(range(1, 6)) == "r1 + ... + r5" and ensemble_label([2, 3, 4]) == "r2 + ... + r4"
    assert ensemble_label([1, 3, 5]) == "r1 + r3 + r5"


def test_craft_perturbations_crafts_on_each_victim_and_combines_the_ensembles_in_the_budget(setup):
    victims, queries = setup
    rows = craft_perturbations(victims, queries.images, ATTACK, ensembles=[(1, 2), (1, 3), range(1, 3)],
                               batch_size=5)
    assert list(rows) == ["none", "r1: trained", "r2: fresh", "r1 + r2"]      # (1, 3) names a third victim: left out
    assert rows["none"] is queries.images
    settings = {key: value for key, value in ATTACK.items() if key != "attack"}
    crafted = [perturb(build_attack("hag", victim, **settings), queries.images) for victim in victims.values()]
    assert torch.equal(rows["r1: trained"], crafted[0]) and torch.equal(rows["r2: fresh"], crafted[1])
    assert torch.equal(rows["r1 + r2"], combine_perturbations(queries.images, crafted, eps=ATTACK["eps"]))
    assert all((images - queries.images).abs().max() <= ATTACK["eps"] + 1e-6 for images in rows.values())
    with pytest.raises(ValueError, match="victim numbers from 1"):
        craft_perturbations(victims, queries.images, ATTACK, ensembles=[(0, 1)])


def test_transfer_table_scores_every_row_on_every_victim(setup):
    victims, queries = setup
    table, rows, scores = transfer_table(victims, queries, ATTACK, ensembles=[(1, 2)], topk=20)
    assert list(table.index) == list(rows) == list(scores) == ["none", "r1: trained", "r2: fresh", "r1 + r2"]
    assert list(table.columns) == ["trained", "fresh"]
    for source, images in rows.items():
        for target, victim in victims.items():
            assert table.loc[source, target] == retrieval_map(victim, victim.encode(images), queries.labels, topk=20)
    assert table.loc["r1: trained", "trained"] < table.loc["none", "trained"], "HAG lowers its own victim's mAP"


def test_transfer_scores_are_each_querys_ap_and_their_mean_is_the_tables_map(setup):
    victims, queries = setup
    table, rows, scores = transfer_table(victims, queries, ATTACK, ensembles=[(1, 2)], topk=20)
    assert transfer_scores(victims, queries, rows, topk=20).keys() == scores.keys()
    for source, images in rows.items():
        assert list(scores[source]) == list(victims)
        for target, victim in victims.items():
            each = scores[source][target]
            assert each.shape == (len(queries),) and each.dtype == torch.float64
            assert torch.equal(each, retrieval_ap(victim, victim.encode(images), queries.labels, topk=20))
            assert each.mean().item() == pytest.approx(table.loc[source, target], abs=1e-12)


def synthetic_scores(identities, ensemble_rows):
    """Per-query scores in which the score of a row on a victim names both: 10 * (row number) + victim number,
    the same for each of three queries, so every mean can be read off by hand."""
    names = list(identities)
    rows = {f"r{i}: {name}": i for i, name in enumerate(names, 1)} | ensemble_rows
    return {row: {name: torch.full((3,), 10.0 * number + j, dtype=torch.float64)
                  for j, name in enumerate(names, 1)} for row, number in rows.items()}


def test_transfer_comparisons_read_each_kind_of_perturbation_per_victim_and_query():
    identities = {"DPH-VGG16": ("dph", "vgg16", 0), "DPH-VGG16*": ("dph", "vgg16", 1),
                  "DPH-VGG19": ("dph", "vgg19", 0), "HashNet-ResNet50": ("hashnet", "resnet50", 0)}
    scores = synthetic_scores(identities, {"r1 + ... + r3": 9})
    kinds = transfer_comparisons(scores, identities, ensemble=range(1, 4))
    assert {kind for _, kind in kinds} == set(PERTURBATIONS)

    def value(victim, kind):
        return kinds[victim, kind].tolist()

    assert value("DPH-VGG16", "own") == [11.0] * 3 and value("DPH-VGG16*", "own") == [22.0] * 3
    assert value("DPH-VGG16", "transferred") == [(21 + 31 + 41) / 3] * 3, "the mean over the other victims' rows"
    assert value("DPH-VGG16", "second seed") == [21.0] * 3 and value("DPH-VGG16", "other backbone") == [31.0] * 3
    assert value("DPH-VGG16*", "second seed") == [12.0] * 3 and value("DPH-VGG16*", "other backbone") == [32.0] * 3
    assert ("DPH-VGG19", "second seed") not in kinds and ("HashNet-ResNet50", "other backbone") not in kinds, \
        "without a twin (same method and backbone, another seed) a victim has neither label"
    assert value("HashNet-ResNet50", "ensemble") == [94.0] * 3
    assert value("HashNet-ResNet50", "single") == [(14 + 24 + 34) / 3] * 3, "the ensemble's members alone"
    with pytest.raises(KeyError, match="no ensemble 'r1 \\+ r2'"):
        transfer_comparisons(scores, identities, ensemble=(1, 2))
    with pytest.raises(ValueError, match="victim numbers from 1 to 4"):
        transfer_comparisons(scores, identities, ensemble=(1, 5))
    with pytest.raises(KeyError, match="in the order of the victims"):
        transfer_comparisons(scores, dict(reversed(identities.items())), ensemble=range(1, 4))


def test_transfer_comparisons_on_a_real_table_are_its_per_query_scores(setup):
    victims, queries = setup
    table, _, scores = transfer_table(victims, queries, ATTACK, ensembles=[(1, 2)], topk=20)
    kinds = transfer_comparisons(scores, {"trained": ("dpsh", "small_cnn", 0), "fresh": ("dpsh", "small_cnn", 3)},
                                 ensemble=(1, 2))
    assert kinds["trained", "own"].mean().item() == pytest.approx(table.loc["r1: trained", "trained"], abs=1e-12)
    assert kinds["trained", "transferred"].mean().item() == pytest.approx(table.loc["r2: fresh", "trained"],
                                                                          abs=1e-12)
    assert ("trained", "second seed") not in kinds, "a twin but no other backbone: no second-seed comparison"
    assert kinds["fresh", "ensemble"].mean().item() == pytest.approx(table.loc["r1 + r2", "fresh"], abs=1e-12)
