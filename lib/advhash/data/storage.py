"""The stable on-disk format of a materialized dataset, written atomically and byte for byte reproducibly.

One folder a dataset, ``<root>/<name>/``:

- ``images.npy``  uint8 (N, C, H, W), pixel values 0..255
- ``labels.npy``  uint8 (N, L), multi-hot 0/1 (one-hot for single-label data)
- ``texts.npy``   uint8 (N, T), binary tag bag-of-words; only for datasets with a text modality
- ``meta.json``   ``json.dumps(meta, sort_keys=True, indent=2)``: name, description, class_names,
  tag_vocabulary, source, derivation (how the pool was built, with every parameter)

Plain ``.npy`` files are byte-deterministic (``.npz`` archives carry timestamps), so materializing a dataset twice
gives identical files and a DVC ``data.dvc`` does not change. Each file is written to a temporary file and moved
into place (``os.replace``); a file whose bytes already match is left untouched; a failed write (a full disk)
leaves the old file and no temporary one, and names the file and the size needed. A damaged file (cut short) is
an error naming it and how to restore it. Rows are items of the stored *pool*; splits are drawn at load time
(``advhash.data.splits``). The meta holds no paths or timestamps.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import check_binary_labels

IMAGES_FILE, LABELS_FILE, TEXTS_FILE, META_FILE = "images.npy", "labels.npy", "texts.npy", "meta.json"


def human_size(size: float) -> str:
    """``size`` bytes as a person reads it: "812 bytes", "3.4 KiB", "1.2 MiB", "3.8 GiB"."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024


def write_bytes_atomic(path: str | os.PathLike, payload: bytes, *, fix: str | None = None) -> bool:
    """Write ``payload`` to ``path`` via a temporary file and ``os.replace``.

    Returns False (and writes nothing) when the file already holds exactly these bytes. A failed write leaves the
    old file and is an error naming the file, the size needed and ``fix`` (default: free room in, or make writable,
    the folder).
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == len(payload) and path.read_bytes() == payload:
        return False
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        if not isinstance(error, OSError):
            raise
        fix = fix or f"free room in {path.parent} or make it writable"
        raise OSError(error.errno, f"cannot write {path} ({error.strerror or error}): it needs "
                                   f"{human_size(len(payload))}; {fix}") from error
    return True


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def meta_json(meta: dict[str, Any]) -> str:
    """The canonical text of ``meta.json`` (sorted keys, two-space indent, trailing newline)."""
    return json.dumps(meta, sort_keys=True, indent=2) + "\n"


def _as_uint8(name: str, array: np.ndarray, ndim: int, binary: bool) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    if binary and array.size and not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1; found values {np.unique(array)[:10].tolist()}")
    if array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"{name} must hold values in 0..255 to be stored as uint8")
        array = array.astype(np.uint8)
    return array


def save_arrays(folder: str | os.PathLike, *, images: np.ndarray, labels: np.ndarray,
                texts: np.ndarray | None = None, meta: dict[str, Any]) -> dict[str, bool]:
    """Write a pool in the on-disk format to ``folder``; returns {file name: whether it was (re)written}.

    Args:
        images: uint8 (N, C, H, W).
        labels: 0/1 (N, L).
        texts: 0/1 (N, T) tag bag-of-words, or None (an existing ``texts.npy`` is then removed).
        meta: JSON-serializable dict (name, description, class_names, ...), written with sorted keys.
    """
    folder = Path(folder)
    write = functools.partial(write_bytes_atomic, fix=f"free room in {folder} or write the dataset under another "
                                                      f"root (--root)")
    images = _as_uint8("images", images, 4, binary=False)
    labels = _as_uint8("labels", labels, 2, binary=True)
    if len(images) != len(labels):
        raise ValueError(f"images hold {len(images)} items but labels {len(labels)}; they must align row by row")
    written = {IMAGES_FILE: write(folder / IMAGES_FILE, _npy_bytes(images)),
               LABELS_FILE: write(folder / LABELS_FILE, _npy_bytes(labels))}
    if texts is not None:
        texts = _as_uint8("texts", texts, 2, binary=True)
        if len(texts) != len(labels):
            raise ValueError(f"texts hold {len(texts)} items but labels {len(labels)}; they must align row by row")
        written[TEXTS_FILE] = write(folder / TEXTS_FILE, _npy_bytes(texts))
    else:
        (folder / TEXTS_FILE).unlink(missing_ok=True)
    written[META_FILE] = write(folder / META_FILE, meta_json(meta).encode())
    return written


def is_materialized(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a complete pool (images, labels and meta)."""
    folder = Path(folder)
    return all((folder / name).is_file() for name in (IMAGES_FILE, LABELS_FILE, META_FILE))


def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {META_FILE} in {folder}; materialize the dataset first")
    return json.loads(path.read_text())


def _load_npy(path: Path, *, mmap: bool = False) -> np.ndarray:
    """One stored array; a damaged file (cut short, overwritten) is an error naming it and how to restore it."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:                 # e.g. "mmap length is greater than file size"
        raise ValueError(f"{path} cannot be read ({error}): the file is damaged (a cut copy?); restore it with "
                         f"`dvc checkout` (or `dvc pull`) where the data is DVC-tracked, else materialize the "
                         f"dataset again (`python -m advhash.data materialize {path.parent.name} --root "
                         f"{path.parent.parent}`)") from None


def load_arrays(folder: str | os.PathLike, *, mmap: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Read ``(images, labels, texts or None, meta)`` written by :func:`save_arrays`.

    ``mmap=True`` memory-maps the images instead of reading them (for pools larger than memory).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {folder} does not exist; run "
                                f"`python -m advhash.data materialize <name> --root {folder.parent}` first")
    missing = [name for name in (IMAGES_FILE, LABELS_FILE, META_FILE) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}; materialize the dataset again")
    images = _load_npy(folder / IMAGES_FILE, mmap=mmap)
    labels = check_binary_labels(_load_npy(folder / LABELS_FILE), where=str(folder / LABELS_FILE))
    texts = _load_npy(folder / TEXTS_FILE) if (folder / TEXTS_FILE).is_file() else None
    meta = read_meta(folder)
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"{folder}: images {images.shape} and labels {labels.shape} do not align "
                         f"(expected images (N, C, H, W) and labels (N, L)); materialize the dataset again")
    if texts is not None and len(texts) != len(labels):
        raise ValueError(f"{folder}: texts {texts.shape} and labels {labels.shape} do not align; "
                         f"materialize the dataset again")
    return images, labels, texts, meta
