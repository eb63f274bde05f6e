"""advhash.tables: SAAT's Table I and II from our runs, and the published tables in the layout of ours."""

import pandas as pd
import pytest
import torch

from helpers import random_table

from advhash.codes import (center_code_objective, center_codes, closed_form_gap, mainstay_code_objective,
                           mainstay_codes)
from advhash.evaluation import QuerySet, build_attacks, retrieval_map
from advhash.report import beside_published
from advhash.tables import (anchor_ceiling, attack_codes, attack_pr_curves, attack_table, closed_form_table,
                            defense_metrics, defense_table, published_points, published_table, robustness_table,
                            table_metrics)

pytestmark = pytest.mark.usefixtures("one_thread")

SAAT1 = """# PUBLISHED numbers, not ours
dataset,method,metric,16,32
FLICKR-25K,Original,mAP,81.33,82.28
FLICKR-25K,HAG,mAP,22.53,21.68
FLICKR-25K,THA,t-MAP,86.80,87.84
NUS-WIDE,Original,mAP,76.70,77.47
"""
SAAT2 = """# PUBLISHED numbers, not ours
dataset,defense,attack,16,32
FLICKR-25K,ATRDH,Original,71.35,72.16
FLICKR-25K,ATRDH,HAG,41.92,42.36
FLICKR-25K,ATRDH,SAAT,32.68,32.40
FLICKR-25K,SAAT,Original,74.19,73.49
FLICKR-25K,SAAT,HAG,38.05,43.76
FLICKR-25K,SAAT,SAAT,30.55,34.77
NUS-WIDE,SAAT,Original,61.05,60.51
"""
HAG1 = """# PUBLISHED numbers, not ours
mAP,16,32
"HAG* (published, FLICKR-25K)",0.3004,0.1963
"HAG (published, FLICKR-25K)",0.1657,0.1164
"""


@pytest.fixture(scope="module")
def table_one(trained, victim):
    _, _, _, queries = trained
    images, labels = queries.images[:12], queries.labels[:12]
    targets = labels.roll(1, dims=1)                       # one-hot stripes: another class, none shared
    attacked = QuerySet(images, labels, targets)
    settings = {"mAP": {"HAG": dict(attack="hag", eps=16 / 255, alpha=4 / 255, steps=2)},
                "t-MAP": {"P2P": dict(attack="p2p", eps=16 / 255, alpha=4 / 255, steps=2, seed=0)}}
    runs = {"mAP": {}, "t-MAP": {}}
    victims = {("undefended", 8): victim}
    codes = attack_codes(victims, attacked, settings, topk=50, runs=runs, batch_size=5)
    return victims, attacked, codes, runs


def test_attack_codes_holds_the_clean_the_attacked_and_the_mainstay_codes(table_one, victim):
    _, attacked, codes, runs = table_one
    assert list(codes) == [("mAP", "Original", 8), ("t-MAP", "Original", 8), ("mAP", "HAG", 8), ("t-MAP", "P2P", 8),
                           ("mAP", "theory", 8), ("t-MAP", "theory", 8)]
    assert torch.equal(codes["mAP", "Original", 8], victim.encode(attacked.images))
    assert torch.equal(codes["mAP", "HAG", 8], runs["mAP"]["undefended", 8, "HAG"].codes)
    assert torch.equal(codes["t-MAP", "P2P", 8], runs["t-MAP"]["undefended", 8, "P2P"].codes)
    assert torch.equal(codes["mAP", "theory", 8],
                       -mainstay_codes(attacked.labels, victim.train_codes, victim.train_labels))
    assert torch.equal(codes["t-MAP", "theory", 8],
                       mainstay_codes(attacked.target_labels, victim.train_codes, victim.train_labels))


