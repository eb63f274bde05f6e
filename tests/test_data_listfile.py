"""The list-file reader (advhash.data.listfile): path-based splits from DeepHash-style list files, and errors
that name the file and line."""

import pytest
import torch
from PIL import Image
from torchvision import transforms

from advhash.data import load_dataset, load_listfile_dataset


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


def test_an_empty_split_file_is_named(tmp_path):
    base = _list_dataset(tmp_path)
    (base / "test_label.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"test_label.txt is empty: it needs one line per item"):
        load_listfile_dataset(tmp_path, folder="TOY", image_size=16)
