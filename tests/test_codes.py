"""Representative codes: center codes against brute force over all 2^K codes, anchor codes against
the majority vote of the database items they are drawn from, and target labels against their rules."""

import itertools

import numpy as np
import pytest
import torch
from helpers import random_table

from advhash.codes import (all_codes, anchor_codes, brute_force_minimum, center_code_objective, center_codes,
                           label_jaccard, sample_target_labels)


# ----------------------------------------------------------------------------------------------
# Independent references: label sets, Jaccard and the CgAT objective with Python loops, every code
# of {-1, +1}^K from itertools.

def _classes(label_row):
    return {c for c, v in enumerate(label_row) if v}


def _jaccard_loop(a, b):
    a, b = _classes(a), _classes(b)
    return len(a & b) / len(a | b) if a | b else 0.0


def _weights_loop(label, table_labels, variant):
    """CgAT weights of one item: positives share a class. paper: w+ = J / sum J, w- = 1 / |N|;
    official: w+ = 1 / |P|, w- = 1 / |N|. Lists of (table index, weight)."""
    positives = [j for j, y in enumerate(table_labels) if _classes(label) & _classes(y)]
    negatives = [j for j in range(len(table_labels)) if j not in positives]
    if variant == "paper":
        similarity = {j: _jaccard_loop(label, table_labels[j]) for j in positives}
    else:
        similarity = {j: 1.0 for j in positives}
    total = sum(similarity.values())
    return ([(j, similarity[j] / total) for j in positives], [(j, 1.0 / len(negatives)) for j in negatives])


def reference_objective(candidates, label, table_codes, table_labels, variant):
    """J(c) = sum_P w+ d_H(c, b_j) - sum_N w- d_H(c, b_j), d_H = number of differing bits; (C,) float64."""
    candidates, table_codes = np.asarray(candidates), np.asarray(table_codes)
    distances = (candidates[:, None, :] != table_codes[None, :, :]).sum(-1).astype(np.float64)   # (C, m)
    positives, negatives = _weights_loop(label, table_labels, variant)
    values = np.zeros(len(candidates))
    for j, w in positives:
        values += w * distances[:, j]
    for j, w in negatives:
        values -= w * distances[:, j]
    return values


def every_code(bits):
    return np.array(list(itertools.product([-1.0, 1.0], repeat=bits)))


# ----------------------------------------------------------------------------------------------
# Center codes (CgAT Theorem 1) against brute force

@pytest.mark.parametrize("bits", [6, 8, 10])
@pytest.mark.parametrize("seed", [0, 1])
def test_paper_center_codes_reach_the_brute_force_minimum(bits, seed):
    labels, table_codes, table_labels = random_table(seed, bits=bits)
    centers = center_codes(labels, table_codes, table_labels, variant="paper")
    assert centers.shape == (len(labels), bits) and set(centers.unique().tolist()) <= {-1.0, 1.0}
    candidates = every_code(bits)
    for label, center in zip(labels.tolist(), centers.tolist()):
        values = reference_objective(candidates, label, table_codes.tolist(), table_labels.tolist(), "paper")
        own = reference_objective([center], label, table_codes.tolist(), table_labels.tolist(), "paper")[0]
        assert own == pytest.approx(values.min(), abs=1e-9), f"label {label}: {own} > brute-force {values.min()}"


@pytest.mark.parametrize("bits", [6, 8, 10])
@pytest.mark.parametrize("seed", [0, 1])
def test_official_center_codes_reach_the_brute_force_minimum(bits, seed):
    labels, table_codes, table_labels = random_table(seed, bits=bits)
    centers = center_codes(labels, table_codes, table_labels, variant="official")
    assert set(centers.unique().tolist()) <= {-1.0, 0.0, 1.0}
    candidates = every_code(bits)
    checked = 0
    for label, center in zip(labels.tolist(), centers.tolist()):
        positives, negatives = _weights_loop(label, table_labels.tolist(), "official")
        if not positives or not negatives:
            assert center == [0.0] * bits, f"label {label} lacks positives or negatives: the all-zero code"
            continue
        values = reference_objective(candidates, label, table_codes.tolist(), table_labels.tolist(), "official")
        # a 0 bit is a tie: both of its values must be optimal
        for fill in (-1.0, 1.0):
            code = [fill if bit == 0 else bit for bit in center]
            own = reference_objective([code], label, table_codes.tolist(), table_labels.tolist(), "official")[0]
            assert own == pytest.approx(values.min(), abs=1e-9), f"label {label}: {own} > brute-force {values.min()}"
        checked += 1
    assert checked >= len(labels) - 4, "most items of the random table should have both positives and negatives"


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_center_code_objective_matches_the_reference_objective(variant):
    bits = 7
    labels, table_codes, table_labels = random_table(3, bits=bits)
    candidates = every_code(bits)
    values = center_code_objective(torch.tensor(candidates), labels, table_codes, table_labels, variant=variant)
    assert values.shape == (len(labels), 2**bits)
    for row, label in enumerate(labels.tolist()):
        expected = reference_objective(candidates, label, table_codes.tolist(), table_labels.tolist(), variant)
        np.testing.assert_allclose(values[row].double().numpy(), expected, atol=1e-5)


