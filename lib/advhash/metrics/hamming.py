"""Hamming distance, relevance and the stable Hamming ranking that every retrieval metric uses.

Conventions (``docs/methods.md``, sections Conventions and mAP and tie rules):

* codes are {-1, +1} matrices (n, K); d(b_q, b_db) = 0.5 * (K - b_q . b_db), an integer in 0..K, from one float
  matmul (exact: sums of +-1 stay far below 2^24);
* labels are multi-hot {0, 1} matrices (n, L); relevance S = 1[y_q . y_db > 0]; an all-zero row is relevant to
  nothing;
* ranking is by increasing distance, **stable**: equal distances keep database order (lower index first), not
  the published code's ``np.argsort``, whose tie order depends on the numpy version and CPU.

Inputs may be torch tensors (CPU or CUDA, one device) or numpy arrays (moved to the tensors' device). Work is
chunked over queries (``chunk_size`` queries a chunk; None: about 2M query-database pairs on CPU, 32M on GPU), so
a 5,000 x 200,000 evaluation never holds the full distance matrix.
"""

from __future__ import annotations

import numbers
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, NamedTuple

import numpy as np
import torch

from .relevance import relevance

PAIRS_PER_CHUNK = {"cpu": 2**21, "cuda": 2**25}  # query-database pairs per chunk when chunk_size=None
LABEL_WORD_BITS = 63  # labels packed 63 to an int64 word (no sign bit) for relevance of ranked items
MAX_LABEL_WORDS = 2  # wider label vocabularies (> 126 labels) compute relevance with a matmul instead


class RetrievalInputs(NamedTuple):
    """Validated inputs as float32 tensors on one device (labels are None for code-only functions)."""

    query_codes: torch.Tensor  # (n_q, K)
    db_codes: torch.Tensor  # (n_db, K)
    query_labels: torch.Tensor | None  # (n_q, L)
    db_labels: torch.Tensor | None  # (n_db, L)

    @property
    def bits(self) -> int:
        return self.query_codes.shape[1]


def _common_device(named: dict) -> torch.device:
    devices = {name: x.device for name, x in named.items() if isinstance(x, torch.Tensor)}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"inputs are on different devices ({listing}); move them to one device with .to(device)")
    return next(iter(devices.values()), torch.device("cpu"))


def _as_float_matrix(x, name: str, device: torch.device, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.from_numpy(np.asarray(x))
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D {what} matrix, got shape {tuple(x.shape)}; "
                         f"use x[None] for a single row")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has no rows (shape {tuple(x.shape)}); pass at least one item")
    return x.to(device=device, dtype=torch.float32)


def check_codes(codes, name: str, device: torch.device) -> torch.Tensor:
    """Return ``codes`` as float32 on ``device`` after checking it is a (n, K) matrix of -1/+1."""
    codes = _as_float_matrix(codes, name, device, "(n, K) -1/+1 code")
    bad = codes.abs() != 1
    if bool(bad.any()):
        raise ValueError(f"{name} must hold only -1 and +1, found {codes[bad][0].item():g}; binarize with "
                         f"sign() and map 0 to +1, e.g. torch.where(h >= 0, 1.0, -1.0) "
                         f"(for {{0, 1}} bits use 2 * bits - 1)")
    return codes


def check_labels(labels, name: str, device: torch.device) -> torch.Tensor:
    """Return ``labels`` as float32 on ``device`` after checking it is a (n, L) multi-hot {0, 1} matrix."""
    labels = _as_float_matrix(labels, name, device, "(n, L) multi-hot {0, 1} label")
    bad = (labels != 0) & (labels != 1)
    if bool(bad.any()):
        raise ValueError(f"{name} must be multi-hot with entries 0 or 1, found {labels[bad][0].item():g}; "
                         f"threshold soft labels first (labels > 0), or one-hot class indices with "
                         f"torch.nn.functional.one_hot")
    return labels


def prepare_inputs(query_codes, db_codes, query_labels=None, db_labels=None, *,
                   query_labels_name: str = "query_labels") -> RetrievalInputs:
    """Validate codes (and labels when given) and bring them to one device as float32.

    Raises ValueError naming the problem: codes not in {-1, +1}, bit widths or label widths that
    disagree, non-binary labels, or codes and labels with different numbers of rows.
    """
    named = {"query_codes": query_codes, "db_codes": db_codes}
    if query_labels is not None or db_labels is not None:
        named.update({query_labels_name: query_labels, "db_labels": db_labels})
    device = _common_device(named)
    q = check_codes(query_codes, "query_codes", device)
    db = check_codes(db_codes, "db_codes", device)
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"query_codes have K={q.shape[1]} bits but db_codes have K={db.shape[1]}; "
                         f"encode queries and database with the same hash model")
    if query_labels is None and db_labels is None:
        return RetrievalInputs(q, db, None, None)
    if query_labels is None or db_labels is None:
        raise ValueError(f"pass both {query_labels_name} and db_labels, or neither")
    ql = check_labels(query_labels, query_labels_name, device)
    dbl = check_labels(db_labels, "db_labels", device)
    if ql.shape[1] != dbl.shape[1]:
        raise ValueError(f"{query_labels_name} have L={ql.shape[1]} label columns but db_labels have "
                         f"L={dbl.shape[1]}; both must use the same label vocabulary")
    for codes_name, codes, labels_name, labels in (("query_codes", q, query_labels_name, ql),
                                                   ("db_codes", db, "db_labels", dbl)):
        if codes.shape[0] != labels.shape[0]:
            raise ValueError(f"{codes_name} has {codes.shape[0]} rows but {labels_name} has "
                             f"{labels.shape[0]}; pass one label row per code row")
    return RetrievalInputs(q, db, ql, dbl)


