"""The list-file reader (advhash.data.listfile): path-based splits from DeepHash-style list files, and errors
that name the file and line."""

import re
import warnings

import numpy as np
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


@pytest.mark.parametrize("single_file", [False, True])
def test_a_byte_order_mark_is_accepted(tmp_path, single_file):
    """Windows editors (Notepad's "UTF-8 with BOM") start a file with the bytes EF BB BF."""
    base = _list_dataset(tmp_path, single_file=single_file)
    plain = load_listfile_dataset(tmp_path, folder="TOY", image_size=8, cache=False)
    for name in ["test.txt"] if single_file else ["test_img.txt", "test_label.txt"]:
        (base / name).write_bytes(b"\xef\xbb\xbf" + (base / name).read_bytes())
    (base / "classes.txt").write_bytes("\ufeffred\ngreen\nblue\n".encode())
    data = load_listfile_dataset(tmp_path, folder="TOY", image_size=8, cache=False)
    assert data.class_names == ["red", "green", "blue"]
    assert [str(p) for p in data.query.paths] == [str(p) for p in plain.query.paths]
    assert torch.equal(data.query.labels, plain.query.labels) and torch.equal(data.query[0][0], plain.query[0][0])


@pytest.mark.parametrize("single_file, file_name, payload, message", [
    (False, "test_img.txt", "images/0.png\nimages/caf\u00e9.png\n".encode("latin-1"),      # a Windows-1252 file
     r"test_img.txt, line 2: not UTF-8 text \(byte 0xe9\); save the file as UTF-8"),
    (False, "classes.txt", b"red\ngreen\n", r"classes.txt names 2 classes but the label lines have 3 labels; "
                                            r"write one class name a line"),
    (True, "test.txt", b"images/0.png 1 0 0\nimages/my photo.png 0 0 0\n",
     r"test.txt, line 2: 'photo.png' after the image path 'images/my' is not a label; a path with spaces needs "
     r"the two-file form \(test_img.txt with test_label.txt\)"),
], ids=["not-utf8", "classes-count", "path-with-spaces"])
def test_more_list_file_faults_name_the_file_line_and_fix(tmp_path, single_file, file_name, payload, message):
    base = _list_dataset(tmp_path, single_file=single_file)
    (base / file_name).write_bytes(payload)
    with pytest.raises(ValueError, match=message):
        load_listfile_dataset(tmp_path, folder="TOY")


def _turned_photo_dataset(root):
    """Four JPEGs, the third (listed on line 3 of train and database) and fourth (line 2 of test) saved with EXIF
    orientation 6 (a phone held upright: a viewer turns it 90 degrees clockwise)."""
    base = root / "TURNED"
    (base / "images").mkdir(parents=True)
    g = np.random.default_rng(3)
    for i in range(4):
        exif = Image.Exif()
        if i >= 2:
            exif[0x0112] = 6
        Image.fromarray(g.integers(0, 256, (10, 16, 3), dtype=np.uint8)).save(base / "images" / f"{i}.jpg",
                                                                              exif=exif)
    for stem, items in {"train": [0, 1, 2], "test": [1, 3], "database": [0, 1, 2]}.items():
        (base / f"{stem}.txt").write_text("".join(f"images/{i}.jpg {i % 2} {1 - i % 2}\n" for i in items))
    return base


@pytest.mark.parametrize("cache", [True, False])
def test_an_exif_orientation_is_not_applied_and_a_load_warns_once_naming_the_first_file(tmp_path, cache):
    base = _turned_photo_dataset(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_listfile_dataset(tmp_path, folder="TURNED", image_size=8, cache=cache, cache_dir=tmp_path / "c")
        for split in data.splits.values():
            split.batch(torch.arange(len(split)))
    turned = [str(w.message) for w in caught if "EXIF orientation" in str(w.message)]
    first = rf"{base / 'train.txt'}, line 3: image {base / 'images' / '2.jpg'} \(orientation 6\)"
    if cache:                                              # the load reads every file: one warning, with the count
        assert len(turned) == 1, turned
        assert re.search(rf"^2 images carry an EXIF orientation other than 1 \(upright\), the first {first}: "
                         rf"the pixels used are the stored ones, not the turned view", turned[0]), turned[0]
    else:                                                  # read on demand: once per split, at the first met
        assert len(turned) == 3 and re.search(rf"the first {first}", turned[0]), turned
    with Image.open(base / "images" / "2.jpg") as stored:    # the stored pixels, as the published code reads them
        expected = transforms.ToTensor()(stored.convert("RGB").resize((8, 8), Image.BILINEAR))
    assert (data.train[2][0] - expected).abs().max() <= 1 / 255 + 1e-6
