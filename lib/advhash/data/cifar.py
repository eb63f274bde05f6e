"""CIFAR-10 (Krizhevsky, 2009): 60,000 32x32 RGB images of 10 classes, one-hot labels.

Pool: the training images (50,000) then the test images (10,000); images uint8 (N, 3, 32, 32), labels uint8
(N, 10). Splits follow the hashing protocol (DPSH, HashNet, ...): 100 query and 500 training images a class
(``balanced=True``), the database every non-query image.

Sources, read with torchvision, in this order: ``source=`` (a ``cifar-10-batches-py`` folder, an ImageFolder tree
``{train,test}/<class>/*.jpg`` or a ``.zip`` of one); ``<root>/cifar10/`` materialized (``images.npy``,
``labels.npy``, ``meta.json``); ``<root>/cifar10/cifar-10-batches-py``; an ImageFolder tree in ``<root>/cifar10/``
or ``<root>/cifar10.zip``; torchvision's ``CIFAR10(download=True)`` into ``$ADVHASH_CACHE/cifar10`` (needs a
network). ImageFolder rows are sorted by class, then by file name (torchvision's order). A JPEG copy gives close,
not equal, results (``docs/methods.md``, Data sets).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from torchvision import datasets
from torchvision.datasets.utils import extract_archive

from .dataset import HashingData
from .splits import data_from_pool
from .storage import is_materialized, load_arrays

NAME = "cifar10"
DESCRIPTION = ("CIFAR-10 (Krizhevsky 2009): 32x32 RGB images of 10 classes with one-hot labels; rows are the "
               "training images then the test images.")


def cache_dir() -> Path:
    return Path(os.environ.get("ADVHASH_CACHE", "~/.cache/advhash")).expanduser() / NAME


def _read_torchvision(root: Path, *, download: bool = False) -> dict[str, Any]:
    parts = [datasets.CIFAR10(str(root), train=train, download=download) for train in (True, False)]
    images = np.concatenate([part.data for part in parts]).transpose(0, 3, 1, 2)
    classes = np.concatenate([np.asarray(part.targets) for part in parts])
    return dict(images=images, classes=classes, class_names=list(parts[0].classes),
                source="torchvision CIFAR-10 python batches (the original pixels)",
                original_split=dict(train=[0, len(parts[0].data)], test=[len(parts[0].data), len(images)]))


def _tree_root(folder: Path) -> Path | None:
    """The folder holding train/ and/or test/ class folders: ``folder`` itself or one level below."""
    for candidate in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []:
        if (candidate / "train").is_dir() or (candidate / "test").is_dir():
            return candidate
    return None


def read_image_folder(folder: str | os.PathLike) -> dict[str, Any]:
    """Read an ImageFolder tree ``<folder>/{train,test}/<class>/<image>`` with ``torchvision.datasets.ImageFolder``."""
    folder = Path(folder)
    tree = _tree_root(folder)
    if tree is None:
        raise FileNotFoundError(f"no ImageFolder tree in {folder}: expected {folder}/train/<class>/<image> "
                                f"and/or {folder}/test/<class>/<image>")
    images, classes, class_names, bounds, start = [], [], None, {}, 0
    for split in ("train", "test"):
        if not (tree / split).is_dir():
            continue
        tree_split = datasets.ImageFolder(str(tree / split))
        if class_names is not None and tree_split.classes != class_names:
            raise ValueError(f"{tree / split} has classes {tree_split.classes} but train has {class_names}; "
                             f"both splits must hold the same class folders")
        class_names = tree_split.classes
        for path, target in tree_split.samples:
            array = np.asarray(tree_split.loader(path))
            if images and array.shape != images[0].shape:
                raise ValueError(f"{path} is {array.shape[1]}x{array.shape[0]} but earlier images are "
                                 f"{images[0].shape[1]}x{images[0].shape[0]}; all images must share one size "
                                 f"(use the list-file loader, which resizes, for photos of mixed sizes)")
            images.append(array)
            classes.append(target)
        bounds[split] = [start, len(images)]
        start = len(images)
    return dict(images=np.stack(images).transpose(0, 3, 1, 2), classes=np.asarray(classes), class_names=class_names,
                source="an ImageFolder tree of image files (train/<class>/, test/<class>/)", original_split=bounds)


def _read_source(source: Path) -> dict[str, Any]:
    if not source.exists():
        raise FileNotFoundError(f"CIFAR-10 source {source} does not exist; pass a cifar-10-batches-py folder's "
                                f"parent, an ImageFolder tree or a zip of one")
    if source.is_file() and source.suffix == ".zip":
        with tempfile.TemporaryDirectory() as tmp:
            extract_archive(str(source), tmp)
            found = read_image_folder(tmp)
        found["source"] = "a zip of an ImageFolder tree (train/<class>/, test/<class>/)"
        return found
    if (source / "cifar-10-batches-py").is_dir():
        return _read_torchvision(source)
    return read_image_folder(source)


def build_cifar10(root: str | os.PathLike = "data", *, source: str | os.PathLike | None = None,
                  allow_download: bool = True) -> dict[str, Any]:
    """The CIFAR-10 pool from ``source`` or the places listed in the module docstring (steps 3-5).

    Returns {"images": uint8 (N, 3, 32, 32), "labels": uint8 (N, 10), "texts": None, "meta": dict}.
    """
    folder = Path(root) / NAME
    if source is not None:
        found = _read_source(Path(source))
    elif (folder / "cifar-10-batches-py").is_dir():
        found = _read_torchvision(folder)
    elif _tree_root(folder) is not None:
        found = read_image_folder(folder)
    elif (Path(root) / "cifar10.zip").is_file():
        found = _read_source(Path(root) / "cifar10.zip")
    else:
        try:
            found = _read_torchvision(cache_dir(), download=allow_download)
        except Exception as error:   # no network, a corrupted download, download disabled
            raise FileNotFoundError(
                f"CIFAR-10 not found. Looked in (1) {folder} (materialized npy files, cifar-10-batches-py, or "
                f"train/<class>/ and test/<class>/ folders), (2) {Path(root) / 'cifar10.zip'}, and (3) "
                f"torchvision's download into {cache_dir()}, which failed: {error!r}. Fix: pass "
                f"source=<folder or zip>, or run once with a network.") from error
    class_names = list(found["class_names"])
    labels = np.eye(len(class_names), dtype=np.uint8)[found["classes"]]
    meta = dict(name=NAME, description=DESCRIPTION, class_names=class_names, tag_vocabulary=None,
                source=found["source"], original_split=found["original_split"],
                derivation=dict(rows="training images then test images", labels="one-hot over the classes"))
    return dict(images=np.ascontiguousarray(found["images"]), labels=labels, texts=None, meta=meta)


def load_cifar10(root: str | os.PathLike = "data", *, source: str | os.PathLike | None = None,
                 num_query: int = 1000, num_train: int | None = 5000, num_database: int | None = None,
                 seed: int = 0, balanced: bool = True, allow_download: bool = True) -> HashingData:
    """CIFAR-10 with the hashing protocol's splits (defaults ``STANDARD_SPLITS["cifar10"]``: 100 query and
    500 train a class, class-balanced; database = the other 59,000).

    Example:
        >>> data = load_cifar10("data", source="path/to/cifar10-jpeg.zip")
        >>> image, label, index = data.query[0]      # (3, 32, 32) in [0, 1], one-hot (10,), 0
    """
    folder = Path(root) / NAME
    if source is None and is_materialized(folder):
        images, labels, _, meta = load_arrays(folder)
    else:
        pool = build_cifar10(root, source=source, allow_download=allow_download)
        images, labels, meta = pool["images"], pool["labels"], pool["meta"]
    return data_from_pool(NAME, images=images, labels=labels, class_names=meta["class_names"],
                          description=meta["description"], meta=meta, num_query=num_query, num_train=num_train,
                          num_database=num_database, seed=seed, balanced=balanced)
