"""The split abstraction (advhash.data.dataset): in-memory items and fast batches agree, bad labels and
mismatched splits are refused, and every image mode is read as a viewer shows it (with or without the cache) or
refused naming the file and its list-file line."""

import numpy as np
import pytest
import torch
from PIL import Image

from advhash.data import HashingData, ImageFileSplit, InMemorySplit, check_binary_labels, load_listfile_dataset
from advhash.data.cache import cached_split


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


@pytest.mark.parametrize("bad", [0.5, 2, -1, 255])
def test_a_split_refuses_non_binary_labels_naming_the_value_and_row(bad):
    labels = np.eye(3)
    labels[2, 1] = bad                        # with -1, items with no label in common would count as relevant
    with pytest.raises(ValueError, match=rf"labels from a InMemorySplit must be binary \(0/1 multi-hot\); found "
                                         rf"values .*{bad}.* in row 2"):
        InMemorySplit(np.zeros((3, 1, 2, 2), np.uint8), labels)
    with pytest.raises(ValueError, match="must be binary"):
        InMemorySplit(np.zeros((3, 1, 2, 2), np.uint8), torch.as_tensor(labels).float())


# ------------------------------------------------ every image mode: the pixels a viewer shows on a white page, by hand

def _composite_on_white(rgb, alpha):
    """What a viewer draws for colour ``rgb`` (H, W, 3) at opacity ``alpha`` (H, W) over a white page."""
    a = alpha[..., None] / 255.0
    return np.round(rgb * a + 255 * (1 - a)).astype(np.uint8)


MODES = {"grey.png": "L", "bilevel.png": "1", "rgb.png": "RGB", "grey16.png": "I;16", "grey16.tif": "I;16",
         "palette.png": "P", "palette-transparent.png": "P", "rgba.png": "RGBA", "grey-alpha.png": "LA",
         "grey-keyed.png": "L", "grey16-keyed.png": "I;16", "cmyk.tif": "CMYK", "cmyk-adobe.jpg": "CMYK"}


