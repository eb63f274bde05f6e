"""Supervised pairwise hashing losses: DPH, DPSH and HashNet.

Pairwise similarity is S_ij = 1[y_i . y_j > 0] (share a label, ``advhash.metrics.relevance``). Two ways
to form the pairs (``pairs=``):

- ``"table"``: the batch's relaxed codes u = h(x) (B, K) against the table U (n_train, K) of the latest
  relaxed codes of every training item (DPSH's Algorithm 1; TADH/SAAT reuse it for DPH and HashNet), refreshed
  with the batch (detached) first; rows of items not seen yet are left out (the published code keeps them as
  zeros). Gradients flow through u only.
- ``"batch"``: all pairs within the batch, gradients through both sides (HashNet's paper and
  DeepHash-pytorch's HashNet). Trained from scratch the table form collapses (``docs/methods.md``, section DPH),
  so the CPU profile uses ``"batch"``; the paper profile keeps each method's own form.

Formulas, sources and departures: ``docs/methods.md``, sections DPH, DPSH and HashNet; each class names its equation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .metrics import relevance
from .utils import check_choice




class PairwiseHashingLoss(nn.Module):
    """Base class: keeps the training code table U and label table Y and adds a quantization term.

    Args:
        num_train: number of training items (rows of the tables; indices come from the data loader).
        bits: code length K.
        num_classes: label width L.
        quantization_weight: eta in ``eta * mean((u - sign(u))^2)``.
        pairs: "table" (batch x training table, the default of DPH and DPSH) or "batch" (within the
            batch, HashNet's default); see the module docstring.
    """

    default_pairs = "table"

    def __init__(self, *, num_train: int, bits: int, num_classes: int, quantization_weight: float = 0.0,
                 pairs: str | None = None):
        super().__init__()
        pairs = pairs or self.default_pairs
        check_choice("pairs", pairs, ("table", "batch"))
        self.bits = bits
        self.pairs = pairs
        self.quantization_weight = quantization_weight
        self.register_buffer("code_table", torch.zeros(num_train, bits))    # U (n_train, K)
        self.register_buffer("label_table", torch.zeros(num_train, num_classes))  # Y (n_train, L)
        self.register_buffer("seen", torch.zeros(num_train, dtype=torch.bool))

    def scale(self, step: int) -> float:
        """Scale of the tanh(scale * z) activation at optimizer step ``step`` (1 unless the method
        schedules it)."""
        return 1.0

    def pair_loss(self, u: torch.Tensor, table: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, u: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Loss of the batch's relaxed codes ``u`` (B, K) with labels (B, L) at table rows ``indices``."""
        if labels.shape[1] != self.label_table.shape[1]:
            raise ValueError(f"labels have width {labels.shape[1]} but the loss was built with "
                             f"num_classes={self.label_table.shape[1]}")
        with torch.no_grad():
            self.code_table[indices] = u.detach()
            self.label_table[indices] = labels
            self.seen[indices] = True
        if self.pairs == "batch":
            table_codes, table_labels = u, labels
        else:
            table_codes, table_labels = self.code_table[self.seen], self.label_table[self.seen]
        similarity = relevance(labels, table_labels).to(labels.dtype)  # S (B, n_seen)
        loss = self.pair_loss(u, table_codes, similarity)
        if self.quantization_weight:
            loss = loss + self.quantization_weight * (u - torch.sign(u).detach()).pow(2).mean()
        return loss


class DPHLoss(PairwiseHashingLoss):
    """DPH (deep pairwise hashing, as in TADH and SAAT): least squares between scaled inner products
    and the {-1, +1} similarity,

        L = sum_ij (u_i . U_j / K - (2 S_ij - 1))^2 / (B * n),

    the mean over the B x n pairs (``docs/methods.md``, section DPH; TADH model/dph.py).
    """

    def pair_loss(self, u, table, similarity):
        inner = u @ table.T / self.bits  # (B, n)
        return (inner - (2 * similarity - 1)).pow(2).mean()


class DPSHLoss(PairwiseHashingLoss):
    """DPSH (Li, Wang, Kang, IJCAI 2016, Eq. 4): negative log-likelihood of the pairwise labels with
    theta_ij = u_i . U_j / 2, plus the quantization term,

        L = -mean_ij (S_ij theta_ij - log(1 + e^theta_ij)) + eta * mean((u - sign(u))^2).

    Mean-normalized like DeepHash-pytorch and CgAT (hashing_loss.py); eta = 0.001 by default (DeepHash-pytorch's
    DPSH config: 0.1);
    TADH and SAAT sum instead, SAAT with eta = 50 on ||b - u||^2 / (N B) (``docs/methods.md``, section DPSH).
    """

    def __init__(self, *, num_train, bits, num_classes, quantization_weight: float = 0.001, pairs=None):
        super().__init__(num_train=num_train, bits=bits, num_classes=num_classes,
                         quantization_weight=quantization_weight, pairs=pairs)

    def pair_loss(self, u, table, similarity):
        theta = u @ table.T / 2  # (B, n)
        return (F.softplus(theta) - similarity * theta).mean()


class HashNetLoss(PairwiseHashingLoss):
    """HashNet (Cao et al., ICCV 2017, Eq. 5): class-balanced weighted pairwise cross-entropy on
    theta_ij = a * u_i . U_j,

        L = sum_ij w_ij (log(1 + e^theta_ij) - S_ij theta_ij) / |S|,  w_ij = |S|/|S1| if S_ij else |S|/|S0|,

    with the continuation tanh(beta z) (beta: the paper's name of the tanh scale, ``scale(step)`` here),
    beta = (1 + 0.005 c)^0.5 with c a multiple of 200 (HashNet's schedule, reused by DeepHash-pytorch, TADH,
    SAAT and CgAT). Pairs are formed within the batch by default, as in
    the paper; TADH and SAAT use the training table (``pairs="table"``).

    The paper states the continuation only by stages (beta grows stage by stage toward infinity, each stage
    trained to convergence); the 200-step count and the formula are the published code's, which this follows:
    its models count the training forward calls (one per optimizer step) and raise the scale *after*
    incrementing the count, so the call whose 1-based count c = t + 1 is a multiple of ``step_size`` (0-based
    step t = 199, 399, ...) already runs at (1 + gamma c)^power, and the scale stays there until the next
    multiple: thuml/HashNet ``pytorch/src/network.py`` L32-41; TADH ``model/backbone.py`` L145-155; SAAT
    ``model/hash_model/hashnet.py`` L58-67.

    Args:
        similarity_scale: a, 0.1 as in DeepHash-pytorch / TADH / CgAT (SAAT uses 10 / K).
        step_size, gamma, power: the continuation (200, 0.005, 0.5 in all published code).
    """

    default_pairs = "batch"

    def __init__(self, *, num_train, bits, num_classes, similarity_scale: float = 0.1,
                 quantization_weight: float = 0.0, step_size: int = 200, gamma: float = 0.005,
                 power: float = 0.5, pairs=None):
        super().__init__(num_train=num_train, bits=bits, num_classes=num_classes,
                         quantization_weight=quantization_weight, pairs=pairs)
        self.similarity_scale = similarity_scale
        self.step_size, self.gamma, self.power = step_size, gamma, power

    def scale(self, step: int) -> float:
        """HashNet continuation: the tanh scale (HashNet's paper calls it beta) at 0-based optimizer step
        ``step``, (1 + gamma * c)^power with c the count rounded down to a multiple of step_size: the
        count of the current forward call, step + 1 (the published code's count, class docstring)."""
        count = (step + 1) // self.step_size * self.step_size   # the float operations of the published code
        return (1.0 + self.gamma * count) ** self.power

    def pair_loss(self, u, table, similarity):
        theta = self.similarity_scale * (u @ table.T)  # (B, n)
        pair_nll = F.softplus(theta) - similarity * theta
        positives = similarity > 0
        num_pairs = similarity.numel()
        num_positive = positives.sum().clamp(min=1)
        num_negative = (~positives).sum().clamp(min=1)
        weights = torch.where(positives, num_pairs / num_positive, num_pairs / num_negative)
        return (weights * pair_nll).sum() / num_pairs


LOSSES: dict[str, type[PairwiseHashingLoss]] = {"dph": DPHLoss, "dpsh": DPSHLoss, "hashnet": HashNetLoss}


def build_loss(name: str, **kwargs) -> PairwiseHashingLoss:
    """Build a hashing loss by name ("dph", "dpsh", "hashnet")."""
    if name.lower() not in LOSSES:
        raise ValueError(f"unknown hashing loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name.lower()](**kwargs)
