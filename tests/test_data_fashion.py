"""Fashion-MNIST (advhash.data.fashion): from the Debian files or a raw folder, and a clear error naming
every place it looked."""

import urllib.error

import numpy as np
import pytest
import torch
from helpers import needs_fashion

import advhash.data.fashion as fashion
from advhash.data import load_arrays, load_dataset


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
