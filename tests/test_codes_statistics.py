"""Statistics of binary codes (advhash.codes.statistics): bit balance and correlation, and the Hamming distances
of representative codes to the positives and negatives of a database, against plain loops."""

from types import SimpleNamespace

import pytest
import torch

from advhash.codes import all_codes, center_codes
from advhash.codes.statistics import bit_correlation, bit_statistics, code_distances, distance_margins

pytestmark = pytest.mark.usefixtures("one_thread")


def test_code_distances_and_margins_match_a_plain_loop(trained, victim):
    queries = trained[3]
    queries = SimpleNamespace(images=queries.images[:6], labels=queries.labels[:6])
    codes = {"own": victim.encode(queries.images),
             "center": center_codes(queries.labels, victim.train_codes, victim.train_labels)}
    frame = code_distances(codes, victim.db_codes, queries.labels, victim.db_labels)
    assert list(frame.columns) == ["code", "relation", "distance"]
    expected = {}
    for kind, kind_codes in codes.items():
        for q, (code, label) in enumerate(zip(kind_codes.tolist(), queries.labels.tolist())):
            for db_code, db_label in zip(victim.db_codes.tolist(), victim.db_labels.tolist()):
                relation = "positives" if any(a and b for a, b in zip(label, db_label)) else "negatives"
                distance = sum(a != b for a, b in zip(code, db_code))
                expected.setdefault((kind, relation), []).append(distance)
    for (kind, relation), distances in expected.items():
        got = frame[(frame.code == kind) & (frame.relation == relation)].distance.tolist()
        assert got == distances, (kind, relation)
    assert len(frame) == 2 * len(queries.labels) * len(victim.db_codes)
    margins = distance_margins(frame)
    for kind in codes:
        positives = sum(expected[(kind, "positives")]) / len(expected[(kind, "positives")])
        negatives = sum(expected[(kind, "negatives")]) / len(expected[(kind, "negatives")])
        assert margins.loc[kind, "positives"] == pytest.approx(positives)
        assert margins.loc[kind, "negatives"] == pytest.approx(negatives)
        assert margins.loc[kind, "margin (neg - pos)"] == pytest.approx(negatives - positives)
        assert negatives - positives > 4, "the codes of a trained model sit near their positives"


def test_code_distances_are_float32_and_refuse_a_code_that_is_not_plus_or_minus_one_or_a_tie():
    db_codes, db_labels = all_codes(3), torch.eye(2)[torch.arange(8) % 2]
    frame = code_distances({"own": all_codes(3)[:2]}, db_codes, torch.eye(2), db_labels)
    assert frame.distance.dtype == "float32" and len(frame) == 16
    assert frame[frame.relation == "positives"].distance.tolist() == [0, 1, 1, 2, 0, 1, 1, 2]
    with pytest.raises(ValueError, match="must hold only -1 and \\+1"):
        code_distances({"half bit": torch.full((1, 3), 0.5)}, db_codes, torch.eye(2)[:1], db_labels)


def test_a_tied_bit_counts_half_the_mean_over_its_two_resolutions():
    """A published center or mainstay code has 0 bits (torch.sign of a tie): its distance to a database code is the
    mean of the Hamming distances of the codes the tie could resolve to, written as a loop over resolutions."""
    db_codes, db_labels = all_codes(4), torch.eye(2)[torch.arange(16) % 2]
    ternary = torch.tensor([[0.0, 1, 0, -1], [1, -1, 1, 0], [0, 0, 0, 0]])
    frame = code_distances({"published": ternary}, db_codes, torch.eye(2)[[0, 1, 0]], db_labels)
    expected = torch.zeros(3, 16)
    for row, code in enumerate(ternary):
        ties = (code == 0).nonzero().flatten().tolist()
        resolutions = all_codes(len(ties)) if ties else torch.zeros(1, 0)
        for resolution in resolutions:
            resolved = code.clone()
            resolved[ties] = resolution
            expected[row] += (resolved[None, :] != db_codes).sum(1) / len(resolutions)
    relevant = torch.eye(2)[[0, 1, 0]] @ db_labels.T > 0
    assert frame[frame.relation == "positives"].distance.tolist() == expected[relevant].tolist()
    assert frame[frame.relation == "negatives"].distance.tolist() == expected[~relevant].tolist()
    assert expected[2].eq(2).all(), "the all-zero code sits at K/2 from every code"


def test_bit_correlation_of_equal_opposite_and_constant_bits():
    a = all_codes(3)[:, :1]
    correlation = bit_correlation(torch.cat([a, -a, torch.ones(8, 1)], dim=1))
    assert torch.allclose(correlation, torch.tensor([[1.0, -1, 0], [-1, 1, 0], [0, 0, 0]]), atol=1e-6)


def test_bit_statistics_of_constant_balanced_and_correlated_codes():
    constant = bit_statistics(torch.ones(10, 4))
    assert constant == dict(balance=1.0, mean_abs_bit_correlation=0.0)
    balanced = bit_statistics(all_codes(3))                           # every bit +1 on half, pairwise independent
    assert balanced["balance"] == 0.0 and balanced["mean_abs_bit_correlation"] == pytest.approx(0.0, abs=1e-6)
    a = all_codes(3)[:, :1]
    correlated = bit_statistics(torch.cat([a, a, -a], dim=1))
    assert correlated["balance"] == 0.0 and correlated["mean_abs_bit_correlation"] == pytest.approx(1.0)
    half = bit_statistics(torch.cat([torch.ones(8, 1), all_codes(3)[:, :1]], dim=1))
    assert half == pytest.approx(dict(balance=0.5, mean_abs_bit_correlation=0.0))
