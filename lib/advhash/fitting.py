"""Fitting the victims of a study: several hashing models, each trained (or loaded from its checkpoint) by
``advhash.train.fit_hashing_model``, or loaded from a victim manifest (``advhash.manifest``: the models notebook 01
trained), optionally saturated, and encoded once as an ``advhash.Victim``; then fine-tuned with every defense.

    specs = {("fashion-mnist", 32): VictimSpec("fashion-mnist", "dpsh", 32, seed=0, backbone="small_cnn")}
    victims = fit_victims(data, specs, manifest=read_manifest(path), saturation=30.0, checkpoint_dir="build/ckpt")
    victims, histories = fit_defended_victims(data, clean, ["finetune", "cgat"], eps=8/255, alpha=2/255, steps=7,
                                              method="dph", epochs=30, lr=1e-3, checkpoint_dir="build/ckpt")

Saturation (HAG, Yang et al. 2018): the victim's hash layer multiplied by ``saturation``
(``advhash.models.with_scaled_hash_layer``), so that tanh saturates as in victims trained long with a
quantization term while the codes, and every clean retrieval number, stay exactly the same.
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping, NamedTuple

from .defenses import fit_defense
from .manifest import VictimManifest
from .models import with_scaled_hash_layer
from .train import fit_hashing_model
from .victim import Victim

__all__ = ["VictimSpec", "fit_victims", "fit_defended_victims"]


class VictimSpec(NamedTuple):
    """One victim to fit: the name of its dataset (a key of the ``data`` given to :func:`fit_victims`), its
    hashing loss (``advhash.losses``), code length, training seed and backbone (``advhash.models``); a seed or
    backbone of None is the manifest's (without one: 0 and "small_cnn")."""

    dataset: str
    method: str
    bits: int
    seed: int | None = None
    backbone: str | None = None


def fit_victims(data: Mapping[str, Any], specs: Mapping[Hashable, tuple], *, manifest: VictimManifest | None = None,
                saturation: float = 1.0, database: bool = True, train: bool = False,
                **training) -> dict[Hashable, Victim]:
    """Fit every victim of ``specs`` (key -> :class:`VictimSpec`, or a plain tuple in its order) on its dataset
    ``data[spec.dataset]``: loaded from ``manifest`` when it lists the victim (``VictimManifest.load``, which
    checks it was trained on this data), otherwise ``fit_hashing_model`` with the spec, the manifest's training
    settings and ``training`` (epochs, checkpoint_dir, device, batch_size, lr, ...; these win); then its hash
    layer multiplied by ``saturation`` (1: as trained) and the model encoded once on its device
    (``Victim.build``: the database codes and, with ``train``, the training codes). Returns {key: Victim}, in
    the order of ``specs``."""
    if not saturation > 0:
        raise ValueError(f"saturation must be positive (it keeps the sign of every logit); got {saturation!r}")
    settings = {**(manifest.training if manifest is not None else {}), **training}
    victims = {}
    for key, spec in specs.items():
        spec = VictimSpec(*spec)
        if spec.dataset not in data:
            raise KeyError(f"victim {key!r}: no dataset {spec.dataset!r}; loaded: {sorted(data)}")
        if manifest is not None and manifest.lists(spec.dataset, spec.method, spec.bits, backbone=spec.backbone,
                                                   seed=spec.seed):
            model = manifest.load(data[spec.dataset], spec.method, spec.bits, device=settings.get("device", "cpu"))
        else:
            own = {name: value for name, value in (("seed", spec.seed), ("backbone", spec.backbone))
                   if value is not None}
            model, _ = fit_hashing_model(data[spec.dataset], method=spec.method, bits=spec.bits,
                                         **{**settings, **own})
        model = with_scaled_hash_layer(model, saturation)
        victims[key] = Victim.build(model, data[spec.dataset], database=database, train=train)
    return victims


def fit_defended_victims(data, clean: Mapping[Hashable, Victim], defenses: list[str], *, evaluate=None,
                         **defense) -> tuple[dict[tuple, Victim], list[dict[str, Any]]]:
    """Fine-tune every clean victim with every defense in ``defenses`` (names of ``advhash.defenses.DEFENSES``,
    "finetune" the clean control) by ``advhash.defenses.fit_defense`` with the ``defense`` settings (eps, alpha,
    steps, settings, method, epochs, lr, checkpoint_dir, ...), each fine-tuned model encoded once.

    Returns (victims, histories). victims: {("undefended", key): the clean victim, (name, key): its fine-tune by
    defense ``name``}, in the order of ``clean`` and, for each key, of ``defenses``. histories: with ``evaluate``
    (model -> {quantity: value}, run after every epoch), one row per (defense, key, epoch) with the epoch's
    record, starting at epoch 0 with ``evaluate`` of the clean model; without it, the epochs' records."""
    victims, histories = {}, []
    for key, victim in clean.items():
        victims["undefended", key] = victim
        start = [dict(epoch=0, **evaluate(victim.model))] if evaluate is not None else []
        for name in defenses:
            model, history = fit_defense(name, data, victim.model, evaluate=evaluate, **defense)
            victims[name, key] = Victim.build(model, data)
            histories += [dict(defense=name, key=key, **row) for row in [*start, *history]]
    return victims, histories
