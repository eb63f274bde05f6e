"""Hashing losses (advhash.losses) against their formulas written out independently, and their training
signal."""

import math

import pytest
import torch

from advhash.losses import DPHLoss, DPSHLoss, HashNetLoss, build_loss


def _batch(seed=0, n=6, bits=8, classes=3):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, bits, generator=g) * 2 - 1
    labels = (torch.rand(n, classes, generator=g) > 0.6).float()
    return u, labels, torch.arange(n)


def _similarity_loop(labels):
    """S_ij = 1[y_i . y_j > 0] one pair at a time (the library's is ``advhash.metrics.relevance``)."""
    n = len(labels)
    return [[1.0 if float(labels[i] @ labels[j]) > 0 else 0.0 for j in range(n)] for i in range(n)]


def test_dph_matches_formula():
    u, labels, idx = _batch()
    bits = u.shape[1]
    value = DPHLoss(num_train=len(u), bits=bits, num_classes=3)(u, labels, idx)
    s = _similarity_loop(labels)
    total = sum((float(u[i] @ u[j]) / bits - (2 * s[i][j] - 1)) ** 2 for i in range(len(u)) for j in range(len(u)))
    assert value.item() == pytest.approx(total / len(u) ** 2, rel=1e-6)


def test_dpsh_matches_formula():
    u, labels, idx = _batch(1)
    value = DPSHLoss(num_train=len(u), bits=u.shape[1], num_classes=3, quantization_weight=0.5)(u, labels, idx)
    s = _similarity_loop(labels)
    n = len(u)
    nll = sum(math.log1p(math.exp(float(u[i] @ u[j]) / 2)) - s[i][j] * float(u[i] @ u[j]) / 2
              for i in range(n) for j in range(n)) / n ** 2
    quant = float(((u - torch.sign(u)) ** 2).mean())
    assert value.item() == pytest.approx(nll + 0.5 * quant, rel=1e-6)


def test_hashnet_matches_class_balanced_formula():
    u, labels, idx = _batch(2)
    n = len(u)
    value = HashNetLoss(num_train=n, bits=u.shape[1], num_classes=3, similarity_scale=0.3)(u, labels, idx)
    s = _similarity_loop(labels)
    n_pos = sum(map(sum, s))
    n_neg = n * n - n_pos
    total = 0.0
    for i in range(n):
        for j in range(n):
            theta = 0.3 * float(u[i] @ u[j])
            weight = n * n / n_pos if s[i][j] else n * n / n_neg
            total += weight * (math.log1p(math.exp(theta)) - s[i][j] * theta)
    assert value.item() == pytest.approx(total / (n * n), rel=1e-6)


class _PublishedHashNetScale:
    """The published continuation, written out as a stateful loop (TADH model/backbone.py L145-155, SAAT
    model/hash_model/hashnet.py L58-67, thuml/HashNet pytorch/src/network.py L32-41): every training forward
    call first increments the call count, then, when the count is a multiple of 200, sets the scale to
    (1 + 0.005 count)^0.5; the call runs at the current scale. One forward call per optimizer step."""

    def __init__(self, step_size=200, gamma=0.005, power=0.5):
        self.iter_num, self.scale = 0, 1.0
        self.step_size, self.gamma, self.power = step_size, gamma, power

    def forward_call(self):
        self.iter_num += 1
        if self.iter_num % self.step_size == 0:
            self.scale = 1.0 * math.pow(1.0 + self.gamma * self.iter_num, self.power)
        return self.scale


def _published_scales(steps, **kwargs):
    schedule = _PublishedHashNetScale(**kwargs)
    return [schedule.forward_call() for _ in range(steps)]


def test_hashnet_published_schedule_is_the_published_count_of_forward_calls():
    loss = HashNetLoss(num_train=4, bits=8, num_classes=2)
    expected = _published_scales(451)
    assert [loss.scale(step) for step in range(451)] == expected   # exactly, float for float
    assert loss.scale(0) == 1.0 and loss.scale(198) == 1.0
    assert loss.scale(199) == loss.scale(200) == loss.scale(398) == pytest.approx(math.sqrt(2.0))
    assert loss.scale(399) == loss.scale(400) == loss.scale(450) == pytest.approx(math.sqrt(3.0))
    long_run = _published_scales(12000)
    assert all(loss.scale(step) == long_run[step] for step in range(0, 12000, 7)), "float-exact over a long run"
    assert [loss.scale(step) for step in range(11990, 12000)] == long_run[11990:]


