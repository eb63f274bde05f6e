"""Findings and their uncertainty (advhash.uncertainty): the intervals cover a known effect about as often as they
claim, on synthetic per-query scores; the verdict reads the interval's side; a plain loop from the formula agrees."""

import numpy as np
import pytest

from advhash.uncertainty import Estimate, agreement, magnitude_ratio, paired_interval, seed_interval

EFFECT = 0.05          # the true effect of the synthetic scores: ours - reference, in AP units
N_QUERIES = 200        # the attacked queries of a report
REPETITIONS = 200      # seeded repetitions of a coverage check
COVERED = (0.89, 0.99)  # 95 % of 200 repetitions, give or take about three binomial standard deviations


def query_scores(rng, *, effect=EFFECT, n_queries=N_QUERIES, seed_effect=0.0):
    """(ours, reference): reference APs in [0.3, 0.7], ours = reference + effect (+ the seed's own shift) + noise."""
    reference = rng.uniform(0.3, 0.7, n_queries)
    return reference + effect + seed_effect + rng.normal(0, 0.2, n_queries), reference


def seed_scores(rng, *, effect=EFFECT, n_seeds=5):
    """One (ours, reference) pair per training seed; the seeds' effects spread as much as the query noise's
    standard error (0.2 / sqrt(200)), so neither level dominates."""
    return [query_scores(rng, effect=effect, seed_effect=rng.normal(0, 0.2 / np.sqrt(N_QUERIES)))
            for _ in range(n_seeds)]


def coverage(estimates, effect):
    return np.mean([estimate.low <= effect <= estimate.high for estimate in estimates])


def test_the_query_level_interval_covers_a_known_effect_about_95_percent_of_the_time():
    estimates = [paired_interval(*query_scores(np.random.default_rng(rep)), n_resamples=999, seed=rep)
                 for rep in range(REPETITIONS)]
    assert COVERED[0] <= coverage(estimates, EFFECT) <= COVERED[1]
    assert {estimate.method for estimate in estimates} == {"BCa"} and estimates[0].levels == ("queries",)


def test_the_seed_level_interval_covers_a_known_effect_about_95_percent_of_the_time():
    estimates = [seed_interval(seed_scores(np.random.default_rng(rep)), n_resamples=999, seed=rep)
                 for rep in range(REPETITIONS)]
    assert COVERED[0] <= coverage(estimates, EFFECT) <= COVERED[1]
    assert estimates[0].levels == ("seeds", "queries") and estimates[0].n_seeds == 5


def test_three_seeds_scoring_the_same_hard_and_easy_queries_still_cover_the_effect():
    """Every seed scores the same queries, and a query hard for one seed is hard for all: a per-query effect shared
    across seeds (sd 0.2, as large as the noise). Resampling queries apart per seed would average it away and
    cover about 80 % of the time; the crossed bootstrap keeps 95 %."""
    def shared(rng):
        reference, shared_effect = rng.uniform(0.3, 0.7, N_QUERIES), rng.normal(0, 0.2, N_QUERIES)
        return [(reference + EFFECT + shared_effect + rng.normal(0, 0.2 / np.sqrt(N_QUERIES))
                 + rng.normal(0, 0.2, N_QUERIES), reference) for _ in range(3)]

    estimates = [seed_interval(shared(np.random.default_rng(rep)), n_resamples=999, seed=rep)
                 for rep in range(REPETITIONS)]
    assert COVERED[0] <= coverage(estimates, EFFECT) <= COVERED[1]


def test_a_zero_effect_is_inconclusive_about_95_percent_of_the_time():
    verdicts = [paired_interval(*query_scores(np.random.default_rng(rep), effect=0.0), n_resamples=999,
                                seed=rep).verdict(+1) for rep in range(REPETITIONS)]
    assert COVERED[0] <= verdicts.count("INCONCLUSIVE") / REPETITIONS <= COVERED[1]
    assert set(verdicts) <= {"INCONCLUSIVE", "REPRODUCED", "NOT REPRODUCED"}


