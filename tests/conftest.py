"""Fixtures shared by the attack and defense tests."""

import pytest
import torch
from helpers import BITS, StripesSplit

import advhash.attacks.base as attack_base

from advhash.losses import build_loss
from advhash.models import HashingModel
from advhash.train import encode, train_hashing


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and do not stall when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(one_thread):
    """A small CNN trained with DPSH on the stripes (clean mAP ~1), its database codes and queries."""
    torch.manual_seed(0)
    database, queries = StripesSplit(128, seed=0), StripesSplit(32, seed=1)
    model = HashingModel("small_cnn", bits=BITS, in_channels=1)
    loss = build_loss("dpsh", num_train=len(database), bits=BITS, num_classes=4)
    train_hashing(model, loss, database, epochs=20, batch_size=32, lr=0.05, seed=0)
    return model.eval(), encode(model, database), database, queries


@pytest.fixture
def inner_attacks(monkeypatch):
    """Every attack call of the test: (attack, clean images, guide codes, adversarial images)."""
    calls = []
    original = attack_base.HashingAttack.__call__

    def recording(self, images, *args, **kwargs):
        adversarial = original(self, images, *args, **kwargs)
        calls.append((self, images.clone(), args[0].clone(), adversarial.clone()))
        return adversarial

    monkeypatch.setattr(attack_base.HashingAttack, "__call__", recording)
    return calls
