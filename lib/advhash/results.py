"""Results files, the one module that writes them and reads the published tables they face.

- ``write_json``      a metrics file: sorted, rounded JSON, written atomically (the detailed one and the headline)
- ``write_headline``  a stage's few headline numbers at one code length, what ``dvc metrics show`` prints
- ``nested_metrics``  a results table as the nested dict {name: {bits: value}} of a metrics file
- ``write_curves``    one CSV per curve for ``dvc plots``
- ``read_published``  a published table of ``notebooks/published/`` (CSV, ``#`` provenance comments)

    write_json(dict(map_at_k=nested_metrics(results, "map", by="method")), run.metrics_dir / "01_deep_hashing.json")
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["write_json", "write_headline", "nested_metrics", "write_curves", "read_published"]


def _rounded(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _rounded(item, digits) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item, digits) for item in value]
    return value


def write_json(data: Any, path: str | os.PathLike, *, digits: int = 6) -> Path:
    """Write DVC metrics (or any result) as sorted, rounded JSON, atomically. Rounding to ``digits``
    keeps the file identical across runs that agree to that precision; a NaN or infinity is written as null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w") as file:
        json.dump(_rounded(data, digits), file, indent=2, sort_keys=True)
        file.write("\n")
    os.replace(temporary, path)
    return path


def write_headline(values: dict, path: str | Path, *, bits: int, limit: int = 20) -> Path:
    """Write a stage's headline metrics, the few numbers ``dvc metrics show`` and ``dvc metrics diff`` print (the
    detailed JSON stays beside them as a plain output): each value is a number, or a nested dict {name: {bits:
    value}} (:func:`nested_metrics`) whose values at code length ``bits`` are taken. At most ``limit`` numbers, so
    that the table fits a terminal; more is an error naming the count."""
    headline = {}
    for key, value in values.items():
        if isinstance(value, dict):
            headline[key] = {name: per_bits[str(bits)] for name, per_bits in value.items() if str(bits) in per_bits}
        else:
            headline[key] = value
    count = sum(len(value) if isinstance(value, dict) else 1 for value in headline.values())
    if count > limit:
        raise ValueError(f"a headline holds at most {limit} numbers (a terminal's width); got {count}: keep the "
                         "others in the detailed metrics file")
    return write_json(dict(bits=bits, **headline), Path(path))


def nested_metrics(frame: pd.DataFrame, column: str, *, by: str, within: str = "bits") -> dict[str, dict[str, float]]:
    """``{row[by]: {str(row[within]): row[column]}}``: a results table as the nested dict of a metrics
    file (e.g. mAP per method and code length)."""
    return {str(name): {str(key): float(value) for key, value in group.set_index(within)[column].items()}
            for name, group in frame.groupby(by)}


def write_curves(frame: pd.DataFrame, folder: str | Path, *, by: str | list[str], name: str,
                 columns: list[str]) -> None:
    """One CSV per group of ``frame`` (``by``) for ``dvc plots``: ``folder / name.format(*group_key)``,
    with ``columns``, floats to 6 decimals."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for key, group in frame.groupby(by):
        key = key if isinstance(key, tuple) else (key,)
        group[columns].to_csv(folder / name.format(*key), index=False, float_format="%.6f")


def read_published(path: str | Path) -> pd.DataFrame:
    """A published table shipped in ``notebooks/published/`` (CSV, ``#`` comments); code-length columns
    ("16", "32", ...) become integers so they line up with ours."""
    table = pd.read_csv(path, comment="#")
    table.columns = [int(c) if c.isdigit() else c for c in table.columns]
    return table
