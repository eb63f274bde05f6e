"""The attack protocol shared by the notebooks (advhash.evaluation): query sets, retrieval scores against the
victim's database, attacks evaluated on the victim they attack, attacks by display label, budgets, sweeps and
iterates."""

import pytest
import torch

from helpers import fresh_model

from advhash.attacks import HAG, SAAT, HammingPGD
from advhash.data import HashingData, InMemorySplit
from advhash.evaluation import (AttackResult, QuerySet, build_attack, build_attacks, evaluate_attack, query_set,
                                retrieval_map)
from advhash.metrics import mean_average_precision, targeted_map
from advhash.victim import Victim

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(trained):
    """The ``trained`` stripes model as a victim of a ``HashingData`` (uint8 splits; the database is the
    training split), and the data."""
    model, _, database, queries = trained

    def in_memory(split):
        return InMemorySplit((split.images * 255).round().to(torch.uint8), split.labels)

    db = in_memory(database)
    data = HashingData("stripes", train=db, query=in_memory(queries), database=db, class_names=list("abcd"))
    return Victim.build(model, data), data


# --- query sets ---------------------------------------------------------------------------------------
def test_query_set_without_targets_is_the_first_queries(setup):
    _, data = setup
    queries = query_set(data, 10)
    images, labels = data.query.batch(torch.arange(10))[:2]
    assert isinstance(queries, QuerySet) and len(queries) == 10 and queries.target_labels is None
    assert torch.equal(queries.images, images) and torch.equal(queries.labels, labels)
    head = queries.head(4)
    assert torch.equal(head.images, images[:4]) and head.target_labels is None
    with pytest.raises(ValueError, match="first 11 queries of a query set of 10"):
        queries.head(11)             # e.g. curve_queries above num_attacked: an error, not 10 queries called 11
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="num_attacked must be a positive integer"):
            query_set(data, bad)


def test_asking_to_attack_more_queries_than_the_list_files_hold_is_an_error_naming_both_counts(tmp_path):
    """A paper-profile user whose test_img.txt holds fewer lines than num_attacked: the run stops at the query set,
    naming the parameter, the asked and available counts and the fix, instead of attacking fewer queries while the
    report states the asked number."""
    from PIL import Image

    from advhash.data import load_dataset

    base = tmp_path / "FLICKR-25K"
    base.mkdir()
    for i in range(8):
        Image.new("RGB", (12, 10), (30 * i, 80, 160)).save(base / f"{i}.jpg")
    for stem, items in {"train": range(5), "database": range(5), "test": range(5, 8)}.items():
        (base / f"{stem}_img.txt").write_text("".join(f"{i}.jpg\n" for i in items))
        (base / f"{stem}_label.txt").write_text("".join(f"{i % 2} {1 - i % 2}\n" for i in items))
    data = load_dataset("flickr25k", root=tmp_path, image_size=16, cache=False)
    with pytest.raises(ValueError, match=r"num_attacked = 5 asks for more queries than the query split of "
                                         r"flickr25k holds \(3\); lower num_attacked to at most 3 in the "
                                         r"notebook's section of params.yaml, or .*num_query.*test_img.txt"):
        query_set(data, 5, target_min_items=1)
    assert len(query_set(data, 3)) == 3, "every query of the split can be attacked"


def test_query_set_with_targets_is_deterministic_for_a_seed(setup):
    _, data = setup
    queries = query_set(data, 32, target_min_items=9, seed=0)
    targets = queries.target_labels
    assert targets.shape == queries.labels.shape
    assert ((targets * queries.labels).sum(1) == 0).all(), "a target shares no class with its query"
    carried = [(data.database.labels == row).all(1).sum().item() for row in targets]
    assert min(carried) >= 9, "every target label is carried by at least n_t database items"
    assert torch.equal(query_set(data, 32, target_min_items=9, seed=0).target_labels, targets)
    assert not torch.equal(query_set(data, 32, target_min_items=9, seed=1).target_labels, targets)
    assert torch.equal(queries.head(5).target_labels, targets[:5])
    with pytest.raises(ValueError, match="no possible target label"):
        query_set(data, 4, target_min_items=1000)


