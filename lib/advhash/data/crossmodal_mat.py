"""DCMH-style cross-modal data in MATLAB files (DCMH, SSAH, CMLA): labels, tag bag-of-words, images.

Variables, in one ``.mat`` file or spread over several in ``<root>/<folder>/`` (every ``*.mat`` / ``*.h5`` file
there is looked at, or pass ``files=[...]``): ``LAll`` labels, 0/1 (N, L); ``YAll`` tag bag-of-words (N, T);
``IAll`` (or ``images``) uint8 images, 4-D with one axis of N items and one of 3 (or 1) channels, in any of MATLAB's
axis orders (``H x W x 3 x N`` works too).

MATLAB v5 files are read with ``scipy.io.loadmat`` (only the variables needed: ``whosmat`` lists them first, so an
unneeded multi-GB ``IAll`` is never loaded); v7.3 (HDF5) files need ``h5py``, whose axes are reversed into MATLAB's
order. Images are held in memory. Splits: ``STANDARD_SPLITS["flickr25k-crossmodal"]``, drawn at random from
``seed``, or in file order with ``ordered=True`` (queries first, as DCMH's code). ``require_images=False`` loads
labels and tags only; reading an image then raises an error saying which files were searched for ``IAll``.
MIRFLICKR-25K's sizes and statistics: ``docs/methods.md``, section Data sets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.io

from .dataset import HashingData, check_binary_labels
from .splits import data_from_pool

LABEL_KEYS, TEXT_KEYS, IMAGE_KEYS = ("LAll",), ("YAll",), ("IAll", "images")
# MIRFLICKR-25K's 24 concepts, in the column order of the cleaned LAll (checked against the
# original annotations: the 24 "potential" labels in alphabetical order).
MIRFLICKR24_CLASSES = ["animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor",
                       "lake", "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky",
                       "structures", "sunset", "transport", "tree", "water"]


def _variables(path: Path) -> list[str]:
    try:
        return [name for name, _, _ in scipy.io.whosmat(str(path))]
    except (NotImplementedError, ValueError):    # MATLAB v7.3 is HDF5
        with _h5py().File(path, "r") as file:
            return list(file.keys())


def _h5py():
    try:
        import h5py
    except ImportError as error:
        raise ImportError("this .mat file is MATLAB v7.3 (HDF5); `pip install h5py` to read it, or re-save it "
                          "in MATLAB with save(..., '-v7')") from error
    return h5py


def _read(path: Path, key: str) -> np.ndarray:
    try:
        return scipy.io.loadmat(str(path), variable_names=[key])[key]
    except (NotImplementedError, ValueError):
        with _h5py().File(path, "r") as file:
            return np.asarray(file[key]).transpose()      # h5py gives the axes reversed


def _find(files: Sequence[Path], keys: Sequence[str]) -> tuple[Path, str] | None:
    for path in files:
        names = _variables(path)
        for key in keys:
            if key in names:
                return path, key
    return None


def _rows_first(array: np.ndarray, n: int, what: str, path: Path) -> np.ndarray:
    if array.ndim != 2:
        raise ValueError(f"{what} in {path} must be 2-D (items, width), got shape {array.shape}")
    if array.shape[0] != n and array.shape[1] == n:
        array = array.T
    if array.shape[0] != n:
        raise ValueError(f"{what} in {path} has {array.shape[0]} rows but the labels have {n}; the files must "
                         f"describe the same items in the same order")
    return array


def images_to_nchw(array: np.ndarray, n: int, *, path: Path) -> np.ndarray:
    """uint8 (N, C, H, W) from a 4-D array with one axis of ``n`` items and one of 1 or 3 channels."""
    if array.ndim != 4 or n not in array.shape:
        raise ValueError(f"images in {path} must be 4-D with an axis of {n} items, got shape {array.shape}")
    item_axis = 0 if array.shape[0] == n else array.shape.index(n)
    array = np.moveaxis(array, item_axis, 0)
    if array.shape[3] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    elif array.shape[1] not in (1, 3):
        raise ValueError(f"images in {path} have no channel axis of size 1 or 3: shape {array.shape}")
    if array.dtype != np.uint8:
        if array.min() < 0 or array.max() > 255:
            raise ValueError(f"images in {path} must hold pixel values 0..255, got {array.min()}..{array.max()}")
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)


def read_crossmodal_mat(files: Sequence[str | os.PathLike], *, require_images: bool = True) -> dict[str, Any]:
    """{"images": uint8 (N, C, H, W) or None, "labels": uint8 (N, L), "texts": (N, T) or None, "files": {...}}."""
    files = [Path(f) for f in files]
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"missing .mat file {path}")
    found_labels = _find(files, LABEL_KEYS)
    if found_labels is None:
        raise KeyError(f"no label matrix ({' or '.join(LABEL_KEYS)}) in {[str(f) for f in files]}; found variables "
                       f"{ {f.name: _variables(f) for f in files} }")
    labels = check_binary_labels(_read(*found_labels), where=str(found_labels[0]), name="LAll labels")
    n = len(labels)
    found_texts, found_images = _find(files, TEXT_KEYS), _find(files, IMAGE_KEYS)
    texts = None if found_texts is None else _rows_first(_read(*found_texts), n, "YAll", found_texts[0])
    if found_images is None and require_images:
        raise FileNotFoundError(f"no images ({' or '.join(IMAGE_KEYS)}) in {[str(f) for f in files]}; add the image "
                                f"file, or pass require_images=False to load labels and tags only")
    images = None if found_images is None else images_to_nchw(_read(*found_images), n, path=found_images[0])
    sources = {"labels": found_labels, "texts": found_texts, "images": found_images}
    return dict(images=images, labels=labels, texts=texts,
                files={what: None if hit is None else f"{hit[0].name}:{hit[1]}" for what, hit in sources.items()})


def load_crossmodal_mat(root: str | os.PathLike = "data", *, folder: str = "FLICKR-25K",
                        files: Sequence[str | os.PathLike] | None = None, name: str | None = None,
                        class_names: Sequence[str] | None = None, num_query: int = 2000,
                        num_train: int | None = 10000, num_database: int | None = None, seed: int = 0,
                        ordered: bool = False, require_images: bool = True) -> HashingData:
    """A cross-modal dataset from DCMH-style ``.mat`` files (see the module docstring).

    Args:
        folder: the folder under ``root`` whose ``*.mat`` / ``*.h5`` files are read (unless ``files``).
        files: explicit file paths, overriding ``folder``.
        class_names: label names (default: MIRFLICKR-25K's 24 concepts for 24 labels, else "0".."L-1").
        num_query, num_train, num_database, seed, ordered: the split (see ``advhash.data.splits``).
        require_images: False loads labels and tags only.

    Example:
        >>> data = load_crossmodal_mat("path/to", folder="mirflickr25k", require_images=False)
        >>> data.num_classes, data.text_dim           # (24, 1386)
    """
    if files is None:
        base = Path(root) / folder
        if not base.is_dir():
            raise FileNotFoundError(f"dataset folder {base} does not exist; put the .mat files (LAll, YAll, IAll) "
                                    f"there or pass files=[...]")
        files = sorted([*base.glob("*.mat"), *base.glob("*.h5")])
        if not files:
            raise FileNotFoundError(f"no .mat or .h5 files in {base}; expected LAll, YAll and IAll variables")
    pool = read_crossmodal_mat(files, require_images=require_images)
    num_classes = pool["labels"].shape[1]
    if class_names is None:
        class_names = MIRFLICKR24_CLASSES if num_classes == 24 else [str(c) for c in range(num_classes)]
    name = name or folder
    meta = dict(name=name, source=pool["files"], class_names=list(class_names))
    missing = (f"No image variable ({' or '.join(IMAGE_KEYS)}) was found in {[Path(f).name for f in files]}; "
               f"add the image .mat file to load images.")
    return data_from_pool(name, images=pool["images"], labels=pool["labels"], texts=pool["texts"],
                          class_names=class_names, description=f"{name}: cross-modal .mat data (LAll, YAll, IAll)",
                          meta=meta, num_query=num_query, num_train=num_train, num_database=num_database, seed=seed,
                          ordered=ordered, missing_images_reason=missing)
