"""advhash.results: the metrics files (sorted, rounded JSON; the headline at one code length), the nested dict of
a results table, the curves for ``dvc plots`` and the published tables."""

import json

import pandas as pd
import pytest

from advhash.results import nested_metrics, read_published, write_curves, write_headline, write_json


def test_write_json_rounds_and_sorts(tmp_path):
    path = write_json({"b": 0.1234567891, "a": {"x": float("nan")}}, tmp_path / "m.json", digits=4)
    assert path.read_text() == '{\n  "a": {\n    "x": null\n  },\n  "b": 0.1235\n}\n'


def test_write_json_keeps_lists_tuples_and_non_float_values_and_leaves_no_temporary_file(tmp_path):
    path = write_json({"z": (1.23456789, float("inf")), 3: [True, "x", 7]}, tmp_path / "deep" / "m.json", digits=2)
    assert json.loads(path.read_text()) == {"3": [True, "x", 7], "z": [1.23, None]}
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]


def test_a_headline_takes_one_code_length_and_refuses_more_than_a_terminal_holds(tmp_path):
    nested = {"dph": {"16": 0.5, "32": 0.61}, "dpsh": {"16": 0.52, "32": 0.63}}
    path = write_headline(dict(map_at_k=nested, random_map_at_k=0.2), tmp_path / "h.json", bits=32)
    assert json.loads(path.read_text()) == {"bits": 32, "map_at_k": {"dph": 0.61, "dpsh": 0.63}, "random_map_at_k": 0.2}
    many = {f"m{i}": {"a": {"32": 0.1}, "b": {"32": 0.2}} for i in range(11)}
    with pytest.raises(ValueError, match=r"at most 20 numbers .*got 22"):
        write_headline(many, tmp_path / "too_many.json", bits=32)


def test_nested_metrics_is_the_dict_of_a_metrics_file():
    frame = pd.DataFrame(dict(method=["DPSH", "DPSH", "CgAT", "CgAT"], bits=[16, 32, 16, 32],
                              mAP=[0.5, 0.6, 0.55, 0.65]))
    assert nested_metrics(frame, "mAP", by="method") == {"CgAT": {"16": 0.55, "32": 0.65},
                                                         "DPSH": {"16": 0.5, "32": 0.6}}
    assert nested_metrics(frame, "mAP", by="bits", within="method") == {"16": {"DPSH": 0.5, "CgAT": 0.55},
                                                                        "32": {"DPSH": 0.6, "CgAT": 0.65}}


def test_write_curves_writes_one_csv_per_group_with_the_chosen_columns(tmp_path):
    frame = pd.DataFrame(dict(kind=["a", "a", "b"], method=["X", "X", "Y"], n=[1, 2, 1], precision=[0.5, 1 / 3, 1.0]))
    write_curves(frame, tmp_path / "plots", by=["kind", "method"], name="pn_{}_{}.csv", columns=["n", "precision"])
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["pn_a_X.csv", "pn_b_Y.csv"]
    assert (tmp_path / "plots" / "pn_a_X.csv").read_text() == "n,precision\n1,0.500000\n2,0.333333\n"


def test_read_published_skips_comments_and_makes_code_lengths_integers(tmp_path):
    path = tmp_path / "published.csv"
    path.write_text("# Table I of the paper\n# mAP@5000\nmethod,16,32,64\nDPSH,0.50,0.60,0.70\nCgAT,0.40,0.45,0.5\n")
    table = read_published(path)
    assert list(table.columns) == ["method", 16, 32, 64]
    assert table.method.tolist() == ["DPSH", "CgAT"] and table[32].tolist() == [0.60, 0.45]
    assert read_published(str(path)).equals(table)
