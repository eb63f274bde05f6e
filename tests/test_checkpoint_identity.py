"""A checkpoint found by name (its own folder, a ``reuse_from`` folder, a victim manifest) is loaded only when the
settings stored inside it are the ones that name it (advhash.checkpoint.check_settings): a file copied or renamed
from another run, or written before checkpoints recorded their settings, is refused, naming the file, the first
difference and the fix; never loaded as if it were this run's."""

import json
import shutil

import pytest
import torch

from helpers import SSAH_TRAINING, fresh_model, same_weights, stripes, stripes_data, stripes_pairs

from advhash.checkpoint import RUN_FILE, load_checkpoint, run_file, save_checkpoint
from advhash.crossmodal import fit_dcmh, fit_ssah
from advhash.defenses import CgAT, fit_defended_model
from advhash.manifest import VictimManifest, read_manifest
from advhash.train import fit_hashing_model, hashing_checkpoint_name, load_trained_model

pytestmark = pytest.mark.usefixtures("one_thread")

TRAINING = dict(method="dph", epochs=1, batch_size=32, pairs="batch", optimizer="adam", lr=0.01)


@pytest.fixture(scope="module")
def data():
    return stripes_data(stripes(48, seed=0), stripes(8, seed=1))


def test_a_model_trained_on_other_data_copied_into_the_own_folder_is_refused(tmp_path, data):
    """The run's settings (lr, bits, ...) match, only the training data differ: the file's name is not what
    proves it is this run's model, the settings inside are."""
    other = stripes_data(stripes(48, seed=5), stripes(8, seed=1))
    fit_hashing_model(other, bits=8, checkpoint_dir=tmp_path / "other", **TRAINING)
    (trained_elsewhere,) = (tmp_path / "other").glob("*.pt")
    own = tmp_path / "own" / hashing_checkpoint_name(data, bits=8, **TRAINING)
    own.parent.mkdir()
    shutil.copyfile(trained_elsewhere, own)
    with pytest.raises(ValueError, match=rf"checkpoint .*own/{own.name} was trained with other settings than this "
                                         r"run's.*: content is '\w+' in the file but '\w+' here.*Delete it and "
                                         r"rerun the stage"):
        fit_hashing_model(data, bits=8, checkpoint_dir=tmp_path / "own", **TRAINING)
    assert own.is_file(), "the refused file is left where it is"


def test_another_runs_checkpoint_renamed_in_a_reuse_from_folder_is_refused(tmp_path, data):
    """A file of lr 0.05 given the name of the lr 0.01 run in a folder searched by ``reuse_from``."""
    fit_hashing_model(data, bits=8, checkpoint_dir=tmp_path / "first", **dict(TRAINING, lr=0.05))
    (written,) = (tmp_path / "first").glob("*.pt")
    renamed = written.with_name(hashing_checkpoint_name(data, bits=8, **TRAINING))
    written.rename(renamed)
    with pytest.raises(ValueError, match=rf"checkpoint .*first/{renamed.name} was trained with other settings .*"
                                         r"lr is 0\.05 in the file but 0\.01 here"):
        fit_hashing_model(data, bits=8, checkpoint_dir=tmp_path / "own", reuse_from=(tmp_path / "first",),
                          **TRAINING)
    assert not (tmp_path / "own").exists(), "nothing trained, nothing loaded"


def test_a_checkpoint_without_recorded_settings_is_refused_as_older(tmp_path, data):
    fit_hashing_model(data, bits=8, checkpoint_dir=tmp_path, **TRAINING)
    (path,) = tmp_path.glob("*.pt")
    state = torch.load(path, weights_only=True)
    del state["settings"]                                  # as advhash wrote checkpoints before recording them
    torch.save(state, path)
    with pytest.raises(ValueError, match=rf"checkpoint .*{path.name} holds no record of the settings it was trained "
                                         r"with: it was written by an older advhash.*delete it"):
        fit_hashing_model(data, bits=8, checkpoint_dir=tmp_path, **TRAINING)


def test_the_settings_are_stored_as_plain_types_and_a_renamed_file_is_refused_when_loaded_by_path(tmp_path, data):
    model, _ = fit_hashing_model(data, bits=8, checkpoint_dir=tmp_path, lr_milestones=(1,), **TRAINING)
    (path,) = tmp_path.glob("*.pt")
    settings = torch.load(path, weights_only=True)["settings"]
    assert settings["lr_milestones"] == [1] and settings["bits"] == 8 and settings["data"] == "stripes"
    assert same_weights(load_trained_model(path), model)
    renamed = path.with_name(RUN_FILE.sub(r"\g<stem>_e\g<epochs>_0000abcd.pt", path.name))
    path.rename(renamed)
    with pytest.raises(ValueError, match=rf"checkpoint .*{renamed.name} holds the settings of another run than its "
                                         r"name says .*copied or renamed"):
        load_trained_model(renamed)


SPLIT = dict(dataset="stripes", root="data", num_query=8, num_train=48, num_database=48, seed=0)


