"""`make report`: the executed notebooks as one static site that opens with every finding, whose every link,
anchor and figure resolves, and whose pages are titled, linked, folded and typeset offline."""

import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from helpers import write_synthetic_findings

from advhash.claims import SECTIONS, load_claims
from advhash.report import SUMMARY_HEADING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import report_site  # noqa: E402  (tools/ is not a package)

SAAT_ATRDH = "saat-table2-over-atrdh"
INVARIANTS = "**9 of 9 invariants hold** (the code and the evaluation are right: checked at the end of the report)."


class References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.images, self.scripts, self.ids, self.title, self._in_title = [], [], [], set(), "", False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def parse(path):
    references = References()
    references.feed(path.read_text(encoding="utf-8"))
    return references


def with_findings_display(report: Path) -> None:
    """Reshape an executed report as the notebooks now open (``advhash.report.open_report`` right under the title,
    its findings and invariants displays filled), for reports rendered before that."""
    notebook = nbformat.read(report, as_version=4)
    cell = nbformat.v4.new_code_cell("from advhash.report import open_report\n\nopen_report()")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": markdown})
                    for markdown in (f"{SUMMARY_HEADING}: 8 findings: 6 reproduced, 1 not reproduced, 1 "
                                     "inconclusive** (each claim ...)\n\n| claim | verdict |\n|---|---|\n| x | y |",
                                     INVARIANTS)]
    notebook.cells.insert(1, cell)
    nbformat.write(notebook, report)


