"""End to end: a tiny run on real Fashion-MNIST (train, encode, retrieve, beat random), and the paper profile's
path through all five notebooks at CI size (list files of JPEGs and DCMH-style .mat files, AlexNet at 224, weights
files, the decoded image cache) through the pipeline."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import yaml
from PIL import Image

from advhash.claims import load_claims
from advhash.data import load_dataset
from advhash.data.fashion import DEBIAN_DIR
from advhash.metrics import mean_average_precision, random_ranking_map
from advhash.pipeline import INVARIANTS_TAG, NOTEBOOK_SECTIONS, run_notebook
from advhash.train import encode, fit_hashing_model
from advhash.uncertainty import VERDICTS

ROOT = Path(__file__).resolve().parents[1]
needs_fashion = pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason=f"Fashion-MNIST not installed at {DEBIAN_DIR} "
                                                                   "(apt-get install dataset-fashion-mnist)")


@needs_fashion
@pytest.mark.parametrize("method", ["dph", "dpsh", "hashnet"])
def test_small_model_learns_codes_that_beat_random(method, tmp_path):
    data = load_dataset("fashion-mnist", root=tmp_path, num_query=100, num_train=400, num_database=600, seed=0)
    model, history = fit_hashing_model(data, method=method, bits=16, epochs=6, batch_size=50, optimizer="adam",
                                       lr=0.003, weight_decay=0.0, pairs="batch", checkpoint_dir=tmp_path)
    query_codes, db_codes = encode(model, data.query), encode(model, data.database)
    assert set(torch.cat([query_codes, db_codes]).unique().tolist()) == {-1.0, 1.0}
    learned = mean_average_precision(query_codes, db_codes, data.query.labels, data.database.labels)
    random = random_ranking_map(data.query.labels, data.database.labels)
    assert random == pytest.approx(0.1, abs=0.02), "ten balanced classes: a random ranking scores about 0.1"
    assert learned > 2 * random, f"{method}: mAP {learned:.3f} is not twice random ({random:.3f})"
    assert len(history) == 6 and history[-1]["loss"] < history[0]["loss"]


# label rows of the paper-path data: two rows carried by ten database items each, so that every query has a
# target label carried by more than n_t = 9 items (the paper's DHTA anchors, notebooks 04 and 05), and a few others
A, B = (1, 1, 0, 0, 0, 0), (0, 0, 1, 1, 0, 0)
DATABASE_ROWS = [A] * 10 + [B] * 10 + [(0, 0, 0, 0, 1, 0), (0, 0, 0, 0, 0, 1), (1, 0, 0, 0, 1, 0), (0, 0, 1, 0, 0, 1)]
QUERY_ROWS = [A, B, (0, 0, 0, 0, 1, 0), (0, 0, 0, 0, 0, 1), (1, 0, 0, 0, 1, 0), (0, 0, 1, 0, 0, 1), A, B]


def smoke_labels(seed=0) -> np.ndarray:
    """The label rows of the paper-path data: the database rows shuffled (the training split is the first 16),
    then the queries'."""
    rows = np.array(DATABASE_ROWS)[np.random.default_rng(seed).permutation(len(DATABASE_ROWS))]
    return np.concatenate([rows, np.array(QUERY_ROWS)])


def banded_image(row, g, size=(375, 500)) -> np.ndarray:
    """A noisy uint8 (H, W, 3) image where each class of ``row`` shows as a brighter band: a little signal."""
    pixels = g.integers(0, 120, (*size, 3), dtype=np.uint8)
    band = size[0] // len(row)
    for c in np.flatnonzero(row):
        pixels[band * c:band * c + band] += 100
    return pixels


