"""advhash.crossmodal.evaluation: the attacked query pairs and their codes, CMLA snapshots of both modalities,
their scores (against direct calls of crossmodal_maps and cmla_distortion) with the AP of each query, the adaptive
and transfer protocols, the evidence the findings read and the sentences generated from them, the Table 2
layouts, the curves and the tag changes. Tiny untrained networks: the bookkeeping is under test,
not the attack's strength (tests/test_crossmodal_cmla.py)."""

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import stripes, stripes_data, stripes_pairs

from advhash.attacks import perturb
from advhash.crossmodal import CMLA, CrossModalHashing, cmla_distortion, crossmodal_maps, encode_pairs
from advhash.crossmodal.evaluation import (ATTACKED_TASKS, PROTOCOLS, SnapshotMaker, attack_table, clean_scores,
                                           clean_table, cmla_evaluation, cmla_scores, cmla_snapshots,
                                           crossmodal_curves, encode_models, encode_queries, encode_snapshots,
                                           paired_query_set, plus_models_summary, protocol_scores,
                                           published_attack_table, published_clean_table, record_evidence,
                                           tag_changes, tag_names, task_ap, task_metrics)
from advhash.data import TAG_VOCABULARY
from advhash.evaluation import retrieval_curves
from advhash.evidence import Evidence
from advhash.metrics import average_precision_per_query
from advhash.train import encode
from advhash.uncertainty import Estimate

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
    with pytest.raises(ValueError, match="modality"):
        queries.inputs("audio")
    with pytest.raises(ValueError, match="positive integer"):
        paired_query_set(data, 0)
    with pytest.raises(ValueError, match="no text modality"):
        paired_query_set(stripes_data(stripes(20)), 4)                # images only


def test_asking_to_attack_more_pairs_than_the_mat_files_query_split_holds_is_an_error(tmp_path):
    """The paper profile's cmla section with num_attacked above its query split (DCMH-style .mat files on disk,
    num_query 4): an error naming the parameter, both counts and the fix, not fewer pairs attacked than the report
    states."""
    import scipy.io

    rng = np.random.default_rng(0)
    (tmp_path / "FLICKR-25K").mkdir()
    scipy.io.savemat(tmp_path / "FLICKR-25K" / "pairs.mat",
                     dict(IAll=rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8),
                          LAll=(rng.random((12, 3)) < 0.5).astype(np.uint8),
                          YAll=(rng.random((12, 5)) < 0.5).astype(np.uint8)))
    from advhash.data import load_dataset

    data = load_dataset("flickr25k-crossmodal", root=tmp_path, num_query=4, num_train=6, num_database=8)
    with pytest.raises(ValueError, match=r"num_attacked = 2000 asks for more queries than the query split of "
                                         r"flickr25k-crossmodal holds \(4\); lower num_attacked to at most 4 in "
                                         r"the notebook's section of params.yaml, or .*num_query.*cmla"):
        paired_query_set(data, 2000)
    assert len(paired_query_set(data, 4)) == 4, "every query pair of the split can be attacked"


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
    assert list(scores.columns) == ["iterations", "task", "map", "D", "ap"]
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
        source, target = row.task.split("->")                        # the AP of each query, whose mean is map
        np.testing.assert_array_equal(row.ap, average_precision_per_query(
            attacked[source], db_codes[key][target], queries.labels, data.database.labels, topk=20).numpy())
        assert row.ap.shape == (len(queries),) and row.ap.mean() == pytest.approx(row.map, abs=1e-12)
        if row.iterations == 0:
            assert row.map == clean[row.task] and row.D == 0


