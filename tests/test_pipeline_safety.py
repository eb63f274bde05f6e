"""What a stage run may touch: nothing it did not write (its figure and metrics folders shared with other stages and
with a user's own files), nothing at all when it fails, under `dvc repro` too; one run of a stage at a time, each
with its own staging folder; and a params file checked as a whole before anything runs."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from advhash.pipeline import NOTEBOOK_SECTIONS, run_notebook

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
# the outputs a real dvc.yaml declares for stages 01 and 04 (what a fresh clone has, without any outputs record)
DVC_STAGES = {
    "deep_hashing": dict(cmd=f"python -m advhash.pipeline run {STEM}", outs=[
        "reports/01_deep_hashing.ipynb", "figures/01_deep_hashing", "metrics/01_deep_hashing_plots",
        "metrics/01_deep_hashing.json"]),
    "saat": dict(cmd="python -m advhash.pipeline run 04_saat", outs=["figures/04_saat", "metrics/04_saat.json"]),
}


@pytest.fixture
def project(tmp_path) -> Path:
    """A project root (dvc.yaml declaring stage 01's and 04's outputs, pyproject.toml) whose notebook 01 is the
    stage in miniature."""
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": DVC_STAGES}))
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
    from advhash.pipeline import main

    with pytest.raises(SystemExit, match=r"holds no readable publish\.json .*not the staging folder of a run that "
                                         r"succeeded, so there is nothing to publish"):
        main(["publish", str(staged[0])])                        # a failed run's results are never published
    assert figure.read_text() == "the last good figure"
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
    assert not list((project / "build" / "staging").iterdir())
    from advhash.publish import stage_lock

    with stage_lock(STEM, project):
        pass                                                     # the finished run let go of the lock


# a process that holds stage 01's lock of the project given (argv[1]) until it is killed, saying when it has it
HOLD_LOCK = """import sys, time
from advhash.publish import StageRunning, stage_lock
try:
    with stage_lock(sys.argv[2], sys.argv[1]):
        print("held", flush=True)
        time.sleep(float(sys.argv[3]))
except StageRunning as refused:
    sys.exit(str(refused))
"""


def _hold_lock(root: Path, seconds: float = 600, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(root), STEM, str(seconds)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_a_run_killed_with_sigkill_frees_its_stage_at_once(tmp_path):
    """One process holds stage 01's lock: another is refused, naming it. `kill -9` of the holder (an out-of-memory
    kill, a closed laptop's session): the next run gets the lock at once, no guessing whether the holder is gone."""
    from advhash.publish import StageRunning, stage_lock

    holder = _hold_lock(tmp_path)
    try:
        assert holder.stdout.readline() == "held\n", holder.stderr.read()
        second = _hold_lock(tmp_path, 0)
        out, err = second.communicate(timeout=60)
        assert second.returncode != 0 and out == "", "refused, the lock never held twice"
        assert f"stage {STEM} is already running: process {holder.pid} on " in err and "Wait for it" in err, err
        with pytest.raises(StageRunning, match=rf"process {holder.pid} on .*started 20\d\d-"):
            with stage_lock(STEM, tmp_path):
                pass
    finally:
        holder.kill()                                            # SIGKILL: no finally, no cleanup of its own
        holder.wait()
    with stage_lock(STEM, tmp_path) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()


@pytest.mark.parametrize("where", ["a pid now used by another process", "another host name"])
def test_a_lock_file_left_by_a_killed_run_never_blocks_the_stage(tmp_path, where):
    """`kill -9` leaves the lock file with the dead run's pid and host in it. After a reboot that pid may belong to
    another process, and in a container the host name changes with each start: the stage was refused for ever, the
    message blaming a run that no longer exists. Only a process that holds the lock blocks the stage."""
    from advhash.publish import stage_lock

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        host = socket.gethostname() if where.startswith("a pid") else "container-3f2a9c"
        lock = put(tmp_path / "build" / "locks" / f"{STEM}.lock", json.dumps(
            dict(pid=other.pid, host=host, started="2020-01-01 00:00:00", command="python -m advhash.pipeline run")))
        with stage_lock(STEM, tmp_path):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
    finally:
        other.kill()
        other.wait()