def test_a_clear_effect_is_reproduced_in_its_direction_and_not_reproduced_against_it():
    better = paired_interval(*query_scores(np.random.default_rng(0), effect=0.2))
    assert better.low > 0
    assert better.verdict(+1) == "REPRODUCED" and better.verdict(-1) == "NOT REPRODUCED"
    worse = seed_interval(seed_scores(np.random.default_rng(0), effect=-0.2))
    assert worse.verdict(-1) == "REPRODUCED" and worse.verdict(+1) == "NOT REPRODUCED"


def test_too_few_queries_say_so_in_the_verdict():
    few = paired_interval(*query_scores(np.random.default_rng(0), effect=0.5, n_queries=12))
    assert few.low > 0 and few.verdict(+1) == "INCONCLUSIVE: n = 12 queries"
    assert few.verdict(+1, min_queries=10) == "REPRODUCED"
    one = paired_interval([0.9], [0.1])
    assert np.isnan(one.low) and one.note == "one query: no interval"
    assert one.verdict(+1, min_queries=1) == "INCONCLUSIVE: n = 1 query"


def test_equal_differences_fall_back_to_the_percentile_interval_and_say_so():
    reference = np.linspace(0.2, 0.8, 50)
    same = paired_interval(reference, reference)
    assert (same.low, same.high, same.method) == (0.0, 0.0, "percentile") and "BCa undefined" in same.note
    assert same.verdict(+1) == "INCONCLUSIVE"
    shifted = paired_interval(reference + 0.1, reference)
    assert shifted.low == pytest.approx(0.1) and shifted.verdict(+1) == "REPRODUCED"


def test_the_same_seed_gives_the_same_interval():
    ours, reference = query_scores(np.random.default_rng(3))
    assert paired_interval(ours, reference, seed=7) == paired_interval(ours, reference, seed=7)
    assert paired_interval(ours, reference, seed=7) != paired_interval(ours, reference, seed=8)
    per_seed = seed_scores(np.random.default_rng(3))
    assert seed_interval(per_seed, seed=7) == seed_interval(per_seed, seed=7)


def test_one_seed_is_the_query_level_interval():
    ours, reference = query_scores(np.random.default_rng(4))
    assert seed_interval([(ours, reference)], seed=2) == paired_interval(ours, reference, seed=2)
    assert seed_interval(np.stack([[ours, reference]])) == paired_interval(ours, reference)   # (n_seeds, 2, n)
    assert seed_interval({17: (ours, reference)}).levels == ("queries",)


@pytest.mark.parametrize("call, message", [
    (lambda: paired_interval([0.1, 0.2, 0.3], [0.1, 0.2]), "ours has 3 scores and reference 2"),
    (lambda: paired_interval([0.1, np.nan, 0.3], [0.1, 0.2, 0.3]), "ours has 1 NaN .* first at query 1"),
    (lambda: paired_interval([0.1, 0.2], [0.1, np.inf]), "reference has 1 NaN or infinite"),
    (lambda: paired_interval([], []), "ours is empty"),
    (lambda: paired_interval([[0.1, 0.2]], [[0.1, 0.2]]), "one score per query"),
    (lambda: paired_interval([0.1, 0.2], [0.1, 0.2], confidence=95), r"\(0, 1\).*use 0.95"),
    (lambda: paired_interval([0.1, 0.2], [0.1, 0.2], confidence=1.0), r"confidence must lie in \(0, 1\)"),
    (lambda: paired_interval([0.1, 0.2], [0.1, 0.2], n_resamples=0), "n_resamples must be a positive"),
    (lambda: paired_interval([0.1, 0.2], [0.1, 0.2], method="bootstrap-t"), "method must be one of"),
    (lambda: seed_interval([]), "per_seed is empty"),
    (lambda: seed_interval({3: ([0.1, 0.2], [0.1, 0.2]), 5: ([0.1], [0.1])}), r"queries per seed: \{3: 2, 5: 1\}"),
    (lambda: seed_interval({3: ([0.1, 0.2], [0.1, 0.2]), 5: ([0.1, np.nan], [0.1, 0.2])}), "seed 5: ours has 1 NaN"),
    (lambda: seed_interval([([0.1, 0.2], [0.1, 0.2]), [0.1, 0.2, 0.3]]), "seed at position 1: expected an"),
    (lambda: Estimate(0.1, 0.0, 0.2, 0.95, 50, 1, ("queries",), "BCa", 0.5).verdict(2), "direction must be"),
    (lambda: magnitude_ratio(0.1, 0.0), "published effect is 0"),
])
def test_bad_input_is_refused_naming_the_culprit(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def percentile_interval_by_loop(ours, reference, *, confidence, n_resamples, rng):
    """The paired percentile bootstrap from its definition: resample query indices, average the differences."""
    differences = np.asarray(ours) - np.asarray(reference)
    means = [differences[rng.integers(len(differences), size=len(differences))].mean() for _ in range(n_resamples)]
    return np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])


