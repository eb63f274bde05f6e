"""SAAT's mainstay codes (advhash.codes.mainstay, Yuan et al., TIFS 2023, Theorem 1): against brute force
over all 2^K codes with an objective written here, bit by bit against Theorem 1, edge cases by hand, the
relation to CgAT's center codes, the published variant (torch.sign: a tied bit is 0) against a loop of the sign of
the sum with exact ties, and clear errors."""

import math
from functools import partial

import numpy as np
import pytest
import torch
from helpers import cosine_loop as _cosine_loop
from helpers import every_code, reference_mainstay_codes, weighted_distance_loop
from helpers import mainstay_weights_loop as _mainstay_weights_loop
from helpers import random_table as shared_random_table

from advhash.codes import center_code_objective, center_codes, mainstay_code_objective, mainstay_codes

random_table = partial(shared_random_table, rate=0.35)   # denser labels than the center-code tests


# ----------------------------------------------------------------------------------------------
# Independent references: the DMFL objective psi(b) with Python loops (the cosine weights and Theorem 1
# bit by bit are in helpers.py)

def reference_mainstay_objective(candidates, label, table_codes, table_labels):
    """psi(b) = sum_P w_j d_H(b, b_j) - sum_N (1/|N|) d_H(b, b_j), d_H = number of differing bits; (C,)."""
    return weighted_distance_loop(candidates, table_codes, *_mainstay_weights_loop(label, table_labels))


# ----------------------------------------------------------------------------------------------
# Mainstay codes (SAAT Theorem 1)

@pytest.mark.parametrize("bits", [6, 7, 8, 9, 10])
def test_mainstay_codes_reach_the_brute_force_minimum(bits):
    labels, table_codes, table_labels = random_table(bits, bits=bits)
    positives = [_mainstay_weights_loop(y, table_labels.tolist()) for y in labels.tolist()]
    assert not positives[0][0] and not positives[1][0] and not positives[2][1], "the edge cases are there"
    codes = mainstay_codes(labels, table_codes, table_labels)
    assert codes.shape == (len(labels), bits) and set(codes.unique().tolist()) <= {-1.0, 1.0}
    candidates = every_code(bits)
    for label, code in zip(labels.tolist(), codes.tolist()):
        values = reference_mainstay_objective(candidates, label, table_codes.tolist(), table_labels.tolist())
        own = reference_mainstay_objective([code], label, table_codes.tolist(), table_labels.tolist())[0]
        assert own == pytest.approx(values.min(), abs=1e-9), f"label {label}: {own} > brute-force {values.min()}"


def test_mainstay_code_objective_matches_the_reference_objective():
    bits = 7
    labels, table_codes, table_labels = random_table(3, bits=bits)
    candidates = every_code(bits)
    values = mainstay_code_objective(torch.tensor(candidates), labels, table_codes, table_labels)
    assert values.shape == (len(labels), 2**bits)
    for row, label in enumerate(labels.tolist()):
        expected = reference_mainstay_objective(candidates, label, table_codes.tolist(), table_labels.tolist())
        np.testing.assert_allclose(values[row].double().numpy(), expected, atol=1e-5)


def test_mainstay_codes_match_theorem_1_bit_by_bit():
    labels, table_codes, table_labels = random_table(11, n=40, m=60, bits=12)
    assert torch.equal(mainstay_codes(labels, table_codes, table_labels),
                       reference_mainstay_codes(labels, table_codes, table_labels))


def test_an_item_without_negatives_gets_its_positives_cosine_weighted_sign():
    table_labels = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0], [1, 0, 1, 1], [0, 1, 1, 1]])
    table_codes = torch.tensor([[1.0, -1, 1], [1, -1, -1], [-1, 1, -1], [1, 1, 1], [1, 1, 1]])
    query = torch.tensor([[1.0, 1, 0, 0]])     # every table item carries class 0 or 1: no negatives
    # cos with {0, 1}: 1/sqrt2, 1/sqrt2, 1, 1/sqrt6, 1/sqrt6
    weights = [_cosine_loop(query[0].tolist(), y) for y in table_labels.tolist()]
    weighted_sum = [sum(w * b[k] for w, b in zip(weights, table_codes.tolist())) for k in range(3)]
    expected = [1.0 if s >= 0 else -1.0 for s in weighted_sum]
    assert expected == [1.0, 1.0, -1.0]        # bit 2 differs from the unweighted majority (+1, three of five)
    assert mainstay_codes(query, table_codes, table_labels).tolist() == [expected]


def test_an_item_without_positives_gets_the_opposite_of_its_negatives():
    table_labels = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0]])
    table_codes = torch.tensor([[1.0, -1, 1, -1], [1, -1, -1, -1], [-1, 1, -1, -1]])
    queries = torch.tensor([[0.0, 0, 1], [0, 0, 0]])  # a class nobody carries, and no label at all
    expected = [[-1.0, 1.0, 1.0, 1.0]] * 2            # minus the sign of the negatives' sums (1, -1, -1, -3)
    assert mainstay_codes(queries, table_codes, table_labels).tolist() == expected


