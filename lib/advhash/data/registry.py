"""Datasets by name: ``load_dataset(name, root="data", **kwargs)`` and ``materialize(name, root="data")``.

| name                   | what                                                         | splits (defaults)            |
|------------------------|--------------------------------------------------------------|------------------------------|
| fashion-mnist          | real Fashion-MNIST, 70,000 28x28 grey, one-hot 10            | 1,000 / 5,000, class-balanced|
| fashion-mosaic         | DERIVED multi-label 2x2 mosaics of Fashion-MNIST, 10 labels, | 1,000 / 5,000 of 12,000      |
|                        | 54 tags (default for the multi-label and cross-modal parts)  |                              |
| cifar10                | CIFAR-10, 60,000 32x32 RGB, one-hot 10                       | 1,000 / 5,000, class-balanced|
| flickr25k, nus-wide,   | list files in <root>/FLICKR-25K, NUS-WIDE, MS-COCO           | the files' own               |
| ms-coco, listfile      | (``listfile`` takes ``folder=``)                             |                              |
| flickr25k-crossmodal,  | DCMH-style .mat (LAll, YAll, IAll) in <root>/FLICKR-25K      | 2,000 / 10,000 / 18,015      |
| crossmodal-mat         | (``crossmodal-mat`` takes ``folder=`` or ``files=``)          |                              |

Splits are (queries / training items [/ database]), ``STANDARD_SPLITS``; only pools built here can be materialized
(``MATERIALIZABLE``: fashion-mnist, fashion-mosaic, cifar10).
"""

from __future__ import annotations

import inspect
import os
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

from .cifar import build_cifar10, load_cifar10
from .crossmodal_mat import load_crossmodal_mat
from .dataset import HashingData
from .fashion import build_fashion_mnist, load_fashion_mnist
from .listfile import LISTFILE_FOLDERS, load_listfile_dataset
from .mosaic import build_fashion_mosaic, load_fashion_mosaic
from .storage import save_arrays

DATASETS: dict[str, Callable[..., HashingData]] = {
    "fashion-mnist": load_fashion_mnist,
    "fashion-mosaic": load_fashion_mosaic,
    "cifar10": load_cifar10,
    **{name: partial(load_listfile_dataset, folder=folder, name=name) for name, folder in LISTFILE_FOLDERS.items()},
    "listfile": load_listfile_dataset,
    "flickr25k-crossmodal": partial(load_crossmodal_mat, folder="FLICKR-25K", name="flickr25k-crossmodal"),
    "crossmodal-mat": load_crossmodal_mat,
}

MATERIALIZABLE: dict[str, Callable[..., dict[str, Any]]] = {
    "fashion-mnist": build_fashion_mnist,
    "fashion-mosaic": build_fashion_mosaic,
    "cifar10": build_cifar10,
}


def _check_name(name: str, known: dict) -> None:
    if name not in known:
        raise KeyError(f"unknown dataset {name!r}; choose one of {sorted(known)}")


def load_dataset(name: str, root: str | os.PathLike = "data", **kwargs) -> HashingData:
    """Load dataset ``name`` with its query / database / train splits; ``kwargs`` go to its loader
    (split sizes ``num_query``, ``num_train``, ``num_database``, ``seed``, and the loader's own).
    Datasets whose splits come from their files take no split sizes; ``None`` for one is ignored.

    Example:
        >>> data = load_dataset("fashion-mosaic", root="data", num_query=500, num_train=2000, seed=0)
        >>> data.summary()["query"]     # {'items': 500, 'labels_per_item': ..., 'tags_per_item': ...}
    """
    _check_name(name, DATASETS)
    loader = DATASETS[name]
    accepted = inspect.signature(loader).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    # datasets whose splits come from their files (list files) take no split sizes: a None passed by a
    # generic caller (a notebook's `num_query: null`) is dropped; a value is an error the loader reports
    kwargs = {key: value for key, value in kwargs.items() if value is not None or key in accepted or takes_any}
    return loader(root, **kwargs)


def materialize(name: str, root: str | os.PathLike = "data", **kwargs) -> dict[str, Any]:
    """Build dataset ``name``'s pool and write it to ``<root>/<name>/`` in the on-disk format
    (``advhash.data.storage``); ``kwargs`` go to its builder (e.g. ``num_items`` for fashion-mosaic,
    ``source`` for cifar10). The same inputs always give byte-identical files.

    Returns {"folder": Path, "items": N, "megabytes": size on disk, "seconds": time taken,
    "written": {file: whether its bytes changed}}.
    """
    _check_name(name, MATERIALIZABLE)
    began = time.perf_counter()
    pool = MATERIALIZABLE[name](root, **kwargs)
    folder = Path(root) / name
    written = save_arrays(folder, images=pool["images"], labels=pool["labels"], texts=pool["texts"],
                          meta=pool["meta"])
    megabytes = sum((folder / file).stat().st_size for file in written) / 2**20
    return dict(folder=folder, items=len(pool["labels"]), megabytes=round(megabytes, 1),
                seconds=round(time.perf_counter() - began, 2), written=written)