# --- retrieval scores ---------------------------------------------------------------------------------
@pytest.mark.parametrize("topk", [None, 10])
def test_retrieval_map_is_the_map_against_the_victims_database(setup, topk):
    victim, data = setup
    queries = query_set(data, 32, target_min_items=9)
    codes = victim.encode(queries.images)
    expected = mean_average_precision(codes, victim.db_codes, queries.labels, victim.db_labels, topk=topk)
    assert retrieval_map(victim, codes, queries.labels, topk=topk) == expected
    assert expected > 0.9, "the trained stripes model retrieves well"
    expected_t = targeted_map(codes, victim.db_codes, queries.target_labels, victim.db_labels, topk=topk)
    assert retrieval_map(victim, codes, queries.target_labels, topk=topk, targeted=True) == expected_t
    assert expected_t < 0.5 * expected
    with pytest.raises(ValueError, match="retrieval_map steers by the victim's codes of the database"):
        retrieval_map(Victim(victim.model), codes, queries.labels, topk=topk)


# --- evaluate_attack ----------------------------------------------------------------------------------
def test_a_non_targeted_attack_lowers_the_map(setup):
    victim, data = setup
    queries = query_set(data, 32)
    clean = retrieval_map(victim, victim.encode(queries.images), queries.labels, topk=None)
    attack = build_attack("pgd", victim, eps=32 / 255, alpha=2 / 255, steps=20)
    result = evaluate_attack(attack, victim, queries, topk=None, batch_size=10, snapshot_steps=(0, 20))
    assert isinstance(result, AttackResult)
    assert result.score < 0.5 * clean, f"mAP {clean:.3f} -> {result.score:.3f}"
    assert torch.equal(result.codes, victim.encode(result.adversarial))
    assert result.score == retrieval_map(victim, result.codes, queries.labels, topk=None)
    assert (result.adversarial - queries.images).abs().max() <= 32 / 255 + 1e-6
    assert 0 < result.sizes["linf_255"] <= 32 + 1e-3
    assert len(result.history) == 20 and sorted(result.snapshots) == [0, 20]
    assert torch.equal(result.snapshots[20], result.codes), "snapshots hold the iterates' codes"
    assert torch.equal(result.snapshots[0], victim.encode(queries.images)), "step 0: the clean queries' codes"


def test_a_targeted_attack_raises_the_targeted_map(setup):
    victim, data = setup
    queries = query_set(data, 32, target_min_items=9, seed=0)
    clean = retrieval_map(victim, victim.encode(queries.images), queries.target_labels, topk=None, targeted=True)
    attack = build_attack("dhta", victim, eps=32 / 255, steps=30)
    result = evaluate_attack(attack, victim, queries, topk=None, targeted=True)
    assert torch.equal(attack.target_labels, queries.target_labels), "the evaluation sets the targets"
    assert result.score > clean + 0.3, f"t-MAP {clean:.3f} -> {result.score:.3f}"
    assert result.score == retrieval_map(victim, result.codes, queries.target_labels, topk=None, targeted=True)


def test_evaluate_attack_refuses_an_attack_built_on_another_model(setup):
    victim, data = setup
    queries = query_set(data, 4)
    with pytest.raises(ValueError, match="the attack was built on another victim than the evaluated one"):
        evaluate_attack(HAG(fresh_model(), steps=1), victim, queries, topk=None)
    same_model = evaluate_attack(HAG(victim.model, steps=1), victim, queries, topk=None)   # the bare model is fine
    assert same_model.adversarial.shape == queries.images.shape
    other_codes = Victim(victim.model, train_codes=-victim.train_codes, train_labels=victim.train_labels)
    with pytest.raises(ValueError, match="built on another victim"):   # steering by one set of codes, scored on another
        evaluate_attack(build_attack("saat", other_codes, steps=1), victim, queries, topk=None)


def test_a_targeted_evaluation_needs_targets(setup):
    victim, data = setup
    with pytest.raises(ValueError, match=r"a targeted evaluation needs target labels: query_set\(\.\.\., "
                                         r"target_min_items=n_t\)"):
        evaluate_attack(build_attack("dhta", victim, steps=1), victim, query_set(data, 4), topk=None, targeted=True)
    with pytest.raises(ValueError, match="DHTA is a targeted attack: evaluate it with targeted=True"):
        evaluate_attack(build_attack("dhta", victim, steps=1), victim, query_set(data, 4), topk=None)


def test_a_non_targeted_evaluation_clears_the_targets_of_an_earlier_one(setup):
    victim, data = setup
    queries = query_set(data, 4, target_min_items=1)
    attack = build_attack("saat", victim, steps=2, random_start=False)   # no random stream to continue
    evaluate_attack(attack, victim, queries, topk=None, targeted=True)
    assert attack.targeted
    again = evaluate_attack(attack, victim, queries, topk=None)
    assert not attack.targeted
    fresh = evaluate_attack(build_attack("saat", victim, steps=2, random_start=False), victim, queries, topk=None)
    assert torch.equal(again.adversarial, fresh.adversarial) and again.score == fresh.score