def flickr_like(root: Path, folder="FLICKR-25K", *, train=16, seed=0) -> Path:
    """FLICKR-25K-style list files (``{train,test,database}_img.txt`` / ``_label.txt``) of generated 500x375
    JPEGs: the database holds the training images and the rest of ``DATABASE_ROWS``; the queries are apart."""
    base = root / folder
    (base / "images").mkdir(parents=True)
    g = np.random.default_rng(seed)
    labels = smoke_labels(seed)
    for i, row in enumerate(labels):
        Image.fromarray(banded_image(row, g)).save(base / "images" / f"{i}.jpg", quality=85)
    database = len(DATABASE_ROWS)
    splits = {"train": range(train), "database": range(database), "test": range(database, len(labels))}
    for stem, items in splits.items():
        (base / f"{stem}_img.txt").write_text("".join(f"images/{i}.jpg\n" for i in items))
        (base / f"{stem}_label.txt").write_text("".join(" ".join(map(str, labels[i])) + "\n" for i in items))
    return base


def dcmh_mat_like(root: Path, folder="FLICKR-25K", *, tags=12, seed=0) -> Path:
    """DCMH-style MIRFLICKR-25K ``.mat`` files in ``<root>/<folder>`` (beside the list files, as the paper profile
    has them): ``LAll`` labels, ``YAll`` tag bag-of-words (two tags per class, and noise) and ``IAll`` 224x224 RGB
    images in MATLAB's axis order (H x W x 3 x N), each in its own MATLAB v5 file as the published ones."""
    base = root / folder
    base.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed + 1)
    labels = smoke_labels(seed + 1).astype(np.uint8)
    texts = (g.random((len(labels), tags)) < 0.1).astype(np.uint8)
    for c in range(labels.shape[1]):
        texts[labels[:, c] == 1, 2 * c:2 * c + 2] = 1
    images = np.stack([banded_image(row, g, size=(224, 224)) for row in labels], axis=-1)    # H x W x 3 x N
    scipy.io.savemat(base / "mirflickr25k-lall.mat", dict(LAll=labels))
    scipy.io.savemat(base / "mirflickr25k-yall.mat", dict(YAll=texts))
    scipy.io.savemat(base / "mirflickr25k-iall.mat", dict(IAll=images))
    return base


# The keys the paper-path smoke may change in profiles/paper.yaml. Sizes: how much (items, epochs, iterations and the
# marks and milestones placed among them, code lengths, pools, budgets of queries and restarts, batch sizes).
# Subsets: lists of the paper's own choices (methods, datasets, code lengths, training seeds, transfer victims, eps
# values swept or trained at) of which the smoke keeps a non-empty part, in the paper's order, so that every value
# it runs is one the paper profile runs too. Places: where (device, data, weights file, output folders). Every other
# setting (the losses, optimizers, learning rates, eps budgets, attack and defense settings, AlexNet at 224) reaches
# the run as the paper profile has it, so the smoke cannot drift from the profile a GPU user runs.
SIZE_KEYS = {"num_query", "num_train", "num_database", "num_attacked", "transfer_bits", "epochs", "lr_milestones",
             "batch_size", "attack_batch_size", "steps", "iteration_marks", "pgd_steps", "pn_max", "num_examples",
             "ssah_epochs", "ssah_label_passes", "attack_steps", "num_adversarial", "adv_attack_steps", "adv_epochs",
             "adv_lr_milestones", "train_steps", "baseline_steps", "sdha_steps", "robust_restarts",
             "black_box_queries", "iteration_sweep", "curve_queries", "curve_steps"}
SUBSET_KEYS = {"methods", "datasets", "bits_list", "all_models_bits", "defense_bits", "training_seeds",
               "transfer_victims", "eps_sweep_255", "tradeoff_train_eps_255"}
PLACE_KEYS = {"device", "data_root", "weights", "victims_from", "checkpoint_dir", "figure_dir", "metrics_dir"}
RUN_KEYS = {"threads", "check_invariants"}      # the pipeline section: the machine's threads, an exploratory run


