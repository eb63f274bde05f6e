"""SSAH (advhash.crossmodal.ssah): the terms of equation (1), values and gradients, against plain loops (the
paper's likelihood and the published squared residual; the paper's sums and the published 1/2 sums), the
multi-scale text fusion, training that learns both modalities and resumes bit for bit, the adversarial term's
gradient switch, CMLA on SSAH and SSAH+, and clear errors."""

import inspect
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


REDUCTIONS = ["sum", "half_sum"]


def reduction_scale(reduction, entries):
    """The factor before the plain sum: the paper's sum or the published tf.nn.l2_loss (1/2 sum)."""
    return {"sum": 1.0, "half_sum": 0.5}[reduction]


def reference_pairwise(outputs, anchors, S, form, reduction):
    """J_pair and its gradient w.r.t. ``outputs`` by loops over the (b, n) pairs and the bits, from the formula:
    Theta_ij = 1/2 sum_k o_ik a_jk; per pair softplus(Theta) - S Theta ("likelihood") or (0.999 S Theta -
    softplus(Theta))^2 ("squared"); summed or halved."""
    b, n, d = len(outputs), len(anchors), len(anchors[0])
    scale = reduction_scale(reduction, b * n)
    value, gradient = 0.0, [[0.0] * d for _ in range(b)]
    for i in range(b):
        for j in range(n):
            theta = 0.5 * sum(outputs[i][k] * anchors[j][k] for k in range(d))
            softplus, sigmoid = math.log1p(math.exp(theta)), 1.0 / (1.0 + math.exp(-theta))
            if form == "likelihood":
                per_pair, slope = softplus - S[i][j] * theta, sigmoid - S[i][j]
            else:
                residual = 0.999 * S[i][j] * theta - softplus
                per_pair, slope = residual ** 2, 2.0 * residual * (0.999 * S[i][j] - sigmoid)
            value += scale * per_pair
            for k in range(d):
                gradient[i][k] += scale * slope * 0.5 * anchors[j][k]
    return value, gradient


def reference_squares(x, y, reduction):
    """sum_ik (x_ik - y_ik)^2, or half of it, and its gradient w.r.t. x, by loops."""
    scale = reduction_scale(reduction, len(x) * len(x[0]))
    value = sum(scale * (a - b) ** 2 for row_x, row_y in zip(x, y) for a, b in zip(row_x, row_y))
    return value, [[2.0 * scale * (a - b) for a, b in zip(row_x, row_y)] for row_x, row_y in zip(x, y)]


def tied_inputs():
    """Small float64 inputs with ties: repeated output and anchor rows (equal Theta), a zero output row
    (Theta = 0), relaxed codes equal to their B and predicted labels equal to the labels in places, tied S."""
    features = torch.tensor([[0.5, -1.0, 0.25, 0.0], [0.5, -1.0, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0]],
                            dtype=torch.float64)
    anchor_features = torch.tensor([[1.0, 0.5, -0.5, 2.0], [1.0, 0.5, -0.5, 2.0], [-0.75, 0.25, 1.0, 0.0],
                                    [0.0, -1.5, 0.5, 0.25]], dtype=torch.float64)
    relaxed = torch.tensor([[0.5, -0.5, 1.0], [0.5, -0.5, 1.0], [0.0, 0.25, -1.0]], dtype=torch.float64)
    anchor_codes = torch.tensor([[1.0, -1.0, 0.5], [1.0, -1.0, 0.5], [-0.5, 0.75, 1.0], [0.25, 0.0, -1.0]],
                                dtype=torch.float64)
    S = torch.tensor([[1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    codes = torch.tensor([[1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, -1.0]], dtype=torch.float64)
    predicted = torch.tensor([[0.5, 1.0], [0.5, 1.0], [0.25, 0.0]], dtype=torch.float64)
    labels = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    return features, anchor_features, relaxed, anchor_codes, S, codes, predicted, labels


def assert_close(actual, expected):
    assert actual == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("form", ["likelihood", "squared"])
def test_ssah_pairwise_terms_match_a_loop_over_pairs(form, reduction):
    """J_pair's value and gradient w.r.t. the network's outputs, for every form and reduction, against loops."""
    features, anchors, _, _, S, _, _, _ = tied_inputs()
    outputs = torch.cat([features, torch.randn(2, 4, generator=torch.Generator().manual_seed(0),
                                               dtype=torch.float64)]).requires_grad_()
    S = torch.cat([S, torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]], dtype=torch.float64)])
    value = ssah_pairwise_loss(outputs, anchors, S, form=form, reduction=reduction)
    (gradient,) = torch.autograd.grad(value, outputs)
    expected_value, expected_gradient = reference_pairwise(outputs.tolist(), anchors.tolist(), S.tolist(), form,
                                                           reduction)
    assert_close(value.item(), expected_value)
    assert_close(gradient.flatten().tolist(), [g for row in expected_gradient for g in row])
    assert torch.equal(gradient[0], gradient[1])                                # tied rows, tied gradients


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("form", ["likelihood", "squared"])
def test_ssah_network_loss_matches_the_formula_in_value_and_gradient(form, reduction):
    """Equation (1)'s weighted total and its gradient w.r.t. the features, the relaxed codes and the predicted
    labels, against loops: the pairwise, quantization and label terms share one reduction; J_adv enters as given."""
    features, anchor_features, relaxed, anchor_codes, S, codes, predicted, labels = tied_inputs()
    outputs = [t.clone().requires_grad_() for t in (features, relaxed, predicted)]
    weights = dict(alpha=2.0, gamma=3.0, beta=0.5, eta=0.25, delta=7.0)
    terms = ssah_network_loss(*outputs, anchor_features=anchor_features, anchor_codes=anchor_codes, similarity=S,
                              codes=codes, labels=labels, weights=weights, form=form, reduction=reduction,
                              adversarial=torch.tensor(1.5, dtype=torch.float64))
    gradients = torch.autograd.grad(terms["total"], outputs)
    feature_pairs, feature_gradient = reference_pairwise(features.tolist(), anchor_features.tolist(), S.tolist(),
                                                         form, reduction)
    code_pairs, code_gradient = reference_pairwise(relaxed.tolist(), anchor_codes.tolist(), S.tolist(), form,
                                                   reduction)
    quantization, quantization_gradient = reference_squares(relaxed.tolist(), codes.tolist(), reduction)
    label, label_gradient = reference_squares(predicted.tolist(), labels.tolist(), reduction)
    for name, expected in dict(feature_pairs=feature_pairs, code_pairs=code_pairs, quantization=quantization,
                               label=label).items():
        assert_close(terms[name].item(), expected)
    assert_close(terms["total"].item(), 2 * feature_pairs + 3 * code_pairs + 0.5 * quantization + 0.25 * label
                 + 7 * 1.5)
    expected_gradients = ([[2 * g for g in row] for row in feature_gradient],
                          [[3 * g + 0.5 * q for g, q in zip(row_g, row_q)]
                           for row_g, row_q in zip(code_gradient, quantization_gradient)],
                          [[0.25 * g for g in row] for row in label_gradient])
    for gradient, expected in zip(gradients, expected_gradients):
        assert_close(gradient.flatten().tolist(), [g for row in expected for g in row])


