"""tools/profile_stages.py: the ten most expensive calls of each stage from a py-spy raw profile."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("profile_stages", ROOT / "tools" / "profile_stages.py")
profile_stages = importlib.util.module_from_spec(spec)
spec.loader.exec_module(profile_stages)

KERNEL = 'process 7:"python -m advhash.pipeline run 04_saat";process 9:"python -m ipykernel_launcher -f k.json"'


def test_each_stage_counts_the_samples_with_a_library_call_on_the_stack_once_per_stack(capsys, tmp_path):
    raw = tmp_path / "profile.raw"
    raw.write_text(
        f"{KERNEL};<module> (/tmp/ipykernel_9/1.py:3);leaderboard (/x/lib/advhash/robustness.py:10);"
        f"run (/x/lib/advhash/attacks/base.py:5);run (/x/lib/advhash/attacks/base.py:9);backward (torch/a.py:1) 30\n"
        f"{KERNEL};<module> (/tmp/ipykernel_9/2.py:3);fit_defense (/x/lib/advhash/defenses/base.py:4) 10\n"
        'process 3:"dvc repro";main (dvc/cli.py:1) 50\n'
        f"{KERNEL.replace('04_saat', '01_deep_hashing')};encode (/x/lib/advhash/train.py:2) 5\n")
    profiles = profile_stages.stage_profiles(raw.read_text().splitlines())
    assert set(profiles) == {"04_saat", "01_deep_hashing"}, "samples outside a stage are left out"
    total, calls, own = profiles["04_saat"]
    assert total == 40
    assert calls["run (advhash/attacks/base.py)"] == 30, "a function twice on one stack counts once"
    assert calls["leaderboard (advhash/robustness.py)"] == 30 and calls["fit_defense (advhash/defenses/base.py)"] == 10
    assert not any("module" in name or "torch" in name for name in calls), "cells and torch are not library calls"
    assert own == {"run (advhash/attacks/base.py)": 30, "fit_defense (advhash/defenses/base.py)": 10}, \
        "each sample counts once, for its innermost library call (torch's work inside it included)"
    assert profile_stages.main([str(raw), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "### 04_saat: 40 samples" in out and "| 75% | 75% | `run (advhash/attacks/base.py)` |" in out
    assert "leaderboard" not in out, "sorted by own share, the top 2 only"