def smoke_profile(overrides: dict[str, dict]) -> dict:
    """``profiles/paper.yaml`` with ``overrides`` ({section: {key: value}}) applied, each key checked to be a key of
    that section of the paper profile and a size, a place or a run setting (``SIZE_KEYS``, ``PLACE_KEYS``,
    ``RUN_KEYS``), or a subset (``SUBSET_KEYS``) whose value is a non-empty part of the paper's list, in its order."""
    paper = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    for section, changed in overrides.items():
        assert set(changed) <= set(paper[section]), (section, sorted(set(changed) - set(paper[section])))
        allowed = SIZE_KEYS | SUBSET_KEYS | PLACE_KEYS | RUN_KEYS
        assert set(changed) <= allowed, f"{section}: {sorted(set(changed) - allowed)}: a setting of the paper"
        for key in set(changed) & SUBSET_KEYS:
            ours, theirs = changed[key], paper[section][key]
            assert ours and [value for value in theirs if value in ours] == ours, (
                f"{section}.{key}: {ours} is not a non-empty part of the paper's {theirs}, in its order")
    return {section: dict(values, **overrides.get(section, {})) for section, values in paper.items()}


def report_outputs(path: Path) -> str:
    """The text the cells of a rendered notebook printed or displayed (not their sources)."""
    texts = []
    for cell in json.loads(path.read_text())["cells"]:
        for output in cell.get("outputs", []):
            texts.append("".join(output.get("text", "")))
            texts.extend("".join(value) for key, value in output.get("data", {}).items() if key.startswith("text/"))
    return "\n".join(texts)


def invariants_listed(path: Path) -> tuple[int, int, list[str]]:
    """How many invariants a rendered notebook says hold, of how many it checked, and the messages of those it lists
    as FAILED (a run with ``pipeline.check_invariants: false``)."""
    outputs = report_outputs(path)
    counts = re.findall(r"\*\*(\d+) of (\d+) invariants hold\*\*", outputs)
    assert counts, f"{path.name}: no invariants were checked"
    held, total = map(int, counts[-1])
    return held, total, [line[len("- FAILED: "):] for line in outputs.splitlines() if line.startswith("- FAILED: ")]


def invariants_checked(stem: str, section: dict) -> int:
    """How many invariants notebook ``stem`` checks (its ``Invariants`` cell) with the settings ``section``: 01 one
    per trained model (above a random ranking) and the tie order; 02 its attacked and its transfer victims above
    random (the eps-ball is checked apart, always); 03 every model above random and its adversarial inputs in
    [0, 1]; 04 the eps-ball, the ensemble at most each member, the closed form; 05 those three and the undefended
    and fine-tuned models above random."""
    if stem == "01_deep_hashing":
        return len(section["methods"]) * len(section["bits_list"]) + 1
    return {"02_hag": 2, "03_cmla": 2, "04_saat": 3, "05_cgat": 4}[stem]


# The invariants a smoke run may fail, per notebook (patterns matched at the start of their messages): retrieval
# above a random ranking, which one epoch on a few dozen generated images need not reach. Those of the threat model
# (every adversarial example inside the eps-ball, adversarial images and tag vectors in [0, 1], the ensemble's worst
# case at most each member per query) and of the evaluation (the tie order, the closed forms at their brute-force
# minimum) hold whatever the data: none of them may fail.
ABOVE_RANDOM = {
    "01_deep_hashing": (r"(dph|dpsh|hashnet) at \d+ bits: mAP@\d+ [\d.]+ beats a random ranking",),
    "02_hag": ("every attacked victim retrieves its clean queries better than a random ranking",
               "every transfer victim retrieves the clean queries better than a random ranking"),
    "03_cmla": ("every model of every training seed retrieves better than a random ranking across modalities",),
    "04_saat": (),
    "05_cgat": ("the undefended and fine-tuned models retrieve better than a random ranking",)}