def test_clean_and_attack_scores_follow_both_protocols(setup):
    data, queries, models, codes, db_codes, snapshots = setup
    labels, db_labels = queries.labels, data.database.labels
    clean = clean_scores(codes, db_codes, labels, db_labels, topk=20)
    assert list(clean.columns) == ["model", "bits", "task", "map", "ap"] and len(clean) == 2 * 4
    for row in clean.itertuples():
        key = (row.model, row.bits)
        assert row.map == crossmodal_maps(codes[key], db_codes[key], labels, db_labels, topk=20)[row.task]
        np.testing.assert_array_equal(row.ap, task_ap(codes[key], db_codes[key], labels, db_labels, topk=20,
                                                      tasks=[row.task])[row.task].numpy())
    scores = protocol_scores(models, snapshots, queries, codes, db_codes, db_labels, topk=20, clean=clean,
                           made_on={"A+": "A"})
    assert list(scores.columns) == ["model", "protocol", "bits", "iterations", "task", "map", "drop", "D", "ap"]
    assert list(scores.groupby(["model", "protocol"], sort=False).size().index) == [
        ("A", "adaptive"), ("A+", "adaptive"), ("A+", "transfer")]
    transfer = scores[scores.protocol == "transfer"].reset_index(drop=True)
    expected = cmla_scores(models["A+", BITS], snapshots["A", BITS], queries, codes["A+", BITS], db_codes["A+", BITS],
                           db_labels, topk=20)                         # A's queries scored by A+
    pd.testing.assert_frame_equal(transfer[["iterations", "task", "map", "D", "ap"]], expected)
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


def test_task_ap_is_the_per_query_ap_whose_mean_is_the_task_map(setup):
    data, queries, _, codes, db_codes, _ = setup
    key, labels, db_labels = ("A", BITS), queries.labels, data.database.labels
    aps = task_ap(codes[key], db_codes[key], labels, db_labels, topk=20)
    maps = crossmodal_maps(codes[key], db_codes[key], labels, db_labels, topk=20)
    assert list(aps) == list(maps)
    for task, ap in aps.items():
        assert ap.shape == (len(queries),) and ap.mean().item() == maps[task], "the same numbers as before"
    with pytest.raises(ValueError, match="unknown tasks"):
        task_ap(codes[key], db_codes[key], labels, db_labels, topk=20, tasks=["image->audio"])


def test_cmla_evaluation_is_the_clean_and_protocol_scores_of_a_set_of_models(setup):
    data, queries, models, codes, db_codes, snapshots = setup
    db_labels = data.database.labels
    clean, attacks = cmla_evaluation(models, queries, data.database, topk=20, steps=4, marks=[0, 2],
                                     settings=SETTINGS, batch_size=4, made_on={"A+": "A"})
    expected_clean = clean_scores(codes, db_codes, queries.labels, db_labels, topk=20)
    pd.testing.assert_frame_equal(clean, expected_clean)
    pd.testing.assert_frame_equal(attacks, protocol_scores(models, snapshots, queries, codes, db_codes, db_labels,
                                                           topk=20, clean=expected_clean, made_on={"A+": "A"}))


