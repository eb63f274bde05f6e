"""CMLA (advhash.crossmodal.cmla): its losses against plain loops, the distortion D, the attack's published
behaviour on DCMH (cross-modal mAP falls far more than intra-modal mAP, at a small distortion) under both
constraints, its snapshots, and the cross-modal package's clear errors."""

import pytest
import torch

from helpers import BITS, stripes, stripes_data
from helpers import log1p_exp as _log1p_exp

from advhash.attacks import perturb
from advhash.crossmodal import (CMLA, TextHashingModel, augmented_training_split, cmla_distortion, cmla_inter_loss,
                                cmla_intra_loss, crossmodal_maps, encode_pairs, fit_dcmh)
from advhash.metrics import relevance
from advhash.train import encode

pytestmark = pytest.mark.usefixtures("one_thread")


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
    S = relevance(*(2 * [(torch.rand(6, 3, generator=g) < 0.5).double()])).double()
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
        adversarial = perturb(attack.set_pairs(query["text"], query["image"]), images, labels)
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
    adversarial = attack.set_pairs(query["image"], query["text"])(texts, labels)
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
    full = perturb(attack.set_pairs(-codes, codes), images, labels, batch_size=8, snapshot_steps=[0, 3, 6])
    assert torch.equal(attack.snapshots[0], images) and torch.equal(attack.snapshots[6], full)
    short = perturb(CMLA(model.image, steps=3, **settings).set_pairs(-codes, codes), images, labels, batch_size=8)
    assert torch.equal(attack.snapshots[3], short)
    assert [row["step"] for row in attack.history] == list(range(1, 7))
    with pytest.raises(ValueError, match="snapshot_steps"):
        attack(images, labels, snapshot_steps=[7])


@pytest.mark.parametrize("modality", ["image", "text"])
def test_cmla_clip_keeps_the_official_one_sided_noise_bounds(pairs, modality):
    model, _, data = pairs
    images, labels = data.query.batch(torch.arange(10))[:2]
    inputs = images if modality == "image" else data.query.texts[:10]
    codes = encode(model.modality(modality), inputs)
    model.zero_grad(set_to_none=True)                                              # training left its gradients
    attack = CMLA(model.modality(modality), modality=modality, steps=20, lr=0.05, constraint="clip")
    adversarial = attack.set_pairs(-codes, codes)(inputs, labels)
    noise = adversarial - inputs
    assert all(p.grad is None for p in model.parameters()), "the attack must not leave gradients on the model"
    bound = 10 / 255 if modality == "image" else 0.01
    assert noise.min() >= -1e-7 or modality == "image" and (adversarial == 1).any()
    assert noise.max() <= bound + 1e-6 and noise.abs().max() > bound / 2
    if modality == "image":
        assert adversarial.min() >= 0 and adversarial.max() <= 1


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
        CMLA(model.image, steps=1).set_pairs(torch.ones(3, BITS), torch.ones(3, BITS))(torch.rand(3, 1, 16, 16),
                                                                                     torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        CMLA(model.image, steps=1).set_pairs(torch.ones(2, BITS), torch.ones(2, BITS))(
            torch.full((2, 1, 16, 16), 2.0), torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"call attack.set_pairs\(other_codes, own_codes\) first"):
        CMLA(model.image, steps=1)(torch.rand(2, 1, 16, 16), torch.ones(2, 4))
    with pytest.raises(ValueError, match="codes must have the network's"):
        CMLA(model.image, steps=1).set_pairs(torch.ones(2, BITS + 1), torch.ones(2, BITS + 1))
    with pytest.raises(ValueError, match="num_adversarial"):
        augmented_training_split(model, data.train, num_adversarial=0)
    with pytest.raises(ValueError, match="text_dim"):
        TextHashingModel(0, bits=8)
    with pytest.raises(ValueError, match="pairs must be one of"):
        fit_dcmh(data, bits=BITS, epochs=1, pairs="all")
