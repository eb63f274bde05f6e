"""advhash.overview: every claim of the registry with its section's verdict, in Markdown, HTML and a terminal, a
section without findings shown as NOT RUN, and the README's "Results at a glance" kept in step with the files."""

import json
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml
from helpers import write_synthetic_findings

from advhash import overview
from advhash.claims import SECTIONS, load_claims
from advhash.report import SUMMARY_HEADING

ROOT = Path(__file__).resolve().parents[1]
SAAT_ATRDH = "saat-table2-over-atrdh"


def by_id(rows):
    return {row.claim_id: row for row in rows}


def test_a_not_reproduced_finding_shows_in_all_three_renderings(tmp_path):
    write_synthetic_findings(tmp_path, "04_saat", {SAAT_ATRDH: "NOT REPRODUCED"})
    rows = overview.read_rows(tmp_path)
    row = by_id(rows)[SAAT_ATRDH]
    assert (row.verdict, row.ours, row.published) == ("NOT REPRODUCED", "-2.00 [-3.50, -0.50] pts", "+7.11 pts")
    assert row.claim.startswith("SAAT adversarial training is more robust than ATRDH") and row.source == \
        "SAAT, Table II"
    assert f"| 4. SAAT | {row.claim} | SAAT, Table II | +7.11 pts | -2.00 [-3.50, -0.50] pts | NOT REPRODUCED |" \
        in overview.markdown(rows).splitlines()
    page = overview.html(rows, link=lambda section: f"{section}.html#findings")
    assert (f'<tr class="verdict-not-reproduced" id="claim-{SAAT_ATRDH}">' in page
            and '<td class="verdict">NOT REPRODUCED</td><td class="report"><a href="04_saat.html#findings">' in page)
    table = overview.terminal(rows)
    assert any("-2.00 [-3.50, -0.50] pts" in line and "NOT REPRODUCED" in line for line in table.splitlines())
    assert "1 not reproduced" in overview.tally(rows)


def test_a_section_without_its_findings_file_gives_not_run_rows_never_none(tmp_path):
    write_synthetic_findings(tmp_path, "04_saat")
    rows, claims = overview.read_rows(tmp_path), load_claims()
    assert [row.claim_id for row in rows] == [claim.id for section in SECTIONS for claim in claims
                                              if claim.section == section]               # registry order
    for row in rows:
        if row.section != "04_saat":
            assert (row.verdict, row.ours) == (f"NOT RUN: rerun stage {row.section[:2]}", "not run"), row
    assert all(row.verdict == "REPRODUCED" for row in rows if row.section == "04_saat")
    assert "(no findings yet: `dvc repro deep_hashing hag cmla cgat`)" in overview.tally(rows)
    assert overview.markdown(rows).count("NOT RUN: rerun stage 05") == sum(c.section == "05_cgat" for c in claims)


def test_a_claim_the_file_lacks_is_not_run_and_a_finding_outside_the_registry_is_kept(tmp_path):
    path = write_synthetic_findings(tmp_path, "04_saat")
    records = json.loads(path.read_text())
    records["retired-claim"] = records.pop(SAAT_ATRDH)
    path.write_text(json.dumps(records))
    rows = by_id(overview.read_rows(tmp_path))
    assert rows[SAAT_ATRDH].verdict == "NOT RUN: rerun stage 04"
    assert rows["retired-claim"].verdict == "REPRODUCED" and "no longer in the registry" in rows["retired-claim"].claim


def test_a_relative_claim_shows_ours_first_as_a_percent_beside_the_published_percent(tmp_path):
    write_synthetic_findings(tmp_path, "05_cgat")
    row = by_id(overview.read_rows(tmp_path))["cgat-over-atrdh"]
    assert (row.published, row.ours) == ("+14.2 %", "+6.0 % (+3.00 [+1.00, +5.00] pts)")