def test_runs_started_together_on_a_left_lock_file_get_it_one_at_a_time(tmp_path):
    """Several runs of a stage started at the same instant, a killed run's lock file there: two that read the same
    dead pid both took the lock over (the second deleting the first's), and each run's end deleted whatever lock was
    there. Exactly one holds it now; every other is refused."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    put(tmp_path / "build" / "locks" / f"{STEM}.lock", json.dumps(
        dict(pid=int(gone.stdout), host=socket.gethostname(), started="2020-01-01 00:00:00", command="killed")))
    go = tmp_path / "go"
    start = (f"import os, pathlib, time\nfrom advhash.publish import stage_lock\n"
             f"pathlib.Path({str(go)!r} + f'.ready.{{os.getpid()}}').touch()\n"
             f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.001)\n")
    runs = [subprocess.Popen([sys.executable, "-c", start + HOLD_LOCK, str(tmp_path), STEM, "1"], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(6)]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("go.ready.*"))) < len(runs) and time.monotonic() < deadline:
        time.sleep(0.01)                                         # every one waiting at the start line
    go.touch()
    results = [run.communicate(timeout=120) for run in runs]
    holders = [out for out, _ in results if out == "held\n"]
    assert len(holders) == 1, results
    assert all("is already running" in err for out, err in results if out != "held\n"), results


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
                                              r"are kept in .*s01\. A stage owns what dvc\.yaml declares as its "
                                              r"outputs, and elsewhere only the files it wrote there itself\. Move "
                                              r"those files elsewhere, or give the stage a folder of its own"):
        publish_files(STEM, {figures: [source]})
    assert (figures / "pr_curves.png").read_text() == "stage 04's" and not (figures / "training_loss.png").exists()
    assert (source / "pr_curves.png").is_file(), "the results stay in staging"

    own = tmp_path / "own"
    publish_files(STEM, {own: [_staged(tmp_path / "first", "pr_curves.png")]})
    put(own / "retrieval_examples.png", "a user's own figure")
    with pytest.raises(FileExistsError, match=r"retrieval_examples.png \(not written by stage 01_deep_hashing: "
                                              r"neither inside its outputs in dvc.yaml nor listed in its record"):
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


def test_a_user_s_file_where_the_stage_writes_is_refused_not_taken_over(project):
    """`figure_dir: paper`, a folder of a user's holding their own pr_curves.png: with no record there yet, the
    stage took the file over by its name and overwrote it. Refused now, naming it, before anything is published."""
    mine = put(project / "paper" / "pr_curves.png", "my own figure for the paper")
    with pytest.raises(FileExistsError, match=r"paper/pr_curves\.png \(not written by stage 01_deep_hashing: neither "
                                              r"inside its outputs in dvc\.yaml nor listed in its record .*paper/"
                                              r"\.advhash-outputs-01_deep_hashing\.json\)\. Nothing was moved"):
        run(project, figure_dir="paper", figures=["pr_curves.png", "loss.png"])
    assert mine.read_text() == "my own figure for the paper"
    assert not (project / "paper" / "loss.png").exists() and not (project / "metrics").exists()
    assert not (project / "reports").exists()


def test_on_a_fresh_clone_a_stage_never_overwrites_another_stage_s_output(project):
    """A fresh clone has stage 04's figures (committed) and no record anywhere: stage 01 with `figure_dir:
    figures/04_saat` overwrote 04's pr_curves.png. Refused, naming the file and its stage."""
    theirs = put(project / "figures" / "04_saat" / "pr_curves.png", "stage 04's committed figure")
    with pytest.raises(FileExistsError, match=r"04_saat/pr_curves\.png \(stage 04_saat's: inside its output "
                                              r".*figures/04_saat in dvc\.yaml\)"):
        run(project, figure_dir="figures/04_saat")
    assert theirs.read_text() == "stage 04's committed figure"


def test_a_stage_replaces_its_declared_outputs_whatever_its_record_says(project):
    """A fresh clone (results committed, no record), then a record that has forgotten a committed file (a run with
    `methods: [dph]` drew no pr_curves.png; `git checkout` brought it back): the stage replaced it once, then
    refused its own file, blaming the user. What dvc.yaml declares as the stage's outputs is the stage's."""
    committed = [put(project / "figures" / STEM / "pr_curves.png", "committed"),
                 put(project / "metrics" / "01_deep_hashing.json", "committed"),
                 put(project / "metrics" / "01_deep_hashing_plots" / "pr_dph.csv", "committed")]
    run(project, metrics=["01_deep_hashing.json", "01_deep_hashing_plots/pr_dph.csv"], content="fresh clone's run")
    assert [path.read_text() for path in committed] == ["fresh clone's run"] * 3
    run(project, figures=["training_loss.png"], content="dph only")
    assert not committed[0].exists(), "its own figure of the last run, unchanged, not drawn this time"
    put(committed[0], "committed")                               # git checkout figures/
    run(project, figures=["pr_curves.png"], content="back to every method")
    assert committed[0].read_text() == "back to every method"


def test_figure_dir_and_metrics_dir_one_folder_with_one_name_in_both_is_refused(project):
    """`figure_dir` and `metrics_dir` the same folder, a figure and a metric of one name: one was silently lost."""
    with pytest.raises(FileExistsError, match=r"two of its results would go to one path, and one would be lost: "
                                              r".*out/summary\.json \(both .*/figures/summary\.json and "
                                              r".*/metrics/summary\.json would go there\)\. Nothing was moved.*"
                                              r"Give figure_dir and metrics_dir different folders"):
        run(project, figure_dir="out", metrics_dir="./out", figures=["summary.json"], metrics=["summary.json"])
    assert not (project / "out").exists()


def test_a_file_of_the_stage_s_the_user_has_changed_is_kept_when_the_stage_stops_writing_it(project):
    """A figure the stage wrote, then retouched by hand for the paper: the next run that no longer draws it deleted
    the user's work. It is kept, with a warning naming it, and is the user's from then on."""
    run(project, figure_dir="paper", figures=["pr_curves.png", "tsne.png", "loss.png"])
    retouched = put(project / "paper" / "tsne.png", "my retouched version")
    with pytest.warns(UserWarning, match=r"paper/tsne\.png was written by stage 01_deep_hashing, which no longer "
                                         r"writes it, but its content has changed since .*kept"):
        run(project, figure_dir="paper", figures=["pr_curves.png"])
    assert retouched.read_text() == "my retouched version"
    assert not (project / "paper" / "loss.png").exists(), "an unchanged one is removed"
    record = json.loads((project / "paper" / ".advhash-outputs-01_deep_hashing.json").read_text())
    assert list(record["files"]) == ["pr_curves.png"], "the retouched file is no longer the stage's"


def test_a_publish_that_fails_part_way_names_what_was_published_and_is_completed_later(project):
    """The figures published, then the metrics folder cannot be written (here a file stands where its folder
    should be; a full disk or a permission alike): a bare NotADirectoryError left figures new and metrics old. The
    error says what was published and keeps every result in the staging folder, which `python -m advhash.pipeline
    publish <staging folder>` publishes once the cause is fixed."""
    blocker = put(project / "results", "a file where metrics_dir's folder should be")
    with pytest.raises(RuntimeError, match=r"publishing its results stopped part way \(NotADirectoryError.*\)\. "
                                           r"Published: .*figures/01_deep_hashing \(1 of 1 files\); every result is "
                                           r"still kept, whole, in .*build/staging/01_deep_hashing-\w+/figures.*"
                                           r"Fix the cause .* and publish them again: `python -m advhash.pipeline "
                                           r"publish .*build/staging/01_deep_hashing-\w+` \(or rerun the stage\)"
                                           ) as failed:
        run(project, metrics_dir="results/metrics", content="the run's")
    staging = Path(str(failed.value).split("`python -m advhash.pipeline publish ")[1].split("`")[0])
    assert (staging / "metrics" / "01_deep_hashing.json").read_text() == "the run's"
    assert (staging / "figures" / "pr_curves.png").read_text() == "the run's"
    assert not (project / "reports").exists()
    blocker.unlink()
    published = subprocess.run([sys.executable, "-m", "advhash.pipeline", "publish", str(staging)], cwd=project,
                               capture_output=True, text=True, timeout=120)
    assert published.returncode == 0, published.stderr
    assert (project / "results" / "metrics" / "01_deep_hashing.json").read_text() == "the run's"
    report = json.loads((project / "reports" / f"{STEM}.ipynb").read_text())
    injected = next(cell for cell in report["cells"] if "injected-parameters" in cell["metadata"].get("tags", []))
    assert "results/metrics" in "".join(injected["source"]) and "build/staging" not in "".join(injected["source"])
    assert not staging.exists(), "published: the staging folder is removed"


