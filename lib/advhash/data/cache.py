"""The decoded image cache: an image-file split decoded once, at its input size, into a uint8 array on disk.

Real photos cost a JPEG decode and a resize per item, every epoch and every ``encode()``. The cache decodes each
split once, in parallel (a process pool), through exactly the path of :class:`~advhash.data.dataset.ImageFileSplit`
(:func:`~advhash.data.dataset.read_rgb`, then torchvision's ``Resize`` to (size, size)) into a uint8
(n, 3, size, size) ``.npy`` file; the cached split is a memory-mapped :class:`~advhash.data.dataset.InMemorySplit`.
Its images, uint8 / 255, are bit for bit those of the PIL path, so results do not depend on the cache.

A cache is found by a key that hashes everything that determines its bytes: the format version, the input size,
the content of every image (a BLAKE2b digest of its bytes) in the split's order, and the decoder
(:func:`decoder_fingerprint`: the PIL, JPEG library and torchvision versions, the resize and the source of the
decoding functions), so a file replaced by another, whatever its size and modification time, or a library
upgrade that decodes differently, gives another cache; the same files moved to another folder reuse it.
Every load reads and hashes each image file once, in a process pool (a dataset's splits together:
:func:`cached_splits`); on a miss each file is read once more, hashed and decoded from those same bytes, and the
cache is named after them. Reuse is decided by content alone, never by a file's stat.

The cache folder holds only the cache's own files. Before the first image is decoded the folder is created, a
temporary file opened in it and the room checked and reserved, so a read-only folder or a full disk is an error
at once, naming the folder, the size needed and the fixes (``ADVHASH_CACHE``, ``cache=False``); the images are
decoded chunk by chunk straight into that file (memory-mapped) and it is moved into place, so an interrupted or
failed build leaves nothing behind. A damaged cache file (truncated, another shape) is deleted and rebuilt, with a
warning naming it. EXIF orientations are not applied (:func:`~advhash.data.dataset.to_rgb`); a load warns once,
naming the first file that carries one and how many do.

    split = cached_split(image_file_split, cache_dir="~/.cache/advhash/images")      # InMemorySplit
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import inspect
import io
import os
import shutil
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import PIL
import PIL.features
import torchvision

from . import dataset
from .dataset import ImageFileSplit, InMemorySplit, default_transform, read_rgb
from .storage import human_size

__all__ = ["CACHE_VERSION", "default_cache_dir", "file_digests", "scan_files", "decoder_fingerprint", "cache_key",
           "decode_images", "cached_split", "cached_splits"]

CACHE_VERSION = 3   # 3: the decoder (library versions, decoding source) in the key
CHUNK = 64          # images a worker hashes or decodes per task


def default_cache_dir() -> Path:
    """``$ADVHASH_CACHE``, else ``$XDG_CACHE_HOME/advhash/images`` (``~/.cache/advhash/images``): outside the
    project, so the DVC-tracked ``data/`` stays untouched; the keys make it safe to share between projects."""
    if os.environ.get("ADVHASH_CACHE"):
        return Path(os.environ["ADVHASH_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "advhash" / "images"


def _read(path: str, origin: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise OSError(error.errno, f"{origin}: image {path} cannot be read ({error.strerror or error}); fix the "
                                   f"line or restore the file") from None


def _digest(data: bytes) -> str:
    """The content digest of one file's bytes (BLAKE2b, 128 bits)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _hash_file(path: str, origin: str) -> tuple[str, int]:
    """One file's content digest and EXIF orientation (from the same bytes, read once)."""
    data = _read(path, origin)
    return _digest(data), dataset.file_orientation(io.BytesIO(data))


def _hash_chunk(task: tuple[list[str], list[str]]) -> list[tuple[str, int]]:
    """(digest, EXIF orientation) of each file of one chunk (a worker's task); an unreadable file is named with its
    origin."""
    return [_hash_file(path, origin) for path, origin in zip(*task)]


