"""Cross-modal hashing and CMLA: the DCMH objective and CMLA's losses against plain loops, the alternating
training's batch gradient against the whole objective, training that learns both modalities and resumes bit
for bit, the CMLA attack's published behaviour (cross-modal mAP falls far more than intra-modal mAP, at a
small distortion) under both constraints, adversarial training's augmented set, and clear errors."""

import math

import pytest
import torch

from helpers import same_weights, stripes, stripes_data, stripes_pairs

from advhash.attacks import perturb
from advhash.checkpoint import load_checkpoint
from advhash.crossmodal import (CMLA, CrossModalHashing, TextHashingModel, augmented_training_split,
                                cmla_distortion, cmla_inter_loss, cmla_intra_loss, crossmodal_maps,
                                dcmh_batch_loss, dcmh_objective, encode_pairs, fit_cmla_training,
                                fit_dcmh, label_similarity, train_dcmh)
from advhash.train import encode

pytestmark = pytest.mark.usefixtures("one_thread")
BITS = 16
TRAINING = dict(batch_size=32, lr=0.001, optimizer="adam", weight_decay=0.0, eta=0.1)   # eta: see test_dcmh_learns


def _log1p_exp(v):
    return math.log1p(math.exp(v))


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
    S = label_similarity(labels, labels)
    B = torch.where(F + G >= 0, 1.0, -1.0).double()
    expected = reference_dcmh_objective(F.tolist(), G.tolist(), S.tolist(), B.tolist(), gamma, eta)
    assert dcmh_objective(F, G, S.double(), B, gamma=gamma, eta=eta).item() == pytest.approx(expected, rel=1e-10)


def test_dcmh_batch_step_follows_the_whole_objective():
    F, G, labels = random_outputs(1)
    S, B = label_similarity(labels, labels).double(), torch.where(F + G >= 0, 1.0, -1.0).double()
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


def reference_cmla_terms(H, other, own, S):
    n, m, bits = len(H), len(other), len(H[0])
    inter = intra = 0.0
    for i in range(n):
        for j in range(m):
            gamma = 0.5 * sum(H[i][k] * other[j][k] for k in range(bits))
            theta = 0.5 * sum(H[i][k] * own[j][k] for k in range(bits))
            inter += S[i][j] * gamma + _log1p_exp(-gamma)
            intra += _log1p_exp(theta) - S[i][j] * theta
    return inter / (n * m), intra / (n * m)


def test_cmla_losses_match_loops_and_move_the_codes_the_right_way():
    g = torch.Generator().manual_seed(3)
    H = torch.rand(6, 8, generator=g, dtype=torch.float64) * 2 - 1
    other = torch.where(torch.rand(6, 8, generator=g) < 0.5, -1.0, 1.0).double()
    own = torch.where(torch.rand(6, 8, generator=g) < 0.5, -1.0, 1.0).double()
    S = label_similarity(*(2 * [(torch.rand(6, 3, generator=g) < 0.5).double()])).double()
    inter, intra = reference_cmla_terms(H.tolist(), other.tolist(), own.tolist(), S.tolist())
    assert cmla_inter_loss(H, other, S).item() == pytest.approx(inter, rel=1e-10)
    assert cmla_intra_loss(H, own, S).item() == pytest.approx(intra, rel=1e-10)
    # one similar pair: J_inter falls as the code leaves its partner, J_intra falls as it approaches its own
    code = torch.ones(1, 8, dtype=torch.float64)
    one = torch.ones(1, 1, dtype=torch.float64)
    assert cmla_inter_loss(-code * 0.9, code, one) < cmla_inter_loss(code * 0.9, code, one)
    assert cmla_intra_loss(code * 0.9, code, one) < cmla_intra_loss(-code * 0.9, code, one)


def test_cmla_distortion_is_the_per_sample_rms():
    original = torch.zeros(2, 1, 2, 2)
    adversarial = original.clone()
    adversarial[0, 0, 0, 0] = 0.4                 # sample 0: sqrt(0.16 / 4) = 0.2; sample 1: 0
    assert cmla_distortion(original, adversarial) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="differ"):
        cmla_distortion(original, adversarial[:1])


@pytest.fixture(scope="module")
def pairs(one_thread):
    """A DCMH model trained on stripes with tags, with its query and database pairs."""
    train, query = stripes_pairs(160, seed=0), stripes_pairs(40, seed=1)
    data = stripes_data(train, query)
    model, history = fit_dcmh(data, bits=BITS, epochs=8, text_hidden=64, **TRAINING)
    return model, history, data


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
    uninterrupted, history = fit_dcmh(data, epochs=2, **settings)
    fit_dcmh(data, epochs=1, checkpoint_dir=tmp_path, **settings)
    (path,) = tmp_path.iterdir()
    assert load_checkpoint(path)["epoch"] == 1 and path.name.startswith("dcmh_8bits_small_cnn_")
    resumed, resumed_history = fit_dcmh(data, epochs=2, checkpoint_dir=tmp_path, **settings)
    assert same_weights(uninterrupted, resumed)
    assert [r["image_loss"] for r in resumed_history] == [r["image_loss"] for r in history]
    with pytest.raises(ValueError, match="different run"):
        train_dcmh(CrossModalHashing(bits=8, text_dim=14, in_channels=1, text_hidden=32), data.train, epochs=3,
                   checkpoint_path=path, batch_size=16)