def irrational_tie_table():
    """Query {0}; seven positives of cosine 1/2, 1/2, 1/sqrt3, 1/sqrt3, 1/2, 1/sqrt5, 1/sqrt2 and three
    negatives. Bit 0: every code is +1, bit 1: every code is -1, so sum_P w b - mean_N b = +-(sum_P w - 1)
    = 0, which float64 weights miss by a few 1e-16 on this table; bit 2: the positives are -1 and the
    negatives +1 (no tie). Returns (query, table_codes, table_labels)."""
    query = torch.tensor([[1.0, 0, 0, 0, 0, 0]])
    positive_labels = [[1.0, 0, 1, 1, 1, 0], [1, 0, 1, 0, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 1, 0],
                       [1, 0, 0, 1, 1, 1], [1, 0, 1, 1, 1, 1], [1, 0, 0, 0, 0, 1]]
    negative_labels = [[0.0, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]]
    table_codes = torch.tensor([[1.0, -1, -1]] * 7 + [[1.0, -1, 1]] * 3)
    return query, table_codes, torch.tensor(positive_labels + negative_labels)


def test_tied_bits_are_plus_one_even_with_irrational_cosine_weights():
    """The table of :func:`irrational_tie_table`: bits 0 and 1 tie, bit 2 does not."""
    query, table_codes, table_labels = irrational_tie_table()
    positives, negatives = _mainstay_weights_loop(query[0].tolist(), table_labels.tolist())
    assert len(positives) == 7 and len(negatives) == 3
    assert [w / positives[0][1] for _, w in positives] == \
        pytest.approx([1, 1, 2 / math.sqrt(3), 2 / math.sqrt(3), 1, 2 / math.sqrt(5), math.sqrt(2)])
    assert mainstay_codes(query, table_codes, table_labels).tolist() == [[1.0, 1.0, -1.0]]
    assert mainstay_codes(query.double(), table_codes.double(), table_labels.double()).tolist() == [[1.0, 1.0, -1.0]]
    values = reference_mainstay_objective(every_code(3), query[0].tolist(), table_codes.tolist(),
                                          table_labels.tolist())
    assert (np.abs(values - values.min()) < 1e-9).sum() == 4, "bits 0 and 1 are ties: 4 optimal codes"


def test_on_single_label_data_mainstay_codes_are_the_paper_center_codes():
    g = torch.Generator().manual_seed(4)
    table_labels = torch.nn.functional.one_hot(torch.randint(0, 4, (41,), generator=g), 4).float()
    table_codes = torch.where(torch.rand(41, 12, generator=g) < 0.5, -1.0, 1.0)
    labels = torch.cat([torch.eye(4), torch.zeros(1, 4)])
    assert torch.equal(mainstay_codes(labels, table_codes, table_labels),
                       center_codes(labels, table_codes, table_labels, variant="paper"))
    candidates = torch.tensor(every_code(6))
    assert torch.allclose(mainstay_code_objective(candidates, labels, table_codes[:, :6], table_labels),
                          center_code_objective(candidates, labels, table_codes[:, :6], table_labels))


def test_cosine_weights_give_another_code_than_jaccard_weights_on_multi_label_data():
    """Query {0, 1}. Positive A = {0}: Jaccard 1/2, cosine 1/sqrt2; positive B = {0, 2, 3, 4, 5}: Jaccard 1/6,
    cosine 1/sqrt10. Two A items with bit 0 = +1 and five B items with bit 0 = -1: Jaccard weighs the
    bit to 2/2 - 5/6 > 0, cosine to 2/sqrt2 - 5/sqrt10 < 0. Two negatives cancel on bit 0."""
    a, b, negative = [1.0, 0, 0, 0, 0, 0], [1.0, 0, 1, 1, 1, 1], [0.0, 0, 1, 0, 0, 0]
    table_labels = torch.tensor([a] * 2 + [b] * 5 + [negative] * 2)
    table_codes = torch.tensor([[1.0, 1]] * 2 + [[-1.0, 1]] * 5 + [[1.0, -1], [-1.0, -1]])
    query = torch.tensor([[1.0, 1, 0, 0, 0, 0]])
    mainstay = mainstay_codes(query, table_codes, table_labels)
    center = center_codes(query, table_codes, table_labels, variant="paper")
    assert mainstay.tolist() == [[-1.0, 1.0]] and center.tolist() == [[1.0, 1.0]]
    values = reference_mainstay_objective(every_code(2), query[0].tolist(), table_codes.tolist(), table_labels.tolist())
    own, centers = (reference_mainstay_objective(c.tolist(), query[0].tolist(), table_codes.tolist(),
                                                 table_labels.tolist())[0] for c in (mainstay, center))
    assert own == pytest.approx(values.min(), abs=1e-12) and centers > own + 0.05, \
        "the center code is not optimal for SAAT's cosine-weighted objective"


# ----------------------------------------------------------------------------------------------
# The published variant: torch.sign of the same sum (SAAT adv_attack.py L30), a tied bit is 0

