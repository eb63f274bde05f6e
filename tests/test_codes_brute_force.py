"""The brute-force helpers (advhash.codes.brute_force) that check every closed form on small K."""

import pytest
import torch
from helpers import every_code

from advhash.codes import all_codes, brute_force_minimum


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
