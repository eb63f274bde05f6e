"""Adversarial training (CgAT, ATRDH): the objectives against hand-written references, the training code
table, bit-identical resume, determinism, the eps-ball of the inner attacks, robustness, clear errors."""

import copy
from fractions import Fraction

import pytest
import torch
from helpers import all_images, same_weights, sign_codes, stripes, stripes_data

from advhash.attacks import CenterGuidedAttack
from advhash.checkpoint import load_checkpoint
from advhash.codes import center_codes
from advhash.defenses import ATRDH, DEFENSES, CgAT, build_defense, fit_defended_model, model_digest
from advhash.losses import build_loss
from advhash.metrics import mean_average_precision
from advhash.train import encode, fit_hashing_model, train_hashing

BITS, CLASSES = 8, 4
SMALL_PROTOTYPES = (32,)  # ATRDH's prototype network, instead of the published (4096, 512)
pytestmark = pytest.mark.usefixtures("one_thread")


def build(name, num_train, **kwargs):
    """A defense by name, with ATRDH's prototype network kept small."""
    if name == "atrdh":
        kwargs.setdefault("prototype_hidden", SMALL_PROTOTYPES)
    return build_defense(name, num_train=num_train, bits=BITS, num_classes=CLASSES, **kwargs)


@pytest.fixture(scope="module")
def base(one_thread):
    """The clean model the defenses fine-tune: DPSH on 128 stripes (clean mAP ~1), and its data."""
    data = stripes_data(stripes(128), stripes(32, seed=1))
    model, _ = fit_hashing_model(data, method="dpsh", bits=BITS, epochs=10, batch_size=32, lr=0.05)
    return model.eval(), data


# --- the objectives, against hand-written references -----------------------------------------------------
def reference_center_codes(labels, table_codes, table_labels, variant):
    """CgAT Theorem 1, one item and bit at a time in exact fractions: sign(sum_P w+ b - sum_N w- b) with
    w+ = Jaccard / its sum ("paper") or 1/|P| ("official"), w- = 1/|N|; a tie is +1 ("paper") or 0, and
    an item without positives or negatives gets the all-zero code ("official")."""
    centers = []
    for y in labels.int().tolist():
        positives, negatives = [], []
        for code, other in zip(table_codes.int().tolist(), table_labels.int().tolist()):
            shared = sum(a * b for a, b in zip(y, other))
            union = sum(max(a, b) for a, b in zip(y, other))
            if shared:
                positives.append((Fraction(shared, union) if variant == "paper" else Fraction(1), code))
            else:
                negatives.append(code)
        total = sum(weight for weight, _ in positives)
        center = []
        for k in range(BITS):
            direction = sum(weight * code[k] for weight, code in positives) / total if positives else Fraction(0)
            direction -= Fraction(sum(code[k] for code in negatives), len(negatives)) if negatives else 0
            if variant == "paper":
                center.append(1.0 if direction >= 0 else -1.0)
            else:
                center.append(float((direction > 0) - (direction < 0)) if positives and negatives else 0.0)
        centers.append(center)
    return torch.tensor(centers)


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_cgat_objective_is_the_hashing_loss_minus_the_center_alignment_of_adversarial_codes(base, variant,
                                                                                            inner_attacks):
    train = stripes(48, seed=2, multi_label=True)
    model = copy.deepcopy(base[0])
    loss = build_loss("dpsh", num_train=48, bits=BITS, num_classes=CLASSES)
    defense = CgAT(num_train=48, bits=BITS, num_classes=CLASSES, steps=3, weight=0.5, variant=variant)
    defense.prepare(model, train, seed=0)
    with torch.no_grad():
        table = sign_codes(model.eval().hash_logits(all_images(train)))         # prepared table: eval-mode codes
    model.train()
    fresh_loss = copy.deepcopy(loss)
    indices = torch.randperm(48, generator=torch.Generator().manual_seed(0))[:12]
    images, labels = all_images(train)[indices], train.labels[indices]

    value = defense.batch_loss(model, loss, images, labels, indices, step=0)

    (attack, attacked, guide, adversarial), = inner_attacks
    assert isinstance(attack, CenterGuidedAttack) and attack.steps == 3
    assert torch.equal(attacked, images) and not torch.equal(adversarial, images)
    assert torch.equal(guide, reference_center_codes(labels, table, train.labels, variant)), \
        "the attack steers away from the center codes of the table before the batch"
    with torch.no_grad():
        relaxed = model(images)                                                 # train mode, as in the loop
        table[indices] = sign_codes(relaxed)
        centers = reference_center_codes(labels, table, train.labels, variant)  # after the batch's update
        assert len(centers.unique(dim=0)) > 1
        alignment = (model(adversarial) * centers).mean()
        expected = fresh_loss(relaxed, labels, indices) - 0.5 * alignment
    assert torch.equal(defense.code_table, table)
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def dph_pairs(codes, other_codes, labels):
    """sum_ij (u_i . v_j / K - (2 S_ij - 1))^2 / (B * B), one pair at a time."""
    codes, other_codes, labels = codes.double().tolist(), other_codes.double().tolist(), labels.tolist()
    total = 0.0
    for u, y in zip(codes, labels):
        for v, y_other in zip(other_codes, labels):
            similar = any(a and b for a, b in zip(y, y_other))
            total += (sum(a * b for a, b in zip(u, v)) / BITS - (1.0 if similar else -1.0)) ** 2
    return total / (len(codes) * len(other_codes))


