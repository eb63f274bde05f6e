"""advhash.claims: the shipped registry (valid, one section per notebook, published effects that agree with the
published tables, listed in docs/methods.md), the errors a malformed registry raises, and require_available."""

import copy
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from advhash.claims import (SECTIONS, MissingResultError, RegistryError, claims_for, load_claims,
                            require_available)

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "notebooks" / "published"
BITS = ["16", "32", "48", "64"]


@pytest.fixture(scope="module")
def claims():
    return load_claims(PUBLISHED / "claims.yaml")


def test_the_shipped_registry_loads_with_unique_ids_and_claims_for_every_notebook(claims):
    assert len({claim.id for claim in claims}) == len(claims) >= 15
    assert SECTIONS == tuple(sorted(path.stem for path in (ROOT / "notebooks").glob("0*.py")))
    assert {claim.section for claim in claims} == set(SECTIONS)          # every report opens with findings
    assert claims_for("04_saat") == [claim for claim in claims if claim.section == "04_saat"]
    assert load_claims() == claims                                        # the default path is the shipped file


def test_every_name_a_claim_compares_is_one_its_notebook_uses(claims):
    """Models, attacks and tasks are named as the notebooks name them (a quoted name in the notebook's source),
    so that a typo such as "ATRDH" for "atrdh" fails here rather than in the run."""
    for claim in claims:
        source = (ROOT / "notebooks" / f"{claim.section}.py").read_text()
        comparison = claim.comparison
        names = {*comparison.models, *comparison.attacks, *comparison.tasks}
        if comparison.compare in ("models", "attacks", "tasks"):
            names |= {comparison.ours, comparison.reference}
        for name in names:
            assert f'"{name}"' in source, f"{claim.id}: {name!r} is not a name notebooks/{claim.section}.py uses"


class Tables:
    """The published tables a recipe reads, recorded, so that the test also checks each claim's ``tables``."""

    def __init__(self):
        self.used = set()

    def __call__(self, name):
        self.used.add(name)
        return pd.read_csv(PUBLISHED / name, comment="#")


def _saat1(t, method, metric, bits=BITS):              # (dataset, bits) of SAAT's Table I, percent
    table = t("saat_table1.csv")
    return table[(table.method == method) & (table.metric == metric)][bits].to_numpy(float)


def _saat2(t, defense, attack, bits=("32",)):          # (dataset, bits) of SAAT's Table II, percent
    table = t("saat_table2.csv")
    return table[(table.defense == defense) & (table.attack == attack)][list(bits)].to_numpy(float)


def _cmla_clean(t, task, method):                   # per dataset, at 32 bits (CMLA Table 1), a fraction
    table = t("cmla_table1.csv")
    return table[(table.task == task) & (table.method == method)]["32"].to_numpy(float)


def _cmla_attacked(t, task, method):                # per dataset, 32 bits, 500 iterations (CMLA Table 2)
    table = t("cmla_table2.csv")
    rows = table[(table.task == task) & (table.iterations == 500) & (table.quantity == "mAP")]
    return rows[method].to_numpy(float)


def _hag_transfer(t):
    table = t("hag_transfer.csv").set_index("published, MS-COCO")
    return table, ["DPH-VGG16", "DPH-VGG16*", "DPH-VGG19", "DPH-VGG19*"], \
        ["DPH-VGG16 (r1)", "DPH-VGG16* (r2)", "DPH-VGG19 (r3)", "DPH-VGG19* (r4)"]


def _own_minus_transferred(t):
    table, victims, rows = _hag_transfer(t)
    block = table.loc[rows, victims].to_numpy(float)                      # perturbation (row) x victim (column)
    return 100 * np.mean([block[c, c] - np.delete(block[:, c], c).mean() for c in range(4)])


def _second_seed_minus_other_backbone(t):
    table, victims, rows = _hag_transfer(t)
    block = table.loc[rows, victims].to_numpy(float)
    twin, other = {0: 1, 1: 0, 2: 3, 3: 2}, {0: [2, 3], 1: [2, 3], 2: [0, 1], 3: [0, 1]}
    return 100 * np.mean([block[twin[c], c] - block[other[c], c].mean() for c in range(4)])


