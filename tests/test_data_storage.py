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