def test_a_report_that_cannot_be_written_names_the_published_results_and_the_kept_staging_folder(project):
    put(project / "reports", "a file where the reports folder should be")
    with pytest.raises(RuntimeError, match=r"figures and metrics are published into figures/01_deep_hashing and "
                                           r"metrics, but its report .*reports/01_deep_hashing\.ipynb could not be "
                                           r"written \(\w+Error.*Everything is still kept in .*build/staging/"
                                           r"01_deep_hashing-\w+; fix the cause and publish them again: "
                                           r"`python -m advhash.pipeline publish"):
        run(project)
    assert (project / "figures" / STEM / "pr_curves.png").read_text() == "new"


def test_a_copy_that_fails_leaves_no_temporary_file_behind(tmp_path, monkeypatch):
    """Staging on another file system than the results (os.replace cannot move across: EXDEV), and the disk fills
    during the copy: a hidden `.pr_curves.png.<random>` was left in the figure folder."""
    import errno

    import advhash.publish as publish

    figures = tmp_path / "figures"
    put(figures / "notes.txt", "mine")
    staged = _staged(tmp_path / "staged", "pr_curves.png")
    replace = os.replace

    def across_file_systems(source, target):
        if Path(source).is_relative_to(staged):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        replace(source, target)

    def disk_full(source, target, **_):
        Path(target).write_text("half a fig")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(publish.os, "replace", across_file_systems)
    monkeypatch.setattr(shutil, "copy2", disk_full)       # the module advhash.atomic copies with
    with pytest.raises(OSError if not hasattr(publish, "PublishFailed") else publish.PublishFailed,
                       match="No space left on device"):
        publish.publish_files(STEM, {figures: [staged]})
    monkeypatch.undo()
    assert sorted(path.name for path in figures.iterdir()) == [".advhash-outputs-01_deep_hashing.json", "notes.txt"]


