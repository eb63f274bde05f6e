"""Evaluation of cross-modal hashing under CMLA (notebook 03): the attacked query pairs and their clean codes,
CMLA's adversarial queries of both modalities recorded at several iteration counts, the mAP and distortion D of
every recorded iterate on the tasks it touches, CMLA's Table 1 and 2 layouts beside the published ones, and the tags
a text attack changed.

    queries = paired_query_set(data, num_attacked=100)          # the first query pairs
    codes = encode_queries(model, queries)                      # {"image": (n, K), "text": (n, K)}
    snapshots = cmla_snapshots(model, queries, codes, steps=500, marks=[100, 200])
    scores = cmla_scores(model, snapshots, queries, codes, encode_pairs(model, data.database),
                         data.database.labels, topk=5000)       # iterations, task, map, D

An attacked image is scored on image->text (the cross-modal task CMLA breaks) and image->image (the intra-modal one
it means to keep), the other queries' codes staying clean; an attacked text on text->image and text->text. The
snapshots of one model may be scored on another (the fixed protocol: DCMH+ on the queries made against DCMH).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import pandas as pd
import torch

from ..attacks import perturb
from ..evaluation import retrieval_curves
from ..results import nested_metrics, read_published
from ..train import encode
from ..utils import check_choice
from .cmla import CMLA, cmla_distortion
from .retrieval import TASKS, crossmodal_maps, encode_pairs

__all__ = ["ATTACKED_TASKS", "PairedQueries", "paired_query_set", "encode_queries", "encode_models", "cmla_snapshots",
           "SnapshotMaker",
           "encode_snapshots", "cmla_scores", "clean_scores", "clean_table", "published_clean_table", "protocol_scores",
           "attack_table", "published_attack_table", "crossmodal_curves", "task_metrics", "tag_names", "tag_changes"]

#: the tasks whose queries an attack on each modality perturbs: (cross-modal, intra-modal)
ATTACKED_TASKS = {"image": ("image->text", "image->image"), "text": ("text->image", "text->text")}
_OTHER = {"image": "text", "text": "image"}


@dataclass
class PairedQueries:
    """Attacked query pairs: images (n, C, H, W) in [0, 1], their tag vectors (n, T) float, labels (n, L)."""

    images: torch.Tensor
    texts: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def inputs(self, modality: str) -> torch.Tensor:
        """The images or the texts."""
        check_choice("modality", modality, _OTHER)
        return self.images if modality == "image" else self.texts


def paired_query_set(data, num_attacked: int) -> PairedQueries:
    """The first ``num_attacked`` pairs of ``data.query`` (all of them if fewer): images, texts, labels."""
    if isinstance(num_attacked, bool) or not isinstance(num_attacked, int) or num_attacked < 1:
        raise ValueError(f"num_attacked must be a positive integer; got {num_attacked!r}")
    if getattr(data.query, "texts", None) is None:
        raise ValueError(f"{getattr(data, 'name', 'the dataset')} has no text modality; CMLA needs image-text "
                         "pairs (fashion-mosaic, flickr25k-crossmodal)")
    attacked = torch.arange(min(num_attacked, len(data.query)))
    images, labels = data.query.batch(attacked)[:2]
    return PairedQueries(images, data.query.texts[attacked].float(), labels)


def encode_queries(model, queries: PairedQueries) -> dict[str, torch.Tensor]:
    """{"image": codes of the query images, "text": codes of their texts}, each (n, K), by the model's two
    networks (a ``CrossModalHashing`` or an ``SSAHModel``)."""
    return {modality: encode(model.modality(modality), queries.inputs(modality)) for modality in ("image", "text")}


def encode_models(models: Mapping[Any, Any], queries: PairedQueries, database
                  ) -> tuple[dict[Any, dict[str, torch.Tensor]], dict[Any, dict[str, torch.Tensor]]]:
    """The codes every evaluation of ``models`` ({key: model}) reads: each model's codes of the clean queries
    (:func:`encode_queries`) and of the ``database`` split (``encode_pairs``), both {key: {"image": (n, K),
    "text": (n, K)}}. Returns (query codes, database codes)."""
    return ({key: encode_queries(model, queries) for key, model in models.items()},
            {key: encode_pairs(model, database) for key, model in models.items()})


def cmla_snapshots(model, queries: PairedQueries, codes: Mapping[str, torch.Tensor], *, steps: int,
                   marks: Iterable[int] = (), settings: Mapping[str, Mapping[str, Any]] | None = None,
                   batch_size: int = 128) -> dict[str, dict[int, torch.Tensor]]:
    """CMLA on the query images (against the clean codes of their texts and of themselves) and, separately,
    on the query texts, ``steps`` iterations in batches of ``batch_size`` (S is formed within each batch).

    ``codes``: the model's clean codes of the queries (:func:`encode_queries`); ``settings``: {"image": ...,
    "text": ...} keyword arguments of the two ``CMLA`` attacks (lr, constraint, weights).
    Returns {modality: {t: adversarial inputs after t iterations}} for every t in ``marks`` and ``steps``
    (Adam from delta = 0 with no schedule: the iterate after t steps is what a t-step attack returns)."""
    settings = settings or {}
    recorded = sorted(set(marks) | {steps})
    snapshots = {}
    for modality, other in _OTHER.items():
        attack = CMLA(model.modality(modality), modality=modality, steps=steps, **settings.get(modality, {}))
        attack.set_pairs(codes[other], codes[modality])
        perturb(attack, queries.inputs(modality), queries.labels, batch_size=batch_size, snapshot_steps=recorded)
        snapshots[modality] = attack.snapshots
    return snapshots


class SnapshotMaker:
    """CMLA's adversarial queries of each model, made when asked for: ``maker(key)`` is :func:`cmla_snapshots` of
    ``models[key]`` with its clean ``codes[key]``. Given to :func:`protocol_scores` instead of a dict, the queries of
    one or two models are in memory at a time (each set is released after its last use: at the paper's scale a set
    is about 3.6 GB of float32 images); those of the keys in ``keep`` stay in ``kept`` for later figures."""

    def __init__(self, models, queries: PairedQueries, codes, *, steps: int, marks: Iterable[int] = (),
                 settings: Mapping[str, Mapping[str, Any]] | None = None, batch_size: int = 128, keep=()):
        self.models, self.queries, self.codes, self.keep = models, queries, codes, set(keep)
        self.attack = dict(steps=steps, marks=marks, settings=settings, batch_size=batch_size)
        self.kept: dict[Any, dict[str, dict[int, torch.Tensor]]] = {}

    def __call__(self, key) -> dict[str, dict[int, torch.Tensor]]:
        if key in self.kept:
            return self.kept[key]
        made = cmla_snapshots(self.models[key], self.queries, self.codes[key], **self.attack)
        if key in self.keep:
            self.kept[key] = made
        return made


def encode_snapshots(model, snapshots: Mapping[str, Mapping[int, torch.Tensor]], iterations: int
                     ) -> dict[str, torch.Tensor]:
    """{"image": codes, "text": codes} of the adversarial queries after ``iterations`` CMLA iterations
    (``snapshots`` as :func:`cmla_snapshots` returns them), each (n, K), by ``model``'s network of that modality."""
    return {modality: encode(model.modality(modality), recorded[iterations])
            for modality, recorded in snapshots.items()}


