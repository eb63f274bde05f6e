"""advhash.report: the notebooks' frame (output folders under the project root, the timer), saving figures,
curves for ``dvc plots`` and published tables beside ours."""

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from advhash.report import NotebookRun, beside_published, save_figure, start_notebook, write_curves  # noqa: E402


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


def test_write_curves_writes_one_csv_per_group_with_the_chosen_columns(tmp_path):
    frame = pd.DataFrame(dict(kind=["a", "a", "b"], method=["X", "X", "Y"], n=[1, 2, 1], precision=[0.5, 1 / 3, 1.0]))
    write_curves(frame, tmp_path / "plots", by=["kind", "method"], name="pn_{}_{}.csv", columns=["n", "precision"])
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["pn_a_X.csv", "pn_b_Y.csv"]
    assert (tmp_path / "plots" / "pn_a_X.csv").read_text() == "n,precision\n1,0.500000\n2,0.333333\n"


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


def test_claims_are_all_judged_then_raise_or_are_listed(capsys):
    from advhash.report import Claims

    strict = Claims(True)
    assert strict.expect(1 > 0, "one beats zero") and not strict.expect(0.49 > 0.5, "mAP 0.49 should beat 0.5")
    strict.expect(False, "a second failure is listed too")
    with pytest.raises(AssertionError, match=r"(?s)2 of 3 claims do not hold:\n- mAP 0.49 should beat 0.5\n"
                                             r"- a second failure is listed too"):
        strict.finish()
    exploring = Claims(False)
    exploring.expect(False, "mAP 0.49 should beat 0.5")
    assert exploring.finish() is False
    assert "NOT HELD (1 of 1 claims; check_claims is False" in capsys.readouterr().out
    held = Claims(True)
    held.expect(True, "fine")
    assert held.finish() is True


def test_a_headline_takes_one_code_length_and_refuses_more_than_a_terminal_holds(tmp_path):
    import json

    from advhash.report import write_headline

    nested = {"dph": {"16": 0.5, "32": 0.61}, "dpsh": {"16": 0.52, "32": 0.63}}
    path = write_headline(dict(map_at_k=nested, random_map_at_k=0.2), tmp_path / "h.json", bits=32)
    assert json.loads(path.read_text()) == {"bits": 32, "map_at_k": {"dph": 0.61, "dpsh": 0.63}, "random_map_at_k": 0.2}
    many = {f"m{i}": {"a": {"32": 0.1}, "b": {"32": 0.2}} for i in range(11)}
    with pytest.raises(ValueError, match=r"at most 20 numbers .*got 22"):
        write_headline(many, tmp_path / "too_many.json", bits=32)

