"""SAAT's Table I and II (Yuan, Zhang, Wang, Wu, IEEE TIFS 2023, arXiv 2310.14637) from our runs, and the
published tables of ``notebooks/published/`` in the layout of ours, for ``advhash.report.beside_published``.

    runs = {"mAP": {}, "t-MAP": {}}                       # kept: Table II reuses the undefended models' runs
    codes = attack_codes(undefended, queries, {"mAP": nontargeted, "t-MAP": targeted}, topk=k, runs=runs)
    beside_published(attack_table(undefended, codes, queries, topk=k),
                     published_table(path, index=["metric", "method"], where=dict(dataset="FLICKR-25K")),
                     ours_label="ours", published_label="PUBLISHED, FLICKR-25K (SAAT Table I)")

Table I (:func:`attack_table`): mAP@k of the non-targeted attacks' queries and t-MAP@k of the targeted ones on the
undefended models, with the *Original* row (clean queries) and the *theory* row (the mainstay code itself as the
adversarial code). Table II (:func:`defense_table`): mAP@k per defense and attack. Both x100, one column per code
length, as the paper prints them.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
import torch

from .codes import closed_form_gap, mainstay_codes
from .evaluation import QuerySet, attack_scores, build_attacks, curve_rows, retrieval_map
from .metrics import precision_recall_curve
from .results import nested_metrics, read_published
from .victim import Victim

__all__ = ["attack_codes", "attack_table", "defense_table", "table_metrics", "defense_metrics", "attack_pr_curves",
           "anchor_ceiling", "robustness_table", "closed_form_table", "published_table", "published_points"]

#: a note that a row label of a published CSV carries, e.g. "HAG (published, FLICKR-25K)"; the label says it instead
_PUBLISHED_NOTE = re.compile(r"\s*\(published[^)]*\)$")


def attack_codes(victims: Mapping[Any, Victim], queries: QuerySet, settings: Mapping[str, Mapping[str, Any]], *,
                 topk: int | None, runs: dict, batch_size: int = 128) -> dict[tuple[str, str, int], torch.Tensor]:
    """The query codes of every row of SAAT's Table I, keyed (metric, method, bits): "Original" (the clean
    queries), each attack of ``settings`` ({"mAP": non-targeted settings, "t-MAP": targeted settings}, as
    ``advhash.evaluation.attack_scores`` takes them; the t-MAP ones are run toward ``queries.target_labels``) and
    "theory": the query's negated mainstay code (mAP) and the target label's mainstay code (t-MAP), Theorem 1 of
    SAAT on each victim's training codes, binary (a tied bit +1, ``variant="paper"``: a retrieval code must be
    binary, while the published SAAT attack steers by ``torch.sign``'s codes, whose tied bits are 0). ``victims``: the undefended models keyed (model, bits). ``runs``
    ({metric: {}}) receives the attack runs, {(model, bits, method): AttackResult} per metric."""
    codes = {(metric, "Original", bits): victim.encode(queries.images)
             for (_, bits), victim in victims.items() for metric in settings}
    for metric, attacks in settings.items():
        attack_scores(victims, queries, attacks, topk=topk, targeted=attacks if metric == "t-MAP" else (),
                      batch_size=batch_size, runs=runs[metric])
        codes.update({(metric, name, bits): result.codes for (model, bits, name), result in runs[metric].items()
                      if (model, bits) in victims})
    for (_, bits), victim in victims.items():
        codes["mAP", "theory", bits] = -mainstay_codes(queries.labels, victim.train_codes, victim.train_labels)
        codes["t-MAP", "theory", bits] = mainstay_codes(queries.target_labels, victim.train_codes,
                                                        victim.train_labels)
    return codes


def attack_table(victims: Mapping[Any, Victim], codes: Mapping[tuple[str, str, int], torch.Tensor],
                 queries: QuerySet, *, topk: int | None) -> pd.DataFrame:
    """SAAT's Table I from :func:`attack_codes`: x100 mAP@topk of the "mAP" rows against the query labels and
    t-MAP@topk of the "t-MAP" rows against the target labels, each ranked on the victim of its code length
    (``victims`` keyed (model, bits)). Index (metric, method): the metrics and, within each, the methods in their
    order in ``codes`` ("Original" first, "theory" last); one column per code length."""
    by_bits = {bits: victim for (_, bits), victim in victims.items()}
    table = pd.DataFrame([dict(metric=metric, method=name, bits=bits, value=100 * retrieval_map(
        by_bits[bits], query_codes, queries.labels if metric == "mAP" else queries.target_labels, topk=topk,
        targeted=metric == "t-MAP")) for (metric, name, bits), query_codes in codes.items()])
    metrics = list(dict.fromkeys(metric for metric, _, _ in codes))
    rows = sorted(dict.fromkeys((metric, name) for metric, name, _ in codes), key=lambda row: metrics.index(row[0]))
    return table.pivot_table(index=["metric", "method"], columns="bits", values="value", sort=False).reindex(rows)


def defense_table(results: pd.DataFrame) -> pd.DataFrame:
    """SAAT's Table II: ``results`` (columns defense, bits and one mAP column per attack, "Original" for the clean
    queries) x100, index (defense, attack), one column per code length."""
    return (results.melt(id_vars=["defense", "bits"], var_name="attack", value_name="value")
            .assign(value=lambda t: 100 * t["value"])
            .pivot_table(index=["defense", "attack"], columns="bits", values="value", sort=False))


def table_metrics(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """A x100 table of :func:`attack_table` as the nested dict of a metrics file, back in fractions:
    {"<metric> <method>": {"<bits>": value}}."""
    return {f"{metric} {name}": {str(bits): float(v) / 100 for bits, v in row.items()}
            for (metric, name), row in table.iterrows()}


def defense_metrics(results: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """``results`` of :func:`defense_table` as the nested dict of a metrics file, per defense:
    {defense: {attack: {"<bits>": mAP}}} (``advhash.results.nested_metrics``), attacks in their column order."""
    attacks = [column for column in results.columns if column not in ("defense", "bits")]
    return {name: {column: nested_metrics(group, column, by="defense")[name] for column in attacks}
            for name, group in results.groupby("defense")}


def attack_pr_curves(codes: Mapping[tuple[str, str, int], torch.Tensor], victim: Victim, queries: QuerySet, *,
                     bits: int) -> pd.DataFrame:
    """Hamming-radius precision-recall curves (``advhash.metrics.precision_recall_curve``) of the Table I codes
    (:func:`attack_codes`) of code length ``bits`` against ``victim``'s database: the "mAP" rows by relevance to
    the query labels (panel "non-targeted (query labels)"), the "t-MAP" rows to the target labels (panel
    "targeted (target labels)"). Columns: method, panel, radius, precision, recall."""
    db_codes, db_labels = victim.require("db", "attack_pr_curves")
    return pd.DataFrame([row for (metric, name, code_bits), query_codes in codes.items() if code_bits == bits
                         for row in curve_rows(precision_recall_curve(
                             query_codes, db_codes, queries.labels if metric == "mAP" else queries.target_labels,
                             db_labels), method=name,
                             panel="non-targeted (query labels)" if metric == "mAP" else "targeted (target labels)")])


def anchor_ceiling(victims: Mapping[Any, Victim], queries: QuerySet, settings: Mapping[str, Mapping[str, Any]], *,
                   topk: int | None, label: str = "DHTA") -> list[float]:
    """t-MAP@topk of the anchor codes of the targeted attack ``settings[label]`` (DHTA, P2P) used as the queries'
    codes, on each victim (in the order of ``victims``): what an attack that reached its anchor exactly would get,
    the ceiling of its t-MAP. Each attack is built on the victim it scores (``evaluation.build_attacks``)."""
    return [retrieval_map(victim, build_attacks(victim, settings, [label])[label].anchors(
        queries.target_labels, victim.db_codes, victim.db_labels), queries.target_labels, topk=topk, targeted=True)
        for victim in victims.values()]


def robustness_table(results: pd.DataFrame, map_attacks: Iterable[str], tmap_attacks: Iterable[str]) -> pd.DataFrame:
    """CgAT's robustness table from ``evaluation.attack_scores`` results (with a "t-MAP anchor" column, see
    :func:`anchor_ceiling`): index (model, bits), a block "mAP (higher: more robust)" of the clean queries and the
    non-targeted attacks, and a block "t-MAP (lower: more robust)" of the clean queries, the targeted attacks and the
    anchor ceiling."""
    by_model = results.set_index(["model", "bits"])
    return pd.concat({"mAP (higher: more robust)": by_model[["clean", *map_attacks]],
                      "t-MAP (lower: more robust)": by_model[["t-MAP clean", *tmap_attacks, "t-MAP anchor"]]}, axis=1)


def closed_form_table(closed_form, objective, labels: torch.Tensor, table_codes: torch.Tensor,
                      table_labels: torch.Tensor, *, bits: int, variants: Iterable[str] | None = None) -> pd.DataFrame:
    """The brute-force check of Theorem 1 (``advhash.codes.closed_form_gap``) as a table: one row, or with
    ``variants`` one row per variant (index "variant"), ``variant=`` then passed to ``closed_form`` and
    ``objective`` alike (the center codes' "paper" and "published")."""
    if variants is None:
        return pd.DataFrame([closed_form_gap(closed_form, objective, labels, table_codes, table_labels, bits=bits)])
    return pd.DataFrame([dict(variant=v, **closed_form_gap(
        partial(closed_form, variant=v), partial(objective, variant=v), labels, table_codes, table_labels, bits=bits))
        for v in variants]).set_index("variant")


def published_table(path: str | Path, *, index: str | list[str] | None = None, where: Mapping[str, Any] | None = None,
                    lower: Iterable[str] = ()) -> pd.DataFrame:
    """A published table of ``notebooks/published/`` (``advhash.results.read_published``) in the layout of ours:
    the rows whose columns equal ``where`` ({column: value}; those columns dropped), indexed by ``index`` (default:
    the first column), the ``lower`` index columns lower-cased (our model names). A trailing "(published, ...)"
    note is dropped from the column names and the row labels: the published label of ``beside_published`` says it."""
    table = read_published(path)
    table.columns = [_PUBLISHED_NOTE.sub("", c) if isinstance(c, str) else c for c in table.columns]
    for column, value in (where or {}).items():
        table = table[table[column] == value].drop(columns=column)
    table = table.assign(**{column: table[column].str.lower() for column in lower})
    table = table.set_index(table.columns[0] if index is None else index)
    if isinstance(table.index, pd.MultiIndex):
        return table
    return table.rename(index=lambda label: _PUBLISHED_NOTE.sub("", label) if isinstance(label, str) else label)


def published_points(published: pd.DataFrame, *, bits: int, dataset: str) -> pd.DataFrame:
    """The published clean and robust mAP of each defense of SAAT's Table II (``published``: x100, index
    (defense, attack), one column per code length) at ``bits``: clean from the "Original" row, robust the worst of
    its single attacks, both as fractions. Columns: model, clean, robust, label (for ``figures.clean_vs_robust``)."""
    points = published.reset_index().assign(value=lambda t: t[bits] / 100)
    return pd.DataFrame([dict(model=name, clean=rows.value[rows.attack == "Original"].iloc[0],
                              robust=rows.value[rows.attack != "Original"].min(),
                              label=f"{name.upper()} ({dataset}, worst single attack)")
                         for name, rows in points.groupby("defense", sort=False)])
