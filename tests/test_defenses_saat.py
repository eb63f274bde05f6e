"""SAAT adversarial training (advhash.defenses.saat, Yuan et al., TIFS 2023): the objective against a
hand-written one with its inner attack steering away from the mainstay codes of the code table, a
bit-identical resume, read-only reuse of a finished run, and the registry's defaults."""

import copy

import pytest
import torch
from helpers import (DEFENSE_BITS, DEFENSE_CLASSES, all_images, published_tables_step, reference_mainstay_codes,
                     same_weights, sign_codes, stripes)

from advhash.attacks import SAAT
from advhash.checkpoint import load_checkpoint
from advhash.defenses import DEFENSES, SAATTraining, build_defense, fit_defended_model
from advhash.losses import build_loss

pytestmark = pytest.mark.usefixtures("one_thread")


# variant="published" (torch.sign's ties and the shared tables together): test_published_tables_share_one_storage
@pytest.mark.parametrize("method, step, variant", [("dpsh", 0, "paper"), ("hashnet", 400, "paper")])   # sqrt(3)
def test_saat_objective_is_hashing_minus_mainstay_alignment_plus_quantization(base, method, step, variant,
                                                                              inner_attacks):
    train = stripes(48, seed=2, multi_label=True)
    model = copy.deepcopy(base[0])
    loss = build_loss(method, num_train=48, bits=DEFENSE_BITS, num_classes=DEFENSE_CLASSES)
    scale = loss.scale(step)
    assert (scale == 1.0) == (method == "dpsh")
    defense = SAATTraining(num_train=48, bits=DEFENSE_BITS, num_classes=DEFENSE_CLASSES, steps=3, weight=0.5,
                           quantization_weight=0.3, variant=variant)
    tied = 1.0 if variant == "paper" else 0.0                  # a tied bit: +1 (paper), 0 (published, torch.sign)
    defense.prepare(model, train, seed=0)
    with torch.no_grad():
        table = sign_codes(model.eval().hash_logits(all_images(train)))          # prepared table: eval-mode codes
    model.train()
    fresh_loss = copy.deepcopy(loss)
    indices = torch.randperm(48, generator=torch.Generator().manual_seed(0))[:12]
    batch, labels = all_images(train)[indices], train.labels[indices]

    value = defense.batch_loss(model, loss, batch, labels, indices, step=step)

    (attack, attacked, guide, adversarial), = inner_attacks
    assert type(attack) is SAAT and not attack.toward and attack.variant == "paper", "the paper's and the code's"
    assert (attack.steps, attack.eps, attack.alpha, attack.random_start) == (3, 8 / 255, 2 / 255, True)
    assert (attack.scale_schedule, attack.fixed_scale, attack.model_mode) == ("fixed", 1.0, "train")
    assert attack.seed == defense.attack_seed(step) and not attack.keep_history
    assert torch.equal(attacked, batch) and not torch.equal(adversarial, batch)
    assert torch.equal(guide, reference_mainstay_codes(labels, table, train.labels, tied)), \
        "the attack steers away from the mainstay codes of the table before the batch"
    relaxed = model(batch, scale=scale)                                          # train mode, as in the loop
    table[indices] = sign_codes(relaxed.detach())
    mainstays = reference_mainstay_codes(labels, table, train.labels, tied)       # after the batch's update
    assert len(mainstays.unique(dim=0)) > 1
    adversarial_relaxed = model(adversarial, scale=scale)
    alignment = (adversarial_relaxed * mainstays).mean()
    quantization = (adversarial_relaxed - sign_codes(adversarial_relaxed.detach())).pow(2).mean()
    expected = fresh_loss(relaxed, labels, indices) - 0.5 * alignment + 0.3 * quantization
    assert torch.equal(defense.code_table, table)
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(0.3 * quantization.item()) > 1e-4 * abs(expected.item()), "the quantization term is visible"
    # the same gradient: nothing flows through the attack or through sign(h(x_adv))
    parameters = [p for p in model.parameters() if p.requires_grad]
    for got, want in zip(torch.autograd.grad(value, parameters), torch.autograd.grad(expected, parameters)):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)