def test_attack_table_places_each_score_x100_in_table_one_layout(table_one, victim):
    victims, attacked, codes, _ = table_one
    table = attack_table(victims, codes, attacked, topk=50)
    assert list(table.index) == [("mAP", "Original"), ("mAP", "HAG"), ("mAP", "theory"),
                                 ("t-MAP", "Original"), ("t-MAP", "P2P"), ("t-MAP", "theory")]
    assert list(table.columns) == [8]
    assert table.loc[("mAP", "HAG"), 8] == 100 * retrieval_map(victim, codes["mAP", "HAG", 8], attacked.labels,
                                                               topk=50)
    assert table.loc[("t-MAP", "P2P"), 8] == 100 * retrieval_map(victim, codes["t-MAP", "P2P", 8],
                                                                 attacked.target_labels, topk=50, targeted=True)
    assert table.loc[("mAP", "theory"), 8] < table.loc[("mAP", "Original"), 8], "the negated mainstay code"
    metrics = table_metrics(table)
    assert list(metrics) == ["mAP Original", "mAP HAG", "mAP theory", "t-MAP Original", "t-MAP P2P", "t-MAP theory"]
    assert metrics["mAP HAG"] == {"8": float(table.loc[("mAP", "HAG"), 8]) / 100}


def test_attack_pr_curves_ranks_each_row_by_its_own_relevance(table_one, victim):
    _, attacked, codes, _ = table_one
    curves = attack_pr_curves(codes, victim, attacked, bits=8)
    assert list(curves.columns) == ["method", "panel", "radius", "precision", "recall"]
    assert list(dict.fromkeys(zip(curves.method, curves.panel))) == [
        ("Original", "non-targeted (query labels)"), ("Original", "targeted (target labels)"),
        ("HAG", "non-targeted (query labels)"), ("P2P", "targeted (target labels)"),
        ("theory", "non-targeted (query labels)"), ("theory", "targeted (target labels)")]
    assert attack_pr_curves(codes, victim, attacked, bits=16).empty


def test_defense_table_is_table_two_x100():
    results = pd.DataFrame(dict(defense=["undefended", "saat", "undefended", "saat"], bits=[16, 16, 32, 32],
                                Original=[0.5, 0.4, 0.6, 0.45], HAG=[0.1, 0.3, 0.2, 0.35]))
    table = defense_table(results)
    assert list(table.columns) == [16, 32]
    assert set(table.index) == {(d, a) for d in ("undefended", "saat") for a in ("Original", "HAG")}
    assert table.loc[("saat", "HAG"), 32] == 100 * 0.35 and table.loc[("undefended", "Original"), 16] == 100 * 0.5


def test_published_table_takes_one_dataset_in_our_layout(tmp_path):
    (tmp_path / "t1.csv").write_text(SAAT1)
    table = published_table(tmp_path / "t1.csv", index=["metric", "method"], where=dict(dataset="FLICKR-25K"))
    assert list(table.index) == [("mAP", "Original"), ("mAP", "HAG"), ("t-MAP", "THA")]
    assert list(table.columns) == [16, 32] and table.loc[("mAP", "HAG"), 32] == 21.68
    ours = pd.DataFrame({16: [80.123, 20.0], 32: [81.0, 19.5]},
                        index=pd.MultiIndex.from_tuples([("mAP", "Original"), ("mAP", "theory")]))
    beside = beside_published(ours, table, ours_label="ours", published_label="PUBLISHED")
    assert list(beside.index) == [("mAP", "Original"), ("mAP", "theory"), ("mAP", "HAG"), ("t-MAP", "THA")]
    assert beside.loc[("mAP", "Original"), ("ours", 16)] == 80.12
    assert beside.loc[("mAP", "Original"), ("PUBLISHED", 16)] == 81.33
    assert pd.isna(beside.loc[("mAP", "theory"), ("PUBLISHED", 32)])


def test_published_table_drops_the_published_note_from_single_labels(tmp_path):
    (tmp_path / "hag.csv").write_text(HAG1)
    table = published_table(tmp_path / "hag.csv")                  # indexed by its first column
    assert list(table.index) == ["HAG*", "HAG"] and table.index.name == "mAP"
    assert table.loc["HAG", 32] == 0.1164
    (tmp_path / "iterations.csv").write_text('"iteration (published, FLICKR-25K)",16,32\n0,0.9280,0.9281\n')
    iterations = published_table(tmp_path / "iterations.csv")
    assert iterations.index.name == "iteration" and iterations.loc[0, 16] == 0.9280


