"""CIFAR-10 (advhash.data.cifar): from an ImageFolder tree, a zip, or the torchvision batches, and a clear
error when it is missing."""

import pickle
import zipfile

import numpy as np
import pytest
import torch
from helpers import SHARED

import advhash.data.cifar as cifar
from advhash.data import load_dataset

CIFAR_ZIP = SHARED / "data" / "cifar10-jpeg.zip"


@pytest.fixture(scope="module")
def cifar_subset(tmp_path_factory):
    """12 training and 6 test images a class from the real JPEG zip, as an ImageFolder tree and a zip."""
    if not CIFAR_ZIP.is_file():
        pytest.skip(f"{CIFAR_ZIP} not found (../shared is only on developers' machines and CI)")
    root = tmp_path_factory.mktemp("cifar")
    with zipfile.ZipFile(CIFAR_ZIP) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        by_folder = {}
        for name in names:
            by_folder.setdefault(name.rsplit("/", 1)[0], []).append(name)
        chosen = [n for folder, files in by_folder.items() for n in files[:12 if folder.startswith("train") else 6]]
        archive.extractall(root / "tree", members=chosen)
    with zipfile.ZipFile(root / "subset.zip", "w") as subset:
        for name in chosen:
            subset.write(root / "tree" / name, f"cifar/{name}")        # one folder level deeper
    return root


def test_cifar10_image_folder_and_zip(cifar_subset, tmp_path):
    data = load_dataset("cifar10", tmp_path, source=cifar_subset / "tree", num_query=20, num_train=50)
    assert data.class_names[:3] == ["airplane", "automobile", "bird"] and data.image_shape == (3, 32, 32)
    assert len(data.query) + len(data.database) == 180 and data.meta["original_split"]["test"] == [120, 180]
    assert data.query.labels.sum(0).tolist() == [2] * 10 and data.train.labels.sum(0).tolist() == [5] * 10
    image, label, _ = data.query[0]
    assert 0 <= image.min() <= image.max() <= 1 and label.sum() == 1
    from_zip = load_dataset("cifar10", tmp_path, source=cifar_subset / "subset.zip", num_query=20, num_train=50)
    assert torch.equal(from_zip.database.images, data.database.images)
    (tmp_path / "cifar10").symlink_to(cifar_subset / "tree", target_is_directory=True)
    found = load_dataset("cifar10", tmp_path, num_query=20, num_train=50)          # <root>/cifar10/train, test
    assert torch.equal(found.query.images, data.query.images)
    (tmp_path / "zipped").mkdir()
    (tmp_path / "zipped" / "cifar10.zip").symlink_to(cifar_subset / "subset.zip")      # <root>/cifar10.zip
    zipped = load_dataset("cifar10", tmp_path / "zipped", num_query=20, num_train=50)
    assert torch.equal(zipped.train.images, data.train.images)


def test_cifar10_torchvision_format(tmp_path, monkeypatch):
    batches = tmp_path / "cifar10" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        entry = {"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), "labels": list(range(10)) * 2}
        (batches / name).write_bytes(pickle.dumps(entry))
    (batches / "batches.meta").write_bytes(pickle.dumps({"label_names": ["c%d" % i for i in range(10)]}))
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args: True)  # fakes lack the md5s
    data = load_dataset("cifar10", tmp_path, num_query=10, num_train=30)
    assert len(data.query) + len(data.database) == 120 and data.class_names[3] == "c3"
    first = pickle.loads((batches / "data_batch_1").read_bytes())["data"][0].reshape(3, 32, 32)
    holder = data.query if 0 in data.query.source_indices.tolist() else data.database       # pool row 0
    assert torch.equal(holder.images[0], torch.as_tensor(first))


def test_cifar10_missing_everywhere_is_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "cache_dir", lambda: tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match=r"(?s)CIFAR-10 not found.*cifar10.zip.*source="):
        load_dataset("cifar10", tmp_path, allow_download=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("cifar10", tmp_path, source=tmp_path / "nope.zip")
