"""The reproducible pipeline: source notebooks, their parameters, params.yaml profiles and dvc.yaml."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from advhash.pipeline import (INVARIANTS_TAG, NOTEBOOK_SECTIONS, PIPELINE_PARAMETERS, build_notebook, main,
                              notebook_parameters, project_root, read_params, write_notebooks)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))   # the sources; each builds notebooks/<stem>.ipynb
PROFILES = sorted((ROOT / "profiles").glob("*.yaml")) + [ROOT / "params.yaml"]


def _parameters_cell(source: Path) -> str:
    """The source of the one cell tagged 'parameters' in the notebook built from ``source``."""
    cells = build_notebook(source.stem, ROOT).cells
    tagged = [cell for cell in cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{source.name} needs exactly one cell tagged 'parameters' (# %% tags=[\"parameters\"])"
    return tagged[0].source


def test_every_notebook_is_in_the_pipeline():
    assert NOTEBOOKS, "no notebooks found"
    assert {path.stem for path in NOTEBOOKS} == set(NOTEBOOK_SECTIONS)
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    commands = " ".join(stage["cmd"] for stage in stages.values())
    for stem, section in NOTEBOOK_SECTIONS.items():
        assert f"run {stem}" in commands, f"dvc.yaml has no stage running {stem}"
        assert any(section in stage.get("params", []) for stage in stages.values())
        stage = next(stage for stage in stages.values() if stage["cmd"].endswith(f"run {stem}"))
        assert f"notebooks/{stem}.py" in stage["deps"], f"the stage running {stem} must depend on its .py source"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_source_notebooks_carry_no_outputs(notebook):
    built = notebook.with_suffix(".ipynb")
    for cell in json.loads(built.read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None, (
                f"{built.name} has outputs; rebuild it from {notebook.name} with `make notebooks`")


def test_notebooks_are_built_from_their_sources():
    stale = write_notebooks(ROOT, check=True)
    assert not stale, (
        f"{', '.join(f'notebooks/{stem}.ipynb' for stem in stale)} differ from what their notebooks/*.py sources "
        f"build; run `make notebooks` (python -m advhash.pipeline build) and commit the .ipynb with the .py")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_built_notebook_has_one_parameters_cell_and_no_outputs(notebook):
    built = build_notebook(notebook.stem, ROOT)
    tagged = [cell for cell in built.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    for cell in built.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert built.metadata == {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                              "language_info": {"name": "python"}}
    assert [cell.id for cell in built.cells] == [cell.id for cell in build_notebook(notebook.stem, ROOT).cells]


def _tiny_project(root: Path) -> Path:
    """A minimal project root: dvc.yaml, pyproject.toml and a two-cell source for every notebook."""
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "pyproject.toml").write_text("")
    (root / "notebooks").mkdir()
    for stem in NOTEBOOK_SECTIONS:
        (root / "notebooks" / f"{stem}.py").write_text(
            f'# %% [markdown]\n# # {stem}\n\n# %% tags=["parameters"]\nsteps = 3  # how many\n\n# %%\nprint(steps)\n')
    return root


def test_a_source_edit_makes_its_notebook_stale(tmp_path, monkeypatch, capsys):
    root = _tiny_project(tmp_path)
    assert write_notebooks(root, check=True) == list(NOTEBOOK_SECTIONS)      # nothing built yet
    assert not list((root / "notebooks").glob("*.ipynb")), "check must write nothing"
    assert write_notebooks(root) == list(NOTEBOOK_SECTIONS)
    first = (root / "notebooks" / "02_hag.ipynb").read_bytes()
    assert first.endswith(b"\n") and write_notebooks(root, check=True) == []
    # the jupytext.toml pairing for JupyterLab does not change the build
    shutil.copy(ROOT / "notebooks" / "jupytext.toml", root / "notebooks" / "jupytext.toml")
    assert write_notebooks(root, check=True) == []

    source = root / "notebooks" / "02_hag.py"
    source.write_text(source.read_text().replace("steps = 3", "steps = 4"))
    assert write_notebooks(root, check=True) == ["02_hag"]
    monkeypatch.chdir(root)
    with pytest.raises(SystemExit) as stopped:
        main(["build", "--check"])
    assert "notebooks/02_hag.ipynb" in str(stopped.value.code) and "make notebooks" in str(stopped.value.code)
    assert (root / "notebooks" / "02_hag.ipynb").read_bytes() == first    # --check wrote nothing

    main(["build"])
    assert "wrote notebooks/02_hag.ipynb" in capsys.readouterr().out
    assert write_notebooks(root, check=True) == []
    assert "steps = 4" in "".join(json.loads((root / "notebooks" / "02_hag.ipynb").read_text())["cells"][1]["source"])


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_profiles_set_exactly_the_notebook_parameters(profile):
    params = yaml.safe_load(profile.read_text())
    for stem, section in NOTEBOOK_SECTIONS.items():
        names = set(notebook_parameters(stem, ROOT)) - set(PIPELINE_PARAMETERS)   # literal assignments, or raises
        assert set(PIPELINE_PARAMETERS) <= set(notebook_parameters(stem, ROOT)), f"{stem} lacks check_invariants"
        assert set(params[section]) == set(names), (
            f"{profile.name} [{section}] differs from the parameters cell of {stem}: "
            f"missing {set(names) - set(params[section])}, unknown {set(params[section]) - set(names)}")


def test_read_params_names_missing_sections(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("hag: {x: 1}\n")
    assert read_params("hag", path) == {"x": 1}
    with pytest.raises(KeyError, match=r"no section 'saat'; sections: \['hag'\]\. Copy it from "
                                       r"profiles/default\.yaml"):
        read_params("saat", path)


def test_project_root_is_found_from_the_notebooks_folder():
    assert project_root(ROOT / "notebooks") == ROOT
    with pytest.raises(FileNotFoundError, match="no advhash project root"):
        project_root("/")


def test_each_stage_declares_its_verdicts_as_its_dvc_metrics_and_keeps_the_numbers_as_outputs():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert len(stages) == len(NOTEBOOK_SECTIONS)
    for stem, section in NOTEBOOK_SECTIONS.items():
        stage = stages[section]
        assert [next(iter(entry)) for entry in stage["metrics"]] == [f"metrics/{stem}_verdicts.json"], section
        outs = [next(iter(entry)) for entry in stage["outs"]]
        for name in (f"metrics/{stem}.json", f"metrics/{stem}_headline.json", f"metrics/{stem}_findings.json"):
            assert name in outs, (section, name)
        assert "notebooks/published" in stage["deps"], f"{section} reads the claims registry"
        assert f'findings.write(run.metrics_dir / "{stem}_findings.json")' in \
            (ROOT / "notebooks" / f"{stem}.py").read_text(), f"{stem} writes its findings"
        assert "_headline.json\", bits=" in (ROOT / "notebooks" / f"{stem}.py").read_text(), \
            f"{stem} writes its headline with write_headline"


@pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc is not on PATH")
def test_dvc_pipeline_parses():
    result = subprocess.run(["dvc", "repro", "--dry", "--force"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "python -m advhash.pipeline run 01_deep_hashing" in result.stdout


TOY_STAGE = """stages:
  train:
    cmd: python train.py
    deps: [train.py]
    params: [train]
    outs:
      - checkpoints:
          persist: true
      - report.txt:
          cache: false
    metrics:
      - metrics.json:
          cache: false
