"""The shared machinery of adversarial training (advhash.defenses.base), checked on every defense: the
training code table, bit-identical resume, loading and refusing checkpoints, determinism, the eps-ball of
the inner attacks, and clear errors."""

import copy

import pytest
import torch
from helpers import (DEFENSE_BITS, DEFENSE_CLASSES, all_images, fresh_model, same_weights, sign_codes, stripes,
                     stripes_data)
from helpers import small_defense as build

from advhash.checkpoint import load_checkpoint
from advhash.defenses import DEFENSES, CgAT, fit_defended_model, model_digest
from advhash.losses import build_loss
from advhash.train import train_hashing

BITS, CLASSES = DEFENSE_BITS, DEFENSE_CLASSES   # the stripes of conftest's ``base``
ADVERSARIAL = sorted(name for name, cls in DEFENSES.items() if getattr(cls, "adversarial", True))  # not "finetune"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_prepare_fills_the_tables_with_eval_mode_codes_and_a_batch_refreshes_its_rows(base, name):
    train = stripes(40, seed=3, multi_label=True)
    model = copy.deepcopy(base[0])
    with torch.no_grad():
        eval_codes = sign_codes(model.eval().hash_logits(all_images(train)))
        train_mode_codes = sign_codes(copy.deepcopy(model).train().hash_logits(all_images(train)))
    assert not torch.equal(eval_codes, train_mode_codes), "the check tells the two modes apart"
    model.train()
    defense = build(name, 40, steps=1)
    defense.prepare(model, train, seed=0)
    assert model.training, "prepare restores the model's mode"
    assert torch.equal(defense.code_table, eval_codes)
    assert torch.equal(defense.label_table, train.labels)

    indices = torch.tensor([7, 0, 31, 12])
    images = all_images(train)[indices]
    defense.batch_loss(model, build_loss("dph", num_train=40, bits=BITS, num_classes=CLASSES),
                       images, train.labels[indices], indices, step=0)
    with torch.no_grad():
        expected = eval_codes.clone()
        expected[indices] = sign_codes(model(images))
    assert torch.equal(defense.code_table, expected)


# --- checkpoints: resume, load, refuse ---------------------------------------------------------------------
@pytest.mark.parametrize("name, method", [("cgat", "dpsh"), ("atrdh", "dph")])
def test_interrupted_adversarial_run_resumes_to_identical_weights(tmp_path, base, name, method):
    model, data = base

    def run(epochs, checkpoint_dir=None):
        defense = build(name, len(data.train), steps=2)
        robust, history = fit_defended_model(data, model, defense, method=method, epochs=epochs,
                                             checkpoint_dir=checkpoint_dir, batch_size=32, lr=0.05, seed=3)
        return robust, history, defense

    uninterrupted, history, defense = run(2)
    run(1, tmp_path)                                                              # "interrupted" after epoch 1
    (path,) = tmp_path.iterdir()
    assert load_checkpoint(path)["epoch"] == 1
    resumed, resumed_history, resumed_defense = run(2, tmp_path)
    assert same_weights(uninterrupted, resumed)
    assert [r["loss"] for r in resumed_history] == [r["loss"] for r in history]
    assert torch.equal(resumed_defense.code_table, defense.code_table)
    if name == "atrdh":
        assert same_weights(resumed_defense.prototype_net, defense.prototype_net)


def test_finished_adversarial_checkpoint_is_loaded_not_retrained(tmp_path, base):
    model, data = base
    settings = dict(method="dpsh", epochs=1, checkpoint_dir=tmp_path, batch_size=32)
    trained, _ = fit_defended_model(data, model, build("cgat", len(data.train), steps=2), **settings)
    (path,) = tmp_path.iterdir()
    stamp = path.stat().st_mtime_ns
    again, history = fit_defended_model(data, model, build("cgat", len(data.train), steps=2), **settings)
    assert path.stat().st_mtime_ns == stamp
    assert len(history) == 1 and same_weights(trained, again)
    assert not again.training


def test_other_defense_settings_get_their_own_checkpoint_file(tmp_path, base):
    model, data = base
    settings = dict(method="dpsh", epochs=1, checkpoint_dir=tmp_path, batch_size=32)
    fit_defended_model(data, model, build("cgat", len(data.train), steps=1, eps=8 / 255), **settings)
    (first,) = tmp_path.iterdir()
    before = first.read_bytes()
    fit_defended_model(data, model, build("cgat", len(data.train), steps=1, eps=4 / 255), **settings)
    assert first.read_bytes() == before
    assert len(list(tmp_path.iterdir())) == 2
    assert all(path.name.startswith("cgat_dpsh_8bits_small_cnn_") for path in tmp_path.iterdir())


