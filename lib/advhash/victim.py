"""The victim of an attack: a hashing model with the codes an attacker (or an evaluator) needs from it.

Every guided attack steers by codes of the *attacked* model: CgAT's center codes and SAAT's mainstay
codes come from its codes of the training set, P2P/DHTA's anchor codes from its codes of the database,
SDHA pushes away from the training codes of the relevant items, and retrieval ranks the database codes.
A :class:`Victim` computes those codes once (``Victim.build(model, data)``), on the model's device, and
every attack built on it (``HAG(victim, ...)``, ``SAAT(victim, ...)``) and every evaluation
(``advhash.evaluation``) reads them from here instead of re-encoding.

A bare model is a victim with no codes (:func:`as_victim`): enough for HAG and Hamming PGD, which
only need the query's own code, and for the adversarial trainers, which steer by their own code tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .train import encode


@dataclass(eq=False)
class Victim:
    """A hashing model and its codes of the training set and the database (CPU tensors).

    Attributes:
        model: the hashing model (``advhash.models.HashingModel`` or a cross-modal network), eval mode.
        train_codes: (M, K) sign codes of the training items, or None.
        train_labels: (M, L) their multi-hot labels, or None.
        db_codes: (N, K) sign codes of the database items, or None.
        db_labels: (N, L) their multi-hot labels, or None.
    """

    model: nn.Module
    train_codes: torch.Tensor | None = None
    train_labels: torch.Tensor | None = None
    db_codes: torch.Tensor | None = None
    db_labels: torch.Tensor | None = None

    def __post_init__(self):
        for codes, labels, what in ((self.train_codes, self.train_labels, "train"),
                                    (self.db_codes, self.db_labels, "db")):
            if (codes is None) != (labels is None):
                raise ValueError(f"give both {what}_codes and {what}_labels, or neither")
            if codes is not None and (codes.ndim != 2 or labels.ndim != 2 or len(codes) != len(labels)):
                raise ValueError(f"{what}_codes (n, K) and {what}_labels (n, L) need one row per item; got "
                                 f"{tuple(codes.shape)} and {tuple(labels.shape)}")
            if codes is not None and self.bits and codes.shape[1] != self.bits:
                raise ValueError(f"{what}_codes have {codes.shape[1]} bits but the model has {self.bits}: encode "
                                 "the items with the model itself (Victim.build(model, data))")

    @classmethod
    @torch.no_grad()
    def build(cls, model: nn.Module, data, *, database: bool = True, train: bool = True) -> "Victim":
        """Encode ``data.train`` and ``data.database`` (an ``advhash.data.HashingData``) once with ``model``
        (eval mode, on the model's device); the codes are kept on the CPU."""
        model.eval()
        return cls(model,
                   train_codes=encode(model, data.train) if train else None,
                   train_labels=torch.as_tensor(data.train.labels).float() if train else None,
                   db_codes=encode(model, data.database) if database else None,
                   db_labels=torch.as_tensor(data.database.labels).float() if database else None)

    @property
    def bits(self) -> int | None:
        return getattr(self.model, "bits", None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Sign codes (n, K) of images (or a split), on the CPU, in eval mode."""
        return encode(self.model, images)

    def require(self, what: str, needed_by: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes, labels) of ``what`` ("train" or "db"), or a clear error naming who needs them."""
        codes, labels = getattr(self, f"{what}_codes"), getattr(self, f"{what}_labels")
        if codes is None:
            split = "training set" if what == "train" else "database"
            raise ValueError(f"{needed_by} steers by the victim's codes of the {split}: build the attack on "
                             f"advhash.Victim.build(model, data) instead of a bare model")
        return codes, labels


def as_victim(model_or_victim) -> Victim:
    """A :class:`Victim` as is, or a bare model wrapped as a victim with no codes."""
    if isinstance(model_or_victim, Victim):
        return model_or_victim
    if not isinstance(model_or_victim, nn.Module):
        raise TypeError(f"attacks take a hashing model or an advhash.Victim; got {type(model_or_victim).__name__}")
    return Victim(model_or_victim)