# --- attacks by display label -------------------------------------------------------------------------
def test_build_attacks_by_label_with_a_registry_name_that_differs(setup):
    victim, _ = setup
    settings = {"HAG*": dict(attack="hag", scale_schedule="fixed", steps=3), "pgd": dict(steps=2),
                "SAAT (inner)": dict(attack="saat", variant="paper")}
    frozen = {label: dict(kwargs) for label, kwargs in settings.items()}
    attacks = build_attacks(victim, settings)
    assert list(attacks) == ["HAG*", "pgd", "SAAT (inner)"]
    assert type(attacks["HAG*"]) is HAG and attacks["HAG*"].scale_schedule == "fixed" and attacks["HAG*"].steps == 3
    assert type(attacks["pgd"]) is HammingPGD and attacks["pgd"].steps == 2
    assert type(attacks["SAAT (inner)"]) is SAAT and attacks["SAAT (inner)"].variant == "paper"
    assert all(attack.victim is victim for attack in attacks.values())
    assert settings == frozen, "the settings are not consumed"
    again = build_attacks(victim, settings, names=["HAG*"])
    assert list(again) == ["HAG*"] and again["HAG*"] is not attacks["HAG*"], "each call builds fresh attacks"
    with pytest.raises(KeyError, match="no attack settings for 'HAG'"):
        build_attacks(victim, settings, names=["HAG"])
    with pytest.raises(ValueError, match="unknown attack 'HAG'"):
        build_attacks(victim, {"HAG": {}})


# --- attacks over several victims, budgets and iterations ---------------------------------------------
from advhash.evaluation import (attack_scores, attack_sweep, check_budget, perturbation_sizes,  # noqa: E402
                                reference_maps, robustness_probe, snapshot_scores)
from advhash.metrics import random_ranking_map  # noqa: E402


def test_reference_maps_are_the_clean_and_the_random_ranking_map(setup):
    victim, data = setup
    queries = query_set(data, 16)
    references = reference_maps(victim, queries, topk=20)
    assert references == dict(clean=retrieval_map(victim, victim.encode(queries.images), queries.labels, topk=20),
                              random=random_ranking_map(queries.labels, victim.db_labels, topk=20))
    assert references["random"] < references["clean"]
    with pytest.raises(ValueError, match="reference_maps steers by the victim's codes of the database"):
        reference_maps(Victim(victim.model), queries, topk=20)


def test_attack_scores_run_every_attack_on_every_victim_with_its_own_queries(setup):
    victim, data = setup
    other = Victim.build(fresh_model(seed=5), data)
    victims = {("stripes", 16): victim, ("fresh", 16): other}
    queries = {("stripes", 16): query_set(data, 8), ("fresh", 16): query_set(data, 6)}
    settings = {"HAG": dict(attack="hag", eps=16 / 255, alpha=4 / 255, steps=4),
                "PGD": dict(attack="pgd", eps=16 / 255, alpha=4 / 255, steps=2)}
    table, runs = attack_scores(victims, queries, settings, topk=20, batch_size=5, snapshot_steps=[0, 2, 4],
                                columns=("dataset", "bits"))
    assert list(table.columns) == ["dataset", "bits", "clean", "random", "HAG", "PGD", "HAG linf_255", "HAG l2",
                                   "HAG psnr", "PGD linf_255", "PGD l2", "PGD psnr"]
    assert list(zip(table.dataset, table.bits)) == list(victims) and set(runs) == {
        (*key, label) for key in victims for label in settings}
    hag = {name: value for name, value in settings["HAG"].items() if name != "attack"}
    for row, (key, each) in zip(table.to_dict("records"), victims.items()):
        expected = evaluate_attack(build_attack("hag", each, **hag), each, queries[key], topk=20)
        assert row["HAG"] == expected.score and row["HAG linf_255"] == expected.sizes["linf_255"]
        assert {name: row[name] for name in ("clean", "random")} == reference_maps(each, queries[key], topk=20)
        assert len(runs[(*key, "PGD")].adversarial) == len(queries[key])
    assert sorted(runs["stripes", 16, "HAG"].snapshots) == [0, 2, 4]
    assert sorted(runs["stripes", 16, "PGD"].snapshots) == [0, 2], "the steps an attack reaches"
    scores = snapshot_scores(runs, victims, queries, "HAG", topk=20)
    assert list(scores.columns) == ["dataset", "bits", "iteration", "map"] and len(scores) == 2 * 3
    first = scores[scores.dataset == "stripes"]
    assert list(first.iteration) == [0, 2, 4] and first["map"].iloc[0] == table.clean[0]
    assert first["map"].iloc[-1] == table.HAG[0], "the last iterate is the attack's result"


