"""`dvc plots show` reads at a glance and works offline: curves coloured by method, every figure registered as an
image plot, and a page that loads vega from itself, not from a CDN."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "vendor" / "vega" / "offline_page.html"
needs_dvc = pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc is not on PATH")


def test_the_offline_page_inlines_the_vega_builds_dvc_asks_for_and_loads_nothing_from_the_network():
    from dvc_render.vega import VegaRenderer

    page = PAGE.read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page          # DVC's CDN script tags are not inserted
    assert not re.search(r"<script[^>]*\bsrc=", page)                  # no script comes from elsewhere
    wanted = re.findall(r"npm/([a-z-]+)@([0-9.]+)", VegaRenderer.SCRIPTS)
    assert sorted(wanted) == [("vega", "5.20.2"), ("vega-embed", "6.18.2"), ("vega-lite", "5.2.0")]
    for name, version in wanted:                                       # the versions dvc-render was written for
        assert f"<!-- {name} {version} from the npm registry" in page
        assert page.count(f'"{version}"') >= 1, f"{name}'s build does not carry its version {version}"


def test_the_project_points_dvc_at_the_offline_page():
    config = (ROOT / ".dvc" / "config").read_text()
    template = re.search(r"html_template\s*=\s*(\S+)", config).group(1)
    assert (ROOT / ".dvc" / template).resolve() == PAGE.resolve()


def test_every_curve_plot_colours_by_method_and_every_figure_folder_is_registered():
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    curves = [next(iter(p.values())) for p in plots if isinstance(p, dict)]
    folders = {p for p in plots if isinstance(p, str)}
    assert curves and all(c["template"] == "by_series" for c in curves)
    assert folders == {f"figures/{s}" for s in ("01_deep_hashing", "02_hag", "03_cmla", "04_saat", "05_cgat")}
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    outputs = {next(iter(o)) if isinstance(o, dict) else o for s in stages.values() for o in s.get("outs", [])}
    for curve in curves:                                               # each file a stage writes, and there (a
        for path in curve["y"]:                                        # typo would silently drop a line)
            assert Path(path).parent.as_posix() in outputs and (ROOT / path).is_file(), path
    template = json.loads((ROOT / ".dvc" / "plots" / "by_series.json").read_text())
    assert template["encoding"]["color"]["field"] == "series" and template["encoding"]["strokeDash"]["field"] == "rev"


@needs_dvc
def test_dvc_plots_show_writes_an_offline_page_with_the_curves_and_the_figures(tmp_path):
    result = subprocess.run(["dvc", "plots", "show", "--json"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)["data"]
    for curve in ("Deep hashing, 32 bits: precision-recall by Hamming radius",
                  "CgAT, robustness vs eps: mAP under the center-guided attack"):
        spec = shown[curve][0]["content"]
        assert spec["encoding"]["color"]["field"] == "series" and spec["data"]["values"]
    assert any(key.startswith("figures/05_cgat/") and value[0]["type"] == "image" for key, value in shown.items())
    result = subprocess.run(["dvc", "plots", "show", "-o", str(tmp_path / "out")], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in page and "vega-embed 6.18.2" in page and "vegaEmbed(" in page
