"""The shared base of every attack (advhash.attacks.base): one call shape for every registered attack,
the eps-ball and [0, 1], model modes, seeds, snapshots and history, ``perturb``'s batching, targets and
labels checks, the registry, and the perturbation statistics."""

import math

import pytest
import torch

from helpers import fresh_model, images, one_hot_labels, random_codes, table_victim

from advhash.attacks import (ATTACKS, DHTA, HAG, P2P, SAAT, SDHA, CenterGuidedAttack, HammingPGD, HashingAttack,
                             build_attack, check_labels, combine_perturbations, perturb, perturbation_stats)
from advhash.codes import sample_target_labels
from advhash.train import encode

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = {  # label -> (registry name, extra kwargs, targeted)
    "pgd": ("pgd", {}, False),
    "hag": ("hag", {}, False),
    "hag_fixed": ("hag", dict(scale_schedule="fixed"), False),
    "hag_published_code": ("hag", dict(variant="published"), False),
    "center": ("center", {}, False),
    "center_published": ("center", dict(variant="published"), False),
    "p2p": ("p2p", {}, True),
    "dhta": ("dhta", {}, True),
    "saat": ("saat", {}, False),
    "saat_targeted": ("saat", {}, True),
    "saat_paper": ("saat", dict(variant="paper"), False),
    "sdha": ("sdha", {}, False),
    "sdha_targeted": ("sdha", {}, True),
}
WITH_RANDOM_START = sorted(label for label, (name, _, _) in SETTINGS.items() if name != "sdha")


def targets_for(labels, victim, seed=0):
    """Target labels disjoint from ``labels``, carried by >= 9 database items of the victim."""
    return sample_target_labels(labels, victim.db_labels, min_items=9, generator=torch.Generator().manual_seed(seed))


def make_attack(label, victim, labels, **kwargs):
    """The attack of setting ``label`` on ``victim``, with targets for ``labels`` where targeted."""
    name, extra, targeted = SETTINGS[label]
    attack = build_attack(name, victim, **{**extra, **kwargs})
    return attack.set_targets(targets_for(labels, victim)) if targeted else attack


# --- one call shape ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_registered_attack_has_one_call_shape(name):
    """build_attack(name, victim), set_targets where required, then attack(images, labels) and
    perturb(attack, images, labels) in batches: the same images for attacks that treat images
    independently (SDHA's Adam steps see float rounding of the batched forward pass, which Adam's per-element
    normalization can enlarge: 3e-6 measured on an AMD EPYC; 1e-5 allowed), in the ball."""
    x, labels = images(10), one_hot_labels(10)
    victim = table_victim(fresh_model())

    def build():
        attack = build_attack(name, victim, steps=2)
        assert attack.victim is victim and attack.model is victim.model
        if attack.target_mode == "required":
            attack.set_targets(targets_for(labels, victim))
        return attack

    whole = build()(x, labels)
    batched = perturb(build(), x, labels, batch_size=3)
    if name == "sdha":
        assert torch.allclose(batched, whole, atol=1e-5, rtol=0)
    else:
        assert torch.equal(batched, whole)
    assert (whole - x).abs().max() <= 8 / 255 + 1e-6 and whole.min() >= 0 and whole.max() <= 1
    assert not torch.equal(whole, x)


def test_the_guide_is_computed_once_for_all_the_batches(monkeypatch):
    calls = []
    original = CenterGuidedAttack.guide

    def counting(self, labels, targets):
        calls.append(len(labels))
        return original(self, labels, targets)

    monkeypatch.setattr(CenterGuidedAttack, "guide", counting)
    attack = CenterGuidedAttack(table_victim(fresh_model()), steps=1)
    perturb(attack, images(10), one_hot_labels(10), batch_size=3)
    assert calls == [10]


