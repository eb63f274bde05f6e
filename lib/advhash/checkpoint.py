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

A name alone proves nothing (a file can be copied or renamed), so a run's checkpoint also holds the settings that
named it: :func:`run_file` returns a :class:`RunPath`, which carries them, :func:`save_checkpoint` stores them in
the checkpoint ("settings"), and :func:`load_checkpoint` of a ``RunPath`` (or with ``settings=``) loads the file only
when the settings inside equal the expected ones; otherwise it refuses, naming the file, the first difference and
the fix. A checkpoint without them (written before advhash recorded them) is refused the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import warnings
import weakref
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from .atomic import copy_atomically
from .fingerprint import code_fingerprint
from .models.backbones import weights_file


class RunPath(type(Path())):
    """The path of a run's checkpoint (:func:`run_file`) that knows the ``settings`` that named it (plain JSON
    types, as :func:`stored_settings` makes them): :func:`save_checkpoint` writes them into the checkpoint and
    :func:`load_checkpoint` refuses a file holding others. Paths derived from it (``parent``, ``with_name``) are
    other files and carry none (``settings`` None)."""

    settings: dict[str, Any] | None = None


def stored_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as a checkpoint stores them: without the ``RUN_ONLY_SETTINGS``, and made plain JSON types
    (tuples become lists, other objects their ``str``, dict keys strings: ``{2: ...}`` is ``{"2": ...}``), in their
    order, so that ``torch.load(..., weights_only=True)`` reads them back and they compare equal to a fresh run's.
    :func:`settings_tag` hashes exactly this, so the name and the stored settings always agree."""
    kept = {key: value for key, value in settings.items() if key not in RUN_ONLY_SETTINGS}
    return json.loads(json.dumps(kept, default=str))


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + ``os.replace``). Returns the path.
    A :class:`RunPath` adds the settings that named it to the state ("settings")."""
    if getattr(path, "settings", None) is not None:
        state = {**state, "settings": path.settings}
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


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu",
                    settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    ``settings`` (by default those a :class:`RunPath` carries): the settings the checkpoint must hold, as the run
    that looks for it by name computes them (:func:`checkpoint_file`); a file holding other settings, or none, is
    refused (:func:`check_settings`). Without them, a run file (:data:`RUN_FILE`) holding settings is still
    refused when they do not hash to the tag of its name (copied or renamed from another run)."""
    expected = settings if settings is not None else getattr(path, "settings", None)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train the model first or fix the path")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:       # truncated, empty, not a torch file, or holding objects weights_only refuses
        raise ValueError(f"checkpoint {path} cannot be read ({type(error).__name__}: {str(error)[:200]}); delete it "
                         "to train that model again") from error
    check_settings(state, path, None if expected is None else stored_settings(expected))
    return state


class CheckpointMismatch(ValueError):
    """A readable checkpoint found by name that holds another run's settings (or none): never loaded, never
    skipped in silence."""


def first_difference(stored: Any, expected: Any, key: str = "") -> tuple[str, Any, Any] | None:
    """The first place where two stored settings differ: (dotted key, stored value, expected value), nested
    dicts followed, keys in the expected order then the stored-only ones; None when they are equal."""
    if isinstance(stored, dict) and isinstance(expected, dict):
        for name in [*expected, *(name for name in stored if name not in expected)]:
            found = first_difference(stored.get(name, _ABSENT), expected.get(name, _ABSENT),
                                     f"{key}.{name}" if key else str(name))
            if found is not None:
                return found
        return None
    return None if stored == expected else (key, stored, expected)


class _Absent:
    """A setting one side does not have (shown as "(absent)" in a refusal)."""

    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


def check_settings(state: Any, path: Path, expected: dict[str, Any] | None) -> None:
    """Refuse checkpoint ``path`` (its loaded ``state``) unless the settings stored in it equal ``expected`` (as
    :func:`stored_settings` makes them); with ``expected`` None, unless a run file's stored settings hash to the
    tag of its name. The refusal (:class:`CheckpointMismatch`) names the file, the first differing setting with
    both values, and the fix. Settings are equal when :func:`settings_tag` hashes them alike (its text), so a file
    is refused exactly when its settings would name another file."""
    stored = state.get("settings") if isinstance(state, dict) else None
    fix = "delete it and rerun the stage (or notebook) that trains it, to train that model again"
    if expected is None:
        match = RUN_FILE.match(path.name)
        if isinstance(stored, dict) and match and settings_tag(stored, len(match["tag"])) != match["tag"]:
            raise CheckpointMismatch(
                f"checkpoint {path} holds the settings of another run than its name says (they hash to "
                f"{settings_tag(stored, len(match['tag']))}, its name to {match['tag']}): it was copied or renamed "
                f"from another run; {fix}")
        return
    if not isinstance(stored, dict):
        raise CheckpointMismatch(
            f"checkpoint {path} holds no record of the settings it was trained with: it was written by an older "
            f"advhash (before checkpoints recorded them) or by another program, so it cannot be told apart from "
            f"another run's; {fix}")
    if _as_named(stored) == _as_named(expected):   # equal as settings_tag sees them (key order aside, NaN too)
        return
    key, was, now = first_difference(stored, expected) or ("settings", stored, expected)   # e.g. 1 vs True
    others = sum(stored.get(name, _ABSENT) != expected.get(name, _ABSENT) for name in {*stored, *expected}) - 1
    more = f" (and {others} other setting{'s' * (others != 1)})" if others > 0 else ""
    raise CheckpointMismatch(
        f"checkpoint {path} was trained with other settings than this run's, though its name is this run's: "
        f"{key} is {was!r} in the file but {now!r} here{more}; it was copied, renamed or edited from another "
        f"run. {fix[0].upper()}{fix[1:]}")


RUN_ONLY_SETTINGS = ("checkpoint_every",)   # how a run is carried out, not what it computes


def settings_tag(settings: dict[str, Any] | list, length: int = 8) -> str:
    """A short stable hash of a settings dict, for checkpoint file names: runs with other settings get
    other files, so a kept (DVC ``persist``) checkpoint folder never mixes them up. Settings that do not change
    the weights (``RUN_ONLY_SETTINGS``: the checkpoint cadence) are left out, so changing them resumes the run.
    A dict is hashed as a checkpoint stores it (:func:`stored_settings`: int keys as strings), so the tag of a
    run's stored settings is the tag of its name."""
    return hashlib.sha1(_as_named(stored_settings(settings) if isinstance(settings, dict) else settings).encode()
                        ).hexdigest()[:length]


