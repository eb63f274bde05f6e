"""advhash.data: the split abstraction, seeded splits, the on-disk format, Fashion-MNIST and Fashion-Mosaic."""

import hashlib
import urllib.error

import numpy as np
import pytest
import torch

import advhash.data.fashion as fashion
from advhash.data import (HashingData, InMemorySplit, STANDARD_SPLITS, TAG_VOCABULARY, check_binary_labels,
                          choose_splits, data_from_pool, load_arrays, load_dataset, materialize, save_arrays)
from advhash.data.__main__ import main as cli
from advhash.data.mosaic import build_fashion_mosaic

needs_fashion = pytest.mark.skipif(not fashion.DEBIAN_DIR.is_dir(),
                                   reason=f"Fashion-MNIST not installed at {fashion.DEBIAN_DIR} "
                                          f"(apt-get install dataset-fashion-mnist)")


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory):
    """A data root with Fashion-MNIST materialized once (read from the Debian path)."""
    if not fashion.DEBIAN_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST not installed at {fashion.DEBIAN_DIR}")
    root = tmp_path_factory.mktemp("data")
    materialize("fashion-mnist", root)
    return root


# ---------------------------------------------------------------- splits

def _multilabel_pool(n=200, width=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, width)) < 0.3).astype(np.uint8)


@pytest.mark.parametrize("num_database", [None, 120])
def test_split_protocol(num_database):
    labels = _multilabel_pool()
    splits = choose_splits(labels, num_query=30, num_train=50, num_database=num_database, seed=1)
    query, database, train = (set(splits[k].tolist()) for k in ("query", "database", "train"))
    assert (len(query), len(train)) == (30, 50)
    assert len(database) == (170 if num_database is None else 120)
    assert not query & database, "query and database must be disjoint"
    assert train <= database, "train must be a subset of the database"
    again = choose_splits(labels, num_query=30, num_train=50, num_database=num_database, seed=1)
    assert all(np.array_equal(splits[k], again[k]) for k in splits), "same seed, same splits"
    other = choose_splits(labels, num_query=30, num_train=50, num_database=num_database, seed=2)
    assert not np.array_equal(splits["query"], other["query"])


def test_balanced_splits_draw_evenly_from_every_class():
    labels = np.eye(4, dtype=np.uint8)[np.repeat(np.arange(4), 50)]
    splits = choose_splits(labels, num_query=20, num_train=40, seed=0, balanced=True)
    assert np.bincount(labels[splits["query"]].argmax(1)).tolist() == [5, 5, 5, 5]
    assert np.bincount(labels[splits["train"]].argmax(1)).tolist() == [10, 10, 10, 10]
    assert len(splits["database"]) == 180
    rare_first = np.eye(4, dtype=np.uint8)[np.repeat(np.arange(4), [20, 60, 60, 60])]
    with pytest.raises(ValueError, match="class 0 has only 15 items left but 20"):
        choose_splits(rare_first, num_query=20, num_train=80, seed=0, balanced=True)
    with pytest.raises(ValueError, match="single-label"):
        choose_splits(_multilabel_pool(), num_query=10, num_train=10, balanced=True)


def test_ordered_split_is_dcmh_file_order():
    splits = choose_splits(_multilabel_pool(), num_query=20, num_train=50, ordered=True)
    assert splits["query"].tolist() == list(range(20))
    assert splits["database"].tolist() == list(range(20, 200))
    assert splits["train"].tolist() == list(range(20, 70))


def test_split_sizes_larger_than_the_pool_are_refused():
    labels = _multilabel_pool(n=50)
    with pytest.raises(ValueError, match="larger than the pool.*num_query=60"):
        choose_splits(labels, num_query=60, num_train=10)
    with pytest.raises(ValueError, match="larger than the pool.*num_train=45"):
        choose_splits(labels, num_query=10, num_train=45)
    with pytest.raises(ValueError, match="larger than the pool"):
        choose_splits(labels, num_query=10, num_train=5, num_database=41)