def test_run_with_the_guide_of_the_call_is_the_call():
    """attack(images, labels) == attack.run(images, attack.guide(labels, targets)): the low-level path
    the adversarial trainers use takes the same steps."""
    x, labels = images(), one_hot_labels(6)
    victim = table_victim(fresh_model())
    for label in ("center", "dhta", "saat_targeted", "sdha"):
        first, second = make_attack(label, victim, labels, steps=3), make_attack(label, victim, labels, steps=3)
        guide = second.guide(labels, second.target_labels)
        assert guide is not None and len(guide) == len(x)
        assert torch.equal(first(x, labels), second.run(x, guide)), label


# --- the eps-ball and [0, 1] ---------------------------------------------------------------------------
@pytest.mark.parametrize("label, random_start", [(label, random_start) for label in sorted(SETTINGS)
                                                  for random_start in (False, True)
                                                  if label in WITH_RANDOM_START or not random_start])  # SDHA: none
def test_adversarial_images_stay_in_the_eps_ball_and_unit_range(label, random_start):
    x, labels = images(), one_hot_labels(6)
    x[0] = 0.0  # pixels at the borders of [0, 1]
    x[1] = 1.0
    eps = 8 / 255
    kwargs = dict(random_start=random_start) if label in WITH_RANDOM_START else {}
    attack = make_attack(label, table_victim(fresh_model()), labels, eps=eps, steps=5, **kwargs)
    adversarial = attack(x, labels)
    assert adversarial.shape == x.shape and adversarial.dtype == x.dtype
    assert (adversarial - x).abs().max() <= eps + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert not torch.equal(adversarial, x)


@pytest.mark.parametrize("label", sorted(SETTINGS))
def test_eps_zero_returns_the_input(label):
    x, labels = images(), one_hot_labels(6)
    kwargs = dict(random_start=True) if label in WITH_RANDOM_START else {}
    attack = make_attack(label, table_victim(fresh_model()), labels, eps=0.0, steps=3, **kwargs)
    assert torch.equal(attack(x, labels), x)


# --- model mode, determinism, snapshots, history -------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("model_mode", ["eval", "train"])
@pytest.mark.parametrize("was_training", [False, True])
def test_model_mode_is_used_during_the_attack_and_restored_after(name, model_mode, was_training):
    model = fresh_model()
    victim = table_victim(model)
    model.train(was_training)
    frozen_bn = model.backbone.features[0][1]
    frozen_bn.eval()  # a module in its own mode (e.g. frozen BatchNorm) keeps it
    seen = []
    model.hash_layer.register_forward_hook(lambda module, args, out: seen.append(module.training))
    labels = one_hot_labels(6)
    make_attack(name, victim, labels, steps=2, model_mode=model_mode)(images(), labels)
    assert seen and all(mode == (model_mode == "train") for mode in seen)
    assert model.training == was_training and model.backbone.training == was_training
    assert not frozen_bn.training


@pytest.mark.parametrize("label", WITH_RANDOM_START)
def test_same_seed_same_output_and_random_start_moves_the_start(label):
    x, labels = images(), one_hot_labels(6)
    victim = table_victim(fresh_model())

    def attack(**kwargs):
        return make_attack(label, victim, labels, steps=3, **kwargs)

    first, second = attack(random_start=True, seed=5), attack(random_start=True, seed=5)
    output = first(x, labels, snapshot_steps=[0])
    assert torch.equal(output, second(x, labels, snapshot_steps=[0]))
    other = attack(random_start=True, seed=6)
    assert not torch.equal(other(x, labels, snapshot_steps=[0]), output)
    assert not torch.equal(first.snapshots[0], other.snapshots[0])
    assert 0 < (first.snapshots[0] - x).abs().max() <= 8 / 255 + 1e-6
    plain = attack(random_start=False)
    plain(x, labels, snapshot_steps=[0])
    assert torch.equal(plain.snapshots[0], x)


