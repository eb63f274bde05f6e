"""Small shared helpers: seeding, progress bars, devices."""

from __future__ import annotations

import functools
import os
import random
from typing import Any

import numpy as np
import torch
from tqdm import tqdm


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) so that a CPU run repeats bit for bit."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


PROGRESS_TTY = "ADVHASH_PROGRESS_TTY"   # set by advhash.pipeline when a stage runs on a terminal: the terminal's path
PROGRESS_LINE = "ADVHASH_PROGRESS_LINE"  # set with it: the terminal line below which the stage's loop bars go


@functools.lru_cache(maxsize=None)
def _open_terminal(path: str):
    """The terminal ``path`` opened for writing, once per process: every bar shares the handle (a handle per bar
    would be left to the garbage collector)."""
    return open(path, "w")


def progress(iterable=None, **kwargs):
    """A tqdm progress bar (elapsed time, rate and estimate of the rest) that shows on a terminal and stays quiet
    elsewhere (CI, papermill, nbval, a rendered report).

    ``disable=None`` is tqdm's own rule for "no bar when the output is not a TTY"; pass ``disable=False`` to
    force one. Inside a notebook run by ``advhash.pipeline`` from a terminal (``dvc repro``), the environment
    variable ``ADVHASH_PROGRESS_TTY`` names that terminal: the bar is drawn there, never into the report, on the
    lines below ``ADVHASH_PROGRESS_LINE`` (nested bars one line further each).
    """
    terminal = os.environ.get(PROGRESS_TTY)
    if terminal and "file" not in kwargs and kwargs.get("disable") is None:
        try:
            kwargs["file"], kwargs["disable"] = _open_terminal(terminal), False
        except OSError:
            pass                                          # the terminal went away: no bar
        else:                                             # below the stage's own bar (two stages share a terminal
            line = int(os.environ.get(PROGRESS_LINE) or 0)   # under `make repro`: each has its lines)
            kwargs.setdefault("position", line + sum(not bar.disable for bar in list(tqdm._instances)))
    kwargs.setdefault("disable", None)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


def check_choice(name: str, value: Any, choices, *, hint: str = "") -> Any:
    """``value`` when it is one of ``choices``, else a ValueError that names the argument, its choices and what
    was given (plus ``hint``, e.g. what each choice means): the one "must be one of" check of the library."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}{hint}")
    return value


def check_code_lengths(name: str, subset, bits_list, *, featured: int) -> list[int]:
    """``subset`` (the code lengths a profile trains some models at, e.g. ``saat.defense_bits``) as a list when it
    is a part of ``bits_list`` holding the ``featured`` code length, where the figures and the findings are; else a
    ValueError naming the setting, both lists and the fix."""
    subset, bits_list = list(subset), list(bits_list)
    if not set(subset) <= set(bits_list) or featured not in subset:
        raise ValueError(f"{name} {subset} must be code lengths of bits_list {bits_list} and hold the featured "
                         f"{featured} bits (the figures and the findings are there); e.g. {name}: [{featured}]")
    return subset


def check_images(images: Any, *, what: str = "images") -> None:
    """Images must be a floating tensor (N, C, H, W) of finite values in [0, 1]: the error names what is wrong
    (NaN / inf, 0-255 pixels) instead of letting it surface later as a failed assertion or a NaN result."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        kind = f"{images.dtype} tensor" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{what} must be a float tensor with values in [0, 1] (e.g. uint8 / 255); got a {kind}")
    if not images.numel():
        return
    finite = torch.isfinite(images)
    if not finite.all():
        bad = (~finite).flatten(1).any(1).nonzero().flatten().tolist() if images.ndim > 1 else []
        raise ValueError(f"{what} hold {int((~finite).sum())} NaN or infinite values (images {bad[:5]}); "
                         "fix the input: images are floats in [0, 1]")
    if images.min() < 0 or images.max() > 1:
        raise ValueError(f"{what} must have values in [0, 1] (normalization happens inside the model); got "
                         f"range [{images.min().item():.3g}, {images.max().item():.3g}]")


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
