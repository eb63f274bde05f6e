"""SSAH: Li, Deng, Li, Liu, Gao and Tao, "Self-Supervised Adversarial Hashing Networks for Cross-Modal
Retrieval", CVPR 2018 -- the networks, the objective and the alternating training.

A label network (labels -> 4096 -> 512), an image network (backbone -> 512) and a text network (multi-scale fusion
of the tags -> 4096 -> 512) give features F, relaxed codes H = tanh(z) and labels L^. With Theta = 1/2 F^o F^l^T,
Gamma = 1/2 H^o H^l^T (a batch against the n buffered label-network outputs), S_ij = 1[share a label], B = sign(H^l):

    L^o = alpha J_pair(Theta) + gamma J_pair(Gamma) + beta ||B - H^o||^2 + eta ||L^ - L||^2 + delta J_adv   (1)
    J_pair(Theta) = - sum_ij ( S_ij Theta_ij - log(1 + e^Theta_ij) ),      J_adv = - log D(F^o)

(no J_adv for the label network). Discriminators D_v, D_t (512 -> 512 -> 256 -> 1) tell the label network's features
(1) from the image's / text's (0). Each epoch: a label, a discriminator, an image and a text pass (``train_ssah``).
The published code (lelan-li/SSAH ``SSAH.py`` L104-130, ``ops.py`` L55-69) is offered by named options,
``pairwise="squared"``, ``reduction="half_sum"``, ``adversarial_gradient=False``; what else it does, what is not
reproduced and the measurements: ``docs/methods.md``, section SSAH.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import relevance
from ..models import HashingModel, binarize
from ..resumable import ResumableRun
from ..train import epoch_order, make_optimizer
from ..utils import check_choice, resolve_device
from .fitting import fit_cross_modal, require_texts
from .models import PairedModalities

SEMANTIC_DIM = 512                      # SSAH's SEMANTIC_EMBED
TEXT_POOL_WIDTHS = (50, 30, 15, 10, 5)  # the multi-scale fusion's average-pool widths (5 x level, level 10, 6, 3, 2, 1)
PAIRWISE_FORMS = ("likelihood", "squared")
NETWORK_PASSES = ("label", "discriminators", "image", "text")   # one pass of each per epoch, in this order
REDUCTIONS = ("sum", "half_sum")        # the paper's sums, the published code's tf.nn.l2_loss (1/2 sum)


def _response_norm() -> nn.LocalResponseNorm:
    """SSAH's local response normalization (TensorFlow depth radius 2, bias 2, alpha 10^-4, beta 0.75;
    PyTorch divides alpha by the window size, 5)."""
    return nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)


def _lrn(norm: nn.LocalResponseNorm, x: torch.Tensor) -> torch.Tensor:
    """Local response normalization across the features of (N, C) vectors."""
    return norm(x.unsqueeze(-1)).squeeze(-1)


class SemanticHashing:
    """What the three SSAH networks share: ``semantic(x) -> (F, head input)``, then the hash head (K) and
    the label head (c). Gives ``outputs`` -> (F, z, L^), and the usual ``hash_logits``, ``forward``, ``codes``."""

    def _make_heads(self, bits: int, num_labels: int) -> None:
        self.hash_layer = nn.Linear(SEMANTIC_DIM, bits)
        self.label_layer = nn.Linear(SEMANTIC_DIM, num_labels)

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features F (N, 512), hash logits z (N, K), predicted labels sigmoid (N, c))."""
        features, head_input = self.semantic(x)
        return features, self.hash_layer(head_input), torch.sigmoid(self.label_layer(head_input))

    def hash_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-activation z (N, bits)."""
        return self.hash_layer(self.semantic(x)[1])

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """Relaxed codes H = tanh(scale * z), shape (N, bits)."""
        return torch.tanh(scale * self.hash_logits(x))

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Binary codes sign(z) in {-1, +1}, shape (N, bits)."""
        return binarize(self.hash_logits(x))