def test_atrdh_objective_is_dph_plus_the_adversarial_pairwise_term(base, inner_attacks):
    train = stripes(48, seed=2, multi_label=True)
    model = copy.deepcopy(base[0]).train()
    loss = build_loss("dph", num_train=48, bits=BITS, num_classes=CLASSES, pairs="batch")
    defense = ATRDH(num_train=48, bits=BITS, num_classes=CLASSES, steps=3, weight=2.0,
                    prototype_hidden=SMALL_PROTOTYPES)
    defense.prepare(model, train, seed=0)
    indices = torch.randperm(48, generator=torch.Generator().manual_seed(0))[:12]
    images, labels = all_images(train)[indices], train.labels[indices]
    # the prototype network's step, by hand: Adam(lr, betas (0.5, 0.999)) on the least-squares objective
    targets = defense.target_labels(12, step=4)
    assert all(row.sum() > 0 and any(torch.equal(row, y) for y in train.labels) for row in targets)
    prototype_net = copy.deepcopy(defense.prototype_net)
    optimizer = torch.optim.Adam(prototype_net.parameters(), lr=1e-4, betas=(0.5, 0.999))
    prototypes = prototype_net(targets)
    similarity = 2 * (targets @ train.labels.T > 0).float() - 1
    fit = (prototypes @ defense.code_table.T / BITS - similarity).pow(2).mean()
    (fit + 1e-4 * (prototypes - sign_codes(prototypes).detach()).pow(2).mean()).backward()
    optimizer.step()

    value = defense.batch_loss(model, loss, images, labels, indices, step=4)

    assert same_weights(defense.prototype_net, prototype_net)
    (attack, _, guide, adversarial), = inner_attacks
    assert attack.toward, "ATRDH's inner attack is targeted"
    with torch.no_grad():
        assert torch.equal(guide, sign_codes(prototype_net(targets))), "toward the prototypes sign(P(t))"
        relaxed, adversarial_relaxed = model(images), model(adversarial)
    expected = dph_pairs(relaxed, relaxed, labels) + 2.0 * dph_pairs(adversarial_relaxed, relaxed, labels)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert torch.equal(defense.code_table[indices], sign_codes(relaxed))


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_prepare_fills_the_tables_with_eval_mode_codes_and_a_batch_refreshes_its_rows(base, name):
    train = stripes(40, seed=3, multi_label=True)
    model = copy.deepcopy(base[0])
    with torch.no_grad():
        eval_codes = sign_codes(model.eval().hash_logits(all_images(train)))
        train_mode_codes = sign_codes(copy.deepcopy(model).train().hash_logits(all_images(train)))
    assert not torch.equal(eval_codes, train_mode_codes), "the check tells the two modes apart"
    model.train()
    defense = build(name, 40, steps=1)
    defense.prepare(model, train, seed=0)
    assert model.training, "prepare restores the model's mode"
    assert torch.equal(defense.code_table, eval_codes)
    assert torch.equal(defense.label_table, train.labels)

    indices = torch.tensor([7, 0, 31, 12])
    images = all_images(train)[indices]
    defense.batch_loss(model, build_loss("dph", num_train=40, bits=BITS, num_classes=CLASSES),
                       images, train.labels[indices], indices, step=0)
    with torch.no_grad():
        expected = eval_codes.clone()
        expected[indices] = sign_codes(model(images))
    assert torch.equal(defense.code_table, expected)