def two_level_interval_by_loop(per_seed, *, confidence, n_resamples, rng):
    """The crossed bootstrap from its definition: draw seeds with replacement, and one set of queries for them all."""
    differences = [np.asarray(ours) - np.asarray(reference) for ours, reference in per_seed]
    means = []
    for _ in range(n_resamples):   # seeds and queries crossed: one query draw shared by the drawn seeds
        seeds = rng.integers(len(differences), size=len(differences))
        queries = rng.integers(len(differences[0]), size=len(differences[0]))
        means.append(np.mean([differences[s][queries].mean() for s in seeds]))
    return np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])


def test_the_query_level_interval_agrees_with_a_plain_loop_and_the_normal_interval():
    ours, reference = query_scores(np.random.default_rng(5))
    standard_error = np.std(ours - reference, ddof=1) / np.sqrt(N_QUERIES)
    loop = percentile_interval_by_loop(ours, reference, confidence=0.9, n_resamples=4000,
                                       rng=np.random.default_rng(1))
    ours_percentile = paired_interval(ours, reference, confidence=0.9, n_resamples=4000, method="percentile")
    assert ours_percentile.low == pytest.approx(loop[0], abs=0.15 * standard_error)
    assert ours_percentile.high == pytest.approx(loop[1], abs=0.15 * standard_error)
    bca = paired_interval(ours, reference, n_resamples=4000)   # normal differences: BCa is near mean +- 1.96 se
    assert bca.estimate == pytest.approx(np.mean(ours - reference))
    assert bca.low == pytest.approx(bca.estimate - 1.96 * standard_error, abs=0.15 * standard_error)
    assert bca.high == pytest.approx(bca.estimate + 1.96 * standard_error, abs=0.15 * standard_error)


def test_the_seed_level_interval_agrees_with_a_plain_loop():
    per_seed = seed_scores(np.random.default_rng(6), n_seeds=4)
    loop = two_level_interval_by_loop(per_seed, confidence=0.95, n_resamples=2000, rng=np.random.default_rng(1))
    found = seed_interval(per_seed, n_resamples=2000)
    width = loop[1] - loop[0]
    assert found.estimate == pytest.approx(np.mean([np.mean(o - r) for o, r in per_seed]))
    assert found.low == pytest.approx(loop[0], abs=0.06 * width)
    assert found.high == pytest.approx(loop[1], abs=0.06 * width)


def test_magnitude_and_agreement_state_ours_against_the_published_effect():
    estimate = Estimate(0.03, 0.01, 0.05, 0.95, 200, 1, ("queries",), "BCa", reference_mean=0.6)
    assert magnitude_ratio(estimate, 0.1) == pytest.approx(0.3) and magnitude_ratio(estimate, None) is None
    assert estimate.relative == pytest.approx(5.0)
    assert agreement(estimate, direction=+1, published=0.1) == "direction reproduced, magnitude 0.3x the published"
    assert agreement(estimate, direction=+1) == "direction reproduced (the paper states no magnitude)"
    assert agreement(estimate, direction=-1, published=-0.1) == "opposite direction, magnitude -0.3x the published"
    unsure = Estimate(0.01, -0.01, 0.03, 0.95, 200, 1, ("queries",), "BCa", reference_mean=0.6)
    assert agreement(unsure, direction=+1) == "direction not established (the interval contains zero)"
    few = Estimate(0.03, 0.01, 0.05, 0.95, 12, 1, ("queries",), "BCa", reference_mean=0.6)
    assert agreement(few, direction=+1) == "direction not established (n = 12 queries)"
    assert str(estimate) == "+0.030 [+0.010, +0.050] (95 % BCa, 200 queries)"
