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
from advhash.pipeline import CLAIMS_TAG, run_notebook
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
    image cache, AlexNet at 224 from a local weights file, one epoch, a few attack iterations, notebooks 01 and 02
    run by the pipeline as an exploratory run (``pipeline.check_claims: false``): its statistical claims cannot
    hold on so few images, so they are listed, not enforced, and the results are written all the same; the threat
    model is checked."""
    from torchvision.models import alexnet

    monkeypatch.setenv("ADVHASH_CACHE", str(tmp_path / "cache"))
    flickr_like(tmp_path / "data")
    torch.manual_seed(0)
    torch.save(alexnet(weights=None).state_dict(), tmp_path / "alexnet.pth")
    paper = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    outputs = dict(figure_dir=str(tmp_path / "figures"), metrics_dir=str(tmp_path / "metrics"), device="cpu")
    params = {
        "pipeline": {"check_claims": False},
        "deep_hashing": dict(paper["deep_hashing"], data_root=str(tmp_path / "data"), methods=["dpsh"],
                             bits_list=[16], weights=str(tmp_path / "alexnet.pth"), epochs=1, batch_size=8,
                             lr_milestones=[], pn_max=16, num_examples=2,
                             checkpoint_dir=str(tmp_path / "checkpoints" / "01"), **outputs),
        "hag": dict(paper["hag"], victims_from=str(tmp_path / "checkpoints" / "01" / "victims.json"),
                    datasets=["flickr25k"], num_attacked=4, bits_list=[16], steps=3, iteration_marks=[0, 3],
                    eps_sweep_255=[8], pgd_steps=2, attack_batch_size=4, transfer_bits=16, num_examples=2,
                    transfer_victims=[["dpsh", "alexnet", 0], ["dpsh", "alexnet", 1], ["dpsh", "alexnet", 2]],
                    checkpoint_dir=str(tmp_path / "checkpoints" / "02"), **outputs)}
    assert params["deep_hashing"]["backbone"] == "alexnet" and params["deep_hashing"]["input_size"] == 224
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for stem in ("01_deep_hashing", "02_hag"):
        run_notebook(stem, params_path=str(tmp_path / "params.yaml"), output=tmp_path / f"{stem}.ipynb")

    manifest = json.loads((tmp_path / "checkpoints" / "01" / "victims.json").read_text())
    assert [(v["method"], v["bits"]) for v in manifest["victims"]] == [("dpsh", 16)]
    assert manifest["training"]["precision"] == "fp32" and manifest["training"]["weights"].endswith("alexnet.pth")
    assert len(list((tmp_path / "cache").glob("flickr25k-*.npy"))) == 3, "each split decoded once into the cache"
    deep_hashing = json.loads((tmp_path / "metrics" / "01_deep_hashing.json").read_text())
    assert 0 < deep_hashing["map_at_k"]["dpsh"]["16"] <= 1
    for stem in ("01_deep_hashing", "02_hag"):      # the DVC metrics: a terminal's worth of numbers
        headline = json.loads((tmp_path / "metrics" / f"{stem}_headline.json").read_text())
        numbers = sum(len(v) if isinstance(v, dict) else 1 for key, v in headline.items() if key != "bits")
        assert headline["bits"] == 16 and 0 < numbers <= 20, (stem, headline)
    hag = json.loads((tmp_path / "metrics" / "02_hag.json").read_text())
    assert hag["linf_255_max"] <= 8 + 1e-3 and set(hag["map_hag"]["flickr25k"]) == {"16"}
    assert len(list((tmp_path / "checkpoints" / "02").glob("*.pt"))) == 2, "only the two unlisted victims trained"
    assert not (ROOT / "build" / "staging" / "02_hag").exists(), "the staged results were moved into place"
    report = (tmp_path / "02_hag.ipynb").read_text()
    injected = [cell for cell in json.loads(report)["cells"]
                if "injected-parameters" in cell["metadata"].get("tags", [])]
    assert f'figure_dir = "{tmp_path / "figures"}"' in "".join(injected[0]["source"]), "where its figures went"
    assert "every adversarial example is inside the eps-ball" in report
    for stem in ("01_deep_hashing", "02_hag"):      # the claims ran, and were listed rather than enforced
        text = (tmp_path / f"{stem}.ipynb").read_text()
        assert "check_claims = False" in text and ("NOT HELD" in text or "all claims hold" in text), stem


@pytest.mark.slow
def test_two_runs_of_a_stage_on_one_machine_give_byte_identical_metrics(tmp_path):
    """The determinism the pipeline promises: same parameters, same pipeline.threads, two runs from scratch (each
    trains its own models), byte-identical metrics; each checkpoint records its thread count."""
    from advhash.checkpoint import load_checkpoint

    section = yaml.safe_load((ROOT / "profiles" / "default.yaml").read_text())["deep_hashing"]
    section.update(methods=["dph", "hashnet"], bits_list=[16], epochs=2, num_query=50, num_train=200,
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
                     skip_tags=(CLAIMS_TAG,))        # too small for the claims; the numbers are what is compared
        metrics.append((folder / "metrics" / "01_deep_hashing.json").read_bytes())
        checkpoints = sorted((folder / "checkpoints").glob("*.pt"))
        assert len(checkpoints) == 2 and all(load_checkpoint(path)["threads"] == 2 for path in checkpoints)
    assert metrics[0] == metrics[1], "two runs with the same threads must give the same bytes"
