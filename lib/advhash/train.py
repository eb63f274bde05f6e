"""Training a deep hashing model: one seeded, resumable loop for every hashing loss.

Deterministic on CPU: the shuffling order of epoch e comes from its own generator seeded with (seed, e), and the
run (``advhash.resumable.ResumableRun``) checkpoints the torch RNG state with the model, so an interrupted and
resumed run reaches exactly the weights of an uninterrupted one. A checkpoint is named after everything that
determines its weights (:func:`hashing_checkpoint_name`, ``advhash.checkpoint.checkpoint_file``).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .checkpoint import (CheckpointMismatch, RunPath, checkpoint_file, first_difference, load_checkpoint,
                         train_items_tag, weights_tag)  # train_items_tag: re-exported
from .fingerprint import modules_of
from .data.dataset import ImageFileSplit, InMemorySplit
from .losses import LOSSES, PairwiseHashingLoss, build_loss
from .models import BACKBONES, HashingModel, binarize, build_model, effective_precision, set_precision
from .resumable import ResumableRun
from .utils import check_choice, check_images, resolve_device


def epoch_order(num_items: int, *, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled item order of one epoch, a pure function of (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=generator)


def iterate_batches(split, indices: torch.Tensor, batch_size: int, *,
                    device: torch.device | str | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield (images, labels, indices) batches of ``split`` in the given order.

    An in-memory split (``InMemorySplit``, the decoded image cache) gives each batch by indexing, on ``device``
    (held there when it fits); image files read on demand (``ImageFileSplit``) are decoded by
    ``torch.utils.data.DataLoader`` workers in the same order; any other dataset item by item.
    """
    if isinstance(split, InMemorySplit):
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            images, labels = split.batch(chunk, device=device)[:2]
            yield images, labels.float(), chunk
        return
    if isinstance(split, ImageFileSplit) and len(indices) > batch_size:
        workers = min(8, max(1, (os.cpu_count() or 2) - 1))
        pin = device is not None and torch.device(device).type == "cuda"
        loader = torch.utils.data.DataLoader(split, batch_size=batch_size, sampler=indices.tolist(),
                                             num_workers=workers, pin_memory=pin)
        for start, (images, labels, _) in zip(range(0, len(indices), batch_size), loader):
            yield images, labels.float(), indices[start:start + batch_size]
        return
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        if hasattr(split, "batch"):
            images, labels = split.batch(chunk)[:2]
        else:
            items = [split[int(i)] for i in chunk]
            images = torch.stack([item[0] for item in items])
            labels = torch.stack([torch.as_tensor(item[1]) for item in items])
        yield images, labels.float(), chunk