def test_the_random_start_is_uniform_over_the_whole_eps_ball():
    """x_0 = x + u with u uniform in [-eps, eps] per pixel (Madry et al.'s PGD start), clipped to [0, 1]: both
    signs, the full radius, a quarter of the draws in each quarter of the ball. A start drawn in [0, eps] only
    would stay in the ball and pass every bound check, yet push every pixel brighter."""
    eps = 8 / 255
    middle = torch.full((64, 1, 16, 16), 0.5)                                       # 16,384 pixels, far from 0 and 1
    noise = HammingPGD(fresh_model(), eps=eps, steps=1, random_start=True, seed=0).random_init(middle) - middle
    assert noise.abs().max() <= eps + 1e-6
    assert noise.min() < -0.99 * eps and noise.max() > 0.99 * eps
    quarters = torch.histc(noise, bins=4, min=-eps, max=eps) / noise.numel()
    assert ((quarters > 0.23) & (quarters < 0.27)).all(), f"not uniform over [-eps, eps]: {quarters.tolist()}"
    assert abs(noise.mean()) < 0.02 * eps
    draws = torch.rand(middle.shape, generator=torch.Generator().manual_seed(0))    # the seed's own numbers
    assert torch.allclose(noise, eps * (2 * draws - 1), atol=1e-6), "x + eps (2 r - 1), r the seeded draws in order"
    at_bounds = torch.cat([torch.zeros(32, 1, 8, 8), torch.ones(32, 1, 8, 8)])
    start = HammingPGD(fresh_model(), eps=eps, steps=1, random_start=True, seed=0).random_init(at_bounds)
    assert start.min() >= 0 and start.max() <= 1, "clipped to [0, 1]"
    assert (start[:32] > 0).float().mean() > 0.4 and (start[32:] < 1).float().mean() > 0.4, "moved inward"


class Broken(HashingAttack):
    """An attack whose forward returns ``shift`` added to the images, unprojected: what a subclass with a bug in
    its step would do."""

    def __init__(self, model, shift, **kwargs):
        super().__init__(model, **kwargs)
        self.shift = shift

    def forward(self, images, guide):
        return images + self.shift


def test_the_base_refuses_an_attack_that_leaves_the_eps_ball_or_the_unit_range():
    """Every attack's result is checked after the call (the projection is each subclass's job): a step that leaves
    the ball, or pixels outside [0, 1], is an error naming the attack and the distance, never a result."""
    model, eps = fresh_model(), 4 / 255
    middle = torch.full((2, 1, 8, 8), 0.5)
    assert torch.equal(Broken(model, eps, eps=eps)(middle), middle + eps), "on the ball's edge: allowed"
    with pytest.raises(AssertionError, match=r"^Broken left the eps-ball or \[0, 1\] \(L-inf distance 0.0314\)"):
        Broken(model, 2 * eps, eps=eps)(middle)
    with pytest.raises(AssertionError, match="left the eps-ball or"):
        Broken(model, eps / 2, eps=eps)(torch.full((2, 1, 8, 8), 1.0))                     # above 1
    with pytest.raises(AssertionError, match="left the eps-ball or"):
        Broken(model, -eps / 2, eps=eps)(torch.zeros(2, 1, 8, 8))                          # below 0
    empty = torch.zeros(0, 1, 8, 8)                  # an empty batch (e.g. a slice past the end): returned as is
    assert Broken(model, eps, eps=eps)(empty).shape == empty.shape
    assert HAG(model, steps=2)(empty).shape == empty.shape


def test_the_base_defaults_are_the_documented_ones_and_zero_steps_return_the_start():
    """HashingAttack's documented defaults (eps 8/255, alpha 2/255, 10 steps, no random start, eval mode, seed 0),
    nothing measured before the first call; steps=0 is allowed and returns the start point."""
    attack = Broken(fresh_model(), 0.0)
    assert repr(attack) == "Broken(eps=8/255, alpha=2/255, steps=10, random_start=False, model_mode='eval')"
    assert attack.seed == 0 and attack.snapshots == {} and attack.history == []
    x = images()
    assert torch.equal(HammingPGD(fresh_model(), steps=0, random_start=False)(x, snapshot_steps=[0]), x)
    start = HammingPGD(fresh_model(), steps=0, random_start=True, seed=1)
    assert torch.equal(start(x, snapshot_steps=[0]), start.snapshots[0]) and not torch.equal(start.snapshots[0], x)


