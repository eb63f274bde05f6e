"""What every notebook does around its science: resolve its output folders, set one plotting style, time itself, save
figures, show published tables beside ours, open the report with its findings and check its invariants. The
notebooks stay about their paper; this is the shared frame (their results files are written by ``advhash.results``).

    open_report()                                                          # the first code cell, above parameters
    run = start_notebook(figure_dir=figure_dir, metrics_dir=metrics_dir)   # in the setup cell
    save_figure(grid, run.figure_dir / "pr_curves.png")
    run.finish()                                                           # prints the notebook's time
    invariants = Invariants(check_invariants)                              # in the invariants cell
    invariants.expect(robust <= members, "the ensemble's worst case is at most each member, per query")
    invariants.finish()          # raises listing every failed one; with check_invariants False only lists them
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
    pd.set_option("display.max_columns", 40)     # a 32-column table shown whole, not cut with "..."
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 200)   # a claim as the paper states it, not cut with "..."
    return run


SUMMARY_ID = "advhash-summary"         # the findings table at the top of a report (Findings.finish fills it)
INVARIANTS_ID = "advhash-invariants"   # the invariants line under it (Invariants.finish fills it)
SUMMARY_HEADING = "**Findings"         # how the filled findings display starts (tools/report_site.py finds it)
SUMMARY_PLACEHOLDER = ("*The findings of this report (each claim of the papers it tests, with our estimate, its "
                       "95 % interval and a verdict) appear here once the notebook has run to its end.*")
INVARIANTS_PLACEHOLDER = "*The invariants are checked at the end of the report.*"


def open_report() -> None:
    """The first code cell of every notebook, right under its title (above the parameters cells): the two
    displays its last cells fill, the findings table and the invariants line, so that a rendered report opens
    with its findings (Jupyter's display_id mechanism, which papermill's executor applies to this earlier cell).
    Outside IPython, nothing."""
    _show(SUMMARY_ID, SUMMARY_PLACEHOLDER)
    _show(INVARIANTS_ID, INVARIANTS_PLACEHOLDER)


def _show(display_id: str, markdown: str, *, update: bool = False) -> None:
    """Show (or, with ``update``, replace) one of the report's displays. Outside IPython, nothing."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display, update_display
    except ImportError:
        return
    if get_ipython() is None:
        return
    (update_display if update else display)(Markdown(markdown), display_id=display_id)


def show_summary(markdown: str) -> None:
    """Fill the report's findings display (at its top) with ``markdown``, which starts with ``SUMMARY_HEADING``
    (``advhash.findings.Findings.finish`` calls it; the last call wins). Outside IPython, nothing."""
    _show(SUMMARY_ID, markdown, update=True)


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


class Invariants:
    """The invariants a notebook checks at its end: what must hold whatever the data, because the code and the
    evaluation are right (every adversarial example inside the eps-ball, the ensemble at most each member per query,
    closed-form codes optimal by brute force, metrics above a random ranking where they must be). The papers'
    claims are not invariants: they are findings (``advhash.findings``), judged and shown, never failing a run.

    ``expect(condition, message)`` records each invariant; ``finish()`` shows "9 of 9 invariants hold." under the
    findings at the top of the report and lists the failed ones. With ``check`` True (the pipeline's
    ``check_invariants``, the default and CI's) a failed invariant then raises an AssertionError naming every
    failed one, so the run fails and, under ``advhash.pipeline``, replaces no tracked result. With ``check`` False
    (``dvc exp run -S pipeline.check_invariants=false``, to look at a broken run) the run finishes, its results are
    kept, and the failed invariants are listed in the report as FAILED."""

    def __init__(self, check: bool = True):
        self.check = bool(check)
        self.held: list[str] = []
        self.failed: list[str] = []

    @property
    def total(self) -> int:
        return len(self.held) + len(self.failed)

    def expect(self, condition, message: str) -> bool:
        """Record one invariant: ``message`` says what holds, worded positively, with its numbers. Returns whether
        it held."""
        (self.held if bool(condition) else self.failed).append(message)
        return bool(condition)

    def summary(self) -> str:
        """"9 of 9 invariants hold." and, below it, each failed one as "- FAILED: ..." (markdown)."""
        return "\n".join([f"**{len(self.held)} of {self.total} invariants hold** (the code and the evaluation are "
                          "right: checked at the end of the report; a failed one fails the run).",
                          *(["", *(f"- FAILED: {message}" for message in self.failed)] if self.failed else [])])

    def finish(self) -> bool:
        """Show :meth:`summary` at the top of the report and judge (see the class docstring). Returns True when
        every invariant holds."""
        _show(INVARIANTS_ID, self.summary(), update=True)
        if not self.failed:
            print(f"all {self.total} invariants hold")
            return True
        listing = "\n".join(f"- {message}" for message in self.failed)
        if self.check:
            raise AssertionError(f"{len(self.failed)} of {self.total} invariants do not hold:\n{listing}")
        print(f"FAILED ({len(self.failed)} of {self.total} invariants; check_invariants is False, so the run "
              f"continues):\n{listing}")
        return False