def _decode_chunk(task: tuple[list[str], list[str], int]) -> tuple[np.ndarray, list[str]]:
    """Decode one chunk of images (a worker's task) as ImageFileSplit does, each from the bytes it hashes: the
    pixels (k, 3, size, size) and the digests of the bytes they came from."""
    paths, origins, image_size = task
    resize = default_transform(image_size).transforms[0]            # the same torchvision Resize
    out = np.empty((len(paths), 3, image_size, image_size), dtype=np.uint8)
    digests = []
    for row, (path, origin) in enumerate(zip(paths, origins)):
        data = _read(path, origin)
        digests.append(_digest(data))
        rgb = read_rgb(io.BytesIO(data), where=f"{origin}: image {path}")
        out[row] = np.asarray(resize(rgb), dtype=np.uint8).transpose(2, 0, 1)
    return out, digests


@contextlib.contextmanager
def _pool(workers: int | None, tasks: int):
    """A lazy, ordered ``map`` over ``tasks`` tasks: in this process for one worker or one task, else in a process
    pool that every pass of a load shares (consume its results inside the ``with``)."""
    workers = min(workers or os.cpu_count() or 1, tasks)
    if workers <= 1:
        yield lambda function, items: (function(item) for item in items)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield pool.map


def _chunks(paths: list[str], origins) -> list[tuple[list[str], list[str]]]:
    """The tasks of a pass: (paths, origins) of ``CHUNK`` files each; an origin defaults to "image <i>"."""
    origins = [f"image {i}" for i in range(len(paths))] if origins is None else [str(o) for o in origins]
    return [(paths[i:i + CHUNK], origins[i:i + CHUNK]) for i in range(0, len(paths), CHUNK)]


def _scan(run, tasks) -> tuple[list[str], list[int]]:
    facts = [fact for chunk in run(_hash_chunk, tasks) for fact in chunk]
    return [digest for digest, _ in facts], [orientation for _, orientation in facts]


def scan_files(paths, *, origins=None, workers: int | None = None) -> tuple[list[str], list[int]]:
    """The BLAKE2b digest (hex) and the EXIF orientation (1 when none) of each file, in order, each file read once
    by a pool of ``workers`` processes (default: every core); ``origins`` name where an unreadable file was listed."""
    paths = [str(p) for p in paths]
    tasks = _chunks(paths, origins)
    with _pool(workers, len(tasks)) as run:
        return _scan(run, tasks)


def file_digests(paths, *, origins=None, workers: int | None = None) -> list[str]:
    """The BLAKE2b digest (hex) of each file's bytes, in order (:func:`scan_files`)."""
    return scan_files(paths, origins=origins, workers=workers)[0]


def _warn_rotated(wheres: list[str], orientations: list[int]) -> None:
    """One warning for a load: the first image with an EXIF orientation other than 1, and how many there are."""
    rotated = [i for i, orientation in enumerate(orientations) if orientation != 1]
    if rotated:
        dataset.warn_stored_orientation(wheres[rotated[0]], orientations[rotated[0]], len(rotated), stacklevel=4)


DECODING = (dataset.to_rgb, dataset.open_rgb, dataset.read_rgb, dataset.orientation_of, default_transform,
            _decode_chunk)   # the functions whose source determines the decoded bytes


def decoder_fingerprint(image_size: int) -> str:
    """What determines the decoded bytes besides the files: the PIL, JPEG library (libjpeg API and libjpeg-turbo)
    and torchvision versions, the resize (size, interpolation, antialias) and a hash of the decoding functions'
    source (``DECODING``), so that an upgrade or an edit of the decoding gives another key."""
    source = hashlib.sha1("".join(inspect.getsource(function) for function in DECODING).encode()).hexdigest()
    return (f"PIL {PIL.__version__}, jpeg {PIL.features.version('jpg')}, libjpeg-turbo "
            f"{PIL.features.version('libjpeg_turbo')}, torchvision {torchvision.__version__}, "
            f"{default_transform(image_size).transforms[0]!r}, decoding source {source}")