def published_mainstay_loop(labels, table_codes, table_labels, tolerance=1e-9):
    """SAAT adv_attack.py L14-31 one item and bit at a time: the sum sum_P w b - mean_N b (an empty side adds 0)
    and its sign with torch.sign semantics: +1 above 0, -1 below, 0 at 0 (a float sum within ``tolerance`` of 0
    counts as 0, as in the library; pass tolerance=0 for a sum that is exactly 0)."""
    codes = []
    for label in labels.tolist():
        positives, negatives = _mainstay_weights_loop(label, table_labels.tolist())
        code = []
        for k in range(table_codes.shape[1]):
            total = sum(w * table_codes[j, k].item() for j, w in positives)
            total -= sum(w * table_codes[j, k].item() for j, w in negatives)
            code.append(1.0 if total > tolerance else -1.0 if total < -tolerance else 0.0)
        codes.append(code)
    return codes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_published_mainstay_codes_are_the_sign_of_the_sum_with_torch_sign(seed):
    labels, table_codes, table_labels = random_table(seed, n=30, m=40, bits=10)
    table_codes[:, 0] = 1.0                                   # a bit every table code agrees on: a tie for many items
    published = mainstay_codes(labels, table_codes, table_labels, variant="published")
    assert published.tolist() == published_mainstay_loop(labels, table_codes, table_labels)
    assert (published == 0).any(), "the table has ties"
    paper = mainstay_codes(labels, table_codes, table_labels)
    decided = published != 0
    assert torch.equal(paper[decided], published[decided]) and (paper[~decided] == 1).all(), \
        "the variants differ only in a tied bit: +1 (paper), 0 (published)"


def test_an_exact_tie_is_zero_in_the_published_variant_and_plus_one_in_the_paper_one():
    """Query {0}. First table: two positives {0} with codes (+1, +1, +1) and (-1, -1, +1), weight 1/2 each, and two
    negatives {1} with codes (+1, -1, -1): the sums are -1, +1, 2 (no tie). Second table: only the two positives,
    codes (+1, -1, +1) and (-1, +1, +1): bits 0 and 1 sum to 1/2 - 1/2 = 0 exactly (in floats too), bit 2 to 1."""
    table_labels = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    table_codes = torch.tensor([[1.0, 1, 1], [-1, -1, 1], [1, -1, -1], [1, -1, -1]])
    query = torch.tensor([[1.0, 0]])
    assert published_mainstay_loop(query, table_codes, table_labels, tolerance=0) == [[-1.0, 1.0, 1.0]]
    assert mainstay_codes(query, table_codes, table_labels, variant="published").tolist() == [[-1.0, 1.0, 1.0]]
    tied_labels = torch.tensor([[1.0, 0], [1, 0]])
    tied_codes = torch.tensor([[1.0, -1, 1], [-1, 1, 1]])     # bits 0 and 1: 1/2 - 1/2 = 0 exactly; bit 2: 1
    assert published_mainstay_loop(query, tied_codes, tied_labels, tolerance=0) == [[0.0, 0.0, 1.0]]
    assert mainstay_codes(query, tied_codes, tied_labels, variant="published").tolist() == [[0.0, 0.0, 1.0]]
    assert mainstay_codes(query, tied_codes, tied_labels).tolist() == [[1.0, 1.0, 1.0]]
    assert mainstay_codes(query, tied_codes, tied_labels, variant="paper").tolist() == [[1.0, 1.0, 1.0]]


def test_published_ties_with_irrational_cosine_weights_are_zero():
    """The table of :func:`irrational_tie_table`: bits 0 and 1 tie (float64 misses 0 by ~1e-16), bit 2 not."""
    query, table_codes, table_labels = irrational_tie_table()
    expected = published_mainstay_loop(query, table_codes, table_labels)
    assert expected == [[0.0, 0.0, -1.0]]
    assert mainstay_codes(query, table_codes, table_labels, variant="published").tolist() == expected


def test_mainstay_code_bad_inputs_are_clear_errors():
    labels, table_codes, table_labels = random_table(0)
    with pytest.raises(ValueError, match=r"variant must be one of \('paper', 'published'\); got 'official'"):
        mainstay_codes(labels, table_codes, table_labels, variant="official")
    with pytest.raises(ValueError, match="labels have 5 classes but the code table's labels have 4"):
        mainstay_codes(labels, table_codes, table_labels[:, :4])
    with pytest.raises(ValueError, match="labels have 4 classes but the code table's labels have 5"):
        mainstay_code_objective(torch.tensor(every_code(8)), labels[:, :4], table_codes, table_labels)
    with pytest.raises(ValueError, match="the code table has 30 codes but 29 label rows"):
        mainstay_codes(labels, table_codes, table_labels[:29])
    with pytest.raises(ValueError, match="the code table is empty"):
        mainstay_codes(labels, table_codes[:0], table_labels[:0])
    with pytest.raises(ValueError, match="must be 2-D"):
        mainstay_codes(labels[0], table_codes, table_labels)
