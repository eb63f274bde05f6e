"""Fixtures shared by more than one test file; the shared references and tiny data are in helpers.py.

Layout: one test file per library module, flat. A test of lib/advhash/x/y.py goes in tests/test_x_y.py,
of a top-level module lib/advhash/y.py in tests/test_y.py, and of what a package's __init__.py defines
(e.g. the ``DEFENSES`` registry) in tests/test_x.py; ``data/__main__.py`` (the command line) in
tests/test_data_main.py. A test that needs several modules goes with the one whose behaviour it asserts;
tests/test_end_to_end.py is the one cross-cutting file.
"""

from types import SimpleNamespace

import pytest
import torch
from helpers import (BITS, DCMH_TRAINING, DEFENSE_BITS, SSAH_TRAINING, StripesSplit, stripes, stripes_data,
                     stripes_pairs)

import advhash.attacks.base as attack_base
import advhash.data.fashion as fashion

from advhash.crossmodal import fit_dcmh, fit_ssah
from advhash.data import materialize
from advhash.evaluation import query_set
from advhash.losses import build_loss
from advhash.models import HashingModel
from advhash.train import encode, fit_hashing_model, train_hashing
from advhash.victim import Victim


@pytest.fixture(autouse=True, scope="session")
def private_image_cache(tmp_path_factory):
    """The decoded image cache (advhash.data.cache) of every test lives in a temporary folder, never in ~/.cache."""
    import os

    previous = os.environ.get("ADVHASH_CACHE")
    os.environ["ADVHASH_CACHE"] = str(tmp_path_factory.mktemp("image-cache"))
    yield
    if previous is None:
        os.environ.pop("ADVHASH_CACHE", None)
    else:
        os.environ["ADVHASH_CACHE"] = previous


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


@pytest.fixture(scope="module")
def victim(trained):
    """The ``trained`` model as an ``advhash.Victim``: its codes of the stripes database, which is also
    its training split (``Victim.build`` encodes both once)."""
    model, _, database, _ = trained
    return Victim.build(model, SimpleNamespace(train=database, database=database))


@pytest.fixture(scope="module")
def undefended(one_thread):
    """A DPSH model on 96 multi-label stripes (clean mAP high), its data and 24 queries with target labels: the
    model the robustness evaluation (advhash.robustness) and its checks are tested on."""
    train = stripes(96, seed=3, multi_label=True, signal=0.4)
    data = stripes_data(train, stripes(24, seed=4, multi_label=True, signal=0.4))
    torch.manual_seed(0)
    model = HashingModel("small_cnn", bits=BITS, in_channels=1)
    train_hashing(model, build_loss("dpsh", num_train=96, bits=BITS, num_classes=4), train, epochs=12,
                  batch_size=32, lr=0.05)
    queries = query_set(data, 24, target_min_items=2, target_rule="nonzero", seed=0)
    return model.eval(), data, queries


@pytest.fixture
def inner_attacks(monkeypatch):
    """Every inner attack of the test (adversarial trainers call ``attack.run(images, guide_codes)``):
    (attack, clean images, guide codes, adversarial images)."""
    calls = []
    original = attack_base.HashingAttack.run

    def recording(self, images, guide=None, **kwargs):
        adversarial = original(self, images, guide, **kwargs)
        calls.append((self, images.clone(), guide.clone(), adversarial.clone()))
        return adversarial

    monkeypatch.setattr(attack_base.HashingAttack, "run", recording)
    return calls


@pytest.fixture(scope="module")
def base(one_thread):
    """The clean model the defenses fine-tune: DPSH on 128 stripes (clean mAP ~1), and its data."""
    data = stripes_data(stripes(128), stripes(32, seed=1))
    model, _ = fit_hashing_model(data, method="dpsh", bits=DEFENSE_BITS, epochs=10, batch_size=32, lr=0.05)
    return model.eval(), data


@pytest.fixture(scope="module")
def pairs(one_thread):
    """A DCMH model trained on stripes with tags, with its query and database pairs."""
    train, query = stripes_pairs(160, seed=0), stripes_pairs(40, seed=1)
    data = stripes_data(train, query)
    model, history = fit_dcmh(data, bits=BITS, epochs=8, text_hidden=64, **DCMH_TRAINING)
    return model, history, data


@pytest.fixture(scope="module")
def ssah_pairs(one_thread):
    """An SSAH model trained on stripes with tags, its history, and its query and database pairs."""
    train, query = stripes_pairs(160, seed=0), stripes_pairs(40, seed=1)
    data = stripes_data(train, query)
    model, history = fit_ssah(data, bits=BITS, epochs=8, **SSAH_TRAINING)
    return model, history, data


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory):
    """A data root with Fashion-MNIST materialized once (read from the Debian path)."""
    if not fashion.DEBIAN_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST not installed at {fashion.DEBIAN_DIR}")
    root = tmp_path_factory.mktemp("data")
    materialize("fashion-mnist", root)
    return root