def test_cmla_breaks_cross_modal_retrieval_and_its_intra_term_spares_intra_modal_retrieval(pairs):
    model, _, data = pairs
    db = encode_pairs(model, data.database)
    query = encode_pairs(model, data.query)
    images, labels = data.query.batch(torch.arange(len(data.query)))[:2]
    tasks = ["image->text", "image->image"]
    before = crossmodal_maps(query, db, labels, data.database.labels, tasks=tasks)
    drops = {}
    for intra_weight in (0.0, 1.0):
        attack = CMLA(model.image, modality="image", steps=100, lr=2 / 255, intra_weight=intra_weight)
        adversarial = perturb(attack, images, labels, query["text"], query["image"])
        after = crossmodal_maps(dict(query, image=encode(model.image, adversarial)), db, labels,
                                data.database.labels, tasks=tasks)
        drops[intra_weight] = {task: before[task] - after[task] for task in tasks}
        assert drops[intra_weight]["image->text"] > 0.2, f"image->text mAP {before['image->text']:.3f} -> {after}"
        distortion = cmla_distortion(images, adversarial)
        assert 0 < distortion < 0.25 and adversarial.min() >= 0 and adversarial.max() <= 1
        assert len(attack.history) == 100 and attack.history[-1]["inter"] < attack.history[0]["inter"]
    # here the two modalities share codes (image->text mAP ~1), so the intra term can only soften the damage
    assert drops[1.0]["image->image"] < drops[0.0]["image->image"] - 0.05, drops


def test_cmla_on_texts_breaks_text_to_image_retrieval(pairs):
    model, _, data = pairs
    db, query = encode_pairs(model, data.database), encode_pairs(model, data.query)
    texts, labels = data.query.texts, data.query.labels
    # on stripes both modalities share their codes, so the intra term would cancel the inter term: leave it out
    attack = CMLA(model.text, modality="text", steps=200, lr=0.05, intra_weight=0.0)
    adversarial = attack(texts, labels, query["image"], query["text"])
    attacked = dict(query, text=encode(model.text, adversarial))
    before = crossmodal_maps(query, db, labels, data.database.labels, tasks=["text->image"])["text->image"]
    after = crossmodal_maps(attacked, db, labels, data.database.labels, tasks=["text->image"])["text->image"]
    assert after < before - 0.3, f"text->image mAP {before:.3f} -> {after:.3f}"
    assert (adversarial - texts).abs().max() > 0.1


def test_cmla_snapshots_are_the_shorter_attacks(pairs):
    model, _, data = pairs
    images, labels = data.query.batch(torch.arange(20))[:2]
    codes = encode(model.image, images)
    settings = dict(modality="image", lr=2 / 255)
    attack = CMLA(model.image, steps=6, **settings)
    full = perturb(attack, images, labels, -codes, codes, batch_size=8, snapshot_steps=[0, 3, 6])
    assert torch.equal(attack.snapshots[0], images) and torch.equal(attack.snapshots[6], full)
    short = perturb(CMLA(model.image, steps=3, **settings), images, labels, -codes, codes, batch_size=8)
    assert torch.equal(attack.snapshots[3], short)
    assert [row["step"] for row in attack.history] == list(range(1, 7))
    with pytest.raises(ValueError, match="snapshot_steps"):
        attack(images, labels, -codes, codes, snapshot_steps=[7])


@pytest.mark.parametrize("modality", ["image", "text"])
def test_cmla_clip_keeps_the_official_one_sided_noise_bounds(pairs, modality):
    model, _, data = pairs
    images, labels = data.query.batch(torch.arange(10))[:2]
    inputs = images if modality == "image" else data.query.texts[:10]
    codes = encode(model.modality(modality), inputs)
    model.zero_grad(set_to_none=True)                                              # training left its gradients
    attack = CMLA(model.modality(modality), modality=modality, steps=20, lr=0.05, constraint="clip")
    adversarial = attack(inputs, labels, -codes, codes)
    noise = adversarial - inputs
    assert all(p.grad is None for p in model.parameters()), "the attack must not leave gradients on the model"
    bound = 10 / 255 if modality == "image" else 0.01
    assert noise.min() >= -1e-7 or modality == "image" and (adversarial == 1).any()
    assert noise.max() <= bound + 1e-6 and noise.abs().max() > bound / 2
    if modality == "image":
        assert adversarial.min() >= 0 and adversarial.max() <= 1


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


def test_cross_modal_bad_inputs_are_clear_errors(pairs):
    model, _, data = pairs
    no_texts = stripes_data(stripes(16))
    with pytest.raises(ValueError, match="has no texts"):
        fit_dcmh(no_texts, bits=8, epochs=1)
    with pytest.raises(ValueError, match=r"texts must be \(N, 14\)"):
        model.text.hash_logits(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="modality must be"):
        CMLA(model.image, modality="audio")
    with pytest.raises(ValueError, match="constraint must be"):
        CMLA(model.image, constraint="box")
    with pytest.raises(ValueError, match="one row of labels"):
        CMLA(model.image, steps=1)(torch.rand(3, 1, 16, 16), torch.ones(2, 4), torch.ones(3, BITS), torch.ones(3, BITS))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        CMLA(model.image, steps=1)(torch.full((2, 1, 16, 16), 2.0), torch.ones(2, 4), torch.ones(2, BITS),
                                   torch.ones(2, BITS))
    with pytest.raises(ValueError, match="num_adversarial"):
        augmented_training_split(model, data.train, num_adversarial=0)
    with pytest.raises(ValueError, match="text_dim"):
        TextHashingModel(0, bits=8)
    with pytest.raises(ValueError, match="pairs must be one of"):
        fit_dcmh(data, bits=BITS, epochs=1, pairs="all")