# --- checkpoints: resume, load, refuse ---------------------------------------------------------------------
@pytest.mark.parametrize("name, method", [("cgat", "dpsh"), ("atrdh", "dph")])
def test_interrupted_adversarial_run_resumes_to_identical_weights(tmp_path, base, name, method):
    model, data = base

    def run(epochs, checkpoint_dir=None):
        defense = build(name, len(data.train), steps=2)
        robust, history = fit_defended_model(data, model, defense, method=method, epochs=epochs,
                                             checkpoint_dir=checkpoint_dir, batch_size=32, lr=0.05, seed=3)
        return robust, history, defense

    uninterrupted, history, defense = run(2)
    run(1, tmp_path)                                                              # "interrupted" after epoch 1
    (path,) = tmp_path.iterdir()
    assert load_checkpoint(path)["epoch"] == 1
    resumed, resumed_history, resumed_defense = run(2, tmp_path)
    assert same_weights(uninterrupted, resumed)
    assert [r["loss"] for r in resumed_history] == [r["loss"] for r in history]
    assert torch.equal(resumed_defense.code_table, defense.code_table)
    if name == "atrdh":
        assert same_weights(resumed_defense.prototype_net, defense.prototype_net)


def test_finished_adversarial_checkpoint_is_loaded_not_retrained(tmp_path, base):
    model, data = base
    settings = dict(method="dpsh", epochs=1, checkpoint_dir=tmp_path, batch_size=32)
    trained, _ = fit_defended_model(data, model, build("cgat", len(data.train), steps=2), **settings)
    (path,) = tmp_path.iterdir()
    stamp = path.stat().st_mtime_ns
    again, history = fit_defended_model(data, model, build("cgat", len(data.train), steps=2), **settings)
    assert path.stat().st_mtime_ns == stamp
    assert len(history) == 1 and same_weights(trained, again)
    assert not again.training


def test_other_defense_settings_get_their_own_checkpoint_file(tmp_path, base):
    model, data = base
    settings = dict(method="dpsh", epochs=1, checkpoint_dir=tmp_path, batch_size=32)
    fit_defended_model(data, model, build("cgat", len(data.train), steps=1, eps=8 / 255), **settings)
    (first,) = tmp_path.iterdir()
    before = first.read_bytes()
    fit_defended_model(data, model, build("cgat", len(data.train), steps=1, eps=4 / 255), **settings)
    assert first.read_bytes() == before
    assert len(list(tmp_path.iterdir())) == 2
    assert all(path.name.startswith("cgat_dpsh_8bits_small_cnn_") for path in tmp_path.iterdir())


def test_checkpoint_of_another_defense_run_is_refused_not_overwritten(tmp_path, base):
    model, data = base
    path = tmp_path / "robust.pt"

    def run(defense, epochs=2):
        loss = build_loss("dpsh", num_train=len(data.train), bits=BITS, num_classes=CLASSES)
        train_hashing(copy.deepcopy(model), loss, data.train, epochs=epochs, batch_size=64, checkpoint_path=path,
                      defense=defense)

    run(build("cgat", len(data.train), steps=1, eps=8 / 255), epochs=1)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"different run \(defense: .*'eps': 0.0313.* vs now .*'eps': 0.0156"):
        run(build("cgat", len(data.train), steps=1, eps=4 / 255))
    with pytest.raises(ValueError, match=r"different run \(defense: .*'name': 'cgat'.* vs now .*'name': 'atrdh'"):
        run(build("atrdh", len(data.train), steps=1, eps=8 / 255))
    with pytest.raises(ValueError, match=r"different run \(defense: .*'name': 'cgat'.* vs now None"):
        run(None)                                                                 # a clean run on a defended one
    assert path.read_bytes() == before


# --- determinism and the inner attacks ---------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_same_seed_same_weights_other_seed_other_weights(base, name):
    model, data = base
    digest = model_digest(model)

    def run(seed):
        return fit_defended_model(data, model, build(name, len(data.train), steps=2), method="dpsh", epochs=1,
                                  batch_size=32, seed=seed)[0]

    first = run(0)
    assert same_weights(first, run(0))
    assert not same_weights(first, run(1))
    assert model_digest(model) == digest, "the base model is copied, not trained"


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_inner_attacks_stay_in_the_eps_ball_with_the_defense_settings(base, name, inner_attacks):
    model, data = base
    eps = 4 / 255
    defense = build(name, len(data.train), eps=eps, alpha=1 / 255, steps=3)
    fit_defended_model(data, model, defense, method="dpsh", epochs=1, batch_size=32)
    assert len(inner_attacks) == len(data.train) // 32                           # one attack per batch
    for attack, images, _, adversarial in inner_attacks:
        assert (attack.eps, attack.alpha, attack.steps, attack.random_start) == (eps, 1 / 255, 3, True)
        assert attack.model_mode == "train"
        assert (adversarial - images).abs().max() <= eps + 1e-6
        assert adversarial.min() >= 0 and adversarial.max() <= 1
        assert not torch.equal(adversarial, images)
    starts = [attack.seed for attack, *_ in inner_attacks]
    assert len(set(starts)) == len(starts), "every batch draws its own random start"


