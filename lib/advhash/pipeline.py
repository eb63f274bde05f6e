"""Glue between ``params.yaml``, papermill and the notebooks.

Each notebook's source is a jupytext percent script, ``notebooks/01_deep_hashing.py``; the ``.ipynb`` beside it
(what nbval and JupyterLab open) is built from it by ``python -m advhash.pipeline build`` (``make notebooks``);
``build --check`` names the stale ones.

``python -m advhash.pipeline run 01_deep_hashing`` builds the notebook and executes it with papermill, injecting
its section of ``params.yaml`` (``NOTEBOOK_SECTIONS``), checked first against the notebook's parameters cell
(:func:`validate_params`; the whole params file first, :func:`load_params`, read once per run), and writes the
rendered notebook to ``reports/``; the DVC stages call exactly this. One run of a stage at a time
(:func:`advhash.publish.stage_lock`); its results are published only when it succeeds, file by file, replacing only
files the stage owns (:func:`advhash.publish.publish_files`). ``python -m advhash.pipeline publish <staging folder>``
publishes a successful run whose publishing failed (:func:`publish_staged`).

``python -m advhash.pipeline profile paper`` copies ``profiles/paper.yaml`` over ``params.yaml`` (``default``: a
2-core CPU; ``paper``: a GPU and the real datasets). Results files are written by ``advhash.results``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .atomic import write_atomically
from .publish import PublishFailed, StageRunning, publish_results, stage_lock

KERNEL_NAME = "python3"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
LINES_PER_LANE = 3        # terminal lines of one lane of `make repro`: the stage's bar, a loop's bar, a nested one

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
# the tag of the cells that check a notebook's invariants that need enough data (metrics above a random ranking,
# say; not its threat model): run_notebook(..., skip_tags=("invariants",)) leaves them out, which only the CI smoke
# of the paper path does (tests/test_end_to_end.py: its data are too few); the pipeline and nbval always run them
INVARIANTS_TAG = "invariants"
# Parameters every notebook has that come from the params file's ``pipeline`` section, not the notebook's own:
# ``check_invariants`` (False: a run with a failed invariant finishes, keeps its results and lists the failures).
PIPELINE_PARAMETERS = ("check_invariants",)
# The keys of the params file's ``pipeline`` section, each optional: ``threads`` (torch threads of every stage; null:
# the machine's default) and ``check_invariants`` (default true). Any other key is refused (:func:`load_params`).
PIPELINE_KEYS = ("threads", "check_invariants")
# the fix for a params file that is missing, empty or unreadable
RESTORE_PARAMS = ("`python -m advhash.pipeline profile default` restores the default profile (keeping the file it "
                  "replaces under build/params-backups/), or `git checkout params.yaml` the committed one")
# what a successful run leaves in its staging folder for its publishing (publish_staged): stem, folders, report
PUBLISH_PLAN = "publish.json"


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (at any level): PyYAML keeps the last
    silently, so a second ``deep_hashing:`` section would make the first one's settings vanish without a word."""

    def construct_mapping(self, node, deep=False):
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":        # `<<: *defaults` overrides on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = lines.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:                                    # unhashable: the base class names it
                continue
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice in one mapping, on line {first} and on line "
                                f"{key_node.start_mark.line + 1}; YAML would silently keep only the second: merge "
                                f"the two or delete one", key_node.start_mark)
        return super().construct_mapping(node, deep)


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
    """The ``section`` of a params file, as a flat dict of papermill parameters; the whole file is checked first
    (:func:`load_params`)."""
    return params_section(load_params(params_path), section, params_path)


def params_section(params: Mapping[str, Any], section: str, params_path: str | os.PathLike) -> dict[str, Any]:
    """The ``section`` of the params (as :func:`load_params` returned them from ``params_path``)."""
    if section not in params:
        raise KeyError(f"{params_path} has no section {section!r}; sections: {sorted(params)}. Copy it from "
                       f"profiles/default.yaml (or restore the whole file: {RESTORE_PARAMS})")
    return params[section]


