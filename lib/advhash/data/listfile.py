"""List-file datasets: the literature's bring-your-own layout for FLICKR-25K, NUS-WIDE and MS-COCO.

Two forms, chosen per split by which file exists in ``<root>/<folder>/``:

- ProS-GAN, ATRDH, SAAT, CgAT: ``{train,test,database}_img.txt`` (one image path a line) with
  ``{train,test,database}_label.txt`` (one space-separated 0/1 vector a line, aligned by line);
- DeepHash-pytorch: ``{train,test,database}.txt`` with ``<image path> <0/1> <0/1> ...`` a line.

``test`` is the query split; the splits are the files' own (standard sizes: ``STANDARD_SPLITS``). Relative image
paths are resolved against ``image_root`` (default ``<root>/<folder>``). Images are read as an image viewer shows
them on a white page, whatever their mode (:func:`~advhash.data.dataset.to_rgb`; 32-bit and floating-point images
are refused), resized to ``image_size``, in [0, 1] (:class:`~advhash.data.dataset.ImageFileSplit`), by default
decoded once into the image cache (``advhash.data.cache``, keyed by the files' content; each file read once per
load); an EXIF orientation is not applied, as in the published code (a warning names the first such file). Class
names: ``class_names``, else ``<root>/<folder>/classes.txt`` (one name a line, in label order), else "0", "1", ...
Items with an all-zero label line are kept. Every label line must be binary and as wide as the others and every
image must exist; errors name the file and line to fix. List files are UTF-8 text (a byte-order mark, as Windows
editors write it, is accepted; another encoding is an error naming the line), any line ending; in the one-file
form an image path cannot hold a space. Split sizes and counts: ``docs/methods.md``, Data sets.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .cache import cached_splits
from .dataset import HashingData, ImageFileSplit

SPLIT_FILES = {"train": "train", "query": "test", "database": "database"}   # split -> file stem
LISTFILE_FOLDERS = {"flickr25k": "FLICKR-25K", "nus-wide": "NUS-WIDE", "ms-coco": "MS-COCO"}


def _lines(path: Path) -> list[str]:
    """The lines of a list file read as UTF-8 (a leading byte-order mark dropped), trailing empty lines dropped."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        number = data.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{path}, line {number}: not UTF-8 text (byte {data[error.start]:#04x}); save the file as "
                         f"UTF-8") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"{path} is empty: it needs one line per item")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise ValueError(f"{path}, line {number}: empty line inside the file; remove it (lines must align)")
    return lines


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def parse_label_line(tokens: Sequence[str], *, path: Path, number: int) -> list[int]:
    """One 0/1 label vector from its tokens; errors name ``path`` and the 1-based line ``number``."""
    try:
        values = [float(token) for token in tokens]
    except ValueError:
        raise ValueError(f"{path}, line {number}: labels must be numbers 0 or 1 separated by spaces, got "
                         f"{' '.join(tokens)[:80]!r}") from None
    if any(value not in (0.0, 1.0) for value in values):
        bad = sorted({token for token, value in zip(tokens, values) if value not in (0.0, 1.0)})
        raise ValueError(f"{path}, line {number}: labels must be binary (0/1), found {bad[:5]}")
    return [int(value) for value in values]


def _label_matrix(rows: list[list[int]], *, path: Path) -> np.ndarray:
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        first = len(rows[0])
        number = next(i for i, row in enumerate(rows, 1) if len(row) != first)
        raise ValueError(f"{path}, line {number}: {len(rows[number - 1])} labels but line 1 has {first}; "
                         f"every line needs the same number of labels")
    if widths == {0}:
        raise ValueError(f"{path}, line 1: no labels on the line")
    return np.asarray(rows, dtype=np.uint8).reshape(len(rows), -1)


def read_list_split(folder: str | os.PathLike, stem: str) -> tuple[list[str], np.ndarray, Path]:
    """``(image paths as written, labels uint8 (n, L), list file)`` of one split, in either form."""
    folder = Path(folder)
    image_file, label_file = folder / f"{stem}_img.txt", folder / f"{stem}_label.txt"
    single_file = folder / f"{stem}.txt"
    if image_file.is_file():
        if not label_file.is_file():
            raise FileNotFoundError(f"missing split file {label_file} (the labels of {image_file})")
        paths = [line.strip() for line in _lines(image_file)]
        label_lines = _lines(label_file)
        if len(label_lines) != len(paths):
            raise ValueError(f"{image_file} has {len(paths)} lines but {label_file} {len(label_lines)}; "
                             f"they must align line by line")
        rows = [parse_label_line(line.split(), path=label_file, number=i) for i, line in enumerate(label_lines, 1)]
        return paths, _label_matrix(rows, path=label_file), image_file
    if single_file.is_file():
        paths, rows = [], []
        for number, line in enumerate(_lines(single_file), 1):
            path, *tokens = line.split()
            if tokens and not _is_number(tokens[0]):
                raise ValueError(f"{single_file}, line {number}: {tokens[0]!r} after the image path {path!r} is not "
                                 f"a label; a path with spaces needs the two-file form ({stem}_img.txt with "
                                 f"{stem}_label.txt)")
            paths.append(path)
            rows.append(parse_label_line(tokens, path=single_file, number=number))
        return paths, _label_matrix(rows, path=single_file), single_file
    raise FileNotFoundError(f"missing split file: expected {image_file} with {label_file} "
                            f"(or the one-file form {single_file})")


