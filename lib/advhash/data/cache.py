"""The decoded image cache: an image-file split decoded once, at its input size, into a uint8 array on disk.

Real photos cost a JPEG decode and a resize per item, every epoch and every ``encode()``. The cache decodes each
split once, in parallel (a process pool), through exactly the path of :class:`~advhash.data.dataset.ImageFileSplit`
(RGB, torchvision's ``Resize`` to (size, size)) into a uint8 (n, 3, size, size) ``.npy`` file; the cached split is
a memory-mapped :class:`~advhash.data.dataset.InMemorySplit`. Its images, uint8 / 255, are bit for bit those of the
PIL path, so results do not depend on the cache.

A cache is found by a key that hashes everything that determines its bytes: the format version, the input size,
and each image's resolved path, size and modification time. Only the default transform is cached. The file is
written to a temporary name and moved into place, so an interrupted build leaves no half cache behind.

    split = cached_split(image_file_split, cache_dir="~/.cache/advhash/images")      # InMemorySplit
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from .dataset import ImageFileSplit, InMemorySplit, default_transform

__all__ = ["CACHE_VERSION", "default_cache_dir", "cache_key", "decode_images", "cached_split"]

CACHE_VERSION = 1
CHUNK = 64        # images a worker decodes per task


def default_cache_dir() -> Path:
    """``$ADVHASH_CACHE``, else ``$XDG_CACHE_HOME/advhash/images`` (``~/.cache/advhash/images``): outside the
    project, so the DVC-tracked ``data/`` stays untouched; the keys make it safe to share between projects."""
    if os.environ.get("ADVHASH_CACHE"):
        return Path(os.environ["ADVHASH_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "advhash" / "images"


def cache_key(paths, image_size: int) -> str:
    """The key of the cache of ``paths`` decoded at ``image_size``: a hash of the format version, the size and
    every file's resolved path, size in bytes and modification time (ns)."""
    digest = hashlib.sha1(f"advhash-decoded-v{CACHE_VERSION} size={image_size}\n".encode())
    for path in paths:
        path = Path(path).resolve()
        stat = path.stat()
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _decode_chunk(task: tuple[list[str], list[str], int]) -> np.ndarray:
    """Decode one chunk of images (a worker's task) as ImageFileSplit does; a file that cannot be decoded is an
    error naming it and where it was listed."""
    paths, origins, image_size = task
    resize = default_transform(image_size).transforms[0]            # the same torchvision Resize
    out = np.empty((len(paths), 3, image_size, image_size), dtype=np.uint8)
    for row, (path, origin) in enumerate(zip(paths, origins)):
        try:
            with Image.open(path) as image:
                resized = resize(image.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as error:
            raise ValueError(f"{origin}: image {path} cannot be decoded ({type(error).__name__}: {error}); "
                             "replace the file or remove its line") from None
        out[row] = np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)
    return out


def decode_images(paths, image_size: int, *, origins=None, workers: int | None = None) -> np.ndarray:
    """uint8 (n, 3, image_size, image_size): every image of ``paths`` as RGB, resized as ImageFileSplit does,
    decoded by a pool of ``workers`` processes (default: every core); ``origins`` (one text per image, e.g.
    "<list file>, line 12") name where a broken file was listed."""
    paths = [str(p) for p in paths]
    origins = [f"image {i}" for i in range(len(paths))] if origins is None else list(origins)
    tasks = [(paths[i:i + CHUNK], origins[i:i + CHUNK], image_size) for i in range(0, len(paths), CHUNK)]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(tasks) <= 1:
        chunks = [_decode_chunk(task) for task in tasks]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            chunks = list(pool.map(_decode_chunk, tasks))
    return np.concatenate(chunks) if chunks else np.empty((0, 3, image_size, image_size), dtype=np.uint8)


def cached_split(split: ImageFileSplit, *, cache_dir: str | os.PathLike | None = None, name: str = "split",
                 workers: int | None = None) -> ImageFileSplit | InMemorySplit:
    """``split`` as an :class:`InMemorySplit` over its decoded cache in ``cache_dir`` (default
    :func:`default_cache_dir`), built first when no cache of the same key exists. A split with a custom
    transform is returned as it is (not cacheable as uint8)."""
    if split.image_size is None:
        return split
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / f"{name}-{len(split)}x{split.image_size}-{cache_key(split.paths, split.image_size)}.npy"
    if not path.is_file():
        images = decode_images(split.paths, split.image_size, origins=split.origins, workers=workers)
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(handle, "wb") as file:
                np.save(file, images)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    images = np.load(path, mmap_mode="r")
    return InMemorySplit(images, split.labels.numpy(), texts=None if split.texts is None else split.texts.numpy(),
                         source_indices=split.source_indices.numpy())
