"""Atomic checkpoints, loaded with ``weights_only=True``, and the helpers that name them.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that
``torch.load(..., weights_only=True)`` can read it without unpickling arbitrary objects. It is written
to a temporary file in the same folder and moved into place with ``os.replace``, so an interrupted
write never leaves a truncated checkpoint behind: the previous one stays intact.

A checkpoint's file name says what was trained, so that a run with other settings never resumes or loads
it: ``<what>_<bits>bits_<backbone>_<settings_tag(settings)>.pt``, where the settings dict holds every setting
and names the training items (:func:`train_items_tag`, with :func:`split_digest` for splits made in memory)
and the model a fine-tune started from (:func:`model_digest`). These names are what a kept (DVC ``persist``)
checkpoint folder is matched by, so the helpers must never change their output.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + ``os.replace``). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def checkpoint_lock(path: str | os.PathLike | None) -> Iterator[None]:
    """One writer per checkpoint: ``<path>.lock`` holds "<pid>@<host>" of the run writing ``path`` for as long as
    the block runs. A second writer is refused with a message naming the holder; a lock whose process is gone
    (same host, no such pid: a killed run) is stale and taken over, and that run's leftover temporary files
    (``.<name>.*.tmp``) are removed. ``path=None`` (no checkpoint) locks nothing."""
    if path is None:
        yield
        return
    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(lock.parent, os.W_OK):
        raise PermissionError(f"cannot write in {lock.parent}, where checkpoint {path.name} goes; make the folder "
                              "writable or choose another checkpoint folder (nothing was trained)")
    me, host = f"{os.getpid()}@{socket.gethostname()}", socket.gethostname()
    for _ in range(2):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = lock.read_text().strip() if lock.is_file() else ""
            pid, _, where = holder.partition("@")
            if where == host and pid.isdigit() and not _process_alive(int(pid)):
                lock.unlink(missing_ok=True)             # stale: the run that held it is gone
                continue
            raise RuntimeError(f"checkpoint {path} is being written by another run (process {holder or '?'}, "
                               f"lock {lock}); wait for it to finish, or delete the lock if that run is gone") from None
        with os.fdopen(handle, "w") as file:
            file.write(me)
        break
    else:
        raise RuntimeError(f"could not take the lock {lock} of checkpoint {path}; delete it if no run is writing")
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):     # an interrupted write of this checkpoint
        leftover.unlink(missing_ok=True)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train the model first or fix the path")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:       # truncated, empty, not a torch file, or holding objects weights_only refuses
        raise ValueError(f"checkpoint {path} cannot be read ({type(error).__name__}: {str(error)[:200]}); delete it "
                         "to train that model again") from error


RUN_ONLY_SETTINGS = ("checkpoint_every",)   # how a run is carried out, not what it computes


def settings_tag(settings: dict[str, Any] | list, length: int = 8) -> str:
    """A short stable hash of a settings dict, for checkpoint file names: runs with other settings get
    other files, so a kept (DVC ``persist``) checkpoint folder never mixes them up. Settings that do not change
    the weights (``RUN_ONLY_SETTINGS``: the checkpoint cadence) are left out, so changing them resumes the run."""
    if isinstance(settings, dict):
        settings = {key: value for key, value in settings.items() if key not in RUN_ONLY_SETTINGS}
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def train_items_tag(train_split) -> str | int:
    """Which items a model was trained on, for checkpoint names: a hash of the split's source indices
    (its size where it has none)."""
    items = getattr(train_split, "source_indices", None)
    return len(train_split) if items is None else settings_tag(list(map(int, items)))


def weights_tag(weights) -> str:
    """How the pretrained weights a model starts from name its checkpoint: "None" for a random init, a torchvision
    weights name (e.g. "IMAGENET1K_V1") as it is, a local file by the digest of its content, so that other weights
    at the same path train a new model instead of loading the old one."""
    if weights is None:
        return "None"
    path = Path(weights)
    if path.is_file():
        digest = hashlib.sha1()
        with path.open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        return f"sha1:{digest.hexdigest()[:16]}"
    return str(weights)


def model_digest(model: nn.Module) -> str:
    """A short hash of a model's weights: names the defended checkpoint after the model it started from."""
    digest = hashlib.sha1()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:8]


def split_digest(split) -> str:
    """A short hash of a split's labels, texts and in-memory images (e.g. CMLA's augmented training set,
    whose items have no source indices to name them by)."""
    digest = hashlib.sha1()
    for name in ("images", "labels", "texts"):
        value = getattr(split, name, None)
        if isinstance(value, torch.Tensor):
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:8]
