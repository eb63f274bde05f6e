"""Fashion-Mosaic: a DERIVED multi-label dataset with a tag text modality, built from Fashion-MNIST.

Not a real multi-label dataset: it stands in for FLICKR-25K / NUS-WIDE (whose images cannot be had here), so that
the multi-label and cross-modal methods run on real pixels with the same relevance rule. Everything is drawn from
one seeded numpy ``Generator``: the same parameters give the same bytes.

- Image: a 2x2 grid of Fashion-MNIST *training* images shrunk to ``cell_size`` (default 14: 28x28 grey mosaics,
  uint8 (N, 1, 28, 28)), 1-4 cells filled (``cell_probs``) at random positions, empty cells black; source images
  taken without replacement while they last.
- Labels: the union of the filled cells' classes, multi-hot over the 10 classes; relevance = sharing a label.
- Tags: a binary bag-of-words over ``TAG_VOCABULARY``: each label's synonyms kept with ``tag_keep``, its group tag
  with ``group_tag_keep``, plus Poisson(``spurious_tags``) spurious tags (``spurious_generic_share`` generic).
- Pool: ``num_items`` mosaics (default 12,000); splits drawn at load time (default 1,000 query, 5,000 train).

Its statistics beside MIRFLICKR-25K's: ``docs/methods.md``, section Data sets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import HashingData
from .fashion import CLASS_NAMES, fashion_mnist_pool
from .splits import data_from_pool
from .storage import is_materialized, load_arrays

NAME = "fashion-mosaic"
NUM_FASHION_TRAIN = 60000

# Tags of each Fashion-MNIST class (synonyms, as users tag photos), then group and generic tags.
CLASS_TAGS = [["tshirt", "tee", "top"], ["trousers", "pants", "jeans"], ["pullover", "sweater", "jumper"],
              ["dress", "gown", "frock"], ["coat", "jacket", "parka"], ["sandal", "flipflops", "slides"],
              ["shirt", "blouse", "buttondown"], ["sneaker", "trainers", "runningshoes"],
              ["bag", "handbag", "purse"], ["boot", "ankleboot", "booties"]]
GROUP_TAGS = {"shoes": [5, 7, 9], "knitwear": [2], "outerwear": [4], "accessories": [8]}
GENERIC_TAGS = ["photo", "fashion", "style", "clothing", "white", "black", "grey", "blue", "red", "summer",
                "winter", "new", "sale", "vintage", "casual", "outfit", "shopping", "cotton", "studio", "cute"]
TAG_VOCABULARY = [tag for tags in CLASS_TAGS for tag in tags] + list(GROUP_TAGS) + GENERIC_TAGS

DEFAULTS = dict(num_items=12000, mosaic_seed=0, cell_size=14, cell_probs=(0.2, 0.3, 0.3, 0.2), tag_keep=0.4,
                group_tag_keep=0.5, spurious_tags=1.3, spurious_generic_share=0.85)

DESCRIPTION = ("Fashion-Mosaic, a DERIVED multi-label dataset (not a real one): each 28x28 image is a 2x2 grid "
               "of 1-4 Fashion-MNIST training images shrunk to 14x14 (empty cells black); its labels are the union of their "
               "classes (multi-hot over 10) and its tags a noisy bag-of-words drawn from the labels "
               "(synonyms kept at random, spurious tags added). Relevance = sharing a label, as in "
               "FLICKR-25K. A stand-in for FLICKR-25K / NUS-WIDE, whose images are not available here.")


def _tag_keep_probabilities(tag_keep: float, group_tag_keep: float) -> np.ndarray:
    """(10, T): the probability that an item labelled with class c carries tag t."""
    index = {tag: t for t, tag in enumerate(TAG_VOCABULARY)}
    probs = np.zeros((len(CLASS_NAMES), len(TAG_VOCABULARY)))
    for c, tags in enumerate(CLASS_TAGS):
        probs[c, [index[tag] for tag in tags]] = tag_keep
    for group, classes in GROUP_TAGS.items():
        probs[classes, index[group]] = group_tag_keep
    return probs


def tags_from_labels(labels: np.ndarray, rng: np.random.Generator, *, tag_keep: float, group_tag_keep: float,
                     spurious_tags: float, spurious_generic_share: float) -> np.ndarray:
    """A noisy binary tag bag-of-words (N, T) for multi-hot ``labels`` (N, 10); see the module docstring."""
    n, vocabulary = len(labels), len(TAG_VOCABULARY)
    keep = rng.random((n, len(CLASS_NAMES), vocabulary)) < _tag_keep_probabilities(tag_keep, group_tag_keep)
    texts = (keep & labels.astype(bool)[:, :, None]).any(1)                     # (n, T)
    num_generic, num_class_tags = len(GENERIC_TAGS), vocabulary - len(GENERIC_TAGS)
    weights = np.concatenate([np.full(num_class_tags, (1 - spurious_generic_share) / num_class_tags),
                              np.full(num_generic, spurious_generic_share / num_generic)])
    counts = rng.poisson(spurious_tags, n)
    spurious = rng.choice(vocabulary, size=int(counts.sum()), p=weights)
    texts[np.repeat(np.arange(n), counts), spurious] = True
    return texts.astype(np.uint8)


def shrink(images: np.ndarray, factor: int) -> np.ndarray:
    """Shrink uint8 images (N, C, H, W) by an integer ``factor``: the rounded mean of each factor x factor
    block (exact integer arithmetic, so the result is the same on every machine)."""
    if factor == 1:
        return images
    n, c, h, w = images.shape
    blocks = images.reshape(n, c, h // factor, factor, w // factor, factor).astype(np.uint32).sum((3, 5))
    return ((blocks + factor * factor // 2) // (factor * factor)).astype(np.uint8)


def build_fashion_mosaic(root: str | os.PathLike = "data", **params) -> dict[str, Any]:
    """Build the pool from Fashion-MNIST (found as :mod:`advhash.data.fashion` says).

    Keyword args (defaults in ``DEFAULTS``): num_items, mosaic_seed, cell_size (14 or 28 pixels; a
    divisor of 28), cell_probs (P(1..4 cells filled)),
    tag_keep, group_tag_keep, spurious_tags (Poisson mean), spurious_generic_share.

    Returns {"images": uint8 (N, 1, 2 cell_size, 2 cell_size), "labels": uint8 (N, 10), "texts": uint8 (N, T), "meta": dict,
    "cells": int64 (N, 4) the Fashion-MNIST row in each cell (row-major) or -1 where empty}.
    """
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown fashion-mosaic parameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    cell_probs = np.asarray(p["cell_probs"], dtype=float)
    if cell_probs.shape != (4,) or (cell_probs < 0).any() or not np.isclose(cell_probs.sum(), 1):
        raise ValueError(f"cell_probs must be 4 probabilities (1, 2, 3, 4 filled cells) summing to 1, got {cell_probs}")
    if int(p["num_items"]) < 1:
        raise ValueError(f"num_items must be positive, got {p['num_items']}")
    cell_size = int(p["cell_size"])
    if cell_size < 1 or 28 % cell_size:
        raise ValueError(f"cell_size must divide 28 (e.g. 14 or 28), got {p['cell_size']}")
    fashion = fashion_mnist_pool(root)
    source_images = shrink(fashion["images"][:NUM_FASHION_TRAIN], 28 // cell_size)
    source_classes = fashion["labels"][:NUM_FASHION_TRAIN].argmax(1)
    n = int(p["num_items"])
    rng = np.random.default_rng(int(p["mosaic_seed"]))

    num_filled = rng.choice(4, size=n, p=cell_probs) + 1                       # (n,) 1..4
    ranks = rng.random((n, 4)).argsort(1).argsort(1)                           # a random order of the cells
    filled = ranks < num_filled[:, None]                                       # (n, 4)
    passes = -(-int(filled.sum()) // NUM_FASHION_TRAIN)
    order = np.concatenate([rng.permutation(NUM_FASHION_TRAIN) for _ in range(passes)])
    cells = np.full((n, 4), -1, dtype=np.int64)
    cells[filled] = order[: int(filled.sum())]

    images = np.zeros((n, 1, 2 * cell_size, 2 * cell_size), dtype=np.uint8)
    labels = np.zeros((n, len(CLASS_NAMES)), dtype=np.uint8)
    for position in range(4):
        rows = np.flatnonzero(filled[:, position])
        top, left = cell_size * (position // 2), cell_size * (position % 2)
        images[rows, :, top:top + cell_size, left:left + cell_size] = source_images[cells[rows, position]]
        labels[rows, source_classes[cells[rows, position]]] = 1
    texts = tags_from_labels(labels, rng, tag_keep=p["tag_keep"], group_tag_keep=p["group_tag_keep"],
                             spurious_tags=p["spurious_tags"], spurious_generic_share=p["spurious_generic_share"])
    parameters = {key: (list(map(float, value)) if key == "cell_probs" else value) for key, value in p.items()}
    meta = dict(name=NAME, description=DESCRIPTION, class_names=CLASS_NAMES, tag_vocabulary=TAG_VOCABULARY,
                source="derived from Fashion-MNIST training images (pool rows 0-59,999 of fashion-mnist)",
                derivation=dict(parameters=parameters, cell_layout=f"2x2 row-major, {cell_size}x{cell_size} cells "
                                "(2x2 block means of the 28x28 originals when 14), empty cells black",
                                labels="union of the filled cells' classes",
                                tags="synonyms of each label kept with tag_keep, group tag with group_tag_keep, "
                                     "plus Poisson(spurious_tags) spurious tags (generic with "
                                     "spurious_generic_share, else any class or group tag)"))
    return dict(images=images, labels=labels, texts=texts, meta=meta, cells=cells)


def _requested_parameters(params: dict[str, Any]) -> dict[str, Any]:
    merged = {**DEFAULTS, **params}
    merged["cell_probs"] = list(map(float, merged["cell_probs"]))
    return merged


def fashion_mosaic_pool(root: str | os.PathLike = "data", **params) -> dict[str, Any]:
    """The pool from ``<root>/fashion-mosaic`` when it was materialized with these parameters, else built."""
    folder = Path(root) / NAME
    if is_materialized(folder):
        images, labels, texts, meta = load_arrays(folder)
        if meta.get("derivation", {}).get("parameters") == _requested_parameters(params):
            return dict(images=images, labels=labels, texts=texts, meta=meta)
    return build_fashion_mosaic(root, **params)


def load_fashion_mosaic(root: str | os.PathLike = "data", *, num_query: int = 1000, num_train: int | None = 5000,
                        num_database: int | None = None, seed: int = 0, **params) -> HashingData:
    """Fashion-Mosaic with random query / database / train splits (``seed``); ``params`` build the pool
    (``num_items``, ``mosaic_seed``, ... see :func:`build_fashion_mosaic`).

    Example:
        >>> data = load_fashion_mosaic("data", num_query=500, num_train=2000)
        >>> image, label, index = data.query[0]     # (1, 28, 28) in [0, 1], multi-hot (10,), 0
        >>> data.query.texts.shape                   # (500, 53) binary tags
    """
    pool = fashion_mosaic_pool(root, **params)
    meta = pool["meta"]
    return data_from_pool(NAME, images=pool["images"], labels=pool["labels"], texts=pool["texts"],
                          class_names=meta["class_names"], description=meta["description"], meta=meta,
                          num_query=num_query, num_train=num_train, num_database=num_database, seed=seed)