def paper_smoke_project(tmp_path: Path) -> Path:
    """A project in ``tmp_path`` for the paper profile's path at CI size: the data (list files, .mat files), the
    weights (in ``tmp_path / "torch"``, torch's hub cache when TORCH_HOME points there, and a weights file) and
    ``params.yaml``, the paper profile with sizes, parts of its lists, places and run settings changed only (see
    :func:`smoke_profile`). Returns the params path."""
    from torchvision.models import alexnet, get_model, get_model_weights

    paper = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    for seed, folder in enumerate(("FLICKR-25K", "NUS-WIDE")):
        flickr_like(tmp_path / "data", folder, seed=seed)
    dcmh_mat_like(tmp_path / "data")
    torch.manual_seed(0)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    transfer_victims = paper["hag"]["transfer_victims"]     # the paper's: DPH VGG-16 twice, VGG-11, HashNet ResNet-50
    backbones = {paper["deep_hashing"]["backbone"], *(net for _, net, _ in transfer_victims)}
    for net in sorted(backbones):       # each "downloaded" before, under its file name in torch's hub cache
        url = get_model_weights(net)[paper["deep_hashing"]["weights"]].url
        torch.save(get_model(net, weights=None).state_dict(), hub / url.rpartition("/")[2])
    torch.save(alexnet(weights=None).state_dict(), tmp_path / "alexnet-own.pth")     # a user's own weights file

    def places(stem: str) -> dict:
        return dict(device="cpu", checkpoint_dir=str(tmp_path / "checkpoints" / stem),
                    figure_dir=str(tmp_path / "figures" / stem), metrics_dir=str(tmp_path / "metrics"))

    victims_from = str(tmp_path / "checkpoints" / "01_deep_hashing" / "victims.json")
    defended = dict(victims_from=victims_from, num_attacked=4, bits_list=[16], defense_bits=[16], training_seeds=[0],
                    adv_epochs=1,
                    adv_lr_milestones=[], train_steps=2, attack_steps=2, robust_restarts=1, black_box_queries=8,
                    eps_sweep_255=[8], attack_batch_size=8)
    params = smoke_profile({
        "pipeline": dict(threads=None,         # the machine's (or OMP_NUM_THREADS's), not the paper's GPU host's 8
                         check_invariants=False),    # an exploratory run: the invariants listed, not enforced
        "deep_hashing": dict(data_root=str(tmp_path / "data"), methods=["dph", "dpsh"], bits_list=[16, 64],
                             epochs=1, batch_size=8, lr_milestones=[], pn_max=16, num_examples=2,
                             **places("01_deep_hashing")),    # DPH for 01's finding and 04, DPSH for 02 and 05
        "hag": dict(victims_from=victims_from, num_attacked=4, bits_list=[16], steps=3, iteration_marks=[0, 1, 3],
                    eps_sweep_255=[8], pgd_steps=2, attack_batch_size=4, transfer_bits=16, num_examples=2,
                    **places("02_hag")),
        "cmla": dict(data_root=str(tmp_path / "data"), weights=str(tmp_path / "alexnet-own.pth"), num_query=8,
                     num_attacked=8, num_train=16, num_database=24, bits_list=[16], all_models_bits=[16], training_seeds=[0],
                     epochs=1,
                     batch_size=8, ssah_epochs=1, ssah_label_passes=1, attack_steps=2, iteration_marks=[1, 2],
                     attack_batch_size=8, num_adversarial=4, adv_attack_steps=2, adv_epochs=1, pn_max=16,
                     num_examples=2, **places("03_cmla")),
        "saat": dict(defended, tradeoff_train_eps_255=[8], baseline_steps=2, sdha_steps=2, iteration_sweep=[1, 2],
                     training_seeds=[0, 1], **places("04_saat")),     # a second seed: the paper's extra-seed path
        "cgat": dict(defended, pgd_steps=2, curve_queries=4, curve_steps=2, **places("05_cgat"))})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path / "params.yaml"


