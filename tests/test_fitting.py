"""advhash.fitting: the victims of a study, trained (or loaded) per spec, saturated and encoded once."""

import pytest
import torch

from helpers import stripes, stripes_data

from advhash.fitting import VictimSpec, fit_victims
from advhash.train import encode, fit_hashing_model

pytestmark = pytest.mark.usefixtures("one_thread")

TRAINING = dict(epochs=1, batch_size=32, lr=0.01)


@pytest.fixture(scope="module")
def data(one_thread):
    return {"a": stripes_data(stripes(48, seed=0), stripes(8, seed=1)),
            "b": stripes_data(stripes(48, seed=2), stripes(8, seed=3))}


def test_fit_victims_trains_each_spec_on_its_dataset_and_keeps_the_codes_under_saturation(data, tmp_path):
    specs = {("a", 8): VictimSpec("a", "dpsh", 8), "other": ("b", "dph", 4, 1, "small_cnn")}   # a tuple works too
    victims = fit_victims(data, specs, saturation=30.0, checkpoint_dir=tmp_path, **TRAINING)
    assert list(victims) == [("a", 8), "other"]
    plain, _ = fit_hashing_model(data["b"], method="dph", bits=4, seed=1, **TRAINING)    # the same training
    victim = victims["other"]
    assert victim.bits == 4 and victim.train_codes is None and next(victim.model.parameters()).device.type == "cpu"
    assert torch.equal(victim.db_codes, encode(plain, data["b"].database)), "saturation keeps every code"
    images = data["b"].query.batch(torch.arange(4))[0]
    with torch.no_grad():
        torch.testing.assert_close(victim.model.hash_logits(images), 30.0 * plain.eval().hash_logits(images))
    assert len(list(tmp_path.iterdir())) == 2, "one checkpoint per spec"
    again = fit_victims(data, specs, saturation=30.0, checkpoint_dir=tmp_path, train=True, **TRAINING)
    assert torch.equal(again["other"].db_codes, victim.db_codes), "the checkpoints are loaded"
    assert again[("a", 8)].train_codes.shape == (48, 8)


def test_fit_victims_refuses_an_unknown_dataset_and_a_non_positive_saturation(data):
    with pytest.raises(KeyError, match="no dataset 'c'"):
        fit_victims(data, {"x": ("c", "dpsh", 8)}, **TRAINING)
    with pytest.raises(ValueError, match="saturation must be positive"):
        fit_victims(data, {"x": ("a", "dpsh", 8)}, saturation=0.0, **TRAINING)
