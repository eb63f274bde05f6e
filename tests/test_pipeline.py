"""The reproducible pipeline: source notebooks, their parameters, params.yaml profiles and dvc.yaml."""

import ast
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from advhash.pipeline import NOTEBOOK_SECTIONS, project_root, read_params, write_json

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PROFILES = sorted((ROOT / "profiles").glob("*.yaml")) + [ROOT / "params.yaml"]


def _parameters(notebook: Path) -> dict:
    cells = json.loads(notebook.read_text())["cells"]
    tagged = [cell for cell in cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{notebook.name} needs exactly one cell tagged 'parameters'"
    tree = ast.parse("".join(tagged[0]["source"]))
    names = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign), f"{notebook.name}: the parameters cell holds assignments only"
        names[node.targets[0].id] = ast.literal_eval(node.value)   # literals only: papermill recomputes nothing
    return names


def test_every_notebook_is_in_the_pipeline():
    assert NOTEBOOKS, "no notebooks found"
    assert {path.stem for path in NOTEBOOKS} == set(NOTEBOOK_SECTIONS)
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    commands = " ".join(stage["cmd"] for stage in stages.values())
    for stem, section in NOTEBOOK_SECTIONS.items():
        assert f"run {stem}" in commands, f"dvc.yaml has no stage running {stem}"
        assert any(section in stage.get("params", []) for stage in stages.values())


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_source_notebooks_carry_no_outputs(notebook):
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None, (
                f"{notebook.name} has outputs; clear them (Kernel > Restart and Clear Outputs) before committing")


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_profiles_set_exactly_the_notebook_parameters(profile):
    params = yaml.safe_load(profile.read_text())
    for stem, section in NOTEBOOK_SECTIONS.items():
        names = _parameters(ROOT / "notebooks" / f"{stem}.ipynb")
        assert set(params[section]) == set(names), (
            f"{profile.name} [{section}] differs from the parameters cell of {stem}: "
            f"missing {set(names) - set(params[section])}, unknown {set(params[section]) - set(names)}")


def test_read_params_names_missing_sections(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("a: {x: 1}\n")
    assert read_params("a", path) == {"x": 1}
    with pytest.raises(KeyError, match="no section 'b'"):
        read_params("b", path)


def test_project_root_is_found_from_the_notebooks_folder():
    assert project_root(ROOT / "notebooks") == ROOT
    with pytest.raises(FileNotFoundError, match="no advhash project root"):
        project_root("/")


def test_write_json_rounds_and_sorts(tmp_path):
    path = write_json({"b": 0.1234567891, "a": {"x": float("nan")}}, tmp_path / "m.json", digits=4)
    assert path.read_text() == '{\n  "a": {\n    "x": null\n  },\n  "b": 0.1235\n}\n'


@pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc is not on PATH")
def test_dvc_pipeline_parses():
    result = subprocess.run(["dvc", "repro", "--dry", "--force"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "python -m advhash.pipeline run 01_deep_hashing" in result.stdout


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_parameter_comments_parse_in_papermill(notebook):
    """papermill reads `name = value  # comment` lines; an '=' inside the comment makes it drop the line."""
    cells = json.loads(notebook.read_text())["cells"]
    source = next(cell for cell in cells if "parameters" in cell.get("metadata", {}).get("tags", []))["source"]
    for line in "".join(source).splitlines():
        _, _, comment = line.partition("#")
        assert "=" not in comment, f"{notebook.name}: '=' in the comment of parameter line {line!r}"