@pytest.fixture
def registry(monkeypatch):
    from advhash.data import DATASETS

    monkeypatch.setitem(DATASETS, "stripes", lambda root, num_query, num_train, num_database, seed:
                        stripes_data(stripes(num_train, seed=seed), stripes(num_query, seed=seed + 1)))


def test_a_32_bit_victim_copied_under_the_16_bit_name_of_a_manifest_is_refused(tmp_path, registry):
    """Notebook 01's folder holds a 16-bit and a 32-bit DPH victim; the 32-bit file is copied over the 16-bit one.
    A reader asking for 16 bits is refused instead of attacking a 32-bit model labelled 16 bits."""
    training = {key: value for key, value in TRAINING.items() if key != "method"}
    manifest = VictimManifest(tmp_path / "01", split=dict(SPLIT), training=training)
    data = manifest.load_data(tmp_path)
    for bits in (16, 32):
        manifest.fit(data, "dph", bits)
    path = manifest.write()
    sixteen, thirty_two = (path.parent / manifest.victims["dph", bits] for bits in (16, 32))
    original = torch.load(sixteen, weights_only=True)
    shutil.copyfile(thirty_two, sixteen)
    with pytest.raises(ValueError, match=rf"checkpoint .*01/{sixteen.name} was trained with other settings .*: "
                                         r"bits is 32 in the file but 16 here"):
        read_manifest(path).load(data, "dph", 16)
    state = torch.load(thirty_two, weights_only=True)
    state["settings"] = original["settings"]        # the 16-bit settings written into the 32-bit model's file
    torch.save(state, sixteen)
    with pytest.raises(ValueError, match=rf"{sixteen.name}, listed in .*victims.json for dph 16 bits, holds a model "
                                         r"of bits 32, not 16"):
        read_manifest(path).load(data, "dph", 16)


def test_a_moved_weights_file_is_named_by_the_manifest_not_blamed_on_the_data(tmp_path, registry):
    from torchvision.models import resnet18

    weights = tmp_path / "weights" / "resnet18.pth"
    weights.parent.mkdir()
    torch.save(resnet18(weights=None).state_dict(), weights)
    training = dict(TRAINING, backbone="resnet18", weights=str(weights))
    del training["method"]
    manifest = VictimManifest(tmp_path / "01", split=dict(SPLIT), training=training)
    data = manifest.load_data(tmp_path)
    manifest.fit(data, "dph", 8)
    path = manifest.write()
    weights.rename(tmp_path / "resnet18.pth")                           # moved after notebook 01 ran
    with pytest.raises(FileNotFoundError, match=r"victim manifest .*victims.json lists victims trained from "
                                                r"weights file .*weights/resnet18.pth, which does not exist: it was "
                                                r"moved, renamed or deleted .*Put it back") as refused:
        read_manifest(path).load(data, "dph", 8)
    assert "the data given" not in str(refused.value), "the data is not blamed"
    assert json.loads(path.read_text())["training"]["weights"] == str(weights)


def test_a_longer_run_does_not_start_from_another_runs_file_renamed_as_its_shorter_run(tmp_path):
    """``resume_shorter_run`` copies a finished shorter run to start a longer one: a file of lr 0.2 renamed as the
    1-epoch run of lr 0.1 is refused, not copied."""
    from advhash.checkpoint import resume_shorter_run, run_file, save_checkpoint

    other = save_checkpoint({"epoch": 1}, run_file(tmp_path, "dph_8bits_small_cnn", epochs=1, settings=dict(lr=0.2)))
    shorter = run_file(tmp_path, "dph_8bits_small_cnn", epochs=1, settings=dict(lr=0.1))
    other.rename(shorter)
    longer = run_file(tmp_path, "dph_8bits_small_cnn", epochs=3, settings=dict(lr=0.1))
    with pytest.raises(ValueError, match=rf"checkpoint .*{shorter.name} was trained with other settings .*lr is 0.2 "
                                         r"in the file but 0.1 here"):
        resume_shorter_run(longer)
    assert not longer.exists()


def test_settings_with_int_keys_or_nan_name_and_load_their_own_file(tmp_path):
    """A checkpoint stores its settings as JSON makes them (int keys become strings, in another order: "10" sorts
    before "2"); the file is still its run's when loaded by its plain path (checked against the tag of its name) and
    through the run's own path, and keys of mixed types or a NaN setting do not make the run refuse its own file."""
    settings = dict(lr=0.1, schedule={2: 0.01, 10: 0.001}, margin=float("nan"), mixed={1: "a", "b": 2})
    path = save_checkpoint({"epoch": 1}, run_file(tmp_path, "dph_8bits_small_cnn", epochs=1, settings=settings))
    assert load_checkpoint(tmp_path / path.name)["settings"]["schedule"] == {"2": 0.01, "10": 0.001}
    again = run_file(tmp_path, "dph_8bits_small_cnn", epochs=1, settings=settings)
    assert again == path and load_checkpoint(again)["epoch"] == 1
    other = run_file(tmp_path, "dph_8bits_small_cnn", epochs=1, settings=dict(settings, schedule={2: 0.01, 10: 0.01}))
    path.rename(other)
    with pytest.raises(ValueError, match=r"was trained with other settings .*: schedule\.10 is 0\.001 in the file but "
                                         r"0\.01 here"):
        load_checkpoint(other)
    flag = save_checkpoint({"epoch": 1}, run_file(tmp_path, "x", epochs=1, settings=dict(flag=True)))
    with pytest.raises(ValueError, match=r"settings is \{'flag': True\} in the file but \{'flag': 1\} here"):
        load_checkpoint(flag, settings=dict(flag=1))          # True == 1 in Python, but they name other files