def _ensemble_minus_single(t):
    table, _, rows = _hag_transfer(t)
    return 100 * (table.loc["r1 + r2 + r3 + r4"] - table.loc[rows].mean()).mean()


def _hag_table1(t):                                 # rows HAG* and HAG, one column per code length
    table = t("hag_table1.csv").set_index("mAP")
    return table.rename(index=lambda label: label.split(" (")[0])


def _hag_iterations(t):
    return t("hag_iterations.csv").set_index("iteration (published, FLICKR-25K)")


def _plus(t, model, task):
    return 100 * np.mean(_cmla_attacked(t, task, model + "+") - _cmla_attacked(t, task, model))


CROSS = ("image->text", "text->image")
# claim id -> its published effect in points, recomputed from notebooks/published/*.csv
RECIPES = {
    "dh-longer-codes": lambda t: np.mean(_saat1(t, "Original", "mAP", ["64"]) - _saat1(t, "Original", "mAP", ["16"])),
    "hag-lowers-map": lambda t: 100 * (_hag_iterations(t).loc[2000] - _hag_iterations(t).loc[0]).mean(),
    "hag-growing-scale": lambda t: 100 * (_hag_table1(t).loc["HAG"] - _hag_table1(t).loc["HAG*"]).mean(),
    "hag-transfer-own-strongest": _own_minus_transferred,
    "hag-transfer-second-seed": _second_seed_minus_other_backbone,
    "hag-transfer-ensemble": _ensemble_minus_single,
    "cmla-lowers-cross-modal-map": lambda t: 100 * np.mean([
        _cmla_attacked(t, task, model) - _cmla_clean(t, task, model) for task in CROSS for model in ("DCMH", "SSAH")]),
    **{f"cmla-{model.lower()}-plus-{task.replace('->', '-to-')}-{protocol}":
       (lambda t, model=model, task=task: _plus(t, model, task))
       for model in ("DCMH", "SSAH") for task in CROSS for protocol in ("transfer", "adaptive")},
    **{f"cmla-{model.lower()}-plus-clean": (lambda t, model=model: 100 * np.mean(
        [_cmla_clean(t, task, model + "+") - _cmla_clean(t, task, model) for task in CROSS]))
       for model in ("DCMH", "SSAH")},
    **{f"saat-table1-over-{attack.lower()}": (lambda t, attack=attack: np.mean(
        _saat1(t, "SAAT", "mAP") - _saat1(t, attack, "mAP"))) for attack in ("HAG", "SDHA")},
    **{f"saat-table1-targeted-over-{attack.lower()}": (lambda t, attack=attack: np.mean(
        _saat1(t, "SAAT", "t-MAP") - _saat1(t, attack, "t-MAP"))) for attack in ("P2P", "DHTA")},
    "saat-table2-over-atrdh": lambda t: np.mean([_saat2(t, "SAAT", a) - _saat2(t, "ATRDH", a)
                                                 for a in ("HAG", "SDHA", "SAAT")]),
    "saat-table2-over-undefended": lambda t: np.mean([_saat2(t, "SAAT", a) - _saat1(t, a, "mAP", ["32"])
                                                      for a in ("HAG", "SDHA", "SAAT")]),
    "saat-table2-atrdh-over-undefended": lambda t: np.mean([_saat2(t, "ATRDH", a) - _saat1(t, a, "mAP", ["32"])
                                                            for a in ("HAG", "SDHA", "SAAT")]),
}
RELATIVE = {"cgat-over-atrdh": lambda t: t("cgat_headline.csv").iloc[0, 1:].astype(float).mean()}


def test_published_effects_agree_with_the_published_tables(claims):
    """Each published effect is recomputed from the CSVs it names (to the registry's two decimals): a typo in the
    registry, or a claim with a published number and no recipe here, fails."""
    for claim in claims:
        for value, recipes, kind in ((claim.published.points, RECIPES, "points"),
                                     (claim.published.relative_percent, RELATIVE, "relative_percent")):
            if value is None:
                assert claim.id not in recipes, f"{claim.id}: the test computes {kind} the registry leaves out"
                continue
            assert claim.id in recipes, f"{claim.id}: add a recipe for its published {kind} to this test"
            tables = Tables()
            recomputed = float(recipes[claim.id](tables))
            assert value == pytest.approx(recomputed, abs=0.0051), f"{claim.id}: {kind} {value} vs {recomputed:.4f}"
            assert tables.used <= set(claim.published.tables), f"{claim.id}: name {tables.used} in published.tables"
    assert set(RECIPES) | set(RELATIVE) <= {claim.id for claim in claims}


