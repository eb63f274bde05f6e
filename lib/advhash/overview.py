"""Every section's findings at a glance: each claim of the registry (``notebooks/published/claims.yaml``) with the
verdict its notebook wrote to ``metrics/NN_findings.json`` (``advhash.findings.Findings.write``), as one table for
the README ("Results at a glance"), the site's index (``tools/report_site.py``) and a terminal (``make findings``).

    rows = read_rows()                     # one Row per claim, section by section, in registry order
    print(context_line())                  # the data, the budget against the papers', the profile, commit, date
    print(terminal(rows))                  # at most 120 columns, the claims wrapped
    markdown(rows), html(rows, link=lambda section: f"{section}.html#findings")

A section whose findings file is missing (its stage has not run since the findings came) gives one row per claim
with the verdict "NOT RUN: rerun stage NN", never nothing; a claim of the registry that its section's file lacks
(added after the run) is NOT RUN too, and a finding whose claim left the registry is kept, named by its id.
Numbers as the reports show them (``advhash.findings``): mAP points (x100) to ``POINT_DECIMALS``, relative effects
as percents to ``PERCENT_DECIMALS``; where the paper states only a relative effect (CgAT), ours leads with ours
relative too, so that a column never sets points beside percents.

``python -m advhash.overview`` prints the terminal table; ``--readme`` rewrites the README's block between
``README_START`` and ``README_END`` (``tests/test_overview.py`` fails while it is stale).
"""

from __future__ import annotations

import argparse
import html as html_text
import json
import math
import subprocess
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

from .claims import SECTIONS, load_claims
from .findings import FINDINGS_SUFFIX, PERCENT_DECIMALS, POINT_DECIMALS
from .pipeline import NOTEBOOK_SECTIONS, project_root
from .report import SUMMARY_HEADING

__all__ = ["Row", "read_rows", "markdown", "html", "terminal", "tally", "context_line", "readme_block",
           "update_readme", "README_START", "README_END", "NOT_RUN"]

SECTION_NAMES = {"01_deep_hashing": "1. Deep hashing", "02_hag": "2. HAG", "03_cmla": "3. CMLA", "04_saat": "4. SAAT",
                 "05_cgat": "5. CgAT"}
COLUMNS = ("section", "claim", "source", "published", "ours [95 % interval]", "verdict")
NOT_RUN = "NOT RUN"
README_START = "<!-- findings:start (generated: `python -m advhash.overview --readme` rewrites this block) -->"
README_END = "<!-- findings:end -->"
WIDTH = 120
TERMINAL_WIDTHS = {"section": 8, "source": 16, "published": 15, "ours [95 % interval]": 24, "verdict": 14}


@dataclass(frozen=True)
class Row:
    """One claim as the overview shows it: every cell text, at the reports' precision."""

    section: str        # notebook stem, "04_saat"
    claim_id: str
    claim: str          # as the paper states it
    source: str         # "SAAT, Table II"
    published: str      # "+7.11 pts"
    ours: str           # "-0.89 [-2.10, +0.33] pts"
    verdict: str        # REPRODUCED, NOT REPRODUCED, INCONCLUSIVE[: why] or "NOT RUN: rerun stage 04"

    @property
    def cells(self) -> tuple[str, ...]:
        return (SECTION_NAMES.get(self.section, self.section), self.claim, self.source, self.published, self.ours,
                self.verdict)


def read_rows(metrics_dir: str | Path | None = None, registry: str | Path | None = None) -> list[Row]:
    """Every claim of the registry at ``registry`` (default: the project's ``notebooks/published/claims.yaml``)
    joined with its finding in ``metrics_dir`` (default: the project's ``metrics/``), section by section in
    registry order; see the module docstring for missing files and claims. A findings file that is not a
    ``Findings.to_json`` mapping is an error naming it."""
    metrics_dir = Path(metrics_dir) if metrics_dir is not None else project_root() / "metrics"
    claims, rows = load_claims(registry), []
    for section in SECTIONS:
        records = _read_findings(metrics_dir / f"{section}{FINDINGS_SUFFIX}") or {}
        for claim in (claim for claim in claims if claim.section == section):
            rows.append(_row(section, claim.id, claim.claim, f"{claim.source.paper}, {claim.source.where}",
                             records.pop(claim.id, None), claim.published.points, claim.published.relative_percent))
        for claim_id, record in records.items():   # a finding whose claim is no longer in the registry
            rows.append(_row(section, claim_id, f"(claim {claim_id!r}: no longer in the registry)", "unknown", record,
                             None, None))
    return rows


