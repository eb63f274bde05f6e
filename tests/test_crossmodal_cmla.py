"""CMLA (advhash.crossmodal.cmla): its objective (both inner products, both distortion units) and the gradient
of that objective through the [0, 1] box, against plain loops; the attack's iterates against Adam written out
on those loops; the distortion D; the attack's published behaviour on DCMH (cross-modal mAP falls far more than
intra-modal mAP, at a small distortion) under both constraints, its samples kept in [0, 1], its snapshots, and
the cross-modal package's clear errors."""

import math

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

SCALES = {"half": 0.5, "full": 1.0}                 # c of Gamma, Theta = c H^ B^T: the paper, the published code
UNITS = {("image", "unit"): 1.0, ("image", "levels"): 255.0, ("text", "unit"): 1.0, ("text", "levels"): 1.0}


def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def _sign(v):
    return (v > 0) - (v < 0)


def reference_likelihoods(H, other, own, S, c):
    """J_inter, J_intra and their gradients with respect to H, written from the formulas: Gamma_ij =
    c sum_k H_ik other_jk, Theta_ij = c sum_k H_ik own_jk, J_inter = mean(S Gamma + log(1 + e^-Gamma)),
    J_intra = mean(log(1 + e^Theta) - S Theta); d/dGamma = S - sigmoid(-Gamma), d/dTheta = sigmoid(Theta) - S."""
    n, m, bits = len(H), len(other), len(H[0])
    inter = intra = 0.0
    d_inter = [[0.0] * bits for _ in range(n)]
    d_intra = [[0.0] * bits for _ in range(n)]
    for i in range(n):
        for j in range(m):
            gamma = c * sum(H[i][k] * other[j][k] for k in range(bits))
            theta = c * sum(H[i][k] * own[j][k] for k in range(bits))
            inter += S[i][j] * gamma + _log1p_exp(-gamma)
            intra += _log1p_exp(theta) - S[i][j] * theta
            for k in range(bits):
                d_inter[i][k] += (S[i][j] - _sigmoid(-gamma)) * c * other[j][k] / (n * m)
                d_intra[i][k] += (_sigmoid(theta) - S[i][j]) * c * own[j][k] / (n * m)
    return inter / (n * m), intra / (n * m), d_inter, d_intra


def reference_objective(x, delta, W, labels, other, own, c, u):
    """The whole attack objective at perturbation ``delta`` and its gradient with respect to delta, in loops:
    x^ = min(max(x + delta, 0), 1) (gradient 1 where 0 <= x + delta <= 1, bounds included, as tf.clip_by_value),
    H = tanh(x^ W), total = J_inter + J_intra + u mean|x^ - x|. x, delta: n rows of P floats; W: P x K."""
    n, P, K = len(x), len(x[0]), len(W[0])
    xhat = [[min(max(x[i][p] + delta[i][p], 0.0), 1.0) for p in range(P)] for i in range(n)]
    inside = [[1.0 if 0.0 <= x[i][p] + delta[i][p] <= 1.0 else 0.0 for p in range(P)] for i in range(n)]
    H = [[math.tanh(sum(xhat[i][p] * W[p][k] for p in range(P))) for k in range(K)] for i in range(n)]
    S = [[1.0 if any(a * b > 0 for a, b in zip(labels[i], labels[j])) else 0.0 for j in range(n)] for i in range(n)]
    inter, intra, d_inter, d_intra = reference_likelihoods(H, other, own, S, c)
    distortion = u * sum(abs(xhat[i][p] - x[i][p]) for i in range(n) for p in range(P)) / (n * P)
    grad = [[inside[i][p] * (sum((d_inter[i][k] + d_intra[i][k]) * (1 - H[i][k] ** 2) * W[p][k] for k in range(K)) +
                             u * _sign(xhat[i][p] - x[i][p]) / (n * P)) for p in range(P)] for i in range(n)]
    return inter + intra + distortion, grad, xhat


class LinearHash(torch.nn.Module):
    """z(x) = flatten(x) W: a network whose input gradient the loops above can write out."""

    def __init__(self, weight):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(weight, dtype=torch.float32))
        self.bits = len(weight[0])

    def hash_logits(self, inputs):
        return inputs.flatten(1) @ self.weight