def test_an_attack_prints_its_settings_in_grey_levels():
    """What a notebook shows of an attack: its class, budget and step in 1/255 units, steps, start and mode."""
    assert repr(HAG(fresh_model(), eps=8 / 255, alpha=2 / 255, steps=10)) == \
        "HAG(eps=8/255, alpha=2/255, steps=10, random_start=False, model_mode='eval')"
    assert repr(HammingPGD(fresh_model(), eps=0.5 / 255, alpha=0.25 / 255, steps=3, random_start=True,
                           model_mode="train")) == \
        "HammingPGD(eps=0.5/255, alpha=0.25/255, steps=3, random_start=True, model_mode='train')"


def test_successive_calls_continue_the_random_stream():
    x = images()
    attack = HammingPGD(fresh_model(), steps=1, seed=5)
    attack(x, snapshot_steps=[0])
    first_start = attack.snapshots[0]
    attack(x, snapshot_steps=[0])
    assert not torch.equal(attack.snapshots[0], first_start)


@pytest.mark.parametrize("label", ["pgd", "hag", "hag_published_code", "center", "dhta", "saat", "sdha"])
def test_snapshots_and_history(label):
    x, labels = images(), one_hot_labels(6)
    kwargs = dict(random_start=True) if label in WITH_RANDOM_START else {}
    attack = make_attack(label, table_victim(fresh_model()), labels, steps=5, **kwargs)
    adversarial = attack(x, labels, snapshot_steps=(0, 2, 5))
    assert sorted(attack.snapshots) == [0, 2, 5]
    assert torch.equal(attack.snapshots[5], adversarial)
    assert attack.snapshots[0].device.type == "cpu" and attack.snapshots[0].shape == x.shape
    assert [row["step"] for row in attack.history] == list(range(5))
    for row in attack.history:
        assert set(row) == {"step", "loss", "grad_norm", "flipped_fraction", "scale"}
        assert isinstance(row["scale"], float) and row["scale"] > 0
        assert row["grad_norm"] > 0 and 0 <= row["flipped_fraction"] <= 1 and math.isfinite(row["loss"])
    assert attack.history[0]["flipped_fraction"] == pytest.approx(
        (encode(attack.model, attack.snapshots[0]) != encode(attack.model, x)).float().mean().item())
    attack(x, labels)
    assert attack.snapshots == {} and len(attack.history) == 5, "every call starts its own snapshots"


# --- perturb ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("label", ["hag", "center", "p2p", "dhta", "saat", "saat_targeted"])
def test_perturb_in_batches_matches_one_call_and_merges_snapshots(label):
    x, labels = images(10), one_hot_labels(10)
    victim = table_victim(fresh_model())
    kwargs = dict(steps=4, random_start=False)
    whole = make_attack(label, victim, labels, **kwargs)
    expected = whole(x, labels, snapshot_steps=(0, 4))
    batched = make_attack(label, victim, labels, **kwargs)
    result = perturb(batched, x, labels, batch_size=3, snapshot_steps=(0, 4))
    assert torch.equal(result, expected)
    assert sorted(batched.snapshots) == [0, 4]
    assert torch.equal(batched.snapshots[4], expected) and torch.equal(batched.snapshots[0], x)
    assert len(batched.history) == 4
    for merged, single in zip(batched.history, whole.history):
        assert merged["step"] == single["step"] and merged["scale"] == single["scale"]
        assert type(merged["step"]) is int, "a step number, not an average of them"
        assert merged["flipped_fraction"] == pytest.approx(single["flipped_fraction"], abs=1e-6)
        assert merged["loss"] == pytest.approx(single["loss"], rel=1e-5, abs=1e-9)  # batch means weighted by size


def test_perturb_pairs_each_image_with_its_own_labels_and_targets():
    """Swapping two images with their labels (and targets) swaps the two adversarial images. (Not for
    P2P / DHTA: their anchor draw follows the order of the target rows.)"""
    x, labels = images(6), one_hot_labels(6)
    order = torch.tensor([1, 0, 2, 3, 4, 5])
    victim = table_victim(fresh_model())
    center = CenterGuidedAttack(victim, steps=3, random_start=False)
    straight = perturb(center, x, labels, batch_size=2)
    assert torch.equal(perturb(center, x[order], labels[order], batch_size=2), straight[order])
    assert not torch.equal(straight[0], straight[1])
    targets = targets_for(labels, victim)
    saat = SAAT(victim, steps=3, random_start=False)
    straight = perturb(saat.set_targets(targets), x, labels, batch_size=4)
    swapped = perturb(saat.set_targets(targets[order]), x[order], labels[order], batch_size=4)
    assert torch.equal(swapped, straight[order])