def cmla_scores(model, snapshots: Mapping[str, Mapping[int, torch.Tensor]], queries: PairedQueries,
                codes: Mapping[str, torch.Tensor], db_codes: Mapping[str, torch.Tensor], db_labels, *,
                topk: int | None) -> pd.DataFrame:
    """mAP@topk and distortion D of adversarial queries, one row per (iterations, task): for each recorded
    iteration count (sorted) and modality, the perturbed queries encoded by ``model`` (the others keep their
    clean ``codes``) and ranked against ``db_codes`` on the modality's two tasks (:data:`ATTACKED_TASKS`).
    ``snapshots`` as :func:`cmla_snapshots` returns them, made on ``model`` or on another one.
    Columns: iterations, task, map, D (D of the modality's adversarial inputs, the same for its two tasks)."""
    rows = []
    for iterations in sorted(snapshots["image"]):
        for modality, tasks in ATTACKED_TASKS.items():
            perturbed = snapshots[modality][iterations]
            attacked = dict(codes, **{modality: encode(model.modality(modality), perturbed)})
            maps = crossmodal_maps(attacked, db_codes, queries.labels, db_labels, topk=topk, tasks=tasks)
            distortion = cmla_distortion(queries.inputs(modality), perturbed)
            rows += [dict(iterations=iterations, task=task, map=value, D=distortion) for task, value in maps.items()]
    return pd.DataFrame(rows, columns=["iterations", "task", "map", "D"])


