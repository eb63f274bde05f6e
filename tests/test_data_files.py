"""advhash.data readers of users' files: list files, CIFAR-10 (torchvision / ImageFolder / zip), DCMH .mat."""

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torchvision import transforms

import advhash.data.cifar as cifar
from advhash.data import (MIRFLICKR24_CLASSES, load_crossmodal_mat, load_dataset, load_listfile_dataset,
                          read_crossmodal_mat)

SHARED = Path(__file__).resolve().parents[2] / "shared"      # <repo>/../shared: developers' and CI's data
CIFAR_ZIP = SHARED / "data" / "cifar10-jpeg.zip"
MIRFLICKR = SHARED / "data" / "mirflickr25k-labels-tags"


# ---------------------------------------------------------------- list files

def _write_images(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):                                   # mixed sizes and modes, like real photos
        mode, size = ("L", (9, 7)) if i % 2 else ("RGB", (12, 10))
        Image.new(mode, size, color=(40 * i) % 256 if mode == "L" else (40 * i % 256, 0, 255)).save(folder / f"{i}.png")


def _list_dataset(root, *, single_file=False):
    base = root / "TOY"
    _write_images(base / "images", 8)
    split_lines = {"train": [(2, "1 0 1"), (3, "0 1 0"), (2, "1 0 1")],          # repeated lines are kept
                   "test": [(0, "1 0 0"), (1, "0 0 0")],                           # an all-zero label
                   "database": [(2, "1 0 1"), (3, "0 1 0"), (4, "0 0 0"), (5, "0 1 1")]}
    for stem, lines in split_lines.items():
        if single_file:
            (base / f"{stem}.txt").write_text("".join(f"images/{i}.png {lab}\n" for i, lab in lines))
        else:
            (base / f"{stem}_img.txt").write_text("".join(f"images/{i}.png\n" for i, _ in lines))
            (base / f"{stem}_label.txt").write_text("".join(f"{lab}\n" for _, lab in lines))
    return base


@pytest.mark.parametrize("single_file", [False, True])
def test_list_files_give_path_based_splits(tmp_path, single_file):
    _list_dataset(tmp_path, single_file=single_file)
    data = load_listfile_dataset(tmp_path, folder="TOY", image_size=16)
    assert [len(data.train), len(data.query), len(data.database)] == [3, 2, 4]
    assert data.num_classes == 3 and data.class_names == ["0", "1", "2"] and data.image_shape == (3, 16, 16)
    image, label, index = data.query[1]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert label.tolist() == [0, 0, 0] and index == 1, "all-zero labels are kept"
    assert data.summary()["database"]["zero_label_percent"] == 25.0
    images, labels, indices = data.train.batch([0, 2])
    assert images.shape == (2, 3, 16, 16) and torch.equal(images[0], images[1]) and labels[1].tolist() == [1, 0, 1]


def test_list_files_with_classes_file_and_custom_transform(tmp_path):
    base = _list_dataset(tmp_path)
    (base / "classes.txt").write_text("red\ngreen\nblue\n")
    data = load_dataset("listfile", tmp_path, folder="TOY", transform=transforms.Compose(
        [transforms.Resize((8, 6)), transforms.ToTensor()]))
    assert data.class_names == ["red", "green", "blue"] and data.database.image_shape == (3, 8, 6)


def _break(base, name, text):
    (base / name).write_text(text)


@pytest.mark.parametrize("file_name, text, message", [
    ("test_label.txt", "1 0 0\n0 0\n", r"test_label.txt, line 2: 2 labels but line 1 has 3"),
    ("database_label.txt", "1 0 1\n0 2 0\n0 0 0\n0 1 1\n", r"database_label.txt, line 2: labels must be binary"),
    ("train_label.txt", "1 0 1\n0 x 0\n1 0 1\n", r"train_label.txt, line 2: labels must be numbers"),
    ("test_label.txt", "1 0 0 1\n0 0 0 0\n", r"label widths disagree between split files"),
    ("test_label.txt", "1 0 0\n", r"test_img.txt has 2 lines but .*test_label.txt 1"),
    ("train_img.txt", "images/2.png\nimages/99.png\nimages/2.png\n", r"train_img.txt, line 2: image .*99.png does not exist"),
])
def test_list_file_errors_name_the_file_and_line(tmp_path, file_name, text, message):
    base = _list_dataset(tmp_path)
    _break(base, file_name, text)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_listfile_dataset(tmp_path, folder="TOY")


