"""`make report`: the five executed notebooks as one static site whose every link and figure resolves."""

import html
import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import report_site  # noqa: E402  (tools/ is not a package)

CDN_SCRIPTS = ("https://cdnjs.cloudflare.com/ajax/libs/mathjax/", "https://cdnjs.cloudflare.com/ajax/libs/require.js/")


class References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.images, self.scripts, self.ids = [], [], [], set()

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


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site of this project's executed reports and headlines, built in a scratch copy (a headline a stage
    has not written yet stands in as one placeholder number, so the site's structure is still checked)."""
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(ROOT / "reports", root / "reports")
    shutil.copytree(ROOT / "notebooks" / "published", root / "notebooks" / "published")
    (root / "metrics").mkdir()
    for stem in report_site.SECTIONS:
        headline = ROOT / "metrics" / f"{stem}_headline.json"
        (root / "metrics" / headline.name).write_text(headline.read_text() if headline.is_file()
                                                      else '{"bits": 32, "placeholder": 0.5}')
    return report_site.build(root, root / "site").parent


def parse(path):
    references = References()
    references.feed(path.read_text(encoding="utf-8"))
    return references


def test_the_summary_page_links_every_section_and_shows_ours_beside_published(site):
    index = parse(site / "index.html")
    pages = {link for link in index.links if link.endswith(".html")}
    assert pages == {f"{stem}.html" for stem in report_site.SECTIONS}
    text = (site / "index.html").read_text(encoding="utf-8")
    for stem, (_, published) in report_site.SECTIONS.items():
        for name, value in published(ROOT):                                # every published number, labelled
            assert f"{html.escape(name)}</td><td class=\"number\">{value:.3f}" in text, (stem, name)
    for stem in report_site.SECTIONS:                                      # each report's claims summary
        summary = report_site.summary_of(nbformat.read(ROOT / "reports" / f"{stem}.ipynb", as_version=4))
        assert html.escape(summary.splitlines()[0]).replace("**", "") in text, stem
    assert text.count("ours at 32 bits") == 5
    for stem in report_site.SECTIONS:                                      # every headline number, ours
        headline = ROOT / "metrics" / f"{stem}_headline.json"
        if headline.is_file():
            for name, value in report_site.headline_rows(json.loads(headline.read_text())):
                shown = "n/a" if value is None else f"{value:.3f}"
                assert f"{html.escape(name)}</td><td class=\"number\">{shown}" in text, (stem, name)


def test_every_link_and_figure_of_the_site_resolves(site):
    for page in sorted(site.glob("*.html")):
        references = parse(page)
        for link in references.links:
            if link.startswith(("http://", "https://", "mailto:")):
                continue
            target, _, anchor = link.partition("#")
            assert not target or (site / target).is_file(), f"{page.name}: broken link {link}"
            if anchor and not target:
                assert anchor in references.ids, f"{page.name}: no element #{anchor}"
        for source in references.images:
            assert source.startswith("data:image/") or (site / source).is_file(), f"{page.name}: image {source[:60]}"
        assert all(src.startswith(CDN_SCRIPTS) for src in references.scripts), references.scripts
    figures = sum(len(parse(page).images) for page in site.glob("0*.html"))
    assert figures >= sum(len(list((ROOT / "figures" / stem).glob("*.png"))) for stem in report_site.SECTIONS)


def test_a_missing_report_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"reports/01_deep_hashing.ipynb is missing: run `dvc repro`"):
        report_site.build(tmp_path, tmp_path / "site")


def test_the_published_numbers_are_fractions_with_their_source():
    for stem, (_, published) in report_site.SECTIONS.items():
        rows = published(ROOT)
        assert rows and all(re.search(r"\((SAAT|HAG|CMLA) Table I*[12]?\)|CgAT abstract", name) for name, _ in rows)
        if stem != "05_cgat":                                   # the CgAT headline is a percentage
            assert all(0 < value < 1 for _, value in rows), (stem, rows)


def test_the_summary_keeps_a_failed_claims_numbers_and_folds_the_held_ones():
    text = "**Summary: 1 of 2 claims held** (x):\n\n- NOT HELD: gap too large:\n   code  gap\n0  a  0.5\n- held: fine"
    page = report_site.summary_html(text)
    assert '<li class="failed"><pre>NOT HELD: gap too large:\n   code  gap\n0  a  0.5</pre></li>' in page
    assert page.index("NOT HELD") < page.index("<details>") < page.index("held: fine")