def test_checkpoint_of_another_defense_run_is_refused_not_overwritten(tmp_path, base):
    model, data = base
    path = tmp_path / "robust.pt"

    def run(defense, epochs=2):
        loss = build_loss("dpsh", num_train=len(data.train), bits=BITS, num_classes=CLASSES)
        train_hashing(copy.deepcopy(model), loss, data.train, epochs=epochs, batch_size=64, checkpoint_path=path,
                      defense=defense)

    run(build("cgat", len(data.train), steps=1, eps=8 / 255), epochs=1)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"different run \(defense: .*'eps': 0.0313.* vs now .*'eps': 0.0156"):
        run(build("cgat", len(data.train), steps=1, eps=4 / 255))
    with pytest.raises(ValueError, match=r"different run \(defense: .*'name': 'cgat'.* vs now .*'name': 'atrdh'"):
        run(build("atrdh", len(data.train), steps=1, eps=8 / 255))
    with pytest.raises(ValueError, match=r"different run \(defense: .*'name': 'cgat'.* vs now None"):
        run(None)                                                                 # a clean run on a defended one
    assert path.read_bytes() == before


def test_defended_checkpoint_name_hashes_the_base_model_and_a_longer_run_starts_from_a_shorter_one(tmp_path):
    """A kept (DVC persist) checkpoint folder is matched by file name: the same run finds its file again, another
    base model trains anew, and 2 epochs after a finished 1-epoch run continue it (the defense's code table
    included) to the weights of 2 epochs at once."""
    import re

    data = stripes_data(stripes(64), stripes(16, seed=1))

    def run(epochs, folder, base_seed=0):
        defense = CgAT(num_train=64, bits=8, num_classes=4, steps=2)
        return fit_defended_model(data, fresh_model(seed=base_seed, bits=8), defense, method="dpsh", epochs=epochs,
                                  checkpoint_dir=folder, batch_size=32)[0]
    run(1, tmp_path)
    (name,) = [path.name for path in tmp_path.iterdir()]
    assert re.fullmatch(r"cgat_dpsh_8bits_small_cnn_e1_[0-9a-f]{8}\.pt", name)
    run(1, tmp_path)
    run(1, tmp_path, base_seed=1)
    assert len(list(tmp_path.iterdir())) == 2
    assert same_weights(run(2, tmp_path), run(2, None))
    assert len(list(tmp_path.iterdir())) == 3


# --- determinism and the inner attacks ---------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_same_seed_same_weights_other_seed_other_weights(base, name):
    model, data = base
    digest = model_digest(model)

    def run(seed):
        return fit_defended_model(data, model, build(name, len(data.train), steps=2), method="dpsh", epochs=1,
                                  batch_size=32, seed=seed)[0]

    first = run(0)
    assert same_weights(first, run(0))
    assert not same_weights(first, run(1))
    assert model_digest(model) == digest, "the base model is copied, not trained"


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_inner_attacks_stay_in_the_eps_ball_with_the_defense_settings(base, name, inner_attacks):
    model, data = base
    eps = 4 / 255
    defense = build(name, len(data.train), eps=eps, alpha=1 / 255, steps=3)
    fit_defended_model(data, model, defense, method="dpsh", epochs=1, batch_size=32)
    assert len(inner_attacks) == len(data.train) // 32                           # one attack per batch
    for attack, images, _, adversarial in inner_attacks:
        assert (attack.eps, attack.alpha, attack.steps, attack.random_start) == (eps, 1 / 255, 3, True)
        assert attack.model_mode == "train"
        assert (adversarial - images).abs().max() <= eps + 1e-6
        assert adversarial.min() >= 0 and adversarial.max() <= 1
        assert not torch.equal(adversarial, images)
    starts = [attack.seed for attack, *_ in inner_attacks]
    assert len(set(starts)) == len(starts), "every batch draws its own random start"


# --- errors ---------------------------------------------------------------------------------------------
def test_a_defense_built_for_another_split_size_is_refused(base):
    model, data = base
    with pytest.raises(ValueError, match=r"num_train=100 but the training split has 128 items.*num_train=len"):
        fit_defended_model(data, model, build("cgat", 100), method="dpsh", epochs=1)


def test_a_defense_built_for_other_bits_is_refused(base):
    model, data = base
    defense = CgAT(num_train=len(data.train), bits=16, num_classes=CLASSES)
    with pytest.raises(ValueError, match="built for 16 bits, the model has 8"):
        fit_defended_model(data, model, defense, method="dpsh", epochs=1)


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_bad_settings_are_clear_errors(name):
    for eps in (8, -0.1):
        with pytest.raises(ValueError, match=r"eps is in \[0,1\] pixel units, e.g. 8/255"):
            build(name, 10, eps=eps)
    with pytest.raises(ValueError, match=r"model_mode must be one of \('eval', 'train'\); got 'test'"):
        build(name, 10, model_mode="test")