def test_label_jaccard_matches_set_arithmetic():
    g = torch.Generator().manual_seed(0)
    a, b = (torch.rand(7, 5, generator=g) < 0.4).float(), (torch.rand(9, 5, generator=g) < 0.4).float()
    a[0], b[0] = 0, 0  # both empty: 0
    expected = [[_jaccard_loop(x, y) for y in b.tolist()] for x in a.tolist()]
    assert torch.allclose(label_jaccard(a, b), torch.tensor(expected), atol=1e-7)


# ----------------------------------------------------------------------------------------------
# Center codes: edge cases by hand

def test_an_item_without_negatives_gets_its_positives_weighted_sign():
    # query {0, 1}; every table item carries class 0 or 1: no negatives
    table_labels = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 1], [0, 1, 1]])
    table_codes = torch.tensor([[1.0, -1, 1], [1, -1, -1], [-1, 1, -1], [1, 1, 1], [1, 1, 1]])
    query = torch.tensor([[1.0, 1, 0]])
    # Jaccard with {0, 1}: 1/2, 1/2, 1, 1/3, 1/3
    weights = [_jaccard_loop(query[0].tolist(), y) for y in table_labels.tolist()]
    weighted_sum = [sum(w * b[k] for w, b in zip(weights, table_codes.tolist())) for k in range(3)]
    expected = [1.0 if s >= 0 else -1.0 for s in weighted_sum]
    assert expected == [1.0, 1.0, -1.0]  # bit 2 differs from the unweighted majority (+1, three of five)
    assert center_codes(query, table_codes, table_labels, variant="paper").tolist() == [expected]
    assert center_codes(query, table_codes, table_labels, variant="official").tolist() == [[0.0, 0.0, 0.0]]


def test_an_item_without_positives_gets_the_opposite_of_its_negatives():
    table_labels = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0]])
    table_codes = torch.tensor([[1.0, -1, 1, -1], [1, -1, -1, -1], [-1, 1, -1, -1]])
    queries = torch.tensor([[0.0, 0, 1], [0, 0, 0]])  # a class nobody carries, and no label at all
    expected = [[-1.0, 1.0, 1.0, 1.0]] * 2  # minus the sign of the negatives' sums (1, -1, -1, -3)
    assert center_codes(queries, table_codes, table_labels, variant="paper").tolist() == expected
    assert center_codes(queries, table_codes, table_labels, variant="official").tolist() == [[0.0] * 4] * 2