def test_published_tables_share_one_storage_as_the_published_code(base, inner_attacks):
    """variant="published" (SAAT adv_training.py L64-74, L87-100), against the published step written plainly with
    ONE tensor standing for U_ben and the DPH loss's U: preinstalled with the training codes, the batch's signs
    written (L94) before the mainstay codes (L95), then its relaxed outputs by the loss (L97), whose table pairs
    with every training row (sum / (n B))."""
    train = stripes(48, seed=2, multi_label=True)
    model = copy.deepcopy(base[0])
    loss = build_loss("dph", num_train=48, bits=DEFENSE_BITS, num_classes=DEFENSE_CLASSES, pairs="table")
    defense = SAATTraining(num_train=48, bits=DEFENSE_BITS, num_classes=DEFENSE_CLASSES, steps=3,
                           variant="published")                 # shared tables; torch.sign, as adv_attack.py L30
    shared, indices, batch, labels, value = published_tables_step(defense, loss, model, train)   # U_ben = model.U
    assert torch.equal(loss.label_table, train.labels)

    (attack, _, guide, adversarial), = inner_attacks
    assert torch.equal(guide, reference_mainstay_codes(labels, shared, train.labels, 0.0))      # L87
    ben = model(batch)
    shared[indices] = sign_codes(ben.detach())                                                    # L94
    mainstays = reference_mainstay_codes(labels, shared, train.labels, 0.0)                       # L95
    shared[indices] = ben.detach()                                                                # L97: U[idx] = u
    similarity = 2 * (labels @ train.labels.T > 0).double() - 1
    hashing = ((ben.double() @ shared.double().T / DEFENSE_BITS - similarity) ** 2).sum() / (48 * len(indices))
    adv_code = model(adversarial)
    expected = hashing - (adv_code * mainstays).mean() + 1e-4 * ((adv_code - torch.sign(adv_code)) ** 2).mean()
    assert torch.equal(defense.code_table, shared), "the batch's rows hold relaxed outputs after the step"
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(TypeError, match="tables"):          # the storage is part of the variant, not an axis
        SAATTraining(num_train=4, bits=4, num_classes=2, tables="published")
    with pytest.raises(TypeError, match="inner_loss"):      # the inner loss is the paper's d_H in both variants
        SAATTraining(num_train=4, bits=4, num_classes=2, inner_loss="hag")
    with pytest.raises(ValueError, match=r"variant must be one of \('paper', 'published'\); got 'official'"):
        SAATTraining(num_train=4, bits=4, num_classes=2, variant="official")


def test_interrupted_saat_run_resumes_to_identical_weights(tmp_path, base):
    model, data = base

    def run(epochs, checkpoint_dir=None):
        defense = build_defense("saat", num_train=len(data.train), bits=DEFENSE_BITS, num_classes=DEFENSE_CLASSES,
                                steps=2)
        robust, history = fit_defended_model(data, model, defense, method="dph", epochs=epochs,
                                             checkpoint_dir=checkpoint_dir, batch_size=32, lr=0.05, seed=3)
        return robust, history, defense

    uninterrupted, history, defense = run(2)
    assert not same_weights(uninterrupted, model)
    run(1, tmp_path)                                                               # "interrupted" after epoch 1
    (path,) = tmp_path.iterdir()
    assert path.name.startswith(f"saat_dph_{DEFENSE_BITS}bits_small_cnn_") and load_checkpoint(path)["epoch"] == 1
    resumed, resumed_history, resumed_defense = run(2, tmp_path)
    assert same_weights(uninterrupted, resumed)
    assert [r["loss"] for r in resumed_history] == [r["loss"] for r in history]
    assert torch.equal(resumed_defense.code_table, defense.code_table)


def test_a_finished_defended_run_of_another_notebook_is_reused_read_only(tmp_path, base):
    model, data = base
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"

    def run(checkpoint_dir, weight=1.0):
        defense = build_defense("saat", num_train=len(data.train), bits=DEFENSE_BITS, num_classes=DEFENSE_CLASSES,
                                steps=2, weight=weight)
        return fit_defended_model(data, model, defense, method="dph", epochs=1, checkpoint_dir=checkpoint_dir,
                                  reuse_from=(first_dir,), batch_size=32, lr=0.05, seed=3)

    trained, history = run(first_dir)
    (written,) = first_dir.iterdir()
    stamp = written.stat().st_mtime_ns
    reused, reused_history = run(second_dir)
    assert same_weights(trained, reused) and reused_history == history
    assert written.stat().st_mtime_ns == stamp and not second_dir.exists()
    other, _ = run(second_dir, weight=2.0)                                         # other settings: trained anew
    assert len(list(second_dir.iterdir())) == 1 and not same_weights(other, trained)


def test_saat_training_registry_defaults_and_config():
    assert DEFENSES["saat"] is SAATTraining
    defense = build_defense("saat", num_train=10, bits=DEFENSE_BITS, num_classes=DEFENSE_CLASSES)
    assert type(defense) is SAATTraining
    assert (defense.eps, defense.alpha, defense.steps, defense.random_start, defense.model_mode) == \
        (8 / 255, 2 / 255, 7, True, "train")
    assert (defense.weight, defense.quantization_weight) == (1.0, 1e-4)
    assert defense.config == dict(name="saat", eps=8 / 255, alpha=2 / 255, steps=7, random_start=True,
                                  model_mode="train", weight=1.0, quantization_weight=1e-4, variant="paper")
    assert defense.code_table.shape == (10, DEFENSE_BITS) and defense.label_table.shape == (10, DEFENSE_CLASSES)
    with pytest.raises(ValueError, match=r"eps is in \[0,1\] pixel units"):
        build_defense("saat", num_train=10, bits=DEFENSE_BITS, num_classes=DEFENSE_CLASSES, eps=8)