# a tiny problem with ties: rows 0 and 1 repeat (inputs, labels, codes), row 3 has no label, the inputs sit on the
# bounds 0 and 1, one tag at 0.995 leaves the box after a step; W is fixed so that no gradient is near zero
LABELS = [[1, 0], [1, 0], [0, 1], [0, 0]]
OTHER = [[1, -1, 1], [1, -1, 1], [-1, -1, 1], [1, 1, -1]]
OWN = [[1, 1, 1], [1, 1, 1], [-1, 1, -1], [-1, -1, -1]]
INPUTS = {"text": [[0, 1, 0.995, 0, 1], [0, 1, 0.995, 0, 1], [1, 0, 0.995, 0.25, 0], [0, 0, 1, 1, 0]],
          "image": [[0, 1, 0.5, 0.25], [0, 1, 0.5, 0.25], [1, 0.75, 0, 0.5], [0.5, 0, 1, 1]]}
WEIGHTS = {"text": [[0.9, -0.5, 0.3], [-0.4, 0.8, 0.6], [0.7, 0.5, -0.9], [-0.6, -0.7, 0.4], [0.5, 0.3, 0.8]],
           "image": [[0.9, -0.5, 0.3], [-0.4, 0.8, 0.6], [0.7, 0.5, -0.9], [-0.6, -0.7, 0.4]]}


def f32(rows):
    """The float32 values of ``rows``, as Python floats: what the attack (in float32) sees."""
    return torch.tensor(rows, dtype=torch.float32).double().tolist()


def as_inputs(modality, rows):
    tensor = torch.tensor(rows, dtype=torch.float32)
    return tensor.view(len(rows), 1, 2, 2) if modality == "image" else tensor


def test_cmla_box_clips_to_0_1_with_the_gradient_of_tf_clip_by_value():
    inputs = torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0, 0.5, 0.5])
    delta = torch.tensor([-0.25, 0.0, 0.5, 0.0, 0.25, 0.0, -0.5], requires_grad=True)
    adversarial = CMLA.adversarial(inputs, delta)
    assert adversarial.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 0.5, 0.0]
    adversarial.sum().backward()
    # 1 on [0, 1] with its bounds (a tag or pixel at 0 or 1 moves from delta = 0), 0 outside
    assert delta.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("inner_product", ["half", "full"])
def test_cmla_likelihood_terms_and_their_gradients_match_loops(inner_product):
    c = SCALES[inner_product]
    g = torch.Generator().manual_seed(3)
    H = torch.rand(6, 8, generator=g, dtype=torch.float64) * 2 - 1
    H[1] = H[0]                                                   # tied rows
    H[2, :4] = 0.0                                                # zeros: ties inside the products
    other = torch.where(torch.rand(6, 8, generator=g) < 0.5, -1.0, 1.0).double()
    own = torch.where(torch.rand(6, 8, generator=g) < 0.5, -1.0, 1.0).double()
    other[3], own[3] = other[2], own[2]
    H[4] = 0.0                                                    # Gamma = Theta = 0 on a whole row
    labels = (torch.rand(6, 3, generator=g) < 0.5).double()
    labels[1], labels[5] = labels[0], 0.0
    S = relevance(labels, labels).double()
    inter, intra, d_inter, d_intra = reference_likelihoods(H.tolist(), other.tolist(), own.tolist(), S.tolist(), c)
    H.requires_grad_(True)
    mine_inter = cmla_inter_loss(H, other, S, scale=c)
    mine_intra = cmla_intra_loss(H, own, S, scale=c)
    assert mine_inter.item() == pytest.approx(inter, rel=1e-12) and mine_intra.item() == pytest.approx(intra, rel=1e-12)
    grad_inter, = torch.autograd.grad(mine_inter, H)
    grad_intra, = torch.autograd.grad(mine_intra, H)
    torch.testing.assert_close(grad_inter, torch.tensor(d_inter, dtype=torch.float64), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad_intra, torch.tensor(d_intra, dtype=torch.float64), rtol=1e-12, atol=1e-14)
    if inner_product == "half":                                   # the default of the functions is the paper's 1/2
        assert cmla_inter_loss(H, other, S).item() == mine_inter.item()
        assert cmla_intra_loss(H, own, S).item() == mine_intra.item()
    # one similar pair: J_inter falls as the code leaves its partner, J_intra falls as it approaches its own
    code, one = torch.ones(1, 8, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)
    assert cmla_inter_loss(-code * 0.9, code, one, scale=c) < cmla_inter_loss(code * 0.9, code, one, scale=c)
    assert cmla_intra_loss(code * 0.9, code, one, scale=c) < cmla_intra_loss(-code * 0.9, code, one, scale=c)


