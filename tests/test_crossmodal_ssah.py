"""SSAH (advhash.crossmodal.ssah): the pairwise terms of equation (1) against plain loops (both the paper's
likelihood and the official squared residual), the multi-scale text fusion, training that learns both
modalities and resumes bit for bit, the adversarial term's gradient switch, CMLA on SSAH and SSAH+, and clear
errors."""

import math

import pytest
import torch

from helpers import BITS, assert_resumes_bit_for_bit, same_weights, stripes_data, stripes_pairs
from helpers import SSAH_TRAINING as TRAINING

from advhash.crossmodal import (CMLA, SSAHModel, crossmodal_maps, encode_pairs, fit_cmla_training, fit_ssah,
                                ssah_network_loss, ssah_pairwise_loss, train_ssah)
from advhash.crossmodal.ssah import MultiScaleFusion, adversarial_loss
from advhash.attacks import perturb
from advhash.train import encode

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_pairwise(outputs, anchors, S, form):
    """J_pair by loops over the (b, n) pairs, averaged."""
    total = 0.0
    for i in range(len(outputs)):
        for j in range(len(anchors)):
            theta = 0.5 * sum(a * b for a, b in zip(outputs[i], anchors[j]))
            softplus = math.log1p(math.exp(theta))
            total += softplus - S[i][j] * theta if form == "likelihood" else (0.999 * S[i][j] * theta - softplus) ** 2
    return total / (len(outputs) * len(anchors))


@pytest.mark.parametrize("form", ["likelihood", "squared"])
def test_ssah_pairwise_terms_match_a_loop_over_pairs(form):
    g = torch.Generator().manual_seed(0)
    outputs = torch.randn(5, 6, generator=g, dtype=torch.float64)
    anchors = torch.randn(7, 6, generator=g, dtype=torch.float64)
    S = (torch.rand(5, 7, generator=g) < 0.5).double()
    value = ssah_pairwise_loss(outputs, anchors, S, form=form)
    expected = reference_pairwise(outputs.tolist(), anchors.tolist(), S.tolist(), form)
    assert value.item() == pytest.approx(expected, rel=1e-12)
    terms = ssah_network_loss(outputs, torch.tanh(outputs), torch.sigmoid(outputs), anchor_features=anchors,
                              anchor_codes=torch.tanh(anchors), similarity=S, codes=torch.sign(outputs),
                              labels=torch.zeros(5, 6, dtype=torch.float64), form=form,
                              weights=dict(alpha=2.0, gamma=3.0, beta=0.5, eta=0.25, delta=7.0),
                              adversarial=torch.tensor(1.0, dtype=torch.float64))
    expected = (2 * terms["feature_pairs"] + 3 * terms["code_pairs"] + 0.5 * terms["quantization"]
                + 0.25 * terms["label"] + 7.0)
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-12)
    assert terms["feature_pairs"].item() == pytest.approx(value.item(), rel=1e-12)


def test_multi_scale_fusion_stacks_the_bag_of_words_with_five_pooled_scales():
    fusion = MultiScaleFusion(60)
    assert fusion.widths == [50, 30, 15, 10, 5]
    with torch.no_grad():
        fusion.scales.fill_(1.0)
    texts = torch.zeros(2, 60)
    texts[0, :5] = 1.0                                                    # one whole width-5 window
    with torch.no_grad():
        fused = fusion(texts)
    assert fused.shape == (2, 6, 60) and torch.equal(fused[:, 0], texts)
    assert fused[1].abs().max() == 0
    assert fused[0, 5, :2].min() > 0.99 and fused[0, 5, 20:].abs().max() == 0   # width 5: local
    assert fused[0, 1].max().item() == pytest.approx(0.1)                       # width 50: 5 tags of 50
    assert MultiScaleFusion(14).widths == [14, 14, 14, 10, 5]            # widths cut to the vocabulary


def test_ssah_learns_both_modalities(ssah_pairs):
    model, history, data = ssah_pairs
    assert history[-1]["label_loss"] < history[0]["label_loss"]
    maps = crossmodal_maps(encode_pairs(model, data.query), encode_pairs(model, data.database), data.query.labels,
                           data.database.labels)
    random = crossmodal_maps({"image": torch.ones(40, BITS), "text": torch.ones(40, BITS)},
                             {"image": torch.ones(160, BITS), "text": torch.ones(160, BITS)}, data.query.labels,
                             data.database.labels)
    for task, value in maps.items():
        assert value > random[task] + 0.15, f"{task}: mAP {value:.3f} vs constant codes {random[task]:.3f}"


