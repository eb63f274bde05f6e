"""advhash.report: the notebooks' frame (output folders under the project root, the timer), saving figures,
published tables beside ours and the claims."""

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from advhash.report import NotebookRun, beside_published, save_figure, start_notebook  # noqa: E402


def test_beside_published_keeps_our_rows_first_then_the_published_extras():
    ours = pd.DataFrame({16: [0.5, 0.6]}, index=pd.Index(["a", "b"], name="model"))
    published = pd.DataFrame({16: [0.9, 0.8]}, index=pd.Index(["b", "c"], name="model"))
    table = beside_published(ours, published, ours_label="ours", published_label="PUBLISHED")
    assert list(table.index) == ["a", "b", "c"]
    assert list(table.columns) == [("ours", 16), ("PUBLISHED", 16)]
    assert table.loc["b", ("ours", 16)] == 0.6 and table.loc["b", ("PUBLISHED", 16)] == 0.9
    assert np.isnan(table.loc["a", ("PUBLISHED", 16)]) and np.isnan(table.loc["c", ("ours", 16)])


def test_notebook_run_finish_prints_the_time_and_returns_nothing(tmp_path, capsys):
    run = NotebookRun(tmp_path, tmp_path / "figures", tmp_path / "metrics", started=0.0)
    assert run.finish() is None                                  # nothing for the notebook cell to print
    out = capsys.readouterr().out
    assert out.startswith("notebook ran in ") and out.endswith(" s\n")


def test_save_figure_writes_the_png_and_returns_nothing(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    assert save_figure(fig, tmp_path / "deep" / "line.png") is None
    assert (tmp_path / "deep" / "line.png").read_bytes()[:4] == b"\x89PNG"


def test_start_notebook_resolves_and_creates_the_folders_under_the_project_root(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")              # nbval runs from notebooks/, papermill from the root
    run = start_notebook(figure_dir="build/figures/x", metrics_dir="build/metrics")
    assert run.root == tmp_path
    assert run.figure_dir == tmp_path / "build/figures/x" and run.figure_dir.is_dir()
    assert run.metrics_dir == tmp_path / "build/metrics" and run.metrics_dir.is_dir()
    assert run.finish() is None


def test_invariants_are_all_checked_then_raise_or_are_listed(capsys, monkeypatch):
    from advhash import report
    from advhash.report import Invariants

    shown = []
    monkeypatch.setattr(report, "_show", lambda display_id, text, update=False: shown.append((display_id, text)))
    strict = Invariants(True)
    assert strict.expect(1 > 0, "one beats zero") and not strict.expect(0.49 > 0.5, "mAP 0.49 beats random 0.5")
    strict.expect(False, "a second failure is listed too")
    with pytest.raises(AssertionError, match=r"(?s)2 of 3 invariants do not hold:\n- mAP 0.49 beats random 0.5\n"
                                             r"- a second failure is listed too"):
        strict.finish()
    assert shown[-1][0] == report.INVARIANTS_ID and shown[-1][1].startswith("**1 of 3 invariants hold**")
    assert "- FAILED: mAP 0.49 beats random 0.5" in shown[-1][1]      # shown at the top before the run fails
    exploring = Invariants(False)
    exploring.expect(False, "mAP 0.49 beats random 0.5")
    assert exploring.finish() is False
    assert "FAILED (1 of 1 invariants; check_invariants is False" in capsys.readouterr().out
    held = Invariants(True)
    held.expect(True, "fine")
    assert held.finish() is True and shown[-1][1].startswith("**1 of 1 invariants hold**")
