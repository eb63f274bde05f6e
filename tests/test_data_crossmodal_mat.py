"""DCMH-style .mat files (advhash.data.crossmodal_mat): the real MIRFLICKR-25K labels and tags, the image
layouts of the published files, and clear errors."""

import numpy as np
import pytest
import scipy.io
import torch
from helpers import SHARED

from advhash.data import MIRFLICKR24_CLASSES, load_crossmodal_mat, load_dataset, read_crossmodal_mat

MIRFLICKR = SHARED / "data" / "mirflickr25k-labels-tags"


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
