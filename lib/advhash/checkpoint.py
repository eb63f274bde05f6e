"""Atomic checkpoints, loaded with ``weights_only=True``, and the helpers that name them.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that
``torch.load(..., weights_only=True)`` can read it without unpickling arbitrary objects. It is written
to a temporary file in the same folder and moved into place with ``os.replace``, so an interrupted
write never leaves a truncated checkpoint behind: the previous one stays intact.

A checkpoint's file name says everything that determines its weights, so that a run that would compute other
weights never resumes or loads it: :func:`checkpoint_file` adds to a trainer's own settings the data, its training
items and their content, the arithmetic (threads, precision) and the code on the training path, and hashes them
into ``<what>_<bits>bits_<backbone>_e<epochs>_<tag>.pt`` (:func:`run_file`). A finished checkpoint is therefore
reused only for exactly the run asked for; a longer run of the same settings starts from the longest finished
shorter one (:func:`resume_shorter_run`, which copies it, so the shorter run stays reusable). These names are what
a kept (DVC ``persist``) checkpoint folder is matched by.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import warnings
import weakref
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from .fingerprint import code_fingerprint


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


_split_digests: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # split -> (tensors, versions, digest)


def split_digest(split) -> str:
    """A short hash of a split's content: its labels, texts and in-memory images, or for images read from files
    (``ImageFileSplit``) each file's path and bytes and the transform that decodes them. Names a checkpoint after
    the data it was trained on, so a fix to the data (another mosaic pool, a corrected label) trains anew.

    Hashing a decoded paper-scale training split takes about a second, so the digest of an in-memory split is
    remembered while the split lives, and recomputed when any of its tensors is replaced or changed in place
    (torch's version counter); file-backed splits are hashed every time (their files may change)."""
    tensors = {name: getattr(split, name, None) for name in ("images", "labels", "texts")}
    tensors = {name: value for name, value in tensors.items() if isinstance(value, torch.Tensor)}
    versions = {name: value._version for name, value in tensors.items()}
    from_files = "images" not in tensors and getattr(split, "paths", None) is not None
    try:
        known = None if from_files else _split_digests.get(split)
    except TypeError:                      # not weak-referenceable: no memo
        known = None
    if known is not None and known[0].keys() == tensors.keys() and known[1] == versions \
            and all(known[0][name] is value for name, value in tensors.items()):
        return known[2]
    digest = hashlib.sha1()
    for name, value in tensors.items():
        if isinstance(value, torch.Tensor):
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    if from_files:
        digest.update(repr(getattr(split, "transform", None)).encode())   # the decoding (resize) is data too
        for path in split.paths:
            digest.update(str(path).encode())
            with open(path, "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
    result = digest.hexdigest()[:8]
    if not from_files:
        try:
            _split_digests[split] = (tensors, versions, result)
        except TypeError:
            pass
    return result


RUN_FILE = re.compile(r"^(?P<stem>.+)_e(?P<epochs>\d+)_(?P<tag>[0-9a-f]+)\.pt$")


def run_file(folder: str | os.PathLike, stem: str, *, epochs: int, settings: dict[str, Any]) -> Path:
    """The checkpoint of a run: ``<folder>/<stem>_e<epochs>_<settings_tag(settings)>.pt``. ``settings`` must hold
    everything else that determines the weights (see the module docstring); the epoch count is in the name, so
    a finished checkpoint serves exactly the run it finished."""
    return Path(folder) / f"{stem}_e{epochs}_{settings_tag(settings)}.pt"


def precision_setting(precision: str) -> dict[str, str]:
    """What a checkpoint's settings say of the backbone's resolved precision: nothing for fp32 (so that every
    float32 checkpoint keeps its name), {"precision": "bf16"} for bfloat16 training."""
    return {} if precision == "fp32" else {"precision": precision}


def numeric_setting(precision: str) -> dict[str, Any]:
    """What a checkpoint's settings say of the arithmetic behind its weights: the torch thread count (float sums,
    hence trained weights, differ between counts, so a checkpoint trained on 2 threads never serves a run on 1)
    and the backbone's resolved precision (``precision_setting``)."""
    return {"threads": torch.get_num_threads(), **precision_setting(precision)}


def checkpoint_file(folder: str | os.PathLike, stem: str, *, epochs: int, settings: dict[str, Any], data_name: str,
                    train_split, precision: str, code: tuple[str, ...]) -> Path:
    """The checkpoint of a run (:func:`run_file`), named after everything that determines its weights: the
    caller's own ``settings`` plus the data's name, the training items (:func:`train_items_tag`) and their
    content (:func:`split_digest`), the numeric setting (:func:`numeric_setting`: thread count, and ``precision``,
    "fp32" or "bf16", resolved) and the code fingerprint of the ``code`` modules
    (``advhash.fingerprint.code_fingerprint``: they and every ``advhash`` module they import)."""
    identity = dict(data=data_name, train_items=train_items_tag(train_split), content=split_digest(train_split),
                    **settings, **numeric_setting(precision), code=code_fingerprint(*code))
    return run_file(folder, stem, epochs=epochs, settings=identity)


def resume_shorter_run(path: str | os.PathLike) -> Path | None:
    """Start the run of checkpoint ``path`` (a :func:`run_file`) from the longest *finished* shorter run of the
    same settings in its folder: copy that checkpoint to ``path`` (atomically; the shorter one is kept for the
    runs that ask for it) so that training resumes from it. Exact for every trainer in advhash, whose epochs do not
    depend on the total count (tested: 2 epochs then 3 equal 3 at once, bit for bit). Does nothing when ``path``
    exists, is not a run file, or no shorter run finished; an unreadable candidate is skipped with a warning.
    Returns the checkpoint copied, or None."""
    path = Path(path)
    match = RUN_FILE.match(path.name)
    if path.exists() or match is None:
        return None
    epochs = int(match["epochs"])
    shorter = []
    for candidate in path.parent.glob(f"{match['stem']}_e*_{match['tag']}.pt"):
        found = RUN_FILE.match(candidate.name)
        if found and found["stem"] == match["stem"] and int(found["epochs"]) < epochs:
            shorter.append((int(found["epochs"]), candidate))
    for done, candidate in sorted(shorter, reverse=True):
        try:
            finished = load_checkpoint(candidate).get("epoch") == done
        except ValueError as error:
            warnings.warn(f"not resuming from {candidate}: {error}", stacklevel=2)
            continue
        if finished:
            handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(handle)
            try:
                shutil.copyfile(candidate, temporary)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            return candidate
    return None
