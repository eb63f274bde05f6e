"""End to end: a tiny run on real Fashion-MNIST (train, encode, retrieve, beat random), and the paper path of
notebooks 01 and 02 at CI size (list files of JPEGs, AlexNet at 224, the decoded image cache) through the pipeline."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from advhash.data import load_dataset
from advhash.data.fashion import DEBIAN_DIR
from advhash.metrics import mean_average_precision, random_ranking_map
from advhash.pipeline import INVARIANTS_TAG, run_notebook
from advhash.train import encode, fit_hashing_model

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


def flickr_like(root: Path, *, train=16, query=8, extra=8, classes=6) -> Path:
    """FLICKR-25K-style list files (``{train,test,database}_img.txt`` / ``_label.txt``) of generated 500x375
    JPEGs: the database holds the training images and ``extra`` more; the queries are apart."""
    base = root / "FLICKR-25K"
    (base / "images").mkdir(parents=True)
    g = np.random.default_rng(0)
    labels = (g.random((train + extra + query, classes)) < 0.35).astype(int)
    labels[labels.sum(1) == 0, 0] = 1
    for i, row in enumerate(labels):      # a class shows as a brighter band: a little signal to learn
        pixels = g.integers(0, 120, (375, 500, 3), dtype=np.uint8)
        for c in np.flatnonzero(row):
            pixels[60 * c:60 * c + 60] += 100
        Image.fromarray(pixels).save(base / "images" / f"{i}.jpg", quality=85)
    splits = {"train": range(train), "database": range(train + extra), "test": range(train + extra, len(labels))}
    for stem, items in splits.items():
        (base / f"{stem}_img.txt").write_text("".join(f"images/{i}.jpg\n" for i in items))
        (base / f"{stem}_label.txt").write_text("".join(" ".join(map(str, labels[i])) + "\n" for i in items))
    return base


@pytest.mark.slow
def test_the_paper_path_runs_notebooks_01_and_02_end_to_end_on_a_cpu(tmp_path, monkeypatch):
    """The paper profile's structure, sized for CI: FLICKR-25K list files of generated JPEGs decoded once into the
    image cache, AlexNet at 224 with the paper profile's weights name (random weights placed in torch's hub cache,
    and a ResNet-18's for the transfer victim of another backbone), one epoch, a few attack iterations, the three
    losses at the two code lengths and the transfer pool (a second seed, another backbone) that the findings
    compare, notebooks 01 and 02 run by the pipeline as an exploratory run (``pipeline.check_invariants: false``):
    its findings are judged (inconclusive on so few images) and its invariants listed, not enforced, and the
    results are written all the same; the threat model is checked."""
    from torchvision.models import AlexNet_Weights, ResNet18_Weights, alexnet, resnet18

    monkeypatch.setenv("ADVHASH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))      # the weights "downloaded" before: no network
    flickr_like(tmp_path / "data")
    torch.manual_seed(0)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    for net, weights in ((alexnet, AlexNet_Weights), (resnet18, ResNet18_Weights)):
        torch.save(net(weights=None).state_dict(), hub / weights.IMAGENET1K_V1.url.rpartition("/")[2])
    paper = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    outputs = dict(figure_dir=str(tmp_path / "figures"), metrics_dir=str(tmp_path / "metrics"), device="cpu")
    params = {
        "pipeline": {"check_invariants": False},
        "deep_hashing": dict(paper["deep_hashing"], data_root=str(tmp_path / "data"), methods=["dph", "dpsh"],
                             bits_list=[16, 64], epochs=1,
                             batch_size=8, lr_milestones=[], pn_max=16, num_examples=2,
                             checkpoint_dir=str(tmp_path / "checkpoints" / "01"), **outputs),
        "hag": dict(paper["hag"], victims_from=str(tmp_path / "checkpoints" / "01" / "victims.json"),
                    datasets=["flickr25k"], num_attacked=4, bits_list=[16], steps=3, iteration_marks=[0, 1, 3],
                    eps_sweep_255=[8], pgd_steps=2, attack_batch_size=4, transfer_bits=16, num_examples=2,
                    transfer_victims=[["dpsh", "alexnet", 0], ["dpsh", "alexnet", 1], ["dpsh", "resnet18", 0]],
                    checkpoint_dir=str(tmp_path / "checkpoints" / "02"), **outputs)}
    assert params["deep_hashing"]["backbone"] == "alexnet" and params["deep_hashing"]["input_size"] == 224
    assert params["deep_hashing"]["weights"] == "IMAGENET1K_V1"     # DPH for 01's finding, DPSH for 02's victims
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for stem in ("01_deep_hashing", "02_hag"):
        run_notebook(stem, params_path=str(tmp_path / "params.yaml"), output=tmp_path / f"{stem}.ipynb")

    manifest = json.loads((tmp_path / "checkpoints" / "01" / "victims.json").read_text())
    assert [(v["method"], v["bits"]) for v in manifest["victims"]] == [
        (method, bits) for method in ("dph", "dpsh") for bits in (16, 64)]
    assert manifest["training"]["precision"] == "fp32" and manifest["training"]["weights"] == "IMAGENET1K_V1"
    assert len(list((tmp_path / "cache").glob("flickr25k-*.npy"))) == 3, "each split decoded once into the cache"
    deep_hashing = json.loads((tmp_path / "metrics" / "01_deep_hashing.json").read_text())
    assert 0 < deep_hashing["map_at_k"]["dpsh"]["16"] <= 1
    for stem in ("01_deep_hashing", "02_hag"):      # the DVC metrics: a terminal's worth of numbers
        headline = json.loads((tmp_path / "metrics" / f"{stem}_headline.json").read_text())
        numbers = sum(len(v) if isinstance(v, dict) else 1 for key, v in headline.items() if key != "bits")
        assert headline["bits"] == {"01_deep_hashing": 64, "02_hag": 16}[stem] and 0 < numbers <= 20, (stem, headline)
    hag = json.loads((tmp_path / "metrics" / "02_hag.json").read_text())
    assert hag["linf_255_max"] <= 8 + 1e-3 and set(hag["map_hag"]["flickr25k"]) == {"16"}
    assert len(list((tmp_path / "checkpoints" / "02").glob("*.pt"))) == 2, "only the two unlisted victims trained"
    assert not (ROOT / "build" / "staging" / "02_hag").exists(), "the staged results were moved into place"
    report = (tmp_path / "02_hag.ipynb").read_text()
    injected = [cell for cell in json.loads(report)["cells"]
                if "injected-parameters" in cell["metadata"].get("tags", [])]
    assert f'figure_dir = "{tmp_path / "figures"}"' in "".join(injected[0]["source"]), "where its figures went"
    assert "every adversarial example is inside the eps-ball" in report
    for stem in ("01_deep_hashing", "02_hag"):      # the findings judged, the invariants listed rather than enforced
        text = (tmp_path / f"{stem}.ipynb").read_text()
        assert "check_invariants = False" in text and "**Findings" in text and "invariants hold" in text, stem
        assert json.loads((tmp_path / "metrics" / f"{stem}_findings.json").read_text()), stem


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
