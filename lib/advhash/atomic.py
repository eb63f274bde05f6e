"""Files written so that a reader sees the old content or the new one, never half of one: through a temporary
file in the target's folder and ``os.replace``. A failed write or copy leaves no temporary behind.
No advhash import and no torch: the pipeline's lock and publishing use it before papermill or torch load."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["copy_atomically", "write_atomically"]


def copy_atomically(source: str | os.PathLike, target: str | os.PathLike, *, suffix: str = "") -> None:
    """Copy the file ``source`` to ``target`` (its mode too) through a temporary ``.<target name>.*<suffix>`` beside
    it and ``os.replace``; across file systems too. ``suffix``: what a caller's clean-up of interrupted writes
    looks for (the checkpoints' ``.tmp``)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(handle)
    try:
        shutil.copy2(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in its folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
