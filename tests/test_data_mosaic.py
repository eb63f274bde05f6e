"""Fashion-Mosaic (advhash.data.mosaic): byte-identical materialization, the statistics and relevance
structure of a FLICKR-like multi-label set with tags, stored pools reused or rebuilt."""

import numpy as np
import torch
from helpers import folder_digest as _digest
from helpers import needs_fashion

from advhash.data import TAG_VOCABULARY, load_arrays, load_dataset, materialize
from advhash.data.mosaic import build_fashion_mosaic


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
