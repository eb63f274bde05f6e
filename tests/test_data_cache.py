"""The decoded image cache (advhash.data.cache): the PIL path's bytes, decoded once in parallel, keyed by what
determines them, never reused for other inputs, and errors that name the broken file and its list line."""

import os

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

import advhash.data.cache as cache
from advhash.data import load_listfile_dataset
from advhash.data.cache import cache_key, cached_split, decode_images
from advhash.data.dataset import ImageFileSplit, InMemorySplit


def photo_dataset(root, count=10, *, size=(50, 37)):
    """A list-file dataset of random-noise JPEGs (landscape, like 500x375 photos at a tenth), two classes."""
    base = root / "PHOTOS"
    (base / "images").mkdir(parents=True)
    g = np.random.default_rng(0)
    for i in range(count):
        pixels = g.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(base / "images" / f"{i}.jpg", quality=85)
    thirds = {"train": range(0, 4), "test": range(4, 6), "database": range(0, 4)}
    for stem, items in thirds.items():
        (base / f"{stem}_img.txt").write_text("".join(f"images/{i}.jpg\n" for i in items))
        (base / f"{stem}_label.txt").write_text("".join(f"{i % 2} {1 - i % 2}\n" for i in items))
    return base


def test_the_cache_gives_bit_identical_images_to_the_pil_path(tmp_path):
    photo_dataset(tmp_path)
    plain = load_listfile_dataset(tmp_path, folder="PHOTOS", image_size=24, cache=False)
    cached = load_listfile_dataset(tmp_path, folder="PHOTOS", image_size=24, cache_dir=tmp_path / "cache")
    assert isinstance(plain.train, ImageFileSplit) and isinstance(cached.train, InMemorySplit)
    for name in ("train", "query", "database"):
        a, b = plain.splits[name], cached.splits[name]
        order = torch.arange(len(a))
        assert torch.equal(a.batch(order)[0], b.batch(order)[0]), f"{name}: the cache changed the pixels"
        assert torch.equal(a.labels, b.labels) and torch.equal(a.source_indices, b.source_indices)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3, "one cache file per split"


def test_a_parallel_build_equals_a_sequential_one(tmp_path):
    base = photo_dataset(tmp_path, count=9)
    paths = sorted((base / "images").glob("*.jpg"))
    one = decode_images(paths, 16, workers=1)
    many = decode_images(paths * 20, 16, workers=2)                      # several chunks, two processes
    assert one.shape == (9, 3, 16, 16) and one.dtype == np.uint8
    np.testing.assert_array_equal(many[:9], one)
    np.testing.assert_array_equal(many[-9:], one)


def test_a_cache_is_reused_only_for_the_same_files_and_size(tmp_path, monkeypatch):
    base = photo_dataset(tmp_path)
    split = load_listfile_dataset(tmp_path, folder="PHOTOS", image_size=24, cache=False).train
    first = cached_split(split, cache_dir=tmp_path / "c")
    built = []
    original = cache.decode_images
    monkeypatch.setattr(cache, "decode_images", lambda *a, **k: built.append(1) or original(*a, **k))
    again = cached_split(split, cache_dir=tmp_path / "c")
    assert not built and torch.equal(again.images, first.images), "same inputs: the cache is read, not rebuilt"
    other_size = load_listfile_dataset(tmp_path, folder="PHOTOS", image_size=20, cache=False).train
    assert cached_split(other_size, cache_dir=tmp_path / "c").images.shape[-1] == 20 and len(built) == 1
    key = cache_key(split.paths, 24)
    replaced = base / "images" / "1.jpg"                                   # another photo at the same path
    Image.fromarray(np.full((37, 50, 3), 200, dtype=np.uint8)).save(replaced)
    os.utime(replaced, ns=(1, 1_000_000_000))
    assert cache_key(split.paths, 24) != key
    fresh = cached_split(split, cache_dir=tmp_path / "c")
    assert len(built) == 2 and not torch.equal(fresh.images[1], first.images[1]), "a replaced file is decoded anew"
    assert torch.equal(fresh.images[0], first.images[0])


def test_a_custom_transform_is_not_cached_and_an_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    photo_dataset(tmp_path)
    custom = load_listfile_dataset(tmp_path, folder="PHOTOS", cache_dir=tmp_path / "c",
                                   transform=transforms.Compose([transforms.Resize((8, 6)), transforms.ToTensor()]))
    assert isinstance(custom.train, ImageFileSplit) and not (tmp_path / "c").exists()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_listfile_dataset(tmp_path, folder="PHOTOS", image_size=24, cache_dir=tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == [], "no cache file and no temporary file"


@pytest.mark.parametrize("cached", [True, False])
def test_a_truncated_jpeg_is_named_with_its_list_file_line(tmp_path, cached):
    base = photo_dataset(tmp_path)
    broken = base / "images" / "5.jpg"
    broken.write_bytes(broken.read_bytes()[:200])
    match = r"test_img.txt, line 2: image .*5.jpg cannot be decoded .*replace the file or remove its line"
    with pytest.raises(ValueError, match=match):
        data = load_listfile_dataset(tmp_path, folder="PHOTOS", image_size=24, cache=cached,
                                     cache_dir=tmp_path / "c")
        data.query[1]
