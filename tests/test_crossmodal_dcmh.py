"""DCMH (advhash.crossmodal.dcmh): the objective against a plain loop over pairs, the alternating training's
batch gradient against the whole objective, training that learns both modalities (the table and the batch
form) and resumes bit for bit, under a checkpoint name that changes only with what determines its weights."""

import re

import pytest
import torch

from helpers import BITS, assert_resumes_bit_for_bit, stripes_data, stripes_pairs
from helpers import DCMH_TRAINING as TRAINING
from helpers import log1p_exp as _log1p_exp

from advhash.crossmodal import (CrossModalHashing, crossmodal_maps, dcmh_batch_loss, dcmh_objective, encode_pairs,
                                fit_dcmh, train_dcmh)
from advhash.metrics import relevance

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_dcmh_objective(F, G, S, B, gamma, eta):
    """J by loops over pairs and bits."""
    n, bits = len(F), len(F[0])
    total = 0.0
    for i in range(n):
        for j in range(n):
            theta = 0.5 * sum(F[i][k] * G[j][k] for k in range(bits))
            total -= S[i][j] * theta - _log1p_exp(theta)
    total += gamma * sum((B[i][k] - F[i][k]) ** 2 + (B[i][k] - G[i][k]) ** 2 for i in range(n) for k in range(bits))
    total += eta * sum(sum(F[i][k] for i in range(n)) ** 2 + sum(G[i][k] for i in range(n)) ** 2 for k in range(bits))
    return total


def random_outputs(seed, n=7, bits=5, classes=3):
    g = torch.Generator().manual_seed(seed)
    F, G = torch.randn(n, bits, generator=g, dtype=torch.float64), torch.randn(n, bits, generator=g, dtype=torch.float64)
    labels = (torch.rand(n, classes, generator=g) < 0.4).double()
    return F, G, labels


@pytest.mark.parametrize("gamma, eta", [(1.0, 1.0), (0.5, 2.0)])
def test_dcmh_objective_matches_a_loop_over_pairs(gamma, eta):
    F, G, labels = random_outputs(0)
    S = relevance(labels, labels).float()
    B = torch.where(F + G >= 0, 1.0, -1.0).double()
    expected = reference_dcmh_objective(F.tolist(), G.tolist(), S.tolist(), B.tolist(), gamma, eta)
    assert dcmh_objective(F, G, S.double(), B, gamma=gamma, eta=eta).item() == pytest.approx(expected, rel=1e-10)


def test_dcmh_batch_step_follows_the_whole_objective():
    F, G, labels = random_outputs(1)
    S, B = relevance(labels, labels).double(), torch.where(F + G >= 0, 1.0, -1.0).double()
    batch = torch.tensor([1, 4, 5])
    rest = torch.tensor([0, 2, 3, 6])
    whole = F.clone().requires_grad_(True)
    grad_whole, = torch.autograd.grad(dcmh_objective(whole, G, S, B, gamma=0.7, eta=1.3), whole)
    rows = F[batch].clone().requires_grad_(True)
    loss = dcmh_batch_loss(rows, G, S[batch], B[batch], F[rest].sum(0), gamma=0.7, eta=1.3)
    grad_rows, = torch.autograd.grad(loss, rows)
    assert torch.allclose(grad_rows * len(batch) * len(F), grad_whole[batch], rtol=1e-10)
    # pairs="batch": the objective of the batch alone (its rows of F, G, S and B), normalized by b * b
    rows = F[batch].clone().requires_grad_(True)
    loss = dcmh_batch_loss(rows, G[batch], S[batch][:, batch], B[batch], torch.zeros(F.shape[1], dtype=F.dtype),
                           gamma=0.7, eta=1.3)
    grad_rows, = torch.autograd.grad(loss, rows)
    sub = F[batch].clone().requires_grad_(True)
    grad_sub, = torch.autograd.grad(dcmh_objective(sub, G[batch], S[batch][:, batch], B[batch], gamma=0.7, eta=1.3), sub)
    assert torch.allclose(grad_rows * len(batch) ** 2, grad_sub, rtol=1e-10)


def test_dcmh_learns_both_modalities(pairs):
    """On 160 stripes the paper's balance weight eta = 1 aligns the two modalities only after ~60 epochs
    (image->text mAP 0.66 at 60); eta = 0.1 aligns them in 8."""
    model, history, data = pairs
    assert history[-1]["image_loss"] < history[0]["image_loss"] and history[-1]["text_loss"] < history[0]["text_loss"]
    maps = crossmodal_maps(encode_pairs(model, data.query), encode_pairs(model, data.database), data.query.labels,
                           data.database.labels)
    random = crossmodal_maps({"image": torch.ones(40, BITS), "text": torch.ones(40, BITS)},
                             {"image": torch.ones(160, BITS), "text": torch.ones(160, BITS)}, data.query.labels,
                             data.database.labels)
    for task, value in maps.items():
        assert value > random[task] + 0.15, f"{task}: mAP {value:.3f} vs constant codes {random[task]:.3f}"


def test_dcmh_within_the_batch_learns_both_modalities(pairs):
    _, _, data = pairs
    model, _ = fit_dcmh(data, bits=BITS, epochs=8, text_hidden=64, **dict(TRAINING, pairs="batch", eta=1.0))
    maps = crossmodal_maps(encode_pairs(model, data.query), encode_pairs(model, data.database), data.query.labels,
                           data.database.labels)
    assert min(maps.values()) > 0.6, maps


@pytest.mark.parametrize("pairs_form", ["table", "batch"])
def test_interrupted_dcmh_resumes_bit_for_bit_and_refuses_other_settings(tmp_path, pairs_form):
    data = stripes_data(stripes_pairs(48, seed=2))
    settings = dict(bits=8, text_hidden=32, **dict(TRAINING, pairs=pairs_form))
    path = assert_resumes_bit_for_bit(fit_dcmh, data, settings, tmp_path, "dcmh_8bits_small_cnn_")
    with pytest.raises(ValueError, match="different run"):
        train_dcmh(CrossModalHashing(bits=8, text_dim=14, in_channels=1, text_hidden=32), data.train, epochs=3,
                   checkpoint_path=path, batch_size=16)


def test_dcmh_checkpoint_name_says_the_run_and_changes_with_the_training_code(tmp_path, monkeypatch):
    """A kept (DVC persist) checkpoint folder is matched by file name: the same run finds its file again; a change
    to the code on DCMH's training path trains a new one."""
    import advhash.checkpoint as checkpoint_module

    data = stripes_data(stripes_pairs(48, seed=2))
    settings = dict(bits=8, epochs=1, text_hidden=32, checkpoint_dir=tmp_path, batch_size=16, lr=0.001,
                    optimizer="adam")
    fit_dcmh(data, **settings)
    (name,) = [path.name for path in tmp_path.iterdir()]
    assert re.fullmatch(r"dcmh_8bits_small_cnn_e1_[0-9a-f]{8}\.pt", name)
    fit_dcmh(data, **settings)
    assert [path.name for path in tmp_path.iterdir()] == [name]
    monkeypatch.setattr(checkpoint_module, "code_fingerprint", lambda *modules: "0ther0de")
    fit_dcmh(data, **settings)
    assert len(list(tmp_path.iterdir())) == 2