def _mode_files(folder):
    """{name: (file, the uint8 (H, W, 3) a viewer shows)} for one 6x6 image of each mode, written as a user's
    tools write them; every expected array is built by hand from the numbers written."""
    g = np.random.default_rng(7)
    grey = g.integers(0, 256, (6, 6), dtype=np.uint8)
    rgb = g.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    alpha = g.integers(0, 256, (6, 6), dtype=np.uint8)
    alpha[0, :3] = (0, 255, 128)                                         # transparent, opaque, half
    deep = g.integers(0, 65536, (6, 6), dtype=np.uint16)
    deep[0, :4] = (65535, 32896, 300, 255)                               # white, mid grey, two near-black
    palette = g.integers(0, 256, (4, 3), dtype=np.uint8)
    indices = g.integers(0, 4, (6, 6), dtype=np.uint8)
    cmyk = np.zeros((6, 6, 4), dtype=np.uint8)
    cmyk[:3], cmyk[3:, :3], cmyk[3:, 3:] = (0, 0, 0, 0), (100, 50, 0, 60), (0, 0, 0, 255)   # paper, a blue, black
    bits = g.integers(0, 2, (6, 6)).astype(bool)
    cases = {}

    def save(name, image, expected, **options):
        path = folder / name
        image.save(path, **options)
        cases[name] = (path, expected)
        with Image.open(path) as written:                                # the mode the file is read in
            assert written.mode == MODES[name], f"{name} reads as {written.mode}"

    save("grey.png", Image.fromarray(grey), np.repeat(grey[..., None], 3, axis=2))
    save("bilevel.png", Image.fromarray(bits), np.repeat(np.where(bits, 255, 0)[..., None], 3, axis=2).astype(np.uint8))
    save("rgb.png", Image.fromarray(rgb), rgb)
    save("grey16.png", Image.fromarray(deep), np.repeat((deep // 256).astype(np.uint8)[..., None], 3, axis=2))
    save("grey16.tif", Image.fromarray(deep), np.repeat((deep // 256).astype(np.uint8)[..., None], 3, axis=2))
    indexed = Image.fromarray(indices, mode="L").convert("P")
    indexed.putpalette(palette.ravel().tolist())
    save("palette.png", indexed, palette[indices])
    shown = palette[indices].copy()
    shown[indices == 2] = 255                                            # index 2 is transparent: the white page
    save("palette-transparent.png", indexed, shown, transparency=2)
    save("rgba.png", Image.fromarray(np.dstack([rgb, alpha])), _composite_on_white(rgb, alpha))
    save("grey-alpha.png", Image.fromarray(np.dstack([grey, alpha])),
         _composite_on_white(np.repeat(grey[..., None], 3, axis=2), alpha))
    keyed = np.repeat(grey[..., None], 3, axis=2)
    keyed[grey == grey[0, 0]] = 255                                      # a transparent grey level (tRNS)
    save("grey-keyed.png", Image.fromarray(grey), keyed, transparency=int(grey[0, 0]))
    paper = np.round((255 - cmyk[..., :3].astype(float)) * (255 - cmyk[..., 3:].astype(float)) / 255)
    keyed16 = np.repeat((deep // 256).astype(np.uint8)[..., None], 3, axis=2)
    keyed16[deep == deep[0, 1]] = 255                                    # a transparent 16-bit grey level
    save("grey16-keyed.png", Image.fromarray(deep), keyed16, transparency=int(deep[0, 1]))
    save("cmyk.tif", Image.fromarray(cmyk, mode="CMYK"), paper.astype(np.uint8))
    save("cmyk-adobe.jpg", Image.fromarray(cmyk, mode="CMYK"), paper.astype(np.uint8), quality=100)
    with Image.open(folder / "cmyk-adobe.jpg") as adobe:
        assert "adobe" in adobe.info, "an Adobe JPEG: its CMYK is stored inverted"
    return cases


@pytest.mark.parametrize("cached", [False, True])
@pytest.mark.parametrize("name", list(MODES))
def test_every_image_mode_gives_the_pixels_a_viewer_shows(tmp_path, name, cached):
    path, expected = _mode_files(tmp_path)[name]
    split = ImageFileSplit([path], np.eye(1), image_size=6)
    if cached:
        split = cached_split(split, cache_dir=tmp_path / "cache")
    shown = (split[0][0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()          # (6, 6, 3)
    tolerance = 2 if name.endswith(".jpg") else 0                        # JPEG is lossy by a level or two
    difference = np.abs(shown.astype(int) - expected.astype(int)).max()
    assert difference <= tolerance, f"{name}: off by {difference} levels\n{shown[..., 0]}\n{expected[..., 0]}"


@pytest.mark.parametrize("cached", [False, True])
@pytest.mark.parametrize("name, array, mode", [
    ("depth32.tif", np.arange(36, dtype=np.int32).reshape(6, 6) * 1000, "I"),
    ("float.tif", np.linspace(0, 1, 36, dtype=np.float32).reshape(6, 6), "F"),
], ids=["32-bit", "float"])
def test_an_image_without_a_white_level_is_refused_naming_its_list_line(tmp_path, cached, name, array, mode):
    base = tmp_path / "TOY"
    (base / "images").mkdir(parents=True)
    for plain in ("a.png", "b.png"):
        Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(base / "images" / plain)
    Image.fromarray(array).save(base / "images" / name)
    for stem, files in {"train": ["a.png"], "test": ["b.png", name], "database": ["a.png"]}.items():
        (base / f"{stem}.txt").write_text("".join(f"images/{file} {i % 2} {1 - i % 2}\n"
                                                  for i, file in enumerate(files)))
    with pytest.raises(ValueError, match=rf"test.txt, line 2: image .*{name} has PIL mode '{mode}' \(.*no fixed white "
                                         rf"level\); save it as an 8- or 16-bit PNG .* or remove its line"):
        data = load_listfile_dataset(tmp_path, folder="TOY", image_size=6, cache=cached, cache_dir=tmp_path / "c")
        data.query[1]
