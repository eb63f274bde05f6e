"""The shared machinery of adversarial training: a code table of the training set, a seeded inner
attack, and ``fit_defended_model`` (fine-tune a trained hashing model with a defense, checkpointed
and resumable through ``advhash.train.train_hashing``).

A defense is an ``nn.Module`` (its buffers, e.g. the code table, and sub-networks are checkpointed
with the model) with two methods the training loop calls:

- ``prepare(model, train_split, seed=..., loss=...)`` once before the first epoch (not on resume);
- ``batch_loss(model, loss, images, labels, indices, step=...)`` per batch: the inner maximization
  (an attack) and the outer objective to minimize.

Every random draw of a batch (the attack's random start, ATRDH's target labels) comes from a
generator seeded by (seed, step), so an interrupted run resumes to the same weights.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..attacks.base import MODEL_MODES
from ..checkpoint import checkpoint_file, model_digest
from ..fingerprint import modules_of
from ..losses import build_loss
from ..models import HashingModel, binarize, effective_precision
from ..train import encode, reuse_checkpoint, train_hashing
from ..utils import check_choice, resolve_device


class AdversarialTraining(nn.Module):
    """Base of the defenses: inner-attack settings and the training set's code table.

    Arguments:
        num_train, bits, num_classes: size of the code table B (n_train, K) and label table (n_train, L).
        eps: L-inf budget of the training-time attack, [0, 1] units (Default: 8/255).
        alpha: its step size (Default: 2/255).
        steps: its iterations (Default: 7; PGD-7 as CgAT, SAAT and ATRDH train with).
        random_start: (Default: True).
        model_mode: mode of the model during the inner attack: "train" (Default, as the CgAT, SAAT and
            TADH code, which never switch to eval) or "eval".
    """

    name = "adversarial"
    #: False (the papers: the code table holds sign codes, the hashing loss's table starts empty); True in CgAT's and
    #: SAAT's ``variant="published"`` (a property there, derived from the variant, which their ``config`` names): the
    #: code table and the loss's table share one storage, so the loss's table starts with the training codes and
    #: labels (:meth:`prepare`) and the rows a batch visits end up holding its relaxed outputs (``docs/methods.md``).
    shared_tables = False

    def __init__(self, *, num_train: int, bits: int, num_classes: int, eps: float = 8 / 255,
                 alpha: float = 2 / 255, steps: int = 7, random_start: bool = True, model_mode: str = "train"):
        super().__init__()
        if not 0 <= eps <= 1:
            raise ValueError(f"eps is in [0,1] pixel units, e.g. 8/255; got eps={eps!r}")
        check_choice("model_mode", model_mode, MODEL_MODES)
        self.eps, self.alpha, self.steps = float(eps), float(alpha), int(steps)
        self.random_start, self.model_mode = random_start, model_mode
        self.seed = 0
        self.register_buffer("code_table", torch.zeros(num_train, bits))        # B (n_train, K)
        self.register_buffer("label_table", torch.zeros(num_train, num_classes))  # Y (n_train, L)

    @property
    def config(self) -> dict[str, Any]:
        """Every setting of the defense (part of the checkpoint's run config and file name)."""
        return dict(name=self.name, eps=self.eps, alpha=self.alpha, steps=self.steps,
                    random_start=self.random_start, model_mode=self.model_mode)

    def prepare(self, model: HashingModel, train_split, *, seed: int = 0, loss=None) -> None:
        """Fill the code table with the model's codes of the training split (eval mode), before training; with
        ``shared_tables`` also the hashing ``loss``'s tables (codes, labels, every row seen), as the published
        code's ``preinstall`` (CgAT central_adv_train.py L97-104; SAAT adv_training.py L64-74)."""
        if len(train_split) != self.code_table.shape[0]:
            raise ValueError(f"the defense was built for num_train={self.code_table.shape[0]} but the training "
                             f"split has {len(train_split)} items; build it with num_train=len(train_split)")
        self.seed = seed
        device = self.code_table.device
        self.code_table.copy_(encode(model, train_split).to(device))
        self.label_table.copy_(torch.as_tensor(train_split.labels).float().to(device))
        if self.shared_tables and loss is not None:
            with torch.no_grad():
                loss.code_table.copy_(self.code_table.to(loss.code_table.device))
                loss.label_table.copy_(self.label_table.to(loss.label_table.device))
                loss.seen.fill_(True)

    def generator(self, step: int, stream: int = 0) -> torch.Generator:
        """Random stream number ``stream`` (< 16) of optimizer step ``step``: a pure function of (seed, step,
        stream), so a resumed run draws the same numbers; separate streams keep the draws independent."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 16 + 1 + stream)

    def attack_seed(self, step: int) -> int:
        """The seed of step ``step``'s inner attack (its random start)."""
        return int(torch.randint(2**31 - 1, (1,), generator=self.generator(step)))

    @torch.no_grad()
    def update_codes(self, relaxed: torch.Tensor, indices: torch.Tensor) -> None:
        """Refresh the table rows of the batch with its clean codes sign(h) (every batch, as CgAT)."""
        self.code_table[indices] = binarize(relaxed.detach())

    def outer_forward(self, model, loss, images, adversarial, labels, indices, *, step: int):
        """The part of the outer step every defense shares: h(x) and the hashing loss of the clean batch,
        the code table refreshed with the batch's codes, then h(x_adv), both at the loss's tanh scale.
        Returns (hashing loss, h(x) (B, K), h(x_adv) (B, K))."""
        scale = loss.scale(step)
        relaxed = model(images, scale=scale)
        hashing = loss(relaxed, labels, indices)
        self.update_codes(relaxed, indices)
        return hashing, relaxed, model(adversarial, scale=scale)

    def get_extra_state(self) -> dict:
        return dict(seed=self.seed)

    def set_extra_state(self, state: dict) -> None:
        self.seed = int(state["seed"])

    def batch_loss(self, model, loss, images, labels, indices, *, step: int) -> torch.Tensor:
        raise NotImplementedError


def fit_defended_model(data, base_model: HashingModel, defense: AdversarialTraining | None, *, method: str,
                       epochs: int, checkpoint_dir: str | Path | None = None, pairs: str | None = None,
                       device: str | torch.device = "cpu", seed: int = 0, evaluate=None, reuse_from: tuple = (),
                       **training) -> tuple[HashingModel, list[dict[str, Any]]]:
    """Adversarially fine-tune a copy of ``base_model`` (a clean hashing model, as CgAT, SAAT and ATRDH
    start from) with ``defense`` and the ``method`` hashing loss on ``data.train``.

    ``defense=None`` (or ``FineTune()``, registered as "finetune") fine-tunes with the hashing loss alone,
    for the same epochs and optimizer: the control that separates what adversarial training buys from
    what more training buys.

    The checkpoint ``<checkpoint_dir>/<defense>_<method>_<bits>bits_<backbone>_e<epochs>_<tag>.pt`` ("finetune"
    for the control; ``advhash.checkpoint.run_file``) is written after every epoch; the tag hashes the base model's
    weights, the training items and their content, every setting and the code of the training loop, the defense
    and ``evaluate`` (``advhash.fingerprint.code_fingerprint``), so an interrupted run resumes, a finished one only
    loads and a longer one starts from a finished shorter one.
    ``reuse_from``: other notebooks' checkpoint folders searched for a finished run of the same settings
    (only read; its history is returned as recorded there). ``evaluate(model) -> {name: value}`` adds
    per-epoch numbers (e.g. clean and adversarial mAP) to the history; its ``config`` (e.g.
    ``advhash.evaluation.robustness_probe``'s) joins the checkpoint's name, so a history of other evaluation
    settings is never served. ``training`` goes to ``train_hashing``.

    Returns the fine-tuned model (eval mode) and its per-epoch history.
    """
    if not getattr(defense, "adversarial", True):   # the clean fine-tune control: no inner attack
        defense = None
    model = copy.deepcopy(base_model)
    if defense is not None and defense.code_table.shape[1] != model.bits:
        raise ValueError(f"the defense was built for {defense.code_table.shape[1]} bits, the model has {model.bits}")
    loss = build_loss(method, num_train=len(data.train), bits=model.bits, num_classes=data.num_classes, pairs=pairs)
    checkpoint_path = None
    if checkpoint_dir is not None:
        name = "finetune" if defense is None else defense.name
        settings = dict(base=model_digest(base_model), method=method, pairs=loss.pairs, seed=seed,
                        defense=None if defense is None else defense.config, **training,
                        **({} if getattr(evaluate, "config", None) is None else dict(curves=evaluate.config)))
        checkpoint_path = checkpoint_file(
            checkpoint_dir, f"{name}_{method}_{model.bits}bits_{model.config['backbone']}", epochs=epochs,
            settings=settings, data_name=data.name, train_split=data.train,
            precision=effective_precision(model.precision, resolve_device(device)),
            code=(__name__, *modules_of(type(loss), defense, evaluate)))
        reused = reuse_checkpoint(model, checkpoint_path, reuse_from, epochs=epochs, device=device)
        if reused is not None:
            return model.to(device).eval(), reused
    history = train_hashing(model, loss, data.train, epochs=epochs, seed=seed, device=device,
                            checkpoint_path=checkpoint_path, defense=defense, evaluate=evaluate, **training)
    return model.eval(), history
