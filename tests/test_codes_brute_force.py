"""The brute-force helpers (advhash.codes.brute_force) that check every closed form on small K, and the check
itself (closed_form_gap) on the center and mainstay codes."""

from functools import partial

import pytest
import torch
from helpers import every_code, random_table

from advhash.codes import (all_codes, brute_force_minimum, center_code_objective, center_codes, closed_form_gap,
                           mainstay_code_objective, mainstay_codes)


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


@pytest.mark.parametrize("variant", ["paper", "published"])
def test_closed_form_gap_is_zero_for_center_codes_and_positive_for_a_wrong_closed_form(variant):
    bits = 6
    labels, table_codes, table_labels = random_table(2, bits=bits + 2)        # the check reads the first bits
    closed_form, objective = partial(center_codes, variant=variant), partial(center_code_objective, variant=variant)
    gap = closed_form_gap(closed_form, objective, labels, table_codes, table_labels, bits=bits)
    centers = center_codes(labels, table_codes[:, :bits], table_labels, variant=variant)
    zero_rows = int((centers == 0).any(1).sum())
    assert gap["max_gap"] == pytest.approx(0.0, abs=1e-6)
    assert gap["bits"] == bits and gap["candidates"] == 2**bits
    assert gap["zero_codes"] == zero_rows and gap["queries"] == len(labels) - zero_rows
    assert (zero_rows > 0) == (variant == "published"), "the published code is zero without positives"
    wrong = closed_form_gap(lambda *table: -closed_form(*table), objective, labels, table_codes, table_labels,
                            bits=bits)
    assert wrong["max_gap"] > 0.5


def test_closed_form_gap_is_zero_for_mainstay_codes():
    bits = 7
    labels, table_codes, table_labels = random_table(5, bits=bits, rate=0.35)
    gap = closed_form_gap(mainstay_codes, mainstay_code_objective, labels, table_codes, table_labels, bits=bits)
    assert gap["max_gap"] == pytest.approx(0.0, abs=1e-6) and gap["queries"] == len(labels) and gap["zero_codes"] == 0

    def one_bit_off(*table):                              # no longer the minimum where it is not a tie
        codes = mainstay_codes(*table).clone()
        codes[:, 0] *= -1
        return codes
    assert closed_form_gap(one_bit_off, mainstay_code_objective, labels, table_codes, table_labels, bits=bits)[
        "max_gap"] > 0
