"""Tiny data, models and code tables shared by the tests (the fixtures live in conftest.py), and the
independent references that tests of more than one library module compare against."""

import hashlib
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import advhash.data.fashion as fashion
from advhash.data import HashingData, InMemorySplit
from advhash.models import HashingModel

BITS = 16


class StripesSplit(torch.utils.data.Dataset):
    """A tiny in-memory split: class c brightens horizontal stripe c a little, over strong noise."""

    def __init__(self, n=128, classes=4, seed=0, signal=0.2, noise=0.6):
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, classes, (n,), generator=g)
        self.labels = torch.nn.functional.one_hot(y, classes).float()
        self.images = torch.rand(n, 1, 16, 16, generator=g) * noise
        for c in range(classes):
            self.images[y == c, :, 4 * c:4 * c + 4, :] += signal

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i], i


def stripes(n, *, classes=4, seed=0, multi_label=False, signal=0.2, noise=0.6):
    """A tiny ``InMemorySplit`` stored as uint8: class c brightens horizontal stripe c a little, over strong
    noise; one class an item, or about 40 % of the classes with ``multi_label``."""
    g = torch.Generator().manual_seed(seed)
    if multi_label:
        labels = (torch.rand(n, classes, generator=g) < 0.4).float()
    else:
        labels = torch.nn.functional.one_hot(torch.randint(0, classes, (n,), generator=g), classes).float()
    pixels = torch.rand(n, 1, 16, 16, generator=g) * noise
    for c in range(classes):
        pixels[labels[:, c] > 0, :, 4 * c:4 * c + 4, :] += signal
    return InMemorySplit((pixels * 255).round().to(torch.uint8), labels)


def fresh_model(seed=0, bits=BITS):
    """An untrained small CNN in eval mode."""
    torch.manual_seed(seed)
    return HashingModel("small_cnn", bits=bits, in_channels=1).eval()


def images(n=6, seed=0):
    """Random [0, 1] images (n, 1, 16, 16)."""
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def random_table(seed, *, n=10, m=30, classes=5, bits=8, rate=0.3):
    """Random {-1, +1} table codes and multi-hot labels, and query labels that include an item with
    no positives (a class no table item carries, and an empty label) and one with no negatives."""
    g = torch.Generator().manual_seed(seed)
    table_codes = torch.where(torch.rand(m, bits, generator=g) < 0.5, -1.0, 1.0)
    table_labels = (torch.rand(m, classes, generator=g) < rate).float()
    table_labels[:, -1] = 0                       # the last class is carried by no table item
    table_labels[table_labels.sum(1) == 0, 0] = 1  # every table item has a label
    labels = (torch.rand(n, classes, generator=g) < rate).float()
    for row in (labels.sum(1) == 0).nonzero().flatten().tolist():
        labels[row, row % (classes - 1)] = 1      # the rest have a label
    labels[0] = 0                                 # no positives
    labels[1] = torch.eye(classes)[-1]            # no positives either
    labels[2] = 1                                 # shares a class with every labelled table item
    return labels, table_codes, table_labels


def stripes_data(train, query=None):
    """Stripes ``HashingData`` whose database is the training split (queries: ``query`` or the training split)."""
    return HashingData("stripes", train=train, query=query or train, database=train, class_names=list("abcd"))


def all_images(split):
    """Every image of a split, (n, C, H, W) in [0, 1]."""
    return split.batch(torch.arange(len(split)))[0]


def sign_codes(values):
    """sign with sign(0) := +1, written out (the reference the library's binarize is checked against)."""
    return torch.where(values >= 0, 1.0, -1.0)


def same_weights(first, second):
    """Whether two models hold bit-identical parameters and buffers."""
    return all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def stripes_pairs(n, *, classes=4, tags_per_class=3, seed=0, multi_label=False, signal=0.4):
    """Stripes images with a text modality: class c turns on tags 3c..3c+2 (each with probability 0.8), plus
    two noise tags on at random. An ``InMemorySplit`` with ``texts`` (n, 3 classes + 2)."""
    split = stripes(n, classes=classes, seed=seed, multi_label=multi_label, signal=signal)
    g = torch.Generator().manual_seed(seed + 100)
    class_tags = split.labels.repeat_interleave(tags_per_class, dim=1) * (torch.rand(n, classes * tags_per_class,
                                                                                     generator=g) < 0.8)
    noise_tags = (torch.rand(n, 2, generator=g) < 0.3).float()
    return InMemorySplit(split.images, split.labels, texts=torch.cat([class_tags, noise_tags], dim=1))


