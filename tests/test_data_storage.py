"""The on-disk format (advhash.data.storage): byte-deterministic, atomic, checked."""

import numpy as np
import pytest
from helpers import folder_digest as _digest

from advhash.data import load_arrays, save_arrays


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
