"""Small shared helpers: seeding, progress bars, devices."""

from __future__ import annotations

import random

import numpy as np
import torch
from tqdm import tqdm


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) so that a CPU run repeats bit for bit."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def progress(iterable=None, **kwargs):
    """A tqdm progress bar that shows on a terminal and stays quiet elsewhere (CI, papermill, nbval).

    ``disable=None`` is tqdm's own rule for "no bar when the output is not a TTY"; pass
    ``disable=False`` to force one.
    """
    kwargs.setdefault("disable", None)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``"auto"`` or None picks CUDA when available, else CPU. Asking for CUDA where there is none is an error
    that says so, instead of torch's failure at the first tensor moved there. On CUDA, ``cudnn.benchmark`` is
    switched on (fixed input sizes: cuDNN picks its fastest kernels)."""
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asks for CUDA, but this torch ({torch.__version__}, CUDA build "
                         f"{torch.version.cuda}) sees no CUDA device; set device to \"auto\" or \"cpu\"")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device