@pytest.mark.slow
def test_the_paper_profile_runs_every_notebook_end_to_end_on_a_cpu(tmp_path, monkeypatch):
    """The paper profile's structure for all five sections, sized for CI: ``profiles/paper.yaml`` with sizes, parts
    of its lists, the device and the folders changed only (``SIZE_KEYS``, ``SUBSET_KEYS``, ``PLACE_KEYS``).
    FLICKR-25K and NUS-WIDE list files of generated JPEGs decoded once into the image cache (01, 02, 04, 05),
    DCMH-style .mat files beside them (03); AlexNet at 224 from the paper profile's weights name (random weights
    placed in torch's hub cache, as are those of the paper's transfer victims' backbones) and, for 03, from a
    self-saved weights file; one epoch, a few attack iterations, the paper's attack and defense settings, its
    four transfer victims in 02 and a second training seed in 04. Notebooks 01 to 05 run in order (02, 04 and 05 read 01's victims.json)
    through the pipeline as an exploratory run (``pipeline.check_invariants: false``): every claim of every section
    gets a verdict (inconclusive on so few images), the invariants are listed rather than enforced, and only those
    of retrieval above a random ranking may fail."""
    monkeypatch.setenv("ADVHASH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))      # the weights "downloaded" before: no network
    params_path = paper_smoke_project(tmp_path)
    params = yaml.safe_load(params_path.read_text())
    paper = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    assert params["deep_hashing"]["backbone"] == params["cmla"]["backbone"] == "alexnet"
    assert params["deep_hashing"]["input_size"] == params["cmla"]["input_size"] == 224
    assert params["deep_hashing"]["weights"] == "IMAGENET1K_V1"
    assert params["hag"]["datasets"] == paper["hag"]["datasets"] == ["flickr25k", "nus-wide"]
    for stem in NOTEBOOK_SECTIONS:
        run_notebook(stem, params_path=str(params_path), output=tmp_path / f"{stem}.ipynb")

    manifest = json.loads((tmp_path / "checkpoints" / "01_deep_hashing" / "victims.json").read_text())
    assert [(v["method"], v["bits"]) for v in manifest["victims"]] == [
        (method, bits) for method in ("dph", "dpsh") for bits in (16, 64)]
    assert manifest["training"]["precision"] == "fp32" and manifest["training"]["weights"] == "IMAGENET1K_V1"
    cached = sorted(path.name for path in (tmp_path / "cache").glob("*.npy"))
    assert [sum(name.startswith(f"{dataset}-") for name in cached) for dataset in ("flickr25k", "nus-wide")] == [
        3, 3], f"each split of each list-file dataset decoded once: {cached}"
    deep_hashing = json.loads((tmp_path / "metrics" / "01_deep_hashing.json").read_text())
    assert 0 < deep_hashing["map_at_k"]["dpsh"]["16"] <= 1
    for stem in NOTEBOOK_SECTIONS:      # the DVC metrics: a terminal's worth of numbers
        headline = json.loads((tmp_path / "metrics" / f"{stem}_headline.json").read_text())
        numbers = sum(len(v) if isinstance(v, dict) else 1 for key, v in headline.items() if key != "bits")
        assert headline["bits"] == (64 if stem == "01_deep_hashing" else 16) and 0 < numbers <= 20, (stem, headline)
    for stem in ("02_hag", "04_saat", "05_cgat"):       # inside the paper's budget of that section
        eps_255 = paper[NOTEBOOK_SECTIONS[stem]]["eps_255"]
        assert params[NOTEBOOK_SECTIONS[stem]]["eps_255"] == eps_255, stem
        assert json.loads((tmp_path / "metrics" / f"{stem}.json").read_text())["linf_255_max"] <= eps_255 + 1e-3, stem
    hag = json.loads((tmp_path / "metrics" / "02_hag.json").read_text())
    assert set(hag["map_hag"]) == {"flickr25k", "nus-wide"}
    trained_by_02 = sorted(path.name.split("_")[0] for path in (tmp_path / "checkpoints" / "02_hag").glob("*.pt"))
    assert trained_by_02 == sorted([method for method, _, _ in params["hag"]["transfer_victims"]] + ["dpsh"]), (
        "only the victims 01 did not train: the transfer ones and NUS-WIDE's DPSH", trained_by_02)
    report = (tmp_path / "02_hag.ipynb").read_text()
    injected = [cell for cell in json.loads(report)["cells"]
                if "injected-parameters" in cell["metadata"].get("tags", [])]
    assert f'figure_dir = "{tmp_path / "figures" / "02_hag"}"' in "".join(injected[0]["source"]), "its figures"
    assert "every adversarial example is inside the eps-ball" in report_outputs(tmp_path / "02_hag.ipynb")
    for stem in NOTEBOOK_SECTIONS:      # every claim judged; every invariant checked, only above-random ones failed
        text = (tmp_path / f"{stem}.ipynb").read_text()
        assert "check_invariants = False" in text and "**Findings" in text, stem
        verdicts = json.loads((tmp_path / "metrics" / f"{stem}_verdicts.json").read_text())
        assert sorted(verdicts) == sorted(claim.id for claim in load_claims(section=stem)), stem
        assert all(verdict.split(":")[0] in VERDICTS for verdict in verdicts.values()), (stem, verdicts)
        assert json.loads((tmp_path / "metrics" / f"{stem}_findings.json").read_text()), stem
        held, total, failed = invariants_listed(tmp_path / f"{stem}.ipynb")
        assert total == invariants_checked(stem, params[NOTEBOOK_SECTIONS[stem]]), (stem, total)
        assert held == total - len(failed), (stem, held, total, failed)
        broken = [message for message in failed if not any(re.match(start, message) for start in ABOVE_RANDOM[stem])]
        assert not broken, f"{stem}: invariants that hold whatever the data failed: {broken}"
    assert any((tmp_path / "figures" / "03_cmla").glob("*.png")) and (tmp_path / "checkpoints" / "03_cmla").is_dir()
    for heavy in ("checkpoints", "torch"):      # some 11 GB of checkpoints and 1.4 GB of weights files, not left to
        shutil.rmtree(tmp_path / heavy)         # pytest's tmp retention


@pytest.mark.slow
def test_two_runs_of_a_stage_on_one_machine_give_byte_identical_metrics(tmp_path):
    """The determinism the pipeline promises: same parameters, same pipeline.threads, two runs from scratch (each
    trains its own models), byte-identical metrics; each checkpoint records its thread count."""
    from advhash.checkpoint import load_checkpoint

    section = yaml.safe_load((ROOT / "profiles" / "default.yaml").read_text())["deep_hashing"]
    section.update(methods=["dph"], bits_list=[16, 64], epochs=2, num_query=50, num_train=200,
                   num_database=400, num_examples=1, pn_max=50)
    metrics = []
    for run in ("first", "second"):
        folder = tmp_path / run
        params = {"pipeline": {"threads": 2}, "deep_hashing": dict(
            section, checkpoint_dir=str(folder / "checkpoints"), figure_dir=str(folder / "figures"),
            metrics_dir=str(folder / "metrics"))}
        (folder / "params.yaml").parent.mkdir(parents=True)
        (folder / "params.yaml").write_text(yaml.safe_dump(params))
        run_notebook("01_deep_hashing", params_path=str(folder / "params.yaml"), output=folder / "report.ipynb",
                     skip_tags=(INVARIANTS_TAG,))        # too small for the claims; the numbers are what is compared
        metrics.append((folder / "metrics" / "01_deep_hashing.json").read_bytes())
        checkpoints = sorted((folder / "checkpoints").glob("*.pt"))
        assert len(checkpoints) == 2 and all(load_checkpoint(path)["threads"] == 2 for path in checkpoints)
    assert metrics[0] == metrics[1], "two runs with the same threads must give the same bytes"