def test_perturb_of_no_images_and_of_a_bare_model():
    model = fresh_model()
    empty = images(0)
    assert perturb(HAG(model, steps=2), empty).shape == empty.shape
    x = images(5)
    assert torch.equal(perturb(HAG(model, steps=2), x, batch_size=2), HAG(model, steps=2)(x))
    assert torch.equal(perturb(HAG(model, steps=2), x, batch_size=1), HAG(model, steps=2)(x)), "one image a batch"


def test_perturb_draws_its_progress_on_the_pipelines_terminal_only(tmp_path, monkeypatch, capsys):
    """Under `dvc repro` on a terminal, advhash.pipeline names that terminal in ADVHASH_PROGRESS_TTY: the bar
    (attack name, images done of the total, elapsed and remaining time) goes there, never to the notebook's
    output; a terminal that went away means no bar, not an error."""
    from advhash.utils import PROGRESS_TTY

    monkeypatch.delenv(PROGRESS_TTY, raising=False)
    model, x = fresh_model(), images(5)
    perturb(HAG(model, steps=2), x, batch_size=2)
    assert capsys.readouterr() == ("", ""), "no terminal: no bar"
    terminal = tmp_path / "tty"
    monkeypatch.setenv(PROGRESS_TTY, str(terminal))
    result = perturb(HAG(model, steps=2), x, batch_size=2)
    drawn = terminal.read_text()
    assert "HAG:" in drawn and "/5 [00:00<" in drawn and "image/s]" in drawn      # its name, total and unit
    assert capsys.readouterr() == ("", "") and torch.equal(result, HAG(model, steps=2)(x))
    monkeypatch.setenv(PROGRESS_TTY, str(tmp_path / "gone" / "tty"))                      # terminal closed
    assert torch.equal(perturb(HAG(model, steps=2), x, batch_size=2), result)
    assert capsys.readouterr() == ("", "")


def test_perturbs_progress_bar_counts_every_image_once(monkeypatch):
    """The bar's count (and so its rate and time left) is the number of images attacked so far, ending at the
    total; the bar is closed at the end."""
    import advhash.attacks.base as base

    bars = []

    class Recording:
        def __init__(self, **kwargs):
            self.settings, self.updates, self.closed = kwargs, [], False
            bars.append(self)

        def update(self, count):
            self.updates.append(count)

        def close(self):
            self.closed = True

    monkeypatch.setattr(base, "progress", Recording)
    perturb(HAG(fresh_model(), steps=1), images(5), batch_size=2)
    [bar] = bars
    assert bar.settings == dict(total=5, desc="HAG", unit="image") and bar.updates == [2, 2, 1] and bar.closed


def test_perturb_bad_arguments_are_clear_errors():
    victim = table_victim(fresh_model())
    attack = CenterGuidedAttack(victim, steps=2)
    with pytest.raises(ValueError, match=r"labels need one row per image \(6\); got 5"):
        perturb(attack, images(6), one_hot_labels(5), batch_size=3)
    as_list = perturb(CenterGuidedAttack(victim, steps=2), images(6), one_hot_labels(6).tolist(), batch_size=3)
    as_tensor = perturb(CenterGuidedAttack(victim, steps=2), images(6), one_hot_labels(6), batch_size=3)
    assert torch.equal(as_list, as_tensor)
    with pytest.raises(TypeError):                  # one call shape: (images, labels); guides come from the victim
        perturb(attack, images(6), one_hot_labels(6), random_codes(6))
    with pytest.raises(TypeError, match=r"perturb runs attacks with prepare\(\) and run\(\)"):
        perturb(lambda x, y: x, images(6), one_hot_labels(6))

    class RunOnly:                                   # a run() without prepare(): the guide would never be computed
        def run(self, images, guide=None):
            return images

    with pytest.raises(TypeError, match=r"prepare\(\) and run\(\) \(HashingAttack, CMLA\); got RunOnly"):
        perturb(RunOnly(), images(6), one_hot_labels(6))
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            perturb(attack, images(6), one_hot_labels(6), batch_size=bad)
    with pytest.raises(ValueError, match="float tensor"):
        perturb(attack, (images(6) * 255).to(torch.uint8), one_hot_labels(6))