def without_findings_display(report: Path) -> None:
    """Reshape an executed report as one rendered before the findings existed: its findings and invariants displays
    emptied (the cell that opens the report kept, without outputs)."""
    notebook = nbformat.read(report, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and "open_report()" in cell.source:
            cell.outputs = []
    nbformat.write(notebook, report)


def project_copy(root: Path, stems=SECTIONS) -> Path:
    """A scratch copy of the project's results: the executed reports of ``stems`` (04's reshaped with a filled
    findings display, 02's as rendered before the findings existed), every headline, synthetic findings for 01-04
    (05 has none: NOT RUN), one NOT REPRODUCED."""
    (root / "reports").mkdir(parents=True)
    for stem in stems:
        shutil.copy2(ROOT / "reports" / f"{stem}.ipynb", root / "reports")
    if "04_saat" in stems:
        with_findings_display(root / "reports" / "04_saat.ipynb")
    if "02_hag" in stems:
        without_findings_display(root / "reports" / "02_hag.ipynb")
    for name in ("notebooks/published", "profiles"):
        shutil.copytree(ROOT / name, root / name)
    for name in ("params.yaml", "dvc.yaml", "pyproject.toml"):
        shutil.copy2(ROOT / name, root / name)
    (root / "metrics").mkdir()
    for headline in ROOT.glob("metrics/*_headline.json"):
        shutil.copy2(headline, root / "metrics")
    for section in SECTIONS[:-1]:
        write_synthetic_findings(root / "metrics", section, {SAAT_ATRDH: "NOT REPRODUCED"})
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = project_copy(tmp_path_factory.mktemp("project"))
    return report_site.build(root, root / "site").parent


def test_the_index_opens_with_every_finding_linked_to_its_report_then_the_context_line(site):
    text = (site / "index.html").read_text(encoding="utf-8")
    table = text.index('<table class="findings">')
    assert table < text.index('<p class="context">') < text.index("<h2>") and text.find("<table") == table
    assert text.index("<h1>") < table and "<section" not in text[:table]
    rows = re.findall(r'<tr class="verdict-([a-z-]+)" id="claim-([a-z0-9-]+)">(.*?)</tr>', text)
    sections = {claim.id: claim.section for claim in load_claims()}
    assert [claim_id for _, claim_id, _ in rows] == [claim_id for section in SECTIONS
                                                     for claim_id in sections if sections[claim_id] == section]
    for kind, claim_id, cells in rows:
        section = sections[claim_id]
        assert f'<a href="{section}.html#findings">' in cells, claim_id
        assert kind == ("not-run" if section == "05_cgat" else "not-reproduced" if claim_id == SAAT_ATRDH
                        else "reproduced"), claim_id
    not_run = sum(section == "05_cgat" for section in sections.values())
    assert f"{len(sections)} claims: {len(sections) - not_run - 1} reproduced, 1 not reproduced, 0 inconclusive, " \
           f"{not_run} not run" in text
    assert "budget: L-inf eps = 32/255 (sections 2, 4, 5), the papers&#x27;: 8/255; profile: default" in text


def test_every_link_anchor_and_figure_of_the_site_resolves_and_nothing_comes_from_the_network(site):
    pages = {page.name: parse(page) for page in sorted(site.glob("*.html"))}
    for page in sorted(site.glob("*.html")):
        references = pages[page.name]
        for link in references.links:
            if link.startswith(("http://", "https://", "mailto:")):
                continue
            target, _, anchor = link.partition("#")
            assert not target or (site / target).is_file(), f"{page.name}: broken link {link}"
            if anchor:
                assert anchor in pages[target or page.name].ids, f"{page.name}: no element {link}"
        for source in references.images:
            assert source.startswith("data:image/") or (site / source).is_file(), f"{page.name}: image {source[:60]}"
        assert all((site / src).is_file() for src in references.scripts), references.scripts
        assert "cdnjs" not in page.read_text(encoding="utf-8"), page.name
    figures = sum(len(references.images) for name, references in pages.items() if name.startswith("0"))
    assert figures >= sum(len(list((ROOT / "figures" / stem).glob("*.png"))) for stem in SECTIONS)


def test_report_pages_are_titled_linked_folded_and_typeset_offline(site):
    stems = list(SECTIONS)
    for at, stem in enumerate(stems):
        notebook = nbformat.read(ROOT / "reports" / f"{stem}.ipynb", as_version=4)
        page = parse(site / f"{stem}.html")
        text = (site / f"{stem}.html").read_text(encoding="utf-8")
        title = report_site.notebook_title(notebook)
        assert page.title == title and title.startswith(f"{at + 1}. "), (stem, page.title)
        assert "index.html" in page.links and "findings" in page.ids
        assert f"{stems[at + 1]}.html" in page.links if at + 1 < len(stems) else "next:" not in text
        code = sum(1 for cell in notebook.cells if cell.cell_type == "code") + (stem == "04_saat")
        cells = re.split(r'<div [^>]*class="jp-Cell jp-CodeCell', text)[1:]                # every code cell
        assert len(cells) == code and all(cell.lstrip().split(">", 1)[1].lstrip().startswith(
            '<details class="advhash-code"><summary>code (') for cell in cells), stem
        assert page.scripts == ["mathjax/tex-svg-full.js"] and "window.MathJax = {tex:" in text
    assert (site / "mathjax" / "tex-svg-full.js").read_bytes() == report_site.MATHJAX.read_bytes()


def test_the_index_shows_each_reports_findings_tally_and_invariants_or_why_not(site):
    text = (site / "index.html").read_text(encoding="utf-8")
    saat = text[text.index('<section id="04_saat">'):text.index('<section id="05_cgat">')]
    assert "<strong>Findings: 8 findings: 6 reproduced, 1 not reproduced, 1 inconclusive</strong>" in saat
    assert "<strong>9 of 9 invariants hold</strong>" in saat
    hag = text[text.index('<section id="02_hag">'):text.index('<section id="03_cmla">')]
    assert "rendered before the findings existed: rerun <code>dvc repro hag</code>" in hag
    assert "rendered before the findings existed" in (site / "02_hag.html").read_text(encoding="utf-8")


def test_the_headlines_sit_beside_the_published_numbers_in_words_and_one_unit(site):
    text = (site / "index.html").read_text(encoding="utf-8")
    for stem in SECTIONS:
        headline = json.loads((ROOT / "metrics" / f"{stem}_headline.json").read_text())
        section = text[text.index(f'<section id="{stem}">'):]
        section = section[:section.index("</section>")]
        lines = report_site.headline_lines(stem, headline, ROOT / "notebooks" / "published")
        numbers = len(report_site.Headline(headline).values)
        assert numbers <= len(lines) == section.count("<tr>") - 1, stem           # every number, one row each
        assert not re.search(r"<td>[a-z_]+(/[a-z_+ >-]+)+</td>", section), stem      # no JSON keys as labels
    saat = {line.label: line for line in report_site.headline_lines(
        "04_saat", json.loads((ROOT / "metrics" / "04_saat_headline.json").read_text()),
        ROOT / "notebooks" / "published")}
    atrdh = saat["ATRDH: clean mAP"]
    assert (atrdh.published, atrdh.source) == ("0.7216", "FLICKR-25K (SAAT Table II)") and len(atrdh.ours) == 6
    cgat = {line.label.split(":")[0]: line for line in report_site.headline_lines(
        "05_cgat", {"bits": 32, "robust_ensemble": {"atrdh": 0.5, "cgat": 0.55}, "cgat_over_atrdh_points": 5.0},
        ROOT / "notebooks" / "published")}
    relative = cgat["CgAT over ATRDH"]
    assert "(%)" in relative.label and (relative.ours, relative.published) == ("+10.00", "+18.61 / +12.35 / +11.56")
    assert "points" in cgat["CgAT minus ATRDH, mean over the paper's attacks (mAP points)"].label


def test_a_code_length_the_papers_do_not_publish_shows_ours_alone():
    for stem in SECTIONS:
        headline = {**json.loads((ROOT / "metrics" / f"{stem}_headline.json").read_text()), "bits": 12}
        lines = report_site.headline_lines(stem, headline, ROOT / "notebooks" / "published")
        assert lines and all(not line.published for line in lines if "(%)" not in line.label), stem


def test_a_project_with_one_report_builds_and_says_what_is_missing(tmp_path):
    root = project_copy(tmp_path, stems=["01_deep_hashing"])
    site = report_site.build(root, tmp_path / "out", reports_dir=root / "reports", metrics_dir=root / "metrics",
                             registry=ROOT / "notebooks" / "published" / "claims.yaml").parent
    assert sorted(path.name for path in site.glob("*.html")) == ["01_deep_hashing.html", "index.html"]
    text = (site / "index.html").read_text(encoding="utf-8")
    assert "No report: run <code>dvc repro saat</code>" in text and '<td class="report">no report</td>' in text
    assert "01_deep_hashing.html#findings" in text
    assert "next:" not in (site / "01_deep_hashing.html").read_text(encoding="utf-8")


def test_no_report_at_all_is_an_error_naming_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no report in .*reports .*run `dvc repro` first"):
        report_site.build(tmp_path, tmp_path / "site")


def test_mathjax_is_vendored_with_its_version_and_licence():
    readme = (report_site.MATHJAX.parent / "README.md").read_text()
    assert "MathJax **3.2.2**" in readme and "Apache License 2.0" in readme
    assert b"3.2.2" in report_site.MATHJAX.read_bytes()
    assert "Apache License" in (report_site.MATHJAX.parent / "LICENSE").read_text()
