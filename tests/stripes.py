"""Tiny data and models shared by the attack and defense tests (the fixtures live in conftest.py)."""

import torch

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


def fresh_model(seed=0, bits=BITS):
    """An untrained small CNN in eval mode."""
    torch.manual_seed(seed)
    return HashingModel("small_cnn", bits=bits, in_channels=1).eval()


def images(n=6, seed=0):
    """Random [0, 1] images (n, 1, 16, 16)."""
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))