def make_optimizer(name: str, params, *, lr: float, momentum: float, weight_decay: float):
    """SGD (with momentum) or Adam over ``params``."""
    check_choice("optimizer", name, ("sgd", "adam"))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def train_hashing(model: HashingModel, loss: PairwiseHashingLoss, train_split, *, epochs: int,
                  batch_size: int = 64, lr: float = 0.01, optimizer: str = "sgd", momentum: float = 0.9,
                  weight_decay: float = 5e-4, lr_milestones: tuple[int, ...] = (), seed: int = 0,
                  checkpoint_path: str | Path | None = None, checkpoint_every: int = 1,
                  device: str | torch.device = "cpu",
                  evaluate: Callable[[HashingModel], dict[str, float]] | None = None,
                  defense=None) -> list[dict[str, Any]]:
    """Train ``model`` with a pairwise hashing ``loss`` on ``train_split``; returns the per-epoch history.

    Args:
        epochs: number of passes over the training split.
        batch_size, lr, optimizer ("sgd" or "adam"), momentum, weight_decay: the usual knobs
            (defaults: the CgAT/SAAT clean-training SGD, lr 0.01, momentum 0.9, weight decay 5e-4).
        lr_milestones: epochs at which the learning rate is multiplied by 0.1.
        seed: seeds the initial torch RNG state and every epoch's shuffling order.
        checkpoint_path: where to write the checkpoint and resume from.
        checkpoint_every: write it every this many epochs, and after the last (a paper-scale AlexNet checkpoint
            with its optimizer state is about 0.5 GB); an interruption resumes from the last one written.
        device: "cpu", "cuda" or "auto".
        evaluate: optional ``evaluate(model) -> {name: value}`` called after each epoch (model in eval
            mode), whose results join the history (e.g. validation mAP for training curves).
        defense: optional adversarial training (an ``advhash.defenses.AdversarialTraining``): each
            batch's objective is then ``defense.batch_loss(...)`` (inner attack + outer loss) instead of
            the plain hashing loss; its state (e.g. CgAT's code table) is checkpointed with the model.

    Returns:
        A list with one dict per epoch: epoch, mean loss, learning rate, seconds, plus ``evaluate``'s.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(train_split) != loss.code_table.shape[0]:
        raise ValueError(f"the loss was built for num_train={loss.code_table.shape[0]} items but the "
                         f"training split has {len(train_split)}; build it with num_train=len(train_split)")
    device = resolve_device(device)
    model.to(device)
    loss.to(device)
    torch.manual_seed(seed)
    opt = make_optimizer(optimizer, model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(lr_milestones), gamma=0.1)
    run_config = dict(model=model.config, loss=type(loss).__name__, batch_size=batch_size, lr=lr,
                      optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
                      lr_milestones=list(lr_milestones), seed=seed, num_train=len(train_split),
                      defense=None if defense is None else defense.config)  # a clean run never resumes a defended one
    parts = dict(loss=loss, optimizer=opt, scheduler=scheduler, **({} if defense is None else dict(defense=defense)))
    if defense is not None:
        defense.to(device)
    with ResumableRun(checkpoint_path, run_config, model, parts=parts, device=device, epochs=epochs,
                      checkpoint_every=checkpoint_every, evaluate=evaluate, desc=f"train {run_config['loss']}") as run:
        step = run.start(step=0)["step"]
        if defense is not None and not run.resumed:
            defense.prepare(model, train_split, seed=seed, loss=loss)
        for epoch in run.epochs():
            model.train()
            began, total, batches = time.perf_counter(), 0.0, 0
            order = epoch_order(len(train_split), seed=seed, epoch=epoch)
            for images, labels, indices in iterate_batches(train_split, order, batch_size, device=device):
                images, labels, indices = images.to(device), labels.to(device), indices.to(device)
                if defense is None:
                    value = loss(model(images, scale=loss.scale(step)), labels, indices)
                else:
                    value = defense.batch_loss(model, loss, images, labels, indices, step=step)
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
                total, batches, step = total + value.item(), batches + 1, step + 1
            record = dict(epoch=epoch + 1, loss=total / max(batches, 1), lr=opt.param_groups[0]["lr"],
                          seconds=time.perf_counter() - began)
            scheduler.step()
            run.end_epoch(record, step=step)
        model.eval()
        return run.history


@torch.no_grad()
def encode(model: HashingModel, split_or_images, *, batch_size: int = 256,
           device: str | torch.device | None = None) -> torch.Tensor:
    """Binary codes in {-1, +1} (n, K) of a split (or an image tensor), in eval mode, on the CPU."""
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    codes = []
    if isinstance(split_or_images, torch.Tensor):
        if split_or_images.ndim == 4:            # images; a text network's tag vectors may take any finite value
            check_images(split_or_images, what="the images to encode")
        elif not torch.isfinite(split_or_images).all():
            raise ValueError("the inputs to encode hold NaN or infinite values; fix the input")
        batches = (split_or_images[i:i + batch_size] for i in range(0, len(split_or_images), batch_size))
    else:
        order = torch.arange(len(split_or_images))
        batches = (images for images, _, _ in iterate_batches(split_or_images, order, batch_size, device=device))
    for images in batches:
        codes.append(binarize(model.hash_logits(images.to(device))).cpu())
    model.train(was_training)
    return torch.cat(codes) if codes else torch.empty(0, model.bits)


def load_trained_model(checkpoint_path: str | Path, *, device: str | torch.device = "cpu") -> HashingModel:
    """Rebuild a trained model from a checkpoint written by :func:`train_hashing` (eval mode)."""
    return model_from_state(load_checkpoint(checkpoint_path, map_location=device), device=device)


def model_from_state(state: dict[str, Any], *, device: str | torch.device = "cpu") -> HashingModel:
    """The trained model a loaded :func:`train_hashing` checkpoint holds, on ``device`` in eval mode."""
    model = build_model(state["run_config"]["model"])
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def reuse_checkpoint(model: HashingModel, checkpoint_path: Path, folders, *, epochs: int,
                     device: str | torch.device = "cpu") -> list[dict[str, Any]] | None:
    """Load a *finished* checkpoint named like ``checkpoint_path`` from another notebook's folder.

    Searches ``folders`` in order (only when ``checkpoint_path`` itself does not exist, so a run of this
    notebook is never shadowed) for a file of the same name, i.e. the same settings, data, code and epoch count,
    finished after exactly ``epochs``; loads its weights into ``model`` (the file is only read, never written) and
    returns its history. None when there is none: train as usual. An unreadable file is skipped with a warning; a
    file of that name holding other settings than ``checkpoint_path`` carries (an ``advhash.checkpoint.RunPath``)
    or another architecture than ``model``'s is refused (``advhash.checkpoint.CheckpointMismatch``), naming the
    file and the first difference.
    """
    if checkpoint_path.is_file():
        return None
    for folder in folders:
        candidate = Path(folder) / checkpoint_path.name
        if candidate.is_file():
            try:
                state = load_checkpoint(candidate, map_location=device,
                                        settings=getattr(checkpoint_path, "settings", None))
            except CheckpointMismatch:
                raise
            except ValueError as error:           # another folder's unreadable file must not stop this run
                warnings.warn(f"skipping {candidate}: {error}", stacklevel=2)
                continue
            check_architecture(state, candidate, model.config)
            if state["epoch"] == epochs:
                model.load_state_dict(state["model"])
                return list(state["history"])
    return None


def check_architecture(state: dict[str, Any], path: Path, config: dict[str, Any]) -> None:
    """Refuse checkpoint ``path`` (its loaded ``state``) unless the model it holds has the architecture
    ``config`` (a ``HashingModel.config``: backbone, bits, channels, normalization, input size), naming the first
    difference."""
    saved = state.get("run_config", {}).get("model")
    found = first_difference(saved, config) if isinstance(saved, dict) else ("model", saved, config)
    if found is not None:
        key, was, now = found
        raise CheckpointMismatch(f"checkpoint {path} holds another model than the one asked for: {key} is {was!r} in "
                                 f"the file but {now!r} here; it was copied or renamed from another run. Delete it and "
                                 "rerun the stage (or notebook) that trains it, to train that model again")


def hashing_checkpoint_name(data, *, method: str, bits: int, epochs: int, backbone: str = "small_cnn",
                            input_size: int | None = None, weights: str | Path | None = None, pairs: str | None = None,
                            seed: int = 0, precision: str = "fp32", **training) -> str:
    """The file name of the checkpoint :func:`fit_hashing_model` writes for these settings on ``data``:
    ``<method>_<bits>bits_<backbone>_e<epochs>_<tag>.pt`` (``advhash.checkpoint.checkpoint_file``, which adds the
    data, the arithmetic and the code of this module, the loss's and the backbone's), the tag hashing every setting,
    the pretrained weights (``weights_tag``: a local file by its content) and ``pairs`` resolved to the loss's own
    default when None; ``precision`` is the one the backbone trains in ("fp32" or "bf16", resolved)."""
    return hashing_checkpoint_path(".", data, method=method, bits=bits, epochs=epochs, backbone=backbone,
                                   input_size=input_size, weights=weights, pairs=pairs, seed=seed,
                                   precision=precision, **training).name


def hashing_checkpoint_path(folder: str | Path, data, *, method: str, bits: int, epochs: int,
                            backbone: str = "small_cnn", input_size: int | None = None,
                            weights: str | Path | None = None, pairs: str | None = None, seed: int = 0,
                            precision: str = "fp32", **training) -> RunPath:
    """``folder /`` :func:`hashing_checkpoint_name`, as an ``advhash.checkpoint.RunPath`` carrying the settings
    that name it: a checkpoint there is saved with them and loaded only when it holds them."""
    loss_class = LOSSES[method.lower()]
    settings = dict(method=method, bits=bits, backbone=backbone, input_size=input_size, weights=weights_tag(weights),
                    pairs=pairs or loss_class.default_pairs, seed=seed, **training)
    return checkpoint_file(folder, f"{method}_{bits}bits_{backbone}", epochs=epochs, settings=settings,
                           data_name=data.name, train_split=data.train, precision=precision,
                           code=(__name__, *modules_of(loss_class, BACKBONES.get(backbone))))


def fit_hashing_model(data, *, method: str, bits: int, backbone: str = "small_cnn", epochs: int,
                      checkpoint_dir: str | Path | None = None, input_size: int | None = None,
                      weights: str | Path | None = None, pairs: str | None = None,
                      device: str | torch.device = "cpu", seed: int = 0, reuse_from: tuple = (),
                      precision: str = "auto", **training) -> tuple[HashingModel, list[dict[str, Any]]]:
    """Build and train (or resume, or just load) a ``method`` hashing model with ``bits`` bits on
    ``data.train``. The checkpoint is ``<checkpoint_dir>/`` :func:`hashing_checkpoint_name`, named after everything
    that determines the weights (settings, epochs, data content, pretrained weights, code), so a change to any of
    them never picks up a stale checkpoint; a finished shorter run of the same settings is resumed from. The
    checkpoint holds those settings too, and one found by the name (here or in ``reuse_from``) that holds others (a
    copied or renamed file) is refused, naming it and the first difference (``advhash.checkpoint.check_settings``).

    ``reuse_from``: other checkpoint folders (e.g. another notebook's) searched first for a finished
    checkpoint of the same settings, which is then only read, never written.
    ``pairs`` picks the loss's pairing ("table" / "batch", None = the method's own; ``advhash.losses``);
    ``precision`` the backbone's (``advhash.models.set_precision``: "auto" is bf16 on CUDA, fp32 elsewhere);
    ``training`` goes to :func:`train_hashing` (batch_size, lr, optimizer, weight_decay, ...).
    """
    in_channels = data.image_shape[0] if data.image_shape else 3
    torch.manual_seed(seed)
    model = set_precision(HashingModel(backbone, bits=bits, in_channels=in_channels, input_size=input_size,
                                       weights=weights), precision)
    loss = build_loss(method, num_train=len(data.train), bits=bits, num_classes=data.num_classes, pairs=pairs)
    checkpoint_path = None
    if checkpoint_dir is not None:
        checkpoint_path = hashing_checkpoint_path(
            checkpoint_dir, data, method=method, bits=bits, epochs=epochs, backbone=backbone, input_size=input_size,
            weights=weights, pairs=loss.pairs, seed=seed,
            precision=effective_precision(precision, resolve_device(device)), **training)
        reused = reuse_checkpoint(model, checkpoint_path, reuse_from, epochs=epochs, device=device)
        if reused is not None:
            return model.to(device).eval(), reused
    history = train_hashing(model, loss, data.train, epochs=epochs, seed=seed, device=device,
                            checkpoint_path=checkpoint_path, **training)
    return model, history
