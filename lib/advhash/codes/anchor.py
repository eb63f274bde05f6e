"""Anchor codes of the targeted attacks P2P and DHTA: Bai, Chen, Li, Wu, Guo, Xia, Yang, "Targeted Attack
for Deep Hashing based Retrieval", ECCV 2020 (arXiv 2004.07955), section 3.2.

A targeted attack moves the query's code toward the *anchor code* of a target label t, the component-wise
majority vote of the codes of n_t database items carrying exactly that label (n_t = 9 for DHTA, 1 for P2P):

    a = sign( sum_{j=1..n_t} b_j ),   y_j = t.

Target labels (``sample_target_labels``) are drawn per query among the database's distinct label rows that share
no class with it, under one of two rules (``rule=``, ``TARGET_RULES``; the paper states none):
``"published"`` (Default: TADH ``dhta.py`` L195-216, carried by **more than** n_t items, the all-zero row
allowed) or ``"nonzero"`` (carried by **at least** n_t items, never the all-zero row, whose t-MAP is 0 whatever
the attack does). Success is t-MAP (``advhash.metrics.targeted_map``); ``docs/methods.md``, section Anchor codes.
"""

from __future__ import annotations

import torch

from ..models import binarize
from ..utils import check_choice

TARGET_RULES = ("published", "nonzero")   # sample_target_labels(rule=...): TADH's rule, or at least n_t and not zero


def _label_groups(db_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unique label rows (u, L), each item's group index (n_db,), and group sizes (u,)."""
    unique, group, counts = torch.unique(db_labels.float(), dim=0, return_inverse=True, return_counts=True)
    return unique, group, counts


def sample_target_labels(query_labels: torch.Tensor, db_labels: torch.Tensor, *, min_items: int = 9,
                         generator: torch.Generator | None = None, rule: str = "published") -> torch.Tensor:
    """One target label per query, drawn uniformly (seeded by ``generator``) from the database's distinct
    label rows that (a) share no class with the query (so a success is never a side effect of the query's
    own label; as in TADH's and SAAT's DHTA code) and (b) pass ``rule`` with ``min_items`` = n_t:

    - ``"published"`` (default): carried by **more than** ``min_items`` database items, an all-zero row
      allowed, exactly as TADH ``dhta.py`` L195-216 (module docstring).
    - ``"nonzero"``: carried by **at least** ``min_items`` items and not all-zero (an all-zero target has
      no relevant item: its t-MAP is 0 whatever the attack does).

    Shapes: (n_q, L), (n_db, L) -> (n_q, L)."""
    check_choice("rule", rule, TARGET_RULES, hint=" ('published' = TADH's dhta.py, more than min_items items, "
                 "all-zero rows allowed; 'nonzero' = at least min_items, no all-zero row)")
    if query_labels.shape[1] != db_labels.shape[1]:
        raise ValueError(f"query labels have {query_labels.shape[1]} classes, database labels {db_labels.shape[1]}")
    unique, _, counts = _label_groups(db_labels)
    if rule == "published":
        candidate = counts > min_items                                   # all-zero rows stay candidates
    else:
        candidate = (counts >= min_items) & (unique.sum(1) > 0)
    allowed = (query_labels.float() @ unique.T == 0) & candidate          # (n_q, u)
    if not allowed.any(1).all():
        bad = int((~allowed.any(1)).nonzero()[0])
        carried = f"> {min_items}" if rule == "published" else f">= {min_items}"
        raise ValueError(f"query {bad} has no possible target label: no database label disjoint from it is carried "
                         f"by {carried} items (rule={rule!r}); lower min_items (the number of anchors) or use a "
                         f"larger database")
    scores = torch.rand(allowed.shape, generator=generator)
    choice = torch.where(allowed, scores, -1.0).argmax(1)
    return unique[choice].to(query_labels.dtype)


def anchor_codes(target_labels: torch.Tensor, db_codes: torch.Tensor, db_labels: torch.Tensor, *,
                 num_anchors: int = 9, generator: torch.Generator | None = None) -> torch.Tensor:
    """DHTA's anchor code of each target label (ECCV 2020, Eq. 5): the sign of the summed codes of
    ``num_anchors`` database items with exactly that label, drawn without replacement (DHTA-master).
    ``num_anchors=1`` gives P2P's target code. An odd count never ties; a tied bit of an even count is +1.

    Shapes: target_labels (n, L), db_codes (n_db, K) in {-1, +1}, db_labels (n_db, L) -> (n, K).
    """
    if not isinstance(num_anchors, int) or num_anchors < 1:
        raise ValueError(f"num_anchors (n_t) must be a positive integer (9 for DHTA, 1 for P2P); got {num_anchors!r}")
    if db_codes.shape[0] != db_labels.shape[0]:
        raise ValueError(f"{db_codes.shape[0]} database codes but {db_labels.shape[0]} database label rows")
    unique, group, counts = _label_groups(db_labels)
    matches = (target_labels.float().unsqueeze(1) == unique.unsqueeze(0)).all(2)      # (n, u)
    if not matches.any(1).all():
        raise ValueError("a target label is carried by no database item; draw targets with sample_target_labels")
    target_group = matches.float().argmax(1)
    short = counts[target_group] < num_anchors
    if short.any():
        raise ValueError(f"a target label has only {int(counts[target_group][short].min())} database items, fewer than "
                         f"num_anchors={num_anchors}; draw targets with sample_target_labels(min_items=num_anchors)")
    anchors = torch.empty(len(target_labels), db_codes.shape[1])
    for row, g in enumerate(target_group.tolist()):
        members = (group == g).nonzero().squeeze(1)
        chosen = members[torch.randperm(len(members), generator=generator)[:num_anchors]]
        anchors[row] = binarize(db_codes[chosen].float().sum(0))
    return anchors