def load_params(params_path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    """The whole params file, checked as a whole: valid YAML (else the file, line and column), no key given twice
    in one mapping (:class:`UniqueKeyLoader`), not empty nor all commented out, only known sections (``pipeline`` and the ``NOTEBOOK_SECTIONS``; else the closest name), each a
    mapping, and the ``pipeline`` section's keys and values (:data:`PIPELINE_KEYS`). A notebook section's own keys
    are checked against its notebook when it runs (:func:`validate_params`). Raises ValueError naming the file,
    every problem and the fix."""
    import difflib

    path = Path(params_path)
    if not path.is_file():
        raise FileNotFoundError(f"no params file {path}; {RESTORE_PARAMS}")
    text = path.read_text(encoding="utf-8")
    try:
        params = yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as error:
        mark, lines = getattr(error, "problem_mark", None), text.splitlines()
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        if mark and mark.line < len(lines):
            where += f" ({lines[mark.line].strip()!r})"
        problem = getattr(error, "problem", None) or str(error).strip()
        raise ValueError(f"{where}: not valid YAML ({problem}); fix that line (indentation, a `key: value` per "
                         f"line), or {RESTORE_PARAMS}") from None
    known = ["pipeline", *NOTEBOOK_SECTIONS.values()]
    if params is None:
        raise ValueError(f"{path} is empty (or all of it is commented out): it needs the sections {known}; "
                         f"{RESTORE_PARAMS}")
    if not isinstance(params, dict):
        raise ValueError(f"{path} must be a mapping of sections ({known}), not {_a(type(params).__name__)}; "
                         f"{RESTORE_PARAMS}")
    problems = []
    for name, value in params.items():
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            problems.append(f"unknown section {name!r}" + (f" (did you mean {close[0]!r}?)" if close else
                                                           f" (sections: {known})"))
        elif value is None and name != "pipeline":              # every pipeline key has a default
            problems.append(f"section {name!r} is empty (or all of its lines are commented out); copy it from "
                            f"profiles/default.yaml")
        elif value is not None and not isinstance(value, dict):
            problems.append(f"section {name!r} is {_a(type(value).__name__)} ({value!r}), not a mapping of "
                            f"`key: value` lines")
    if isinstance(params.get("pipeline"), dict):
        problems += _pipeline_problems(params["pipeline"])
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return params


def _pipeline_problems(section: dict[str, Any]) -> list[str]:
    """What is wrong in the ``pipeline`` section: an unknown key (with the closest valid name) or a bad value."""
    import difflib

    problems = []
    for key, value in section.items():
        if key not in PIPELINE_KEYS:
            close = difflib.get_close_matches(str(key), list(PIPELINE_KEYS), n=1)
            problems.append(f"unknown key pipeline.{key}" + (f" (did you mean {close[0]!r}?)" if close else
                                                             f" (keys: {list(PIPELINE_KEYS)})"))
        elif key == "threads" and value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                                          or value < 1):
            problems.append(f"pipeline.threads must be a positive integer (or null); got {value!r}")
        elif key == "check_invariants" and not isinstance(value, bool):
            problems.append(f"pipeline.check_invariants must be true or false; got {value!r}")
    return problems


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


