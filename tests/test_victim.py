"""The victim of an attack (advhash.victim): ``Victim.build`` encodes the training set and the database once
with the model's own codes, every attack built on it reads them from there, a bare model is a victim
without codes (clear errors where codes are needed), and codes without matching labels are refused."""

from types import SimpleNamespace

import pytest
import torch

import advhash.victim as victim_module
from helpers import BITS, all_images, fresh_model, images, one_hot_labels, random_codes, stripes, stripes_data

from advhash.attacks import ATTACKS, HAG, CenterGuidedAttack, build_attack, perturb
from advhash.codes import sample_target_labels
from advhash.train import encode
from advhash.victim import Victim, as_victim

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return stripes_data(stripes(80, seed=3), stripes(12, seed=4))


def test_build_encodes_the_training_set_and_the_database_with_the_models_codes(data):
    model = fresh_model()
    model.train()
    victim = Victim.build(model, data)
    assert victim.model is model and not model.training, "the victim's model is in eval mode"
    assert torch.equal(victim.train_codes, encode(model, data.train))
    assert torch.equal(victim.db_codes, encode(model, data.database))
    assert torch.equal(victim.train_labels, data.train.labels.float()) and victim.train_labels.dtype == torch.float32
    assert torch.equal(victim.db_labels, data.database.labels.float())
    assert victim.train_codes.device.type == "cpu" and set(victim.train_codes.unique().tolist()) <= {-1.0, 1.0}
    assert victim.bits == BITS and victim.device == torch.device("cpu")
    x = images(5)
    assert torch.equal(victim.encode(x), encode(model, x))
    only_db = Victim.build(model, data, train=False)
    assert only_db.train_codes is None and only_db.train_labels is None and only_db.db_codes is not None
    only_train = Victim.build(model, data, database=False)
    assert only_train.db_codes is None and only_train.train_codes is not None


def test_the_codes_are_encoded_once_and_every_attack_reads_them_from_the_victim(data, monkeypatch):
    calls = []

    def counting(model, split_or_images, **kwargs):
        calls.append(split_or_images)
        return encode(model, split_or_images, **kwargs)

    monkeypatch.setattr(victim_module, "encode", counting)
    victim = Victim.build(fresh_model(), data)
    assert calls == [data.train, data.database]
    x, labels = all_images(data.query), data.query.labels
    targets = sample_target_labels(labels, victim.db_labels, generator=torch.Generator().manual_seed(0))
    for name in sorted(ATTACKS):
        attack = build_attack(name, victim, steps=1)
        if attack.target_mode == "required":
            attack.set_targets(targets)
        perturb(attack, x, labels, batch_size=5)
    assert len(calls) == 2, "no attack re-encodes the training set or the database"


def test_attacks_keep_the_victim_and_wrap_a_bare_model():
    model = fresh_model()
    victim = Victim(model, train_codes=random_codes(8), train_labels=one_hot_labels(8))
    attack = CenterGuidedAttack(victim)
    assert attack.victim is victim and attack.model is model
    bare = HAG(model)
    assert bare.model is model and isinstance(bare.victim, Victim) and bare.victim.model is model
    assert bare.victim.train_codes is None and bare.victim.db_codes is None
    assert as_victim(victim) is victim and as_victim(model).model is model
    with pytest.raises(TypeError, match="attacks take a hashing model or an advhash.Victim; got Tensor"):
        as_victim(torch.zeros(3))


@pytest.mark.parametrize("name, split", [("center", "training set"), ("saat", "training set"),
                                         ("sdha", "training set"), ("p2p", "database"), ("dhta", "database")])
def test_a_guided_attack_built_on_a_bare_model_is_a_clear_error(name, split):
    attack = build_attack(name, fresh_model(), steps=1)
    if attack.target_mode == "required":
        attack.set_targets(one_hot_labels(6))
    message = rf"steers by the victim's codes of the {split}: build the attack on advhash.Victim.build\(model, data\)"
    with pytest.raises(ValueError, match=message):
        attack(images(), one_hot_labels(6))
    with pytest.raises(ValueError, match=message):
        perturb(attack, images(), one_hot_labels(6))


def test_a_victim_without_the_split_an_attack_needs_is_a_clear_error(data):
    model = fresh_model()
    no_db = Victim.build(model, data, database=False)
    dhta = build_attack("dhta", no_db, steps=1).set_targets(one_hot_labels(6))
    with pytest.raises(ValueError, match="DHTA steers by the victim's codes of the database"):
        dhta(images(), one_hot_labels(6))
    no_train = Victim.build(model, data, train=False)
    with pytest.raises(ValueError, match="CenterGuidedAttack steers by the victim's codes of the training set"):
        CenterGuidedAttack(no_train, steps=1)(images(), one_hot_labels(6))
    assert no_train.require("db", "me")[0] is no_train.db_codes
    with pytest.raises(ValueError, match="^me steers by the victim's codes of the training set"):
        no_train.require("train", "me")


def test_codes_without_matching_labels_are_refused():
    model, codes, labels = fresh_model(), random_codes(8), one_hot_labels(8)
    with pytest.raises(ValueError, match="give both train_codes and train_labels, or neither"):
        Victim(model, train_codes=codes)
    with pytest.raises(ValueError, match="give both db_codes and db_labels, or neither"):
        Victim(model, db_labels=labels)
    with pytest.raises(ValueError, match=r"train_codes \(n, K\) and train_labels \(n, L\) need one row per item; "
                                         r"got \(8, 16\) and \(7, 4\)"):
        Victim(model, train_codes=codes, train_labels=labels[:7])
    with pytest.raises(ValueError, match="db_codes .* need one row per item"):
        Victim(model, db_codes=codes[0], db_labels=labels[0])
    with pytest.raises(ValueError, match="db_codes .* need one row per item"):
        Victim(model, db_codes=codes, db_labels=labels[:, :, None])
    Victim(model, train_codes=codes, train_labels=labels, db_codes=codes[:3], db_labels=labels[:3])


def test_build_accepts_any_object_with_train_and_database_splits():
    model = fresh_model()
    split = stripes(10, seed=5)
    victim = Victim.build(model, SimpleNamespace(train=split, database=split))
    assert torch.equal(victim.train_codes, victim.db_codes) and len(victim.db_codes) == 10
