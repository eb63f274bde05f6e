"""advhash.metrics.relevance, the one definition of "relevant" (the label vectors share a label), against
plain loops: an all-zero label row is relevant to nothing, inputs of any dtype agree, bad inputs are clear
errors."""

import numpy as np
import pytest
import torch
from helpers import retrieval_problem as _problem

from advhash.metrics import relevance


def test_relevance_is_shared_label():
    _, _, query_labels, db_labels = _problem(n_query=9, n_db=40)
    expected = np.array([[bool(np.any(q * d)) for d in db_labels] for q in query_labels])
    np.testing.assert_array_equal(relevance(query_labels, db_labels).numpy(), expected)
    assert not relevance(query_labels, db_labels)[:3].any()  # all-zero label rows match nothing


def test_relevance_matches_a_loop_over_label_rows_and_is_symmetric():
    g = torch.Generator().manual_seed(0)
    labels_a = (torch.rand(7, 5, generator=g) < 0.4).float()
    labels_b = (torch.rand(9, 5, generator=g) < 0.4).float()
    expected = [[any(x and y for x, y in zip(a, b)) for b in labels_b.tolist()] for a in labels_a.tolist()]
    S = relevance(labels_a, labels_b)
    assert S.dtype == torch.bool and S.shape == (7, 9)
    assert S.tolist() == expected
    assert torch.equal(relevance(labels_b, labels_a), S.T)


def test_an_all_zero_label_row_is_relevant_to_nothing_not_even_itself():
    labels = torch.tensor([[0.0, 0, 0], [1, 0, 1], [0, 0, 1]])
    S = relevance(labels, labels)
    assert not S[0].any() and not S[:, 0].any()
    assert S[1:, 1:].all()


def test_bool_integer_float64_and_numpy_labels_give_the_same_relevance():
    g = torch.Generator().manual_seed(1)
    labels_a, labels_b = torch.rand(6, 4, generator=g) < 0.4, torch.rand(8, 4, generator=g) < 0.4
    expected = relevance(labels_a.float(), labels_b.float())
    for a, b in [(labels_a, labels_b), (labels_a.long(), labels_b.to(torch.uint8)), (labels_a.double(), labels_b),
                 (labels_a.numpy(), labels_b.float()), (labels_a.numpy().astype(np.float32), labels_b.numpy())]:
        assert torch.equal(relevance(a, b), expected)
    assert relevance(torch.zeros(0, 4), labels_b).shape == (0, 8)


def test_relevance_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match=r"labels_a must be a 2-D \(n, L\) multi-hot label matrix, got shape \(3,\)"):
        relevance(torch.ones(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"labels_b must be a 2-D .* got shape \(2, 3, 1\)"):
        relevance(torch.ones(2, 3), np.ones((2, 3, 1)))
    with pytest.raises(ValueError, match="labels_a have L=3 label columns but labels_b have L=4"):
        relevance(torch.ones(2, 3), torch.ones(2, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_relevance_stays_on_the_device_and_refuses_mixed_devices():
    labels = torch.tensor([[1.0, 0], [0, 1]])
    on_device = relevance(labels.cuda(), labels.numpy())          # numpy labels join the tensor's device
    assert on_device.device.type == "cuda" and torch.equal(on_device.cpu(), relevance(labels, labels))
    with pytest.raises(ValueError, match="different devices"):
        relevance(labels.cuda(), labels)
