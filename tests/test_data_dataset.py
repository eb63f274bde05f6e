"""The split abstraction (advhash.data.dataset): in-memory items and fast batches agree, bad labels and
mismatched splits are refused."""

import numpy as np
import pytest
import torch

from advhash.data import HashingData, InMemorySplit, check_binary_labels


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