def test_the_terminal_table_fits_120_columns_and_keeps_every_word(tmp_path, capsys):
    for section in SECTIONS[:-1]:
        write_synthetic_findings(tmp_path, section, default="INCONCLUSIVE")
    path = tmp_path / "02_hag_findings.json"
    records = json.loads(path.read_text())
    records["hag-lowers-map"]["verdict"] = "INCONCLUSIVE: n = 12 queries"
    path.write_text(json.dumps(records))
    rows = overview.read_rows(tmp_path)
    table = overview.terminal(rows)
    assert max(map(len, table.splitlines())) <= 120
    words = table.split()
    for row in rows:
        assert all(word in words for word in row.claim.split()), row.claim_id
    assert "12" in words and "queries" in words
    overview.main(["--metrics-dir", str(tmp_path)])                         # `make findings`
    printed = capsys.readouterr().out
    assert max(map(len, printed.splitlines())) <= 120 and "NOT RUN" in printed and "budget:" in printed
    with pytest.raises(ValueError, match="at least"):
        overview.terminal(rows, width=60)


def test_a_broken_findings_file_is_an_error_naming_it(tmp_path):
    (tmp_path / "03_cmla_findings.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"03_cmla_findings.json is not valid JSON .*\(dvc repro cmla\)"):
        overview.read_rows(tmp_path)
    (tmp_path / "03_cmla_findings.json").write_text('{"cmla-lowers-cross-modal-map": 0.5}')
    with pytest.raises(ValueError, match="is not a findings file"):
        overview.read_rows(tmp_path)


@pytest.fixture
def project(tmp_path):
    """A project's parameters and profiles, without git, data or results."""
    for name in ("params.yaml", "dvc.yaml", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "reports").mkdir()
    return tmp_path


def test_the_context_line_states_budget_profile_commit_and_date(project):
    params = yaml.safe_load((project / "profiles" / "default.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    line = overview.context_line(project)
    assert "budget: L-inf eps = 32/255 (sections 2, 4, 5), the papers': 8/255" in line
    assert "profile: default;" in line and "commit unknown (no git)" in line
    assert "findings date unknown" in line and "fashion-mosaic (size unknown; not materialized in data/)" in line
    assert "commit" not in overview.context_line(project, commit=False)
    params["saat"]["eps_255"] = 16
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    line = overview.context_line(project)
    assert "32/255 (sections 2, 5), 16/255 (section 4)" in line
    assert "profile: default with 1 setting(s) changed (saat.eps_255)" in line
    write_synthetic_findings(project / "metrics", "04_saat")
    report = nbformat.v4.new_notebook(metadata={"papermill": {"end_time": "2026-12-24T10:30:00.5+00:00"}})
    report.cells.append(nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
        "display_data", data={"text/markdown": f"{SUMMARY_HEADING}: 8 findings: ...**"})]))
    nbformat.write(report, project / "reports" / "04_saat.ipynb")
    assert "findings of 2026-12-24 10:30 UTC." in overview.context_line(project)


def test_the_context_line_reads_the_image_size_from_the_data():
    if not (ROOT / "data" / "fashion-mosaic" / "meta.json").is_file():
        pytest.skip("data/ is not materialized (make data)")
    assert overview.context_line(ROOT).startswith("Data: Fashion-Mosaic 28x28 grey, derived from Fashion-MNIST")


def test_the_readme_table_is_what_the_findings_files_give():
    if not (ROOT / "data" / "fashion-mosaic" / "meta.json").is_file():
        pytest.skip("data/ is not materialized (make data): the README's block states the data's image size")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = readme.find(overview.README_START), readme.find(overview.README_END)
    assert 0 <= start < end, "README.md lacks its findings block (advhash.overview.README_START / README_END)"
    assert readme[start:end + len(overview.README_END)] == overview.readme_block(ROOT), (
        "README.md's 'Results at a glance' is stale: run `python -m advhash.overview --readme` and commit it")


def test_update_readme_rewrites_only_the_block(project):
    readme = project / "README.md"
    readme.write_text(f"# title\n\n{overview.README_START}\nold\n{overview.README_END}\n\nrest\n")
    assert overview.update_readme(readme, root=project)
    text = readme.read_text()
    assert text.startswith("# title\n\n") and text.endswith("\n\nrest\n") and "old" not in text
    assert "| 5. CgAT |" in text and not overview.update_readme(readme, root=project)
    readme.write_text("no block")
    with pytest.raises(ValueError, match="lacks the findings block"):
        overview.update_readme(readme, root=project)