def clean_scores(codes: Mapping[Any, Mapping[str, torch.Tensor]], db_codes: Mapping[Any, Mapping[str, torch.Tensor]],
                 labels, db_labels, *, topk: int | None) -> pd.DataFrame:
    """mAP@topk of the clean queries on the four tasks, for every model. ``codes`` (the queries', from
    :func:`encode_queries`) and ``db_codes`` (the database's, ``encode_pairs``) are keyed by (model, bits).
    Columns: model, bits, task, map."""
    rows = [dict(model=name, bits=bits, task=task, map=value) for (name, bits), query_codes in codes.items()
            for task, value in crossmodal_maps(query_codes, db_codes[name, bits], labels, db_labels, topk=topk).items()]
    return pd.DataFrame(rows, columns=["model", "bits", "task", "map"])


def clean_table(clean: pd.DataFrame) -> pd.DataFrame:
    """Clean scores (:func:`clean_scores`) in the layout of CMLA's Table 1: one row per (task, model), tasks and
    models in their order in ``clean``, one column per code length."""
    table = clean.pivot_table(index=["task", "model"], columns="bits", values="map", sort=False)
    return table.reindex([(task, model) for task in clean.task.unique() for model in clean.model.unique()])


def published_clean_table(path, *, dataset: str) -> pd.DataFrame:
    """A published table shaped as CMLA's Table 1 CSV (``notebooks/published/cmla_table1.csv``: columns dataset,
    task, method, one column per code length) in the layout of :func:`clean_table`: the rows of ``dataset``
    indexed (task, model), one column per code length (an integer)."""
    table = read_published(path)
    return table[table.dataset == dataset].drop(columns="dataset").set_index(["task", "method"]).rename_axis(
        ["task", "model"])