def test_the_published_reduction_is_half_the_papers_sum_for_every_term_but_the_adversarial_one():
    """lelan-li/SSAH's mse_criterion (tf.nn.l2_loss) halves the sum of each of the four terms alike, so their
    relative weights are the paper's sums'."""
    features, anchor_features, relaxed, anchor_codes, S, codes, predicted, labels = tied_inputs()
    weights = dict(alpha=1.0, gamma=1.0, beta=1.0, eta=1.0, delta=1.0)
    terms = {reduction: ssah_network_loss(features, relaxed, predicted, anchor_features=anchor_features,
                                          anchor_codes=anchor_codes, similarity=S, codes=codes, labels=labels,
                                          weights=weights, form="squared", reduction=reduction,
                                          adversarial=torch.tensor(0.75, dtype=torch.float64))
             for reduction in REDUCTIONS}
    for name in ("feature_pairs", "code_pairs", "quantization", "label"):
        assert_close(terms["half_sum"][name].item(), 0.5 * terms["sum"][name].item())
    for reduction in REDUCTIONS:
        assert terms[reduction]["adversarial"].item() == 0.75
    assert inspect.signature(train_ssah).parameters["reduction"].default == "sum"       # the paper
    assert inspect.signature(ssah_pairwise_loss).parameters["reduction"].default == "sum"


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
    it untouched as in the published code (features fed to the discriminator as data)."""
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
    path, samples = sorted(tmp_path.iterdir())          # the checkpoint, and the samples it was trained on
    assert path.name.startswith("ssah+_16bits_") and samples.name.startswith("ssah+_samples_16bits_")
    with pytest.raises(TypeError, match="CrossModalHashing .DCMH. or SSAHModel"):
        fit_cmla_training(data, model.image, num_adversarial=4, epochs=1)


def test_ssah_bad_inputs_are_clear_errors(ssah_pairs):
    model, _, data = ssah_pairs
    with pytest.raises(ValueError, match="pairwise must be one of"):
        fit_ssah(data, bits=8, epochs=1, pairwise="hinge")
    with pytest.raises(ValueError, match="reduction must be one of"):
        fit_ssah(data, bits=8, epochs=1, reduction="average")
    with pytest.raises(ValueError, match="reduction must be one of"):
        ssah_pairwise_loss(torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(2, 4), reduction="l2")
    with pytest.raises(ValueError, match=r"reduction must be one of \('sum', 'half_sum'\)"):
        ssah_pairwise_loss(torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(2, 4), reduction="mean")   # deleted
    with pytest.raises(ValueError, match=r"labels must be \(N, 4\)"):
        model.label.outputs(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"texts must be \(N, 14\)"):
        model.text.hash_logits(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="4 classes but the model's label network takes 3"):
        train_ssah(SSAHModel(bits=8, text_dim=14, num_labels=3, in_channels=1, hidden=32), data.train, epochs=1)
    with pytest.raises(ValueError, match="modality must be"):
        model.discriminator("audio")