def test_all_zero_labels_are_kept_and_reported():
    labels = _multilabel_pool(n=100)
    labels[:, 0], labels[:10] = 1, 0                 # exactly 10 items without a label
    data = data_from_pool("toy", images=np.zeros((100, 1, 4, 4), np.uint8), labels=labels,
                          class_names=list("abcde"), num_query=20, num_train=30)
    kept = set(data.query.source_indices.tolist()) | set(data.database.source_indices.tolist())
    assert kept == set(range(100)), "every item, all-zero labels included, is a query or database item"
    zero_share = sum(s["zero_label_percent"] * s["items"] for k, s in data.summary().items() if k != "train")
    assert zero_share == pytest.approx(10 * 100)


def test_in_memory_split_items_and_fast_batch_agree():
    images = torch.randint(0, 256, (6, 3, 5, 5), dtype=torch.uint8)
    split = InMemorySplit(images, np.eye(3, dtype=np.uint8)[[0, 1, 2, 0, 1, 2]], texts=np.ones((6, 4)))
    image, label, index = split[4]
    assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1 and index == 4
    assert torch.equal(image, images[4].float() / 255) and label.tolist() == [0, 1, 0]
    batch_images, batch_labels, batch_indices = split.batch([4, 1])
    assert torch.equal(batch_images[0], image) and batch_indices.tolist() == [4, 1]
    assert split.image_shape == (3, 5, 5) and split.texts.shape == (6, 4)


def test_bad_labels_and_mismatched_splits_are_refused():
    with pytest.raises(ValueError, match="must be binary.*row 1"):
        check_binary_labels(np.array([[0, 1], [2, 0]]), where="toy.txt")
    split = InMemorySplit(np.zeros((2, 1, 2, 2), np.uint8), np.eye(2))
    wider = InMemorySplit(np.zeros((2, 1, 2, 2), np.uint8), np.eye(3)[:2])
    with pytest.raises(ValueError, match="label widths disagree"):
        HashingData("toy", train=split, query=wider, database=split, class_names=["a", "b"])


def test_standard_split_sizes_are_the_literatures():
    assert STANDARD_SPLITS["flickr25k"]["num_query"] == 1700 and STANDARD_SPLITS["nus-wide"]["num_train"] == 10500
    assert STANDARD_SPLITS["ms-coco"] == dict(num_query=5000, num_train=10000, num_database=None)
    assert STANDARD_SPLITS["flickr25k-crossmodal"] == dict(num_query=2000, num_train=10000, num_database=18015)
    assert STANDARD_SPLITS["cifar10"]["balanced"]


# ---------------------------------------------------------------- on-disk format

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


# ---------------------------------------------------------------- Fashion-MNIST

@needs_fashion
def test_fashion_mnist_from_the_debian_files(fashion_root):
    data = load_dataset("fashion-mnist", root=fashion_root)
    assert data.num_classes == 10 and data.class_names[0] == "T-shirt/top" and data.text_dim is None
    assert [len(data.query), len(data.train), len(data.database)] == [1000, 5000, 69000]
    assert data.query.labels.sum(0).tolist() == [100] * 10 and data.train.labels.sum(0).tolist() == [500] * 10
    image, label, index = data.database[123]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert label.sum() == 1 and index == 123
    built = fashion.build_fashion_mnist(fashion_root / "elsewhere", allow_download=False)   # from /usr/share
    stored = load_arrays(fashion_root / "fashion-mnist")
    assert np.array_equal(built["images"], stored[0]) and built["images"].shape == (70000, 1, 28, 28)
    assert built["labels"].sum(0).tolist() == [7000] * 10


@needs_fashion
def test_fashion_mnist_raw_folder_comes_first(tmp_path, monkeypatch):
    raw = tmp_path / "fashion-mnist" / "raw"
    raw.mkdir(parents=True)
    for source in fashion.DEBIAN_DIR.iterdir():
        (raw / source.name).symlink_to(source)
    monkeypatch.setattr(fashion, "DEBIAN_DIR", tmp_path / "no-debian")
    assert fashion.build_fashion_mnist(tmp_path, allow_download=False)["images"].shape == (70000, 1, 28, 28)


