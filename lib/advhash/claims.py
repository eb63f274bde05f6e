"""The papers' claims as data: ``notebooks/published/claims.yaml``, read and checked, for the notebooks to judge.

A claim is one comparison a paper makes that a notebook can compute ("SAAT training is more robust than ATRDH",
"HAG lowers mAP more than HAG*"): a metric, ours against a reference (two models, attacks, code lengths, retrieval
tasks, iteration marks or transfer perturbations), the direction the paper claims, the code lengths, whether
training randomness matters, and the published effect where the paper gives one. Each becomes a finding with an
interval and a verdict (``advhash.uncertainty``), never an assertion. The registry is listed in ``docs/methods.md``,
section "Claims registry"; its header comment describes every field.

    for claim in claims_for("04_saat"):
        bits = require_available(claim, dict(models=["undefended", "atrdh", "saat"], attacks=["HAG", "SDHA", "SAAT"],
                                              bits=bits_list, featured_bits=pr_bits))
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from .pipeline import project_root

__all__ = ["SECTIONS", "Claim", "Comparison", "Published", "Source", "RegistryError", "MissingResultError",
           "load_claims", "claims_for", "require_available"]

REGISTRY = Path("notebooks/published/claims.yaml")          # relative to the project root
SECTIONS = ("01_deep_hashing", "02_hag", "03_cmla", "04_saat", "05_cgat")
METRICS = ("map", "t_map", "robust_map", "map_drop")        # map_drop: clean minus attacked mAP
LEVELS = {"queries": ("queries",), "seeds+queries": ("seeds", "queries")}   # what the interval resamples
PROTOCOLS = ("transfer", "adaptive")
TASKS = ("image->text", "text->image", "image->image", "text->text")
# compare -> the kind of names ours and reference are, and the fixed vocabulary of that kind (None: the notebook's)
COMPARES = {"models": None, "attacks": None, "bits": None, "tasks": TASKS, "iterations": ("first", "last"),
            "perturbations": ("own", "transferred", "second seed", "other backbone", "ensemble", "single")}
FIELDS = {"": (("id", "section", "claim", "source", "comparison", "published"), ()),
          "source": (("paper", "venue", "where"), ()),
          "comparison": (("metric", "compare", "ours", "reference", "direction", "level"),
                         ("bits", "models", "attacks", "tasks", "protocol")),
          "published": (("note",), ("points", "relative_percent", "tables"))}
SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


class RegistryError(ValueError):
    """The claims registry is malformed; the message lists every problem with its file, line, claim and fix."""


class MissingResultError(LookupError):
    """A claim compares something the run did not produce; the message names the claim and every missing piece."""


@dataclass(frozen=True)
class Source:
    paper: str          # short name: "SAAT"
    venue: str          # venue and year: "IEEE TIFS 2023"
    where: str          # table, figure or section: "Table II"

    def __str__(self) -> str:
        return f"{self.paper} ({self.venue}), {self.where}"


@dataclass(frozen=True)
class Comparison:
    """What a notebook computes for a claim: ``metric`` of ``ours`` minus ``reference`` (names of the kind
    ``compare``), averaged over ``bits`` ("all", "featured" or code lengths; None when ``compare`` is "bits") and the
    ``models``, ``attacks`` and ``tasks`` listed; the paper claims the sign ``direction``."""

    metric: str
    compare: str
    ours: str | int
    reference: str | int
    direction: int
    level: str
    bits: str | tuple[int, ...] | None = None
    models: tuple[str, ...] = ()
    attacks: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    protocol: str | None = None

    @property
    def levels(self) -> tuple[str, ...]:
        """What the interval resamples, as ``advhash.uncertainty.Estimate.levels``: ("queries",) or ("seeds",
        "queries")."""
        return LEVELS[self.level]


@dataclass(frozen=True)
class Published:
    note: str                             # where the published effect comes from
    points: float | None = None           # mAP x100, ours minus reference
    relative_percent: float | None = None  # where the paper states one
    tables: tuple[str, ...] = ()          # the notebooks/published/*.csv it is computed from

    @property
    def effect(self) -> float | None:
        """The published effect in the scores' units (mAP as a fraction), as ``advhash.uncertainty`` takes it."""
        return None if self.points is None else self.points / 100


@dataclass(frozen=True)
class Claim:
    id: str
    section: str
    claim: str
    source: Source
    comparison: Comparison
    published: Published


