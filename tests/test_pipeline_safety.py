"""What a stage run may touch: nothing it did not write (its figure and metrics folders shared with other stages and
with a user's own files), nothing at all when it fails, under `dvc repro` too; one run of a stage at a time, each
with its own staging folder; and a params file checked as a whole before anything runs."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from advhash.pipeline import run_notebook

ROOT = Path(__file__).resolve().parents[1]
STEM = "01_deep_hashing"
# a stage in miniature: it writes the figures and metrics it is asked to (their text: `content`), after waiting for
# the file `wait_for` to exist (saying so with a file `<wait_for>.waiting`), then fails if asked to
TINY_NOTEBOOK = '''# %% [markdown]
# # A stage in miniature

# %% tags=["parameters"]
figure_dir = "figures/01_deep_hashing"
metrics_dir = "metrics"
check_invariants = True
figures = ["pr_curves.png"]
metrics = ["01_deep_hashing.json"]
content = "new"
wait_for = ""
fail = False

# %%
import pathlib, time
if wait_for:
    pathlib.Path(wait_for + ".waiting").touch()
while wait_for and not pathlib.Path(wait_for).exists():
    time.sleep(0.05)
for folder, names in ((figure_dir, figures), (metrics_dir, metrics)):
    for name in names:
        path = pathlib.Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
if fail:
    raise RuntimeError("the stage failed on purpose")
'''
DEFAULTS = dict(figure_dir="figures/01_deep_hashing", metrics_dir="metrics", figures=["pr_curves.png"],
                metrics=["01_deep_hashing.json"], content="new", wait_for="", fail=False)


@pytest.fixture
def project(tmp_path) -> Path:
    """A project root (dvc.yaml, pyproject.toml) whose notebook 01 is the stage in miniature."""
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "pyproject.toml").write_text("")
    (root / "notebooks" / f"{STEM}.py").write_text(TINY_NOTEBOOK)
    write_params(root)
    return root


def write_params(root: Path, **changes) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump({"pipeline": {"threads": 1}, "deep_hashing": dict(DEFAULTS, **changes)}))
    return path


def run(root: Path, **changes) -> Path:
    return run_notebook(STEM, root=root, params_path=str(write_params(root, **changes)))


def put(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------- never delete what the stage did not write

def test_figure_dir_naming_the_figures_folder_keeps_every_other_stage_s_figures(project):
    """`figure_dir: figures` (the parent of every stage's folder) once deleted figures/02_hag/."""
    other = put(project / "figures" / "02_hag" / "examples.png", "stage 02's figure")
    mine = put(project / "figures" / "README.md", "a user's own file")
    run(project, figure_dir="figures")
    assert other.read_text() == "stage 02's figure" and mine.read_text() == "a user's own file"
    assert (project / "figures" / "pr_curves.png").read_text() == "new"


def test_a_stage_replaces_and_removes_only_its_own_files_in_shared_folders(project):
    """The figure folder shared with a paper's own files, and `metrics/` with the other stages': a rerun replaces the
    stage's files, removes the ones it no longer writes (a stale figure or curve), and leaves every other file."""
    figures, metrics = project / "figures" / STEM, project / "metrics"
    run(project, figures=["pr_curves.png", "old_figure.png"],
        metrics=["01_deep_hashing.json", "01_deep_hashing_plots/pr_dph.csv", "01_deep_hashing_plots/pr_old.csv"],
        content="first run")
    assert (figures / "old_figure.png").read_text() == "first run"
    kept = [put(figures / "paper_caption.tex", "mine"), put(metrics / "02_hag.json", "stage 02's"),
            put(metrics / "01_deep_hashing_plots" / "my_notes.txt", "mine too")]
    run(project, metrics=["01_deep_hashing.json", "01_deep_hashing_plots/pr_dph.csv"], content="second run")
    assert (figures / "pr_curves.png").read_text() == "second run"
    assert (metrics / "01_deep_hashing_plots" / "pr_dph.csv").read_text() == "second run"
    assert not (figures / "old_figure.png").exists(), "a figure the stage no longer draws is not left stale"
    assert not (metrics / "01_deep_hashing_plots" / "pr_old.csv").exists()
    assert [path.read_text() for path in kept] == ["mine", "stage 02's", "mine too"]
    assert (project / "reports" / f"{STEM}.ipynb").is_file()


def test_a_failed_run_replaces_nothing_and_keeps_its_own_staging_folder(project):
    """A failure leaves the last results; its staging folder, named in the error, is its own: the next run, which
    succeeds, neither reuses nor deletes it, and leaves no staging folder of its own behind."""
    figure = put(project / "figures" / STEM / "pr_curves.png", "the last good figure")
    metric = put(project / "metrics" / "01_deep_hashing.json", '{"map": 0.5}')
    report = put(project / "reports" / f"{STEM}.ipynb", "the last good report")
    with pytest.raises(RuntimeError, match="nothing tracked was replaced") as failed:
        run(project, fail=True, content="broken")
    assert (figure.read_text(), metric.read_text(), report.read_text()) == (
        "the last good figure", '{"map": 0.5}', "the last good report")
    staged = [path for path in (project / "build" / "staging").iterdir()]
    assert len(staged) == 1 and staged[0].name.startswith(f"{STEM}-") and str(staged[0]) in str(failed.value)
    assert (staged[0] / f"{STEM}.ipynb").is_file() and (staged[0] / "figures" / "pr_curves.png").read_text() == "broken"
    run(project)
    assert figure.read_text() == "new"
    assert list((project / "build" / "staging").iterdir()) == staged, "the failed run's folder is kept, no other"


def test_a_second_run_of_a_running_stage_is_refused_naming_the_first(project):
    """Two `python -m advhash.pipeline run` of one stage started together once shared build/staging/<stem>: the
    second wiped the first's figures. Now the second is refused at once, naming the running one; the first
    finishes and publishes its own results."""
    go = project / "go"
    write_params(project, wait_for=str(go), content="the first run's")
    command = [sys.executable, "-m", "advhash.pipeline", "run", STEM]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = project / "build" / "locks" / f"{STEM}.lock"
    try:
        deadline = time.monotonic() + 90
        while not Path(f"{go}.waiting").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Path(f"{go}.waiting").exists(), f"the first run's notebook did not start: {first.poll()=}"
        write_params(project, content="the second run's")
        started = time.monotonic()
        second = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=30)
        assert second.returncode != 0 and time.monotonic() - started < 30, "refused at once"
        assert f"stage {STEM} is already running: process {first.pid}" in second.stderr, second.stderr
        assert "started 20" in second.stderr and str(lock) in second.stderr and "Wait for it to finish" in second.stderr
        assert "Traceback" not in second.stderr, "a refusal, not a crash"
        go.touch()
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        go.touch()
        if first.poll() is None:
            first.kill()
            first.wait()
    assert (project / "figures" / STEM / "pr_curves.png").read_text() == "the first run's"
    assert not lock.exists() and not list((project / "build" / "staging").iterdir())


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    from advhash.publish import stage_lock

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = put(tmp_path / "build" / "locks" / f"{STEM}.lock", json.dumps(
        dict(pid=int(gone.stdout), host=os.uname().nodename, started="2020-01-01 00:00:00", command="killed")))
    with stage_lock(STEM, tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def _staged(folder: Path, *names: str, text: str = "new") -> Path:
    for name in names:
        put(folder / name, text)
    return folder


def test_publishing_over_another_stage_s_or_a_user_s_file_is_refused_before_anything_moves(tmp_path):
    """Two stages sharing `figure_dir: figures` that draw a figure of one name would overwrite each other's; a file
    of a user's where the stage now writes one would be lost. Refused, naming the files; nothing moved."""
    from advhash.publish import publish_files

    figures = tmp_path / "figures"
    publish_files("04_saat", {figures: [_staged(tmp_path / "s04", "pr_curves.png", text="stage 04's")]})
    source = _staged(tmp_path / "s01", "pr_curves.png", "training_loss.png")
    with pytest.raises(FileExistsError, match=r"pr_curves.png \(stage 04_saat's\)\. Nothing was moved; its results "
                                              r"are kept in .*s01\. Move those files elsewhere, or give the stage a "
                                              r"folder of its own"):
        publish_files(STEM, {figures: [source]})
    assert (figures / "pr_curves.png").read_text() == "stage 04's" and not (figures / "training_loss.png").exists()
    assert (source / "pr_curves.png").is_file(), "the results stay in staging"

    own = tmp_path / "own"
    publish_files(STEM, {own: [_staged(tmp_path / "first", "pr_curves.png")]})
    put(own / "retrieval_examples.png", "a user's own figure")
    with pytest.raises(FileExistsError, match=r"retrieval_examples.png \(not written by stage 01_deep_hashing\)"):
        publish_files(STEM, {own: [_staged(tmp_path / "second", "pr_curves.png", "retrieval_examples.png")]})
    assert (own / "retrieval_examples.png").read_text() == "a user's own figure"


@pytest.mark.parametrize("record", ['{"files": ["../outside.txt"]}', '{"files": ["/etc/hostname"]}', "{not json"])
def test_a_damaged_or_hostile_outputs_record_deletes_nothing(tmp_path, record):
    from advhash.publish import outputs_record, publish_files

    outside = put(tmp_path / "outside.txt", "not the stage's")
    figures = tmp_path / "figures"
    put(outputs_record(STEM, figures), record)
    with pytest.raises(ValueError, match=r"outputs record .*\.advhash-outputs-01_deep_hashing\.json .*delete it"):
        publish_files(STEM, {figures: [_staged(tmp_path / "staged", "pr_curves.png")]})
    assert outside.read_text() == "not the stage's" and not (figures / "pr_curves.png").exists()


# ---------------------------------------------------------------- under dvc repro

DVC = shutil.which("dvc") or (str(Path(sys.executable).parent / "dvc")
                              if (Path(sys.executable).parent / "dvc").is_file() else None)


def _results_outs(stage: dict) -> list[str]:
    """The paths of a stage's outputs kept in git (cache: false): report, figures, metrics, curves, verdicts."""
    entries = [*stage.get("outs", []), *stage.get("metrics", [])]
    return [next(iter(entry)) for entry in entries
            if isinstance(entry, dict) and next(iter(entry.values())).get("cache") is False]


@pytest.mark.skipif(DVC is None, reason="dvc is not installed")
def test_a_failing_stage_under_dvc_repro_leaves_its_results_in_place(tmp_path):
    """`dvc repro` deletes a stage's non-persistent outputs before running it; a fresh clone's `make repro` showed
    `D figures/03_cmla/...` while stage 03 ran. Stage 01's results declared as in dvc.yaml, a command that fails:
    every result is still there, unchanged."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["deep_hashing"]
    paths = _results_outs(stage)
    assert {"reports/01_deep_hashing.ipynb", "figures/01_deep_hashing", "metrics/01_deep_hashing_verdicts.json"} \
        <= set(paths)
    toy = dict(cmd="python -c \"raise SystemExit('the stage failed')\"", outs=[
        entry for entry in stage["outs"] if next(iter(entry)) in paths], metrics=stage["metrics"])
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"deep_hashing": toy}}))
    kept = {}
    for path in paths:
        file = tmp_path / path / "result.png" if not Path(path).suffix else tmp_path / path
        kept[put(file, f"the last good {path}")] = f"the last good {path}"
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    result = subprocess.run([DVC, "repro"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0 and "the stage failed" in result.stdout + result.stderr
    assert {file: file.read_text() if file.is_file() else "deleted" for file in kept} == kept


@pytest.mark.skipif(DVC is None, reason="dvc is not installed")
def test_dvc_plots_show_a_stage_s_figures_and_not_its_outputs_record(tmp_path):
    """dvc.yaml shows each figure folder as plots; the record of the stage's files kept there (a JSON file) would
    show as an empty plot, unless .dvcignore leaves it out."""
    from advhash.publish import outputs_record, publish_files

    figures = tmp_path / "figures" / STEM
    publish_files(STEM, {figures: [_staged(tmp_path / "staged", "pr_curves.png")]})
    assert outputs_record(STEM, figures).is_file()
    (tmp_path / "dvc.yaml").write_text(f"plots:\n  - figures/{STEM}\n")
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    shutil.copy(ROOT / ".dvcignore", tmp_path / ".dvcignore")
    shown = subprocess.run([DVC, "plots", "show", "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert list(json.loads(shown.stdout)["data"]) == [f"figures/{STEM}/pr_curves.png"], \
        f"add `{outputs_record('*', Path()).name.replace('*.json', '*')}` to .dvcignore"


def test_every_result_in_dvc_yaml_is_persist_so_dvc_never_deletes_it():
    """The pipeline's replace-on-success governs the report, figures and metrics, not DVC's delete-before-run."""
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        results = _results_outs(stage)
        assert len(results) >= 5, name
        for entry in [*stage["outs"], *stage.get("metrics", [])]:
            path, flags = next(iter(entry.items()))
            assert flags.get("persist") is True, f"dvc.yaml, stage {name}: {path} needs persist: true"


# ---------------------------------------------------------------- params.yaml checked as a whole

RESTORE = r"`python -m advhash\.pipeline profile default` restores the default profile.*`git checkout params\.yaml`"


@pytest.mark.parametrize("text, message", [
    ("", r"params\.yaml is empty \(or all of it is commented out\).*" + RESTORE),
    ("# pipeline:\n#   threads: 1\n# deep_hashing:\n#   epochs: 3\n", r"params\.yaml is empty .*" + RESTORE),
    ("pipeline: {thread: 1}\n", r"unknown key pipeline\.thread \(did you mean 'threads'\?\)"),
    ("pipeline: {check_claim: false}\n", r"unknown key pipeline\.check_claim \(keys: \['threads', "
                                         r"'check_invariants'\]\)"),
    ("pipeline: {threads: 1}\ndeep_hasing: {epochs: 3}\n", r"unknown section 'deep_hasing' \(did you mean "
                                                           r"'deep_hashing'\?\)"),
    ("pipeline: {threads: 1}\nhag: [1, 2]\n", r"section 'hag' is a list \(\[1, 2\]\), not a mapping"),
    ("pipeline: {threads: 1}\nhag:\n#  steps: 3\n", r"section 'hag' is empty"),
    ("pipeline: {threads: 1}\ndeep_hashing:\n  epochs: 3\n   lr: 0.1\n", r"params\.yaml, line 4, column \d+ \('lr: "
                                                                        r"0\.1'\): not valid YAML \(mapping values"),
    ("- pipeline\n", r"params\.yaml must be a mapping of sections"),
])
def test_every_section_of_the_params_file_is_checked_before_the_stage_runs(project, text, message):
    """An empty or commented-out file, a typo in the pipeline section or in a section's name, a section that is not
    a mapping, a YAML slip: each stops the run before anything runs, naming the file, the culprit and the fix."""
    params = project / "params.yaml"
    good = yaml.safe_load(params.read_text())["deep_hashing"]
    if "deep_hashing" not in text and text.strip() and not text.startswith(("#", "-")):
        text += yaml.safe_dump({"deep_hashing": good})            # the stage's own section is fine
    params.write_text(text)
    with pytest.raises(ValueError, match=message) as refused:
        run_notebook(STEM, root=project, params_path=str(params))
    assert str(params) in str(refused.value)
    assert not (project / "reports").exists() and not (project / "build" / "staging").exists(), "nothing ran"
