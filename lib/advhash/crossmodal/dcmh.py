"""DCMH: Jiang and Li, "Deep Cross-Modal Hashing", CVPR 2017 -- the objective and its alternating training.

With F = f(x; theta_x), G = g(t; theta_y) the image and text networks' linear outputs (rows here: (n, K)),
S_ij = 1[items i and j share a label] and Theta_ij = 1/2 F_i . G_j:

    min  J = - sum_ij ( S_ij Theta_ij - log(1 + e^Theta_ij) )                 (inter-modal likelihood)
             + gamma ( ||B - F||^2 + ||B - G||^2 )                             (quantization)
             + eta ( ||F^T 1||^2 + ||G^T 1||^2 ),                              (bit balance)
    B = sign(gamma (F + G)) = sign(F + G)                                      (the B-step, closed form)

Each epoch trains the image network batch by batch with G fixed (the buffer of the last text pass), then the
text network with F fixed, then recomputes B. As the published code (WendellGul/DCMH ``main.py`` L44-53, L88-99,
L119-132, L139), F and G buffer all n outputs from N(0, 1) and a batch's objective is divided by b n
(``pairs="table"``); ``pairs="batch"`` pairs within the batch (advhash's own, b x b). The published schedule,
the departures and the measured effect of eta: ``docs/methods.md``, section DCMH.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..metrics import relevance
from ..models import binarize
from ..resumable import ResumableRun
from ..train import epoch_order, make_optimizer
from ..utils import check_choice, resolve_device
from .fitting import fit_cross_modal, require_texts
from .models import CrossModalHashing


def dcmh_objective(image_outputs: torch.Tensor, text_outputs: torch.Tensor, similarity: torch.Tensor,
                   codes: torch.Tensor, *, gamma: float = 1.0, eta: float = 1.0) -> torch.Tensor:
    """The whole DCMH objective J of the module docstring (no normalization), for F, G (n, K), S (n, n), B (n, K)."""
    theta = 0.5 * image_outputs @ text_outputs.T
    likelihood = -(similarity * theta - F.softplus(theta)).sum()
    quantization = (codes - image_outputs).pow(2).sum() + (codes - text_outputs).pow(2).sum()
    balance = image_outputs.sum(0).pow(2).sum() + text_outputs.sum(0).pow(2).sum()
    return likelihood + gamma * quantization + eta * balance


def dcmh_batch_loss(outputs: torch.Tensor, other_outputs: torch.Tensor, similarity: torch.Tensor,
                    codes: torch.Tensor, rest_sum: torch.Tensor, *, gamma: float = 1.0,
                    eta: float = 1.0) -> torch.Tensor:
    """J as a function of one batch of one modality, the other modality fixed (DCMH's alternating step):

        Theta = 1/2 outputs . other_outputs^T                                  (b, n)
        J_b = [ -sum (S Theta - log(1 + e^Theta)) + gamma ||codes - outputs||^2
                + eta ||outputs^T 1 + rest_sum||^2 ] / (b n)

    Its gradient is that of :func:`dcmh_objective` with respect to the batch's rows, divided by b n.
    Shapes: outputs (b, K); other_outputs (n, K) the other modality's buffer; similarity (b, n);
    codes (b, K) the batch's rows of B; rest_sum (K,) the sum of this modality's buffer over the other rows.
    """
    theta = 0.5 * outputs @ other_outputs.T
    likelihood = -(similarity * theta - F.softplus(theta)).sum()
    quantization = (codes - outputs).pow(2).sum()
    balance = (outputs.sum(0) + rest_sum).pow(2).sum()
    return (likelihood + gamma * quantization + eta * balance) / (outputs.shape[0] * other_outputs.shape[0])


@torch.no_grad()
def _outputs(network, read, indices: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """Real-valued outputs z of ``network`` for the items ``indices``, read in batches by ``read(indices)``."""
    was_training = network.training
    network.eval()
    out = torch.cat([network.hash_logits(read(chunk).to(device)) for chunk in indices.split(batch_size)])
    network.train(was_training)
    return out


PAIRS = ("table", "batch")


def train_dcmh(model: CrossModalHashing, train_split, *, epochs: int, batch_size: int = 128, lr: float = 10 ** -1.5,
               optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0, gamma: float = 1.0,
               eta: float = 1.0, pairs: str = "table", seed: int = 0, start_from_model: bool = False,
               checkpoint_path: str | Path | None = None, device: str | torch.device = "cpu",
               evaluate: Callable[[CrossModalHashing], dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """Train both networks of ``model`` with DCMH's alternating updates on ``train_split`` (images, texts, labels).

    Args:
        epochs, batch_size (DCMH: 128), lr, optimizer ("sgd" / "adam"), momentum, weight_decay: the image and the
            text network each get their own optimizer with these settings.
        gamma, eta: the quantization and balance weights (DCMH: 1, 1).
        pairs: "table" (Default, DCMH: a batch against the other modality's buffer of all n items) or
            "batch" (within the batch; module docstring).
        seed: the initial buffers, the weights' RNG state and every epoch's two shuffling orders.
        start_from_model: start the F and G buffers from the model's outputs (fine-tuning) instead of N(0, 1).
        checkpoint_path: written atomically after every epoch; an existing one is resumed (or only loaded
            when complete); one written with other settings is refused.
        evaluate: optional ``evaluate(model) -> {name: value}`` after each epoch, joined to the history.

    Returns: one dict per epoch: epoch, image_loss, text_loss (mean batch objectives), seconds, and evaluate's.
    """
    if epochs < 0 or batch_size <= 0:
        raise ValueError(f"epochs must be >= 0 and batch_size > 0; got {epochs}, {batch_size}")
    check_choice("pairs", pairs, PAIRS)
    texts, labels = require_texts(train_split).float(), train_split.labels.float()
    device = resolve_device(device)
    model.to(device)
    n = len(train_split)
    torch.manual_seed(seed)
    optimizers = {name: make_optimizer(optimizer, model.modality(name).parameters(), lr=lr, momentum=momentum,
                                       weight_decay=weight_decay) for name in ("image", "text")}
    run_config = dict(model=model.config, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
                      weight_decay=weight_decay, gamma=gamma, eta=eta, pairs=pairs, seed=seed, num_train=n,
                      start_from_model=start_from_model)
    similarity = relevance(labels, labels).float().to(device)                       # S (n, n)
    read = {"image": lambda indices: train_split.batch(indices)[0],                  # images read a batch at a time
            "text": lambda indices: texts[indices]}
    if start_from_model:
        buffers = {name: _outputs(model.modality(name), read[name], torch.arange(n), size, device)
                   for name, size in (("image", 256), ("text", 1024))}
    else:
        generator = torch.Generator().manual_seed(seed)
        buffers = {name: torch.randn(n, model.bits, generator=generator).to(device) for name in ("image", "text")}
    parts = {f"{name}_optimizer": optimizers[name] for name in ("image", "text")}
    with ResumableRun(checkpoint_path, run_config, model, parts=parts, device=device, epochs=epochs,
                      evaluate=evaluate, desc="train DCMH") as run:
        state = run.start(image_buffer=buffers["image"], text_buffer=buffers["text"],
                          codes=binarize(buffers["image"] + buffers["text"]))
        buffers, codes = {"image": state["image_buffer"], "text": state["text_buffer"]}, state["codes"]
        for epoch in run.epochs():
            began, record = time.perf_counter(), dict(epoch=epoch + 1)
            for index, (name, other) in enumerate((("image", "text"), ("text", "image"))):
                order = epoch_order(n, seed=seed, epoch=2 * epoch + index)
                record[f"{name}_loss"] = _modality_pass(model, name, other, order.split(batch_size), buffers,
                                                        optimizers[name], read=read, similarity=similarity,
                                                        codes=codes, pairs=pairs, gamma=gamma, eta=eta, device=device)
            codes = binarize(buffers["image"] + buffers["text"])                   # the B-step
            record["seconds"] = time.perf_counter() - began
            run.end_epoch(record, image_buffer=buffers["image"], text_buffer=buffers["text"], codes=codes)
        model.eval()
        return run.history


def _modality_pass(model, name: str, other: str, chunks, buffers: dict, optimizer, *, read, similarity, codes,
                   pairs: str, gamma: float, eta: float, device) -> float:
    """One pass of DCMH's alternating step over modality ``name``'s network, ``other``'s outputs fixed: each
    batch's outputs refresh ``buffers[name]``, then its objective (:func:`dcmh_batch_loss`) is minimized.
    Returns the mean batch objective."""
    network, buffer = model.modality(name), buffers[name]
    network.train()
    total, batches = 0.0, 0
    for chunk in chunks:
        chunk = chunk.to(device)
        outputs = network.hash_logits(read[name](chunk.cpu()).to(device))
        buffer[chunk] = outputs.detach()
        if pairs == "table":
            rest_sum = buffer.sum(0) - buffer[chunk].sum(0)
            loss = dcmh_batch_loss(outputs, buffers[other], similarity[chunk], codes[chunk], rest_sum,
                                   gamma=gamma, eta=eta)
        else:
            partner = _outputs(model.modality(other), read[other], chunk.cpu(), len(chunk), device)
            buffers[other][chunk] = partner
            loss = dcmh_batch_loss(outputs, partner, similarity[chunk][:, chunk], codes[chunk],
                                   outputs.new_zeros(outputs.shape[1]), gamma=gamma, eta=eta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, batches = total + loss.item(), batches + 1
    return total / max(batches, 1)


def fit_dcmh(data, *, bits: int, epochs: int, backbone: str = "small_cnn", input_size: int | None = None,
             text_hidden: int = 8192, weights=None, base: CrossModalHashing | None = None, train_split=None,
             checkpoint_dir: str | Path | None = None, name: str = "dcmh", device: str | torch.device = "cpu",
             seed: int = 0, **training) -> tuple[CrossModalHashing, list[dict[str, Any]]]:
    """Build (or copy ``base``, to fine-tune it) and train a DCMH model on ``train_split`` (default
    ``data.train``); resume or just load ``<checkpoint_dir>/<name>_<bits>bits_<backbone>_<tag>.pt``, the tag
    hashing the data, the training items, the base model's weights and every setting.
    ``training`` goes to :func:`train_dcmh` (batch_size, lr, optimizer, gamma, eta, ...)."""
    train_split = data.train if train_split is None else train_split
    build = lambda in_channels: CrossModalHashing(bits=bits, text_dim=data.text_dim, backbone=backbone,
                                                  in_channels=in_channels, input_size=input_size,
                                                  text_hidden=text_hidden, weights=weights)
    return fit_cross_modal(data, build, train_dcmh, bits=bits, epochs=epochs, backbone=backbone, weights=weights,
                           base=base,
                           train_split=train_split, checkpoint_dir=checkpoint_dir, name=name, device=device, seed=seed,
                           training=training)