def load_claims(path: str | Path | None = None, *, section: str | None = None) -> list[Claim]:
    """The claims of the registry at ``path`` (default: the project's ``notebooks/published/claims.yaml``), of
    ``section`` only when given, in file order. Raises :class:`RegistryError` listing every problem (unknown or
    missing fields, a direction not +1 / -1, a duplicate id, an unknown section, ...) with its line and fix."""
    if section is not None and section not in SECTIONS:
        raise RegistryError(f"unknown section {section!r}: use one of {', '.join(SECTIONS)}")
    if path is None:
        path = project_root() / REGISTRY
    path = Path(path)
    text = path.read_text()
    try:
        nodes, entries = yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RegistryError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(entries, list) or not isinstance(nodes, yaml.SequenceNode):
        raise RegistryError(f"{path}: expected a list of claims, each starting with '- id: ...'")
    problems, claims, first_line = [], [], {}
    for index, (entry, node) in enumerate(zip(entries, nodes.value)):
        lines, duplicates = _lines(node)
        name = entry.get("id") if isinstance(entry, dict) else None
        label = f"claim {name!r}" if isinstance(name, str) else f"claim number {index + 1}"

        def problem(key: str, message: str) -> None:
            problems.append(f"{path}:{lines.get(key, lines[''])}: {label}: {message}")

        for key in duplicates:
            problem(key, f"{key} is given twice: keep one")
        claim = _parse(entry, problem, path.parent)
        if claim is None:
            continue
        if claim.id in first_line:
            problem("id", f"duplicate id (first at line {first_line[claim.id]}): give each claim its own id")
        first_line.setdefault(claim.id, lines["id"])
        claims.append(claim)
    if problems:
        raise RegistryError(f"{len(problems)} problem(s) in the claims registry:\n" + "\n".join(problems))
    return [claim for claim in claims if section is None or claim.section == section]


def claims_for(section: str, path: str | Path | None = None) -> list[Claim]:
    """The claims a notebook judges: :func:`load_claims` of one ``section`` (a notebook stem, e.g. "04_saat")."""
    return load_claims(path, section=section)


def require_available(claim: Claim, available: Mapping[str, Collection]) -> tuple[int, ...]:
    """Check that a run produced everything ``claim`` compares, and return the code lengths it averages over.

    ``available`` lists what the run produced, by kind: "models", "attacks", "tasks", "protocols", "iterations",
    "perturbations" (names as the notebook names them), "bits" (its code lengths, ints) and "featured_bits" (its
    featured code length). A claim naming something the run lacks, or a kind the run does not list, raises
    :class:`MissingResultError` naming the claim and every missing piece: never a silent skip."""
    comparison = claim.comparison
    needs = {"models": set(comparison.models), "attacks": set(comparison.attacks), "tasks": set(comparison.tasks),
             "protocols": {comparison.protocol} - {None}, "bits": set()}
    needs.setdefault(comparison.compare, set()).update({comparison.ours, comparison.reference})
    if isinstance(comparison.bits, tuple):
        needs["bits"] |= set(comparison.bits)
    missing = []
    for kind, names in needs.items():
        if not names:
            continue
        if isinstance(available.get(kind), str):
            raise TypeError(f"available[{kind!r}] must be a collection of names, not the string {available[kind]!r}")
        if kind not in available:
            missing.append(f"{kind} {sorted(names)} (the run lists no {kind}: pass available[{kind!r}])")
        elif lacking := names - set(available[kind]):
            missing.append(f"{kind} {sorted(lacking)} (it has {sorted(available[kind])})")
    featured = available.get("featured_bits")
    if comparison.bits == "featured" and featured is None:
        missing.append("its featured code length (pass available['featured_bits'])")
    elif comparison.bits == "featured" and "bits" in available and featured not in available["bits"]:
        missing.append(f"the featured code length {featured} (its code lengths: {sorted(available['bits'])})")
    if comparison.bits == "all" and not available.get("bits"):
        missing.append("any code length (pass available['bits'])")
    if missing:
        raise MissingResultError(f"claim {claim.id!r} ({claim.section}) cannot be judged: this run did not produce "
                                 + "; ".join(missing) + ". Run the section with them, or correct the claim in "
                                 f"{REGISTRY}.")
    if comparison.compare == "bits":
        return tuple(sorted({comparison.ours, comparison.reference}))
    if comparison.bits == "all":
        return tuple(sorted(available["bits"]))
    if comparison.bits == "featured":
        return (featured,)
    return comparison.bits


def _lines(node: yaml.Node, prefix: str = "") -> tuple[dict[str, int], list[str]]:
    """{dotted key: line (1-based)} of a composed YAML entry ("" is the entry itself), and the keys given twice in
    one mapping (which yaml.safe_load would silently collapse into the last)."""
    lines, duplicates = {prefix: node.start_mark.line + 1}, []
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = _join(prefix, str(key_node.value))
            if key in lines:
                duplicates.append(key)
            inner, inner_duplicates = _lines(value_node, key)
            lines.update({k: v for k, v in inner.items() if k not in lines})
            duplicates += inner_duplicates
    return lines, duplicates