def _row(section: str, claim_id: str, claim: str, source: str, record: dict | None, points, relative) -> Row:
    """A claim's row from its finding ``record`` (None: not run), with the published effect the run compared
    against (the registry's, ``points`` and ``relative``, where there is no record)."""
    if record is None:
        return Row(section, claim_id, claim, source, _published_text(points, relative), "not run", _not_run(section))
    points = record.get("published_points", points)
    relative = record.get("published_relative_percent", relative)
    return Row(section, claim_id, claim, source, _published_text(points, relative),
               _ours_text(record, points, relative), str(record["verdict"]))


def _not_run(section: str) -> str:
    return f"{NOT_RUN}: rerun stage {section[:2]}"


def _read_findings(path: Path) -> dict[str, dict] | None:
    if not path.is_file():
        return None
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        stage = NOTEBOOK_SECTIONS.get(path.name.removesuffix(FINDINGS_SUFFIX), "<stage>")
        raise ValueError(f"{path} is not valid JSON ({error}): rerun its stage (dvc repro {stage})") from None
    if not (isinstance(records, dict) and all(isinstance(r, dict) and "verdict" in r for r in records.values())):
        raise ValueError(f"{path} is not a findings file ({{claim id: {{verdict, estimate, low, high, ...}}}}, "
                         "advhash.findings.Findings.to_json): rerun its stage")
    return dict(records)


def _signed(value: float, decimals: int) -> str:
    return f"{round(value, decimals) + 0.0:+.{decimals}f}"   # + 0.0: no "-0.00"


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else None


def _published_text(points, relative) -> str:
    points, relative = _number(points), _number(relative)
    if points is None and relative is None:
        return "not stated"
    if points is None:
        return f"{_signed(relative, PERCENT_DECIMALS)} %"
    return f"{_signed(points, POINT_DECIMALS)} pts" + (f" ({_signed(relative, PERCENT_DECIMALS)} %)"
                                                       if relative is not None else "")


def _ours_text(record: dict, published_points, published_relative) -> str:
    """Ours in the published effect's unit first: points with the interval, and our relative effect beside where
    the paper states one (first, where the paper states only that)."""
    estimate, low, high = (_number(record.get(key)) for key in ("estimate", "low", "high"))
    relative = _number(record.get("relative_percent"))
    if estimate is None:
        return "n/a"
    d = POINT_DECIMALS
    points = (f"{_signed(estimate, d)} [{_signed(low, d)}, {_signed(high, d)}] pts" if low is not None
              and high is not None else f"{_signed(estimate, d)} pts (no interval)")
    if _number(published_relative) is None or relative is None:
        return points
    relative_text = f"{_signed(relative, PERCENT_DECIMALS)} %"
    return f"{relative_text} ({points})" if _number(published_points) is None else f"{points} ({relative_text})"


def tally(rows: list[Row]) -> str:
    """"32 claims: 3 reproduced, 1 not reproduced, 2 inconclusive, 26 not run (no findings file yet: `dvc repro
    saat cgat`)"."""
    kinds = ("REPRODUCED", "NOT REPRODUCED", "INCONCLUSIVE", NOT_RUN)
    counts = {kind: sum(row.verdict.split(":")[0] == kind for row in rows) for kind in kinds}
    text = f"{len(rows)} claims: " + ", ".join(f"{counts[kind]} {kind.lower()}" for kind in kinds)
    if missing := [section for section in SECTIONS if any(row.section == section and row.verdict.startswith(NOT_RUN)
                                                          for row in rows)]:
        text += f" (no findings yet: `dvc repro {' '.join(NOTEBOOK_SECTIONS[section] for section in missing)}`)"
    return text + "."


def markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table (the README's "Results at a glance")."""
    def cell(text: str) -> str:
        return text.replace("|", r"\|").replace("*", r"\*").replace("\n", " ")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(cell(text) for text in row.cells) + " |" for row in rows])


def html(rows: list[Row], *, link: Callable[[str], str | None] | None = None) -> str:
    """The rows as an HTML table (the site's index), each verdict a CSS class (``verdict-reproduced``, ...); with
    ``link``, a last column links each row to ``link(section)`` (its report's findings; None: "no report")."""
    head = "".join(f"<th>{html_text.escape(name)}</th>" for name in COLUMNS + (("report",) if link else ()))
    body = []
    for row in rows:
        kind = row.verdict.split(":")[0].lower().replace(" ", "-")
        cells = "".join(f"<td class=\"{name.split(' ')[0]}\">{html_text.escape(text)}</td>"
                        for name, text in zip(COLUMNS, row.cells))
        if link:
            href = link(row.section)
            cells += (f"<td class=\"report\"><a href=\"{html_text.escape(href)}\">{row.section}</a></td>" if href
                      else "<td class=\"report\">no report</td>")
        body.append(f"<tr class=\"verdict-{kind}\" id=\"claim-{row.claim_id}\">{cells}</tr>")
    return f"<table class=\"findings\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def terminal(rows: list[Row], width: int = WIDTH) -> str:
    """The rows as a plain-text table at most ``width`` columns wide: every cell wrapped in its column, the claim
    taking what the others leave; a section's name on its first row only."""
    fixed = sum(TERMINAL_WIDTHS.values()) + 2 * (len(COLUMNS) - 1)
    if width - fixed < 20:
        raise ValueError(f"width {width} leaves the claims {width - fixed} columns: give at least {fixed + 20}")
    widths = [TERMINAL_WIDTHS.get(name, width - fixed) for name in COLUMNS]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()

    out = [line(list(COLUMNS)), line(["-" * w for w in widths])]
    previous = None
    for row in rows:
        cells = list(row.cells)
        if row.section == previous:
            cells[0] = ""
        elif previous is not None:
            out.append("")
        previous = row.section
        wrapped = [textwrap.wrap(cell, w, break_on_hyphens=False) or [""] for cell, w in zip(cells, widths)]
        for index in range(max(map(len, wrapped))):
            out.append(line([lines[index] if index < len(lines) else "" for lines in wrapped]))
    return "\n".join(out)


