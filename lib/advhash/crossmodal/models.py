"""Cross-modal hashing networks: an image network and a text network mapping both modalities into one
Hamming space (DCMH, Jiang and Li, CVPR 2017; SSAH; CMLA attacks them).

- ``TextHashingModel``: DCMH's text network, the tag bag-of-words through a hidden layer of 8192 ReLU
  units to K linear outputs (the published code writes it as two 1-D convolutions over the whole
  vocabulary, which is this pair of fully connected layers).
- ``CrossModalHashing``: the pair (``image``: an ``advhash.models.HashingModel``, ``text``), saved and
  loaded as one module.

Both expose the same interface as the image models: ``hash_logits(x) -> z`` (N, K), ``forward(x, scale)
-> tanh(scale z)``, ``codes(x) -> sign(z)`` and ``bits``, so ``advhash.train.encode`` and the metrics
work on either modality.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..models import HashingModel, binarize
from ..utils import check_choice


class TextHashingModel(nn.Module):
    """Tag bag-of-words ``t in R^T -> z = W2 relu(W1 t + c1) + c2 in R^K`` (DCMH's text network).

    Args:
        text_dim: T, the size of the tag vocabulary.
        bits: code length K.
        hidden: width of the hidden layer (DCMH: 8192).

    Shape: texts (N, T) float -> (N, bits).
    """

    def __init__(self, text_dim: int, *, bits: int, hidden: int = 8192):
        super().__init__()
        if not isinstance(text_dim, int) or text_dim <= 0:
            raise ValueError(f"text_dim (the tag vocabulary size) must be a positive integer, got {text_dim!r}")
        if not isinstance(bits, int) or bits <= 0:
            raise ValueError(f"bits must be a positive integer (16, 32, 48, 64 in the papers), got {bits!r}")
        self.config: dict[str, Any] = dict(text_dim=text_dim, bits=bits, hidden=hidden)
        self.bits, self.text_dim = bits, text_dim
        self.layers = nn.Sequential(nn.Linear(text_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, bits))

    def hash_logits(self, texts: torch.Tensor) -> torch.Tensor:
        """The pre-activation z (N, bits) of tag vectors (N, text_dim)."""
        if texts.ndim != 2 or texts.shape[1] != self.text_dim:
            raise ValueError(f"texts must be (N, {self.text_dim}) tag vectors; got {tuple(texts.shape)}")
        return self.layers(texts)

    def forward(self, texts: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """Relaxed codes h = tanh(scale * z), shape (N, bits)."""
        return torch.tanh(scale * self.hash_logits(texts))

    @torch.no_grad()
    def codes(self, texts: torch.Tensor) -> torch.Tensor:
        """Binary codes sign(z) in {-1, +1}, shape (N, bits)."""
        return binarize(self.hash_logits(texts))


class PairedModalities:
    """``modality(name)``: the ``image`` or ``text`` network of a cross-modal model (DCMH's, SSAH's)."""

    def modality(self, name: str) -> nn.Module:
        """The network of modality ``name`` ("image" or "text")."""
        check_choice("modality", name, ("image", "text"))
        return self.image if name == "image" else self.text


class CrossModalHashing(PairedModalities, nn.Module):
    """An image network and a text network sharing one code length.

    Args:
        backbone, in_channels, input_size, weights: the image network (``advhash.models.HashingModel``; weights:
            its pretrained backbone, None for a random init).
        text_dim: the tag vocabulary size; bits: K; text_hidden: the text network's hidden width.
    """

    def __init__(self, *, bits: int, text_dim: int, backbone: str = "small_cnn", in_channels: int = 3,
                 input_size: int | None = None, text_hidden: int = 8192, weights=None):
        super().__init__()
        self.image = HashingModel(backbone, bits=bits, in_channels=in_channels, input_size=input_size,
                                  weights=weights)
        self.text = TextHashingModel(text_dim, bits=bits, hidden=text_hidden)
        self.bits = bits
        self.config: dict[str, Any] = dict(image=self.image.config, text=self.text.config)
