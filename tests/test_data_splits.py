"""Seeded splits (advhash.data.splits): the query / database / train protocol, balanced and ordered splits,
sizes, all-zero labels kept, the literature's standard sizes."""

import numpy as np
import pytest

from advhash.data import STANDARD_SPLITS, choose_splits, data_from_pool


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


def test_standard_split_sizes_are_the_literatures():
    assert STANDARD_SPLITS["flickr25k"]["num_query"] == 1700 and STANDARD_SPLITS["nus-wide"]["num_train"] == 10500
    assert STANDARD_SPLITS["ms-coco"] == dict(num_query=5000, num_train=10000, num_database=None)
    assert STANDARD_SPLITS["flickr25k-crossmodal"] == dict(num_query=2000, num_train=10000, num_database=18015)
    assert STANDARD_SPLITS["cifar10"]["balanced"]