def _key(digests: list[str], image_size: int) -> str:
    digest = hashlib.sha1(f"advhash-decoded-v{CACHE_VERSION} size={image_size}\n"
                          f"{decoder_fingerprint(image_size)}\n".encode())
    for position, content in enumerate(digests):
        digest.update(f"{position}\t{content}\n".encode())
    return digest.hexdigest()[:20]


def cache_key(paths, image_size: int, *, workers: int | None = None) -> str:
    """The key of the cache of ``paths`` decoded at ``image_size``: a hash of the format version, the size, the
    decoder (:func:`decoder_fingerprint`) and every file's content digest in the order given (the same files in
    another order are another cache)."""
    return _key(file_digests(paths, workers=workers), image_size)


def decode_images(paths, image_size: int, *, origins=None, workers: int | None = None) -> np.ndarray:
    """uint8 (n, 3, image_size, image_size): every image of ``paths`` as RGB, resized as ImageFileSplit does,
    decoded by a pool of ``workers`` processes (default: every core); ``origins`` (one text per image, e.g.
    "<list file>, line 12") name where a broken file was listed."""
    paths = [str(p) for p in paths]
    tasks = [task + (image_size,) for task in _chunks(paths, origins)]
    images = np.empty((len(paths), 3, image_size, image_size), dtype=np.uint8)
    with _pool(workers, len(tasks)) as run:
        for start, (pixels, _) in zip(range(0, len(paths), CHUNK), run(_decode_chunk, tasks)):
            images[start:start + len(pixels)] = pixels
    return images


def _cache_path(folder: Path, name: str, digests: list[str], image_size: int) -> Path:
    return folder / f"{name}-{len(digests)}x{image_size}-{_key(digests, image_size)}.npy"