@pytest.mark.parametrize("distortion_units", ["unit", "levels"])
@pytest.mark.parametrize("inner_product", ["half", "full"])
@pytest.mark.parametrize("modality", ["image", "text"])
def test_cmla_objective_and_its_input_gradient_match_loops(modality, inner_product, distortion_units):
    x_rows, W = f32(INPUTS[modality]), f32(WEIGHTS[modality])
    P = len(x_rows[0])
    # delta on every kind of entry: 0, onto a bound exactly, past a bound, inside
    delta_rows = [[0.0, 0.0, 0.5, -0.125][:P] + [0.0] * (P - 4), [0.25, -0.25, 0.0, 0.125][:P] + [-0.5] * (P - 4),
                  [0.0, 0.25, -0.25, 0.5][:P] + [0.0] * (P - 4), [-0.125, 0.0, 0.0, -1.0][:P] + [0.25] * (P - 4)]
    total, grad, xhat = reference_objective(x_rows, delta_rows, W, LABELS, OTHER, OWN, SCALES[inner_product],
                                            UNITS[modality, distortion_units])
    attack = CMLA(LinearHash(W), modality=modality, inner_product=inner_product, distortion_units=distortion_units)
    clean = as_inputs(modality, x_rows).double()
    delta = as_inputs(modality, delta_rows).double().requires_grad_(True)
    network = attack.network.double()
    adversarial = attack.adversarial(clean, delta)                # what CMLA.run feeds the network and the loss
    terms = attack.loss(torch.tanh(network.hash_logits(adversarial)), adversarial - clean,
                        torch.tensor(LABELS).double(), torch.tensor(OTHER).double(), torch.tensor(OWN).double())
    assert terms["total"].item() == pytest.approx(total, rel=1e-12)
    assert adversarial.flatten(1).tolist() == xhat
    mine, = torch.autograd.grad(terms["total"], delta)
    torch.testing.assert_close(mine.flatten(1), torch.tensor(grad, dtype=torch.float64), rtol=1e-10, atol=1e-13)


def reference_attack(x, W, c, u, *, lr, steps, max_noise=None):
    """Adam (beta 0.9, 0.999, eps 1e-8, as torch.optim.Adam) from delta = 0 on the loops' objective, delta clipped
    to [0, max_noise] after every step when given; the sample clamp(x + delta, 0, 1) and the loss of every step."""
    n, P = len(x), len(x[0])
    delta = [[0.0] * P for _ in range(n)]
    m = [[0.0] * P for _ in range(n)]
    v = [[0.0] * P for _ in range(n)]
    samples, losses = [], []
    for t in range(1, steps + 1):
        total, grad, _ = reference_objective(x, delta, W, LABELS, OTHER, OWN, c, u)
        losses.append(total)
        for i in range(n):
            for p in range(P):
                m[i][p] = 0.9 * m[i][p] + 0.1 * grad[i][p]
                v[i][p] = 0.999 * v[i][p] + 0.001 * grad[i][p] ** 2
                step = lr / (1 - 0.9 ** t) * m[i][p] / (math.sqrt(v[i][p] / (1 - 0.999 ** t)) + 1e-8)
                delta[i][p] -= step
                if max_noise is not None:
                    delta[i][p] = min(max(delta[i][p], 0.0), max_noise)
        samples.append([[min(max(x[i][p] + delta[i][p], 0.0), 1.0) for p in range(P)] for i in range(n)])
    return samples, losses


@pytest.mark.parametrize("modality,constraint,inner_product,distortion_units", [
    ("text", "clip", "full", "levels"), ("text", "penalty", "half", "unit"),
    ("image", "clip", "full", "levels"), ("image", "penalty", "half", "unit")])