def test_the_methods_reference_lists_every_claim(claims):
    text = (ROOT / "docs" / "methods.md").read_text()
    section = text.split("\n## Claims registry\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| (\w+) \|", section, flags=re.M)
    assert rows == [(claim.id, claim.section) for claim in claims]        # same claims, same order
    assert "[Claims registry](#claims-registry)" in text.split("\n## Contents\n", 1)[1].split("\n## ", 1)[0]


VALID = dict(id="saat-table2-over-atrdh", section="04_saat", claim="SAAT training is more robust than ATRDH",
             source=dict(paper="SAAT", venue="IEEE TIFS 2023", where="Table II"),
             comparison=dict(metric="map", compare="models", ours="saat", reference="atrdh", direction=1,
                             attacks=["HAG", "SDHA", "SAAT"], bits="featured", level="seeds+queries"),
             published=dict(points=7.11, tables=["saat_table2.csv"], note="32 bits"))


def _write(tmp_path, entries, text=None):
    (tmp_path / "saat_table2.csv").write_text("dataset\n")
    path = tmp_path / "claims.yaml"
    path.write_text(text if text is not None else _dump(entries))
    return path


def _dump(entries):
    return yaml.safe_dump([copy.deepcopy(entry) for entry in entries], sort_keys=False)   # copies: no YAML aliases


def _with(**changes):
    """VALID with dotted-key changes ("comparison.direction": 2); a value of ... removes the key."""
    entry = copy.deepcopy(VALID)
    for key, value in changes.items():
        *parents, last = key.split(".")
        mapping = entry
        for parent in parents:
            mapping = mapping[parent]
        if value is ...:
            del mapping[last]
        else:
            mapping[last] = value
    return entry


def test_a_valid_entry_loads(tmp_path):
    (claim,) = load_claims(_write(tmp_path, [VALID]))
    comparison = claim.comparison
    assert (comparison.ours, comparison.direction, comparison.attacks) == ("saat", 1, ("HAG", "SDHA", "SAAT"))
    assert comparison.levels == ("seeds", "queries") and claim.published.effect == pytest.approx(0.0711)
    assert str(claim.source) == "SAAT (IEEE TIFS 2023), Table II"


@pytest.mark.parametrize("changes, expected", [
    ({"comparison.directon": 1}, "unknown field 'comparison.directon'"),
    ({"comparison.direction": ...}, "missing field 'comparison.direction'"),
    ({"published": ...}, "missing field 'published'"),
    ({"comparison.direction": 2}, "direction must be +1"),
    ({"comparison.direction": True}, "direction must be +1"),
    ({"section": "06_other"}, "section '06_other' is not a notebook"),
    ({"comparison.metric": "mAP"}, "metric 'mAP' is not one of"),
    ({"comparison.bits": [32]}, "write bits: featured, or level: queries"),
    ({"comparison.bits": "some"}, "bits must be all, featured or a list"),
    ({"comparison.models": ["saat"]}, "with compare: models, ours and reference name the models"),
    ({"comparison.reference": "saat"}, "ours and reference are the same"),
    ({"comparison.tasks": ["image->sound"]}, "unknown tasks ['image->sound']"),
    ({"comparison.protocol": "fixed"}, "protocol 'fixed' is not one of transfer, adaptive"),
    ({"comparison.compare": "bits", "comparison.bits": ...}, "ours must be a code length"),
    ({"comparison.compare": "perturbations", "comparison.attacks": ["HAG"]}, "'saat' is not one of the perturbations"),
    ({"published.points": "7.11"}, "published.points must be a number"),
    ({"published.tables": ["saat_table3.csv"]}, "published table 'saat_table3.csv' is not in"),
    ({"source.where": ""}, "source.where must be a non-empty text"),
])
def test_a_malformed_claim_is_named_with_its_line_and_the_fix(tmp_path, changes, expected):
    path = _write(tmp_path, [VALID, _with(**{"id": "broken-claim", **changes})])
    with pytest.raises(RegistryError) as error:
        load_claims(path)
    message = str(error.value)
    assert expected in message and "claim 'broken-claim'" in message
    assert re.search(rf"{re.escape(str(path))}:\d+: claim 'broken-claim'", message)
    assert "claim 'saat-table2-over-atrdh'" not in message                 # the valid one is not blamed


