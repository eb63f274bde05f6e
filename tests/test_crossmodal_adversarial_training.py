"""CMLA's adversarial training (advhash.crossmodal.adversarial_training): DCMH+ puts CMLA samples in front
of the training set and fine-tunes on it (SSAH+ is checked with SSAH, tests/test_crossmodal_ssah.py)."""

import pytest
import torch

from helpers import DCMH_TRAINING as TRAINING
from helpers import same_weights

from advhash.crossmodal import augmented_training_split, fit_cmla_training

pytestmark = pytest.mark.usefixtures("one_thread")


def test_adversarial_training_puts_cmla_samples_in_front_and_fine_tunes(pairs, tmp_path):
    model, _, data = pairs
    quick = dict(steps=5)
    augmented = augmented_training_split(model, data.train, num_adversarial=12, image_attack=quick, text_attack=quick)
    assert len(augmented) == len(data.train) + 12
    assert torch.equal(augmented.labels[:12], data.train.labels[:12])
    assert torch.equal(augmented.labels[12:], data.train.labels) and torch.equal(augmented.texts[12:], data.train.texts)
    assert not torch.equal(augmented.images[:12], data.train.images[:12])
    assert ((augmented.images[:12].float() - data.train.images[:12].float()).abs() <= 255 * 0.2).all()
    robust, history, _ = fit_cmla_training(data, model, num_adversarial=12, epochs=1, image_attack=quick,
                                           text_attack=quick, checkpoint_dir=tmp_path, text_hidden=64, **TRAINING)
    assert len(history) == 1 and not same_weights(robust, model)
    (path,) = tmp_path.iterdir()
    assert path.name.startswith("dcmh+_16bits_")
