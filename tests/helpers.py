"""Tiny data, models and code tables shared by the tests (the fixtures live in conftest.py)."""

import torch

from advhash.data import HashingData, InMemorySplit
from advhash.models import HashingModel

BITS = 16


class StripesSplit(torch.utils.data.Dataset):
    """A tiny in-memory split: class c brightens horizontal stripe c a little, over strong noise."""

    def __init__(self, n=128, classes=4, seed=0, signal=0.2, noise=0.6):
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, classes, (n,), generator=g)
        self.labels = torch.nn.functional.one_hot(y, classes).float()
        self.images = torch.rand(n, 1, 16, 16, generator=g) * noise
        for c in range(classes):
            self.images[y == c, :, 4 * c:4 * c + 4, :] += signal

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i], i


def stripes(n, *, classes=4, seed=0, multi_label=False, signal=0.2, noise=0.6):
    """A tiny ``InMemorySplit`` stored as uint8: class c brightens horizontal stripe c a little, over strong
    noise; one class an item, or about 40 % of the classes with ``multi_label``."""
    g = torch.Generator().manual_seed(seed)
    if multi_label:
        labels = (torch.rand(n, classes, generator=g) < 0.4).float()
    else:
        labels = torch.nn.functional.one_hot(torch.randint(0, classes, (n,), generator=g), classes).float()
    pixels = torch.rand(n, 1, 16, 16, generator=g) * noise
    for c in range(classes):
        pixels[labels[:, c] > 0, :, 4 * c:4 * c + 4, :] += signal
    return InMemorySplit((pixels * 255).round().to(torch.uint8), labels)


def fresh_model(seed=0, bits=BITS):
    """An untrained small CNN in eval mode."""
    torch.manual_seed(seed)
    return HashingModel("small_cnn", bits=bits, in_channels=1).eval()


def images(n=6, seed=0):
    """Random [0, 1] images (n, 1, 16, 16)."""
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def random_table(seed, *, n=10, m=30, classes=5, bits=8, rate=0.3):
    """Random {-1, +1} table codes and multi-hot labels, and query labels that include an item with
    no positives (a class no table item carries, and an empty label) and one with no negatives."""
    g = torch.Generator().manual_seed(seed)
    table_codes = torch.where(torch.rand(m, bits, generator=g) < 0.5, -1.0, 1.0)
    table_labels = (torch.rand(m, classes, generator=g) < rate).float()
    table_labels[:, -1] = 0                       # the last class is carried by no table item
    table_labels[table_labels.sum(1) == 0, 0] = 1  # every table item has a label
    labels = (torch.rand(n, classes, generator=g) < rate).float()
    for row in (labels.sum(1) == 0).nonzero().flatten().tolist():
        labels[row, row % (classes - 1)] = 1      # the rest have a label
    labels[0] = 0                                 # no positives
    labels[1] = torch.eye(classes)[-1]            # no positives either
    labels[2] = 1                                 # shares a class with every labelled table item
    return labels, table_codes, table_labels


def stripes_data(train, query=None):
    """Stripes ``HashingData`` whose database is the training split (queries: ``query`` or the training split)."""
    return HashingData("stripes", train=train, query=query or train, database=train, class_names=list("abcd"))


def all_images(split):
    """Every image of a split, (n, C, H, W) in [0, 1]."""
    return split.batch(torch.arange(len(split)))[0]


def sign_codes(values):
    """sign with sign(0) := +1, written out (the reference the library's binarize is checked against)."""
    return torch.where(values >= 0, 1.0, -1.0)


def same_weights(first, second):
    """Whether two models hold bit-identical parameters and buffers."""
    return all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def stripes_pairs(n, *, classes=4, tags_per_class=3, seed=0, multi_label=False, signal=0.4):
    """Stripes images with a text modality: class c turns on tags 3c..3c+2 (each with probability 0.8), plus
    two noise tags on at random. An ``InMemorySplit`` with ``texts`` (n, 3 classes + 2)."""
    split = stripes(n, classes=classes, seed=seed, multi_label=multi_label, signal=signal)
    g = torch.Generator().manual_seed(seed + 100)
    class_tags = split.labels.repeat_interleave(tags_per_class, dim=1) * (torch.rand(n, classes * tags_per_class,
                                                                                     generator=g) < 0.8)
    noise_tags = (torch.rand(n, 2, generator=g) < 0.3).float()
    return InMemorySplit(split.images, split.labels, texts=torch.cat([class_tags, noise_tags], dim=1))
