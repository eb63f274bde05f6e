"""advhash.crossmodal.evaluation: the attacked query pairs and their codes, CMLA snapshots of both modalities,
their scores (against direct calls of crossmodal_maps and cmla_distortion), the adaptive and fixed protocols,
the Table 2 layouts, the curves and the tag changes. Tiny untrained networks: the bookkeeping is under test,
not the attack's strength (tests/test_crossmodal_cmla.py)."""

import pandas as pd
import pytest
import torch

from helpers import stripes, stripes_data, stripes_pairs

from advhash.attacks import perturb
from advhash.crossmodal import CMLA, CrossModalHashing, cmla_distortion, crossmodal_maps, encode_pairs
from advhash.crossmodal.evaluation import (ATTACKED_TASKS, SnapshotMaker, protocol_scores, attack_table,
                                           clean_scores, clean_table, cmla_scores, cmla_snapshots, crossmodal_curves, encode_models,
                                           encode_queries, encode_snapshots, paired_query_set, published_attack_table,
                                           published_clean_table, tag_changes, tag_names, task_metrics)
from advhash.data import TAG_VOCABULARY
from advhash.evaluation import retrieval_curves
from advhash.train import encode

pytestmark = pytest.mark.usefixtures("one_thread")

BITS = 8
SETTINGS = {"image": dict(lr=0.02), "text": dict(lr=0.05)}


def network(seed):
    torch.manual_seed(seed)
    return CrossModalHashing(bits=BITS, text_dim=14, in_channels=1, text_hidden=16).eval()


@pytest.fixture(scope="module")
def setup(one_thread):
    data = stripes_data(stripes_pairs(48, seed=0), stripes_pairs(12, seed=1))
    queries = paired_query_set(data, 10)
    models = {("A", BITS): network(0), ("A+", BITS): network(1)}
    codes = {key: encode_queries(model, queries) for key, model in models.items()}
    db_codes = {key: encode_pairs(model, data.database) for key, model in models.items()}
    snapshots = {key: cmla_snapshots(model, queries, codes[key], steps=4, marks=[0, 2], settings=SETTINGS,
                                     batch_size=4) for key, model in models.items()}
    return data, queries, models, codes, db_codes, snapshots


def test_paired_query_set_takes_the_first_pairs_and_refuses_data_without_texts():
    data = stripes_data(stripes_pairs(20, seed=0), stripes_pairs(6, seed=1))
    queries = paired_query_set(data, 4)
    images, labels = data.query.batch(torch.arange(4))[:2]
    assert len(queries) == 4 and torch.equal(queries.images, images) and torch.equal(queries.labels, labels)
    assert queries.texts.dtype == torch.float32 and torch.equal(queries.texts, data.query.texts[:4].float())
    assert queries.inputs("image") is queries.images and queries.inputs("text") is queries.texts
    assert len(paired_query_set(data, 100)) == 6                      # all of them when fewer
    with pytest.raises(ValueError, match="modality"):
        queries.inputs("audio")
    with pytest.raises(ValueError, match="positive integer"):
        paired_query_set(data, 0)
    with pytest.raises(ValueError, match="no text modality"):
        paired_query_set(stripes_data(stripes(20)), 4)                # images only


def test_encode_queries_uses_each_modality_network(setup):
    _, queries, models, codes, _, _ = setup
    model = models["A", BITS]
    assert torch.equal(codes["A", BITS]["image"], encode(model.image, queries.images))
    assert torch.equal(codes["A", BITS]["text"], encode(model.text, queries.texts))


def test_encode_models_gives_every_models_query_and_database_codes(setup):
    data, queries, models, codes, db_codes, _ = setup
    query_codes, database_codes = encode_models(models, queries, data.database)
    assert list(query_codes) == list(database_codes) == list(models)
    for key in models:
        for modality in ("image", "text"):
            assert torch.equal(query_codes[key][modality], codes[key][modality])
            assert torch.equal(database_codes[key][modality], db_codes[key][modality])