def test_fashion_mnist_missing_everywhere_names_all_three_places(tmp_path, monkeypatch):
    def no_network(folder):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(fashion, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(fashion, "_download", no_network)
    with pytest.raises(FileNotFoundError, match=r"(?s)fashion-mnist/raw.*no-debian.*download.*no network.*"
                                                r"apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=tmp_path)


# ---------------------------------------------------------------- Fashion-Mosaic

@needs_fashion
def test_mosaic_materializes_byte_identically(fashion_root, tmp_path):
    first = materialize("fashion-mosaic", fashion_root, num_items=3000)
    copy = tmp_path / "copy"
    (copy / "fashion-mnist").mkdir(parents=True)
    for path in (fashion_root / "fashion-mnist").iterdir():
        (copy / "fashion-mnist" / path.name).symlink_to(path)
    materialize("fashion-mosaic", copy, num_items=3000)
    assert _digest(first["folder"]) == _digest(copy / "fashion-mosaic")
    assert not any(materialize("fashion-mosaic", fashion_root, num_items=3000)["written"].values())


@needs_fashion
def test_mosaic_statistics_and_relevance_structure(fashion_root):
    pool = build_fashion_mosaic(fashion_root)
    images, labels, texts, cells = pool["images"], pool["labels"], pool["texts"], pool["cells"]
    assert images.shape == (12000, 1, 28, 28) and labels.shape == (12000, 10) and texts.shape == (12000, 54)
    assert 2.0 <= labels.sum(1).mean() <= 2.5 and 1 <= labels.sum(1).min() and labels.sum(1).max() <= 4
    assert 4.0 <= texts.sum(1).mean() <= 5.0, "about MIRFLICKR-25K's 4.6 tags an item"
    assert len(set(cells[cells >= 0].tolist())) == (cells >= 0).sum(), "no Fashion-MNIST image used twice"
    source = load_arrays(fashion_root / "fashion-mnist")
    for i in range(0, 12000, 997):               # each cell is its source image (2x2 block means) or black
        for position in range(4):
            block = images[i, 0, 14 * (position // 2):][:14, 14 * (position % 2):][:, :14]
            if cells[i, position] >= 0:
                original = source[0][cells[i, position], 0].astype(float)
                expected = np.floor(original.reshape(14, 2, 14, 2).mean((1, 3)) + 0.5)
            else:
                expected = np.zeros((14, 14))
            assert np.array_equal(block, expected)
        classes = {int(source[1][c].argmax()) for c in cells[i] if c >= 0}
        assert set(np.flatnonzero(labels[i]).tolist()) == classes, "labels = union of the cells' classes"
    has_label = labels[:, 0].astype(bool)                         # tags follow the labels, with noise
    tee = TAG_VOCABULARY.index("tee")
    assert texts[has_label, tee].mean() > 0.3 > 0.05 > texts[~has_label, tee].mean()
    relevant = (labels[:500] @ labels[500:2000].T) > 0            # share a label
    assert 0.3 < relevant.mean() < 0.9, "a FLICKR-like share of relevant pairs"


@needs_fashion
def test_mosaic_loads_stored_pool_or_rebuilds_for_other_parameters(fashion_root):
    materialize("fashion-mosaic", fashion_root)
    data = load_dataset("fashion-mosaic", root=fashion_root, num_query=100, num_train=300, seed=3)
    assert [len(data.query), len(data.train), len(data.database)] == [100, 300, 11900]
    image, label, index = data.train[7]
    assert image.shape == (1, 28, 28) and 0 <= image.min() <= image.max() <= 1 and index == 7
    assert "DERIVED" in data.description and data.text_dim == len(TAG_VOCABULARY)
    stored = load_arrays(fashion_root / "fashion-mosaic")
    assert torch.equal(data.query.images, torch.as_tensor(stored[0][data.query.source_indices.numpy()]))
    smaller = load_dataset("fashion-mosaic", root=fashion_root, num_query=50, num_train=100, num_items=400)
    assert len(smaller.query) + len(smaller.database) == 400


@needs_fashion
def test_command_line_materializes(fashion_root, capsys):
    assert cli(["materialize", "fashion-mnist", "--root", str(fashion_root)]) == 0
    assert "fashion-mnist: 70000 items" in capsys.readouterr().out
