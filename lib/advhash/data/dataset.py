"""Retrieval datasets: a split of (image, multi-hot label, index) items, and the three splits of a dataset.

Conventions every loader in ``advhash.data`` follows:

- ``split[i]`` is ``(image, label, index)``: image float32 (C, H, W) in [0, 1], label float32 multi-hot (L,)
  (one-hot for single-label data), index = ``i`` (hashing losses keep a per-item code table indexed by it).
- ``split.labels`` float32 (n, L); ``split.texts`` float32 (n, T) binary tags or None; ``split.image_shape``;
  ``split.source_indices`` int64 (n,) each item's row in the stored pool (or line in the list file).
- Two items are relevant when their label vectors share a label (one-hot: the same class).
- Items whose label vector is all zero are KEPT: they have no relevant item and no positive pair (FLICKR-25K has
  some, ``docs/methods.md``, Data sets); ``summary()`` reports their share.

:class:`InMemorySplit` holds a uint8 (n, C, H, W) tensor and has a fast ``batch(indices)``;
:class:`ImageFileSplit` reads image files through a torchvision transform (photos resized to ``image_size``).
Every image file is decoded by :func:`read_rgb` (:func:`to_rgb`): 8-bit RGB as an image viewer shows it on a white
page, whatever the file's mode, or an error naming the file and where it was listed. An EXIF orientation is not
applied (the stored pixels, as in the published code); a warning names the first file that carries one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import transforms


def check_binary_labels(labels, *, where: str, name: str = "labels") -> np.ndarray:
    """Check that ``labels`` is a 2-D 0/1 matrix and return it as uint8; ``where`` names the source."""
    array = np.asarray(labels)
    if array.ndim != 2:
        raise ValueError(f"{name} from {where} must be a 2-D (items, {name}) matrix, got shape {array.shape}")
    if array.size and not np.isin(array, (0, 1)).all():
        rows = np.flatnonzero(~np.isin(array, (0, 1)).all(axis=1))
        raise ValueError(f"{name} from {where} must be binary (0/1 multi-hot); found values "
                         f"{np.unique(array[rows[0]]).tolist()} in row {rows[0]} (0-based) and "
                         f"{len(rows)} such rows; binarize them (e.g. labels > 0) before loading")
    return array.astype(np.uint8)


def _as_float_tensor(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=torch.float32)


class HashingSplit(torch.utils.data.Dataset):
    """One split (train, query or database) of a retrieval dataset; see the module docstring."""

    image_shape: tuple[int, int, int] | None = None     # (C, H, W); None for a split without images

    def __init__(self, labels, *, texts=None, source_indices=None):
        labels = labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels
        self.labels = _as_float_tensor(check_binary_labels(labels, where=f"a {type(self).__name__}"))   # (n, L)
        self.texts = None if texts is None else _as_float_tensor(texts)          # (n, T)
        n = len(self.labels)
        if self.texts is not None and len(self.texts) != n:
            raise ValueError(f"texts hold {len(self.texts)} items but labels {n}; they must align")
        self.source_indices = (torch.arange(n) if source_indices is None
                               else torch.as_tensor(np.asarray(source_indices), dtype=torch.int64))
        if len(self.source_indices) != n:
            raise ValueError(f"source_indices hold {len(self.source_indices)} items but labels {n}")

    def __len__(self) -> int:
        return len(self.labels)

    def load_image(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a split of {len(self)} items")
        i %= len(self)
        return self.load_image(i), self.labels[i], i

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(images (b, C, H, W) float in [0, 1], labels (b, L), indices (b,))`` for item positions."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        images = torch.stack([self.load_image(int(i)) for i in indices])
        return images, self.labels[indices], indices

    def __repr__(self) -> str:
        text = f", text_dim={self.texts.shape[1]}" if self.texts is not None else ""
        return (f"{type(self).__name__}(n={len(self)}, num_classes={self.labels.shape[1]}, "
                f"image_shape={self.image_shape}{text})")


class InMemorySplit(HashingSplit):
    """A split held in memory: ``images`` uint8 (n, C, H, W), divided by 255 when read.

    ``images=None`` makes a labels-and-texts-only split (for statistics); reading an image then raises
    an error carrying ``missing_images_reason``.
    """

    def __init__(self, images, labels, *, texts=None, source_indices=None, missing_images_reason: str = ""):
        super().__init__(labels, texts=texts, source_indices=source_indices)
        if images is not None:
            array = np.asarray(images)
            with warnings.catch_warnings():    # a read-only memory map (a decoded cache): only ever read here
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                images = torch.as_tensor(array)
            if images.dtype != torch.uint8 or images.ndim != 4:
                raise ValueError(f"images must be uint8 (n, C, H, W), got {images.dtype} {tuple(images.shape)}")
            if len(images) != len(self.labels):
                raise ValueError(f"images hold {len(images)} items but labels {len(self.labels)}")
            self.image_shape = tuple(images.shape[1:])
        self.images = images
        self.missing_images_reason = missing_images_reason

    def _require_images(self) -> torch.Tensor:
        if self.images is None:
            raise RuntimeError("this split holds labels and texts only, no images. "
                               + (self.missing_images_reason or "Load the dataset with its images."))
        return self.images

    def load_image(self, i: int) -> torch.Tensor:
        return self._require_images()[i].float().div_(255)

    def batch(self, indices, device: torch.device | str | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images (on ``device``: from a copy held on that GPU when it fits, else from pinned host memory),
        labels and indices of the items ``indices``; the same numbers on every device."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        images = self._require_images()
        if device is not None and torch.device(device).type == "cuda":
            resident = self._resident(torch.device(device))
            if resident is not None:
                return resident[indices.to(resident.device)].float().div_(255), self.labels[indices], indices
            chunk = images[indices].pin_memory().to(device, non_blocking=True)
            return chunk.float().div_(255), self.labels[indices], indices
        return images[indices].float().div_(255), self.labels[indices], indices

    def _resident(self, device: torch.device) -> torch.Tensor | None:
        """The images held on ``device`` (copied once), or None when they do not fit in half its free memory
        (then batches stream from pinned host memory; said once)."""
        cache = self.__dict__.setdefault("_on_device", {})
        if str(device) not in cache:
            size, free = self.images.numel(), torch.cuda.mem_get_info(device)[0]
            if size <= free // 2:
                cache[str(device)] = self.images.to(device)
            else:
                print(f"{size / 2**30:.1f} GiB of images do not fit in half of {device}'s free "
                      f"{free / 2**30:.1f} GiB: batches stream from pinned host memory")
                cache[str(device)] = None
        return cache[str(device)]


def default_transform(image_size: int) -> Callable:
    """Resize to (image_size, image_size) and convert to a float tensor in [0, 1] (no normalization:
    models normalize inside, so that attacks work in [0, 1] pixel space)."""
    return transforms.Compose([transforms.Resize((image_size, image_size)), transforms.ToTensor()])


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")         # 16-bit greyscale (PNG, TIFF)
READ_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV") + SIXTEEN_BIT_MODES
REFUSED_MODES = {"I": "32-bit integer greyscale: no fixed white level", "F": "floating-point greyscale: no fixed "
                 "white level", "La": "premultiplied grey and alpha", "LAB": "CIELAB colour"}


def to_rgb(image: Image.Image, *, where: str) -> Image.Image:
    """``image`` as 8-bit RGB, the pixels an image viewer shows for it on a white page.

    - greyscale (``1``, ``L``; PIL reads 2- and 4-bit PNGs as ``L``): the grey level in all three channels;
    - 16-bit greyscale (``I;16``, as PIL opens a 16-bit PNG or TIFF): the high byte, ``value >> 8``, the reduction
      PIL itself applies to 16-bit RGB, RGBA and grey-and-alpha PNGs (PIL's ``convert("RGB")`` of ``I;16``
      clips every value above 255 to white instead); a transparent grey level is white;
    - palette (``P``), CMYK (an Adobe JPEG's inverted CMYK is un-inverted by PIL on reading), YCbCr, HSV: PIL's
      conversion;
    - transparency (an alpha channel, ``LA``, ``PA``, ``RGBA``, or a transparent palette entry or colour): composited
      on white, ``round((c * a + 255 * (255 - a)) / 255)`` per channel, as a viewer draws it on a white page
      (dropping the alpha would show whatever colour the transparent pixels hide);
    - any other mode (``REFUSED_MODES``: 32-bit integer ``I`` and float ``F`` images, whose white level is not
      fixed, ``LAB``, ...): a ``ValueError`` naming ``where`` (the file and its list-file line) and the fix.

    EXIF orientation is not applied, as in the published hashing code (PIL's ``open`` + ``convert``): the pixels are
    the stored ones, not the turned view a viewer shows; loaders warn when a file carries such a tag
    (:func:`warn_stored_orientation`).
    """
    if image.mode not in READ_MODES:
        kind = REFUSED_MODES.get(image.mode, "a mode this loader does not read")
        raise ValueError(f"{where} has PIL mode {image.mode!r} ({kind}); save it as an 8- or 16-bit PNG (greyscale, "
                         f"RGB or palette, with or without transparency) or a JPEG, or remove its line")
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.uint16)                                    # (H, W)
        grey = (values >> 8).astype(np.uint8)
        if "transparency" in image.info:                                                # a transparent grey level
            grey[values == image.info["transparency"]] = 255
        return Image.fromarray(grey).convert("RGB")
    if not image.has_transparency_data:
        return image.convert("RGB")
    rgba = np.asarray(image.convert("RGBA"), dtype=np.uint32)                         # (H, W, 4)
    alpha = rgba[..., 3:]
    on_white = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255            # rounded to the nearest
    return Image.fromarray(on_white.astype(np.uint8))


def _undecodable(where: str, error: BaseException) -> ValueError:
    return ValueError(f"{where} cannot be decoded ({type(error).__name__}: {error}); replace the file or "
                      f"remove its line")


def open_rgb(file, *, where: str) -> tuple[Image.Image, int]:
    """The image in ``file`` (a path, or a binary file object holding its bytes) as 8-bit RGB (:func:`to_rgb`),
    with the file's EXIF orientation (:func:`orientation_of`, not applied); ``where`` names it in errors (e.g.
    "<list file>, line 12: image <path>"). The one decoding of :class:`ImageFileSplit` and of the decoded image
    cache, so both give the same bytes."""
    try:
        image = Image.open(file)
    except (OSError, SyntaxError, ValueError) as error:
        raise _undecodable(where, error) from None
    with image:
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as error:
            raise _undecodable(where, error) from None
        return to_rgb(image, where=where), orientation_of(image)


def read_rgb(file, *, where: str) -> Image.Image:
    """The image in ``file`` as 8-bit RGB: :func:`open_rgb` without the orientation."""
    return open_rgb(file, where=where)[0]


EXIF_ORIENTATION = 0x0112       # the EXIF tag: 1 upright, 2..8 mirrored and/or turned by a viewer for display


def orientation_of(image: Image.Image) -> int:
    """The EXIF orientation of an opened ``image`` (1, upright, when it has none or an unreadable one)."""
    try:
        return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except (OSError, SyntaxError, ValueError, TypeError):
        return 1


def file_orientation(file) -> int:
    """The EXIF orientation of the image in ``file`` (a path or binary file object), from its header alone; 1 when
    it has none or the file cannot be opened (a broken file is named when it is decoded)."""
    try:
        with Image.open(file) as image:
            return orientation_of(image)
    except (OSError, SyntaxError, ValueError):
        return 1


def warn_stored_orientation(where: str, orientation: int, count: int | None, *, stacklevel: int = 2) -> None:
    """Warn that images carry an EXIF orientation other than 1: ``where`` names the first (its file and list-file
    line), ``count`` how many there are (None: unknown, the split is read on demand). Their pixels are read as
    stored, as the published hashing code reads them (fidelity), not turned as a viewer shows them."""
    many = ("at least one image carries" if count is None else "1 image carries" if count == 1 else
            f"{count} images carry")
    warnings.warn(f"{many} an EXIF orientation other than 1 (upright), the first {where} (orientation "
                  f"{orientation}): the pixels used are the stored ones, not the turned view an image viewer shows "
                  f"(as the published hashing code reads them). To use the upright view, save the images turned "
                  f"(PIL.ImageOps.exif_transpose) and load them again", UserWarning, stacklevel=stacklevel + 1)


class ImageFileSplit(HashingSplit):
    """A split of image files read on demand (8-bit RGB, :func:`read_rgb`), through ``transform`` (default:
    resize + ToTensor).

    ``origins``: where each image was listed (e.g. "<list file>, line 12"), named by the error when a file cannot
    be decoded. ``image_size`` is None with a custom transform. ``advhash.data.cache.cached_split`` decodes the
    split once into an :class:`InMemorySplit` of the same bytes."""

    def __init__(self, paths: Sequence[str | Path], labels, *, texts=None, source_indices=None,
                 image_size: int = 224, transform: Callable | None = None, origins: Sequence[str] | None = None):
        super().__init__(labels, texts=texts, source_indices=source_indices)
        self.paths = [Path(p) for p in paths]
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} image paths but {len(self.labels)} label rows; they must align")
        self.origins = list(origins) if origins is not None else [f"item {i}" for i in range(len(self.paths))]
        self.transform = transform or default_transform(image_size)
        self.image_size = image_size if transform is None else None
        self._image_shape = (3, image_size, image_size) if transform is None else None

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(C, H, W); with a custom transform, the shape of the first image once transformed."""
        if self._image_shape is None and len(self.paths):
            self._image_shape = tuple(self.load_image(0).shape)
        return self._image_shape

    def load_image(self, i: int) -> torch.Tensor:
        """Image ``i`` read and transformed; the first one met with an EXIF orientation is warned about, once."""
        where = f"{self.origins[i]}: image {self.paths[i]}"
        rgb, orientation = open_rgb(self.paths[i], where=where)
        if orientation != 1 and not self.__dict__.get("_orientation_warned"):
            self._orientation_warned = True
            warn_stored_orientation(where, orientation, None, stacklevel=3)
        return self.transform(rgb)


@dataclass
class HashingData:
    """A retrieval dataset: ``train``, ``query`` and ``database`` splits sharing one label space.

    The literature's protocol: query and database are disjoint and train is a subset of the
    database. ``num_classes`` is the label width, ``text_dim`` the tag vocabulary size (or None).
    """

    name: str
    train: HashingSplit
    query: HashingSplit
    database: HashingSplit
    class_names: list[str]
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        widths = {name: split.labels.shape[1] for name, split in self.splits.items()}
        if len(set(widths.values())) != 1:
            raise ValueError(f"{self.name}: label widths disagree between splits {widths}; "
                             f"every split must use the same label vocabulary")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} labels")
        text_widths = {name: None if s.texts is None else s.texts.shape[1] for name, s in self.splits.items()}
        if len(set(text_widths.values())) != 1:
            raise ValueError(f"{self.name}: text widths disagree between splits {text_widths}")

    @property
    def splits(self) -> dict[str, HashingSplit]:
        return {"train": self.train, "query": self.query, "database": self.database}

    @property
    def num_classes(self) -> int:
        return int(self.train.labels.shape[1])

    @property
    def text_dim(self) -> int | None:
        return None if self.train.texts is None else int(self.train.texts.shape[1])

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        return self.database.image_shape

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per split: items, mean labels per item, % items with an all-zero label, mean tags per item."""
        table = {}
        for name, split in self.splits.items():
            counts = split.labels.sum(1)
            table[name] = dict(
                items=len(split),
                labels_per_item=round(float(counts.mean()), 3) if len(split) else 0.0,
                zero_label_percent=round(100 * float((counts == 0).float().mean()), 2) if len(split) else 0.0,
                tags_per_item=(None if split.texts is None or not len(split)
                               else round(float(split.texts.sum(1).mean()), 3)),
            )
        return table

    def __repr__(self) -> str:
        rows = "\n".join(f"  {name:<9}{row}" for name, row in self.summary().items())
        return (f"HashingData({self.name!r}, num_classes={self.num_classes}, text_dim={self.text_dim}, "
                f"image_shape={self.image_shape})\n{rows}")