def check_topk(topk, n_db: int) -> int:
    """The number of ranks to keep: ``topk`` clamped to n_db, or n_db when ``topk`` is None."""
    if topk is None:
        return n_db
    if isinstance(topk, bool) or not isinstance(topk, numbers.Integral) or topk < 1:
        raise ValueError(f"topk must be a positive integer or None (the whole database), got {topk!r}")
    return min(int(topk), n_db)


def query_chunks(n_query: int, n_db: int, chunk_size: int | None, device: torch.device) -> Iterator[slice]:
    """Slices of consecutive queries, ``chunk_size`` at a time (None: sized from PAIRS_PER_CHUNK)."""
    if chunk_size is None:
        chunk_size = max(1, PAIRS_PER_CHUNK.get(device.type, PAIRS_PER_CHUNK["cuda"]) // n_db)
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer (queries per chunk) or None, got {chunk_size!r}")
    for start in range(0, n_query, int(chunk_size)):
        yield slice(start, min(start + int(chunk_size), n_query))


def distance_block(query_codes: torch.Tensor, db_codes_t: torch.Tensor) -> torch.Tensor:
    """0.5 * (K - b_q b_db^T) for float32 codes and the transposed database (K, n_db).

    Returned in the smallest integer type that holds 0..K (uint8 up to 255 bits), which is what the
    radix sort below wants. The matmul is exact in float32 (and in TF32/bf16 on GPU: +-1 inputs,
    float32 sums of integers); rounding is folded in: 0.5 is added and the conversion truncates.
    """
    bits = query_codes.shape[1]
    dtype = torch.uint8 if bits <= 255 else torch.int16 if bits <= 32767 else torch.int32
    half_k = torch.tensor(0.5 * bits + 0.5, device=query_codes.device)  # + 0.5: truncation rounds
    return torch.addmm(half_k, query_codes, db_codes_t, alpha=-0.5).to(dtype)  # (cs, n_db)


_SORT_POOL: ThreadPoolExecutor | None = None  # created on first use; threads start on demand


def _argsort_rows(distances: np.ndarray, k: int) -> np.ndarray:
    """np.argsort(kind="stable")[:, :k] of each row, the rows split over torch's CPU threads.

    numpy releases the GIL while sorting, and its stable sort of 8/16-bit integers is a radix sort.
    """
    global _SORT_POOL
    workers = min(torch.get_num_threads(), distances.shape[0])
    out = np.empty((distances.shape[0], k), dtype=np.int64)

    def sort(part: slice) -> None:
        out[part] = np.argsort(distances[part], axis=1, kind="stable")[:, :k]

    bounds = np.linspace(0, distances.shape[0], workers + 1).astype(int)
    parts = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    if workers > 1:
        if _SORT_POOL is None:
            _SORT_POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="advhash-sort")
        pending = [_SORT_POOL.submit(sort, part) for part in parts[1:]]
        sort(parts[0])
        for job in pending:
            job.result()
    else:
        sort(parts[0])
    return out


def stable_order(distances: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (cs, k) of the k nearest items per row, by increasing distance, ties by database index.

    On CPU this is numpy's stable argsort, a radix sort for 8/16-bit integers (linear in n_db and
    several times faster here than torch.sort, or torch.topk on the unique key
    distance * n_db + index); on GPU torch.sort(stable=True). Both give exactly the stable order.
    """
    if distances.device.type == "cpu":
        return torch.from_numpy(_argsort_rows(distances.numpy(), k))
    return torch.sort(distances, dim=1, stable=True).indices[:, :k]


def hamming_distance(query_codes, db_codes) -> torch.Tensor:
    """Hamming distances d_ij = 0.5 * (K - b_i . b_j) (``docs/methods.md``, section Conventions), int64 (n_q, n_db).

    Not chunked: for large databases use ``hamming_rank`` or the metrics, which never hold the
    whole matrix.
    """
    inputs = prepare_inputs(query_codes, db_codes)
    return distance_block(inputs.query_codes, inputs.db_codes.T).to(torch.int64)


def hamming_rank(query_codes, db_codes, *, topk: int | None = None,
                 chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank the database for each query by Hamming distance, ties broken by database order.

    Args:
        query_codes: (n_q, K) in {-1, +1}.
        db_codes: (n_db, K) in {-1, +1}.
        topk: ranks to return; None (default) returns the whole database, values above n_db are
            clamped to n_db.
        chunk_size: queries per chunk (None: automatic).

    Returns:
        indices, distances: int64 (n_q, k) on the codes' device; row i lists database indices by
        increasing distance, equal distances in increasing index (a stable sort).

    Example:
        >>> indices, distances = hamming_rank(query_codes, db_codes, topk=100)
    """
    inputs = prepare_inputs(query_codes, db_codes)
    n_q, n_db = inputs.query_codes.shape[0], inputs.db_codes.shape[0]
    k = check_topk(topk, n_db)
    device = inputs.query_codes.device
    indices = torch.empty(n_q, k, dtype=torch.int64, device=device)
    distances = torch.empty(n_q, k, dtype=torch.int64, device=device)
    db_t = inputs.db_codes.T.contiguous()  # (K, n_db)
    for rows in query_chunks(n_q, n_db, chunk_size, device):
        block = distance_block(inputs.query_codes[rows], db_t)  # (cs, n_db)
        order = stable_order(block, k).to(device)  # (cs, k)
        indices[rows] = order
        distances[rows] = block.gather(1, order).to(torch.int64)
    return indices, distances