def random_codes(n=6, seed=0, bits=BITS):
    """Random {-1, +1} codes (n, bits): guide codes for ``attack.run(images, codes)``."""
    return torch.where(torch.rand(n, bits, generator=torch.Generator().manual_seed(seed)) < 0.5, -1.0, 1.0)


def one_hot_labels(n, classes=4):
    """Single-label multi-hot rows (n, classes), cycling through the classes."""
    return torch.eye(classes)[torch.arange(n) % classes]


def table_victim(model, *, m=40, classes=4, seed=0):
    """An ``advhash.Victim`` of ``model`` whose training set and database are one random {-1, +1} code
    table of ``m`` items with cycling one-hot labels (``m / classes`` items a class, >= 9 for DHTA): enough
    for every guided attack to compute its guide codes, without training anything."""
    from advhash.victim import Victim
    codes, labels = random_codes(m, seed=seed, bits=model.bits), one_hot_labels(m, classes)
    return Victim(model, train_codes=codes, train_labels=labels, db_codes=codes.clone(), db_labels=labels.clone())


def mean_hamming(codes, guide):
    """Mean number of differing bits per row, counted bit by bit."""
    return sum(sum(a != b for a, b in zip(row, g)) for row, g in zip(codes.tolist(), guide.tolist())) / len(codes)


# ---------------------------------------------------------------- retrieval metrics (tests/test_metrics_*.py)
# Independent references: plain numpy loops in the style of the published code (stable argsort).

def retrieval_problem(seed=0, n_query=40, n_db=300, bits=8, n_labels=6, label_rate=0.15, empty_rows=True):
    """Random {-1, +1} codes and multi-hot labels (numpy), with some all-zero label rows."""
    rng = np.random.default_rng(seed)
    query_codes = np.where(rng.random((n_query, bits)) < 0.5, -1.0, 1.0).astype(np.float32)
    db_codes = np.where(rng.random((n_db, bits)) < 0.5, -1.0, 1.0).astype(np.float32)
    query_labels = (rng.random((n_query, n_labels)) < label_rate).astype(np.float32)
    db_labels = (rng.random((n_db, n_labels)) < label_rate).astype(np.float32)
    if empty_rows:
        query_labels[:3] = 0  # queries that are relevant to nothing
        db_labels[::7] = 0
    return query_codes, db_codes, query_labels, db_labels


def distances_loop(query_codes, db_codes):
    """Hamming distances by counting differing bits, (n_q, n_db) numpy."""
    return np.array([[int(np.sum(q != b)) for b in db_codes] for q in query_codes])


def calc_top_map_loop(query_codes, db_codes, query_labels, db_labels, topk):
    """DeepHash-pytorch CalcTopMap, per-query APs, with np.argsort(kind="stable")."""
    bits = query_codes.shape[1]
    topk = db_codes.shape[0] if topk is None else topk
    aps = []
    for i in range(query_codes.shape[0]):
        gnd = (query_labels[i] @ db_labels.T > 0).astype(np.float32)
        hamm = 0.5 * (bits - query_codes[i] @ db_codes.T)
        ind = np.argsort(hamm, kind="stable")
        tgnd = gnd[ind][0:topk]
        tsum = int(np.sum(tgnd))
        if tsum == 0:
            aps.append(0.0)
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(tgnd == 1)) + 1.0
        aps.append(float(np.mean(count / tindex)))
    return np.array(aps)


# ---------------------------------------------------------------- representative codes (tests/test_codes_*.py)
# Independent references: label sets and Jaccard with Python loops, every code of {-1, +1}^K from itertools.

def label_classes(label_row):
    """The set of classes a multi-hot label row carries."""
    return {c for c, v in enumerate(label_row) if v}


def jaccard_loop(a, b):
    """|a and b| / |a or b| of two label rows by set arithmetic; 0 when both are empty."""
    a, b = label_classes(a), label_classes(b)
    return len(a & b) / len(a | b) if a | b else 0.0


def every_code(bits):
    """Every code of {-1, +1}^bits in binary counting order, (2^bits, bits) numpy."""
    return np.array(list(itertools.product([-1.0, 1.0], repeat=bits)))


