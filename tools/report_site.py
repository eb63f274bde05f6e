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
from pathlib import Path

import nbformat
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {
    "01_deep_hashing": "1. Deep hashing: DPH, DPSH, HashNet",
    "02_hag": "2. HAG (TCYB 2018)",
    "03_cmla": "3. CMLA, cross-modal (NeurIPS 2019)",
    "04_saat": "4. SAAT, mainstay codes (TIFS 2023)",
    "05_cgat": "5. CgAT, center codes (WWW 2023)",
}
SUMMARY_START = "**Summary"        # the display advhash.report.Claims.finish fills at the top of a report


def read_csv(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / "notebooks" / "published" / name, comment="#")


def published_rows(stem: str, root: Path) -> list[tuple[str, float]]:
    """The published numbers a section's headline compares with, at 32 bits (mAP as a fraction), labelled with
    their source. Other datasets and backbones than ours: the level and the ordering compare, not the digits."""
    if stem == "01_deep_hashing":
        table = read_csv(root, "saat_table1.csv")
        row = table[(table.dataset == "FLICKR-25K") & (table.method == "Original") & (table.metric == "mAP")]
        return [("DPH mAP@5000, FLICKR-25K (SAAT Table I)", float(row["32"].iloc[0]) / 100)]
    if stem == "02_hag":
        table = read_csv(root, "hag_table1.csv").set_index("mAP")
        return [(f"{name} mAP, 32 bits", float(table.loc[name, "32"])) for name in table.index]
    if stem == "03_cmla":
        clean, attacked = read_csv(root, "cmla_table1.csv"), read_csv(root, "cmla_table2.csv")
        rows = []
        for task in ("image->text", "text->image"):
            one = clean[(clean.task == task) & (clean.method == "DCMH")]
            rows.append((f"DCMH {task} clean mAP, MIRFlickr-25K (CMLA Table 1)", float(one["32"].iloc[0])))
            two = attacked[(attacked.task == task) & (attacked.iterations == 500) & (attacked.quantity == "mAP")]
            rows.append((f"DCMH {task} mAP after 500 CMLA iterations (Table 2)", float(two["DCMH"].iloc[0])))
        return rows
    if stem == "04_saat":
        table = read_csv(root, "saat_table2.csv")
        table = table[table.dataset == "FLICKR-25K"]
        rows = []
        for defense, part in table.groupby("defense", sort=False):
            rows.append((f"{defense} clean mAP, FLICKR-25K (SAAT Table II)",
                         float(part[part.attack == "Original"]["32"].iloc[0]) / 100))
            rows.append((f"{defense} worst single attack (SAAT Table II)",
                         float(part[part.attack != "Original"]["32"].min()) / 100))
        return rows
    if stem == "05_cgat":
        table = read_csv(root, "cgat_headline.csv").set_index("claim")
        return [(f"CgAT over ATRDH, {dataset} (abstract, %)", float(value))
                for dataset, value in table.iloc[0].items()]
    raise KeyError(stem)


def headline_rows(path: Path) -> list[tuple[str, float]]:
    """``(name, value)`` of a headline JSON (``advhash.report.write_headline``), nested names joined by '/'."""
    rows = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}/{key}" if prefix else key, inner)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append((prefix, float(value)))

    walk("", json.loads(path.read_text()))
    return [row for row in rows if row[0] != "bits"]


def summary_of(notebook) -> str:
    """The report's claims summary (markdown), or a line saying it has none (a report of older code)."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/markdown", "")
            if text.startswith(SUMMARY_START):
                return text
    return "(this report has no claims summary: it was rendered by older code)"


def markdown_list(text: str) -> str:
    """The summary's markdown (a bold first line, then '- ' items) as HTML."""
    lines = [line for line in text.splitlines() if line.strip()]
    head = html.escape(lines[0]).replace("**", "")
    failed = "".join(f"<li class=\"failed\">{html.escape(line[2:])}</li>" for line in lines[1:]
                     if line.startswith("- NOT HELD"))
    held = "".join(f"<li class=\"held\">{html.escape(line[2:])}</li>" for line in lines[1:]
                   if line.startswith("- held"))
    return (f"<p><b>{head}</b></p>" + (f"<ul>{failed}</ul>" if failed else "")
            + (f"<details><summary>the claims that held</summary><ul>{held}</ul></details>" if held else ""))


def table(rows: list[tuple[str, float]], caption: str) -> str:
    body = "".join(f"<tr><td>{html.escape(name)}</td><td class=\"number\">{value:.3f}</td></tr>"
                   for name, value in rows)
    return f"<table><caption>{html.escape(caption)}</caption>{body}</table>"


def section_page(notebook, path: Path) -> None:
    """One report as a page (nbconvert, lab template, images embedded)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", embed_images=True)
    body, _ = exporter.from_notebook_node(notebook)
    path.write_text(body, encoding="utf-8")


STYLE = """body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; line-height: 1.4; }
section { border-top: 1px solid #ccc; padding-top: 1em; }
.tables { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; margin-top: 1em; }
table { border-collapse: collapse; font-size: 0.9em; } caption { text-align: left; font-weight: bold; }
td { padding: 2px 8px; border-bottom: 1px solid #eee; } td.number { text-align: right; font-family: monospace; }
li.failed { color: #b00; } li.held { color: #333; }"""


def build(root: Path = ROOT, out: Path | None = None) -> Path:
    """Write the site; returns the index page. A missing report or headline is an error naming it."""
    out = out or root / "site"
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for stem, title in SECTIONS.items():
        report, headline = root / "reports" / f"{stem}.ipynb", root / "metrics" / f"{stem}_headline.json"
        for needed in (report, headline):
            if not needed.is_file():
                raise FileNotFoundError(f"{needed} is missing: run `dvc repro` (or `dvc pull`) first")
        notebook = nbformat.read(report, as_version=4)
        section_page(notebook, out / f"{stem}.html")
        minutes = notebook.metadata.get("papermill", {}).get("duration") or 0.0
        parts.append(
            f"<section id=\"{stem}\"><h2><a href=\"{stem}.html\">{html.escape(title)}</a></h2>"
            f"<p>Notebook time {minutes / 60:.1f} min. The full report: <a href=\"{stem}.html\">{stem}</a>.</p>"
            f"{markdown_list(summary_of(notebook))}<div class=\"tables\">"
            f"{table(headline_rows(headline), 'ours (metrics/' + stem + '_headline.json)')}"
            f"{table(published_rows(stem, root), 'PUBLISHED (other data and backbones; 32 bits)')}</div></section>")
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