# --- robustness ----------------------------------------------------------------------------------------
def test_cgat_fine_tuning_makes_the_model_more_robust_to_the_center_guided_attack(base):
    """Against the same attack (eps 16/255, PGD-10 away from each model's own center codes), CgAT's
    fine-tuning keeps the clean mAP and raises the adversarial one well above a clean fine-tuning
    of the same length (on these stripes: ~0.83 vs ~0.52; the base model: 0.56)."""
    model, data = base
    eps = 16 / 255
    queries = all_images(data.query)

    def adversarial_map(victim):
        db_codes = encode(victim, data.database)
        centers = center_codes(data.query.labels, db_codes, data.database.labels)
        attack = CenterGuidedAttack(victim, eps=eps, alpha=eps / 4, steps=10, random_start=False)
        clean = mean_average_precision(encode(victim, queries), db_codes, data.query.labels, data.database.labels)
        attacked = encode(victim, attack(queries, centers))
        return clean, mean_average_precision(attacked, db_codes, data.query.labels, data.database.labels)

    defense = CgAT(num_train=len(data.train), bits=BITS, num_classes=CLASSES, eps=eps, alpha=eps / 4, steps=3)
    robust, _ = fit_defended_model(data, model, defense, method="dpsh", epochs=6, batch_size=32, lr=0.05)
    clean_tuned = copy.deepcopy(model)
    train_hashing(clean_tuned, build_loss("dpsh", num_train=len(data.train), bits=BITS, num_classes=CLASSES),
                  data.train, epochs=6, batch_size=32, lr=0.05)
    robust_clean, robust_adversarial = adversarial_map(robust)
    _, tuned_adversarial = adversarial_map(clean_tuned)
    assert robust_clean > 0.95, f"CgAT should keep the clean mAP, got {robust_clean:.3f}"
    assert robust_adversarial > tuned_adversarial + 0.15, \
        f"adversarial mAP: CgAT {robust_adversarial:.3f} vs clean fine-tuning {tuned_adversarial:.3f}"


# --- errors ---------------------------------------------------------------------------------------------
def test_a_defense_built_for_another_split_size_is_refused(base):
    model, data = base
    with pytest.raises(ValueError, match=r"num_train=100 but the training split has 128 items.*num_train=len"):
        fit_defended_model(data, model, build("cgat", 100), method="dpsh", epochs=1)


def test_a_defense_built_for_other_bits_is_refused(base):
    model, data = base
    defense = CgAT(num_train=len(data.train), bits=16, num_classes=CLASSES)
    with pytest.raises(ValueError, match="built for 16 bits, the model has 8"):
        fit_defended_model(data, model, defense, method="dpsh", epochs=1)


def test_registry_builds_defenses_by_name_with_the_published_defaults():
    assert {"cgat": CgAT, "atrdh": ATRDH}.items() <= DEFENSES.items()
    for name, cls in DEFENSES.items():
        defense = build(name, 10)
        assert type(defense) is cls and defense.config["name"] == name
        assert (defense.eps, defense.alpha, defense.steps, defense.random_start, defense.model_mode) == \
            (8 / 255, 2 / 255, 7, True, "train")
        assert defense.code_table.shape == (10, BITS) and defense.label_table.shape == (10, CLASSES)
    assert build("cgat", 10, weight=2.0).weight == 2.0
    with pytest.raises(ValueError, match=r"unknown defense 'trades'; choose one of \[.*'atrdh', 'cgat'.*\]"):
        build_defense("trades", num_train=10, bits=BITS, num_classes=CLASSES)


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_bad_settings_are_clear_errors(name):
    for eps in (8, -0.1):
        with pytest.raises(ValueError, match=r"eps is in \[0,1\] pixel units, e.g. 8/255"):
            build(name, 10, eps=eps)
    with pytest.raises(ValueError, match=r"model_mode must be one of \('eval', 'train'\); got 'test'"):
        build(name, 10, model_mode="test")