def _resolve(paths: list[str], image_root: Path, list_file: Path, check: bool) -> list[Path]:
    resolved = [Path(p) if Path(p).is_absolute() else image_root / p for p in paths]
    if check:
        for number, path in enumerate(resolved, 1):
            if not path.is_file():
                raise FileNotFoundError(f"{list_file}, line {number}: image {path} does not exist; fix the "
                                        f"line or image_root (relative paths start at {image_root})")
    return resolved


def load_listfile_dataset(root: str | os.PathLike = "data", *, folder: str, name: str | None = None,
                          image_root: str | os.PathLike | None = None, image_size: int = 224,
                          transform: Callable | None = None, class_names: Sequence[str] | None = None,
                          check_images: bool = True, cache: bool = True,
                          cache_dir: str | os.PathLike | None = None) -> HashingData:
    """A dataset given by list files in ``<root>/<folder>/`` (see the module docstring).

    Args:
        folder: the dataset folder under ``root``, e.g. "FLICKR-25K", "NUS-WIDE", "MS-COCO".
        name: the dataset's name (default: ``folder``).
        image_root: where relative image paths start (default ``<root>/<folder>``).
        image_size: images are resized to (image_size, image_size) (224 for AlexNet/VGG/ResNet).
        transform: replaces the default Resize + ToTensor (must give float tensors in [0, 1]).
        class_names: names of the L labels (default: classes.txt, else "0".."L-1").
        check_images: check at load time that every image file exists.
        cache: decode every split once into the decoded image cache (``advhash.data.cache``: same bytes, an
            in-memory split); False reads the files on every access. A custom ``transform`` is never cached.
        cache_dir: where the cache lives (default ``advhash.data.cache.default_cache_dir()``).

    Example:
        >>> data = load_listfile_dataset("data", folder="FLICKR-25K")
        >>> image, label, index = data.query[0]      # (3, 224, 224) in [0, 1], multi-hot (38,), 0
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist; pass root= the folder holding {folder}/")
    base = root / folder
    if not base.is_dir():
        raise FileNotFoundError(f"dataset folder {base} does not exist; put the list files "
                                f"(train_img.txt, train_label.txt, test_..., database_...) there")
    image_root = Path(image_root) if image_root is not None else base
    read = {split: read_list_split(base, stem) for split, stem in SPLIT_FILES.items()}
    widths = {str(list_file): labels.shape[1] for _, labels, list_file in read.values()}
    if len(set(widths.values())) > 1:
        raise ValueError(f"label widths disagree between split files: {widths}; every split must use the "
                         f"same label vocabulary")
    query_paths, database_paths = set(read["query"][0]), set(read["database"][0])
    if query_paths & database_paths:
        warnings.warn(f"{len(query_paths & database_paths)} images are both query (test) and database items "
                      f"in {base}; the protocol keeps them disjoint", stacklevel=2)
    num_classes = next(iter(widths.values()))
    if class_names is None and (base / "classes.txt").is_file():
        class_names = [line.strip() for line in _lines(base / "classes.txt")]
        if len(class_names) != num_classes:
            raise ValueError(f"{base / 'classes.txt'} names {len(class_names)} classes but the label lines have "
                             f"{num_classes} labels; write one class name a line, in label order")
    class_names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    splits = {split: ImageFileSplit(_resolve(paths, image_root, list_file, check_images), labels,
                                    image_size=image_size, transform=transform,
                                    origins=[f"{list_file}, line {number}" for number in range(1, len(paths) + 1)])
              for split, (paths, labels, list_file) in read.items()}
    if cache:                                  # each distinct file read once, however many splits list it
        cached = cached_splits({f"{name or folder}-{split}": images for split, images in splits.items()},
                               cache_dir=cache_dir)
        splits = {split: cached[f"{name or folder}-{split}"] for split in splits}
    meta = dict(name=name or folder, source=f"list files in {base}", image_size=image_size,
                list_files={split: list_file.name for split, (_, _, list_file) in read.items()})
    return HashingData(name=name or folder, **splits, class_names=class_names,
                       description=f"{name or folder}: list-file dataset (train / test = query / database files)",
                       meta=meta)
