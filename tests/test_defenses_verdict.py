"""A defense paper's headline measured on a results table (advhash.defenses.verdict): the gain per attack and code
length and its means, numbers without verdict words (verdicts are advhash.findings')."""

import pandas as pd
import pytest

from advhash.defenses.verdict import defense_gain, defense_verdict


def test_defense_gain_counts_a_higher_map_and_a_lower_targeted_map_as_gains():
    results = pd.DataFrame([
        dict(model="robust", bits=16, HAG=0.6, DHTA=0.2), dict(model="clean", bits=16, HAG=0.3, DHTA=0.5),
        dict(model="robust", bits=32, HAG=0.7, DHTA=0.1), dict(model="clean", bits=32, HAG=0.5, DHTA=0.4)])
    gains = defense_gain(results, "robust", "clean", higher_is_better={"HAG": True, "DHTA": False})
    assert list(gains.columns) == ["attack", "bits", "points", "relative"]
    by = gains.set_index(["attack", "bits"])
    assert by.loc[("HAG", 16), "points"] == pytest.approx(30) and by.loc[("HAG", 16), "relative"] == pytest.approx(100)
    assert by.loc[("DHTA", 16), "points"] == pytest.approx(30) and by.loc[("DHTA", 16), "relative"] == pytest.approx(60)
    assert by.loc[("HAG", 32), "points"] == pytest.approx(20) and by.loc[("HAG", 32), "relative"] == pytest.approx(40)
    assert by.loc[("DHTA", 32), "points"] == pytest.approx(30) and by.loc[("DHTA", 32), "relative"] == pytest.approx(75)
    reverse = defense_gain(results, "clean", "robust", higher_is_better={"HAG": True, "DHTA": False})
    assert (reverse.points < 0).all(), "the worse model loses on every attack"


def test_defense_verdict_averages_the_gains_and_reports_numbers_not_a_verdict():
    results = pd.DataFrame([
        dict(defense="saat", bits=16, HAG=0.6, SDHA=0.50), dict(defense="atrdh", bits=16, HAG=0.5, SDHA=0.55),
        dict(defense="saat", bits=32, HAG=0.6, SDHA=0.50), dict(defense="atrdh", bits=32, HAG=0.4, SDHA=0.55)])
    attacks = {"HAG": True, "SDHA": True}
    verdict = defense_verdict(results, "saat", "atrdh", higher_is_better=attacks, model_column="defense")
    assert verdict.per_attack == pytest.approx({"HAG": 15.0, "SDHA": -5.0}) and verdict.points == pytest.approx(5.0)
    assert verdict.holds and str(verdict).startswith("saat against atrdh: mean gain +5.00 points")
    assert verdict.summary() == dict(points=verdict.points, relative=verdict.relative)
    reverse = defense_verdict(results, "atrdh", "saat", higher_is_better=attacks, model_column="defense")
    assert not reverse.holds and "mean gain -5.00 points" in str(reverse) and "HAG -15.00, SDHA +5.00" in str(reverse)
    assert "reproduced" not in str(verdict).lower() + str(reverse).lower(), "a point estimate is not a verdict"


def test_defense_gain_compares_the_code_lengths_both_models_have():
    """A profile may fine-tune the defenses at the featured code length only, the undefended model at every one: the
    gain is measured where both are; no length in common is an error naming both models' lengths."""
    results = pd.DataFrame([
        dict(model="clean", bits=16, HAG=0.1), dict(model="clean", bits=32, HAG=0.5),
        dict(model="robust", bits=32, HAG=0.7)])
    gains = defense_gain(results, "robust", "clean", higher_is_better={"HAG": True})
    assert list(gains.bits) == [32] and gains.points.iloc[0] == pytest.approx(20)
    only16 = results[results.bits == 16]
    with pytest.raises(ValueError, match=r"'robust' \(bits \[\]\) and 'clean' \(bits \[16\]\) share no code length"):
        defense_gain(only16, "robust", "clean", higher_is_better={"HAG": True})