class LabelNetwork(SemanticHashing, nn.Module):
    """The label network: labels (N, c) -> 4096 ReLU -> LRN -> 512 ReLU = F -> hash (K) and label (c) heads."""

    def __init__(self, num_labels: int, *, bits: int, hidden: int = 4096):
        super().__init__()
        self.config: dict[str, Any] = dict(num_labels=num_labels, bits=bits, hidden=hidden)
        self.bits, self.num_labels = bits, num_labels
        self.layer1, self.norm1 = nn.Linear(num_labels, hidden), _response_norm()
        self.layer2 = nn.Linear(hidden, SEMANTIC_DIM)
        self._make_heads(bits, num_labels)

    def semantic(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if labels.ndim != 2 or labels.shape[1] != self.num_labels:
            raise ValueError(f"labels must be (N, {self.num_labels}) multi-hot vectors; got {tuple(labels.shape)}")
        features = F.relu(self.layer2(_lrn(self.norm1, F.relu(self.layer1(labels.float())))))
        return features, features


class SSAHImageNetwork(SemanticHashing, HashingModel):
    """The image network: ``HashingModel``'s normalization and backbone -> 512 ReLU = F -> hash and label heads
    (SSAH: CNN-F's fc7 -> fc8 512). Takes [0, 1] images like every image model here."""

    def __init__(self, backbone: str = "small_cnn", *, bits: int, num_labels: int, in_channels: int = 3,
                 input_size: int | None = None, weights=None):
        HashingModel.__init__(self, backbone, bits=bits, in_channels=in_channels, input_size=input_size,
                              weights=weights)
        self.config["num_labels"] = num_labels
        self.feature_layer = nn.Linear(self.hash_layer.in_features, SEMANTIC_DIM)
        self._make_heads(bits, num_labels)

    def semantic(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = F.relu(self.feature_layer(self.features(images)))
        return features, features


class MultiScaleFusion(nn.Module):
    """SSAH's multi-scale fusion of a bag-of-words t (N, T): for each width w in ``TEXT_POOL_WIDTHS``, average
    pools of width w (stride w), a 1x1 convolution (one weight, no bias), ReLU, resized back to T (linear);
    stacked with t itself: (N, 6, T). A width above T is cut to T."""

    def __init__(self, text_dim: int):
        super().__init__()
        self.text_dim = text_dim
        self.widths = [min(width, text_dim) for width in TEXT_POOL_WIDTHS]
        self.scales = nn.Parameter(torch.randn(len(self.widths)) * 0.01)   # the 1x1 convolutions' weights

    def forward(self, texts: torch.Tensor) -> torch.Tensor:
        x = texts.unsqueeze(1)                                                     # (N, 1, T)
        levels = [x]
        for width, scale in zip(self.widths, self.scales):
            pooled = F.relu(scale * F.avg_pool1d(x, width, width))
            levels.append(F.interpolate(pooled, size=self.text_dim, mode="linear", align_corners=False))
        return torch.cat(levels, dim=1)


class SSAHTextNetwork(SemanticHashing, nn.Module):
    """The text network: multi-scale fusion (N, 6, T) -> 4096 ReLU -> LRN -> 512 ReLU = F -> LRN -> hash and
    label heads."""

    def __init__(self, text_dim: int, *, bits: int, num_labels: int, hidden: int = 4096):
        super().__init__()
        if not isinstance(text_dim, int) or text_dim <= 0:
            raise ValueError(f"text_dim (the tag vocabulary size) must be a positive integer, got {text_dim!r}")
        self.config: dict[str, Any] = dict(text_dim=text_dim, bits=bits, num_labels=num_labels, hidden=hidden)
        self.bits, self.text_dim = bits, text_dim
        self.fusion = MultiScaleFusion(text_dim)
        self.layer1, self.norm1 = nn.Linear(6 * text_dim, hidden), _response_norm()
        self.layer2, self.norm2 = nn.Linear(hidden, SEMANTIC_DIM), _response_norm()
        self._make_heads(bits, num_labels)

    def semantic(self, texts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if texts.ndim != 2 or texts.shape[1] != self.text_dim:
            raise ValueError(f"texts must be (N, {self.text_dim}) tag vectors; got {tuple(texts.shape)}")
        fused = self.fusion(texts.float()).flatten(1)
        features = F.relu(self.layer2(_lrn(self.norm1, F.relu(self.layer1(fused)))))
        return features, _lrn(self.norm2, features)


def modality_discriminator(dropout: float = 0.0) -> nn.Sequential:
    """SSAH's discriminator: a 512-d feature -> 512 ReLU -> 256 ReLU -> one logit (label network's: 1)."""
    return nn.Sequential(nn.Linear(SEMANTIC_DIM, 512), nn.ReLU(), nn.Dropout(dropout), nn.Linear(512, 256),
                         nn.ReLU(), nn.Dropout(dropout), nn.Linear(256, 1))


class SSAHModel(PairedModalities, nn.Module):
    """SSAH's five networks: ``label``, ``image``, ``text`` and the discriminators ``image_discriminator``,
    ``text_discriminator``. Retrieval uses ``image`` and ``text`` (``modality(name)``), as for DCMH.

    Args:
        bits: K; text_dim: T; num_labels: c; backbone, in_channels, input_size: the image network's.
        hidden: the label and text networks' first layer (SSAH: 4096); discriminator_dropout: the discriminators'
            dropout rate (the published code sets it outside the files read; default 0).
    """

    def __init__(self, *, bits: int, text_dim: int, num_labels: int, backbone: str = "small_cnn",
                 in_channels: int = 3, input_size: int | None = None, hidden: int = 4096,
                 discriminator_dropout: float = 0.0, weights=None):
        super().__init__()
        self.bits = bits
        self.label = LabelNetwork(num_labels, bits=bits, hidden=hidden)
        self.image = SSAHImageNetwork(backbone, bits=bits, num_labels=num_labels, in_channels=in_channels,
                                      input_size=input_size, weights=weights)
        self.text = SSAHTextNetwork(text_dim, bits=bits, num_labels=num_labels, hidden=hidden)
        self.image_discriminator = modality_discriminator(discriminator_dropout)
        self.text_discriminator = modality_discriminator(discriminator_dropout)
        self.config: dict[str, Any] = dict(image=self.image.config, text=self.text.config, label=self.label.config,
                                           discriminator_dropout=discriminator_dropout)

    def discriminator(self, name: str) -> nn.Module:
        """The discriminator telling modality ``name``'s features from the label network's."""
        self.modality(name)                                                     # validates the name
        return self.image_discriminator if name == "image" else self.text_discriminator


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """sum (the paper) or 1/2 sum (the published ``tf.nn.l2_loss``) of ``values``' entries."""
    check_choice("reduction", reduction, REDUCTIONS)
    return values.sum() if reduction == "sum" else 0.5 * values.sum()


def ssah_pairwise_loss(outputs: torch.Tensor, anchors: torch.Tensor, similarity: torch.Tensor, *,
                       form: str = "likelihood", reduction: str = "sum") -> torch.Tensor:
    """J_pair of equation (1) over the (b, n) pairs, with Theta = 1/2 outputs anchors^T and, per pair,

        "likelihood" (the paper):       log(1 + e^Theta) - S Theta
        "squared" (the published code):  (0.999 S Theta - log(1 + e^Theta))^2    (lelan-li/SSAH SSAH.py L115-116,
                                                                                 ops.py L67-69: S scaled by 0.999)

    reduced by ``reduction``: "sum" (default, the paper's sum over i, j) or "half_sum" (the published code's
    ``tf.nn.l2_loss``, 1/2 sum: ops.py L55-56). ``form="squared", reduction="half_sum"`` is what the published
    code computes.

    Shapes: outputs (b, d) of the network being trained; anchors (n, d) the label network's buffer; S (b, n)."""
    theta = 0.5 * outputs @ anchors.T
    if form == "likelihood":
        per_pair = F.softplus(theta) - similarity * theta
    elif form == "squared":
        per_pair = (0.999 * similarity * theta - F.softplus(theta)).pow(2)
    else:
        check_choice("pairwise", form, PAIRWISE_FORMS)
    return _reduce(per_pair, reduction)


def ssah_network_loss(features: torch.Tensor, relaxed: torch.Tensor, predicted_labels: torch.Tensor, *,
                      anchor_features: torch.Tensor, anchor_codes: torch.Tensor, similarity: torch.Tensor,
                      codes: torch.Tensor, labels: torch.Tensor, weights: dict[str, float], form: str = "likelihood",
                      reduction: str = "sum", adversarial: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The terms of equation (1) for one batch and their weighted sum ``total``.

    features (b, 512), relaxed = tanh(z) (b, K), predicted_labels (b, c): the network's outputs; anchor_features
    (n, 512), anchor_codes (n, K): the label network's buffers; similarity (b, n); codes (b, K): the batch's B;
    labels (b, c); weights: alpha, gamma, beta, eta, delta; form: J_pair's (``ssah_pairwise_loss``);
    adversarial: J_adv (already reduced: a batch mean, see ``adversarial_loss``), or None (the label network).

    reduction, for the two pairwise terms, ||B - H||^2 and ||L^ - L||^2 alike: "sum" (default, the paper's sums and
    squared Frobenius norms) or "half_sum" (the published code: ``mse_criterion`` = ``tf.nn.l2_loss``, 1/2 sum, for
    all four; lelan-li/SSAH ops.py L55-56, SSAH.py L104-110, L113-120, L123-130)."""
    check_choice("reduction", reduction, REDUCTIONS)
    terms = dict(feature_pairs=ssah_pairwise_loss(features, anchor_features, similarity, form=form,
                                                  reduction=reduction),
                 code_pairs=ssah_pairwise_loss(relaxed, anchor_codes, similarity, form=form, reduction=reduction),
                 quantization=_reduce((codes - relaxed).pow(2), reduction),
                 label=_reduce((predicted_labels - labels).pow(2), reduction))
    weight_of = dict(feature_pairs="alpha", code_pairs="gamma", quantization="beta", label="eta", adversarial="delta")
    if adversarial is not None:
        terms["adversarial"] = adversarial
    terms["total"] = sum(weights[weight_of[name]] * value for name, value in terms.items())
    return terms


def discriminator_loss(discriminator: nn.Module, label_features: torch.Tensor,
                       modality_features: torch.Tensor) -> torch.Tensor:
    """The discriminator's cross-entropy: the label network's features are class 1, the modality's class 0."""
    real, fake = discriminator(label_features), discriminator(modality_features)
    return 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                  + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def adversarial_loss(discriminator: nn.Module, modality_features: torch.Tensor) -> torch.Tensor:
    """J_adv = -log D(F^o), averaged over the batch (the published ``sce_criterion``, lelan-li/SSAH ops.py L58-59,
    SSAH.py L119 / L129, whatever the other terms' reduction): the modality's features labelled as the label
    network's (class 1)."""
    logits = discriminator(modality_features)
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


@torch.no_grad()
def _all_outputs(network, read, n: int, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (n, 512), relaxed codes tanh(z) (n, K)) of all n training items, in eval mode."""
    was_training = network.training
    network.eval()
    features, relaxed = [], []
    for chunk in torch.arange(n).split(batch_size):
        f, z, _ = network.outputs(read(chunk).to(device))
        features.append(f)
        relaxed.append(torch.tanh(z))
    network.train(was_training)
    return torch.cat(features), torch.cat(relaxed)


def train_ssah(model: SSAHModel, train_split, *, epochs: int, batch_size: int = 128, image_lr: float = 10 ** -4.5,
               text_lr: float = 10 ** -3.5, label_lr: float = 1e-2, discriminator_lr: float = 1e-3,
               weight_decay: float = 0.0, alpha: float = 1.0, gamma: float = 1.0, beta: float = 1.0,
               eta: float = 1.0, delta: float = 1.0, pairwise: str = "likelihood", reduction: str = "sum",
               adversarial_gradient: bool = True,
               label_passes: int = 1, seed: int = 0, start_from_model: bool = False,
               checkpoint_path: str | Path | None = None,
               device: str | torch.device = "cpu",
               evaluate: Callable[[SSAHModel], dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """Train SSAH's networks on ``train_split`` (images, texts, labels), one pass of each per epoch (module docstring).

    Args:
        epochs, batch_size (SSAH: 128).
        image_lr, text_lr, label_lr, discriminator_lr: Adam learning rates (defaults: the published first rates).
        weight_decay: Adam's, for every network.
        alpha, gamma, beta, eta, delta: the weights of equation (1) (SSAH: all 1), the paper's names (alpha here
            weighs the feature pairs: neither a tanh scale nor a step size).
        pairwise: "likelihood" (Default, the paper) or "squared" (the published code).
        reduction: how the pairwise, quantization and label terms run over their entries: "sum" (Default, the
            paper) or "half_sum" (the published code's tf.nn.l2_loss, 1/2 sum; with pairwise="squared" the
            published terms and relative weights). J_adv is a batch mean in every case (the published code).
        adversarial_gradient: True (Default, the paper) lets J_adv train the modality networks; False is the
            published code, where it does not.
        label_passes: passes of the label network per epoch, in the same order (the published code: up to 10,
            until its loss rises).
        seed: initial buffers (N(0, 1), as the published code), the weights' RNG state and every pass's order.
        start_from_model: start the label network's buffers from its outputs (fine-tuning, SSAH+).
        checkpoint_path: written atomically after every epoch; an existing one is resumed (or only loaded when
            complete); one written with other settings is refused.
        evaluate: optional ``evaluate(model) -> {name: value}`` after each epoch, joined to the history.

    Returns: one dict per epoch: epoch, label_loss, discriminator_loss, image_loss, text_loss (mean batch
    totals), image_adversarial and text_adversarial (mean J_adv), seconds, and evaluate's.
    """
    if epochs < 0 or batch_size <= 0:
        raise ValueError(f"epochs must be >= 0 and batch_size > 0; got {epochs}, {batch_size}")
    check_choice("pairwise", pairwise, PAIRWISE_FORMS)
    check_choice("reduction", reduction, REDUCTIONS)
    texts, labels = require_texts(train_split).float(), train_split.labels.float()
    if labels.shape[1] != model.label.num_labels:
        raise ValueError(f"the training labels have {labels.shape[1]} classes but the model's label network "
                         f"takes {model.label.num_labels}")
    device = resolve_device(device)
    model.to(device)
    n = len(train_split)
    torch.manual_seed(seed)
    # alpha here is SSAH's loss weight in equation (1) (the paper's name), not a tanh scale or an attack's step
    weights = dict(alpha=alpha, gamma=gamma, beta=beta, eta=eta, delta=delta)
    rates = dict(label=label_lr, image=image_lr, text=text_lr, discriminators=discriminator_lr)
    optimizers = ssah_optimizers(model, rates, weight_decay=weight_decay)
    run_config = dict(model=model.config, batch_size=batch_size, rates=rates, weight_decay=weight_decay,
                      weights=weights, pairwise=pairwise, reduction=reduction,
                      adversarial_gradient=adversarial_gradient, label_passes=label_passes, seed=seed,
                      num_train=n, start_from_model=start_from_model)
    similarity = relevance(labels, labels).float().to(device)                       # S (n, n)
    labels = labels.to(device)
    batches = SSAHBatches(read={"image": lambda indices: train_split.batch(indices)[0],
                                "text": lambda indices: texts[indices],
                                "label": lambda indices: labels[indices.to(labels.device)]},
                          similarity=similarity, labels=labels, weights=weights, pairwise=pairwise,
                          reduction=reduction, device=device)
    if start_from_model:
        anchors = _all_outputs(model.label, batches.read["label"], n, 1024, device)
    else:
        generator = torch.Generator().manual_seed(seed)
        anchors = (torch.randn(n, SEMANTIC_DIM, generator=generator).to(device),
                   torch.randn(n, model.bits, generator=generator).to(device))
    parts = {f"{name}_optimizer": optimizers[name] for name in NETWORK_PASSES}
    with ResumableRun(checkpoint_path, run_config, model, parts=parts, device=device, epochs=epochs,
                      evaluate=evaluate, desc="train SSAH") as run:
        state = run.start(anchor_features=anchors[0], anchor_codes=anchors[1])
        anchor_features, anchor_codes = state["anchor_features"], state["anchor_codes"]
        for epoch in run.epochs():
            began = time.perf_counter()
            orders = {name: epoch_order(n, seed=seed, epoch=len(NETWORK_PASSES) * epoch + index).split(batch_size)
                      for index, name in enumerate(NETWORK_PASSES)}
            record = dict(epoch=epoch + 1, **ssah_epoch(model, optimizers, orders, batches, anchor_features,
                                                        anchor_codes, label_passes=label_passes,
                                                        adversarial_gradient=adversarial_gradient))
            record["seconds"] = time.perf_counter() - began
            run.end_epoch(record, anchor_features=anchor_features, anchor_codes=anchor_codes)
        model.eval()
        return run.history


def ssah_epoch(model: SSAHModel, optimizers: dict[str, Any], orders: dict[str, Any], batches: "SSAHBatches",
               anchor_features: torch.Tensor, anchor_codes: torch.Tensor, *, label_passes: int,
               adversarial_gradient: bool) -> dict[str, float]:
    """One SSAH epoch, its four passes in order (``orders[name]``: each pass's batches of indices): the label
    network (``label_passes`` times over its order), then B = sign(H^l), the discriminators, the image and the text
    network. Returns the epoch's mean losses (label, discriminator, image, text, and each modality's J_adv)."""
    model.train()
    record = dict(label_loss=label_pass(model.label, optimizers["label"], orders["label"] * label_passes, batches,
                                        anchor_features, anchor_codes))
    codes = binarize(anchor_codes)                                                   # B = sign(H^l)
    record["discriminator_loss"] = discriminator_pass(model, optimizers["discriminators"], orders["discriminators"],
                                                      batches)
    for name in ("image", "text"):
        record[f"{name}_loss"], record[f"{name}_adversarial"] = modality_pass(
            model, name, optimizers[name], orders[name], batches, anchor_features, anchor_codes, codes,
            adversarial_gradient=adversarial_gradient)
    return record


def ssah_optimizers(model: SSAHModel, rates: dict[str, float], *, weight_decay: float) -> dict[str, Any]:
    """One Adam of learning rate ``rates[name]`` for each pass ``name`` of ``NETWORK_PASSES``: the label, image and
    text networks', and one for the two discriminators together."""
    groups = dict(label=model.label.parameters(), image=model.image.parameters(), text=model.text.parameters(),
                  discriminators=list(model.image_discriminator.parameters())
                  + list(model.text_discriminator.parameters()))
    return {name: make_optimizer("adam", groups[name], lr=rates[name], momentum=0.0, weight_decay=weight_decay)
            for name in NETWORK_PASSES}


@dataclass
class SSAHBatches:
    """What every pass of an SSAH epoch reads: ``read[name](indices)`` the items' inputs of network ``name``
    ("label", "image", "text"), S (n, n), the labels (n, c) and the settings of equation (1)."""

    read: dict[str, Callable[[torch.Tensor], torch.Tensor]]
    similarity: torch.Tensor
    labels: torch.Tensor
    weights: dict[str, float]
    pairwise: str
    reduction: str
    device: torch.device


def _mean(values: list[float]) -> float:
    return sum(values) / max(len(values), 1)


def label_pass(network: LabelNetwork, optimizer, chunks, batches: SSAHBatches, anchor_features: torch.Tensor,
               anchor_codes: torch.Tensor) -> float:
    """The label network's pass, each batch against its own buffers F^l, H^l (which it refreshes in place) and
    B = sign(H^l) of its rows. Returns the mean batch total of equation (1)."""
    totals = []
    for chunk in chunks:
        features, logits, predicted = network.outputs(batches.read["label"](chunk))
        relaxed = torch.tanh(logits)
        anchor_features[chunk], anchor_codes[chunk] = features.detach(), relaxed.detach()
        terms = ssah_network_loss(features, relaxed, predicted, anchor_features=anchor_features,
                                  anchor_codes=anchor_codes, similarity=batches.similarity[chunk],
                                  codes=binarize(anchor_codes[chunk]), labels=batches.labels[chunk],
                                  weights=batches.weights, form=batches.pairwise, reduction=batches.reduction)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        totals.append(terms["total"].item())
    return _mean(totals)


def discriminator_pass(model: SSAHModel, optimizer, chunks, batches: SSAHBatches) -> float:
    """The discriminators' pass: the label network's features (class 1) against each modality's current ones
    (class 0), the two cross-entropies averaged. Returns the mean batch loss."""
    totals = []
    for chunk in chunks:
        with torch.no_grad():
            label_features = model.label.outputs(batches.read["label"](chunk))[0]
            modality_features = {name: model.modality(name).outputs(batches.read[name](chunk).to(batches.device))[0]
                                 for name in ("image", "text")}
        loss = sum(discriminator_loss(model.discriminator(name), label_features, modality_features[name])
                   for name in ("image", "text")) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    return _mean(totals)


def modality_pass(model: SSAHModel, name: str, optimizer, chunks, batches: SSAHBatches,
                  anchor_features: torch.Tensor, anchor_codes: torch.Tensor, codes: torch.Tensor, *,
                  adversarial_gradient: bool) -> tuple[float, float]:
    """The pass of the image or the text network (``name``), supervised by the label network's buffers and
    ``codes`` B, with J_adv from its discriminator (whose gradients are dropped: J_adv does not train D).
    Returns (mean batch total, mean J_adv)."""
    network, discriminator = model.modality(name), model.discriminator(name)
    totals, adversarial_terms = [], []
    for chunk in chunks:
        features, logits, predicted = network.outputs(batches.read[name](chunk).to(batches.device))
        adversarial = adversarial_loss(discriminator, features if adversarial_gradient else features.detach())
        terms = ssah_network_loss(features, torch.tanh(logits), predicted, anchor_features=anchor_features,
                                  anchor_codes=anchor_codes, similarity=batches.similarity[chunk],
                                  codes=codes[chunk], labels=batches.labels[chunk], weights=batches.weights,
                                  form=batches.pairwise, reduction=batches.reduction, adversarial=adversarial)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        totals.append(terms["total"].item())
        adversarial_terms.append(adversarial.item())
    discriminator.zero_grad(set_to_none=True)
    return _mean(totals), _mean(adversarial_terms)


def fit_ssah(data, *, bits: int, epochs: int, backbone: str = "small_cnn", input_size: int | None = None,
             hidden: int = 4096, discriminator_dropout: float = 0.0, weights=None, base: SSAHModel | None = None,
             train_split=None, checkpoint_dir: str | Path | None = None, name: str = "ssah",
             device: str | torch.device = "cpu", seed: int = 0, **training) -> tuple[SSAHModel, list[dict[str, Any]]]:
    """Build (or copy ``base``, to fine-tune it) and train an SSAH model on ``train_split`` (default
    ``data.train``); resume or just load its checkpoint in ``checkpoint_dir`` (named as ``fit_dcmh`` names its).
    ``training`` goes to :func:`train_ssah` (batch_size, the learning rates, the weights, pairwise, reduction,
    ...)."""
    train_split = data.train if train_split is None else train_split
    build = lambda in_channels: SSAHModel(bits=bits, text_dim=data.text_dim, num_labels=train_split.labels.shape[1],
                                          backbone=backbone, in_channels=in_channels, input_size=input_size,
                                          hidden=hidden, discriminator_dropout=discriminator_dropout, weights=weights)
    return fit_cross_modal(data, build, train_ssah, bits=bits, epochs=epochs, backbone=backbone, weights=weights,
                           base=base,
                           train_split=train_split, checkpoint_dir=checkpoint_dir, name=name, device=device, seed=seed,
                           training=training)
