"""Glue between ``params.yaml``, papermill and the notebooks.

``python -m advhash.pipeline run 01_deep_hashing`` executes ``notebooks/01_deep_hashing.ipynb`` with
papermill (kernel ``python3``, the one ipykernel installs in every environment), injecting the
``deep_hashing`` section of ``params.yaml`` (see ``NOTEBOOK_SECTIONS``) into its ``parameters`` cell,
and writes the rendered notebook to ``reports/``. The DVC stages in ``dvc.yaml`` call exactly this.

``python -m advhash.pipeline profile paper`` copies ``profiles/paper.yaml`` over ``params.yaml``:
profiles are presets (``default`` for a 2-core CPU, ``paper`` for a GPU and the real datasets), and
``dvc repro`` then reruns what the changed parameters touch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

KERNEL_NAME = "python3"

# notebook file stem -> section of params.yaml that holds its parameters
NOTEBOOK_SECTIONS = {
    "01_deep_hashing": "deep_hashing",
    "02_hag": "hag",
    "03_cmla": "cmla",
    "04_saat": "saat",
    "05_cgat": "cgat",
}


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root: the nearest folder at or above ``start`` (default: cwd) holding
    ``dvc.yaml`` and ``pyproject.toml``. Notebooks run from ``notebooks/`` (nbval) or the root
    (papermill), and resolve every path against this."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() and (folder / "pyproject.toml").is_file():
            return folder
    raise FileNotFoundError(f"no advhash project root (a folder with dvc.yaml and pyproject.toml) at or above {here}")


def read_params(section: str, params_path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    """The ``section`` of a params file, as a flat dict of papermill parameters."""
    params = yaml.safe_load(Path(params_path).read_text())
    if section not in params:
        raise KeyError(f"{params_path} has no section {section!r}; sections: {sorted(params)}")
    return params[section]


def run_notebook(stem: str, *, root: str | os.PathLike | None = None, params_path: str | None = None) -> Path:
    """Execute ``notebooks/<stem>.ipynb`` with its params.yaml section into ``reports/<stem>.ipynb``."""
    import papermill

    root = project_root(root)
    if stem not in NOTEBOOK_SECTIONS:
        raise KeyError(f"unknown notebook {stem!r}; known: {sorted(NOTEBOOK_SECTIONS)}")
    parameters = read_params(NOTEBOOK_SECTIONS[stem], params_path or root / "params.yaml")
    output = root / "reports" / f"{stem}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(root / "notebooks" / f"{stem}.ipynb"), str(output), parameters=parameters,
                               kernel_name=KERNEL_NAME, cwd=str(root), progress_bar=False, log_output=False)
    return output


def use_profile(name: str, *, root: str | os.PathLike | None = None) -> Path:
    """Copy ``profiles/<name>.yaml`` over ``params.yaml``."""
    root = project_root(root)
    source = root / "profiles" / f"{name}.yaml"
    if not source.is_file():
        known = sorted(p.stem for p in (root / "profiles").glob("*.yaml"))
        raise FileNotFoundError(f"no profile {source}; known profiles: {known}")
    shutil.copyfile(source, root / "params.yaml")
    return root / "params.yaml"


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
    keeps the file identical across runs that agree to that precision."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w") as file:
        json.dump(_rounded(data, digits), file, indent=2, sort_keys=True)
        file.write("\n")
    os.replace(temporary, path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m advhash.pipeline", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute a notebook with its params.yaml section into reports/")
    run.add_argument("notebook", choices=sorted(NOTEBOOK_SECTIONS))
    run.add_argument("--params", default=None, help="params file (default: params.yaml at the project root)")
    profile = commands.add_parser("profile", help="copy profiles/<name>.yaml over params.yaml")
    profile.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "run":
        print(run_notebook(args.notebook, params_path=args.params))
    else:
        print(use_profile(args.name))


if __name__ == "__main__":
    main()