def test_published_points_are_clean_and_worst_single_attack_as_fractions(tmp_path):
    (tmp_path / "t2.csv").write_text(SAAT2)
    table = published_table(tmp_path / "t2.csv", index=["defense", "attack"], where=dict(dataset="FLICKR-25K"),
                            lower=["defense"])
    assert list(table.index.get_level_values("defense").unique()) == ["atrdh", "saat"]
    points = published_points(table, bits=32, dataset="FLICKR-25K")
    assert list(points.columns) == ["model", "clean", "robust", "label"]
    assert list(points.model) == ["atrdh", "saat"]
    assert points.clean.tolist() == [72.16 / 100, 73.49 / 100]
    assert points.robust.tolist() == [32.40 / 100, 34.77 / 100]
    assert points.label[1] == "SAAT (FLICKR-25K, worst single attack)"


def test_defense_metrics_nests_every_attack_per_defense():
    results = pd.DataFrame(dict(defense=["undefended", "saat", "undefended", "saat"], bits=[16, 16, 32, 32],
                                Original=[0.5, 0.4, 0.6, 0.45], HAG=[0.1, 0.3, 0.2, 0.35]))
    metrics = defense_metrics(results)
    assert list(metrics) == ["saat", "undefended"] and list(metrics["saat"]) == ["Original", "HAG"]
    assert metrics["saat"]["HAG"] == {"16": 0.3, "32": 0.35}
    assert metrics["undefended"]["Original"] == {"16": 0.5, "32": 0.6}


def test_anchor_ceiling_scores_each_victims_own_anchor_codes(table_one, victim):
    victims, attacked, _, _ = table_one
    settings = {"DHTA": dict(attack="dhta", eps=16 / 255, alpha=4 / 255, steps=2, num_anchors=3, seed=0)}
    anchors = build_attacks(victim, settings, ["DHTA"])["DHTA"].anchors(attacked.target_labels, victim.db_codes,
                                                                       victim.db_labels)
    expected = retrieval_map(victim, anchors, attacked.target_labels, topk=50, targeted=True)
    assert anchor_ceiling(victims, attacked, settings, topk=50) == [expected]


def test_robustness_table_puts_the_map_and_t_map_columns_in_two_blocks():
    results = pd.DataFrame({"model": ["undefended", "cgat"], "bits": [16, 16], "clean": [0.5, 0.45],
                            "HAG": [0.1, 0.3], "t-MAP clean": [0.2, 0.15], "P2P": [0.6, 0.3], "t-MAP anchor": [0.7, 0.6],
                            "HAG linf_255": [8.0, 8.0]})
    table = robustness_table(results, ["HAG"], ["P2P"])
    assert list(table.index) == [("undefended", 16), ("cgat", 16)]
    assert list(table.columns) == [("mAP (higher: more robust)", "clean"), ("mAP (higher: more robust)", "HAG"),
                                   ("t-MAP (lower: more robust)", "t-MAP clean"), ("t-MAP (lower: more robust)", "P2P"),
                                   ("t-MAP (lower: more robust)", "t-MAP anchor")]
    assert table.loc[("cgat", 16), ("t-MAP (lower: more robust)", "P2P")] == 0.3


def test_closed_form_table_is_closed_form_gap_one_row_or_one_per_variant():
    labels, table_codes, table_labels = random_table(0)
    one = closed_form_table(mainstay_codes, mainstay_code_objective, labels, table_codes, table_labels, bits=6)
    assert one.to_dict("records") == [closed_form_gap(mainstay_codes, mainstay_code_objective, labels, table_codes,
                                                      table_labels, bits=6)]
    both = closed_form_table(center_codes, center_code_objective, labels, table_codes, table_labels, bits=6,
                             variants=("paper", "published"))
    assert list(both.index) == ["paper", "published"] and both.index.name == "variant"
    published = closed_form_gap(lambda *a: center_codes(*a, variant="published"),
                                lambda *a: center_code_objective(*a, variant="published"), labels, table_codes,
                                table_labels, bits=6)
    assert both.loc["published"].to_dict() == published
    assert (both.max_gap < 1e-5).all()