def test_cmla_iterates_are_adam_on_the_objective_with_the_box_and_the_clip(modality, constraint, inner_product,
                                                                          distortion_units):
    x_rows, W = f32(INPUTS[modality]), f32(WEIGHTS[modality])
    lr, max_noise = (0.004, 0.01) if modality == "text" else (4 / 255, 10 / 255)
    samples, losses = reference_attack(x_rows, W, SCALES[inner_product], UNITS[modality, distortion_units], lr=lr,
                                       steps=4, max_noise=max_noise if constraint == "clip" else None)
    attack = CMLA(LinearHash(W), modality=modality, steps=4, lr=lr, constraint=constraint, max_noise=max_noise,
                  inner_product=inner_product, distortion_units=distortion_units)
    clean = as_inputs(modality, x_rows)
    adversarial = attack.set_pairs(torch.tensor(OTHER), torch.tensor(OWN))(clean, torch.tensor(LABELS),
                                                                          snapshot_steps=[1, 2, 3, 4])
    for t in range(1, 5):
        torch.testing.assert_close(attack.snapshots[t].flatten(1), torch.tensor(samples[t - 1]), rtol=0, atol=1e-6)
    assert torch.equal(adversarial, attack.snapshots[4]) and adversarial.min() >= 0 and adversarial.max() <= 1
    assert [row["loss"] for row in attack.history] == pytest.approx(losses, rel=1e-5)
    if modality == "text" and constraint == "clip":   # pushed up: the tag at 0.995 ends at 1, a tag at 1 stays 1
        assert adversarial[2, 2] == 1.0 and adversarial[0, 1] == 1.0 and (attack.snapshots[1][2, 2] < 1).item()


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
    assert (adversarial - texts).abs().max() > 0.1 and adversarial.min() >= 0 and adversarial.max() <= 1


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
def test_cmla_clip_keeps_the_published_one_sided_noise_bounds(pairs, modality):
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
    assert noise.min() >= 0 and noise.max() <= bound + 1e-6 and noise.abs().max() > bound / 2
    assert adversarial.min() >= 0 and adversarial.max() <= 1


@pytest.mark.parametrize("constraint", ["clip", "penalty"])
def test_cmla_adversarial_tags_stay_in_0_1_as_in_the_published_code(pairs, constraint):
    model, _, data = pairs
    query = encode_pairs(model, data.query)
    texts, labels = data.query.texts, data.query.labels
    # steps of 0.05: unboxed, the penalty's tags would reach -1.4 and 1.7 here, the clip's 1.01
    attack = CMLA(model.text, modality="text", steps=30, lr=0.05, constraint=constraint, intra_weight=0.0)
    adversarial = attack.set_pairs(query["image"], query["text"])(texts, labels)
    assert adversarial.min() >= 0 and adversarial.max() <= 1, (adversarial.min(), adversarial.max())
    if constraint == "clip":         # noise in [0, 0.01]: tags at 1 stay 1, tags at 0 rise by 0.01 at most
        assert (adversarial[texts == 1] == 1).all()
        assert 0.005 < adversarial[texts == 0].max() <= 0.01 + 1e-6 and adversarial[texts == 0].min() >= 0
    else:                            # the penalty moves tags both ways, as far as the bounds
        assert (adversarial[texts == 1] < 0.5).any() and (adversarial[texts == 0] > 0.5).any()
        assert (adversarial[texts == 1] == 0).any() and (adversarial[texts == 0] == 1).any()


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
    with pytest.raises(ValueError, match="inner_product must be one of"):
        CMLA(model.image, inner_product="quarter")
    with pytest.raises(ValueError, match="distortion_units must be one of"):
        CMLA(model.image, distortion_units="pixels")
    with pytest.raises(ValueError, match="one row of labels"):
        CMLA(model.image, steps=1).set_pairs(torch.ones(3, BITS), torch.ones(3, BITS))(torch.rand(3, 1, 16, 16),
                                                                                     torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        CMLA(model.image, steps=1).set_pairs(torch.ones(2, BITS), torch.ones(2, BITS))(
            torch.full((2, 1, 16, 16), 2.0), torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"tag vectors must be in \[0, 1\]"):
        CMLA(model.text, modality="text", steps=1).set_pairs(torch.ones(2, BITS), torch.ones(2, BITS))(
            torch.full((2, 14), 2.0), torch.ones(2, 4))
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