CROSS_MODAL = dict(dcmh=(fit_dcmh, dict(text_hidden=16, batch_size=16, lr=0.001, optimizer="adam")),
                   ssah=(fit_ssah, dict(SSAH_TRAINING, hidden=32, batch_size=16)))


@pytest.mark.parametrize("trainer", CROSS_MODAL)
def test_a_cross_modal_model_of_another_seed_or_data_copied_under_this_runs_name_is_refused(tmp_path, trainer):
    """Notebook 03's DCMH and SSAH checkpoints are checked as the hashing models are: a file trained with seed 1, or
    on other pairs, copied over the seed-0 run's file is refused when that run looks for it, and left as it is."""
    fit, settings = CROSS_MODAL[trainer]
    data = stripes_data(stripes_pairs(32, seed=2))
    fit(data, bits=8, epochs=1, checkpoint_dir=tmp_path / "own", seed=0, **settings)
    (own,) = (tmp_path / "own").glob("*.pt")
    fit(data, bits=8, epochs=1, checkpoint_dir=tmp_path / "seed", seed=1, **settings)
    fit(stripes_data(stripes_pairs(32, seed=3)), bits=8, epochs=1, checkpoint_dir=tmp_path / "data", seed=0,
        **settings)
    for folder, difference in (("seed", r"seed is 1 in the file but 0 here"),
                               ("data", r"content is '\w+' in the file but '\w+' here")):
        (other,) = (tmp_path / folder).glob("*.pt")
        shutil.copyfile(other, own)
        with pytest.raises(ValueError, match=rf"checkpoint .*own/{own.name} was trained with other settings than this "
                                             rf"run's.*: {difference}"):
            fit(data, bits=8, epochs=1, checkpoint_dir=tmp_path / "own", seed=0, **settings)
        assert own.read_bytes() == other.read_bytes(), "the refused file is left as it is"


def defended(data, folder, *, eps, reuse_from=(), evaluate=None):
    """A 1-epoch CgAT fine-tune of a fresh 8-bit model on ``data`` (64 stripes), checkpointed in ``folder``."""
    return fit_defended_model(data, fresh_model(seed=0, bits=8), CgAT(num_train=64, bits=8, num_classes=4, steps=1,
                                                                     eps=eps),
                              method="dpsh", epochs=1, checkpoint_dir=folder, reuse_from=reuse_from,
                              evaluate=evaluate, batch_size=32)


def test_another_defense_runs_checkpoint_renamed_in_a_reuse_from_folder_is_refused(tmp_path):
    """Notebook 05 reuses notebook 04's defended models by name: an eps 8/255 fine-tune renamed as the eps 4/255
    one there is refused, naming the setting, not loaded as the 4/255 model."""
    data = stripes_data(stripes(64), stripes(16, seed=1))
    defended(data, tmp_path / "first", eps=8 / 255)
    defended(data, tmp_path / "probe", eps=4 / 255)
    (written,) = (tmp_path / "first").glob("*.pt")
    (name,) = [path.name for path in (tmp_path / "probe").glob("*.pt")]
    written.rename(tmp_path / "first" / name)
    with pytest.raises(ValueError, match=rf"checkpoint .*first/{name} was trained with other settings .*"
                                         r"defense\.eps is 0\.031\d* in the file but 0\.015\d* here"):
        defended(data, tmp_path / "own", eps=4 / 255, reuse_from=(tmp_path / "first",))
    assert not (tmp_path / "own").exists(), "nothing trained, nothing loaded"


def test_a_matching_defended_run_in_a_reuse_from_folder_is_loaded_not_retrained(tmp_path):
    """The settings check refuses only other runs: the same run in a ``reuse_from`` folder is read (no epoch
    trained, nothing written), its history served, even when settings hold int keys (an ``evaluate`` whose config
    has a per-size table), and the file loads by its plain path too."""
    data = stripes_data(stripes(64), stripes(16, seed=1))
    epochs = []

    def evaluate(model):
        epochs.append(1)
        return {"probe": 0.5}
    evaluate.config = dict(queries=16, topk={100: "mAP@100", 20: "mAP@20"})
    trained, history = defended(data, tmp_path / "first", eps=8 / 255, evaluate=evaluate)
    assert len(epochs) == 1
    (written,) = (tmp_path / "first").glob("*.pt")
    before = written.read_bytes()
    reused, reused_history = defended(data, tmp_path / "own", eps=8 / 255, evaluate=evaluate,
                                      reuse_from=(tmp_path / "first",))
    assert len(epochs) == 1, "no epoch trained"
    assert not (tmp_path / "own").exists() and written.read_bytes() == before
    assert same_weights(reused, trained) and reused_history == history
    assert same_weights(load_trained_model(written), trained)
