"""Query / database / train splits drawn from a stored pool, deterministically from a seed.

The literature's protocol, followed here: the query items are drawn first; the database is every
other item (or ``num_database`` of them); the training items are drawn from the database, so train
is a subset of the database and query and database are disjoint. Every split's indices are sorted
(pool order), and the same (pool, sizes, seed) always gives the same splits (numpy ``Generator``).

``balanced=True`` is the single-label (CIFAR-10) protocol: the same number of query and training
items from every class (CIFAR-10: 100 queries and 500 training images a class). ``ordered=True``
is DCMH's fixed split of a pre-shuffled ``.mat`` pool: the first ``num_query`` rows are the queries,
the following ``num_database`` rows (default: all) the database and its first ``num_train`` rows
the training items; the seed is then unused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .dataset import HashingData, InMemorySplit

# The literature's split sizes (queries, training items, database; None = every non-query item).
STANDARD_SPLITS: dict[str, dict[str, Any]] = {
    "flickr25k": dict(num_query=1700, num_train=5000, num_database=None),       # 38 labels (ProS-GAN, SAAT, CgAT)
    "nus-wide": dict(num_query=2100, num_train=10500, num_database=None),       # 21 labels
    "ms-coco": dict(num_query=5000, num_train=10000, num_database=None),        # 80 labels
    "cifar10": dict(num_query=1000, num_train=5000, num_database=None, balanced=True),  # 100 / 500 a class
    "flickr25k-crossmodal": dict(num_query=2000, num_train=10000, num_database=18015),  # DCMH, SSAH, CMLA
    # derived data of this library (fashion.py, mosaic.py)
    "fashion-mnist": dict(num_query=1000, num_train=5000, num_database=None, balanced=True),
    "fashion-mosaic": dict(num_query=1000, num_train=5000, num_database=None),
}


def _per_class_counts(total: int, num_classes: int) -> np.ndarray:
    counts = np.full(num_classes, total // num_classes)
    counts[: total % num_classes] += 1
    return counts


def _single_label_classes(labels: np.ndarray) -> np.ndarray:
    sums = labels.sum(1)
    if not (sums == 1).all():
        raise ValueError(f"balanced=True needs single-label (one-hot) data, but {(sums != 1).sum()} items have "
                         f"{sorted(set(sums[sums != 1].tolist()))[:5]} labels; use balanced=False")
    return labels.argmax(1)


def _draw_balanced(candidates: np.ndarray, classes: np.ndarray, total: int, rng: np.random.Generator,
                   what: str) -> np.ndarray:
    num_classes = int(classes.max()) + 1 if len(classes) else 0
    chosen = []
    for c, count in enumerate(_per_class_counts(total, num_classes)):
        members = candidates[classes[candidates] == c]
        if len(members) < count:
            raise ValueError(f"{what}: class {c} has only {len(members)} items left but {count} are needed; "
                             f"lower the split size")
        chosen.append(rng.permutation(members)[:count])
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def choose_splits(labels, *, num_query: int, num_train: int | None, num_database: int | None = None,
                  seed: int = 0, balanced: bool = False, ordered: bool = False) -> dict[str, np.ndarray]:
    """Pool indices of the query, database and train splits; see the module docstring.

    Args:
        labels: (N, L) 0/1 labels of the pool.
        num_query: number of query items.
        num_train: number of training items drawn from the database (None: the whole database).
        num_database: number of database items (None: every non-query item).
        seed: seeds the numpy Generator that draws the splits.
        balanced: draw query and train items evenly over the classes (single-label data only).
        ordered: take the splits in pool order instead of at random (DCMH's split).

    Returns:
        {"query": (num_query,), "database": (num_database,), "train": (num_train,)} sorted int64 indices.
    """
    labels = np.asarray(labels)
    n = len(labels)
    for name, value in dict(num_query=num_query, num_train=num_train, num_database=num_database).items():
        if value is not None and (int(value) != value or value < 0):
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if num_query + (num_database or 1) > n:
        raise ValueError(f"split sizes larger than the pool: num_query={num_query} plus "
                         f"num_database={num_database if num_database is not None else 'at least 1'} exceeds the "
                         f"{n} items available; lower num_query or num_database")
    rng = np.random.default_rng(seed)
    all_items = np.arange(n)
    if ordered:
        if balanced:
            raise ValueError("balanced=True and ordered=True exclude each other; choose one")
        database = all_items[num_query:] if num_database is None else all_items[num_query:num_query + num_database]
        if num_train is not None and num_train > len(database):
            raise ValueError(f"split sizes larger than the pool: num_train={num_train} but the database holds "
                             f"{len(database)} items; lower num_train")
        train = database if num_train is None else database[:num_train]
        return dict(query=all_items[:num_query], database=database, train=train)
    if balanced:
        classes = _single_label_classes(labels)
        query = _draw_balanced(all_items, classes, num_query, rng, "query")
    else:
        query = rng.permutation(n)[:num_query]
    rest = np.setdiff1d(all_items, query)
    database = rest if num_database is None else np.sort(rng.permutation(rest)[:num_database])
    if num_train is None:
        train = database
    elif num_train > len(database):
        raise ValueError(f"split sizes larger than the pool: num_train={num_train} but the database (which "
                         f"train is drawn from) holds {len(database)} items; lower num_train")
    elif balanced:
        train = _draw_balanced(database, classes, num_train, rng, "train")
    else:
        train = rng.permutation(database)[:num_train]
    return {name: np.sort(idx).astype(np.int64) for name, idx in
            dict(query=query, database=database, train=train).items()}


def data_from_pool(name: str, *, images, labels, texts=None, class_names, description: str = "",
                   meta: dict[str, Any] | None = None, num_query: int, num_train: int | None,
                   num_database: int | None = None, seed: int = 0, balanced: bool = False,
                   ordered: bool = False, missing_images_reason: str = "") -> HashingData:
    """Draw splits from a pool (images uint8 (N, C, H, W) or None, labels 0/1 (N, L), texts (N, T) or
    None) and wrap them as in-memory splits of a :class:`HashingData`."""
    labels = np.asarray(labels)
    indices = choose_splits(labels, num_query=num_query, num_train=num_train, num_database=num_database,
                            seed=seed, balanced=balanced, ordered=ordered)
    images_t = None if images is None else torch.as_tensor(np.asarray(images))

    def split(idx: np.ndarray) -> InMemorySplit:
        index = torch.as_tensor(idx)
        return InMemorySplit(None if images_t is None else images_t[index], labels[idx],
                             texts=None if texts is None else np.asarray(texts)[idx], source_indices=idx,
                             missing_images_reason=missing_images_reason)

    meta = dict(meta or {})
    meta["splits"] = dict(num_query=num_query, num_train=num_train, num_database=num_database, seed=seed,
                          balanced=balanced, ordered=ordered)
    return HashingData(name=name, train=split(indices["train"]), query=split(indices["query"]),
                       database=split(indices["database"]), class_names=list(class_names),
                       description=description, meta=meta)