"""
TOY_TRAIN = """import json, pathlib, yaml
epochs = yaml.safe_load(open("params.yaml"))["train"]["epochs"]
pathlib.Path("checkpoints").mkdir(exist_ok=True)
pathlib.Path("checkpoints/model.pt").write_bytes(bytes(range(epochs)))
pathlib.Path("report.txt").write_text(f"trained {epochs} epochs")
json.dump({"map": 0.5 + epochs / 100}, open("metrics.json", "w"))
"""


@pytest.mark.skipif(shutil.which("dvc") is None or shutil.which("git") is None, reason="dvc or git is not on PATH")
def test_a_pushed_pipeline_is_up_to_date_after_dvc_pull_on_a_fresh_clone(tmp_path):
    """The README's remote story on a project of this pipeline's shape (a persist checkpoint folder in the DVC
    cache, report and metrics in git): repro, push to a local-directory remote; a fresh clone pulls the checkpoints
    and `dvc status` finds nothing to rerun."""
    def run(*command, cwd):
        result = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True)
        assert result.returncode == 0, f"{command}: {result.stderr}{result.stdout}"
        return result.stdout

    origin, remote, clone = tmp_path / "origin", tmp_path / "remote", tmp_path / "clone"
    origin.mkdir()
    (origin / "dvc.yaml").write_text(TOY_STAGE)
    (origin / "train.py").write_text(TOY_TRAIN)
    (origin / "params.yaml").write_text("train:\n  epochs: 3\n")
    git = ("git", "-c", "user.name=ci", "-c", "user.email=ci@example.invalid")
    run("git", "init", "-q", cwd=origin)
    run("dvc", "init", "-q", cwd=origin)
    run("dvc", "repro", "-q", cwd=origin)
    run("dvc", "remote", "add", "-d", "shared", str(remote), cwd=origin)
    run("dvc", "push", "-q", cwd=origin)
    run("git", "add", "-A", cwd=origin)
    run(*git, "commit", "-q", "-m", "results", cwd=origin)
    run("git", "clone", "-q", str(origin), str(clone), cwd=tmp_path)
    assert not (clone / "checkpoints").exists(), "checkpoints are not in git"
    run("dvc", "pull", "-q", cwd=clone)
    assert (clone / "checkpoints" / "model.pt").read_bytes() == bytes(range(3))
    assert "up to date" in run("dvc", "status", cwd=clone)
    dry = run("dvc", "repro", "--dry", cwd=clone)
    assert "didn't change" in dry and "Running stage" not in dry, dry


@pytest.mark.parametrize("stem", list(NOTEBOOK_SECTIONS))
def test_every_code_cell_is_a_short_call_besides_the_parameters_and_imports(stem):
    """A notebook reads as prose, a call of a few lines, then a table or figure: logic longer than 12 lines belongs
    in the library, where a test reaches it (the parameters and the imports are lists, not logic)."""
    for cell in build_notebook(stem, ROOT).cells:
        lines = cell.source.strip().splitlines()
        if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []) or all(
                line.startswith(("import ", "from ", " ")) or not line.strip() for line in lines):
            continue
        assert len(lines) <= 12, f"{stem}: a code cell of {len(lines)} lines, starting {lines[0]!r}"
        assert not any(line.startswith(("def ", "class ")) for line in lines), \
            f"{stem}: a function or class defined in the notebook ({lines[0]!r}): move it to lib/advhash"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_parameter_comments_parse_in_papermill(notebook):
    """papermill reads `name = value  # comment` lines; an '=' inside the comment makes it drop the line."""
    for line in _parameters_cell(notebook).splitlines():
        _, _, comment = line.partition("#")
        assert "=" not in comment, f"{notebook.name}: '=' in the comment of parameter line {line!r}"


def test_invariants_cells_are_tagged_and_never_hold_the_threat_model_or_the_findings():
    """run_notebook(skip_tags=(INVARIANTS_TAG,)) (the CI smoke of the paper path) drops the tagged cells: they hold
    invariants that need enough data only, never the eps-ball check, and never the findings (judged whatever the
    size)."""
    for stem in ("01_deep_hashing", "02_hag"):
        cells = build_notebook(stem, ROOT).cells
        tagged = [cell for cell in cells if INVARIANTS_TAG in cell.metadata.get("tags", [])]
        assert tagged and all("invariants.expect" in cell.source and "check_budget" not in cell.source
                              and "findings." not in cell.source for cell in tagged)
    assert any("check_budget" in cell.source for cell in build_notebook("02_hag", ROOT).cells)


def test_params_are_checked_against_the_notebook_parameters_before_it_runs(tmp_path):
    from advhash.pipeline import run_notebook, validate_params

    defaults = notebook_parameters("01_deep_hashing", ROOT)
    assert defaults["epochs"] == 5 and defaults["lr"] == 0.001 and defaults["weights"] is None
    good = yaml.safe_load((ROOT / "profiles" / "default.yaml").read_text())["deep_hashing"]
    assert validate_params("deep_hashing", good, defaults) == good
    values = validate_params("deep_hashing", dict(good, lr="1e-3", epochs=3, num_query=None), defaults)
    assert values["lr"] == 0.001 and isinstance(values["lr"], float), "YAML reads 1e-3 as a string"
    assert values["num_query"] is None, "null is accepted: the list files define the splits"
    typo = {("epoch" if key == "epochs" else key): value for key, value in good.items()}
    with pytest.raises(ValueError, match=r"section 'deep_hashing': unknown key 'epoch' \(did you mean 'epochs'\?\); "
                                         r"missing keys \['epochs'\]"):
        validate_params("deep_hashing", typo, defaults)
    with pytest.raises(ValueError, match=r"epochs: 2.5 is a float, the notebook expects an int \(its default: 5\); "
                                         r"lr: 'fast' is a str, the notebook expects a float"):
        validate_params("deep_hashing", dict(good, lr="fast", epochs=2.5), defaults)
    with pytest.raises(ValueError, match=r"methods: 'dph' is a str, the notebook expects a list"):
        validate_params("deep_hashing", dict(good, methods="dph"), defaults)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"deep_hashing": dict(good, checkpoint_dri="x")}))
    with pytest.raises(ValueError, match=r"unknown key 'checkpoint_dri' \(did you mean 'checkpoint_dir'\?\)"):
        run_notebook("01_deep_hashing", params_path=str(tmp_path / "params.yaml"), output=tmp_path / "out.ipynb")
    assert not (tmp_path / "out.ipynb").exists(), "refused before anything ran"


def test_a_failed_run_replaces_no_result_and_names_its_rendering(tmp_path):
    """The real notebook 01 in a project of its own (so that no run of the repository's stage 01 is in its way)."""
    from advhash.pipeline import run_notebook

    project = tmp_path / "project"
    project.mkdir()
    for marker in ("dvc.yaml", "pyproject.toml"):
        shutil.copy(ROOT / marker, project / marker)
    (project / "notebooks").symlink_to(ROOT / "notebooks")
    section = yaml.safe_load((ROOT / "profiles" / "default.yaml").read_text())["deep_hashing"]
    section.update(dataset="no-such-dataset", figure_dir=str(tmp_path / "figures"), metrics_dir=str(tmp_path / "m"))
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "pr_curves.png").write_bytes(b"the last good figure")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "01_deep_hashing.json").write_text('{"map": 0.5}')
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"deep_hashing": section}))
    report = tmp_path / "report.ipynb"
    report.write_text("the last good report")
    with pytest.raises(RuntimeError, match=r"(?s)notebook 01_deep_hashing failed .*no-such-dataset.*nothing tracked "
                                           r"was replaced\. The failed rendering is .*build/staging/01_deep_hashing-"
                                           r"\w+/01_deep_hashing.ipynb") as failed:
        run_notebook("01_deep_hashing", root=project, params_path=str(tmp_path / "params.yaml"), output=report)
    assert report.read_text() == "the last good report"
    assert (tmp_path / "figures" / "pr_curves.png").read_bytes() == b"the last good figure"
    assert (tmp_path / "m" / "01_deep_hashing.json").read_text() == '{"map": 0.5}'
    rendering = Path(str(failed.value).split("The failed rendering is ")[1].split(", its figures")[0])
    assert rendering.is_file() and rendering.parent.parent == project / "build" / "staging"


