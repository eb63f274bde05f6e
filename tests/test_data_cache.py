"""The decoded image cache (advhash.data.cache): the PIL path's bytes, decoded once in parallel, keyed by the files'
content and order, the size and the decoder, never reused for other inputs (a file replaced behind an unchanged size
and time included), each file read once a load, a damaged cache file rebuilt, and errors that name the broken file
and its list line, or the cache folder, the size needed and the fixes, before any decoding."""

import errno
import inspect
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import PIL
import PIL.features
import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms

import advhash.data.cache as cache
from advhash.data import load_listfile_dataset
from advhash.data.cache import cache_key, cached_split, decode_images
from advhash.data.dataset import ImageFileSplit, InMemorySplit, to_rgb


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


def bitmap_split(root, count=6, *, size=(20, 15)):
    """An image-file split of random-noise BMPs: every file has the same byte size, so one can be replaced by
    another of the same size."""
    (root / "images").mkdir(parents=True)
    g = np.random.default_rng(1)
    paths = []
    for i in range(count):
        paths.append(root / "images" / f"{i}.bmp")
        Image.fromarray(g.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(paths[-1])
    return ImageFileSplit(paths, np.eye(2)[[i % 2 for i in range(count)]], image_size=12,
                          origins=[f"list.txt, line {i + 1}" for i in range(count)])


def pixels(split):
    return split.batch(torch.arange(len(split)))[0]


def test_a_cache_is_reused_only_for_the_same_content_and_size(tmp_path):
    split = bitmap_split(tmp_path)
    first = cached_split(split, cache_dir=tmp_path / "c")
    [built] = (tmp_path / "c").iterdir()
    stamp = built.stat().st_ino, built.stat().st_mtime_ns
    os.utime(split.paths[2], ns=(5, 5))                                    # touched, the same bytes
    again = cached_split(split, cache_dir=tmp_path / "c")
    assert torch.equal(again.images, first.images)
    assert [p.name for p in (tmp_path / "c").iterdir()] == [built.name], "the same content: the same cache"
    assert (built.stat().st_ino, built.stat().st_mtime_ns) == stamp, "read, not rebuilt"
    other_size = ImageFileSplit(split.paths, split.labels, image_size=10, origins=split.origins)
    assert cached_split(other_size, cache_dir=tmp_path / "c").images.shape[-1] == 10
    assert len(list((tmp_path / "c").iterdir())) == 2


def test_an_image_replaced_by_one_of_the_same_size_and_time_is_decoded_anew(tmp_path):
    split = bitmap_split(tmp_path)
    first = cached_split(split, cache_dir=tmp_path / "c")
    replaced = split.paths[1]
    before = replaced.stat()
    Image.fromarray(np.full((15, 20, 3), 200, dtype=np.uint8)).save(replaced)   # another picture, same file size
    os.utime(replaced, ns=(before.st_atime_ns, before.st_mtime_ns))             # its time restored
    assert (replaced.stat().st_size, replaced.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    fresh = cached_split(split, cache_dir=tmp_path / "c")
    assert torch.equal(pixels(fresh), pixels(split)), "the cache serves the file's new pixels"
    assert not torch.equal(fresh.images[1], first.images[1]) and torch.equal(fresh.images[0], first.images[0])


def test_an_image_replaced_during_a_build_names_the_cache_after_what_was_decoded(tmp_path, monkeypatch):
    split = bitmap_split(tmp_path)
    decode = cache._decode_chunk

    def replaced_between_the_passes(task):                              # after hashing, before decoding
        Image.fromarray(np.full((15, 20, 3), 9, dtype=np.uint8)).save(split.paths[3])
        return decode(task)
    monkeypatch.setattr(cache, "_decode_chunk", replaced_between_the_passes)
    built = cached_split(split, cache_dir=tmp_path / "c")
    monkeypatch.setattr(cache, "_decode_chunk", decode)
    assert torch.equal(pixels(built), pixels(split))
    [cached] = (tmp_path / "c").iterdir()
    assert cache_key(split.paths, 12) in cached.name, "named after the bytes decoded, not those hashed before"


def test_the_file_order_is_part_of_the_key(tmp_path):
    split = bitmap_split(tmp_path)
    reordered = ImageFileSplit(split.paths[::-1], split.labels, image_size=12, origins=split.origins[::-1])
    assert cache_key(reordered.paths, 12) != cache_key(split.paths, 12)
    first, second = cached_split(split, cache_dir=tmp_path / "c"), cached_split(reordered, cache_dir=tmp_path / "c")
    assert torch.equal(pixels(second), pixels(reordered)) and torch.equal(pixels(second), pixels(first).flip(0))
    assert len(list((tmp_path / "c").iterdir())) == 2


@pytest.mark.parametrize("damage", ["truncated", "overwritten", "another shape", "another type"])
def test_a_damaged_cache_file_is_rebuilt_with_a_warning_naming_it(tmp_path, damage):
    split = bitmap_split(tmp_path)
    cached_split(split, cache_dir=tmp_path / "c")
    [built] = (tmp_path / "c").iterdir()
    whole = built.read_bytes()
    if damage.startswith("another"):                                     # a readable array, not this split's
        np.save(built, np.zeros((len(split) - (damage == "another shape"), 3, 12, 12),
                                np.uint8 if damage == "another shape" else np.float32))
    else:                                                                # a cut copy, a zeroed block
        built.write_bytes(whole[:len(whole) // 2] if damage == "truncated" else b"\0" * len(whole))
    with pytest.warns(UserWarning, match=rf"decoded image cache file {built} .*damaged.*decoding the images again"):
        rebuilt = cached_split(split, cache_dir=tmp_path / "c")
    assert torch.equal(pixels(rebuilt), pixels(split)) and built.read_bytes() == whole


def _read_only_folders_are_writable() -> bool:
    """Whether this process writes in a folder without write permission anyway (root, as in many containers)."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o555)
        try:
            (Path(folder) / "probe").touch()
            return True
        except PermissionError:
            return False
        finally:
            os.chmod(folder, 0o755)


AS_ROOT = _read_only_folders_are_writable()


@pytest.mark.parametrize("fault", [
    "too little room", "disk full when reserved", "folder is a file",
    pytest.param("read-only folder", marks=pytest.mark.skipif(AS_ROOT, reason="root may write in a read-only folder"))])
def test_a_cache_write_that_cannot_succeed_fails_before_any_image_is_decoded(tmp_path, monkeypatch, fault):
    split = bitmap_split(tmp_path, count=4)                   # 4 x 3 x 12 x 12 bytes = 1.7 KiB
    folder = tmp_path / "c"
    folder.mkdir()
    if fault == "too little room":
        monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))  # 1000 bytes free
    elif fault == "disk full when reserved":
        def disk_full(handle, offset, length):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(os, "posix_fallocate", disk_full, raising=False)
    elif fault == "folder is a file":
        (tmp_path / "taken").write_text("a file, not a folder")
        folder = tmp_path / "taken" / "c"                    # ADVHASH_CACHE=<a file>/c
    else:
        folder.chmod(0o555)
    decoded = []
    decode = cache._decode_chunk

    def counted(task):
        decoded.append(task)
        return decode(task)
    monkeypatch.setattr(cache, "_decode_chunk", counted)
    monkeypatch.setenv("ADVHASH_CACHE", str(folder))
    try:
        with pytest.raises(OSError, match=rf"cannot write the decoded image cache to {folder} .*it needs 1\.7 KiB"
                                          rf".*set ADVHASH_CACHE to a writable folder with room, or .*cache=False"):
            cached_split(split)
    finally:
        if fault == "read-only folder":
            folder.chmod(0o755)
    assert decoded == [], "refused before the (at paper scale, long) decoding, not after it"
    if folder.is_dir():
        assert list(folder.iterdir()) == [], "nothing half-written is left behind"


def test_a_build_in_a_process_pool_gives_the_pil_path_and_the_sequential_key(tmp_path, monkeypatch):
    split = bitmap_split(tmp_path, count=7)
    monkeypatch.setattr(cache, "CHUNK", 2)                            # four tasks: hashed, then decoded, by 2 workers
    pooled = cached_split(split, cache_dir=tmp_path / "c", workers=2)
    assert torch.equal(pixels(pooled), pixels(split))
    assert cache_key(split.paths, 12, workers=2) == cache_key(split.paths, 12, workers=1)
    [built] = (tmp_path / "c").iterdir()
    assert cache_key(split.paths, 12) in built.name


def test_a_custom_transform_is_not_cached_and_an_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    photo_dataset(tmp_path)
    custom = load_listfile_dataset(tmp_path, folder="PHOTOS", cache_dir=tmp_path / "c",
                                   transform=transforms.Compose([transforms.Resize((8, 6)), transforms.ToTensor()]))
    assert isinstance(custom.train, ImageFileSplit) and not (tmp_path / "c").exists()

    def interrupted(task):                                            # Ctrl-C while decoding into the cache file
        raise KeyboardInterrupt
    monkeypatch.setattr(cache, "_decode_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_listfile_dataset(tmp_path, folder="PHOTOS", image_size=24, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists() or list((tmp_path / "c").iterdir()) == [], "no cache or temporary file"


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


@pytest.mark.parametrize("upgrade", ["PIL", "JPEG library", "torchvision", "decoding source"])
def test_a_decoder_upgrade_gives_another_cache(tmp_path, monkeypatch, upgrade):
    split = bitmap_split(tmp_path)
    before = cache_key(split.paths, 12)
    cached_split(split, cache_dir=tmp_path / "c")
    if upgrade == "PIL":
        monkeypatch.setattr(PIL, "__version__", PIL.__version__ + ".post1")
    elif upgrade == "JPEG library":
        version = PIL.features.version
        monkeypatch.setattr(PIL.features, "version", lambda feature: "9.9" if feature in ("jpg", "libjpeg_turbo")
                            else version(feature))
    elif upgrade == "torchvision":
        monkeypatch.setattr(torchvision, "__version__", "99.0")
    else:                                                             # to_rgb edited (a fix of a mode)
        source = inspect.getsource
        monkeypatch.setattr(inspect, "getsource", lambda function: source(function) + (
            "    # edited\n" if function is to_rgb else ""))
    assert cache_key(split.paths, 12) != before, f"a new {upgrade} may decode other bytes: another key"
    cached_split(split, cache_dir=tmp_path / "c")
    assert len(list((tmp_path / "c").iterdir())) == 2, "decoded anew, not served from the old decoder's cache"


def test_a_load_reads_each_image_file_once_however_many_splits_list_it(tmp_path, monkeypatch):
    photo_dataset(tmp_path)                                           # train (0-3) is a subset of database (0-3)
    load_listfile_dataset(tmp_path, folder="PHOTOS", image_size=24, cache_dir=tmp_path / "c")   # builds the cache
    reads = []
    read = cache._read

    def counted(path, origin):
        reads.append(os.path.basename(path))
        return read(path, origin)
    monkeypatch.setattr(cache, "_read", counted)
    load_listfile_dataset(tmp_path, folder="PHOTOS", image_size=24, cache_dir=tmp_path / "c")
    assert sorted(reads) == [f"{i}.jpg" for i in range(6)], "each listed file read (and hashed) once per load"


@pytest.mark.skipif(AS_ROOT, reason="root may delete in a read-only folder")
def test_a_damaged_cache_file_in_a_read_only_folder_names_it_and_the_ways_out(tmp_path):
    split = bitmap_split(tmp_path)
    cached_split(split, cache_dir=tmp_path / "c")
    [built] = (tmp_path / "c").iterdir()
    built.write_bytes(built.read_bytes()[:100])                       # a cut copy
    (tmp_path / "c").chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=rf"damaged cache file {built} .*in read-only folder "
                                                  rf"{tmp_path / 'c'}: delete it, or set ADVHASH_CACHE to a "
                                                  rf"writable folder, or .*cache=False"):
            cached_split(split, cache_dir=tmp_path / "c")
    finally:
        (tmp_path / "c").chmod(0o755)


# Behaviour the mutation tests (make mutants, issue 27) found unguarded: where the cache goes, what its key is made
# of, whose error a message names, and what a cached split keeps.

def test_the_default_cache_folder_is_advhash_cache_else_the_xdg_cache_else_the_home_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ADVHASH_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache.default_cache_dir() == tmp_path / "home" / ".cache" / "advhash" / "images"
    monkeypatch.setenv("XDG_CACHE_HOME", "~/xdg")
    assert cache.default_cache_dir() == tmp_path / "home" / "xdg" / "advhash" / "images"
    monkeypatch.setenv("ADVHASH_CACHE", "~/mine")
    assert cache.default_cache_dir() == tmp_path / "home" / "mine", "ADVHASH_CACHE is the folder itself"


def test_an_image_gone_before_a_load_is_named_with_its_list_line_by_every_entry_point(tmp_path):
    split = bitmap_split(tmp_path)
    split.paths[2].unlink()
    gone = r"list.txt, line 3: image .*2\.bmp cannot be read"
    for load in (lambda: cached_split(split, cache_dir=tmp_path / "c"),
                 lambda: decode_images(split.paths, 12, origins=split.origins, workers=1),
                 lambda: cache.scan_files(split.paths, origins=split.origins, workers=1),
                 lambda: cache.file_digests(split.paths, origins=split.origins, workers=1)):
        with pytest.raises(FileNotFoundError, match=gone) as caught:
            load()
        assert caught.value.errno == errno.ENOENT


def test_the_cache_key_is_the_documented_hash_of_the_files_bytes_their_order_the_size_and_the_decoder(tmp_path):
    import hashlib
    split = bitmap_split(tmp_path, count=3)
    contents = [hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest() for path in split.paths]
    assert cache.file_digests(split.paths) == contents, "each file by the BLAKE2b (128 bits) of its bytes"
    fingerprint = cache.decoder_fingerprint(12)
    for part in (f"PIL {PIL.__version__}", f"jpeg {PIL.features.version('jpg')}",
                 f"libjpeg-turbo {PIL.features.version('libjpeg_turbo')}", f"torchvision {torchvision.__version__}",
                 repr(transforms.Resize((12, 12), antialias=True))):
        assert part in fingerprint, f"the decoder fingerprint names {part}"
    expected = hashlib.sha1(f"advhash-decoded-v{cache.CACHE_VERSION} size=12\n{fingerprint}\n".encode())
    for position, content in enumerate(contents):
        expected.update(f"{position}\t{content}\n".encode())
    assert cache_key(split.paths, 12) == expected.hexdigest()[:20]
    cached_split(split, cache_dir=tmp_path / "c")
    assert [p.name for p in (tmp_path / "c").iterdir()] == [f"split-3x12-{expected.hexdigest()[:20]}.npy"]


def test_one_worker_hashes_and_decodes_in_this_process_without_a_pool(tmp_path, monkeypatch):
    split = bitmap_split(tmp_path, count=5)

    class NoPool:
        def __init__(self, *args, **kwargs):
            raise AssertionError("a process pool was started though workers=1")
    monkeypatch.setattr(cache, "ProcessPoolExecutor", NoPool)
    monkeypatch.setattr(cache, "CHUNK", 2)                            # three tasks: a pool would be used
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert len(cache.file_digests(split.paths, workers=1)) == 5
    assert cache_key(split.paths, 12, workers=1) == cache_key(list(split.paths), 12, workers=1)
    assert decode_images(split.paths, 12, workers=1).shape == (5, 3, 12, 12)
    assert torch.equal(pixels(cached_split(split, cache_dir=tmp_path / "c", workers=1)), pixels(split))


def test_the_rotation_warning_names_the_first_rotated_image_with_its_own_orientation(tmp_path):
    (tmp_path / "images").mkdir()
    paths = []
    for i, orientation in enumerate([1, 6, 8]):
        exif = Image.Exif()
        exif[0x0112] = orientation
        paths.append(tmp_path / "images" / f"{i}.jpg")
        Image.fromarray(np.full((15, 20, 3), 40 * i, dtype=np.uint8)).save(paths[-1], exif=exif)
    split = ImageFileSplit(paths, np.eye(2)[[0, 1, 0]], image_size=12, origins=["l.txt, line 1", "l.txt, line 2",
                                                                               "l.txt, line 3"])
    with pytest.warns(UserWarning, match=r"2 images carry .*the first l.txt, line 2: image .*1\.jpg \(orientation 6\)"):
        cached_split(split, cache_dir=tmp_path / "c")


def test_a_damaged_cache_file_that_cannot_be_deleted_names_it_and_the_ways_out(tmp_path, monkeypatch):
    split = bitmap_split(tmp_path)
    cached_split(split, cache_dir=tmp_path / "c")
    [built] = (tmp_path / "c").iterdir()
    built.write_bytes(built.read_bytes()[:100])                       # a cut copy
    unlink = Path.unlink

    def read_only(path, missing_ok=False):                            # as in a read-only folder, even for root
        if path == built:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return unlink(path, missing_ok=missing_ok)
    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(PermissionError, match=rf"damaged cache file {built} .*delete it, or set ADVHASH_CACHE to a "
                                              rf"writable folder, or .*cache=False") as caught:
        cached_split(split, cache_dir=tmp_path / "c")
    assert caught.value.errno == errno.EACCES


def test_a_full_disk_keeps_errno_enospc_and_states_the_room_needed_and_free(tmp_path, monkeypatch):
    split = bitmap_split(tmp_path, count=4)                           # needs 4 x 3 x 12 x 12 = 1728 bytes
    disk_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=1727))
    with pytest.raises(OSError, match=r"needs 1\.7 KiB, 1\.7 KiB free there") as caught:
        cached_split(split, cache_dir=tmp_path / "c")
    assert caught.value.errno == errno.ENOSPC, "a full disk stays recognisable as one (errno ENOSPC)"
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=1728))
    assert torch.equal(pixels(cached_split(split, cache_dir=tmp_path / "c")), pixels(split)), "exactly enough room"
    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(OSError, match=r"needs 1\.7 KiB\. Fix"):                # no free room to state there
        cached_split(split, cache_dir=tmp_path / "taken" / "c")


def test_a_cache_folder_is_created_with_its_parents_and_a_build_writes_only_a_hidden_file_in_it(tmp_path, monkeypatch):
    split = bitmap_split(tmp_path, count=3)
    folder = tmp_path / "not" / "yet" / "there"
    seen = []
    decode = cache._decode_chunk

    def watched(task):
        seen.append(sorted(p.name for p in folder.iterdir()))
        return decode(task)
    monkeypatch.setattr(cache, "_decode_chunk", watched)
    cached_split(split, cache_dir=folder)
    assert len(seen[0]) == 1 and seen[0][0].startswith("."), "decoded into a hidden temporary file in the folder"
    assert [p.name for p in folder.iterdir()] == [f"split-3x12-{cache_key(split.paths, 12)}.npy"]


def test_a_cache_that_cannot_be_moved_into_place_names_the_folder_and_leaves_nothing(tmp_path, monkeypatch):
    split = bitmap_split(tmp_path, count=4)

    def full(source, target):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match=rf"cannot write the decoded image cache to {tmp_path / 'c'} .*needs 1\.7 KiB"
                                      rf".*ADVHASH_CACHE.*cache=False") as caught:
        cached_split(split, cache_dir=tmp_path / "c")
    assert caught.value.errno == errno.ENOSPC
    assert list((tmp_path / "c").iterdir()) == [], "the temporary file is removed"


def test_a_cached_split_keeps_the_texts_and_source_indices_of_the_split(tmp_path):
    split = bitmap_split(tmp_path)
    texts = np.random.default_rng(0).integers(0, 2, (len(split), 7)).astype(np.float32)
    split = ImageFileSplit(split.paths, split.labels, texts=texts, source_indices=np.arange(40, 46), image_size=12,
                           origins=split.origins)
    for _ in range(2):                                                 # built, then read again
        cached = cached_split(split, cache_dir=tmp_path / "c")
        assert cached.texts is not None and torch.equal(cached.texts, split.texts), "a cross-modal split keeps texts"
        assert torch.equal(cached.source_indices, torch.arange(40, 46))


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc/self/maps")
def test_a_cached_split_is_memory_mapped_from_its_file_not_read_into_memory(tmp_path):
    split = bitmap_split(tmp_path)
    built = cached_split(split, cache_dir=tmp_path / "c")
    [path] = (tmp_path / "c").iterdir()
    assert str(path) in Path("/proc/self/maps").read_text(), "a fresh build is served from its memory-mapped file"
    (tmp_path / "d").mkdir()
    shutil.copy(path, tmp_path / "d" / path.name)
    again = cached_split(split, cache_dir=tmp_path / "d")
    assert str(tmp_path / "d" / path.name) in Path("/proc/self/maps").read_text(), "a reused cache too"
    assert torch.equal(again.images, built.images)