def test_missing_split_file_and_root_are_named(tmp_path):
    base = _list_dataset(tmp_path)
    (base / "database_label.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing split file .*database_label.txt"):
        load_listfile_dataset(tmp_path, folder="TOY")
    (base / "database_img.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"database_img.txt.*database.txt"):
        load_listfile_dataset(tmp_path, folder="TOY")
    with pytest.raises(FileNotFoundError, match=r"dataset root .*nowhere does not exist"):
        load_dataset("flickr25k", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"FLICKR-25K does not exist"):
        load_dataset("flickr25k", tmp_path)


def test_query_database_overlap_warns(tmp_path):
    base = _list_dataset(tmp_path)
    _break(base, "test_img.txt", "images/2.png\nimages/1.png\n")
    with pytest.warns(UserWarning, match="both query"):
        load_listfile_dataset(tmp_path, folder="TOY")


# ---------------------------------------------------------------- CIFAR-10

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


# ---------------------------------------------------------------- DCMH-style .mat files

@pytest.mark.skipif(not MIRFLICKR.is_dir(), reason=f"{MIRFLICKR} not found (../shared is only on developers' "
                                                    f"machines and CI)")
def test_real_mirflickr25k_labels_and_tags():
    pool = read_crossmodal_mat(sorted(MIRFLICKR.glob("*.mat")), require_images=False)
    assert pool["labels"].shape == (20015, 24) and pool["texts"].shape == (20015, 1386) and pool["images"] is None
    assert pool["labels"].sum(1).mean() == pytest.approx(3.78, abs=0.01)
    assert pool["texts"].sum(1).mean() == pytest.approx(4.64, abs=0.01)
    data = load_crossmodal_mat(MIRFLICKR.parent, folder=MIRFLICKR.name, require_images=False)
    assert [len(data.query), len(data.train), len(data.database)] == [2000, 10000, 18015]
    query, database = set(data.query.source_indices.tolist()), set(data.database.source_indices.tolist())
    assert not query & database and set(data.train.source_indices.tolist()) <= database
    assert data.text_dim == 1386 and data.class_names == MIRFLICKR24_CLASSES
    with pytest.raises(RuntimeError, match="labels and texts only.*IAll"):
        data.query[0]
    with pytest.raises(FileNotFoundError, match="no images.*require_images=False"):
        load_crossmodal_mat(MIRFLICKR.parent, folder=MIRFLICKR.name)
    annotations = np.load(MIRFLICKR / "mirflickr25k_annotations_38.npz")       # the class names' column order
    rows = annotations["labels38"][np.load(MIRFLICKR / "lall_row_to_image_id.npy") - 1]
    columns = [list(annotations["names38"]).index(name) for name in MIRFLICKR24_CLASSES]
    assert np.array_equal(rows[:, columns], pool["labels"])


def _mat_pool(n=12):
    rng = np.random.default_rng(0)
    labels = (rng.random((n, 4)) < 0.4).astype(np.uint8)
    labels[0] = 0
    return rng.integers(0, 256, (n, 6, 5, 3), dtype=np.uint8), labels, (rng.random((n, 7)) < 0.3).astype(np.uint8)


@pytest.mark.parametrize("layout", ["one file NHWC", "separate files NCHW", "matlab HWCN"])
def test_mat_fixture_layouts(tmp_path, layout):
    images, labels, texts = _mat_pool()
    folder = tmp_path / "FLICKR-25K"
    folder.mkdir()
    if layout == "one file NHWC":
        scipy.io.savemat(folder / "all.mat", dict(IAll=images, LAll=labels, YAll=texts))
    else:
        stored = images.transpose(0, 3, 1, 2) if layout == "separate files NCHW" else images.transpose(1, 2, 3, 0)
        scipy.io.savemat(folder / "img.mat", dict(IAll=stored))
        scipy.io.savemat(folder / "lab.mat", dict(LAll=labels))
        scipy.io.savemat(folder / "tag.mat", dict(YAll=texts))
    data = load_dataset("flickr25k-crossmodal", tmp_path, num_query=3, num_train=5, ordered=True)
    assert data.image_shape == (3, 6, 5) and data.text_dim == 7 and data.class_names == ["0", "1", "2", "3"]
    assert torch.equal(data.query.images[1], torch.as_tensor(images[1].transpose(2, 0, 1)))
    assert data.query.labels[0].sum() == 0, "all-zero labels are kept"
    assert data.train.source_indices.tolist() == [3, 4, 5, 6, 7] and len(data.database) == 9


def test_mat_errors(tmp_path):
    images, labels, texts = _mat_pool()
    scipy.io.savemat(tmp_path / "bad.mat", dict(LAll=labels * 3, YAll=texts))
    with pytest.raises(ValueError, match="must be binary"):
        read_crossmodal_mat([tmp_path / "bad.mat"], require_images=False)
    scipy.io.savemat(tmp_path / "short.mat", dict(LAll=labels, YAll=texts[:10]))
    with pytest.raises(ValueError, match="has 10 rows but the labels have 12"):
        read_crossmodal_mat([tmp_path / "short.mat"], require_images=False)
    scipy.io.savemat(tmp_path / "nolabels.mat", dict(YAll=texts))
    with pytest.raises(KeyError, match="no label matrix"):
        read_crossmodal_mat([tmp_path / "nolabels.mat"])
    with pytest.raises(FileNotFoundError, match="dataset folder .*missing does not exist"):
        load_crossmodal_mat(tmp_path, folder="missing")
