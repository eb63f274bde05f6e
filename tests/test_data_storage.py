"""The on-disk format (advhash.data.storage): byte-deterministic, atomic, checked."""

import errno
import os

import numpy as np
import pytest
from helpers import folder_digest as _digest

from advhash.data import load_arrays, save_arrays
from advhash.data.storage import write_bytes_atomic


def test_save_arrays_round_trip_is_byte_deterministic_and_atomic(tmp_path):
    rng = np.random.default_rng(0)
    pool = dict(images=rng.integers(0, 256, (5, 1, 3, 3), dtype=np.uint8), labels=np.eye(5, dtype=np.uint8),
                texts=np.ones((5, 2), np.uint8), meta=dict(name="toy", class_names=list("abcde")))
    save_arrays(tmp_path / "a", **pool)
    save_arrays(tmp_path / "b", **pool)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["images.npy", "labels.npy", "meta.json",
                                                                 "texts.npy"], "no temporary files left"
    assert not any(save_arrays(tmp_path / "a", **pool).values()), "identical bytes are not rewritten"
    images, labels, texts, meta = load_arrays(tmp_path / "a")
    assert np.array_equal(images, pool["images"]) and np.array_equal(texts, pool["texts"]) and meta["name"] == "toy"
    with pytest.raises(ValueError, match="only 0 and 1"):
        save_arrays(tmp_path / "c", **{**pool, "labels": 2 * pool["labels"]})
    with pytest.raises(FileNotFoundError, match="does not exist.*materialize"):
        load_arrays(tmp_path / "missing")


def test_a_stored_labels_file_with_non_binary_values_is_refused_naming_it(tmp_path):
    save_arrays(tmp_path, images=np.zeros((2, 1, 2, 2), np.uint8), labels=np.eye(2, dtype=np.uint8), meta={})
    np.save(tmp_path / "labels.npy", np.array([[0, 2], [1, 0]], dtype=np.uint8))     # edited by hand
    with pytest.raises(ValueError, match=r"labels from .*labels.npy must be binary"):
        load_arrays(tmp_path)


@pytest.mark.parametrize("mmap", [False, True])
def test_a_damaged_stored_file_is_named_with_how_to_restore_it(tmp_path, mmap):
    folder = tmp_path / "toy"
    save_arrays(folder, images=np.zeros((4, 1, 8, 8), np.uint8), labels=np.eye(4, dtype=np.uint8), meta={})
    whole = (folder / "images.npy").read_bytes()
    (folder / "images.npy").write_bytes(whole[:len(whole) // 2])              # an interrupted copy
    with pytest.raises(ValueError, match=r"toy/images.npy cannot be read .*damaged.*dvc checkout.*python -m "
                                         r"advhash.data materialize toy --root"):
        load_arrays(folder, mmap=mmap)
    assert (folder / "images.npy").read_bytes() == whole[:len(whole) // 2], "the user's file is left as it is"


def test_a_full_disk_names_the_file_and_leaves_the_old_one(tmp_path, monkeypatch):
    pool = dict(images=np.zeros((4, 1, 8, 8), np.uint8), labels=np.eye(4, dtype=np.uint8), meta={})
    save_arrays(tmp_path, **pool)
    before = (tmp_path / "images.npy").read_bytes()

    def disk_full(handle, mode):
        os.close(handle)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("advhash.data.storage.os.fdopen", disk_full)
    with pytest.raises(OSError, match=r"cannot write .*images.npy \(No space left on device\): it needs 384 bytes"):
        save_arrays(tmp_path, **{**pool, "images": np.ones((4, 1, 8, 8), np.uint8)})
    assert (tmp_path / "images.npy").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.npy", "labels.npy", "meta.json"]


def test_a_failed_write_advises_what_fits_the_file_written(tmp_path, monkeypatch):
    def disk_full(handle, mode):
        os.close(handle)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("advhash.data.storage.os.fdopen", disk_full)
    other = tmp_path / "build" / "victims.json"                        # e.g. the victim manifest, not a dataset
    with pytest.raises(OSError) as refused:
        write_bytes_atomic(other, b"{}\n")
    assert f"cannot write {other} (No space left on device): it needs 3 bytes; free room in {other.parent}" in \
        str(refused.value) and "--root" not in str(refused.value), "no dataset advice for a file that is not one"
    with pytest.raises(OSError, match=rf"cannot write {tmp_path / 'toy' / 'images.npy'} .*free room in "
                                      rf"{tmp_path / 'toy'} or write the dataset under another root \(--root\)"):
        save_arrays(tmp_path / "toy", images=np.zeros((1, 1, 2, 2), np.uint8), labels=np.eye(1, dtype=np.uint8),
                    meta={})
    with pytest.raises(OSError, match=r"; remove old runs from build/"):
        write_bytes_atomic(other, b"{}\n", fix="remove old runs from build/")