def test_encode_snapshots_encodes_the_recorded_iterate_with_each_modality_network(setup):
    _, _, models, _, _, snapshots = setup
    model, recorded = models["A", BITS], snapshots["A", BITS]
    codes = encode_snapshots(model, recorded, 2)
    assert set(codes) == {"image", "text"}
    assert torch.equal(codes["image"], encode(model.image, recorded["image"][2]))
    assert torch.equal(codes["text"], encode(model.text, recorded["text"][2]))
    with pytest.raises(KeyError):
        encode_snapshots(model, recorded, 3)                          # not recorded


def test_cmla_snapshots_are_the_iterates_of_a_plain_cmla_run(setup):
    _, queries, models, codes, _, snapshots = setup
    model, own = models["A", BITS], codes["A", BITS]
    for modality, other in (("image", "text"), ("text", "image")):
        assert sorted(snapshots["A", BITS][modality]) == [0, 2, 4]    # the marks and the last step
        assert torch.equal(snapshots["A", BITS][modality][0], queries.inputs(modality))
        for steps in (2, 4):                                          # the iterate after t steps is a t-step attack
            attack = CMLA(model.modality(modality), modality=modality, steps=steps, **SETTINGS[modality])
            adversarial = perturb(attack.set_pairs(own[other], own[modality]), queries.inputs(modality),
                                  queries.labels, batch_size=4)
            torch.testing.assert_close(snapshots["A", BITS][modality][steps], adversarial, rtol=0, atol=1e-6)


def test_cmla_scores_encode_one_modality_and_keep_the_other_clean(setup):
    data, queries, models, codes, db_codes, snapshots = setup
    model, key = models["A", BITS], ("A", BITS)
    scores = cmla_scores(model, snapshots[key], queries, codes[key], db_codes[key], data.database.labels, topk=20)
    assert list(scores.columns) == ["iterations", "task", "map", "D"]
    assert list(scores.iterations) == [0] * 4 + [2] * 4 + [4] * 4
    assert list(scores.task[:4]) == [*ATTACKED_TASKS["image"], *ATTACKED_TASKS["text"]]
    clean = crossmodal_maps(codes[key], db_codes[key], queries.labels, data.database.labels, topk=20)
    for row in scores.itertuples():
        modality = row.task.split("->")[0]
        perturbed = snapshots[key][modality][row.iterations]
        attacked = dict(codes[key], **{modality: encode(model.modality(modality), perturbed)})
        assert row.map == crossmodal_maps(attacked, db_codes[key], queries.labels, data.database.labels, topk=20,
                                          tasks=[row.task])[row.task]
        assert row.D == cmla_distortion(queries.inputs(modality), perturbed)
        if row.iterations == 0:
            assert row.map == clean[row.task] and row.D == 0


def test_clean_and_attack_scores_follow_both_protocols(setup):
    data, queries, models, codes, db_codes, snapshots = setup
    labels, db_labels = queries.labels, data.database.labels
    clean = clean_scores(codes, db_codes, labels, db_labels, topk=20)
    assert list(clean.columns) == ["model", "bits", "task", "map"] and len(clean) == 2 * 4
    for row in clean.itertuples():
        key = (row.model, row.bits)
        assert row.map == crossmodal_maps(codes[key], db_codes[key], labels, db_labels, topk=20)[row.task]
    scores = protocol_scores(models, snapshots, queries, codes, db_codes, db_labels, topk=20, clean=clean,
                           made_on={"A+": "A"})
    assert list(scores.columns) == ["model", "protocol", "bits", "iterations", "task", "map", "drop", "D"]
    assert list(scores.groupby(["model", "protocol"], sort=False).size().index) == [
        ("A", "adaptive"), ("A+", "adaptive"), ("A+", "fixed (made on A)")]
    fixed = scores[scores.protocol == "fixed (made on A)"].reset_index(drop=True)
    expected = cmla_scores(models["A+", BITS], snapshots["A", BITS], queries, codes["A+", BITS], db_codes["A+", BITS],
                           db_labels, topk=20)                         # A's queries scored by A+
    pd.testing.assert_frame_equal(fixed[["iterations", "task", "map", "D"]], expected)
    clean_map = {(row.model, row.task): row.map for row in clean.itertuples()}
    for row in scores.itertuples():
        assert row.drop == clean_map[row.model, row.task] - row.map
    assert (scores[scores.iterations == 0]["drop"] == 0).all()       # step 0: the clean queries
    with pytest.raises(ValueError, match="no models"):
        protocol_scores({}, snapshots, queries, codes, db_codes, db_labels, topk=20, clean=clean)


