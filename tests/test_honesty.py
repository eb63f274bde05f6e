"""Findings, not gates, proven on a real run of notebook 01 through the pipeline (tiny, seconds of training):

- a finding forced to fail (a test-only ``sitecustomize`` in the kernel, never a profile parameter) does not stop
  the run: the report opens with NOT REPRODUCED, and ``01_deep_hashing_findings.json``, its verdicts file, the
  site's index and the README's table all say NOT REPRODUCED;
- an invariant forced to fail fails the run, and every tracked result it would have replaced is left as it was.
"""

import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml

from advhash.pipeline import run_notebook

ROOT = Path(__file__).resolve().parents[1]
STEM = "01_deep_hashing"
FORCED = "dh-longer-codes"     # 01's claim, forced to the other side of zero

# Run at kernel start (Python imports ``sitecustomize`` from PYTHONPATH): the forced failures, each only when its
# environment variable is set, patched in before any notebook cell imports advhash.findings.
SITECUSTOMIZE = textwrap.dedent('''
    import os

    if os.environ.get("ADVHASH_TEST_FORCE_FINDING"):
        import dataclasses

        import advhash.evidence as evidence

        computed = evidence.claim_estimate

        def forced(claim, *args, **kwargs):
            estimate = computed(claim, *args, **kwargs)
            if claim.id != os.environ["ADVHASH_TEST_FORCE_FINDING"]:
                return estimate
            side = -claim.comparison.direction       # the interval strictly on the side the paper denies
            return dataclasses.replace(estimate, estimate=0.10 * side, low=min(0.05 * side, 0.15 * side),
                                       high=max(0.05 * side, 0.15 * side))

        evidence.claim_estimate = forced

        import advhash.findings as findings     # it binds claim_estimate by name: patched there too

        findings.claim_estimate = forced

    if os.environ.get("ADVHASH_TEST_FORCE_INVARIANT"):
        import advhash.report as report

        expect = report.Invariants.expect

        def failing_first(self, condition, message):
            first = not (self.held or self.failed)
            return expect(self, condition and not first, "FORCED: " + message if first else message)

        report.Invariants.expect = failing_first
''')


def tiny_params(folder: Path) -> Path:
    """The default profile's section of notebook 01, shrunk to seconds (on single-label Fashion-MNIST, where so
    little training already beats a random ranking, so that every invariant holds), every output under ``folder``."""
    section = yaml.safe_load((ROOT / "profiles" / "default.yaml").read_text())["deep_hashing"]
    section.update(dataset="fashion-mnist", methods=["dph"], bits_list=[16, 64], epochs=3,
                   num_query=60, num_train=300, num_database=400, num_examples=1, pn_max=50,
                   checkpoint_dir=str(folder / "checkpoints"),
                   figure_dir=str(folder / "figures"), metrics_dir=str(folder / "metrics"))
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump({"pipeline": {"threads": 1, "check_invariants": True}, "deep_hashing": section}))
    return path


@pytest.fixture
def forcing(tmp_path, monkeypatch):
    """Put the test-only sitecustomize on the kernel's PYTHONPATH; returns a function that arms one forcing."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "site"),
                                                                   os.environ.get("PYTHONPATH")])))
    return lambda name, value: monkeypatch.setenv(name, value)


@pytest.mark.slow
def test_a_finding_forced_to_fail_completes_the_run_and_says_not_reproduced_everywhere(tmp_path, forcing,
                                                                                         monkeypatch):
    forcing("ADVHASH_TEST_FORCE_FINDING", FORCED)
    report = tmp_path / "reports" / f"{STEM}.ipynb"
    run_notebook(STEM, params_path=str(tiny_params(tmp_path)), output=report)    # completes: a finding never fails

    findings = json.loads((tmp_path / "metrics" / f"{STEM}_findings.json").read_text())
    assert findings[FORCED]["verdict"] == "NOT REPRODUCED"
    assert json.loads((tmp_path / "metrics" / f"{STEM}_verdicts.json").read_text())[FORCED] == "NOT REPRODUCED"
    cells = json.loads(report.read_text())["cells"]
    opening = "".join("".join(output.get("data", {}).get("text/markdown", ""))
                      for cell in cells[:3] for output in cell.get("outputs", []))
    assert "**Findings" in opening and "NOT REPRODUCED" in opening, "the report opens with the failed finding"

    from advhash import overview
    rows = overview.read_rows(metrics_dir=tmp_path / "metrics")     # what the README table and `make findings` show
    forced = [row for row in rows if row.claim_id == FORCED]
    assert forced and forced[0].verdict == "NOT REPRODUCED"
    readme_row = next(line for line in overview.markdown(rows).splitlines() if FORCED_CLAIM_TEXT[:30] in line)
    assert "NOT REPRODUCED" in readme_row
    terminal = overview.terminal(rows, width=120)
    assert "NOT REPRODUCED" in terminal and max(map(len, terminal.splitlines())) <= 120

    monkeypatch.syspath_prepend(str(ROOT / "tools"))      # tools/ is not a package
    import report_site
    index = report_site.build(ROOT, tmp_path / "site_html", reports_dir=tmp_path / "reports",
                       metrics_dir=tmp_path / "metrics").read_text()
    assert "NOT REPRODUCED" in index.split("</table>")[0], "the index's first table shows it"


FORCED_CLAIM_TEXT = next(claim["claim"] for claim in yaml.safe_load((ROOT / "notebooks/published/claims.yaml")
                                                                    .read_text()) if claim["id"] == FORCED)


@pytest.mark.slow
def test_an_invariant_forced_to_fail_fails_the_run_and_replaces_no_tracked_result(tmp_path, forcing):
    params = tiny_params(tmp_path)
    tracked = {tmp_path / "figures" / "pr_curves.png": b"earlier figure",
               tmp_path / "metrics" / f"{STEM}.json": b'{"earlier": 1}',
               tmp_path / "metrics" / f"{STEM}_findings.json": b'{"earlier": 1}',
               tmp_path / "metrics" / f"{STEM}_verdicts.json": b'{"earlier": 1}',
               tmp_path / "reports" / f"{STEM}.ipynb": b"earlier report"}
    for path, content in tracked.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    forcing("ADVHASH_TEST_FORCE_INVARIANT", "1")
    failed = r"(?s)notebook 01_deep_hashing failed.*1 of \d+ invariants do not hold.*FORCED.*nothing tracked was " \
             r"replaced"
    with pytest.raises(RuntimeError, match=failed):
        run_notebook(STEM, params_path=str(params), output=tmp_path / "reports" / f"{STEM}.ipynb")
    for path, content in tracked.items():
        assert path.read_bytes() == content, f"{path.name} was replaced by a failed run"
    assert sorted(path.name for path in (tmp_path / "metrics").iterdir()) == sorted(
        path.name for path in tracked if path.parent.name == "metrics"), "nothing new published either"
