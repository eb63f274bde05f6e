"""The experiment loop of the README on a project of this pipeline's shape (a data folder tracked by data.dvc, a
training stage with a persist checkpoint folder, an attack stage that reads it): a dry run names the stages a
parameter change reruns, a queued sweep runs and `dvc exp show --only-changed` fits a terminal."""

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("dvc") is None or shutil.which("git") is None,
                                reason="dvc or git is not on PATH")

PIPELINE = """stages:
  train:
    cmd: {python} train.py
    deps: [train.py, data]
    params: [train]
    outs:
      - checkpoints/train:
          persist: true
    metrics:
      - metrics/train.json:
          cache: false
  attack:
    cmd: {python} attack.py
    deps: [attack.py, data, checkpoints/train]
    params: [attack]
    metrics:
      - metrics/attack.json:
          cache: false
"""
TRAIN = """import json, pathlib, yaml
epochs = yaml.safe_load(open("params.yaml"))["train"]["epochs"]
pathlib.Path("checkpoints/train").mkdir(parents=True, exist_ok=True)
pathlib.Path("checkpoints/train/model.pt").write_bytes(bytes(range(epochs)) + pathlib.Path("data/x.bin").read_bytes())
pathlib.Path("metrics").mkdir(exist_ok=True)
json.dump({"map": 0.5 + epochs / 100}, open("metrics/train.json", "w"))
"""
ATTACK = """import json, pathlib, yaml
eps = yaml.safe_load(open("params.yaml"))["attack"]["eps"]
size = len(pathlib.Path("checkpoints/train/model.pt").read_bytes())
json.dump({"robust": size / 100 - eps / 1000}, open("metrics/attack.json", "w"))
"""


def run(*command, cwd, check=True):
    result = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, f"{command}: {result.stderr}{result.stdout}"
    return result


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    for name, text in (("dvc.yaml", PIPELINE.format(python=sys.executable)), ("train.py", TRAIN), ("attack.py", ATTACK),
                       ("params.yaml", "train:\n  epochs: 3\nattack:\n  eps: 8\n")):
        (root / name).write_text(text)
    (root / "data").mkdir()
    (root / "data" / "x.bin").write_bytes(b"abc")
    run("git", "init", "-q", cwd=root)
    run("dvc", "init", "-q", cwd=root)
    run("dvc", "add", "-q", "data", cwd=root)
    run("dvc", "repro", "-q", cwd=root)
    run("git", "add", "-A", cwd=root)
    run("git", "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "commit", "-q", "-m", "results", cwd=root)
    return root


def test_a_dry_experiment_names_the_stage_a_parameter_reruns_once_data_and_checkpoints_are_copied_in(project):
    bare = run("dvc", "exp", "run", "--dry", "-S", "attack.eps=4", cwd=project, check=False)
    assert bare.returncode != 0 and re.search(r"No such file or directory: '[^']*/data'", bare.stderr + bare.stdout), \
        "DVC's dry run lacks the data (why -C)"
    dry = run("dvc", "exp", "run", "--dry", "-C", "data", "-C", "checkpoints/train", "-S", "attack.eps=4",
              cwd=project).stdout
    assert "Running stage 'attack'" in dry and "Stage 'train' didn't change" in dry, dry
    dry = run("dvc", "exp", "run", "--dry", "-C", "data", "-C", "checkpoints/train", "-S", "train.epochs=4",
              cwd=project).stdout
    assert "Running stage 'train'" in dry, dry
    assert "up to date" in run("dvc", "status", cwd=project).stdout, "a dry run changes nothing"


def test_the_makefile_dry_target_copies_the_data_and_every_checkpoint_folder_and_passes_each_setting(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not on PATH")
    for name in ("01_first", "02_second"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    (tmp_path / "pyproject.toml").touch()                              # what the setup target is made from
    made = run("make", "--no-print-directory", "-n", "-f", str(ROOT / "Makefile"), "dry",    # also under `make test`
               "S=deep_hashing.epochs=20 saat.eps_255=4", cwd=tmp_path).stdout
    command = " ".join(made.replace("\\\n", " ").split())
    assert "dvc exp run --dry -C data -C checkpoints/01_first -C checkpoints/02_second " in command, command
    assert command.endswith("-S deep_hashing.epochs=20 -S saat.eps_255=4"), command


def test_a_queued_sweep_runs_and_exp_show_lists_only_what_changed(project):
    queued = run("dvc", "exp", "run", "--queue", "-C", "data", "-S", "train.epochs=5,6", cwd=project).stdout
    assert queued.count("Queued experiment") == 2, queued
    try:
        run("dvc", "queue", "start", "--jobs", "1", cwd=project)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            status = run("dvc", "queue", "status", cwd=project).stdout
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(2)
        assert status.count("Success") == 2, status
    finally:
        run("dvc", "queue", "stop", "--kill", cwd=project, check=False)
    table = run("dvc", "exp", "show", "--only-changed", "--drop", "Created|Executor|checkpoints.*", "--csv",
                cwd=project).stdout.splitlines()
    header = table[0].split(",")
    assert "map" in header and "train.epochs" in header and "attack.eps" not in header, table[0]
    epochs = sorted(row.split(",")[header.index("train.epochs")] for row in table[1:])
    assert epochs == ["3", "3", "5", "6"], table                                # workspace, HEAD, the two runs
    maps = {row.split(",")[header.index("train.epochs")]: row.split(",")[header.index("map")] for row in table[1:]}
    assert float(maps["5"]) == pytest.approx(0.55) and float(maps["6"]) == pytest.approx(0.56)