def test_snapshots_made_one_model_at_a_time_give_the_same_scores(setup):
    data, queries, models, codes, db_codes, snapshots = setup
    labels, db_labels = queries.labels, data.database.labels
    clean = clean_scores(codes, db_codes, labels, db_labels, topk=20)
    maker = SnapshotMaker(models, queries, codes, steps=4, marks=[0, 2], settings=SETTINGS, batch_size=4,
                          keep=[("A", BITS)])
    made = []
    counting = lambda key: made.append(key) or maker(key)
    lazy = protocol_scores(models, counting, queries, codes, db_codes, db_labels, topk=20, clean=clean,
                           made_on={"A+": "A"})
    eager = protocol_scores(models, snapshots, queries, codes, db_codes, db_labels, topk=20, clean=clean,
                            made_on={"A+": "A"})
    pd.testing.assert_frame_equal(lazy, eager)
    assert made == [("A", BITS), ("A+", BITS)], "each model's queries made once, though A's serve two protocols"
    assert list(maker.kept) == [("A", BITS)] and torch.equal(maker.kept["A", BITS]["image"][4],
                                                             snapshots["A", BITS]["image"][4])


def test_clean_table_and_the_published_table_share_the_table_1_layout(tmp_path):
    clean = pd.DataFrame(dict(model=["B", "B", "A", "A", "B", "B", "A", "A"], bits=[16] * 4 + [32] * 4,
                              task=["t->i", "i->t"] * 4, map=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]))
    table = clean_table(clean)
    assert list(table.index) == [("t->i", "B"), ("t->i", "A"), ("i->t", "B"), ("i->t", "A")]   # their order in clean
    assert list(table.columns) == [16, 32] and table.loc[("i->t", "A"), 32] == 0.8
    path = tmp_path / "table1.csv"
    path.write_text("# published, not ours\ndataset,task,method,16,32\nX,i->t,A,0.7,0.8\nX,i->t,B,0.5,0.6\n"
                    "Y,i->t,A,0.1,0.2\n")
    published = published_clean_table(path, dataset="X")
    assert list(published.index) == [("i->t", "A"), ("i->t", "B")] and published.index.names == ["task", "model"]
    assert list(published.columns) == [16, 32] and published.loc[("i->t", "B"), 32] == 0.6


def test_attack_table_and_the_published_table_share_the_table_2_layout(tmp_path):
    scores = pd.DataFrame(dict(model=["A", "A", "B", "B"], protocol="adaptive", task="image->text",
                               iterations=[100, 200, 100, 200], map=[0.5, 0.4, 0.6, 0.55], D=[0.01, 0.02, 0.01, 0.03]))
    table = attack_table(scores)
    assert list(table.index) == [("image->text", it, q) for it in (100, 200) for q in ("D", "map")]
    assert list(table.columns) == [("A", "adaptive"), ("B", "adaptive")]
    assert table.loc[("image->text", 200, "map"), ("B", "adaptive")] == 0.55
    path = tmp_path / "table2.csv"
    path.write_text("# published, not ours\ndataset,task,iterations,quantity,A,B,C\n"
                    "X,image->text,100,mAP,0.7,0.8,0.9\nX,image->text,100,D,0.01,0.02,0.03\n"
                    "Y,image->text,100,mAP,0.1,0.2,0.3\n")
    published = published_attack_table(path, dataset="X", models=["A", "B"])
    assert list(published.index) == [("image->text", 100, "map"), ("image->text", 100, "D")]
    assert list(published.columns) == [("A", "as published"), ("B", "as published")]
    assert published.loc[("image->text", 100, "map"), ("B", "as published")] == 0.8
    every = published_attack_table(path, dataset="X")                 # every model of the file, in its order
    assert list(every.columns) == [("A", "as published"), ("B", "as published"), ("C", "as published")]