def test_every_problem_is_listed_at_once_with_its_line(tmp_path):
    text = _dump([VALID, _with(**{"id": "second-claim", "comparison.direction": 0}), _with(id="Bad Id"), VALID])
    path = _write(tmp_path, None, text)
    with pytest.raises(RegistryError) as error:
        load_claims(path)
    message, rows = str(error.value), text.splitlines()
    assert message.startswith("3 problem(s)")
    direction = 1 + rows.index("    direction: 0")
    fourth = 1 + [i for i, row in enumerate(rows) if row.startswith("- id:")][3]
    assert f"{path}:{direction}: claim 'second-claim': direction must be +1" in message
    assert f"{path}:{fourth}: claim 'saat-table2-over-atrdh': duplicate id (first at line 1)" in message
    assert "claim 'Bad Id': id 'Bad Id' must be a lowercase slug" in message


def test_a_key_given_twice_is_an_error_not_the_last_one_silently(tmp_path):
    text = _dump([VALID]).replace("    direction: 1\n", "    direction: 1\n    direction: -1\n")
    with pytest.raises(RegistryError, match=r"claims.yaml:\d+: claim 'saat-table2-over-atrdh': "
                                            r"comparison.direction is given twice"):
        load_claims(_write(tmp_path, None, text))


def test_not_a_list_or_not_yaml_or_an_unknown_section_is_refused(tmp_path):
    with pytest.raises(RegistryError, match="expected a list of claims"):
        load_claims(_write(tmp_path, None, "id: x\n"))
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_claims(_write(tmp_path, None, "- id: [x\n"))
    with pytest.raises(RegistryError, match="unknown section '04_sat'"):
        claims_for("04_sat", _write(tmp_path, [VALID]))


def test_require_available_returns_the_code_lengths_and_names_every_missing_piece(claims):
    (claim,) = [claim for claim in claims if claim.id == "saat-table2-over-atrdh"]
    run = dict(models=["undefended", "finetune", "atrdh", "saat"], attacks=["HAG", "SDHA", "SAAT"], bits=[16, 32],
               featured_bits=32)
    assert require_available(claim, run) == (32,)
    with pytest.raises(MissingResultError) as error:
        require_available(claim, dict(run, models=["undefended", "saat"], attacks=["HAG"], bits=[16]))
    message = str(error.value)
    assert message.startswith("claim 'saat-table2-over-atrdh' (04_saat) cannot be judged")
    assert "models ['atrdh']" in message and "attacks ['SAAT', 'SDHA']" in message
    assert "the featured code length 32" in message
    with pytest.raises(MissingResultError, match=r"the run lists no attacks: pass available\['attacks'\]"):
        require_available(claim, dict(models=run["models"], featured_bits=32))
    with pytest.raises(MissingResultError, match=r"featured code length \(pass available\['featured_bits'\]\)"):
        require_available(claim, dict(run, featured_bits=None))


def test_require_available_for_code_lengths_tasks_and_protocols(claims):
    by_id = {claim.id: claim for claim in claims}
    assert require_available(by_id["dh-longer-codes"], dict(models=["dph"], bits=[16, 32, 64])) == (16, 64)
    with pytest.raises(MissingResultError, match=r"bits \[64\] \(it has \[16, 32\]\)"):
        require_available(by_id["dh-longer-codes"], dict(models=["dph", "dpsh", "hashnet"], bits=[16, 32]))
    lowers = by_id["cmla-lowers-cross-modal-map"]
    run = dict(models=["DCMH", "SSAH"], attacks=["clean", "CMLA"], tasks=["image->text", "text->image"],
               protocols=["adaptive"], bits=[32, 16])
    assert require_available(lowers, run) == (16, 32)
    with pytest.raises(MissingResultError, match=r"tasks \['text->image'\]"):
        require_available(lowers, dict(run, tasks=["image->text"]))
    with pytest.raises(TypeError, match="collection of names"):
        require_available(lowers, dict(run, models="DCMH"))
