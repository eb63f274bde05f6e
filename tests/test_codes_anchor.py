"""Anchor codes (advhash.codes.anchor, DHTA Eq. 5) against the majority vote of the database items they are
drawn from, and target labels against their rules."""

import itertools

import pytest
import torch
from helpers import label_classes as _classes

from advhash.codes import anchor_codes, sample_target_labels


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
    targets = sample_target_labels(queries, db_labels, min_items=9, generator=torch.Generator().manual_seed(0),
                                   rule="nonzero")
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
    again = sample_target_labels(queries, db_labels, min_items=9, generator=torch.Generator().manual_seed(0),
                                 rule="nonzero")
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


# --- the target-label rules against loops written from the published code -----------------------------
def rule_database():
    """Labels over 4 classes with n_t = 9 in mind: A = {0} 12 items, B = {1} exactly 9, C = {2} 10, the
    all-zero row Z 11 (more than 9), E = {0, 1} 4, F = {2, 3} exactly 9; interleaved."""
    groups = {(1, 0, 0, 0): 12, (0, 1, 0, 0): 9, (0, 0, 1, 0): 10, (0, 0, 0, 0): 11, (1, 1, 0, 0): 4, (0, 0, 1, 1): 9}
    labels = torch.tensor([list(label) for label, n in groups.items() for _ in range(n)], dtype=torch.float)
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(5))]


def published_candidates(query, db_labels, n_t):
    """TADH dhta.py L195-216 as a loop: count each database label row by its string, keep the rows counted
    more than n_t times (an all-zero row too), then the ones whose dot product with the query is 0."""
    counts = {}
    for row in db_labels.tolist():
        key = "".join(str(int(v)) for v in row)
        counts[key] = counts.get(key, 0) + 1
    candidates = [key for key, count in counts.items() if count > n_t]
    return {tuple(float(c) for c in key) for key in candidates
            if sum(int(c) * int(q) for c, q in zip(key, query)) == 0}


def nonzero_candidates(query, db_labels, n_t):
    """The "nonzero" rule as a loop: rows carried by at least n_t items, not all-zero, sharing no class with the query."""
    rows = [tuple(row) for row in db_labels.tolist()]
    return {row for row in set(rows) if rows.count(row) >= n_t and any(row)
            and not any(a and b for a, b in zip(row, query))}


RULE_QUERIES = [[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [1, 0, 1, 0], [0, 1, 1, 0]]


@pytest.mark.parametrize("rule, reference", [("published", published_candidates), ("nonzero", nonzero_candidates)])
@pytest.mark.parametrize("n_t", [9, 4, 1])
def test_each_rule_draws_exactly_the_target_labels_of_its_reference(rule, reference, n_t):
    db_labels = rule_database()
    repeats = 60
    queries = torch.tensor(RULE_QUERIES * repeats)
    targets = sample_target_labels(queries, db_labels, min_items=n_t, rule=rule,
                                   generator=torch.Generator().manual_seed(0))
    drawn = {}
    for query, target in zip(queries.tolist(), targets.tolist()):
        drawn.setdefault(tuple(query), set()).add(tuple(target))
    for query in RULE_QUERIES:   # every drawn label is allowed, and every allowed one is drawn over 60 repeats
        assert drawn[tuple(query)] == reference(query, db_labels, n_t), f"query {query}, rule {rule}, n_t {n_t}"


def test_the_rules_differ_on_a_label_of_exactly_n_t_items_and_on_the_all_zero_row():
    db_labels = rule_database()
    b, c, zero, f = (0.0, 1, 0, 0), (0.0, 0, 1, 0), (0.0, 0, 0, 0), (0.0, 0, 1, 1)
    assert published_candidates([1, 0, 0, 0], db_labels, 9) == {c, zero}          # B, F: exactly 9, not more
    assert nonzero_candidates([1, 0, 0, 0], db_labels, 9) == {b, c, f}             # Z: all-zero, never
    assert published_candidates([1, 0, 1, 0], db_labels, 9) == {zero}
    assert nonzero_candidates([1, 0, 1, 0], db_labels, 9) == {b}
    query = torch.tensor([[1.0, 0, 1, 0]] * 5)
    published = sample_target_labels(query, db_labels, min_items=9)                   # the default rule
    assert published.tolist() == [list(zero)] * 5
    assert sample_target_labels(query, db_labels, min_items=9, rule="nonzero").tolist() == [list(b)] * 5
    eight = sample_target_labels(query.repeat(8, 1), db_labels, min_items=8, generator=torch.Generator().manual_seed(0))
    assert {tuple(row) for row in eight.tolist()} == {b, zero}                       # 9 > 8: B joins Z
    assert sample_target_labels(query, db_labels, min_items=10).tolist() == [list(zero)] * 5   # Z: 11 > 10
    with pytest.raises(ValueError, match=r"query 0 has no possible target label.*> 11 items \(rule='published'\)"):
        sample_target_labels(query, db_labels, min_items=11)                       # Z: 11 items, not more than 11
    with pytest.raises(ValueError, match=r"query 0 has no possible target label.*>= 10 items \(rule='nonzero'\)"):
        sample_target_labels(query, db_labels, min_items=10, rule="nonzero")
    with pytest.raises(ValueError, match=r"rule must be one of \('published', 'nonzero'\)"):
        sample_target_labels(query, db_labels, rule="paper")


@pytest.mark.parametrize("rule", ["published", "nonzero"])
def test_target_draws_are_uniform_and_deterministic_for_a_seed(rule):
    db_labels = rule_database()
    queries = torch.tensor([[0.0, 0, 0, 1]] * 3000)     # published: A, C, Z; nonzero: A, B, C (n_t = 9)

    def draw(seed):
        return sample_target_labels(queries, db_labels, min_items=9, rule=rule,
                                    generator=torch.Generator().manual_seed(seed))

    targets = draw(3)
    assert torch.equal(targets, draw(3)) and not torch.equal(targets, draw(4))
    allowed = (published_candidates if rule == "published" else nonzero_candidates)([0, 0, 0, 1], db_labels, 9)
    assert len(allowed) == 3
    for label in allowed:   # np.random.choice's uniform draw: each of 3 candidates about 1/3 of 3000 (sd ~ 26)
        share = (targets == torch.tensor(label)).all(1).float().mean().item()
        assert abs(share - 1 / 3) < 0.04, f"{label}: {share:.3f}"


def test_the_rules_draw_the_same_targets_where_they_allow_the_same_labels():
    """Where no label has exactly n_t items and no row is all-zero, the default rule changes nothing: same draws."""
    db_labels = rule_database()
    kept = (db_labels.sum(1) > 0) & ~(db_labels == torch.tensor([0.0, 1, 0, 0])).all(1) \
        & ~(db_labels == torch.tensor([0.0, 0, 1, 1])).all(1)
    queries = torch.tensor(RULE_QUERIES[:4] * 10)
    draws = [sample_target_labels(queries, db_labels[kept], min_items=9, rule=rule,
                                  generator=torch.Generator().manual_seed(1)) for rule in ("published", "nonzero")]
    assert torch.equal(*draws)
