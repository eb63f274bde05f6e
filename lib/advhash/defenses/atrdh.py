"""ATRDH: adversarial training for robust deep hashing, Wang, Zhang, Lu, Xu, "Targeted Attack and Defense
for Deep Hashing", SIGIR 2021 (the TADH code; the prior defense CgAT and SAAT compare with).

    min_theta  L_hash(x; theta)  +  lambda * L_pair( h(x_adv), U_ben ),
    x_adv = targeted PGD toward the prototype code p_t = sign(P(t)) of a random target label t,

where L_pair is the hashing loss's own pairwise term between the adversarial codes and the clean codes U_ben
(S from the *true* labels), so adversarial examples must keep the clean similarity structure; lambda = 1 (TADH).
The prototype network P (label -> 4096 -> 512 -> K, ReLU, tanh) is trained alongside, one Adam step (lr 1e-4,
betas (0.5, 0.999)) per batch, on a least-squares pairwise objective against the code table (TADH: a circle
loss, not provided). Targets come from the training set's distinct label rows. The inner attack: PGD-7, step
2/255, random start, train mode. ``docs/methods.md``, section ATRDH, for the departures from the TADH code.
"""

from __future__ import annotations

import torch
from torch import nn

from ..attacks.guided import CodeGuidedAttack
from ..metrics import relevance
from ..models import binarize
from .base import AdversarialTraining


class PrototypeNet(nn.Module):
    """Label (N, L) multi-hot -> relaxed prototype code tanh(P(t)) (N, K) (TADH's PrototypeNet)."""

    def __init__(self, num_classes: int, bits: int, hidden: tuple[int, ...] = (4096, 512)):
        super().__init__()
        sizes = (num_classes, *hidden)
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers, nn.Linear(sizes[-1], bits))

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.layers(labels))


def prototype_loss(prototypes: torch.Tensor, target_labels: torch.Tensor, table_codes: torch.Tensor,
                   table_labels: torch.Tensor, *, quantization_weight: float = 1e-4) -> torch.Tensor:
    """mean_ij (p_i . B_j / K - (2 S_ij - 1))^2 + q * mean((p - sign p)^2): relaxed prototypes p (N, K)
    of target labels (N, L) against the table codes B (n, K) with labels (n, L)."""
    target = 2 * relevance(target_labels, table_labels).to(target_labels.dtype) - 1     # (N, n)
    fit = (prototypes @ table_codes.T / prototypes.shape[1] - target).pow(2).mean()
    return fit + quantization_weight * (prototypes - binarize(prototypes).detach()).pow(2).mean()


class TargetedPGD(CodeGuidedAttack):
    """ATRDH's inner attack: PGD toward given target codes (the prototypes), tanh scale 1."""

    toward = True


class ATRDH(AdversarialTraining):
    """ATRDH (Wang, Zhang, Lu, Xu, "Targeted Attack and Defense for Deep Hashing", SIGIR 2021,
    https://dl.acm.org/doi/10.1145/3404835.3463233); module docstring for the objective.

    Arguments:
        num_train, bits, num_classes: the training split's size, the code length and label width.
        eps, alpha, steps, random_start, model_mode: the inner targeted attack (Default: 8/255, 2/255, 7,
            True, "train").
        weight: lambda of the adversarial pairwise term (Default: 1.0, TADH code; SAAT's copy: 2.0).
        prototype_lr: Adam learning rate of the prototype network (Default: 1e-4).
        prototype_hidden: its hidden widths (Default: (4096, 512)).

    Example::
        >>> defense = ATRDH(num_train=len(data.train), bits=32, num_classes=data.num_classes)
        >>> robust, history = fit_defended_model(data, clean_model, defense, method="dph", epochs=100)
    """

    name = "atrdh"

    def __init__(self, *, num_train: int, bits: int, num_classes: int, eps: float = 8 / 255,
                 alpha: float = 2 / 255, steps: int = 7, random_start: bool = True, model_mode: str = "train",
                 weight: float = 1.0, prototype_lr: float = 1e-4, prototype_hidden: tuple[int, ...] = (4096, 512)):
        super().__init__(num_train=num_train, bits=bits, num_classes=num_classes, eps=eps, alpha=alpha,
                         steps=steps, random_start=random_start, model_mode=model_mode)
        self.weight, self.prototype_lr = float(weight), float(prototype_lr)
        self.prototype_hidden = tuple(prototype_hidden)
        self.build_prototype_network()

    @property
    def config(self):
        return dict(super().config, weight=self.weight, prototype_lr=self.prototype_lr,
                    prototype_hidden=list(self.prototype_hidden))

    def build_prototype_network(self) -> None:
        """A fresh prototype network (on the code table's device) and its Adam optimizer."""
        self.prototype_net = PrototypeNet(self.label_table.shape[1], self.code_table.shape[1],
                                          self.prototype_hidden).to(self.code_table.device)
        self.prototype_optimizer = torch.optim.Adam(self.prototype_net.parameters(), lr=self.prototype_lr,
                                                    betas=(0.5, 0.999))

    def prepare(self, model, train_split, *, seed: int = 0, loss=None) -> None:
        super().prepare(model, train_split, seed=seed, loss=loss)
        torch.manual_seed(seed)   # the network's initial weights depend on the seed only
        self.build_prototype_network()

    def get_extra_state(self) -> dict:
        return dict(super().get_extra_state(), prototype_optimizer=self.prototype_optimizer.state_dict())

    def set_extra_state(self, state: dict) -> None:
        super().set_extra_state(state)
        self.prototype_optimizer.load_state_dict(state["prototype_optimizer"])

    def target_labels(self, count: int, step: int) -> torch.Tensor:
        """``count`` target labels drawn uniformly from the training set's distinct label rows."""
        distinct = torch.unique(self.label_table, dim=0)
        distinct = distinct[distinct.sum(1) > 0]
        choice = torch.randint(len(distinct), (count,), generator=self.generator(step, stream=1))
        return distinct[choice.to(distinct.device)]

    def prototypes(self, target_labels: torch.Tensor) -> torch.Tensor:
        """Prototype codes p = sign(P(t)) (N, K) of target labels (N, L)."""
        with torch.no_grad():
            return binarize(self.prototype_net(target_labels))

    def train_prototypes(self, target_labels: torch.Tensor) -> float:
        """One Adam step of the prototype network on ``prototype_loss`` against the code table."""
        with torch.enable_grad():
            value = prototype_loss(self.prototype_net(target_labels), target_labels, self.code_table, self.label_table)
            self.prototype_optimizer.zero_grad(set_to_none=True)
            value.backward()
            self.prototype_optimizer.step()
        return value.item()

    def batch_loss(self, model, loss, images, labels, indices, *, step: int) -> torch.Tensor:
        targets = self.target_labels(len(images), step)
        self.train_prototypes(targets)
        attack = TargetedPGD(model, eps=self.eps, alpha=self.alpha, steps=self.steps, random_start=self.random_start,
                             model_mode=self.model_mode, seed=self.attack_seed(step), keep_history=False)
        adversarial = attack.run(images, self.prototypes(targets))               # inner: toward p_t
        hashing, relaxed, adversarial_relaxed = self.outer_forward(model, loss, images, adversarial, labels,
                                                                   indices, step=step)
        if loss.pairs == "batch":
            table_codes, table_labels = relaxed.detach(), labels
        else:
            table_codes, table_labels = loss.code_table[loss.seen], loss.label_table[loss.seen]
        pair = loss.pair_loss(adversarial_relaxed, table_codes, relevance(labels, table_labels).to(labels.dtype))
        return hashing + self.weight * pair
