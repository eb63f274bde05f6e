"""Evaluation of cross-modal hashing under CMLA (notebook 03): the attacked query pairs and their clean codes,
CMLA's adversarial queries of both modalities recorded at several iteration counts, the mAP and distortion D of
every recorded iterate on the tasks it touches, CMLA's Table 1 and 2 layouts beside the published ones, the tags
a text attack changed, and the per-query evidence of the notebook's findings with the sentences they imply about
the "+" models.

    queries = paired_query_set(data, num_attacked=100)          # the first query pairs
    codes = encode_queries(model, queries)                      # {"image": (n, K), "text": (n, K)}
    snapshots = cmla_snapshots(model, queries, codes, steps=500, marks=[100, 200])
    scores = cmla_scores(model, snapshots, queries, codes, encode_pairs(model, data.database),
                         data.database.labels, topk=5000)       # iterations, task, map, D, ap
    clean, attacks = cmla_evaluation(models, queries, data.database, topk=5000, steps=500,
                                     made_on={"DCMH+": "DCMH"})  # both protocols, {(model, bits): model}
    record_evidence(evidence, clean, attacks, iterations=500, made_on={"DCMH+": "DCMH"})   # for the findings

An attacked image is scored on image->text (the cross-modal task CMLA breaks) and image->image (the intra-modal one
it means to keep), the other queries' codes staying clean; an attacked text on text->image and text->text. The
snapshots of one model may be scored on another (the transfer protocol: DCMH+ on the queries made against DCMH).
Every score is a mAP@k with, beside it, the AP@k of each query (column ``ap``), which the findings resample
(``advhash.evidence``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import pandas as pd
import torch

from ..attacks import perturb
from ..evaluation import attacked_indices, retrieval_curves
from ..metrics import average_precision_per_query
from ..results import nested_metrics, read_published
from ..train import encode
from ..utils import check_choice
from .cmla import CMLA, cmla_distortion
from .retrieval import TASKS, encode_pairs

__all__ = ["ATTACKED_TASKS", "PROTOCOLS", "PairedQueries", "paired_query_set", "encode_queries", "encode_models",
           "cmla_snapshots", "SnapshotMaker", "encode_snapshots", "task_ap", "cmla_scores", "clean_scores",
           "clean_table", "published_clean_table", "protocol_scores", "cmla_evaluation", "record_evidence",
           "plus_models_summary",
           "attack_table", "published_attack_table", "crossmodal_curves", "task_metrics", "tag_names", "tag_changes"]

#: the tasks whose queries an attack on each modality perturbs: (cross-modal, intra-modal)
ATTACKED_TASKS = {"image": ("image->text", "image->image"), "text": ("text->image", "text->text")}
#: how a model is attacked: with its own adversarial queries, or with those made against another model (the "+"
#: models on the queries of their clean models: the published protocol)
PROTOCOLS = ("adaptive", "transfer")
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
    """The first ``num_attacked`` pairs of ``data.query``: images, texts, labels. More than the split holds is a
    ValueError naming both counts and the fix (``advhash.evaluation.attacked_indices``)."""
    attacked = attacked_indices(data, num_attacked)
    if getattr(data.query, "texts", None) is None:
        raise ValueError(f"{getattr(data, 'name', 'the dataset')} has no text modality; CMLA needs image-text "
                         "pairs (fashion-mosaic, flickr25k-crossmodal)")
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


def task_ap(query_codes: Mapping[str, torch.Tensor], db_codes: Mapping[str, torch.Tensor], query_labels, db_labels,
            *, topk: int | None, tasks: Iterable[str] = tuple(TASKS)) -> dict[str, torch.Tensor]:
    """AP@topk of every query on each task of ``tasks`` (``advhash.metrics.average_precision_per_query``): {task:
    (n,) float64}, queries of the task's first modality ranked against the database codes of its second. The mean
    of each is the task's mAP of ``crossmodal_maps``. ``query_codes`` / ``db_codes``: {"image": (n, K), "text":
    (n, K)}."""
    tasks = list(tasks)
    if unknown := sorted(set(tasks) - set(TASKS)):
        raise ValueError(f"unknown tasks {unknown}; choose from {list(TASKS)}")
    return {task: average_precision_per_query(query_codes[TASKS[task][0]], db_codes[TASKS[task][1]], query_labels,
                                              db_labels, topk=topk) for task in tasks}


def _score_row(ap: torch.Tensor, **columns) -> dict:
    """One scores row: the ``columns``, the mAP (the mean of ``ap``, as ``mean_average_precision`` takes it) and the
    per-query AP as an (n,) float64 array."""
    return dict(columns, map=ap.mean().item(), ap=ap.numpy())


def cmla_scores(model, snapshots: Mapping[str, Mapping[int, torch.Tensor]], queries: PairedQueries,
                codes: Mapping[str, torch.Tensor], db_codes: Mapping[str, torch.Tensor], db_labels, *,
                topk: int | None) -> pd.DataFrame:
    """mAP@topk and distortion D of adversarial queries, one row per (iterations, task): for each recorded
    iteration count (sorted) and modality, the perturbed queries encoded by ``model`` (the others keep their
    clean ``codes``) and ranked against ``db_codes`` on the modality's two tasks (:data:`ATTACKED_TASKS`).
    ``snapshots`` as :func:`cmla_snapshots` returns them, made on ``model`` or on another one.
    Columns: iterations, task, map, D (D of the modality's adversarial inputs, the same for its two tasks), ap (the
    (n,) AP@topk of each query, :func:`task_ap`, whose mean is map)."""
    rows = []
    for iterations in sorted(snapshots["image"]):
        for modality, tasks in ATTACKED_TASKS.items():
            perturbed = snapshots[modality][iterations]
            attacked = dict(codes, **{modality: encode(model.modality(modality), perturbed)})
            aps = task_ap(attacked, db_codes, queries.labels, db_labels, topk=topk, tasks=tasks)
            distortion = cmla_distortion(queries.inputs(modality), perturbed)
            rows += [_score_row(ap, iterations=iterations, task=task, D=distortion) for task, ap in aps.items()]
    return pd.DataFrame(rows, columns=["iterations", "task", "map", "D", "ap"])


def clean_scores(codes: Mapping[Any, Mapping[str, torch.Tensor]], db_codes: Mapping[Any, Mapping[str, torch.Tensor]],
                 labels, db_labels, *, topk: int | None) -> pd.DataFrame:
    """mAP@topk of the clean queries on the four tasks, for every model. ``codes`` (the queries', from
    :func:`encode_queries`) and ``db_codes`` (the database's, ``encode_pairs``) are keyed by (model, bits).
    Columns: model, bits, task, map, ap (the (n,) AP@topk of each query, whose mean is map)."""
    rows = [_score_row(ap, model=name, bits=bits, task=task) for (name, bits), query_codes in codes.items()
            for task, ap in task_ap(query_codes, db_codes[name, bits], labels, db_labels, topk=topk).items()]
    return pd.DataFrame(rows, columns=["model", "bits", "task", "map", "ap"])


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
    same code length (protocol "transfer": the published protocol of DCMH+ and SSAH+).

    ``models``, ``snapshots`` (:func:`cmla_snapshots`), ``codes`` (:func:`encode_queries`) and ``db_codes`` are
    keyed by (model, bits); ``snapshots`` may instead be a function of the key (a :class:`SnapshotMaker`), called
    once per key and released after the key's last use. ``clean`` (:func:`clean_scores`) gives each task's clean
    mAP, for the drop. Columns: model, protocol, bits, iterations, task, map, drop (clean - attacked mAP), D, ap
    (the (n,) AP@topk of each attacked query)."""
    if not models:
        raise ValueError("no models to score")
    made_on = made_on or {}
    clean_map = {(row.model, row.bits, row.task): row.map for row in clean.itertuples()}
    plan = [(name, bits, protocol, (source, bits)) for (name, bits) in models
            for protocol, source in {"adaptive": name,
                                     **({"transfer": made_on[name]} if name in made_on else {})}.items()]
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
    return table[["model", "protocol", "bits", "iterations", "task", "map", "drop", "D", "ap"]]


def cmla_evaluation(models, queries: PairedQueries, database, *, topk: int | None, steps: int,
                    marks: Iterable[int] = (), settings: Mapping[str, Mapping[str, Any]] | None = None,
                    batch_size: int = 128, made_on: Mapping[str, str] | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Notebook 03's evaluation of ``models`` ({(model, bits): model}) in one call: the codes (:func:`encode_models`),
    the clean scores (:func:`clean_scores`) and the scores under CMLA of both protocols (:func:`protocol_scores`,
    the adversarial queries made one model at a time by a :class:`SnapshotMaker`: ``steps``, ``marks``,
    ``settings``, ``batch_size``). The models of another training seed go through it. Returns (clean, attacks)."""
    codes, db_codes = encode_models(models, queries, database)
    clean = clean_scores(codes, db_codes, queries.labels, database.labels, topk=topk)
    maker = SnapshotMaker(models, queries, codes, steps=steps, marks=marks, settings=settings, batch_size=batch_size)
    attacks = protocol_scores(models, maker, queries, codes, db_codes, database.labels, topk=topk, clean=clean,
                              made_on=made_on)
    return clean, attacks


def record_evidence(evidence, clean: pd.DataFrame, attacks: pd.DataFrame, *, iterations: int,
                    made_on: Mapping[str, str], seed: int = 0, dataset: str | None = None) -> None:
    """Record the per-query scores notebook 03's findings read in ``evidence`` (``advhash.evidence.Evidence``),
    labelled as the claims registry names them (``notebooks/published/claims.yaml``, section 03_cmla), with training
    seed ``seed`` and ``dataset``:

    - every row of ``clean`` (:func:`clean_scores`): metric "map", attack "clean", under both protocols (the clean
      queries are the reference of either);
    - every row of ``attacks`` (:func:`protocol_scores`) after ``iterations`` CMLA iterations (the claims compare the
      full attack; the other marks are not recorded): metric "map" (the AP of each query) and "map_drop" (the
      model's clean AP minus it, per query), attack "CMLA", under its protocol. A model the transfer queries are made
      on (a value of ``made_on``, e.g. DCMH) is recorded under "transfer" too: the queries made against it are its
      own, so that DCMH+ and DCMH compare on the same queries under either protocol."""
    final = attacks[attacks.iterations == iterations]
    if final.empty:
        raise ValueError(f"no scores after {iterations} CMLA iterations: record an iteration count the attacks "
                         f"recorded ({sorted(attacks.iterations.unique())})")
    labels = dict(seed=seed, dataset=dataset)
    clean_ap = {}
    for row in clean.itertuples():
        clean_ap[row.model, row.bits, row.task] = row.ap
        for protocol in PROTOCOLS:
            evidence.add(row.ap, metric="map", model=row.model, attack="clean", bits=row.bits, task=row.task,
                         protocol=protocol, **labels)
    bases = set(made_on.values())
    for row in final.itertuples():
        protocols = [row.protocol] + (["transfer"] if row.model in bases and row.protocol == "adaptive" else [])
        for protocol in protocols:
            scored = dict(model=row.model, attack="CMLA", bits=row.bits, task=row.task, protocol=protocol, **labels)
            evidence.add(row.ap, metric="map", **scored)
            evidence.add(clean_ap[row.model, row.bits, row.task] - row.ap, metric="map_drop", **scored)


def plus_models_summary(findings: Iterable, *, decimals: int = 2) -> str:
    """What the findings say about the "+" models under both protocols, in a few sentences generated from them (no
    verdict written in advance): each robustness finding (``advhash.findings.Finding`` of a claim comparing models
    under CMLA with a protocol: "DCMH+ against DCMH") with its estimate and interval in mAP points at ``decimals``
    (the findings table's, ``advhash.findings.POINT_DECIMALS``) and its verdict, by protocol; then which gains the
    transfer protocol reproduces and the adaptive re-attack does not, which both reproduce, which the adaptive one
    only, or that neither reproduces any."""
    robustness = [found for found in findings if found.claim.comparison.compare == "models"
                  and found.claim.comparison.protocol in PROTOCOLS]
    if not robustness:
        raise ValueError("no finding compares models under a protocol: pass the findings of 03_cmla "
                         "(Findings.ordered())")
    verdicts, parts = {}, []
    for protocol, where in (("transfer", "the queries made against the clean model"),
                            ("adaptive", "each model re-attacked with its own queries")):
        items = []
        for found in (found for found in robustness if found.claim.comparison.protocol == protocol):
            comparison, estimate = found.claim.comparison, found.estimate
            key = (comparison.ours, comparison.reference, ", ".join(comparison.tasks or ()))
            verdicts[key + (protocol,)] = found.verdict
            low, mid, high = (_points(value, decimals) for value in (estimate.low, estimate.estimate, estimate.high))
            items.append(f"{key[0]} minus {key[1]} on {key[2]} {mid} [{low}, {high}] pts, {found.verdict}")
        parts.append(f"Under the {protocol} protocol ({where}): " + "; ".join(items) + ".")
    pairs = sorted({key[:3] for key in verdicts if key[:3] + ("adaptive",) in verdicts
                    and key[:3] + ("transfer",) in verdicts})
    reproduced = {protocol: {pair for pair in pairs if verdicts[pair + (protocol,)] == "REPRODUCED"}
                  for protocol in PROTOCOLS}
    kept = [pair for pair in pairs if pair in reproduced["transfer"] and pair in reproduced["adaptive"]]
    lost = [pair for pair in pairs if pair in reproduced["transfer"] and pair not in reproduced["adaptive"]]
    gained = [pair for pair in pairs if pair in reproduced["adaptive"] and pair not in reproduced["transfer"]]
    name = lambda pairs: ", ".join(f"{ours} on {tasks}" for ours, _, tasks in pairs)
    if lost:
        parts.append(f"The gain the transfer protocol shows is not reproduced under the adaptive re-attack for "
                     + ", ".join(f"{ours} on {tasks} ({verdicts[(ours, reference, tasks, 'adaptive')]} there)"
                                 for ours, reference, tasks in lost)
                     + ": queries made against the clean model are not the attack the \"+\" model faces.")
    if kept:
        parts.append(f"The gain holds under both protocols for {name(kept)}.")
    if gained:
        parts.append(f"The gain is reproduced under the adaptive re-attack only for {name(gained)}.")
    if not lost and not kept and not gained:
        parts.append("Neither protocol reproduces a robustness gain of a \"+\" model here.")
    return " ".join(parts)


def _points(value: float, decimals: int) -> str:
    """A fraction of mAP as signed points ("+1.23" at 2 decimals; + 0.0: no "-0.00")."""
    return f"{round(100 * value, decimals) + 0.0:+.{decimals}f}"


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