# --- labels and targets -------------------------------------------------------------------------------
def test_check_labels_accepts_multi_hot_rows_and_rejects_anything_else():
    for good in ([[0, 1], [1, 1]], torch.tensor([[True, False]]), torch.tensor([[0.0, 1.0]], dtype=torch.float64),
                 torch.zeros(0, 3)):
        checked = check_labels(good)
        assert checked.dtype == torch.float32 and checked.ndim == 2
        assert torch.equal(checked, torch.as_tensor(good).float())
    with pytest.raises(ValueError, match=r"labels must be multi-hot rows \(N, L\), one per image; got shape \(3,\)"):
        check_labels(torch.ones(3))
    with pytest.raises(ValueError, match="must be multi-hot rows"):
        check_labels(torch.ones(2, 3, 1))
    for bad, values in ((torch.tensor([[0.0, 2.0]]), r"\[2.0\]"), (torch.tensor([[0.5, 1.0]]), r"\[0.5\]"),
                        (torch.tensor([[-1.0, 1.0]]), r"\[-1.0\]")):
        with pytest.raises(ValueError, match=rf"target_labels must hold 0/1 values \(multi-hot\); got values {values}"):
            check_labels(bad, name="target_labels")
    with pytest.raises(ValueError, match=r"got values \[2.0, 3.0, 4.0, 5.0, 6.0\]$"):     # the first five, sorted
        check_labels(torch.tensor([[9.0, 8, 7, 6, 5, 4, 3, 2, 1, 0]]))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_labels_that_are_not_multi_hot_are_refused_by_every_attack(name):
    attack = build_attack(name, table_victim(fresh_model()), steps=1)
    if attack.target_mode == "required":
        attack.set_targets(one_hot_labels(6))
    with pytest.raises(ValueError, match="0/1 values"):
        attack(images(), 2 * one_hot_labels(6))
    with pytest.raises(ValueError, match="0/1 values"):
        perturb(attack, images(), torch.full((6, 4), 0.5))
    with pytest.raises(ValueError, match=r"labels need one row per image: 5 rows for 6 images"):
        attack(images(), one_hot_labels(5))


def test_target_modes_of_the_registered_attacks():
    assert {name: cls.target_mode for name, cls in ATTACKS.items()} == {
        "pgd": "never", "hag": "never", "center": "never", "p2p": "required", "dhta": "required",
        "saat": "optional", "sdha": "optional"}


@pytest.mark.parametrize("name", ["pgd", "hag", "center"])
def test_non_targeted_attacks_refuse_targets(name):
    attack = build_attack(name, table_victim(fresh_model()))
    with pytest.raises(ValueError, match=rf"^{type(attack).__name__} is a non-targeted attack; it takes no target "
                                         r"labels \(targeted attacks: P2P, DHTA, SAAT, SDHA\)"):
        attack.set_targets(one_hot_labels(6))
    assert attack.set_targets(None) is attack and not attack.targeted