def _as_named(settings: Any) -> str:
    """The text :func:`settings_tag` hashes: JSON with sorted keys (objects JSON lacks by their ``str``)."""
    return json.dumps(settings, sort_keys=True, default=str)


def train_items_tag(train_split) -> str | int:
    """Which items a model was trained on, for checkpoint names: a hash of the split's source indices
    (its size where it has none)."""
    items = getattr(train_split, "source_indices", None)
    return len(train_split) if items is None else settings_tag(list(map(int, items)))


def weights_tag(weights) -> str:
    """How the pretrained weights a model starts from name its checkpoint: "None" for a random init, a torchvision
    weights name (e.g. "IMAGENET1K_V1") as it is, a local file by the digest of its content, so that other weights
    at the same path train a new model instead of loading the old one. A local file that is not there (a path, or a
    name ending in .pth / .pt: ``advhash.models.backbones.weights_file``) is an error naming it as moved or
    deleted, not a weights name whose checkpoint is then missing."""
    if weights is None:
        return "None"
    path = weights_file(weights)
    if path is not None:
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
        for index, path in enumerate(split.paths):
            digest.update(str(path).encode())
            with _open_image(split, index) as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
    result = digest.hexdigest()[:8]
    if not from_files:
        try:
            _split_digests[split] = (tensors, versions, result)
        except TypeError:
            pass
    return result


def _open_image(split, index: int):
    """Image file ``index`` of a file-backed ``split``, opened for reading; a missing one is an error naming it,
    where it was listed and the fix (not the weights or the data's content)."""
    path = split.paths[index]
    try:
        return open(path, "rb")
    except FileNotFoundError as error:
        origins = getattr(split, "origins", None)
        where = f" ({origins[index]})" if origins else ""
        raise FileNotFoundError(f"image {path}{where} is missing: it was moved or deleted since its split was loaded. "
                                "Put it back, or fix the list file and load the data again") from error


RUN_FILE = re.compile(r"^(?P<stem>.+)_e(?P<epochs>\d+)_(?P<tag>[0-9a-f]+)\.pt$")


def run_file(folder: str | os.PathLike, stem: str, *, epochs: int, settings: dict[str, Any]) -> Path:
    """The checkpoint of a run: ``<folder>/<stem>_e<epochs>_<settings_tag(settings)>.pt``. ``settings`` must hold
    everything else that determines the weights (see the module docstring); the epoch count is in the name, so
    a finished checkpoint serves exactly the run it finished. Returns a :class:`RunPath` carrying ``settings``
    (:func:`stored_settings`): saved into the checkpoint, checked on every load."""
    path = RunPath(Path(folder) / f"{stem}_e{epochs}_{settings_tag(settings)}.pt")
    path.settings = stored_settings(settings)
    return path


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
    exists, is not a run file, or no shorter run finished; an unreadable candidate is skipped with a warning, and
    one holding other settings than those ``path`` carries (a :class:`RunPath`) is refused (:func:`check_settings`).
    Returns the checkpoint copied, or None."""
    expected = getattr(path, "settings", None)
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
            finished = load_checkpoint(candidate, settings=expected).get("epoch") == done
        except CheckpointMismatch:
            raise
        except ValueError as error:
            warnings.warn(f"not resuming from {candidate}: {error}", stacklevel=2)
            continue
        if finished:
            copy_atomically(candidate, path, suffix=".tmp")    # .tmp: what checkpoint_lock cleans up
            return candidate
    return None
