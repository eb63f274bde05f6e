"""Glue between ``params.yaml``, papermill and the notebooks.

Each notebook's source is a jupytext percent script, ``notebooks/01_deep_hashing.py``; the
``notebooks/01_deep_hashing.ipynb`` beside it (what nbval and JupyterLab open) is built from it by
``python -m advhash.pipeline build`` (``make notebooks``), and ``build --check`` names the ones that
are stale.

``python -m advhash.pipeline run 01_deep_hashing`` builds the notebook from its ``.py`` and executes
it with papermill (kernel ``python3``, the one ipykernel installs in every environment), injecting the
``deep_hashing`` section of ``params.yaml`` (see ``NOTEBOOK_SECTIONS``) into its ``parameters`` cell,
and writes the rendered notebook to ``reports/``. The DVC stages in ``dvc.yaml`` call exactly this, so
they depend on the ``.py`` only.

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
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

KERNEL_NAME = "python3"

# the notebook metadata of every built notebook: nothing that depends on the machine that built it
NOTEBOOK_METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": KERNEL_NAME},
    "language_info": {"name": "python"},
}

# notebook file stem -> section of params.yaml that holds its parameters
NOTEBOOK_SECTIONS = {
    "01_deep_hashing": "deep_hashing",
    "02_hag": "hag",
    "03_cmla": "cmla",
    "04_saat": "saat",
    "05_cgat": "cgat",
}
# notebook parameters that no profile sets: the switch of the claims, off only in the CI smoke of the paper path
# (tests/test_end_to_end.py), where the data are too few for any claim to hold
CI_ONLY_PARAMETERS = ("check_claims",)


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


def build_notebook(stem: str, root: str | os.PathLike | None = None):
    """The notebook built from ``notebooks/<stem>.py`` (jupytext percent format), as an
    ``nbformat.NotebookNode``: the cells and their tags as in the source (the ``parameters`` tag is
    what papermill looks for), no outputs, fixed cell ids and metadata, so that the same source always
    gives the same bytes."""
    import jupytext
    import nbformat

    root = project_root(root)
    if stem not in NOTEBOOK_SECTIONS:
        raise KeyError(f"unknown notebook {stem!r}; known: {sorted(NOTEBOOK_SECTIONS)}")
    source = root / "notebooks" / f"{stem}.py"
    if not source.is_file():
        raise FileNotFoundError(f"no notebook source {source}: each notebook is written as a jupytext percent script")
    # config=None: a jupytext.toml (JupyterLab's pairing) does not change what is built
    notebook = jupytext.read(source, fmt="py:percent", config=None)
    notebook.metadata = nbformat.from_dict(NOTEBOOK_METADATA)   # a copy; drops jupytext's own metadata
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    width = max(2, len(str(len(notebook.cells) - 1)))
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index:0{width}d}"   # jupytext draws random ids
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return notebook


def _notebook_text(notebook) -> str:
    """What ``nbformat.write`` puts in a file: nbformat's sorted, indented JSON and a trailing newline."""
    import nbformat

    text = nbformat.writes(notebook)
    return text if text.endswith("\n") else text + "\n"


def write_notebooks(root: str | os.PathLike | None = None, check: bool = False) -> list[str]:
    """Build ``notebooks/<stem>.ipynb`` from ``notebooks/<stem>.py`` for every notebook of the pipeline.
    Returns the stems whose ``.ipynb`` was out of date (and is now rewritten); with ``check=True``
    nothing is written, and the list names the stale ones."""
    import nbformat

    root = project_root(root)
    stale = []
    for stem in NOTEBOOK_SECTIONS:
        notebook = build_notebook(stem, root)
        path = root / "notebooks" / f"{stem}.ipynb"
        if path.is_file() and path.read_text(encoding="utf-8") == _notebook_text(notebook):
            continue
        stale.append(stem)
        if check:
            continue
        # atomically, so that a JupyterLab or nbval reading the folder never sees half a notebook
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            nbformat.write(notebook, file)
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(temporary, path)
    return stale


def run_notebook(stem: str, *, root: str | os.PathLike | None = None, params_path: str | None = None,
                 output: str | os.PathLike | None = None) -> Path:
    """Execute the notebook built from ``notebooks/<stem>.py`` with its params.yaml section into ``output``
    (default ``reports/<stem>.ipynb``). The committed ``notebooks/<stem>.ipynb`` is not read."""
    import papermill
    from papermill.iorw import write_ipynb

    root = project_root(root)
    if stem not in NOTEBOOK_SECTIONS:
        raise KeyError(f"unknown notebook {stem!r}; known: {sorted(NOTEBOOK_SECTIONS)}")
    parameters = read_params(NOTEBOOK_SECTIONS[stem], params_path or root / "params.yaml")
    notebook = build_notebook(stem, root)
    output = Path(output) if output is not None else root / "reports" / f"{stem}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="advhash-") as folder:
        built = Path(folder) / f"{stem}.ipynb"
        built.write_text(_notebook_text(notebook), encoding="utf-8")
        rendered = papermill.execute_notebook(str(built), str(output), parameters=parameters,
                                              kernel_name=KERNEL_NAME, cwd=str(root), progress_bar=False,
                                              log_output=False)
    # papermill records the temporary file it ran; the report names the source instead
    rendered.metadata.papermill["input_path"] = str(root / "notebooks" / f"{stem}.py")
    write_ipynb(rendered, str(output))
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
    build = commands.add_parser("build", help="build notebooks/*.ipynb from their notebooks/*.py sources")
    build.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if a notebook differs from what its source builds")
    run = commands.add_parser("run", help="execute a notebook (built from its .py) with its params.yaml section "
                                          "into reports/")
    run.add_argument("notebook", choices=sorted(NOTEBOOK_SECTIONS))
    run.add_argument("--params", default=None, help="params file (default: params.yaml at the project root)")
    profile = commands.add_parser("profile", help="copy profiles/<name>.yaml over params.yaml")
    profile.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "build":
        stale = write_notebooks(check=args.check)
        paths = [f"notebooks/{stem}.ipynb" for stem in stale]
        if args.check and stale:
            sys.exit(f"out of date with their notebooks/*.py sources: {', '.join(paths)}; run `make notebooks` "
                     f"(python -m advhash.pipeline build)")
        for path in paths:
            print(f"wrote {path}")
    elif args.command == "run":
        print(run_notebook(args.notebook, params_path=args.params))
    else:
        print(use_profile(args.name))


if __name__ == "__main__":
    main()