@pytest.mark.parametrize("attack_class", [P2P, DHTA])
def test_targeted_attacks_require_targets(attack_class):
    victim = table_victim(fresh_model())
    attack = attack_class(victim, steps=1)
    with pytest.raises(ValueError, match=rf"^{attack_class.__name__} is a targeted attack: call "
                                         r"attack.set_targets\(target_labels\) first"):
        attack(images(), one_hot_labels(6))
    with pytest.raises(ValueError, match="call attack.set_targets"):
        perturb(attack, images(), one_hot_labels(6))
    targets = targets_for(one_hot_labels(6), victim)
    assert attack.set_targets(targets) is attack and attack.targeted
    with pytest.raises(ValueError, match=rf"^{attack_class.__name__} is a targeted attack; it needs target labels"):
        attack.set_targets(None)
    assert torch.equal(attack.target_labels, targets)
    with pytest.raises(ValueError, match=r"set_targets gave 6 target rows for 4 images: one target row per "
                                         r"attacked image"):
        attack(images(4), one_hot_labels(4))
    with pytest.raises(ValueError, match="target_labels must hold 0/1 values"):
        attack.set_targets(2 * targets)
    assert attack(images(), None).shape == images().shape   # the targets steer; the query labels are optional


@pytest.mark.parametrize("attack_class", [SAAT, SDHA])
def test_optional_targets_make_the_attack_targeted_until_removed(attack_class):
    victim = table_victim(fresh_model())
    x, labels = images(), one_hot_labels(6)
    targets = targets_for(labels, victim)
    settings = dict(steps=3, random_start=False) if attack_class is SAAT else dict(steps=3)  # same start each call
    attack = attack_class(victim, **settings)
    assert not attack.targeted
    plain = attack(x, labels)
    assert attack.set_targets(targets) is attack and attack.targeted
    assert torch.equal(attack.target_labels, targets.float())
    targeted = attack(x, labels)
    assert not torch.equal(targeted, plain)
    assert torch.equal(attack_class(victim, **settings).set_targets(targets)(x, labels), targeted)
    assert attack.set_targets(None) is attack and not attack.targeted
    assert torch.equal(attack(x, labels), plain)


@pytest.mark.parametrize("name", ["center", "saat", "sdha"])
def test_attacks_steered_by_the_query_labels_need_them(name):
    attack = build_attack(name, table_victim(fresh_model()), steps=1)
    with pytest.raises(ValueError, match=r"call attack\(images, labels\)"):
        attack(images())


@pytest.mark.parametrize("name", ["pgd", "hag"])
def test_attacks_of_the_image_alone_ignore_the_labels(name):
    x = images()
    model = fresh_model()
    assert torch.equal(build_attack(name, model, steps=3)(x), build_attack(name, model, steps=3)(x, one_hot_labels(6)))


# --- bad inputs and the registry ---------------------------------------------------------------------
def test_bad_arguments_are_clear_errors():
    model = fresh_model()
    with pytest.raises(ValueError, match=r"eps is in \[0,1\] pixel units, e.g. 8/255"):
        HAG(model, eps=8)
    for eps in (-0.1, 1.01):
        with pytest.raises(ValueError, match=r"eps is in \[0,1\]"):
            HammingPGD(model, eps=eps)
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        HAG(model, steps=-1)
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        HAG(model, steps=True)
    with pytest.raises(ValueError, match="alpha"):
        HammingPGD(model, alpha=0)
    with pytest.raises(ValueError, match="model_mode must be one of"):
        HAG(model, model_mode="training")
    with pytest.raises(TypeError, match="attacks take a hashing model or an advhash.Victim; got str"):
        HAG("model")
    attack = HAG(model, steps=2)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        attack(images() * 255)
    with pytest.raises(ValueError, match="float tensor"):
        attack((images() * 255).to(torch.uint8))
    for bad in (3, -1, 1.5, True):
        with pytest.raises(ValueError, match=rf"snapshot_steps must be integers in \[0, steps=2\]; got \[{bad}\]"):
            attack(images(), snapshot_steps=[bad])
    with pytest.raises(ValueError, match=r"the guide needs one row per image: 5 rows for 6 images"):
        CenterGuidedAttack(model).run(images(), random_codes(5))


def test_registry_builds_attacks_by_name():
    assert ATTACKS == {"pgd": HammingPGD, "hag": HAG, "center": CenterGuidedAttack, "p2p": P2P, "dhta": DHTA,
                       "saat": SAAT, "sdha": SDHA}
    assert all(issubclass(cls, HashingAttack) for cls in ATTACKS.values())
    attack = build_attack("hag", fresh_model(), eps=4 / 255, steps=3)
    assert isinstance(attack, HAG) and attack.eps == 4 / 255 and attack.steps == 3
    with pytest.raises(ValueError, match=r"unknown attack 'fgsm'; choose one of \[.*'hag'.*'pgd'.*\]"):
        build_attack("fgsm", fresh_model())
    with pytest.raises(TypeError):
        build_attack("saat", fresh_model(), targeted=True)   # targets come from set_targets


