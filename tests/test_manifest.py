"""advhash.manifest: notebook 01 lists the victims it trained; later notebooks load exactly those, or refuse."""

import json

import pytest
import torch

from helpers import same_weights, stripes, stripes_data

from advhash.data import DATASETS
from advhash.fitting import fit_victims
from advhash.manifest import MANIFEST_NAME, VictimManifest, read_manifest
from advhash.train import encode, fit_hashing_model

pytestmark = pytest.mark.usefixtures("one_thread")

SPLIT = dict(dataset="stripes", root="data", num_query=8, num_train=48, num_database=48, seed=0)
TRAINING = dict(backbone="small_cnn", epochs=1, seed=0, pairs="batch", batch_size=32, optimizer="adam", lr=0.01,
                lr_milestones=(1,))


def load_stripes(root, *, num_query, num_train, num_database, seed, offset=0):
    """A registry loader for the tests: the same stripes for the same split settings."""
    return stripes_data(stripes(num_train, seed=seed + offset), stripes(num_query, seed=seed + 1))


@pytest.fixture
def registry(monkeypatch):
    """``load_dataset`` knows "stripes" and "other-stripes", and records the roots it was given."""
    roots = []

    def loader(offset):
        def load(root, **split):
            roots.append(root)
            return load_stripes(root, offset=offset, **split)
        return load
    monkeypatch.setitem(DATASETS, "stripes", loader(0))
    monkeypatch.setitem(DATASETS, "other-stripes", loader(10))
    return roots


@pytest.fixture
def written(tmp_path, registry, one_thread):
    """Notebook 01's side: two victims trained and listed in tmp_path / "01"."""
    manifest = VictimManifest(tmp_path / "01", split=dict(SPLIT), training=dict(TRAINING))
    data = manifest.load_data(tmp_path)
    models = {(method, 8): manifest.fit(data, method, 8)[0] for method in ("dph", "dpsh")}
    return manifest.write(), data, models


def test_a_reader_loads_exactly_the_listed_models_on_the_same_split(written, tmp_path, registry):
    path, data, models = written
    content = json.loads(path.read_text())
    assert path.name == MANIFEST_NAME and content["split"] == SPLIT and content["training"]["epochs"] == 1
    assert [(v["method"], v["bits"]) for v in content["victims"]] == [("dph", 8), ("dpsh", 8)]
    assert all((path.parent / v["checkpoint"]).is_file() for v in content["victims"])
    source = read_manifest(path.parent)                               # the folder works as well as the file
    again = source.load_data(tmp_path)
    assert registry[-1] == tmp_path / "data", "the data folder is the manifest's, under the project root"
    assert torch.equal(again.train.labels, data.train.labels)
    loaded = source.load(again, "dph", 8)
    assert same_weights(loaded, models["dph", 8]) and not loaded.training
    assert source.fine_tuning == dict(pairs="batch", batch_size=32, optimizer="adam")


def test_fit_victims_loads_the_listed_victims_and_trains_the_others_with_the_manifest_settings(written, tmp_path):
    path, data, models = written
    source = read_manifest(path)
    other = source.load_data(tmp_path, "other-stripes")
    own = tmp_path / "02"
    listed_files = sorted(p.name for p in path.parent.iterdir())
    victims = fit_victims({"stripes": data, "other-stripes": other},
                          {"listed": ("stripes", "dpsh", 8), "seed 1": ("stripes", "dpsh", 8, 1),
                           "other data": ("other-stripes", "dpsh", 8)}, manifest=source, checkpoint_dir=own)
    assert torch.equal(victims["listed"].db_codes, encode(models["dpsh", 8], data.database))
    assert len(list(own.glob("*.pt"))) == 2, "the unlisted victims are trained in the reader's own folder"
    assert sorted(p.name for p in path.parent.iterdir()) == listed_files, "the manifest's folder is only read"
    plain, _ = fit_hashing_model(other, method="dpsh", bits=8, **TRAINING)          # the manifest's settings
    assert torch.equal(victims["other data"].db_codes, encode(plain, other.database))
    seeded, _ = fit_hashing_model(data, method="dpsh", bits=8, **dict(TRAINING, seed=1))
    assert torch.equal(victims["seed 1"].db_codes, encode(seeded, data.database))