def test_switching_profiles_keeps_the_params_yaml_it_replaces(tmp_path, capsys):
    from advhash.pipeline import use_profile

    for marker in ("dvc.yaml", "pyproject.toml"):            # a project root
        (tmp_path / marker).write_text("")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "paper.yaml").write_text("deep_hashing: {epochs: 100}\n")
    (tmp_path / "params.yaml").write_text("deep_hashing: {epochs: 7}   # an edit of my own\n")
    assert use_profile("paper", root=tmp_path).read_text() == "deep_hashing: {epochs: 100}\n"
    backups = list((tmp_path / "build" / "params-backups").glob("params-*.yaml"))
    assert [b.read_text() for b in backups] == ["deep_hashing: {epochs: 7}   # an edit of my own\n"]
    assert "kept as build/params-backups/params-" in capsys.readouterr().out
    use_profile("paper", root=tmp_path)                          # the same content: nothing new to keep
    assert len(list((tmp_path / "build" / "params-backups").iterdir())) == 1
    with pytest.raises(FileNotFoundError, match=r"no profile .*gpu.yaml; known profiles: \['paper'\]"):
        use_profile("gpu", root=tmp_path)


def test_check_invariants_comes_from_the_pipeline_section_and_every_invariants_cell_obeys_it(tmp_path):
    from advhash.pipeline import run_settings

    path = tmp_path / "params.yaml"
    path.write_text("pipeline: {threads: 2}\n")
    assert run_settings(path) == dict(check_invariants=True), "invariants are enforced unless said otherwise"
    path.write_text("pipeline: {check_invariants: false}\n")
    assert run_settings(path) == dict(check_invariants=False)
    path.write_text("pipeline: {check_invariants: 'no'}\n")
    with pytest.raises(ValueError, match=r"pipeline.check_invariants must be true or false; got 'no'"):
        run_settings(path)
    assert yaml.safe_load((ROOT / "params.yaml").read_text())["pipeline"]["check_invariants"] is True
    for stem in NOTEBOOK_SECTIONS:
        assert notebook_parameters(stem, ROOT)["check_invariants"] is True, stem
        source = (ROOT / "notebooks" / f"{stem}.py").read_text()
        checked = source[source.index("invariants = Invariants(check_invariants)"):]
        assert "assert " not in checked and "invariants.finish()" in checked, \
            f"{stem}: every invariant goes through Invariants"


