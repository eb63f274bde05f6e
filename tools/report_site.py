"""Render the executed notebooks (``reports/NN_name.ipynb``) into one static HTML site, ``site/``.

``site/index.html`` opens with every finding of the five sections in one table (``advhash.overview``: claim,
source, published, ours with its 95 % interval, verdict, a link to the report's findings), then one line on what
they were computed on (data, budget against the papers', profile, commit, date). Below, per section: its report's
findings tally and invariants line, its notebook time and its headline numbers (``metrics/NN_name_headline.json``)
row by row beside the published number of the same quantity (labelled PUBLISHED, with its data and table).
``site/NN_name.html`` is each report (nbconvert's lab template, figures embedded), titled by its first heading,
with links to the index and the next section, code cells folded (a click unfolds them), and formulas typeset by
the MathJax copied beside the pages from ``vendor/mathjax/`` (offline). Nothing is recomputed: the site shows what
``dvc repro`` wrote. Run ``make report``; open ``site/index.html``.

Written here because it is the project's own summary (which numbers face which published ones); the rendering of
each notebook is nbconvert's.
"""

from __future__ import annotations

import argparse
import copy
import html
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2
import mistune
import nbformat

from advhash import overview
from advhash.claims import REGISTRY, SECTIONS
from advhash.pipeline import NOTEBOOK_SECTIONS
from advhash.report import SUMMARY_HEADING, SUMMARY_PLACEHOLDER
from advhash.results import read_published as read_table

ROOT = Path(__file__).resolve().parents[1]
MATHJAX = ROOT / "vendor" / "mathjax" / "tex-svg-full.js"
ANCHOR = "findings"           # the id of each report page's findings display: NN_name.html#findings
NAMES = {"dph": "DPH", "dpsh": "DPSH", "hashnet": "HashNet", "undefended": "undefended", "atrdh": "ATRDH",
         "saat": "SAAT", "cgat": "CgAT", "finetune": "clean fine-tune (control)", "fashion-mosaic": "Fashion-Mosaic",
         "fashion-mnist": "Fashion-MNIST"}


# ---- a report page ---------------------------------------------------------------------------------------------

PAGE_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
<script>window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\(', '\\)']], displayMath: [['$$', '$$'], ['\\[', '\\]']],
  processEscapes: true, processEnvironments: true}, svg: {fontCache: 'global'}};</script>
