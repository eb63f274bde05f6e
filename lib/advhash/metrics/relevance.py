"""Relevance, the one definition every metric and every pairwise objective here uses.

Two items are relevant (similar) when their label vectors share a label: S_ij = 1[y_i . y_j > 0]
(``docs/methods.md``, section Conventions). The retrieval metrics score rankings with it (for the
ranked items of up to 126 labels they read the same relation from packed label bits,
``hamming.ranked_relevance``), and the pairwise losses (DPH, DPSH, HashNet, DCMH, SSAH, CMLA, ATRDH) and the
representative codes (CgAT's center codes, SAAT's mainstay codes) take their similarity matrix from
:func:`relevance`.
"""

from __future__ import annotations

import numpy as np
import torch


def relevance(labels_a, labels_b) -> torch.Tensor:
    """S_ij = 1[y_i . y_j > 0]: bool (n_a, n_b), True where item i of ``labels_a`` and item j of ``labels_b``
    share a label.

    Conventions:

    - labels are multi-hot {0, 1} matrices, one row per item, (n_a, L) and (n_b, L) over the same L classes:
      torch tensors (on one device) or numpy arrays, of any dtype (bool, integer, float). The entries are not
      checked here (this runs inside training loops); the datasets and the metrics check them on entry;
    - an all-zero label row (an unlabelled item) shares no label, so it is relevant to nothing, itself included;
    - the relation is symmetric: ``relevance(b, a)`` is ``relevance(a, b).T``.

    The inner products count shared labels, in float64 when either input is float64 and in float32 otherwise
    (exact for 0/1 entries). The result is on the tensors' device; where 0/1 numbers are needed, cast it
    (``relevance(a, b).float()``, ``.to(dtype)``).

    Raises:
        ValueError: an input that is not 2-D, label widths that differ, or tensors on different devices.

    Example:
        >>> relevance(torch.tensor([[1., 0.], [0., 0.]]), torch.tensor([[1., 1.], [0., 1.]]))
        tensor([[ True, False],
                [False, False]])
    """
    named = {"labels_a": labels_a, "labels_b": labels_b}
    devices = {name: x.device for name, x in named.items() if isinstance(x, torch.Tensor)}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"labels are on different devices ({listing}); move them to one device with .to(device)")
    device = next(iter(devices.values()), None)
    a, b = (x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x)).to(device) for x in named.values())
    for name, x in zip(named, (a, b)):
        if x.ndim != 2:
            raise ValueError(f"{name} must be a 2-D (n, L) multi-hot label matrix, got shape {tuple(x.shape)}; "
                             f"use y[None] for a single row")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"labels_a have L={a.shape[1]} label columns but labels_b have L={b.shape[1]}; both must "
                         f"use the same label vocabulary")
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    return a.to(dtype) @ b.to(dtype).T > 0