def test_record_evidence_labels_each_query_as_the_claims_registry_names_it(setup):
    data, queries, models, codes, db_codes, snapshots = setup
    db_labels, n = data.database.labels, len(queries)
    clean = clean_scores(codes, db_codes, queries.labels, db_labels, topk=20)
    attacks = protocol_scores(models, snapshots, queries, codes, db_codes, db_labels, topk=20, clean=clean,
                              made_on={"A+": "A"})
    evidence = Evidence()
    record_evidence(evidence, clean, attacks, iterations=4, made_on={"A+": "A"}, seed=3, dataset="stripes")
    frame = evidence.frame
    assert set(frame.seed) == {3} and set(frame.dataset) == {"stripes"} and frame.iteration.isna().all()
    clean_rows = frame[frame.attack == "clean"]
    assert set(clean_rows.metric) == {"map"} and len(clean_rows) == len(clean) * len(PROTOCOLS) * n
    cmla = frame[(frame.attack == "CMLA") & (frame.metric == "map")]
    assert sorted(cmla.groupby(["model", "protocol"]).size().index) == [
        ("A", "adaptive"), ("A", "transfer"), ("A+", "adaptive"), ("A+", "transfer")], \
        "A's own queries are its queries under either protocol"
    final = attacks[attacks.iterations == 4]
    for row in final.itertuples():                                   # the per-query AP, and the clean AP minus it
        mine = frame[(frame.attack == "CMLA") & (frame.model == row.model) & (frame.protocol == row.protocol)
                     & (frame.task == row.task)]
        np.testing.assert_array_equal(mine[mine.metric == "map"].score, row.ap)
        clean_ap = clean[(clean.model == row.model) & (clean.task == row.task)].ap.iloc[0]
        np.testing.assert_allclose(mine[mine.metric == "map_drop"].score, clean_ap - row.ap)
        assert mine[mine.metric == "map"].score.mean() == pytest.approx(row.map, abs=1e-12)
    transferred_a = frame[(frame.model == "A") & (frame.protocol == "transfer") & (frame.attack == "CMLA")]
    adaptive_a = frame[(frame.model == "A") & (frame.protocol == "adaptive") & (frame.attack == "CMLA")]
    np.testing.assert_array_equal(transferred_a.score, adaptive_a.score)
    with pytest.raises(ValueError, match="after 3 CMLA iterations"):
        record_evidence(Evidence(), clean, attacks, iterations=3, made_on={"A+": "A"})


class _Comparison:
    def __init__(self, ours, reference, tasks, protocol, compare="models"):
        self.ours, self.reference, self.tasks, self.protocol, self.compare = ours, reference, tasks, protocol, compare


class _Found:
    """What plus_models_summary reads of an advhash.findings.Finding: the claim's comparison, the estimate, the
    verdict."""

    def __init__(self, ours, task, protocol, verdict, effect, compare="models"):
        self.claim = type("Claim", (), dict(comparison=_Comparison(ours, ours[:-1], [task], protocol, compare)))()
        self.estimate = Estimate(effect, effect - 0.01, effect + 0.01, 0.95, 100, 1, ("queries",), "BCa", 0.5)
        self.verdict = verdict


def test_plus_models_summary_says_which_gains_each_protocol_reproduces_from_the_verdicts_alone():
    findings = [_Found("DCMH+", "image->text", "transfer", "REPRODUCED", 0.031),
                _Found("DCMH+", "image->text", "adaptive", "NOT REPRODUCED", -0.029),
                _Found("SSAH+", "text->image", "transfer", "REPRODUCED", 0.02),
                _Found("SSAH+", "text->image", "adaptive", "REPRODUCED", 0.015),
                _Found("DCMH+", "text->image", "transfer", "INCONCLUSIVE", 0.001),
                _Found("DCMH+", "text->image", "adaptive", "REPRODUCED", 0.02),
                _Found("DCMH+", "image->text, text->image", None, "REPRODUCED", 0.05)]   # clean: no protocol
    text = plus_models_summary(findings)
    transfer, adaptive = text.index("Under the transfer protocol"), text.index("Under the adaptive protocol")
    assert transfer < text.index("DCMH+ minus DCMH on image->text +3.10 [+2.10, +4.10] pts, REPRODUCED") < adaptive
    assert "DCMH+ minus DCMH on image->text -2.90 [-3.90, -1.90] pts, NOT REPRODUCED" in text[adaptive:]
    assert "not reproduced under the adaptive re-attack for DCMH+ on image->text (NOT REPRODUCED there)" in text
    assert "holds under both protocols for SSAH+ on text->image" in text
    assert "under the adaptive re-attack only for DCMH+ on text->image" in text
    assert "image->text, text->image" not in text, "the clean comparison has no protocol"
    none = plus_models_summary([_Found("SSAH+", "image->text", protocol, "INCONCLUSIVE", 0.0)
                                for protocol in PROTOCOLS])
    assert "Neither protocol reproduces a robustness gain" in none and "+0.00 [-1.00, +1.00] pts" in none
    with pytest.raises(ValueError, match="no finding compares models under a protocol"):
        plus_models_summary(findings[-1:])


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