def test_a_listed_victim_is_refused_on_other_data_after_another_run_or_when_missing(written, tmp_path):
    path, data, _ = written
    source = read_manifest(path)
    with pytest.raises(KeyError, match=r"lists no hashnet model of 8 bits \(listed: dph 8 bits, dpsh 8 bits\).*"
                                       r"deep_hashing: methods, bits_list"):
        source.load(data, "hashnet", 8)
    other = source.load_data(tmp_path, "other-stripes")
    with pytest.raises(ValueError, match=r"trained on other data than the stripes given \(content digest \w+ vs \w+\)"):
        source.load(other, "dph", 8)           # same name and size, other content: caught by the content digest
    content = json.loads(path.read_text())
    content["training"]["epochs"] = 2                        # the manifest of a 2-epoch run beside 1-epoch files
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"lists dph_8bits_small_cnn_e1_\w+\.pt .* would name it "
                                         r"dph_8bits_small_cnn_e2_\w+\.pt: it lists a run of 1 epochs but its "
                                         r"training settings say 2: the manifest and the checkpoint come from"):
        read_manifest(path).load(data, "dph", 8)
    content["training"]["epochs"] = 1
    path.write_text(json.dumps(content))
    (path.parent / source.victims["dph", 8]).unlink()
    with pytest.raises(FileNotFoundError, match=r"dph_8bits_small_cnn_\w+\.pt, listed in .*victims.json, is missing"):
        read_manifest(path).load(data, "dph", 8)


def test_read_manifest_names_a_missing_or_unreadable_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no victim manifest at .*victims.json: run notebook 01 first"):
        read_manifest(tmp_path)
    path = tmp_path / MANIFEST_NAME
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"victims.json is unreadable \(JSONDecodeError.*rerun notebook 01"):
        read_manifest(path)
    path.write_text(json.dumps(dict(format=1, split=dict(dataset="x"), training=TRAINING, train_digest=None,
                                    victims=[])))
    with pytest.raises(ValueError, match=r"its split lacks \['root', 'num_query'"):
        read_manifest(path)
    path.write_text(json.dumps(dict(format=9, split=SPLIT, training=TRAINING, train_digest=None, victims=[])))
    with pytest.raises(ValueError, match="format 9, this advhash reads format 1"):
        read_manifest(path)


def test_a_listed_victim_is_refused_after_a_change_to_the_training_code(written, monkeypatch):
    """A fix to the training code renames every victim: the manifest names the cause instead of a stale model."""
    import advhash.checkpoint as checkpoint_module
    import advhash.manifest as manifest_module

    path, data, _ = written
    monkeypatch.setattr(checkpoint_module, "code_fingerprint", lambda *modules: "0ther0de")
    monkeypatch.setattr(manifest_module, "code_fingerprint", lambda *modules: "0ther0de")
    with pytest.raises(ValueError, match=r"the training code changed since notebook 01 trained it \(code fingerprint "
                                         r"\w+ vs 0ther0de.*rerun notebook 01"):
        read_manifest(path).load(data, "dph", 8)




def test_a_reader_on_another_thread_count_is_told_to_set_it(written, tmp_path):
    """Notebook 01 trains on the pipeline's thread count, and its checkpoint names hold it; a notebook opened in
    JupyterLab runs at torch's default. The manifest records the count, so such a reader is told how to set it
    (not refused for a missing file), loads the victims once it has, and a fit at another count into the same
    manifest is refused too."""
    path, data, models = written
    assert json.loads(path.read_text())["threads"] == 1
    source = read_manifest(path)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(ValueError, match=r"trained on 1 torch threads.*torch.set_num_threads\(1\).*"
                                             r"OMP_NUM_THREADS=1"):
            source.load(data, "dpsh", 8)
        with pytest.raises(ValueError, match=r"trained on 1 torch threads.*torch.set_num_threads\(1\)"):
            source.fit(data, "hashnet", 8)
        torch.set_num_threads(1)
        assert same_weights(source.load(data, "dpsh", 8), models["dpsh", 8])
    finally:
        torch.set_num_threads(before)


def test_a_deleted_training_image_is_named_not_blamed_on_the_weights(tmp_path):
    """Victims trained on images read from their files (a list-file split loaded with cache=False): one image
    deleted after notebook 01 ran is named, with its list-file line, by the reader's error; not reported as "weights
    file None, which does not exist" (the settings name no weights file)."""
    from PIL import Image

    from advhash.data.dataset import ImageFileSplit

    paths = [tmp_path / "images" / f"{i}.png" for i in range(8)]
    paths[0].parent.mkdir()
    for i, path in enumerate(paths):
        Image.new("RGB", (8, 8), color=(30 * i, 255 - 30 * i, 60)).save(path)
    train = ImageFileSplit(paths, torch.eye(4)[[i % 4 for i in range(8)]], image_size=8,
                           origins=[f"train.txt, line {i + 1}" for i in range(8)])
    data = stripes_data(train)
    manifest = VictimManifest(tmp_path / "01", split=dict(SPLIT), training=dict(TRAINING))
    manifest.fit(data, "dph", 8)
    path = manifest.write()
    paths[3].unlink()
    for read in (lambda source: source.checkpoint_name(data, "dph", 8), lambda source: source.load(data, "dph", 8)):
        with pytest.raises(FileNotFoundError, match=r"image .*images/3\.png \(train\.txt, line 4\) is missing: it was "
                                                    r"moved or deleted .*Put it back") as refused:
            read(read_manifest(path))
        assert "weights" not in str(refused.value)