def context_line(root: str | Path | None = None, *, reports_dir: str | Path | None = None,
                 metrics_dir: str | Path | None = None, commit: bool = True) -> str:
    """One line on what the findings were computed on: the data (from ``params.yaml`` and the datasets' files in
    ``data/``), the attack budget against the papers' (``eps_255`` against ``profiles/paper.yaml``), the profile
    (``params.yaml`` compared with ``profiles/*.yaml``), the commit (``git rev-parse --short HEAD``; left out with
    ``commit`` False) and the date of the findings (the newest papermill end time among the reports in
    ``reports_dir`` whose section has a findings file in ``metrics_dir``)."""
    root = Path(root) if root is not None else project_root()
    reports_dir = Path(reports_dir) if reports_dir is not None else root / "reports"
    metrics_dir = Path(metrics_dir) if metrics_dir is not None else root / "metrics"
    if (root / "params.yaml").is_file():
        params = yaml.safe_load((root / "params.yaml").read_text())
        parts = [f"Data: {_data_text(root, params)}", f"budget: {_budget_text(root, params)}",
                 f"profile: {_profile_text(root, params)}"]
    else:
        parts = [f"Data, budget and profile unknown (no params.yaml in {root})"]
    if commit:
        parts.append(f"commit {_commit_text(root)}")
    parts.append(_date_text(reports_dir, metrics_dir))
    return "; ".join(parts) + "."


def _sections_text(numbers: list[int]) -> str:
    numbers = sorted(set(numbers))
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"sections {numbers[0]}-{numbers[-1]}"
    return ("section " if len(numbers) == 1 else "sections ") + ", ".join(map(str, numbers))


def _data_text(root: Path, params: dict) -> str:
    """"Fashion-Mosaic 28x28 grey, derived from Fashion-MNIST training images (sections 1-5); ..."."""
    first = params.get(NOTEBOOK_SECTIONS["01_deep_hashing"], {})
    used: dict[str, list[int]] = {}
    for number, (stem, section) in enumerate(NOTEBOOK_SECTIONS.items(), start=1):
        values = params.get(section, {})
        names = values.get("datasets") or [values.get("dataset") or first.get("dataset")]   # 04, 05: 01's victims
        for name in filter(None, names):
            used.setdefault(str(name), []).append(number)
    data_root = root / str(first.get("data_root", "data"))
    return "; ".join(f"{_dataset_text(data_root / name, name, first.get('input_size'))} ({_sections_text(numbers)})"
                     for name, numbers in used.items())