# ---------------------------------------------------------------- defenses (tests/test_defenses*.py)

DEFENSE_BITS, DEFENSE_CLASSES = 8, 4   # the stripes the defense tests fine-tune on (conftest's ``base``)
SMALL_PROTOTYPES = (32,)  # ATRDH's prototype network, instead of the published (4096, 512)


def small_defense(name, num_train, **kwargs):
    """A defense by name, with ATRDH's prototype network kept small."""
    from advhash.defenses import build_defense
    if name == "atrdh":
        kwargs.setdefault("prototype_hidden", SMALL_PROTOTYPES)
    return build_defense(name, num_train=num_train, bits=DEFENSE_BITS, num_classes=DEFENSE_CLASSES, **kwargs)


# ---------------------------------------------------------------- cross-modal (tests/test_crossmodal_*.py)

def log1p_exp(v):
    """log(1 + e^v) of a Python float, for the likelihood references."""
    return math.log1p(math.exp(v))


DCMH_TRAINING = dict(batch_size=32, lr=0.001, optimizer="adam", weight_decay=0.0, eta=0.1)   # eta: see test_dcmh_learns
SSAH_TRAINING = dict(batch_size=32, image_lr=3e-3, text_lr=1e-3, label_lr=1e-2, label_passes=3, hidden=256,
                     adversarial_gradient=False)


# ---------------------------------------------------------------- data (tests/test_data_*.py)

SHARED = Path(__file__).resolve().parents[2] / "shared"      # <repo>/../shared: developers' and CI's data
needs_fashion = pytest.mark.skipif(not fashion.DEBIAN_DIR.is_dir(),
                                   reason=f"Fashion-MNIST not installed at {fashion.DEBIAN_DIR} "
                                          f"(apt-get install dataset-fashion-mnist)")


def folder_digest(folder):
    """{file name: sha256} of a folder's files."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------- mainstay codes (tests/test_codes_mainstay.py,
# tests/test_defenses_saat.py): SAAT's cosine weights and Theorem 1 with Python loops

def cosine_loop(a, b):
    """Cosine similarity of two label rows; 0 when either is empty."""
    dot = sum(x * y for x, y in zip(a, b))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0


def mainstay_weights_loop(label, table_labels):
    """SAAT weights of one item: positives share a class, w_j = cos / sum_P cos; negatives 1 / |N|.
    Lists of (table index, weight)."""
    positives = [j for j, y in enumerate(table_labels) if any(a and b for a, b in zip(label, y))]
    negatives = [j for j in range(len(table_labels)) if j not in positives]
    cosines = {j: cosine_loop(label, table_labels[j]) for j in positives}
    total = sum(cosines.values())
    return [(j, cosines[j] / total) for j in positives], [(j, 1.0 / len(negatives)) for j in negatives]


def reference_mainstay_codes(labels, table_codes, table_labels, tied=1.0):
    """SAAT Theorem 1 one item and bit at a time: sign(sum_P w b - mean_N b), a tie (|sum| <= 1e-9) is ``tied``:
    +1 (the paper variant) or 0 (the published one, torch.sign)."""
    codes = []
    table_codes, table_labels = table_codes.tolist(), table_labels.tolist()
    for label in labels.tolist():
        positives, negatives = mainstay_weights_loop(label, table_labels)
        code = []
        for k in range(len(table_codes[0])):
            direction = sum(w * table_codes[j][k] for j, w in positives)
            direction -= sum(w * table_codes[j][k] for j, w in negatives)
            code.append(1.0 if direction > 1e-9 else -1.0 if direction < -1e-9 else tied)
        codes.append(code)
    return torch.tensor(codes)


def weighted_distance_loop(candidates, table_codes, positives, negatives):
    """The objective of a representative code (CgAT's center and SAAT's mainstay codes, Theorem 1 of each), by
    loops: sum_P w_j d_H(c, b_j) - sum_N w_j d_H(c, b_j), d_H the number of differing bits. ``positives`` and
    ``negatives`` are lists of (table row j, weight w_j). Shapes: (C, K), (m, K) -> (C,) float64."""
    candidates, table_codes = np.asarray(candidates), np.asarray(table_codes)
    distances = (candidates[:, None, :] != table_codes[None, :, :]).sum(-1).astype(np.float64)   # (C, m)
    values = np.zeros(len(candidates))
    for j, w in positives:
        values += w * distances[:, j]
    for j, w in negatives:
        values -= w * distances[:, j]
    return values


def clean_and_adversarial_map(victim, attack, queries):
    """mAP (full ranking) of ``queries`` and of ``attack``'s adversarial versions of them on ``victim``'s database:
    what "the attack lowers retrieval" tests compare."""
    from advhash.metrics import mean_average_precision

    scores = [mean_average_precision(victim.encode(images), victim.db_codes, queries.labels, victim.db_labels)
              for images in (queries.images, attack(queries.images, queries.labels))]
    return tuple(scores)


def assert_resumes_bit_for_bit(fit, data, settings, folder, prefix):
    """A 2-epoch multi-network run (``fit``: ``fit_dcmh`` or ``fit_ssah``) after a finished 1-epoch run of the same
    settings in ``folder`` (named ``<prefix>e1_...``) resumes from a copy of its checkpoint, which is kept, to the
    weights and losses of an uninterrupted 2-epoch run; returns the 1-epoch checkpoint's path."""
    from advhash.checkpoint import load_checkpoint

    uninterrupted, history = fit(data, epochs=2, **settings)
    fit(data, epochs=1, checkpoint_dir=folder, **settings)
    (path,) = folder.iterdir()
    assert load_checkpoint(path)["epoch"] == 1 and path.name.startswith(prefix + "e1_")
    resumed, resumed_history = fit(data, epochs=2, checkpoint_dir=folder, **settings)
    assert same_weights(uninterrupted, resumed)
    assert sorted(load_checkpoint(p)["epoch"] for p in folder.glob("*.pt")) == [1, 2]
    assert [r["image_loss"] for r in resumed_history] == [r["image_loss"] for r in history]
    return path