@pytest.mark.parametrize("n_positive, n_negative", [(3, 9), (3, 6), (6, 9), (9, 21), (3, 12), (12, 33)])
def test_tied_bits_are_plus_one_in_the_paper_variant_and_zero_in_the_official_one(n_positive, n_negative):
    """Bit 0: every code is +1; bit 1: every code is -1; bit 2: both sides have the same mean 1/3;
    bit 3: the positives' mean is larger (no tie). Weights like 1/3 must not break the ties."""
    positives = [[1.0, -1.0, 1.0, 1.0]] * (2 * n_positive // 3) + [[1.0, -1.0, -1.0, 1.0]] * (n_positive // 3)
    negatives = [[1.0, -1.0, 1.0, -1.0]] * (2 * n_negative // 3) + [[1.0, -1.0, -1.0, -1.0]] * (n_negative // 3)
    table_codes = torch.tensor(positives + negatives)
    table_labels = torch.tensor([[1.0, 0]] * n_positive + [[0, 1.0]] * n_negative)
    query = torch.tensor([[1.0, 0]])
    assert center_codes(query, table_codes, table_labels, variant="paper").tolist() == [[1.0, 1.0, 1.0, 1.0]]
    assert center_codes(query, table_codes, table_labels, variant="official").tolist() == [[0.0, 0.0, 0.0, 1.0]]


def test_both_variants_agree_on_single_label_data():
    g = torch.Generator().manual_seed(4)
    table_labels = torch.nn.functional.one_hot(torch.randint(0, 4, (41,), generator=g), 4).float()
    table_codes = torch.where(torch.rand(41, 12, generator=g) < 0.5, -1.0, 1.0)
    labels = torch.eye(4)
    paper = center_codes(labels, table_codes, table_labels, variant="paper")
    official = center_codes(labels, table_codes, table_labels, variant="official")
    decided = official != 0
    assert decided.float().mean() > 0.8
    assert torch.equal(paper[decided], official[decided])
    assert (paper[~decided] == 1).all()  # a tie: +1 in the paper variant, 0 in the official one


def test_relaxed_table_codes_are_accepted():
    labels, table_codes, table_labels = random_table(5)
    relaxed = table_codes * 0.9  # tanh outputs instead of signs: same signs, same weights
    for variant in ("paper", "official"):
        assert torch.equal(center_codes(labels, relaxed, table_labels, variant=variant),
                           center_codes(labels, table_codes, table_labels, variant=variant))


def test_center_code_bad_inputs_are_clear_errors():
    labels, table_codes, table_labels = random_table(0)
    with pytest.raises(ValueError, match="labels have 5 classes but the code table's labels have 4"):
        center_codes(labels, table_codes, table_labels[:, :4])
    with pytest.raises(ValueError, match="the code table is empty"):
        center_codes(labels, table_codes[:0], table_labels[:0])
    with pytest.raises(ValueError, match=r"variant must be one of \('paper', 'official'\).*got 'cgat'"):
        center_codes(labels, table_codes, table_labels, variant="cgat")
    with pytest.raises(ValueError, match="the code table has 30 codes but 29 label rows"):
        center_codes(labels, table_codes, table_labels[:29])
    with pytest.raises(ValueError, match="must be 2-D"):
        center_codes(labels[0], table_codes, table_labels)
    with pytest.raises(ValueError, match="variant must be one of"):
        center_code_objective(torch.tensor(every_code(8)), labels, table_codes, table_labels, variant="cgat")


# ----------------------------------------------------------------------------------------------
# The brute-force helpers themselves

def test_all_codes_enumerates_the_hypercube_in_counting_order():
    codes = all_codes(4)
    assert codes.tolist() == every_code(4).tolist()  # itertools.product is binary counting order too
    assert codes[0].tolist() == [-1.0] * 4 and codes[-1].tolist() == [1.0] * 4
    with pytest.raises(ValueError, match=r"bits must be in \[1, 20\], got 0"):
        all_codes(0)
    with pytest.raises(ValueError, match="bits must be in"):
        all_codes(21)


def test_brute_force_minimum_finds_the_smallest_value_and_its_first_code():
    target = [[1.0, -1.0, 1.0], [-1.0, -1.0, -1.0]]

    def distance_to_target(candidates):  # (C, 3) -> (2, C): Hamming distance to each target
        return torch.tensor([[sum(a != b for a, b in zip(t, c)) for c in candidates.tolist()] for t in target])

    values, codes = brute_force_minimum(distance_to_target, 3)
    assert values.tolist() == [0, 0] and codes.tolist() == target


# ----------------------------------------------------------------------------------------------
# Anchor codes (DHTA Eq. 5) and target labels

def anchor_database(seed=0):
    """Labels over 4 classes: label A = {0} has 15 items sharing one code, B = {1} exactly 9 items,
    C = {2} 12 items, D = {0, 3} 2 items with opposite codes, E = {1, 2} 3 items; random codes."""
    g = torch.Generator().manual_seed(seed)
    groups = {(1, 0, 0, 0): 15, (0, 1, 0, 0): 9, (0, 0, 1, 0): 12, (1, 0, 0, 1): 2, (0, 1, 1, 0): 3}
    labels = torch.tensor([list(label) for label, n in groups.items() for _ in range(n)], dtype=torch.float)
    codes = torch.where(torch.rand(len(labels), 10, generator=g) < 0.5, -1.0, 1.0)
    codes[:15] = codes[0]                     # label A: one shared code
    codes[-5] = -codes[-4]                    # label D: two opposite codes
    order = torch.randperm(len(labels), generator=g)   # interleave the groups
    return codes[order], labels[order]


def _items_with(label, db_codes, db_labels):
    return [code for code, y in zip(db_codes.tolist(), db_labels.tolist()) if y == label]


def _majority(codes):
    return [1.0 if sum(column) >= 0 else -1.0 for column in zip(*codes)]


def test_a_single_anchor_is_the_code_of_an_item_with_exactly_the_target_label():
    db_codes, db_labels = anchor_database()
    targets = torch.tensor([[0.0, 0, 1, 0], [0, 1, 1, 0], [0, 1, 0, 0]] * 4)
    anchors = anchor_codes(targets, db_codes, db_labels, num_anchors=1, generator=torch.Generator().manual_seed(0))
    for target, anchor in zip(targets.tolist(), anchors.tolist()):
        assert anchor in _items_with(target, db_codes, db_labels)


def test_nine_anchors_are_the_majority_vote_of_nine_items_of_the_target_label():
    db_codes, db_labels = anchor_database()
    label_a, label_b, label_c = [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]
    targets = torch.tensor([label_a, label_b, label_c, label_c])
    anchors = anchor_codes(targets, db_codes, db_labels, num_anchors=9, generator=torch.Generator().manual_seed(1))
    assert anchors[0].tolist() == _items_with(label_a, db_codes, db_labels)[0]   # all 15 share one code
    assert anchors[1].tolist() == _majority(_items_with(label_b, db_codes, db_labels))   # exactly 9 items
    c_items = _items_with(label_c, db_codes, db_labels)                           # 12 items: some 9 of them
    votes = [_majority(subset) for subset in itertools.combinations(c_items, 9)]
    assert anchors[2].tolist() in votes and anchors[3].tolist() in votes


def test_a_tied_anchor_bit_is_plus_one():
    db_codes, db_labels = anchor_database()
    label_d = [1.0, 0, 0, 1.0]
    d_items = _items_with(label_d, db_codes, db_labels)
    assert d_items[0] == [-b for b in d_items[1]]
    anchors = anchor_codes(torch.tensor([label_d]), db_codes, db_labels, num_anchors=2)
    assert anchors.tolist() == [[1.0] * 10]


def test_anchor_draw_is_deterministic_for_a_seeded_generator():
    db_codes, db_labels = anchor_database()
    targets = torch.tensor([[0.0, 0, 1, 0]] * 20)

    def draw(seed, num_anchors):
        return anchor_codes(targets, db_codes, db_labels, num_anchors=num_anchors,
                            generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(3, 9), draw(3, 9)) and torch.equal(draw(3, 1), draw(3, 1))
    assert len({tuple(row) for row in draw(3, 1).tolist()}) > 1, "20 single draws from 12 items should differ"


def test_anchor_codes_bad_inputs_are_clear_errors():
    db_codes, db_labels = anchor_database()
    with pytest.raises(ValueError, match=r"a target label has only 9 database items, fewer than num_anchors=10"):
        anchor_codes(torch.tensor([[0.0, 1, 0, 0]]), db_codes, db_labels, num_anchors=10)
    with pytest.raises(ValueError, match="carried by no database item; draw targets with sample_target_labels"):
        anchor_codes(torch.tensor([[0.0, 0, 0, 1]]), db_codes, db_labels)
    with pytest.raises(ValueError, match="num_anchors"):
        anchor_codes(torch.tensor([[0.0, 1, 0, 0]]), db_codes, db_labels, num_anchors=0)
    with pytest.raises(ValueError, match="database codes but"):
        anchor_codes(torch.tensor([[0.0, 1, 0, 0]]), db_codes[:-1], db_labels)


def test_target_labels_are_disjoint_from_the_query_and_carried_by_enough_items():
    db_codes, db_labels = anchor_database()
    queries = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]] * 20)
    targets = sample_target_labels(queries, db_labels, min_items=9, generator=torch.Generator().manual_seed(0))
    counts = {}
    for row in db_labels.tolist():
        counts[tuple(row)] = counts.get(tuple(row), 0) + 1
    seen = {}
    for query, target in zip(queries.tolist(), targets.tolist()):
        assert not _classes(query) & _classes(target), f"target {target} shares a class with query {query}"
        assert counts.get(tuple(target), 0) >= 9, f"target {target} has fewer than 9 database items"
        seen.setdefault(tuple(query), set()).add(tuple(target))
    # the allowed labels (A, B, C have >= 9 items) are all drawn over 20 repeats of a query
    assert seen[(0.0, 0, 0, 1)] == {(1.0, 0, 0, 0), (0, 1.0, 0, 0), (0, 0, 1.0, 0)}
    assert seen[(1.0, 0, 0, 0)] == {(0, 1.0, 0, 0), (0, 0, 1.0, 0)}
    again = sample_target_labels(queries, db_labels, min_items=9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(targets, again)
    small = sample_target_labels(queries[:1], db_labels, min_items=3, generator=torch.Generator().manual_seed(0))
    assert small.tolist()[0] in ([0.0, 1, 0, 0], [0, 0, 1, 0], [0, 1, 1, 0])


def test_sample_target_labels_bad_inputs_are_clear_errors():
    _, db_labels = anchor_database()
    with pytest.raises(ValueError, match="query 1 has no possible target label.*lower min_items"):
        sample_target_labels(torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 0]]), db_labels, min_items=9)
    with pytest.raises(ValueError, match="query 0 has no possible target label"):
        sample_target_labels(torch.tensor([[1.0, 0, 0, 0]]), db_labels, min_items=16)
    with pytest.raises(ValueError, match="query labels have 3 classes, database labels 4"):
        sample_target_labels(torch.zeros(2, 3), db_labels)