def _dataset_text(folder: Path, name: str, input_size) -> str:
    """A dataset's name as its meta writes it, its image size (from the images' .npy header) and its source where
    derived; without its files, what params say."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        shape = np.load(folder / "images.npy", mmap_mode="r").shape   # (N, C, H, W), read from the header only
    except (OSError, ValueError):
        return f"{name} ({'resized to %sx%s' % (input_size, input_size) if input_size else 'size unknown'}; "\
               f"not materialized in {folder.parent.name}/)"
    description = str(meta.get("description", ""))
    shown = description[:len(name)] if description[:len(name)].lower() == name.lower() else name
    text = f"{shown} {shape[-2]}x{shape[-1]} {'grey' if shape[1] == 1 else 'colour'}"
    source = str(meta.get("source", ""))
    return text + (f", {source.split(' (')[0]}" if source.startswith("derived") else "")


def _eps_values(params: dict) -> dict[int, int | float]:
    return {number: values["eps_255"] for number, section in enumerate(NOTEBOOK_SECTIONS.values(), start=1)
            if isinstance(values := params.get(section), dict) and "eps_255" in values}


def _budget_text(root: Path, params: dict) -> str:
    """"L-inf eps = 32/255 (sections 2, 4, 5; the papers': 8/255)"."""
    ours = _eps_values(params)
    paper_profile = root / "profiles" / "paper.yaml"
    papers = sorted(set(_eps_values(yaml.safe_load(paper_profile.read_text())).values())) \
        if paper_profile.is_file() else []
    by_value: dict = {}
    for number, value in ours.items():
        by_value.setdefault(value, []).append(number)
    text = ", ".join(f"{value:g}/255 ({_sections_text(numbers)})" for value, numbers in by_value.items()) or "none"
    return f"L-inf eps = {text}, the papers': " + (", ".join(f"{value:g}/255" for value in papers) or "unknown")


def _leaves(tree, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        return {key: value for name, inner in tree.items() for key, value in _leaves(inner, f"{prefix}{name}.").items()}
    return {prefix[:-1]: tree}


def _profile_text(root: Path, params: dict) -> str:
    """The profile ``params.yaml`` equals, or the nearest one and the settings that differ from it."""
    ours, nearest = _leaves(params), None
    for path in sorted((root / "profiles").glob("*.yaml")):
        theirs = _leaves(yaml.safe_load(path.read_text()))
        changed = sorted(key for key in ours.keys() | theirs.keys() if ours.get(key, None) != theirs.get(key, None))
        if not changed:
            return path.stem
        if nearest is None or len(changed) < len(nearest[1]):
            nearest = (path.stem, changed)
    if nearest is None:
        return "unknown (no profiles/*.yaml)"
    name, changed = nearest
    listed = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return f"{name} with {len(changed)} setting(s) changed ({listed})"


def _commit_text(root: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", "metrics", "reports")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return commit + (" with uncommitted results" if changed else "")


def _date_text(reports_dir: Path, metrics_dir: Path) -> str:
    """The newest papermill end time among the reports whose findings file exists and whose findings display is
    filled; "unknown" with the reason otherwise."""
    ended = []
    for section in SECTIONS:
        report = reports_dir / f"{section}.ipynb"
        if not ((metrics_dir / f"{section}{FINDINGS_SUFFIX}").is_file() and report.is_file()):
            continue
        notebook = json.loads(report.read_text(encoding="utf-8"))
        end = notebook.get("metadata", {}).get("papermill", {}).get("end_time")
        shown = ("".join(output.get("data", {}).get("text/markdown", "")) for cell in notebook.get("cells", [])
                 for output in cell.get("outputs", []))
        if end and any(text.startswith(SUMMARY_HEADING) for text in shown):
            ended.append(datetime.fromisoformat(end))
    if not ended:
        return "findings date unknown (no findings file beside a report that shows it)"
    return "findings of " + max(ended).strftime("%Y-%m-%d %H:%M %Z").strip()


def readme_block(root: str | Path | None = None, *, metrics_dir: str | Path | None = None,
                 registry: str | Path | None = None) -> str:
    """The README's "Results at a glance" block, markers included: the tally, the context line (no commit: the
    block would be stale after every commit) and the Markdown table."""
    root = Path(root) if root is not None else project_root()
    metrics_dir = Path(metrics_dir) if metrics_dir is not None else root / "metrics"
    rows = read_rows(metrics_dir, registry)
    return "\n".join([README_START, tally(rows), "", context_line(root, metrics_dir=metrics_dir, commit=False), "",
                      markdown(rows), README_END])


def update_readme(readme: str | Path | None = None, *, root: str | Path | None = None) -> bool:
    """Rewrite the block between ``README_START`` and ``README_END`` of ``readme`` (default: the project's
    README.md) with :func:`readme_block`; returns whether it changed. Markers missing is an error saying where."""
    root = Path(root) if root is not None else project_root()
    readme = Path(readme) if readme is not None else root / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme} lacks the findings block: put the lines {README_START!r} and {README_END!r} "
                         "where the table goes")
    updated = text[:start] + readme_block(root) + text[end + len(README_END):]
    if updated != text:
        readme.write_text(updated, encoding="utf-8")
    return updated != text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m advhash.overview", description=__doc__.splitlines()[0])
    parser.add_argument("--metrics-dir", type=Path, default=None, help="the findings files' folder (metrics/)")
    parser.add_argument("--registry", type=Path, default=None, help="the claims registry (its default)")
    parser.add_argument("--width", type=int, default=WIDTH, help=f"terminal columns (default {WIDTH})")
    parser.add_argument("--readme", action="store_true", help="rewrite README.md's findings block instead")
    args = parser.parse_args(argv)
    if args.readme:
        print("README.md " + ("updated" if update_readme() else "already up to date"))
        return
    rows = read_rows(args.metrics_dir, args.registry)
    notes = (tally(rows), context_line(metrics_dir=args.metrics_dir))
    print("\n\n".join([terminal(rows, args.width), *("\n".join(textwrap.wrap(note, args.width)) for note in notes)]))


if __name__ == "__main__":
    main()