def test_a_second_spelling_of_another_stage_s_file_is_the_same_file(tmp_path, monkeypatch):
    """On a case-insensitive file system (macOS, Windows) `PR_Curves.png`, listed in stage 04's record, and the
    `pr_curves.png` stage 01 writes are one file: comparing the spelled paths let 01 overwrite 04's file. Files are
    compared as files. (Emulated where the file system is case-sensitive: every path below the folder is looked up
    case-folded.)"""
    from advhash.publish import outputs_record, publish_files

    figures = tmp_path / "figures"
    theirs = put(figures / "pr_curves.png", "stage 04's figure")
    put(outputs_record("04_saat", figures), json.dumps({"files": ["PR_Curves.png"]}))
    if not (figures / "PR_CURVES.PNG").exists():                 # a case-sensitive file system: emulate
        lstat, stat = os.lstat, os.stat

        def folded(function):
            def look_up(path, *args, **kwargs):
                path = Path(path)
                if path.is_relative_to(figures):
                    path = figures / str(path.relative_to(figures)).casefold()
                return function(path, *args, **kwargs)
            return look_up

        monkeypatch.setattr(os, "lstat", folded(lstat))
        monkeypatch.setattr(os, "stat", folded(stat))
    with pytest.raises(FileExistsError, match=r"pr_curves\.png \(stage 04_saat's\)"):
        publish_files(STEM, {figures: [_staged(tmp_path / "staged", "pr_curves.png")]})
    monkeypatch.undo()
    assert theirs.read_text() == "stage 04's figure"


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


def test_every_committed_result_is_inside_its_stage_s_declared_outputs():
    """A fresh clone has the results and no outputs record: each stage may replace its committed report, figures
    and metrics only because dvc.yaml declares them as its outputs (a file elsewhere would make it refuse)."""
    from advhash.publish import stage_outputs

    declared = stage_outputs(ROOT)
    assert set(declared) == set(NOTEBOOK_SECTIONS)
    for folder in ("reports", "figures", "metrics"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                stem = next((stem for stem in NOTEBOOK_SECTIONS if stem in path.relative_to(ROOT).as_posix()), None)
                assert stem and any(path == out or out in path.parents for out in declared[stem]), \
                    f"{path.relative_to(ROOT)} is no stage's declared output in dvc.yaml"


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
    ("pipeline: {threads: 1}\ndeep_hashing: {epochs: 3}\ndeep_hashing: {epochs: 5}\n",
     r"params\.yaml, line 3, column 1 \('deep_hashing: \{epochs: 5\}'\): not valid YAML \(the key 'deep_hashing' is "
     r"given twice in one mapping, on line 2 and on line 3; YAML would silently keep only the second"),
    ("pipeline:\n  threads: 1\n  threads: 2\n", r"params\.yaml, line 3, column 3 \('threads: 2'\): not valid YAML "
                                              r"\(the key 'threads' is given twice in one mapping, on line 2 and on "
                                              r"line 3"),
])
def test_every_section_of_the_params_file_is_checked_before_the_stage_runs(project, text, message):
    """An empty or commented-out file, a typo in the pipeline section or in a section's name, a section that is not
    a mapping, a YAML slip, a key given twice (a second `deep_hashing:` section, pasted below the first, silently
    replaced it): each stops the run before anything runs, naming the file, the culprit and the fix."""
    params = project / "params.yaml"
    good = yaml.safe_load(params.read_text())["deep_hashing"]
    if "deep_hashing" not in text and text.strip() and not text.startswith(("#", "-")):
        text += yaml.safe_dump({"deep_hashing": good})            # the stage's own section is fine
    params.write_text(text)
    with pytest.raises(ValueError, match=message) as refused:
        run_notebook(STEM, root=project, params_path=str(params))
    assert str(params) in str(refused.value)
    assert not (project / "reports").exists() and not (project / "build" / "staging").exists(), "nothing ran"


def test_a_run_reads_its_params_file_once(project, monkeypatch):
    """A run read params.yaml three times (its section, the thread count, the pipeline settings): an edit saved
    while a stage starts (switching profiles for the next run) gave it settings from two different files."""
    import advhash.pipeline as pipeline

    reads = []
    load = pipeline.load_params
    monkeypatch.setattr(pipeline, "load_params", lambda path, *args: reads.append(path) or load(path, *args))
    run(project)
    assert reads == [str(project / "params.yaml")]