def test_attack_sweep_runs_each_point_on_its_own_and_scales_a_sign_step_with_the_budget(setup):
    victim, data = setup
    queries = query_set(data, 8)
    settings = {"HAG": dict(attack="hag", threshold=0.5), "SDHA": dict(attack="sdha", lr=0.01)}
    by_eps = attack_sweep(victim, queries, settings, eps_255=[0, 4, 64], steps=3, step_fraction=1 / 4, topk=20,
                          batch_size=5)
    assert list(by_eps.columns) == ["attack", "eps_255", "steps", "map", "clean", "random"]
    assert list(by_eps.attack) == ["HAG"] * 3 + ["SDHA"] * 3 and list(by_eps.eps_255) == [0, 4, 64] * 2
    for row in by_eps[by_eps.eps_255 > 0].itertuples():
        step = dict(alpha=row.eps_255 / 4 / 255) if row.attack == "HAG" else {}      # SDHA has no sign step
        kwargs = {key: value for key, value in settings[row.attack].items() if key != "attack"}
        attack = build_attack(settings[row.attack]["attack"], victim, **kwargs, eps=row.eps_255 / 255, steps=3, **step)
        assert row.map == evaluate_attack(attack, victim, queries, topk=20).score
    assert (by_eps[by_eps.eps_255 == 0]["map"] == reference_maps(victim, queries, topk=20)["clean"]).all()
    hag = by_eps[by_eps.attack == "HAG"]["map"]
    assert hag.iloc[2] < hag.iloc[0], "a larger budget is a stronger attack"
    by_steps = attack_sweep(victim, queries, {"HAG": settings["HAG"]}, eps_255=64, steps=[1, 3], step_fraction=1 / 4,
                            topk=20, batch_size=5)
    assert list(by_steps.steps) == [1, 3] and (by_steps.eps_255 == 64).all()
    assert by_steps["map"].iloc[1] == by_eps["map"].iloc[2], "the same point gives the same score"
    marked = by_eps.assign(map=by_eps["map"] + 1)          # an earlier sweep's points are copied, not run again
    reused = attack_sweep(victim, queries, {"HAG": settings["HAG"]}, eps_255=64, steps=[1, 3], step_fraction=1 / 4,
                          topk=20, batch_size=5, earlier=marked)
    assert reused["map"].iloc[1] == by_eps["map"].iloc[2] + 1, "the point (64, 3) of the earlier sweep"
    assert reused["map"].iloc[0] == by_steps["map"].iloc[0], "a point it lacks is run"
    with pytest.raises(ValueError, match="exactly one of eps_255 and steps"):
        attack_sweep(victim, queries, settings, eps_255=[4], steps=[3], topk=20)


def test_attack_scores_score_targeted_attacks_by_t_map_and_reuse_earlier_runs(setup):
    victim, data = setup
    queries = query_set(data, 6, target_min_items=1)
    settings = {"SAAT": dict(attack="saat", eps=16 / 255, alpha=4 / 255, steps=3, random_start=False),
                "DHTA": dict(attack="dhta", eps=16 / 255, alpha=4 / 255, steps=3, num_anchors=1)}
    table, runs = attack_scores({("stripes", 16): victim}, queries, settings, topk=20, targeted=["DHTA"])
    assert list(table.columns[:2]) == ["model", "bits"]
    dhta = evaluate_attack(build_attack("dhta", victim, **{k: v for k, v in settings["DHTA"].items() if k != "attack"}),
                           victim, queries, topk=20, targeted=True)
    assert table.DHTA[0] == dhta.score
    assert table["t-MAP clean"][0] == retrieval_map(victim, victim.encode(queries.images), queries.target_labels,
                                                    topk=20, targeted=True), "the targeted reference point"
    assert dhta.score == retrieval_map(victim, dhta.codes, queries.target_labels, topk=20, targeted=True)
    assert not runs["stripes", 16, "SAAT"].history == [] and table.SAAT[0] == runs["stripes", 16, "SAAT"].score
    marker = AttackResult(queries.images, victim.encode(queries.images), -1.0, dict(linf_255=0.0, l2=0.0, psnr=0.0))
    again, _ = attack_scores({("stripes", 16): victim}, queries, settings, topk=20, targeted=["DHTA"],
                             runs={("stripes", 16, "SAAT"): marker})
    assert again.SAAT[0] == -1.0, "an attack already run on a victim is reused"
    assert again.DHTA[0] == table.DHTA[0]