@pytest.mark.parametrize("adversarial_gradient", [False, True])
def test_the_adversarial_term_trains_the_modality_networks_only_with_the_papers_gradient(adversarial_gradient):
    """With every other weight 0, J_adv alone moves the image network under the paper's gradient, and leaves
    it untouched as in the official code (features fed to the discriminator as data)."""
    data = stripes_data(stripes_pairs(32, seed=3))
    torch.manual_seed(0)
    model = SSAHModel(bits=8, text_dim=14, num_labels=4, in_channels=1, hidden=64)
    before = [p.detach().clone() for p in model.image.parameters()]
    train_ssah(model, data.train, epochs=1, batch_size=16, alpha=0.0, gamma=0.0, beta=0.0, eta=0.0, delta=1.0,
               adversarial_gradient=adversarial_gradient)
    moved = any(not torch.equal(a, b.detach()) for a, b in zip(before, model.image.parameters()))
    assert moved == adversarial_gradient
    features = model.image.outputs(data.train.batch(torch.arange(4))[0])[0]
    assert adversarial_loss(model.image_discriminator, features).item() > 0


def test_interrupted_ssah_resumes_bit_for_bit_and_refuses_other_settings(tmp_path):
    data = stripes_data(stripes_pairs(48, seed=2))
    settings = dict(bits=8, **dict(TRAINING, batch_size=16, hidden=64, adversarial_gradient=True))
    path = assert_resumes_bit_for_bit(fit_ssah, data, settings, tmp_path, "ssah_8bits_small_cnn_")
    with pytest.raises(ValueError, match="different run"):
        train_ssah(SSAHModel(bits=8, text_dim=14, num_labels=4, in_channels=1, hidden=64), data.train, epochs=3,
                   checkpoint_path=path, batch_size=8)


def test_cmla_attacks_ssah_and_ssah_plus_fine_tunes_on_its_samples(ssah_pairs, tmp_path):
    model, _, data = ssah_pairs
    images, labels = data.query.batch(torch.arange(40))[:2]
    texts = data.query.texts.float()
    codes = dict(image=encode(model.image, images), text=encode(model.text, texts))
    db = encode_pairs(model, data.database)
    clean = crossmodal_maps(codes, db, labels, data.database.labels, tasks=("image->text",))["image->text"]
    attack = CMLA(model.image, modality="image", steps=100, lr=0.01).set_pairs(codes["text"], codes["image"])
    adversarial = perturb(attack, images, labels)
    attacked = crossmodal_maps(dict(codes, image=encode(model.image, adversarial)), db, labels, data.database.labels,
                               tasks=("image->text",))["image->text"]
    assert attacked < clean - 0.1, f"CMLA should break SSAH's image->text retrieval: {clean:.3f} -> {attacked:.3f}"
    quick = dict(steps=5)
    robust, history, augmented = fit_cmla_training(data, model, num_adversarial=12, epochs=1, image_attack=quick,
                                                   text_attack=quick, checkpoint_dir=tmp_path, **TRAINING)
    assert isinstance(robust, SSAHModel) and len(history) == 1 and not same_weights(robust, model)
    assert len(augmented) == len(data.train) + 12
    (path,) = tmp_path.iterdir()
    assert path.name.startswith("ssah+_16bits_")
    with pytest.raises(TypeError, match="CrossModalHashing .DCMH. or SSAHModel"):
        fit_cmla_training(data, model.image, num_adversarial=4, epochs=1)


def test_ssah_bad_inputs_are_clear_errors(ssah_pairs):
    model, _, data = ssah_pairs
    with pytest.raises(ValueError, match="pairwise must be one of"):
        fit_ssah(data, bits=8, epochs=1, pairwise="hinge")
    with pytest.raises(ValueError, match=r"labels must be \(N, 4\)"):
        model.label.outputs(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"texts must be \(N, 14\)"):
        model.text.hash_logits(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="4 classes but the model's label network takes 3"):
        train_ssah(SSAHModel(bits=8, text_dim=14, num_labels=3, in_channels=1, hidden=32), data.train, epochs=1)
    with pytest.raises(ValueError, match="modality must be"):
        model.discriminator("audio")