def published_tables_step(defense, loss, model, train, *, batch=12, batch_seed=0):
    """Prepare an adversarial-training ``defense`` built with variant="published" on ``train`` with its hashing
    ``loss`` (table pairs; seed 0), check that both share the training codes it preinstalled, and take one
    training step on a random batch (``batch_seed``). Returns (shared: the preinstalled codes, indices, images,
    labels, the step's loss)."""
    defense.prepare(model, train, seed=0, loss=loss)
    with torch.no_grad():
        shared = sign_codes(model.eval().hash_logits(all_images(train)))
    assert torch.equal(loss.code_table, shared) and loss.seen.all()
    model.train()
    indices = torch.randperm(len(train), generator=torch.Generator().manual_seed(batch_seed))[:batch]
    images, labels = all_images(train)[indices], train.labels[indices]
    return shared, indices, images, labels, defense.batch_loss(model, loss, images, labels, indices, step=0)


class HardSign(torch.nn.Module):
    """A model whose forward passes through a hard sign: its input gradient is zero everywhere (gradient
    masking by construction), while its codes still retrieve (the robustness checks must flag it)."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.bits = model, model.bits

    def hash_logits(self, images):
        return torch.sign(self.inner.hash_logits(images))

    def forward(self, images, scale=1.0):
        return torch.tanh(scale * self.hash_logits(images))


def write_synthetic_findings(metrics_dir, section, verdicts=None, *, default="REPRODUCED"):
    """Write ``<metrics_dir>/<section>_findings.json`` through ``advhash.findings.Findings`` with made-up estimates
    that give each claim of the section the verdict ``verdicts[claim id]`` (default ``default``): REPRODUCED,
    NOT REPRODUCED or INCONCLUSIVE, in the claim's direction. For the overview and the site, never for numbers."""
    from advhash.findings import Findings
    from advhash.uncertainty import Estimate

    effects = {"REPRODUCED": (0.03, 0.01, 0.05), "NOT REPRODUCED": (-0.02, -0.035, -0.005),
               "INCONCLUSIVE": (0.004, -0.01, 0.018)}
    findings = Findings(section)
    for claim in findings.claims:
        sign = claim.comparison.direction
        estimate, low, high = (sign * value for value in effects[(verdicts or {}).get(claim.id, default)])
        seeds = 3 if "seeds" in claim.comparison.levels else 1
        findings.add(claim.id, Estimate(estimate, min(low, high), max(low, high), 0.95, 200, seeds,
                                        claim.comparison.levels, "percentile", 0.5))
    return findings.write(Path(metrics_dir) / f"{section}_findings.json")