def label_words(labels: torch.Tensor) -> torch.Tensor:
    """Pack multi-hot labels (n, L) into int64 words (n, ceil(L / 63)): label j is bit j % 63 of word j // 63."""
    n, width = labels.shape
    words = torch.zeros(n, -(-width // LABEL_WORD_BITS), dtype=torch.int64, device=labels.device)
    for label in range(width):
        words[:, label // LABEL_WORD_BITS] |= labels[:, label].to(torch.int64) << (label % LABEL_WORD_BITS)
    return words


def ranked_relevance(inputs: RetrievalInputs, k: int, chunk_size: int | None) -> Iterator[tuple[slice, torch.Tensor]]:
    """For each chunk of queries: (rows, relevance of the top-k items in stable rank order, bool (cs, k)).

    Relevance is only needed at the k ranked items, so for up to 126 labels it is read from packed
    label words, (y_q & y_db) != 0, instead of a full (cs, n_db) label matmul.
    """
    n_q, n_db = inputs.query_codes.shape[0], inputs.db_codes.shape[0]
    device = inputs.query_codes.device
    db_t = inputs.db_codes.T.contiguous()  # (K, n_db)
    packed = -(-inputs.query_labels.shape[1] // LABEL_WORD_BITS) <= MAX_LABEL_WORDS
    if packed:
        query_words, db_words = label_words(inputs.query_labels), label_words(inputs.db_labels).T.contiguous()
    for rows in query_chunks(n_q, n_db, chunk_size, device):
        order = stable_order(distance_block(inputs.query_codes[rows], db_t), k).to(device)  # (cs, k)
        if not packed:
            yield rows, relevance(inputs.query_labels[rows], inputs.db_labels).gather(1, order)
            continue
        relevant = None
        for word, db_word in enumerate(db_words):  # db_word: (n_db,)
            shared = (db_word[order] & query_words[rows, word, None]) != 0  # (cs, k)
            relevant = shared if relevant is None else relevant | shared
        yield rows, relevant


def distance_histograms(query_codes, db_codes, query_labels, db_labels, *,
                        chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query, how many database items lie at each Hamming distance, and how many of those are relevant.

    Returns:
        counts, relevant_counts: int64 (n_q, K + 1) on the codes' device; ``counts[i, d]`` is the
        size n_d of query i's tie group at distance d and ``relevant_counts[i, d]`` its relevant
        count r_d. Everything that does not depend on the order within tie groups (the tie-aware
        mAP, precision/recall by Hamming radius) is a function of these two tables.
    """
    inputs = prepare_inputs(query_codes, db_codes, query_labels, db_labels)
    return tie_group_histograms(inputs, chunk_size)


def tie_group_histograms(inputs: RetrievalInputs, chunk_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``distance_histograms`` on validated inputs."""
    n_q, n_db, groups = inputs.query_codes.shape[0], inputs.db_codes.shape[0], inputs.bits + 1
    device = inputs.query_codes.device
    db_t = inputs.db_codes.T.contiguous()
    counts = torch.empty(n_q, groups, dtype=torch.int64, device=device)
    relevant_counts = torch.empty_like(counts)
    for rows in query_chunks(n_q, n_db, chunk_size, device):
        relevant = relevance(inputs.query_labels[rows], inputs.db_labels)  # (cs, n_db)
        # One scatter: bins 0..K count irrelevant items, bins K+1..2K+1 relevant ones.
        bins = distance_block(inputs.query_codes[rows], db_t).to(torch.int64).add_(relevant, alpha=groups)
        ones = torch.ones((), dtype=torch.int64, device=device).expand_as(bins)
        table = torch.zeros(bins.shape[0], 2 * groups, dtype=torch.int64, device=device).scatter_add_(1, bins, ones)
        relevant_counts[rows] = table[:, groups:]
        counts[rows] = table[:, :groups] + table[:, groups:]
    return counts, relevant_counts
