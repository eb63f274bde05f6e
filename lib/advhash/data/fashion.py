"""Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017, arXiv:1708.07747): 70,000 28x28 greyscale images of
10 clothing classes, one-hot labels.

Pool: the original training set (rows 0-59,999) then the test set, in their order; images uint8
(70000, 1, 28, 28), labels uint8 (70000, 10). Splits follow the CIFAR-10 protocol (class-balanced: 100 queries
and 500 training items a class by default; the database every non-query item).

Looked for, in this order: ``<root>/fashion-mnist/`` materialized (``images.npy``, ``labels.npy``, ``meta.json``)
or its four IDX files in ``raw/``; ``/usr/share/datasets/fashion-mnist/`` (Debian's ``dataset-fashion-mnist``);
torchvision's ``FashionMNIST(download=True)`` into ``$ADVHASH_CACHE/fashion-mnist`` (default
``~/.cache/advhash/fashion-mnist``, outside ``root`` so that a DVC-tracked ``data/`` is the same on every
machine; needs a network). IDX files are read with torchvision's own reader (``read_image_file``).
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets import FashionMNIST
from torchvision.datasets.mnist import read_image_file, read_label_file

from .dataset import HashingData
from .splits import data_from_pool
from .storage import is_materialized, load_arrays

NAME = "fashion-mnist"
CLASS_NAMES = list(FashionMNIST.classes)   # T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, ...
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = [("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
DESCRIPTION = ("Fashion-MNIST (Xiao, Rasul and Vollgraf 2017): 70,000 28x28 greyscale images of 10 clothing "
               "classes with one-hot labels; rows 0-59,999 are the original training set and rows "
               "60,000-69,999 the test set, in their original order.")


def cache_dir() -> Path:
    """Where torchvision's download goes: ``$ADVHASH_CACHE/fashion-mnist`` (default ``~/.cache/advhash``)."""
    return Path(os.environ.get("ADVHASH_CACHE", "~/.cache/advhash")).expanduser() / NAME


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path, reader) -> np.ndarray:
    """Read one IDX file with torchvision's reader, decompressing a ``.gz`` to a temporary file first."""
    if path.suffix != ".gz":
        return reader(str(path)).numpy()
    with tempfile.TemporaryDirectory() as tmp, gzip.open(path, "rb") as source:
        plain = Path(tmp) / path.stem
        with open(plain, "wb") as target:
            shutil.copyfileobj(source, target, length=1 << 22)
        return reader(str(plain)).numpy()


def read_idx_folder(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray] | None:
    """``(images uint8 (70000, 1, 28, 28), classes int64 (70000,))`` from the four IDX files in ``folder``
    (plain or ``.gz``), train rows first; None when any file is missing."""
    folder = Path(folder)
    paths = [[_find(folder, name) for name in pair] for pair in IDX_FILES]
    if any(path is None for pair in paths for path in pair):
        return None
    images, classes = [], []
    for image_path, label_path in paths:
        part_images = _read_idx(image_path, read_image_file)
        part_classes = _read_idx(label_path, read_label_file)
        if len(part_images) != len(part_classes):
            raise ValueError(f"{image_path} holds {len(part_images)} images but {label_path} "
                             f"{len(part_classes)} labels; the IDX files are damaged, fetch them again")
        images.append(part_images)
        classes.append(part_classes)
    return np.concatenate(images)[:, None], np.concatenate(classes).astype(np.int64)


def _download(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    parts = [FashionMNIST(str(folder), train=train, download=True) for train in (True, False)]
    images = np.concatenate([part.data.numpy() for part in parts])[:, None]
    return images, np.concatenate([part.targets.numpy() for part in parts]).astype(np.int64)


def build_fashion_mnist(root: str | os.PathLike = "data", *, allow_download: bool = True) -> dict[str, Any]:
    """The Fashion-MNIST pool from the first source that has it (see the module docstring).

    Returns {"images": uint8 (70000, 1, 28, 28), "labels": uint8 (70000, 10), "texts": None, "meta": dict}.
    """
    raw_dir = Path(root) / NAME / "raw"
    found = read_idx_folder(raw_dir) or read_idx_folder(DEBIAN_DIR)
    failure = None
    if found is None and allow_download:
        try:
            found = _download(cache_dir())
        except Exception as error:   # no network, a mirror down, a damaged download: all end the same way
            failure = error
    if found is None:
        raise FileNotFoundError(
            f"Fashion-MNIST not found. Looked for the four IDX files (train-images-idx3-ubyte.gz, "
            f"train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in "
            f"(1) {raw_dir} (or a materialized {Path(root) / NAME}), (2) {DEBIAN_DIR}, and "
            f"(3) torchvision's download into {cache_dir()}"
            + (f", which failed: {failure!r}" if failure else " (download disabled)")
            + ". Fix: `sudo apt-get install dataset-fashion-mnist`, or copy the IDX files into "
              f"{raw_dir}, or run once with a network.")
    images, classes = found
    labels = np.eye(len(CLASS_NAMES), dtype=np.uint8)[classes]
    meta = dict(name=NAME, description=DESCRIPTION, class_names=CLASS_NAMES, tag_vocabulary=None,
                source="the four original Fashion-MNIST IDX files (as in Debian's dataset-fashion-mnist and "
                       "torchvision.datasets.FashionMNIST), read with torchvision.datasets.mnist",
                derivation=dict(rows="train (60,000) then test (10,000), original order",
                                labels="one-hot over the 10 classes"),
                original_split=dict(train=[0, 60000], test=[60000, 70000]))
    return dict(images=images, labels=labels, texts=None, meta=meta)


def fashion_mnist_pool(root: str | os.PathLike = "data", *, allow_download: bool = True) -> dict[str, Any]:
    """The pool from ``<root>/fashion-mnist`` when materialized, else from :func:`build_fashion_mnist`."""
    folder = Path(root) / NAME
    if is_materialized(folder):
        images, labels, texts, meta = load_arrays(folder)
        return dict(images=images, labels=labels, texts=texts, meta=meta)
    return build_fashion_mnist(root, allow_download=allow_download)


def load_fashion_mnist(root: str | os.PathLike = "data", *, num_query: int = 1000, num_train: int | None = 5000,
                       num_database: int | None = None, seed: int = 0, balanced: bool = True,
                       allow_download: bool = True) -> HashingData:
    """Fashion-MNIST with query / database / train splits (defaults: ``STANDARD_SPLITS["fashion-mnist"]``,
    the CIFAR-10 protocol: 100 queries and 500 training items a class, database = the other 69,000).

    Example:
        >>> data = load_fashion_mnist("data", num_query=100, num_train=500, seed=0)
        >>> image, label, index = data.train[0]      # (1, 28, 28) in [0, 1], one-hot (10,), 0
    """
    pool = fashion_mnist_pool(root, allow_download=allow_download)
    meta = pool["meta"]
    return data_from_pool(NAME, images=pool["images"], labels=pool["labels"], class_names=meta["class_names"],
                          description=meta["description"], meta=meta, num_query=num_query, num_train=num_train,
                          num_database=num_database, seed=seed, balanced=balanced)