def _parse(entry, problem, folder: Path) -> Claim | None:
    """One registry entry as a :class:`Claim`, or None after reporting each of its problems to ``problem``."""
    found = []

    def bad(key: str, message: str) -> None:
        found.append(key)
        problem(key, message)

    if not isinstance(entry, dict):
        bad("", "an entry must be a mapping: id, section, claim, source, comparison, published")
        return None
    for where, (required, optional) in FIELDS.items():
        mapping = entry if where == "" else entry.get(where)
        if where and where not in entry:
            continue                          # reported as a missing field of the entry
        if not isinstance(mapping, dict):
            bad(where, f"{where} must be a mapping of {', '.join(required + optional)}")
            continue
        for key in mapping.keys() - set(required) - set(optional):
            bad(_join(where, key), f"unknown field {_join(where, key)!r}: remove it, or use one of "
                                   f"{', '.join(required + optional)}")
        for key in (key for key in required if key not in mapping):
            bad(where, f"missing field {_join(where, key)!r}: add it (required: {', '.join(required)})")
    if found:
        return None
    source, comparison, published = entry["source"], entry["comparison"], entry["published"]
    if not (isinstance(entry["id"], str) and SLUG.fullmatch(entry["id"])):
        bad("id", f"id {entry['id']!r} must be a lowercase slug such as 'saat-table2-over-atrdh'")
    if entry["section"] not in SECTIONS:
        bad("section", f"section {entry['section']!r} is not a notebook: use one of {', '.join(SECTIONS)}")
    for where, key, value in [("", "claim", entry["claim"]), *(("source", k, source[k]) for k in FIELDS["source"][0]),
                              ("published", "note", published["note"])]:
        if not (isinstance(value, str) and value.strip()):
            bad(_join(where, key), f"{_join(where, key)} must be a non-empty text")
    _check_comparison(comparison, lambda key, message: bad(_join("comparison", key), message))
    for key in ("points", "relative_percent"):
        if published.get(key) is not None and (isinstance(published[key], bool)
                                               or not isinstance(published[key], (int, float))):
            bad(f"published.{key}", f"published.{key} must be a number (or null where the paper gives none)")
    tables = published.get("tables", [])
    if not (isinstance(tables, list) and all(isinstance(name, str) for name in tables)):
        bad("published.tables", "published.tables must be a list of file names, e.g. [saat_table2.csv]")
    else:
        for name in tables:
            if not (folder / name).is_file():
                bad("published.tables", f"published table {name!r} is not in {folder}: name a file there")
    if found:
        return None
    bits = comparison.get("bits")
    return Claim(entry["id"], entry["section"], entry["claim"], Source(**source), Comparison(
        **{key: comparison[key] for key in FIELDS["comparison"][0]}, protocol=comparison.get("protocol"),
        bits=tuple(bits) if isinstance(bits, list) else bits,
        **{key: tuple(comparison.get(key, ())) for key in ("models", "attacks", "tasks")}),
        Published(**{**published, "tables": tuple(tables)}))


def _check_comparison(comparison: dict, bad) -> None:
    """Report every problem of a comparison mapping to ``bad(key, message)``."""
    compare, level, direction = comparison["compare"], comparison["level"], comparison["direction"]
    for key, allowed in (("metric", METRICS), ("compare", tuple(COMPARES)), ("level", tuple(LEVELS))):
        if comparison[key] not in allowed:
            bad(key, f"{key} {comparison[key]!r} is not one of {', '.join(allowed)}")
    if isinstance(direction, bool) or direction not in (1, -1):
        bad("direction", f"direction must be +1 (the paper claims ours above the reference) or -1 (below), "
                         f"got {direction!r}")
    vocabulary = COMPARES.get(compare) if isinstance(compare, str) else None
    for key in ("ours", "reference"):
        value = comparison[key]
        if compare == "bits":
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                bad(key, f"{key} must be a code length (a positive integer) when compare is bits, got {value!r}")
        elif not (isinstance(value, str) and value):
            bad(key, f"{key} must be a name, as the notebook names it, got {value!r}")
        elif vocabulary and value not in vocabulary:
            bad(key, f"{key} {value!r} is not one of the {compare}: {', '.join(vocabulary)}")
    if comparison["ours"] == comparison["reference"]:
        bad("reference", "ours and reference are the same: a claim compares two different things")
    bits = comparison.get("bits")
    if compare == "bits":
        if bits is not None:
            bad("bits", "bits is not used when compare is bits (ours and reference are the code lengths): remove it")
    elif bits is None:
        bad("bits", "missing field 'comparison.bits': add all, featured or a list of code lengths")
    elif bits not in ("all", "featured") and not (
            isinstance(bits, list) and bits and len(set(bits)) == len(bits)
            and all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in bits)):
        bad("bits", f"bits must be all, featured or a list of distinct code lengths such as [16, 32], got {bits!r}")
    if level == "seeds+queries" and bits != "featured":
        bad("bits", "a claim over training seeds is judged at the featured code length (where the seeds are run): "
                    "write bits: featured, or level: queries")
    for key in ("models", "attacks", "tasks"):
        if key not in comparison:
            continue
        values = comparison[key]
        if key == compare:
            bad(key, f"{key} lists what the effect is averaged over; with compare: {key}, ours and reference name "
                     f"the {key}: remove it")
        elif not (isinstance(values, list) and values and all(isinstance(v, str) and v for v in values)):
            bad(key, f"{key} must be a list of names, e.g. [{'image->text' if key == 'tasks' else 'HAG'}]")
        elif key == "tasks" and (unknown := [v for v in values if v not in TASKS]):
            bad(key, f"unknown tasks {unknown}: use {', '.join(TASKS)}")
    if comparison.get("protocol", "adaptive") not in PROTOCOLS:
        bad("protocol", f"protocol {comparison['protocol']!r} is not one of {', '.join(PROTOCOLS)}")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
