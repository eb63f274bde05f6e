"""What every notebook does around its science: resolve its output folders, set one plotting style, time
itself, save figures, show published tables beside ours and judge its claims. The notebooks stay about their
paper; this is the shared frame (their results files are written by ``advhash.results``).

    run = start_notebook(figure_dir=figure_dir, metrics_dir=metrics_dir)   # in the setup cell
    save_figure(grid, run.figure_dir / "pr_curves.png")
    run.finish()                                                           # prints the notebook's time
    claims = Claims(check_claims)                                          # in the claims cell
    claims.expect(robust > baseline, f"the defense should beat the baseline: {robust} vs {baseline}")
    claims.finish()              # raises listing every failed claim; with check_claims False only lists them
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .pipeline import project_root

DPI = 110


@dataclass
class NotebookRun:
    """The folders of one notebook run (absolute, created) and its start time."""

    root: Path
    figure_dir: Path
    metrics_dir: Path
    started: float = field(default_factory=time.perf_counter)

    def finish(self) -> None:
        """Print the seconds since the run started (nothing returned, so a cell ending with it prints only that)."""
        print(f"notebook ran in {time.perf_counter() - self.started:.0f} s")


def start_notebook(*, figure_dir: str | Path, metrics_dir: str | Path) -> NotebookRun:
    """Resolve ``figure_dir`` and ``metrics_dir`` against the project root (``advhash.pipeline.project_root``),
    create them, and set the plotting and table style every report shares."""
    import seaborn as sns

    root = project_root()
    run = NotebookRun(root, root / figure_dir, root / metrics_dir)
    run.figure_dir.mkdir(parents=True, exist_ok=True)
    run.metrics_dir.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid", context="notebook")
    pd.set_option("display.precision", 4)
    _show_summary(SUMMARY_PLACEHOLDER)
    return run


SUMMARY_ID = "advhash-summary"   # the display near the top of a report that Claims.finish() fills in
SUMMARY_HEADING = "**Summary"    # how the filled summary starts (tools/report_site.py finds it by this)
SUMMARY_PLACEHOLDER = ("*The summary of what this report found appears here once the notebook has run to its end "
                       "(its claims, checked in the last section).*")


def _show_summary(markdown: str, *, update: bool = False) -> None:
    """Show (or, with ``update``, replace) the report's summary display: Jupyter's display_id mechanism, which
    papermill's executor applies to the earlier cell, so that the rendered report opens with its findings. Outside
    IPython, nothing."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display, update_display
    except ImportError:
        return
    if get_ipython() is None:
        return
    (update_display if update else display)(Markdown(markdown), display_id=SUMMARY_ID)


def show_summary(markdown: str) -> None:
    """Fill the report's summary display (at its top) with ``markdown``, which starts with ``SUMMARY_HEADING``
    (``advhash.findings.Findings.finish`` calls it; the last call wins). Outside IPython, nothing."""
    _show_summary(markdown, update=True)


def save_figure(figure, path: str | Path) -> None:
    """Save a matplotlib figure or a seaborn grid at the reports' resolution. Returns nothing, so that a
    notebook cell ending with it shows the figure alone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")     # legends placed outside the axes stay whole


def beside_published(ours: pd.DataFrame, published: pd.DataFrame, *, ours_label: str,
                     published_label: str) -> pd.DataFrame:
    """Our table and a published one side by side (column blocks ``ours_label`` and ``published_label``),
    on the rows of ours followed by the published rows ours lack; a cell one side lacks is NaN. Ours are rounded
    to the published table's precision (:func:`decimals_of`), so that the two read alike."""
    rows = list(ours.index) + [row for row in published.index if row not in ours.index]
    return pd.concat({ours_label: ours.reindex(rows).round(decimals_of(published)),
                      published_label: published.reindex(rows)}, axis=1)


def decimals_of(table: pd.DataFrame, *, most: int = 4) -> int:
    """The number of decimals a (published) table is printed with: the fewest that every number keeps exactly,
    at most ``most``."""
    values = table.select_dtypes("number").to_numpy(dtype=float).ravel()
    values = values[np.isfinite(values)]
    return next((d for d in range(most) if np.allclose(values, values.round(d), rtol=0, atol=1e-9)), most)


def finish_figure(fig, path: str | Path, *, title: str | None = None) -> None:
    """Title a matplotlib figure (``suptitle``), lay it out tightly and save it (:func:`save_figure`). Returns
    nothing, so that a notebook cell ending with it shows the figure alone."""
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


class Claims:
    """The claims a notebook checks at its end, all of them, before judging.

    ``expect(condition, message)`` records each claim; ``finish()`` prints how many held and lists the failed ones.
    With ``check`` True (the pipeline's ``check_claims``, the default and CI's) a failed claim then raises an
    AssertionError naming every failed claim, so the run fails and, under ``advhash.pipeline``, replaces no tracked
    result. With ``check`` False (an exploratory ``dvc exp run -S pipeline.check_claims=false``) the run finishes,
    its results are kept, and the failed claims are listed in the report as NOT HELD."""

    def __init__(self, check: bool = True):
        self.check = bool(check)
        self.held: list[str] = []
        self.failed: list[str] = []

    def expect(self, condition, message: str) -> bool:
        """Record one claim: ``message`` says what should hold, with its numbers. Returns whether it held."""
        (self.held if bool(condition) else self.failed).append(message)
        return bool(condition)

    def finish(self) -> bool:
        """Judge the recorded claims (see the class docstring), and write them as the summary at the top of the
        report. Returns True when all hold."""
        total = len(self.held) + len(self.failed)
        _show_summary("\n".join([f"{SUMMARY_HEADING}: {len(self.held)} of {total} claims held** (checked in the last "
                                  "section, with their numbers):", "",
                                  *(f"- NOT HELD: {message}" for message in self.failed),
                                  *(f"- held: {message}" for message in self.held)]), update=True)
        if not self.failed:
            return True
        listing = "\n".join(f"- {message}" for message in self.failed)
        if self.check:
            raise AssertionError(f"{len(self.failed)} of {total} claims do not hold:\n{listing}")
        print(f"NOT HELD ({len(self.failed)} of {total} claims; check_claims is False, so the run continues):\n"
              f"{listing}")
        return False

