"""advhash.transfer: HAG's transfer table, an attack crafted on each victim and evaluated on every victim, and
ensembles of perturbations clipped back into the budget."""

from types import SimpleNamespace

import pytest
import torch

from helpers import fresh_model

from advhash.attacks import build_attack, combine_perturbations, perturb
from advhash.evaluation import QuerySet, retrieval_map
from advhash.transfer import craft_perturbations, ensemble_label, transfer_table
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
    table, rows = transfer_table(victims, queries, ATTACK, ensembles=[(1, 2)], topk=20)
    assert list(table.index) == list(rows) == ["none", "r1: trained", "r2: fresh", "r1 + r2"]
    assert list(table.columns) == ["trained", "fresh"]
    for source, images in rows.items():
        for target, victim in victims.items():
            assert table.loc[source, target] == retrieval_map(victim, victim.encode(images), queries.labels, topk=20)
    assert table.loc["r1: trained", "trained"] < table.loc["none", "trained"], "HAG lowers its own victim's mAP"