def test_perturbation_sizes_and_check_budget_read_every_run(setup):
    victim, data = setup
    queries = query_set(data, 6)
    settings = {"HAG": dict(attack="hag", eps=8 / 255, alpha=2 / 255, steps=2)}
    _, runs = attack_scores({("a", 16): victim}, queries, settings, topk=20)
    sizes = perturbation_sizes(runs)
    assert list(sizes.columns) == ["model", "bits", "attack", "linf_255", "l2", "psnr"]
    assert sizes.iloc[0][["model", "bits", "attack"]].tolist() == ["a", 16, "HAG"]
    largest = check_budget(runs, queries, 8 / 255)
    assert largest == pytest.approx(255 * float((runs["a", 16, "HAG"].adversarial - queries.images).abs().max()))
    assert check_budget(runs, {("a", 16): queries}, 8 / 255) == largest, "queries per victim, as attack_scores"
    outside = queries.images.clone()
    outside[0, 0, 0, 0] += 9 / 255
    with pytest.raises(AssertionError, match=r"left the L-inf ball of 8.000/255.*'x'"):
        check_budget({"x": outside, **runs}, queries, 8 / 255)


def test_robustness_probe_scores_a_model_clean_and_under_an_attack_built_on_it(setup):
    victim, data = setup
    queries = query_set(data, 8)
    attack = dict(attack="pgd", eps=32 / 255, alpha=4 / 255, steps=10)
    point = robustness_probe(data, queries, attack, topk=20, batch_size=5)(victim.model)
    assert point["clean_map"] == retrieval_map(victim, victim.encode(queries.images), queries.labels, topk=20)
    pgd = build_attack("pgd", victim, eps=32 / 255, alpha=4 / 255, steps=10)
    assert point["adversarial_map"] == evaluate_attack(pgd, victim, queries, topk=20).score
    assert point["adversarial_map"] < point["clean_map"]


def test_curves_cached_in_a_checkpoint_are_reused_only_for_the_same_evaluation(setup, tmp_path):
    from advhash.defenses import fit_defense

    victim, data = setup
    queries = query_set(data, 4)
    kwargs = dict(eps=8 / 255, alpha=2 / 255, steps=1, method="dpsh", epochs=1, batch_size=32, lr=0.001,
                  checkpoint_dir=tmp_path)
    calls = []

    def counted(attack):
        probe = robustness_probe(data, queries, attack, topk=20)
        wrapped = lambda model: calls.append(attack["eps"]) or probe(model)
        wrapped.config = probe.config
        return wrapped
    first = counted(dict(attack="pgd", eps=8 / 255, alpha=2 / 255, steps=2))
    _, history = fit_defense("finetune", data, victim.model, evaluate=first, **kwargs)
    assert calls == [8 / 255] and "adversarial_map" in history[0]
    fit_defense("finetune", data, victim.model, evaluate=counted(dict(attack="pgd", eps=32 / 255, alpha=4 / 255,
                                                                      steps=2)), **kwargs)
    assert calls == [8 / 255, 32 / 255], "other curve settings: evaluated anew, not served from the checkpoint"
    assert len(list(tmp_path.glob("*.pt"))) == 2
    _, again = fit_defense("finetune", data, victim.model, evaluate=first, **kwargs)
    assert again == history and len(calls) == 2, "the same settings: the finished run is loaded, not re-evaluated"


def test_snapshot_scores_per_query_are_each_iterates_ap_whose_mean_is_the_map(setup):
    victim, data = setup
    victims, queries = {("stripes", 16): victim}, {("stripes", 16): query_set(data, 7)}
    settings = {"HAG": dict(attack="hag", eps=16 / 255, alpha=4 / 255, steps=3)}
    _, runs = attack_scores(victims, queries, settings, topk=20, batch_size=4, snapshot_steps=[0, 1, 3],
                            columns=("dataset", "bits"))
    table = snapshot_scores(runs, victims, queries, "HAG", topk=20)
    per_query = snapshot_scores(runs, victims, queries, "HAG", topk=20, per_query=True)
    assert list(per_query.columns) == ["dataset", "bits", "iteration", "query", "ap"] and len(per_query) == 3 * 7
    assert list(per_query["query"]) == list(range(7)) * 3 and list(per_query.iteration) == [0] * 7 + [1] * 7 + [3] * 7
    last = per_query[per_query.iteration == 3].ap.to_numpy()
    assert last.tolist() == runs["stripes", 16, "HAG"].query_scores.tolist(), "the last iterate: the attack's AP"
    means = per_query.groupby("iteration").ap.mean()
    assert means.to_numpy() == pytest.approx(table["map"].to_numpy(), abs=1e-12)