def notebook_parameters(stem: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The parameters cell of ``notebooks/<stem>.py`` as {name: default}: the schema its params.yaml section
    must follow (the cell holds literal assignments only)."""
    import ast

    cells = [cell for cell in build_notebook(stem, root).cells if "parameters" in cell.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"notebooks/{stem}.py needs exactly one cell tagged parameters, found {len(cells)}")
    defaults = {}
    for node in ast.parse(cells[0].source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"notebooks/{stem}.py: the parameters cell may hold only `name = literal` lines "
                             f"(line {node.lineno} of the cell)")
        defaults[node.targets[0].id] = ast.literal_eval(node.value)
    return defaults


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _number(text: str) -> float | int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and not any(c in text.lower() for c in ".e") else value


def validate_params(section: str, given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``given`` (a params.yaml section) checked against the notebook's ``defaults``: every key known (else the
    closest valid name), none missing, each value of its default's type (an int where a float is expected is
    fine; ``null`` is accepted anywhere, as the notebooks treat None as "the data's own" or "off"). Numbers YAML
    read as strings (``1e-3``) become numbers. The ``PIPELINE_PARAMETERS`` (``check_invariants``) come from the
    ``pipeline`` section instead (:func:`run_settings`). Returns the values to inject; raises ValueError naming the
    section, every bad key and the fix."""
    import difflib

    problems, values = [], {}
    defaults = {key: value for key, value in defaults.items() if key not in PIPELINE_PARAMETERS}
    for key, value in given.items():
        if key in PIPELINE_PARAMETERS:
            problems.append(f"{key!r} belongs to the pipeline section (pipeline.{key}), not to {section!r}")
            continue
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            problems.append(f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            continue
        default = defaults[key]
        if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
            value = _number(value) if _number(value) is not None else value
        expected = (type(default) if not isinstance(default, (int, float)) or isinstance(default, bool)
                    else (int,) if isinstance(default, int) else (int, float))
        fits = (value is None or default is None or isinstance(value, expected)
                and not (isinstance(value, bool) and not isinstance(default, bool)))
        if not fits:
            problems.append(f"{key}: {value!r} is {_a(type(value).__name__)}, the notebook expects "
                            f"{_a(type(default).__name__)} (its default: {default!r})")
        values[key] = value
    missing = sorted(set(defaults) - set(given))
    if missing:
        problems.append(f"missing keys {missing} (add them; the notebook's defaults are CI-sized)")
    if problems:
        raise ValueError(f"params.yaml section {section!r}: " + "; ".join(problems))
    return values


def terminal_progress() -> bool:
    """Whether a stage shows its progress (papermill's bar over the notebook's cells: elapsed time and an
    estimate of the rest): on a terminal only, never in CI (``CI`` set) nor when the output is a file."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def progress_lane() -> int:
    """Which lane of ``make repro`` runs this stage (``ADVHASH_LANE``, Default 0): two stages that run side by side
    draw their progress bars on separate lines of the one terminal."""
    value = os.environ.get("ADVHASH_LANE", "0")
    if not value.isdigit():
        raise ValueError(f"ADVHASH_LANE must be a lane number (0, 1, ...); got {value!r}")
    return int(value)


def section_headings(cells) -> list[str | None]:
    """Per cell, the notebook section it belongs to: the text of the last markdown heading at or above it
    (None before the first; a ``#`` line inside a fenced code block is code, not a heading). What the stage's
    progress bar shows beside the cell count."""
    headings, current = [], None
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            fence = None                                      # the open fence's marker, ``` or ~~~
            for line in str(cell.get("source", "")).splitlines():
                marker = line.lstrip()[:3]
                if marker in ("```", "~~~") and fence in (None, marker):
                    fence = None if fence else marker
                elif fence is None and line.startswith("#"):
                    current = line.lstrip("#").strip() or current
        headings.append(current)
    return headings


@functools.cache
def _section_engine():
    """papermill's nbclient engine with a progress bar that names the running cell's notebook section
    (``section_headings``) instead of papermill's plain "Executing": ``03_cmla | 2. Under attack: ...``.
    papermill's own hook is a ``papermill_description=<word>`` in the cell's source; the headings already
    say it, so the engine reads them (registered as ``advhash``, once per process)."""
    from papermill.engines import NBClientEngine, papermill_engines

    class SectionEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            stem = Path(nb_man.nb.metadata.get("papermill", {}).get("input_path") or "notebook").stem
            names = {id(cell): heading for cell, heading in zip(nb_man.nb.cells, section_headings(nb_man.nb.cells))}

            def describe(cell, **_):
                heading = names.get(id(cell))
                return f"{stem} | {heading[:48]}" if heading else stem

            nb_man.get_cell_description = describe
            if nb_man.pbar is not None:                        # "Executing 03_cmla | 2. Under attack: 7/20 cells"
                nb_man.pbar.bar_format = "{desc}{n_fmt}/{total_fmt} cells [{elapsed}<{remaining}]"
                nb_man.pbar.set_description(stem)
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register("advhash", SectionEngine)
    return "advhash"


def run_settings(params: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """The ``PIPELINE_PARAMETERS`` of every stage from the params' ``pipeline`` section: ``check_invariants``
    (Default true; a boolean). ``params``: as :func:`load_params` returned them, or the file to load."""
    return dict(check_invariants=_pipeline_section(params).get("check_invariants", True))


def run_threads(params: Mapping[str, Any] | str | os.PathLike) -> int | None:
    """The torch thread count of every stage: ``pipeline.threads`` in the params (None: the machine's default).
    Fixed, because float sums, hence trained weights and metrics, differ between thread counts. ``params``: as
    :func:`load_params` returned them, or the file to load."""
    return _pipeline_section(params).get("threads")


def _pipeline_section(params: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    params = params if isinstance(params, Mapping) else load_params(params)
    return params.get("pipeline") or {}


def run_notebook(stem: str, *, root: str | os.PathLike | None = None, params_path: str | None = None,
                 output: str | os.PathLike | None = None, skip_tags: tuple[str, ...] = ()) -> Path:
    """Execute the notebook built from ``notebooks/<stem>.py`` with its params.yaml section into ``output``
    (default ``reports/<stem>.ipynb``), without the cells tagged with one of ``skip_tags`` (only the CI smoke
    run skips any: ``INVARIANTS_TAG``). The committed ``notebooks/<stem>.ipynb`` is not read; the params file is
    read once, checked as a whole (:func:`load_params`), and that one reading serves the whole run.

    One run of a stage at a time (:func:`advhash.publish.stage_lock`: a second is refused, naming the first).
    Results are replaced only on success: the notebook writes its figures and metrics to a staging folder of its
    own run, ``build/staging/<stem>-<random>/``, and only when it ran to its end (its findings and invariants
    included) are they published, file by file, into its ``figure_dir`` and ``metrics_dir``
    (:func:`publish_staged`, :func:`advhash.publish.publish_files`: a file the stage does not own is never replaced
    nor deleted), and the report written to ``output``. The staging folder is then removed; a failure leaves every
    result as it was and names the staging folder, kept with the failed rendering.

    The kernel runs on ``pipeline.threads`` torch threads (:func:`run_threads`); each checkpoint records its
    count."""
    root = project_root(root)
    if stem not in NOTEBOOK_SECTIONS:
        raise KeyError(f"unknown notebook {stem!r}; known: {sorted(NOTEBOOK_SECTIONS)}")
    section, params_path = NOTEBOOK_SECTIONS[stem], params_path or root / "params.yaml"
    params = load_params(params_path)
    parameters = validate_params(section, params_section(params, section, params_path),
                                 notebook_parameters(stem, root))
    output = Path(output) if output is not None else root / "reports" / f"{stem}.ipynb"
    with stage_lock(stem, root):                  # before papermill is imported: a second run is refused at once
        staging = _run_locked(stem, root, params_path, params, parameters, output, skip_tags)
        return publish_staged(staging, root=root)


def _run_locked(stem: str, root: Path, params_path: str | os.PathLike, params: Mapping[str, Any],
                parameters: dict[str, Any], output: Path, skip_tags: tuple[str, ...]) -> Path:
    """The run of :func:`run_notebook` (``params``: the params file as loaded; ``parameters``: its section,
    validated), while it holds the stage's lock, into a staging folder of its own. Returns that folder, holding the
    rendering, the figures and metrics and, the run having succeeded, its :data:`PUBLISH_PLAN`."""
    import papermill

    from .utils import PROGRESS_LINE, PROGRESS_TTY

    section, threads = NOTEBOOK_SECTIONS[stem], run_threads(params)
    notebook = build_notebook(stem, root)
    notebook.cells = [cell for cell in notebook.cells if not set(cell.metadata.get("tags", ())) & set(skip_tags)]
    (root / "build" / "staging").mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{stem}-", dir=root / "build" / "staging"))
    relative = staging.relative_to(root)                 # the notebook resolves it at the root
    staged = dict(parameters, **run_settings(params), figure_dir=str(relative / "figures"),
                  metrics_dir=str(relative / "metrics"))
    report = staging / f"{stem}.ipynb"
    with tempfile.TemporaryDirectory(prefix="advhash-") as folder:
        built = Path(folder) / f"{stem}.ipynb"
        built.write_text(_notebook_text(notebook), encoding="utf-8")
        saved = {name: os.environ.get(name) for name in (*THREAD_VARIABLES, PROGRESS_TTY, PROGRESS_LINE)}
        if threads is not None:                       # the kernel inherits them: torch reads them at import
            os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
        try:
            show = terminal_progress()
            bar: bool | dict = False
            if show:                                  # the kernel's loops draw their bars on this terminal
                top = LINES_PER_LANE * progress_lane()     # the stage's bar, its loops' bars below it
                os.environ[PROGRESS_TTY] = os.ttyname(sys.stderr.fileno())
                os.environ[PROGRESS_LINE] = str(top + 1)
                bar = dict(position=top)
                print(f"{stem}: {len(notebook.cells)} cells, parameters from {params_path} [{section}]",
                      file=sys.stderr, flush=True)
            papermill.execute_notebook(str(built), str(report), parameters=staged, kernel_name=KERNEL_NAME,
                                       cwd=str(root), progress_bar=bar, log_output=False,
                                       engine_name=_section_engine())
        except Exception as error:
            raise RuntimeError(f"notebook {stem} failed ({type(error).__name__}: {str(error).strip()[-400:]}); "
                               f"nothing tracked was replaced. The failed rendering is {report}, its figures "
                               f"and metrics are in {staging} (kept; delete it when done)") from error
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    plan = dict(stem=stem, output=str(output), source=str(root / "notebooks" / f"{stem}.py"),
                folders={name: [staged[name], str(parameters[name])] for name in ("figure_dir", "metrics_dir")})
    write_atomically(staging / PUBLISH_PLAN, json.dumps(plan, indent=1) + "\n")
    return staging


def publish_staged(staging: str | os.PathLike, *, root: str | os.PathLike | None = None) -> Path:
    """Publish the results of a successful run kept in its staging folder (``build/staging/<stem>-<random>/``,
    with the :data:`PUBLISH_PLAN` the run wrote there once its notebook had succeeded): its figures and metrics
    into the run's ``figure_dir`` and ``metrics_dir`` (:func:`advhash.publish.publish_results`), then its report,
    showing those folders and naming the notebook's source, to the run's output; then the staging folder is
    removed. Any failure keeps the staging folder whole and names it, with what was published and the fix; this
    is also what ``python -m advhash.pipeline publish <staging folder>`` runs afterwards (the caller holds the
    stage's lock). Returns the report's path."""
    import nbformat

    staging = Path(staging).resolve()
    root = project_root(root or staging)
    try:
        plan = json.loads((staging / PUBLISH_PLAN).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FileNotFoundError(f"{staging} holds no readable {PUBLISH_PLAN} ({type(error).__name__}: {error}): it "
                                f"is not the staging folder of a run that succeeded, so there is nothing to publish; "
                                f"rerun the stage") from None
    stem, output, folders = plan["stem"], Path(plan["output"]), plan["folders"]
    again = f"`python -m advhash.pipeline publish {staging}` (or rerun the stage)"
    try:
        publish_results(stem, staging, root, figure_dir=folders["figure_dir"][1],
                        metrics_dir=folders["metrics_dir"][1])
    except PublishFailed as error:
        raise PublishFailed(f"{error}: {again}") from error.__cause__
    except FileExistsError as refused:
        raise FileExistsError(f"{refused} (or, those files moved, `python -m advhash.pipeline publish {staging}` "
                              f"publishes this run without running it again)") from None
    rendered = nbformat.read(staging / f"{stem}.ipynb", as_version=4)
    for cell in rendered.cells:                      # the report shows the folders the results went to
        if "injected-parameters" in cell.metadata.get("tags", []):
            for staged, published in folders.values():
                cell.source = cell.source.replace(staged, published)
    # papermill records the temporary file it ran; the report names the source instead
    rendered.metadata.papermill["input_path"] = plan["source"]
    rendered.metadata.papermill["output_path"] = str(output)
    try:
        write_atomically(output, nbformat.writes(rendered))
    except OSError as error:
        raise PublishFailed(
            f"stage {stem} ran and its figures and metrics are published into {folders['figure_dir'][1]} and "
            f"{folders['metrics_dir'][1]}, but its report {output} could not be written ({type(error).__name__}: "
            f"{error}). Everything is still kept in {staging}; fix the cause and publish them again: {again}") from error
    shutil.rmtree(staging, ignore_errors=True)
    return output


def _publish_locked(staging: Path) -> Path:
    """:func:`publish_staged` while holding the lock of the stage whose run the staging folder holds."""
    root = project_root(staging)
    try:
        stem = json.loads((staging / PUBLISH_PLAN).read_text(encoding="utf-8"))["stem"]
    except (OSError, ValueError, KeyError, TypeError):
        return publish_staged(staging, root=root)           # names what is wrong with the folder
    with stage_lock(stem, root):
        return publish_staged(staging, root=root)


def use_profile(name: str, *, root: str | os.PathLike | None = None) -> Path:
    """Copy ``profiles/<name>.yaml`` over ``params.yaml``, first keeping the ``params.yaml`` it replaces (when it
    differs) as ``build/params-backups/params-<time>.yaml``, so edits made there are never lost."""
    root = project_root(root)
    source = root / "profiles" / f"{name}.yaml"
    if not source.is_file():
        known = sorted(p.stem for p in (root / "profiles").glob("*.yaml"))
        raise FileNotFoundError(f"no profile {source}; known profiles: {known}")
    target = root / "params.yaml"
    if target.is_file() and target.read_bytes() != source.read_bytes():
        backups = root / "build" / "params-backups"
        backups.mkdir(parents=True, exist_ok=True)
        backup = backups / f"params-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}.yaml"
        shutil.copyfile(target, backup)
        print(f"the params.yaml replaced is kept as {backup.relative_to(root)}")
    shutil.copyfile(source, target)
    return target


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
    publish = commands.add_parser("publish", help="publish the results of a successful run whose publishing "
                                                  "failed, from the staging folder its error names")
    publish.add_argument("staging", help="the staging folder, build/staging/<notebook>-<random>")
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
        try:
            print(run_notebook(args.notebook, params_path=args.params))
        except (StageRunning, FileExistsError, PublishFailed) as refused:
            sys.exit(str(refused))
    elif args.command == "publish":
        try:
            print(_publish_locked(Path(args.staging)))
        except (StageRunning, FileExistsError, FileNotFoundError, PublishFailed) as refused:
            sys.exit(str(refused))
    else:
        print(use_profile(args.name))


if __name__ == "__main__":
    main()