def test_crossmodal_curves_rank_each_kind_of_codes_on_each_task(setup):
    data, queries, models, codes, db_codes, snapshots = setup
    key = ("A", BITS)
    attacked = {modality: encode(models[key].modality(modality), snapshots[key][modality][4])
                for modality in ("image", "text")}
    pr, pn = crossmodal_curves({"clean": codes[key], "CMLA": attacked}, db_codes[key], queries.labels,
                               data.database.labels, ns=range(5, 21, 5))
    assert list(pr.columns) == ["task", "queries", "radius", "precision", "recall"]
    assert list(pn.columns) == ["task", "queries", "n", "precision"]
    assert list(pn.groupby(["task", "queries"], sort=False).size().items()) == [
        (("image->text", "clean"), 4), (("image->text", "CMLA"), 4), (("text->image", "clean"), 4),
        (("text->image", "CMLA"), 4)]
    expected_pr, expected_pn = retrieval_curves(attacked["text"], db_codes[key]["image"], queries.labels,
                                                data.database.labels, ns=range(5, 21, 5))
    mine = pr[(pr.task == "text->image") & (pr.queries == "CMLA")]
    assert mine[["radius", "precision", "recall"]].to_dict("records") == expected_pr
    assert list(pn[(pn.task == "text->image") & (pn.queries == "CMLA")].precision) == [
        row["precision"] for row in expected_pn]


def test_task_metrics_nest_a_scores_table_by_model_and_task_or_modality():
    scores = pd.DataFrame(dict(model=["A", "A", "A", "A", "B"], bits=[16, 16, 32, 32, 16],
                               task=["image->text", "image->image", "image->text", "image->image", "text->image"],
                               map=[0.5, 0.6, 0.55, 0.65, 0.7], D=[0.1, 0.1, 0.2, 0.2, 0.3]))
    assert task_metrics(scores) == {"A image->text": {"16": 0.5, "32": 0.55}, "A image->image": {"16": 0.6, "32": 0.65},
                                    "B text->image": {"16": 0.7}}
    assert task_metrics(scores, "D", by_modality=True) == {"A image": {"16": 0.1, "32": 0.2}, "B text": {"16": 0.3}}


def test_tag_names_and_tag_changes():
    assert tag_names(len(TAG_VOCABULARY)) == list(TAG_VOCABULARY)
    assert tag_names(3) == ["tag 0", "tag 1", "tag 2"]
    texts = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    adversarial = texts + torch.tensor([[-0.5, 0.25, 0.0], [0.0, 0.0, 0.1]])
    table = tag_changes(texts, adversarial, ["a", "b", "c"], count=2)
    assert list(table.index) == [0, 1] and list(table.columns) == ["tags", "changed", "D"]
    assert table.loc[0, "tags"] == "a, c" and table.loc[0, "changed"] == "a -0.50, b +0.25"
    assert table.loc[1, "tags"] == "b" and table.loc[1, "changed"].startswith("c +0.10")
    assert table.loc[0, "D"] == pytest.approx(cmla_distortion(texts[:1], adversarial[:1]))
    with pytest.raises(ValueError, match="differ"):
        tag_changes(texts, adversarial[:1], ["a", "b", "c"])
    assert tag_changes(texts, adversarial, count=2).loc[0, "tags"] == "tag 0, tag 2"   # tag_names by default