def _read_cache(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cache file ``path`` memory-mapped, or None when there is none; a damaged one (unreadable, truncated,
    another shape or type) is deleted, with a warning naming it, to be rebuilt; one that cannot be deleted (a
    read-only folder) is an error naming it and the ways out."""
    if not path.is_file():
        return None
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
        problem = None if images.shape == shape and images.dtype == np.uint8 else \
            f"holds {images.dtype} {images.shape} instead of uint8 {shape}"
    except (OSError, ValueError, EOFError) as error:                  # "mmap length is greater than file size"
        problem = f"cannot be read ({error})"
    if problem is None:
        return images
    try:
        path.unlink(missing_ok=True)
    except PermissionError as error:
        raise PermissionError(error.errno, f"damaged cache file {path} ({problem}) in read-only folder {path.parent}: "
                                           f"delete it, or set ADVHASH_CACHE to a writable folder, or load the "
                                           f"dataset with cache=False") from None
    warnings.warn(f"the decoded image cache file {path} {problem}: it is damaged (an interrupted copy, a full "
                  f"disk?); deleted it, decoding the images again", stacklevel=4)
    return None


def _write_error(folder: Path, needed: int, error: OSError) -> OSError:
    free = ""
    with contextlib.suppress(OSError):
        free = f", {human_size(shutil.disk_usage(folder).free)} free there"
    return OSError(error.errno, f"cannot write the decoded image cache to {folder} ({error.strerror or error}): it "
                                f"needs {human_size(needed)}{free}. Fix: set ADVHASH_CACHE to a writable folder "
                                f"with room, or load the dataset with cache=False (load_dataset(..., cache=False): "
                                f"the image files are then read at every access)")


def _open_cache_file(folder: Path, name: str, shape: tuple[int, ...]) -> tuple[str, np.memmap]:
    """A temporary ``.npy`` of ``shape`` uint8 in ``folder``, created with its room checked and reserved (so a full
    disk is this error, not a crash while the decoded pixels are written), memory-mapped for writing."""
    needed, temporary = int(np.prod(shape)), None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{name}-", suffix=".npy.tmp", dir=folder)
        os.close(handle)
        if shutil.disk_usage(folder).free < needed:
            raise OSError(errno.ENOSPC, "not enough free space")
        pixels = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
        if hasattr(os, "posix_fallocate"):
            with open(temporary, "r+b") as file:
                try:
                    os.posix_fallocate(file.fileno(), 0, os.path.getsize(temporary))
                except OSError as error:                     # a file system without it: the free-space check stands
                    if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
        return temporary, pixels
    except OSError as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise _write_error(folder, needed, error) from error


def _build(run, tasks, folder: Path, name: str, shape: tuple[int, ...]) -> Path:
    """Decode every chunk straight into a temporary cache file opened before the first decode, then move it to the
    name of the bytes decoded (a file changed since the hash pass is named as read). Returns its path."""
    temporary, pixels = _open_cache_file(folder, name, shape)
    try:
        read = []
        for start, (chunk, digests) in zip(range(0, shape[0], CHUNK), run(_decode_chunk, tasks)):
            pixels[start:start + len(chunk)] = chunk
            read += digests
        path = _cache_path(folder, name, read, shape[-1])
        try:
            pixels.flush()
            del pixels
            os.replace(temporary, path)
        except OSError as error:
            raise _write_error(folder, int(np.prod(shape)), error) from error
        return path
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _cached(run, split: ImageFileSplit, folder: Path, name: str, digests: list[str]) -> InMemorySplit:
    size, paths = split.image_size, [str(p) for p in split.paths]
    shape = (len(paths), 3, size, size)
    images = _read_cache(_cache_path(folder, name, digests, size), shape)
    if images is None:
        tasks = [task + (size,) for task in _chunks(paths, split.origins)]
        images = np.load(_build(run, tasks, folder, name, shape), mmap_mode="r", allow_pickle=False)
    return InMemorySplit(images, split.labels.numpy(), texts=None if split.texts is None else split.texts.numpy(),
                         source_indices=split.source_indices.numpy())


def _folder(cache_dir) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def cached_split(split: ImageFileSplit, *, cache_dir: str | os.PathLike | None = None, name: str = "split",
                 workers: int | None = None) -> ImageFileSplit | InMemorySplit:
    """``split`` as an :class:`InMemorySplit` over its decoded cache in ``cache_dir`` (default
    :func:`default_cache_dir`), built first when no cache of the same content, size and decoder exists. A split
    with a custom transform is returned as it is (not cacheable as uint8). Several splits sharing files:
    :func:`cached_splits` (each file read once)."""
    return cached_splits({name: split}, cache_dir=cache_dir, workers=workers)[name]


def cached_splits(splits: dict[str, ImageFileSplit], *, cache_dir: str | os.PathLike | None = None,
                  workers: int | None = None) -> dict[str, ImageFileSplit | InMemorySplit]:
    """Every split of ``{cache name: split}`` through :func:`cached_split`, in one pool, each distinct file read
    and hashed once for all of them (a training split is usually a subset of the database), and one warning for
    the images with an EXIF orientation (the first, by its list-file line, and how many)."""
    cacheable = {name: split for name, split in splits.items() if split.image_size is not None}
    origins: dict[str, str] = {}                                     # each distinct file, where it was first listed
    for split in cacheable.values():
        for path, origin in zip(map(str, split.paths), split.origins):
            origins.setdefault(path, origin)
    tasks = _chunks(list(origins), list(origins.values()))
    folder, cached = _folder(cache_dir), dict(splits)
    with _pool(workers, len(tasks)) as run:
        digests, orientations = _scan(run, tasks)
        _warn_rotated([f"{origin}: image {path}" for path, origin in origins.items()], orientations)
        content = dict(zip(origins, digests))
        for name, split in cacheable.items():
            cached[name] = _cached(run, split, folder, name, [content[str(path)] for path in split.paths])
    return cached
