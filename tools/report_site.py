"""Render the five executed notebooks (``reports/NN_name.ipynb``) into one static HTML site, ``site/``.

``site/index.html`` is the summary page: per section its claims (the summary each report opens with), its
headline numbers (``metrics/NN_name_headline.json``, ours) beside the published numbers they compare with
(``notebooks/published/``, labelled PUBLISHED, other data and backbones), its notebook time, and a link to the
section's page ``site/NN_name.html`` (nbconvert's lab template; figures are embedded in the page). Nothing is
recomputed: the site shows what ``dvc repro`` wrote. Run ``make report``; open ``site/index.html``.

Written here because it is the project's own summary (which numbers face which published ones); the rendering of
each notebook is nbconvert's.
"""

from __future__ import annotations

import argparse
import html
import json
import shutil
from pathlib import Path

import nbformat
import pandas as pd

from advhash.report import SUMMARY_HEADING, SUMMARY_PLACEHOLDER
from advhash.results import read_published as read_table

ROOT = Path(__file__).resolve().parents[1]


def read_published(root: Path, name: str) -> pd.DataFrame:
    """A published table of ``notebooks/published/`` (``advhash.results.read_published``: code lengths as integer
    columns; their provenance is in '#' comment lines)."""
    return read_table(root / "notebooks" / "published" / name)


# The published numbers each section's headline compares with, at 32 bits (mAP as a fraction), labelled with their
# source. Other datasets and backbones than ours: the level and the ordering compare, not the digits.

def published_deep_hashing(root: Path) -> list[tuple[str, float]]:
    table = read_published(root, "saat_table1.csv")
    row = table[(table.dataset == "FLICKR-25K") & (table.method == "Original") & (table.metric == "mAP")]
    return [("DPH mAP@5000, FLICKR-25K (SAAT Table I)", float(row[32].iloc[0]) / 100)]


def published_hag(root: Path) -> list[tuple[str, float]]:
    table = read_published(root, "hag_table1.csv").set_index("mAP")
    return [(f"{name} mAP, 32 bits (HAG Table 1)", float(table.loc[name, 32])) for name in table.index]


def published_cmla(root: Path) -> list[tuple[str, float]]:
    clean, attacked = read_published(root, "cmla_table1.csv"), read_published(root, "cmla_table2.csv")
    rows = []
    for task in ("image->text", "text->image"):
        one = clean[(clean.task == task) & (clean.method == "DCMH")]
        rows.append((f"DCMH {task} clean mAP, MIRFlickr-25K (CMLA Table 1)", float(one[32].iloc[0])))
        two = attacked[(attacked.task == task) & (attacked.iterations == 500) & (attacked.quantity == "mAP")]
        rows.append((f"DCMH {task} mAP after 500 CMLA iterations (CMLA Table 2)", float(two["DCMH"].iloc[0])))
    return rows


def published_saat(root: Path) -> list[tuple[str, float]]:
    table = read_published(root, "saat_table2.csv")
    rows = []
    for defense, part in table[table.dataset == "FLICKR-25K"].groupby("defense", sort=False):
        rows.append((f"{defense} clean mAP, FLICKR-25K (SAAT Table II)",
                     float(part[part.attack == "Original"][32].iloc[0]) / 100))
        rows.append((f"{defense} worst single attack (SAAT Table II)",
                     float(part[part.attack != "Original"][32].min()) / 100))
    return rows


def published_cgat(root: Path) -> list[tuple[str, float]]:
    table = read_published(root, "cgat_headline.csv").set_index("claim")
    return [(f"CgAT over ATRDH, {dataset} (CgAT abstract, %)", float(value))
            for dataset, value in table.iloc[0].items()]


SECTIONS = {     # stem: (title, the published numbers beside its headline)
    "01_deep_hashing": ("1. Deep hashing: DPH, DPSH, HashNet", published_deep_hashing),
    "02_hag": ("2. HAG (TCYB 2018)", published_hag),
    "03_cmla": ("3. CMLA, cross-modal (NeurIPS 2019)", published_cmla),
    "04_saat": ("4. SAAT, mainstay codes (TIFS 2023)", published_saat),
    "05_cgat": ("5. CgAT, center codes (WWW 2023)", published_cgat),
}


def headline_rows(headline: dict) -> list[tuple[str, float | None]]:
    """``(name, value)`` of a headline (``advhash.results.write_headline``; nested names joined by '/', None kept:
    a number the run could not compute) without its ``bits``."""
    rows = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}/{key}" if prefix else key, inner)
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            rows.append((prefix, None if value is None else float(value)))

    walk("", {key: value for key, value in headline.items() if key != "bits"})
    return rows