<script src="{{ resources.advhash.mathjax }}" id="MathJax-script"></script>
<style>nav.advhash-nav { font-family: sans-serif; padding: 0.6em 1em; border-bottom: 1px solid #ccc; }
nav.advhash-nav.bottom { border-top: 1px solid #ccc; border-bottom: none; }
details.advhash-code > summary { cursor: pointer; color: #555; font-family: monospace; padding: 2px 0; }</style>
{%- endblock html_head_js_mathjax -%}
{%- block body_header -%}{{ super() }}{{ resources.advhash.nav }}{%- endblock body_header -%}
{% block body_footer %}{{ resources.advhash.nav | replace('advhash-nav', 'advhash-nav bottom') }}{{ super() }}
{%- endblock body_footer %}
{% block input_group -%}
<details class="advhash-code"><summary>code ({{ cell.source.splitlines() | length }} lines; click to unfold)</summary>
{{ super() }}
</details>
{%- endblock input_group %}
"""


def notebook_title(notebook) -> str | None:
    """The text of the notebook's first Markdown heading ("4. SAAT: mainstay codes, ..."), or None."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return None


def findings_outputs(notebook) -> tuple[dict | None, dict | None]:
    """The report's findings display and, right after it in the same cell (``advhash.report.open_report``), its
    invariants display; (None, None) for a report rendered before they existed."""
    for cell in notebook.cells:
        outputs = [output for output in cell.get("outputs", []) if "text/markdown" in output.get("data", {})]
        for index, output in enumerate(outputs):
            text = output["data"]["text/markdown"]
            if text.startswith(SUMMARY_HEADING) or text == SUMMARY_PLACEHOLDER:
                return output, outputs[index + 1] if index + 1 < len(outputs) else None
    return None, None


def marked(notebook, stem: str):
    """A copy of the notebook whose findings display carries the anchor ``#findings``; a report without one gets a
    line there saying so (and which stage to rerun)."""
    notebook = copy.deepcopy(notebook)
    summary, _ = findings_outputs(notebook)
    anchor = f'<div id="{ANCHOR}"></div>\n\n'
    if summary is not None:
        summary["data"]["text/markdown"] = anchor + summary["data"]["text/markdown"]
    else:
        notebook.cells.insert(1, nbformat.v4.new_markdown_cell(
            anchor + f"**No findings table: this report was rendered before the findings existed; rerun its stage "
            f"(`dvc repro {NOTEBOOK_SECTIONS[stem]}`).**"))
    return notebook


def navigation(stem: str, titles: dict[str, str]) -> str:
    """Links to the index, the previous section and the next one (among the sections with a page)."""
    stems = list(titles)
    at = stems.index(stem)
    links = ['<a href="index.html">&larr; all findings (index)</a>']
    if at > 0:
        links.append(f'previous: <a href="{stems[at - 1]}.html">{html.escape(titles[stems[at - 1]])}</a>')
    if at + 1 < len(stems):
        links.append(f'next: <a href="{stems[at + 1]}.html">{html.escape(titles[stems[at + 1]])} &rarr;</a>')
    return f'<nav class="advhash-nav">{" &middot; ".join(links)}</nav>'


def write_section_page(notebook, path: Path, *, stem: str, titles: dict[str, str]) -> None:
    """One report as a page (nbconvert, lab template, images embedded; see the module docstring)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", embed_images=True, template_file="advhash_page.html.j2",
                            extra_loaders=[jinja2.DictLoader({"advhash_page.html.j2": PAGE_TEMPLATE})])
    notebook = marked(notebook, stem)
    notebook.metadata["title"] = titles[stem]
    resources = dict(advhash=dict(mathjax="mathjax/" + MATHJAX.name, nav=navigation(stem, titles)))
    body, _ = exporter.from_notebook_node(notebook, resources=resources)
    path.write_text(body, encoding="utf-8")


# ---- the headline beside the published numbers --------------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    """One quantity of a section's headline: ``label`` in words, ours and the paper's number of the same quantity
    in the same unit (text; "" where the paper has none) and where the published one comes from."""

    label: str
    ours: str
    published: str = ""
    source: str = ""


def number(value: float | None, decimals: int = 3, *, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{round(value, decimals) + 0.0:{'+' if signed else ''}.{decimals}f}"


class Headline:
    """A headline's numbers by '/'-joined key (``advhash.results.write_headline``, without ``bits``): ``take`` marks
    each number it shows, ``rest`` lists the others, so that every number is shown once."""

    def __init__(self, headline: dict):
        self.bits, self.values, self.taken = headline.get("bits"), {}, set()

        def walk(prefix: str, value) -> None:
            if isinstance(value, dict):
                for key, inner in value.items():
                    walk(f"{prefix}/{key}" if prefix else str(key), inner)
            elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
                self.values[prefix] = None if value is None else float(value)

        walk("", {key: value for key, value in headline.items() if key != "bits"})

    def names(self, group: str) -> list[str]:
        return [key.split("/", 1)[1] for key in self.values if key.startswith(group + "/")]

    def take(self, key: str) -> tuple[bool, float | None]:
        self.taken.add(key)
        return key in self.values, self.values.get(key)

    def rest(self) -> list[Line]:
        return [Line(key.replace("/", ", ").replace("_", " "), number(value)) for key, value in self.values.items()
                if key not in self.taken]


def published_cell(table, bits: int, **where) -> float | None:
    rows = table
    for column, value in where.items():
        rows = rows[rows[column] == value]
    return float(rows[bits].iloc[0]) if len(rows) and bits in rows.columns else None


def lines_deep_hashing(head: Headline, published: Path, bits: int) -> list[Line]:
    table, lines = read_table(published / "saat_table1.csv"), []
    dph = published_cell(table, bits, dataset="FLICKR-25K", method="Original", metric="mAP")
    for method in head.names("map_at_k"):
        _, ours = head.take(f"map_at_k/{method}")
        paper = dph if method == "dph" else None
        lines.append(Line(f"{NAMES.get(method, method)}: clean mAP@k", number(ours, 4 if paper else 3),
                          "" if paper is None else number(paper / 100, 4), "FLICKR-25K (SAAT Table I, \"Original\")"
                          if paper is not None else ""))
    if head.take("random_map_at_k")[0]:
        lines.append(Line("a random ranking: mAP@k", number(head.values["random_map_at_k"])))
    return lines


def lines_hag(head: Headline, published: Path, bits: int) -> list[Line]:
    table, lines = read_table(published / "hag_table1.csv").set_index("mAP"), []
    paper = {key: float(table.loc[name, bits]) if bits in table.columns and name in table.index else None
             for key, name in (("map_hag", "HAG (published, FLICKR-25K)"), ("map_hag_fixed", "HAG* (published, "
                                                                                          "FLICKR-25K)"))}
    for key, what in (("map_clean", "clean mAP"), ("map_hag", "mAP under HAG"),
                      ("map_hag_fixed", "mAP under HAG* (fixed scale)"), ("map_pgd", "mAP under Hamming PGD")):
        for dataset in head.names(key):
            _, ours = head.take(f"{key}/{dataset}")
            value = paper.get(key)
            lines.append(Line(f"{what}, {NAMES.get(dataset, dataset)}", number(ours, 4 if value else 3),
                              "" if value is None else number(value, 4), "FLICKR-25K (HAG Table 1)" if value else ""))
    if head.take("linf_255_max")[0]:
        lines.append(Line("largest perturbation, L-inf x 255", number(head.values["linf_255_max"], 1)))
    return lines


def lines_cmla(head: Headline, published: Path, bits: int) -> list[Line]:
    clean, attacked = read_table(published / "cmla_table1.csv"), read_table(published / "cmla_table2.csv")
    attacked = attacked[(attacked.dataset == "MIRFlickr-25K") & (attacked.quantity == "mAP")]
    last = attacked[attacked.iterations == attacked.iterations.max()]
    lines = []
    for name in head.names("clean") + [n for n in head.names("attacked") if n not in head.names("clean")]:
        model, _, task = name.partition(" ")
        for kind, what in (("clean", "clean mAP"), ("attacked", "mAP under CMLA")):
            found, ours = head.take(f"{kind}/{name}")
            if not found:
                continue
            if kind == "clean":
                paper = published_cell(clean, bits, dataset="MIRFlickr-25K", task=task, method=model)
                source = "MIRFlickr-25K (CMLA Table 1)"
            else:
                part = last[last.task == task]        # Table 2 is at 32 bits only
                paper = float(part[model].iloc[0]) if bits == 32 and len(part) and model in part.columns else None
                source = f"MIRFlickr-25K, {int(last.iterations.max())} iterations (CMLA Table 2)"
            lines.append(Line(f"{name}: {what}", number(ours), "" if paper is None else number(paper),
                              source if paper is not None else ""))
    return lines


def _defenses(head: Headline) -> list[str]:
    order = ["undefended", "finetune", "atrdh", "saat", "cgat"]
    found = dict.fromkeys(head.names("clean") + head.names("robust_ensemble"))
    return sorted(found, key=lambda name: order.index(name) if name in order else len(order))


def lines_saat(head: Headline, published: Path, bits: int) -> list[Line]:
    table1, table2 = read_table(published / "saat_table1.csv"), read_table(published / "saat_table2.csv")
    table1 = table1[(table1.dataset == "FLICKR-25K") & (table1.metric == "mAP")]
    table2 = table2[table2.dataset == "FLICKR-25K"]
    clean = {"undefended": published_cell(table1, bits, method="Original"),
             **{d.lower(): published_cell(table2, bits, defense=d, attack="Original") for d in ("ATRDH", "SAAT")}}
    worst = {} if bits not in table1.columns or bits not in table2.columns else {
        "undefended": float(table1[table1.method != "Original"][bits].min()),
        **{d.lower(): float(table2[(table2.defense == d) & (table2.attack != "Original")][bits].min())
           for d in ("ATRDH", "SAAT")}}
    lines = _defense_lines(head, clean, worst, "FLICKR-25K (SAAT Table {})",
                           "FLICKR-25K, the lowest single attack (SAAT Table {}; no ensemble there)")
    if head.take("saat_over_atrdh_points")[0]:
        lines.append(Line("SAAT minus ATRDH, mean over Table II's single attacks (mAP points)",
                          number(head.values["saat_over_atrdh_points"], 2, signed=True), "",
                          "the paper's effect: the findings table above"))
    return lines


def _defense_lines(head: Headline, clean: dict, worst: dict, clean_source: str, worst_source: str) -> list[Line]:
    lines = []
    for defense in _defenses(head):
        name, table = NAMES.get(defense, defense), "I" if defense == "undefended" else "II"
        for key, what, paper, source in (("clean", "clean mAP", clean, clean_source),
                                         ("robust_ensemble", "mAP under the attack ensemble (per-query worst case)",
                                          worst, worst_source),
                                         ("overstated_ensemble", "strongest single attack's mAP minus the "
                                                                 "ensemble's", {}, "")):
            found, ours = head.take(f"{key}/{defense}")
            value = paper.get(defense)
            if found:
                lines.append(Line(f"{name}: {what}", number(ours, 4 if value is not None else 3),
                                  "" if value is None else number(value / 100, 4),
                                  source.format(table) if value is not None else ""))
    return lines


def lines_cgat(head: Headline, published: Path, bits: int) -> list[Line]:
    table = read_table(published / "cgat_headline.csv").set_index("claim")
    lines = _defense_lines(head, {}, {}, "", "")
    robust = head.values.get("robust_ensemble/cgat"), head.values.get("robust_ensemble/atrdh")
    if None not in robust and robust[1]:
        gains = table.iloc[0]
        lines.append(Line("CgAT over ATRDH: relative gain in mAP under the attack ensemble (%), from the two rows "
                          "above", number(100 * (robust[0] - robust[1]) / robust[1], 2, signed=True),
                          " / ".join(number(float(v), 2, signed=True) for v in gains.values),
                          f"{' / '.join(gains.index)} (CgAT abstract: 'defense performance', over attacks it does "
                          "not name)"))
    if head.take("cgat_over_atrdh_points")[0]:
        lines.append(Line("CgAT minus ATRDH, mean over the paper's attacks (mAP points)",
                          number(head.values["cgat_over_atrdh_points"], 2, signed=True), "",
                          "the paper states a relative gain only (row above)"))
    return lines


HEADLINE_LINES = {"01_deep_hashing": lines_deep_hashing, "02_hag": lines_hag, "03_cmla": lines_cmla,
                  "04_saat": lines_saat, "05_cgat": lines_cgat}


def headline_lines(stem: str, headline: dict, published: Path) -> list[Line]:
    """Every number of a section's headline as a :class:`Line`: the quantities the papers publish beside their
    published number (same unit, published precision), then the others alone."""
    head = Headline(headline)
    return HEADLINE_LINES[stem](head, published, int(head.bits or 32)) + head.rest()


def headline_html(lines: list[Line], bits) -> str:
    head = (f"<tr><th>at {bits} bits</th><th>ours</th><th>PUBLISHED</th><th>published: data and table (other "
            "data and backbones: compare levels and orderings, not digits)</th></tr>")
    body = "".join(f"<tr><td>{html.escape(line.label)}</td><td class=\"number\">{html.escape(line.ours)}</td>"
                   f"<td class=\"number published\">{html.escape(line.published)}</td>"
                   f"<td class=\"source\">{html.escape(line.source)}</td></tr>" for line in lines)
    return f"<table class=\"headline\"><thead>{head}</thead><tbody>{body}</tbody></table>"


# ---- the index ------------------------------------------------------------------------------------------------

MARKDOWN = mistune.create_markdown(escape=True)


def section_html(stem: str, title: str, notebook, headline: dict | None, published: Path) -> str:
    """A section of the index: its report's findings tally and invariants line, notebook time, headline."""
    parts = [f"<section id=\"{stem}\"><h3>" + (f"<a href=\"{stem}.html\">{html.escape(title)}</a>" if notebook
                                                else html.escape(title)) + "</h3>"]
    if notebook is None:
        parts.append(f"<p class=\"missing\">No report: run <code>dvc repro {NOTEBOOK_SECTIONS[stem]}</code>.</p>")
    else:
        summary, invariants = findings_outputs(notebook)
        if summary is None:
            parts.append("<p class=\"missing\">This report was rendered before the findings existed: rerun "
                         f"<code>dvc repro {NOTEBOOK_SECTIONS[stem]}</code>.</p>")
        else:
            first = summary["data"]["text/markdown"].split("\n\n")[0]
            parts.append(MARKDOWN(first) + (MARKDOWN(invariants["data"]["text/markdown"]) if invariants else ""))
        seconds = notebook.metadata.get("papermill", {}).get("duration")
        parts.append(f"<p>Notebook time {'unknown' if seconds is None else f'{seconds / 60:.1f} min'}; the report: "
                     f"<a href=\"{stem}.html\">{stem}.html</a> (<a href=\"{stem}.html#{ANCHOR}\">its findings</a>)"
                     "</p>")
    if headline is None:
        parts.append(f"<p class=\"missing\">No headline (metrics/{stem}_headline.json).</p>")
    else:
        parts.append(headline_html(headline_lines(stem, headline, published), headline.get("bits", "?")))
    return "".join(parts) + "</section>"


STYLE = """body { font-family: sans-serif; max-width: 1400px; margin: 2em auto; padding: 0 1em; line-height: 1.4; }
section { border-top: 1px solid #ccc; padding-top: 0.5em; margin-top: 1em; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.5em 0; }
th { text-align: left; border-bottom: 2px solid #999; padding: 3px 8px; vertical-align: bottom; }
td { padding: 3px 8px; border-bottom: 1px solid #e4e4e4; vertical-align: top; }
td.number, td.published, td.ours { font-family: monospace; white-space: nowrap; } td.number { text-align: right; }
table.findings td.claim { min-width: 22em; } table.findings td.section { white-space: nowrap; }
td.verdict { white-space: nowrap; } tr.verdict-reproduced td.verdict { color: #17642a; font-weight: bold; }
tr.verdict-not-reproduced td.verdict { color: #b00020; font-weight: bold; }
tr.verdict-inconclusive td.verdict { color: #8a5a00; } tr.verdict-not-run td { color: #777; }
td.source { color: #555; } p.context { background: #f4f4f4; padding: 0.5em 0.8em; } p.missing { color: #8a5a00; }"""


def build(root: Path = ROOT, out: Path | None = None, *, reports_dir: Path | None = None,
          metrics_dir: Path | None = None, registry: Path | None = None) -> Path:
    """Write the site into ``out`` (default ``<root>/site``, emptied first) from the reports in ``reports_dir``
    (default ``<root>/reports``), the findings and headlines in ``metrics_dir`` (default ``<root>/metrics``) and
    the claims registry ``registry`` (default ``<root>/notebooks/published/claims.yaml``); returns the index page.
    A section without its report or headline is shown as such (never dropped); no report at all is an error
    naming the folder."""
    root = Path(root)
    out = Path(out) if out is not None else root / "site"
    reports_dir = Path(reports_dir) if reports_dir is not None else root / "reports"
    metrics_dir = Path(metrics_dir) if metrics_dir is not None else root / "metrics"
    registry = Path(registry) if registry is not None else root / REGISTRY
    notebooks = {stem: nbformat.read(reports_dir / f"{stem}.ipynb", as_version=4) for stem in SECTIONS
                 if (reports_dir / f"{stem}.ipynb").is_file()}
    if not notebooks:
        raise FileNotFoundError(f"no report in {reports_dir} (reports/NN_name.ipynb): run `dvc repro` first")
    rows = overview.read_rows(metrics_dir, registry)
    if out.exists():
        shutil.rmtree(out)
    (out / "mathjax").mkdir(parents=True)
    shutil.copy2(MATHJAX, out / "mathjax" / MATHJAX.name)
    titles = {stem: notebook_title(notebook) or overview.SECTION_NAMES[stem] for stem, notebook in notebooks.items()}
    for stem, notebook in notebooks.items():
        write_section_page(notebook, out / f"{stem}.html", stem=stem, titles=titles)
    parts = []
    for stem in SECTIONS:
        headline = metrics_dir / f"{stem}_headline.json"
        parts.append(section_html(stem, titles.get(stem, overview.SECTION_NAMES[stem]), notebooks.get(stem),
                                  json.loads(headline.read_text()) if headline.is_file() else None,
                                  root / "notebooks" / "published"))
    table = overview.html(rows, link=lambda stem: f"{stem}.html#{ANCHOR}" if stem in notebooks else None)
    context = overview.context_line(root, reports_dir=reports_dir, metrics_dir=metrics_dir)
    index = out / "index.html"
    index.write_text(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>advhash: findings</title>"
        f"<style>{STYLE}</style></head><body><h1>advhash: the papers' claims, tested</h1>"
        f"<p><b>{html.escape(overview.tally(rows))}</b></p>{table}<p class=\"context\">{html.escape(context)}</p>"
        "<p>A claim is REPRODUCED when our effect has the paper's sign and its 95 % interval excludes zero, NOT "
        "REPRODUCED when the interval excludes zero on the other side, INCONCLUSIVE when it contains zero. Effects "
        "are ours minus the reference in mAP points (x100), percents where the paper states a relative gain; the "
        "interval resamples queries (and training seeds where they matter).</p>"
        "<h2>Each section: its report, invariants and headline numbers beside the published ones</h2>"
        f"{''.join(parts)}</body></html>", encoding="utf-8")
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the project (default: this one)")
    parser.add_argument("--out", type=Path, default=None, help="the site's folder (default: <root>/site/)")
    parser.add_argument("--reports-dir", type=Path, default=None, help="the executed notebooks (default: reports/)")
    parser.add_argument("--metrics-dir", type=Path, default=None, help="findings and headlines (default: metrics/)")
    parser.add_argument("--registry", type=Path, default=None, help="the claims registry (default: the project's)")
    args = parser.parse_args()
    index = build(args.root, args.out, reports_dir=args.reports_dir, metrics_dir=args.metrics_dir,
                  registry=args.registry)
    print(f"wrote {index}")


if __name__ == "__main__":
    main()