# --- perturbation statistics and the ensemble of perturbations -----------------------------------------
def test_perturbation_stats_by_hand():
    x = torch.zeros(2, 1, 2, 2)
    adversarial = x.clone()
    adversarial[0, 0, 0, 0] = 0.1  # image 0: one pixel +0.1; image 1 unchanged
    stats = perturbation_stats(x, adversarial)
    assert stats["linf_255"] == pytest.approx(25.5)
    assert stats["l2"] == pytest.approx((0.1 + 0.0) / 2)
    assert stats["psnr"] == pytest.approx(10 * math.log10(1 / (0.01 / 4)))  # unchanged image left out
    assert perturbation_stats(x, x) == {"linf_255": 0.0, "l2": 0.0, "psnr": math.inf}
    with pytest.raises(ValueError, match="differ in shape"):
        perturbation_stats(x, x[:1])


def test_combine_perturbations_sums_then_clips():
    x = torch.tensor([[[[0.5, 0.5, 0.99, 0.02]]]])
    r1 = torch.tensor([[[[3, -3, 3, -3]]]]) / 255
    r2 = torch.tensor([[[[4, 2, 4, -1]]]]) / 255
    combined = combine_perturbations(x, [x + r1, x + r2], eps=5 / 255)
    expected = torch.tensor([[[[0.5 + 5 / 255, 0.5 - 1 / 255, 1.0, 0.02 - 4 / 255]]]])
    assert torch.allclose(combined, expected.clamp(0, 1), atol=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        combine_perturbations(x, [], eps=5 / 255)
    with pytest.raises(ValueError, match="do not match"):
        combine_perturbations(x, [x[..., :2]], eps=5 / 255)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_random_start_is_drawn_on_the_gpu_and_repeats_for_a_seed():
    model = fresh_model(seed=0).cuda().eval()
    x = images(4).cuda()
    starts = [HAG(model, eps=8 / 255, steps=1, random_start=True, seed=3).random_init(x) for _ in range(2)]
    assert starts[0].device.type == "cuda" and torch.equal(starts[0], starts[1]), "same seed, same start"
    assert (starts[0] - x).abs().max() <= 8 / 255 + 1e-6
    other = HAG(model, eps=8 / 255, steps=1, random_start=True, seed=4).random_init(x)
    assert not torch.equal(other, starts[0])


def test_snapshots_can_hold_the_codes_of_the_iterates_instead_of_the_images():
    model = fresh_model(seed=0).eval()
    x = images(6)
    as_images = HAG(model, eps=16 / 255, alpha=4 / 255, steps=4)
    as_codes = HAG(model, eps=16 / 255, alpha=4 / 255, steps=4)
    out = perturb(as_images, x, batch_size=4, snapshot_steps=[0, 2, 4])
    assert torch.equal(perturb(as_codes, x, batch_size=4, snapshot_steps=[0, 2, 4], snapshot_codes=True), out)
    for step in (0, 2, 4):
        assert as_codes.snapshots[step].shape == (6, model.bits)
        assert torch.equal(as_codes.snapshots[step], encode(model, as_images.snapshots[step]))
    with pytest.raises(ValueError, match=r"^snapshot_codes encodes the iterates with the model, which in train mode "
                                         r"would update its BatchNorm statistics: snapshot images instead, or attack "
                                         r"in eval mode$"):
        HAG(model, steps=1, model_mode="train")(x, snapshot_steps=[1], snapshot_codes=True)


def test_a_nan_pixel_is_refused_before_the_attack_runs():
    x = images(3)
    x[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"images hold 1 NaN or infinite values \(images \[1\]\)"):
        HAG(fresh_model(seed=0), steps=1)(x)