def summary_of(notebook) -> str:
    """The report's claims summary (markdown), or a line saying why it has none."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/markdown", "")
            if text.startswith(SUMMARY_HEADING):
                return text
            if text == SUMMARY_PLACEHOLDER:            # the run stopped before its claims cell
                return "**No summary: the run stopped before its claims were checked**"
    return "**No summary: this report was rendered by older code**"


def summary_html(text: str) -> str:
    """The summary's markdown (a bold first line, then '- NOT HELD: ...' / '- held: ...' items whose messages may
    go on over more lines, e.g. a table) as HTML: the failed claims shown, the held ones folded."""
    lines = text.splitlines()
    items: list[list[str]] = []
    for line in lines[1:]:
        if line.startswith("- "):
            items.append([line[2:]])
        elif items and line.strip():
            items[-1].append(line)
    head = html.escape(lines[0]).replace("**", "")

    def listing(kind: str, css: str) -> str:
        return "".join(f"<li class=\"{css}\"><pre>{html.escape(chr(10).join(item))}</pre></li>"
                       for item in items if item[0].startswith(kind))

    failed, held = listing("NOT HELD", "failed"), listing("held", "held")
    return (f"<p><b>{head}</b></p>" + (f"<ul>{failed}</ul>" if failed else "")
            + (f"<details><summary>the claims that held</summary><ul>{held}</ul></details>" if held else ""))


def html_table(rows: list[tuple[str, float | None]], caption: str) -> str:
    """Two columns, name and number (3 decimals; n/a for None)."""
    body = "".join(f"<tr><td>{html.escape(name)}</td><td class=\"number\">"
                   f"{'n/a' if value is None else f'{value:.3f}'}</td></tr>" for name, value in rows)
    return f"<table><caption>{html.escape(caption)}</caption>{body}</table>"


def write_section_page(notebook, path: Path) -> None:
    """One report as a page (nbconvert, lab template, images embedded)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", embed_images=True)
    body, _ = exporter.from_notebook_node(notebook)
    path.write_text(body, encoding="utf-8")


def section_html(stem: str, title: str, notebook, headline: dict, published: list[tuple[str, float]]) -> str:
    """A section of the summary page: its link, notebook time, claims, and headline beside published."""
    seconds = notebook.metadata.get("papermill", {}).get("duration")
    took = "unknown" if seconds is None else f"{seconds / 60:.1f} min"
    ours = f"ours at {headline.get('bits', '?')} bits (metrics/{stem}_headline.json)"
    return (f"<section id=\"{stem}\"><h2><a href=\"{stem}.html\">{html.escape(title)}</a></h2>"
            f"<p>Notebook time {took}. The full report: <a href=\"{stem}.html\">{stem}</a>.</p>"
            f"{summary_html(summary_of(notebook))}<div class=\"tables\">"
            f"{html_table(headline_rows(headline), ours)}"
            f"{html_table(published, 'PUBLISHED (other data and backbones; 32 bits)')}</div></section>")


STYLE = """body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; line-height: 1.4; }
section { border-top: 1px solid #ccc; padding-top: 1em; }
.tables { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; margin-top: 1em; }
table { border-collapse: collapse; font-size: 0.9em; } caption { text-align: left; font-weight: bold; }
td { padding: 2px 8px; border-bottom: 1px solid #eee; } td.number { text-align: right; font-family: monospace; }
li pre { white-space: pre-wrap; margin: 0; font-family: inherit; } li.failed { color: #b00; }"""


def build(root: Path = ROOT, out: Path | None = None) -> Path:
    """Write the site into ``out`` (default ``site/``, emptied first) and return its index page. Every report and
    headline is checked before anything is written: a missing one is an error naming it."""
    out = out or root / "site"
    inputs = {stem: (root / "reports" / f"{stem}.ipynb", root / "metrics" / f"{stem}_headline.json")
              for stem in SECTIONS}
    for needed in (path for pair in inputs.values() for path in pair):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} is missing: run `dvc repro` (or `dvc pull`) first")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    parts = []
    for stem, (title, published) in SECTIONS.items():
        report, headline = inputs[stem]
        notebook = nbformat.read(report, as_version=4)
        write_section_page(notebook, out / f"{stem}.html")
        parts.append(section_html(stem, title, notebook, json.loads(headline.read_text()), published(root)))
    index = out / "index.html"
    index.write_text(f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>advhash: results</title>"
                     f"<style>{STYLE}</style></head><body><h1>advhash: results of the last <code>dvc repro</code></h1>"
                     f"<p>Each section: the claims its notebook checks, its headline numbers beside the published "
                     f"ones they compare with, and its full report.</p>{''.join(parts)}</body></html>",
                     encoding="utf-8")
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="the site's folder (default: site/)")
    args = parser.parse_args()
    print(f"wrote {build(out=args.out)}")


if __name__ == "__main__":
    main()
