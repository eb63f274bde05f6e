"""The shared core of the representative codes (advhash.codes.representative): the label similarities
against set arithmetic and loops, and the weights of sum_P w+ b - sum_N w- b against their definition."""

import math

import pytest
import torch
from helpers import jaccard_loop as _jaccard_loop
from helpers import random_table

from advhash.codes import label_cosine, label_jaccard
from advhash.codes.representative import check_table, representative_weights


def test_label_jaccard_matches_set_arithmetic():
    g = torch.Generator().manual_seed(0)
    a, b = (torch.rand(7, 5, generator=g) < 0.4).float(), (torch.rand(9, 5, generator=g) < 0.4).float()
    a[0], b[0] = 0, 0  # both empty: 0
    expected = [[_jaccard_loop(x, y) for y in b.tolist()] for x in a.tolist()]
    assert torch.allclose(label_jaccard(a, b), torch.tensor(expected), atol=1e-7)


def test_label_cosine_matches_a_loop():
    g = torch.Generator().manual_seed(1)
    a, b = (torch.rand(6, 5, generator=g) < 0.4).float(), (torch.rand(8, 5, generator=g) < 0.4).float()
    a[0], b[0] = 0, 0  # an empty row: 0
    expected = [[sum(p * q for p, q in zip(x, y)) / math.sqrt(sum(x) * sum(y)) if sum(x) and sum(y) else 0.0
                 for y in b.tolist()] for x in a.tolist()]
    assert torch.allclose(label_cosine(a, b), torch.tensor(expected), atol=1e-7)


@pytest.mark.parametrize("similarity", ["indicator", "jaccard", "cosine"])
def test_positives_share_a_label_and_each_side_weighs_one(similarity):
    labels, _, table_labels = random_table(2)
    positive, negative, has_positive, has_negative = representative_weights(labels, table_labels, similarity)
    shares = [[any(x and y for x, y in zip(row, other)) for other in table_labels.tolist()] for row in labels.tolist()]
    assert ((positive > 0).tolist() == shares) and ((negative > 0).tolist() == [[not s for s in row] for row in shares])
    assert has_positive.tolist() == [any(row) for row in shares]
    assert has_negative.tolist() == [not all(row) for row in shares]
    assert torch.allclose(positive.sum(1)[has_positive], torch.ones(int(has_positive.sum())))
    assert torch.allclose(negative.sum(1)[has_negative], torch.ones(int(has_negative.sum())))
    for row, side in zip(negative, shares):                                       # w- = 1 / |N|
        count = sum(not s for s in side)
        assert torch.allclose(row[row > 0], torch.full((count,), 1 / max(count, 1)))


def test_check_table_names_what_is_wrong():
    labels, table_codes, table_labels = random_table(0)
    with pytest.raises(ValueError, match="must be 2-D"):
        check_table(labels[0], table_codes, table_labels)
    with pytest.raises(ValueError, match="labels have 5 classes but the code table's labels have 4"):
        check_table(labels, table_codes, table_labels[:, :4])
    with pytest.raises(ValueError, match="the code table has 30 codes but 29 label rows"):
        check_table(labels, table_codes, table_labels[:29])
    with pytest.raises(ValueError, match="the code table is empty"):
        check_table(labels, table_codes[:0], table_labels[:0])