def test_hashnet_schedule_follows_its_step_size_and_refuses_a_removed_form():
    loss = HashNetLoss(num_train=4, bits=8, num_classes=2, step_size=3, gamma=0.5, power=1.0)
    assert [loss.scale(step) for step in range(10)] == _published_scales(10, step_size=3, gamma=0.5, power=1.0)
    assert [loss.scale(step) for step in range(10)] == [1.0, 1.0, 2.5, 2.5, 2.5, 4.0, 4.0, 4.0, 5.5, 5.5]
    assert build_loss("hashnet", num_train=1, bits=4, num_classes=2).scale(199) == pytest.approx(math.sqrt(2.0))
    with pytest.raises(TypeError, match="schedule"):      # the published count is the only one (docs/methods.md)
        HashNetLoss(num_train=4, bits=8, num_classes=2, schedule="advhash")


def test_the_tanh_scale_is_one_without_a_schedule():
    assert DPSHLoss(num_train=4, bits=8, num_classes=2).scale(5000) == 1.0
    assert DPHLoss(num_train=4, bits=8, num_classes=2).scale(0) == 1.0


@pytest.mark.parametrize("name", ["dph", "dpsh", "hashnet"])
def test_gradient_pulls_similar_codes_together(name):
    """One gradient step on u must raise the inner product of a similar pair and lower a dissimilar one."""
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    u = torch.tensor([[0.1, -0.2, 0.3, 0.0], [-0.1, 0.2, 0.1, 0.2], [0.2, 0.1, 0.3, -0.1]], requires_grad=True)
    loss = build_loss(name, num_train=3, bits=4, num_classes=2)
    loss(u, labels, torch.arange(3)).backward()
    stepped = (u - 0.5 * u.grad).detach()
    assert stepped[0] @ stepped[1] > u[0].detach() @ u[1].detach()
    assert stepped[0] @ stepped[2] < u[0].detach() @ u[2].detach()


def test_table_rows_not_seen_are_left_out():
    loss = DPHLoss(num_train=100, bits=4, num_classes=2)
    u, labels, _ = _batch(3, n=5, bits=4, classes=2)
    lone = loss(u, labels, torch.arange(5))
    reference = DPHLoss(num_train=5, bits=4, num_classes=2)(u, labels, torch.arange(5))
    assert lone.item() == pytest.approx(reference.item())


def test_label_width_mismatch_is_a_clear_error():
    loss = DPSHLoss(num_train=4, bits=4, num_classes=3)
    with pytest.raises(ValueError, match="num_classes=3"):
        loss(torch.zeros(2, 4), torch.zeros(2, 5), torch.arange(2))


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="choose one of"):
        build_loss("dsh", num_train=1, bits=4, num_classes=2)


@pytest.mark.parametrize("name", ["dph", "dpsh", "hashnet"])
def test_batch_pairs_equal_table_pairs_in_value_but_train_both_sides(name):
    u, labels, idx = _batch(4)
    table = build_loss(name, num_train=len(u), bits=u.shape[1], num_classes=3, pairs="table")
    batch = build_loss(name, num_train=len(u), bits=u.shape[1], num_classes=3, pairs="batch")
    u_table, u_batch = u.clone().requires_grad_(), u.clone().requires_grad_()
    value_table, value_batch = table(u_table, labels, idx), batch(u_batch, labels, idx)
    assert value_table.item() == pytest.approx(value_batch.item(), rel=1e-6)
    value_table.backward()
    value_batch.backward()
    # the table is detached: the batch form gets the symmetric gradient, about twice the pair part
    assert not torch.allclose(u_table.grad, u_batch.grad)


def test_default_pairs_follow_the_papers():
    assert build_loss("dpsh", num_train=1, bits=4, num_classes=2).pairs == "table"
    assert build_loss("dph", num_train=1, bits=4, num_classes=2).pairs == "table"
    assert build_loss("hashnet", num_train=1, bits=4, num_classes=2).pairs == "batch"
    with pytest.raises(ValueError, match=r"pairs must be one of \('table', 'batch'\); got 'all'"):
        build_loss("dph", num_train=1, bits=4, num_classes=2, pairs="all")