def test_the_pipeline_thread_count_is_read_and_checked(tmp_path):
    from advhash.pipeline import run_threads

    path = tmp_path / "params.yaml"
    path.write_text("pipeline: {threads: 3}\ndeep_hashing: {}\n")
    assert run_threads(path) == 3
    path.write_text("deep_hashing: {}\n")
    assert run_threads(path) is None, "no pipeline section: the machine's default"
    for bad in ("0", "two", "1.5", "true"):
        path.write_text(f"pipeline: {{threads: {bad}}}\n")
        with pytest.raises(ValueError, match="pipeline.threads must be a positive integer"):
            run_threads(path)
    for profile in PROFILES:
        assert run_threads(profile) is not None, f"{profile.name} fixes the thread count"


def test_the_stage_progress_bar_names_the_running_section(tmp_path):
    """`dvc repro` on a terminal: papermill's bar shows the notebook section (its last markdown heading) of the cell
    that runs, not a bare "Executing"."""
    import io

    import nbformat
    import papermill

    from advhash.pipeline import KERNEL_NAME, _section_engine, section_headings

    cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell("# Title\nintro"),
             nbformat.v4.new_code_cell("y = 2"), nbformat.v4.new_markdown_cell("text\n## 2. Under attack"),
             nbformat.v4.new_code_cell("z = 3"), nbformat.v4.new_markdown_cell("```bash\n# a comment\n```")]
    assert section_headings(cells) == [None, "Title", "Title", "2. Under attack", "2. Under attack",
                                       "2. Under attack"], "a `#` line in a fenced code block is no heading"
    assert _section_engine() == _section_engine() == "advhash"
    source = tmp_path / "07_toy.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), source)
    shown = io.StringIO()
    papermill.execute_notebook(str(source), str(tmp_path / "out.ipynb"), kernel_name=KERNEL_NAME, log_output=False,
                               progress_bar=dict(file=shown, mininterval=0), engine_name=_section_engine())
    assert "07_toy | 2. Under attack" in shown.getvalue()
    assert "cells [" in shown.getvalue(), "elapsed and remaining time shown"


def test_stages_side_by_side_draw_their_bars_on_their_own_lines(tmp_path, monkeypatch):
    """`make repro` runs two stages at once on one terminal: lane 1's stage bar sits LINES_PER_LANE (3) lines below
    lane 0's, and each stage's loop bars (nested ones a line further) go below its own bar instead of over the other
    stage's."""
    from advhash.pipeline import progress_lane
    from advhash.utils import PROGRESS_LINE, PROGRESS_TTY, progress

    monkeypatch.setenv("ADVHASH_LANE", "1")
    assert progress_lane() == 1
    monkeypatch.setenv("ADVHASH_LANE", "left")
    with pytest.raises(ValueError, match="ADVHASH_LANE must be a lane number"):
        progress_lane()
    monkeypatch.setenv(PROGRESS_TTY, str(tmp_path / "tty"))
    monkeypatch.setenv(PROGRESS_LINE, "4")
    with progress(range(3), desc="outer") as outer, progress(range(2), desc="inner") as inner:
        assert (abs(outer.pos), abs(inner.pos)) == (4, 5)