def protocol_scores(models, snapshots, queries: PairedQueries, codes, db_codes, db_labels, *, topk: int | None,
                  clean: pd.DataFrame, made_on: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every model under CMLA (:func:`cmla_scores`): on its own adversarial queries (protocol "adaptive") and,
    for a model named in ``made_on`` (e.g. {"DCMH+": "DCMH"}), also on the queries made against that model at the
    same code length (protocol "fixed (made on DCMH)": the published protocol of DCMH+ and SSAH+).

    ``models``, ``snapshots`` (:func:`cmla_snapshots`), ``codes`` (:func:`encode_queries`) and ``db_codes`` are
    keyed by (model, bits); ``snapshots`` may instead be a function of the key (a :class:`SnapshotMaker`), called
    once per key and released after the key's last use. ``clean`` (:func:`clean_scores`) gives each task's clean
    mAP, for the drop. Columns: model, protocol, bits, iterations, task, map, drop (clean - attacked mAP), D."""
    if not models:
        raise ValueError("no models to score")
    made_on = made_on or {}
    clean_map = {(row.model, row.bits, row.task): row.map for row in clean.itertuples()}
    plan = [(name, bits, protocol, (source, bits)) for (name, bits) in models
            for protocol, source in {"adaptive": name, **({f"fixed (made on {made_on[name]})": made_on[name]}
                                                          if name in made_on else {})}.items()]
    last_use = {source: i for i, (*_, source) in enumerate(plan)}
    made, frames = {}, []
    for i, (name, bits, protocol, source) in enumerate(plan):
        if callable(snapshots):
            made[source] = made[source] if source in made else snapshots(source)
            adversarial = made.pop(source) if last_use[source] == i else made[source]
        else:
            adversarial = snapshots[source]
        scores = cmla_scores(models[name, bits], adversarial, queries, codes[name, bits], db_codes[name, bits],
                             db_labels, topk=topk)
        frames.append(scores.assign(model=name, protocol=protocol, bits=bits))
    table = pd.concat(frames, ignore_index=True)
    table["drop"] = [clean_map[row.model, row.bits, row.task] - row.map for row in table.itertuples()]
    return table[["model", "protocol", "bits", "iterations", "task", "map", "drop", "D"]]


def attack_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Scores under attack in the layout of CMLA's Table 2: one row per (task, iterations, quantity), quantity
    "D" or "map", one column per (model, protocol). ``scores``: columns model, protocol, task, iterations, map, D
    (:func:`cmla_scores` rows with the model and protocol assigned)."""
    long = scores.melt(id_vars=["model", "protocol", "task", "iterations"], value_vars=["map", "D"],
                       var_name="quantity")
    return long.pivot_table(index=["task", "iterations", "quantity"], columns=["model", "protocol"], values="value")


def published_attack_table(path, *, dataset: str, models: Iterable[str] | None = None) -> pd.DataFrame:
    """A published table shaped as CMLA's Table 2 CSV (``notebooks/published/cmla_table2.csv``: columns dataset,
    task, iterations, quantity "mAP" or "D", one column per model) in the layout of :func:`attack_table`: the
    rows of ``dataset``, quantity "map" or "D", one column (model, "as published") per model of ``models``
    (default: every model of the file, in its order)."""
    table = read_published(path)
    table = table[table.dataset == dataset]
    if models is None:
        models = [column for column in table.columns if column not in ("dataset", "task", "iterations", "quantity")]
    table = (table.assign(quantity=table.quantity.str.replace("mAP", "map"))
             .set_index(["task", "iterations", "quantity"])[list(models)])
    table.columns = pd.MultiIndex.from_tuples([(model, "as published") for model in table.columns])
    return table


def crossmodal_curves(codes: Mapping[str, Mapping[str, torch.Tensor]], db_codes: Mapping[str, torch.Tensor], labels,
                      db_labels, *, ns: Iterable[int], tasks: Iterable[str] = ("image->text", "text->image")
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Precision-recall (Hamming radius) and precision@N curves (``advhash.evaluation.retrieval_curves``) of
    several sets of query codes on cross-modal tasks. ``codes``: {kind (e.g. "clean", "CMLA"): {"image": (n, K),
    "text": (n, K)}}, ranked against one model's ``db_codes``.
    Returns (pr: columns task, queries, radius, precision, recall; pn: columns task, queries, n, precision)."""
    ns = list(ns)
    pr_rows, pn_rows = [], []
    for task in tasks:
        source, target = TASKS[task]
        for kind, query_codes in codes.items():
            pr, pn = retrieval_curves(query_codes[source], db_codes[target], labels, db_labels, ns=ns, task=task,
                                      queries=kind)
            pr_rows, pn_rows = pr_rows + pr, pn_rows + pn
    return (pd.DataFrame(pr_rows, columns=["task", "queries", "radius", "precision", "recall"]),
            pd.DataFrame(pn_rows, columns=["task", "queries", "n", "precision"]))


def task_metrics(scores: pd.DataFrame, column: str = "map", *, by_modality: bool = False
                 ) -> dict[str, dict[str, float]]:
    """A scores table (columns model, bits, task and ``column``) as the nested dict of a metrics file:
    {"<model> <task>": {"<bits>": value}}; with ``by_modality`` keyed "<model> <query modality>" instead, for a
    number shared by the two tasks of an attacked modality (the distortion D)."""
    source = scores.task.str.split("->").str[0] if by_modality else scores.task
    return nested_metrics(scores.assign(key=scores.model + " " + source), column, by="key")


def tag_names(text_dim: int) -> list[str]:
    """The names of the tag-vector entries: ``advhash.data.TAG_VOCABULARY`` when the size matches (the
    fashion-mosaic tags), else "tag 0", "tag 1", ..."""
    from ..data import TAG_VOCABULARY

    return list(TAG_VOCABULARY) if text_dim == len(TAG_VOCABULARY) else [f"tag {i}" for i in range(text_dim)]


def tag_changes(texts: torch.Tensor, adversarial_texts: torch.Tensor, names: list[str] | None = None, *,
                count: int = 5) -> pd.DataFrame:
    """What a text attack did to each tag vector (n, T): its tags (non-zero entries), the ``count`` entries
    it changed most with their signed change, and the sample's distortion D. Index: pair (row number).
    ``names``: the tag names (default :func:`tag_names`)."""
    if texts.shape != adversarial_texts.shape:
        raise ValueError(f"texts {tuple(texts.shape)} and adversarial texts {tuple(adversarial_texts.shape)} differ")
    names = tag_names(texts.shape[1]) if names is None else names
    rows = []
    for i in range(len(texts)):
        change = adversarial_texts[i] - texts[i]
        largest = change.abs().argsort(descending=True)[:count]
        rows.append(dict(pair=i, tags=", ".join(names[j] for j in texts[i].nonzero().flatten().tolist()),
                         changed=", ".join(f"{names[j]} {change[j]:+.2f}" for j in largest.tolist()),
                         D=cmla_distortion(texts[i:i + 1], adversarial_texts[i:i + 1])))
    return pd.DataFrame(rows, columns=["pair", "tags", "changed", "D"]).set_index("pair")
