"""CgAT's center codes (advhash.codes.center): both variants against brute force over all 2^K codes, the
objective against a loop, edge cases by hand, and clear errors."""

import numpy as np
import pytest
import torch
from helpers import every_code, random_table, weighted_distance_loop
from helpers import jaccard_loop as _jaccard_loop
from helpers import label_classes as _classes

from advhash.codes import center_code_objective, center_codes


# ----------------------------------------------------------------------------------------------
# Independent references: the CgAT weights and objective with Python loops (label sets, Jaccard and every
# code of {-1, +1}^K from helpers.py).

def _weights_loop(label, table_labels, variant):
    """CgAT weights of one item: positives share a class. paper: w+ = J / sum J, w- = 1 / |N|;
    published: w+ = 1 / |P|, w- = 1 / |N|. Lists of (table index, weight)."""
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
    return weighted_distance_loop(candidates, table_codes, *_weights_loop(label, table_labels, variant))


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
def test_published_center_codes_reach_the_brute_force_minimum(bits, seed):
    labels, table_codes, table_labels = random_table(seed, bits=bits)
    centers = center_codes(labels, table_codes, table_labels, variant="published")
    assert set(centers.unique().tolist()) <= {-1.0, 0.0, 1.0}
    candidates = every_code(bits)
    checked = 0
    for label, center in zip(labels.tolist(), centers.tolist()):
        positives, negatives = _weights_loop(label, table_labels.tolist(), "published")
        if not positives or not negatives:
            assert center == [0.0] * bits, f"label {label} lacks positives or negatives: the all-zero code"
            continue
        values = reference_objective(candidates, label, table_codes.tolist(), table_labels.tolist(), "published")
        # a 0 bit is a tie: both of its values must be optimal
        for fill in (-1.0, 1.0):
            code = [fill if bit == 0 else bit for bit in center]
            own = reference_objective([code], label, table_codes.tolist(), table_labels.tolist(), "published")[0]
            assert own == pytest.approx(values.min(), abs=1e-9), f"label {label}: {own} > brute-force {values.min()}"
        checked += 1
    assert checked >= len(labels) - 4, "most items of the random table should have both positives and negatives"


@pytest.mark.parametrize("variant", ["paper", "published"])
def test_center_code_objective_matches_the_reference_objective(variant):
    bits = 7
    labels, table_codes, table_labels = random_table(3, bits=bits)
    candidates = every_code(bits)
    values = center_code_objective(torch.tensor(candidates), labels, table_codes, table_labels, variant=variant)
    assert values.shape == (len(labels), 2**bits)
    for row, label in enumerate(labels.tolist()):
        expected = reference_objective(candidates, label, table_codes.tolist(), table_labels.tolist(), variant)
        np.testing.assert_allclose(values[row].double().numpy(), expected, atol=1e-5)


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
    assert center_codes(query, table_codes, table_labels, variant="published").tolist() == [[0.0, 0.0, 0.0]]


def test_an_item_without_positives_gets_the_opposite_of_its_negatives():
    table_labels = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0]])
    table_codes = torch.tensor([[1.0, -1, 1, -1], [1, -1, -1, -1], [-1, 1, -1, -1]])
    queries = torch.tensor([[0.0, 0, 1], [0, 0, 0]])  # a class nobody carries, and no label at all
    expected = [[-1.0, 1.0, 1.0, 1.0]] * 2  # minus the sign of the negatives' sums (1, -1, -1, -3)
    assert center_codes(queries, table_codes, table_labels, variant="paper").tolist() == expected
    assert center_codes(queries, table_codes, table_labels, variant="published").tolist() == [[0.0] * 4] * 2


@pytest.mark.parametrize("n_positive, n_negative", [(3, 9), (3, 6), (6, 9), (9, 21), (3, 12), (12, 33)])
def test_tied_bits_are_plus_one_in_the_paper_variant_and_zero_in_the_published_one(n_positive, n_negative):
    """Bit 0: every code is +1; bit 1: every code is -1; bit 2: both sides have the same mean 1/3;
    bit 3: the positives' mean is larger (no tie). Weights like 1/3 must not break the ties."""
    positives = [[1.0, -1.0, 1.0, 1.0]] * (2 * n_positive // 3) + [[1.0, -1.0, -1.0, 1.0]] * (n_positive // 3)
    negatives = [[1.0, -1.0, 1.0, -1.0]] * (2 * n_negative // 3) + [[1.0, -1.0, -1.0, -1.0]] * (n_negative // 3)
    table_codes = torch.tensor(positives + negatives)
    table_labels = torch.tensor([[1.0, 0]] * n_positive + [[0, 1.0]] * n_negative)
    query = torch.tensor([[1.0, 0]])
    assert center_codes(query, table_codes, table_labels, variant="paper").tolist() == [[1.0, 1.0, 1.0, 1.0]]
    assert center_codes(query, table_codes, table_labels, variant="published").tolist() == [[0.0, 0.0, 0.0, 1.0]]


def test_both_variants_agree_on_single_label_data():
    g = torch.Generator().manual_seed(4)
    table_labels = torch.nn.functional.one_hot(torch.randint(0, 4, (41,), generator=g), 4).float()
    table_codes = torch.where(torch.rand(41, 12, generator=g) < 0.5, -1.0, 1.0)
    labels = torch.eye(4)
    paper = center_codes(labels, table_codes, table_labels, variant="paper")
    published = center_codes(labels, table_codes, table_labels, variant="published")
    decided = published != 0
    assert decided.float().mean() > 0.8
    assert torch.equal(paper[decided], published[decided])
    assert (paper[~decided] == 1).all()  # a tie: +1 in the paper variant, 0 in the published one


def test_relaxed_table_codes_are_accepted():
    labels, table_codes, table_labels = random_table(5)
    relaxed = table_codes * 0.9  # tanh outputs instead of signs: same signs, same weights
    for variant in ("paper", "published"):
        assert torch.equal(center_codes(labels, relaxed, table_labels, variant=variant),
                           center_codes(labels, table_codes, table_labels, variant=variant))


def test_center_code_bad_inputs_are_clear_errors():
    labels, table_codes, table_labels = random_table(0)
    with pytest.raises(ValueError, match="labels have 5 classes but the code table's labels have 4"):
        center_codes(labels, table_codes, table_labels[:, :4])
    with pytest.raises(ValueError, match="the code table is empty"):
        center_codes(labels, table_codes[:0], table_labels[:0])
    with pytest.raises(ValueError, match=r"variant must be one of \('paper', 'published'\).*got 'cgat'"):
        center_codes(labels, table_codes, table_labels, variant="cgat")
    with pytest.raises(ValueError, match="the code table has 30 codes but 29 label rows"):
        center_codes(labels, table_codes, table_labels[:29])
    with pytest.raises(ValueError, match="must be 2-D"):
        center_codes(labels[0], table_codes, table_labels)
    with pytest.raises(ValueError, match="variant must be one of"):
        center_code_objective(torch.tensor(every_code(8)), labels, table_codes, table_labels, variant="cgat")
