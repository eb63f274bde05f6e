"""advhash.checkpoint: atomic writes, clear errors, and the helpers that name checkpoints, whose outputs
are pinned (a kept checkpoint folder is matched by these names: they change only with what they hash). Each pinned
digest is also computed here from its documented formula by a plain reference (hashlib over bytes written out by
hand), so a change to what a name hashes fails even where the code and the pin would move together."""

import hashlib
import struct

import pytest
import torch

import advhash.checkpoint as checkpoint_module
from advhash.checkpoint import (load_checkpoint, model_digest, save_checkpoint, settings_tag, split_digest,
                                train_items_tag)
from advhash.data import InMemorySplit


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "state.pt"
    save_checkpoint({"epoch": 1}, path)

    def broken_save(obj, file):
        file.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train the model first"):
        load_checkpoint(tmp_path / "nothing.pt")


def _tiny_split():
    return InMemorySplit(torch.arange(3 * 4, dtype=torch.uint8).view(3, 1, 2, 2), torch.eye(3)[[0, 2, 1]],
                         texts=torch.tensor([[1.0, 0], [0, 1], [1, 1]]))


def sha1_start(data: bytes, length: int = 8) -> str:
    """The reference of every name: the first ``length`` hex digits of the SHA-1 of ``data``."""
    return hashlib.sha1(data).hexdigest()[:length]


def float32_bytes(*values: float) -> bytes:
    """``values`` as the bytes of a float32 array in memory (native byte order), written out by hand."""
    return struct.pack(f"={len(values)}f", *values)


def test_settings_tag_hashes_the_sorted_settings():
    """settings_tag = SHA-1 of the settings as JSON with sorted keys (json.dumps' default separators ", " and
    ": "; objects JSON lacks by their str), its first 8 hex digits, the run-only settings left out."""
    settings = dict(data="stripes", method="dpsh", bits=16, lr=0.05, milestones=[3, 4], weights=None)
    as_json = b'{"bits": 16, "data": "stripes", "lr": 0.05, "method": "dpsh", "milestones": [3, 4], "weights": null}'
    assert settings_tag(settings) == sha1_start(as_json) == "e5ef2f41"
    assert settings_tag(dict(b=2, a=1)) == settings_tag(dict(a=1, b=2)) == sha1_start(b'{"a": 1, "b": 2}')
    assert settings_tag(dict(a=1, b=2), length=12) == sha1_start(b'{"a": 1, "b": 2}', 12) == "1744f53e00fc"
    assert settings_tag(dict(settings, lr=0.01)) != settings_tag(settings)
    assert settings_tag(dict(lr=0.1, checkpoint_every=3)) == settings_tag(dict(lr=0.1)), "a run-only setting"
    from pathlib import PurePosixPath
    assert settings_tag(dict(weights=PurePosixPath("w/a.pth"))) == sha1_start(b'{"weights": "w/a.pth"}')
    assert settings_tag([3, 1]) == sha1_start(b"[3, 1]"), "a list is hashed as it is, in its order"


def test_train_items_tag_hashes_the_source_indices_or_counts_the_items():
    split = _tiny_split()
    assert train_items_tag(split) == sha1_start(b"[0, 1, 2]") == "c67ba520"      # source indices 0, 1, 2
    split.source_indices = torch.tensor([5, 1, 9])
    assert train_items_tag(split) == sha1_start(b"[5, 1, 9]") == "7d352ec9"

    class NoSourceIndices(torch.utils.data.Dataset):
        def __len__(self):
            return 7

    assert train_items_tag(NoSourceIndices()) == 7


def test_weights_tag_names_a_local_file_by_the_sha1_of_its_bytes(tmp_path):
    from advhash.checkpoint import weights_tag

    path = tmp_path / "backbone.pth"
    path.write_bytes(b"not really weights, but bytes all the same" * 50000)          # 2.1 MB: read in blocks
    assert weights_tag(path) == "sha1:" + sha1_start(path.read_bytes(), 16)
    assert weights_tag(None) == "None" and weights_tag("IMAGENET1K_V1") == "IMAGENET1K_V1"


def test_model_digest_hashes_the_weights():
    """model_digest = SHA-1 over each state-dict entry in order: its name, then its values' float32 bytes."""
    layer = torch.nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(6.0).view(2, 3) / 8)
        layer.bias.copy_(torch.tensor([0.5, -1.0]))
    reference = sha1_start(b"weight" + float32_bytes(0, 0.125, 0.25, 0.375, 0.5, 0.625)
                           + b"bias" + float32_bytes(0.5, -1.0))
    assert model_digest(layer) == reference
    with torch.no_grad():
        layer.bias[0] += 1e-6
    assert model_digest(layer) != reference


def test_split_digest_hashes_images_labels_and_texts():
    """split_digest of an in-memory split = SHA-1 over "images" and the uint8 pixels, "labels" and their float32
    values, "texts" and theirs (those it has), each row by row."""
    split = _tiny_split()
    images, labels = b"images" + bytes(range(12)), b"labels" + float32_bytes(1, 0, 0, 0, 0, 1, 0, 1, 0)
    texts = b"texts" + float32_bytes(1, 0, 0, 1, 1, 1)
    assert split_digest(split) == sha1_start(images + labels + texts) == "e3f371d1"
    assert split_digest(InMemorySplit(split.images, split.labels)) == sha1_start(images + labels)     # no texts
    changed = InMemorySplit(split.images, split.labels, texts=split.texts.flip(0))
    assert split_digest(changed) != split_digest(split)
    assert split_digest(InMemorySplit(None, split.labels, texts=split.texts)) == sha1_start(labels + texts)


def test_naming_helpers_keep_their_old_import_paths():
    import advhash.crossmodal
    import advhash.defenses
    import advhash.train

    assert advhash.defenses.model_digest is model_digest
    assert advhash.crossmodal.split_digest is split_digest
    assert advhash.train.train_items_tag is train_items_tag


def test_a_second_writer_is_refused_and_a_dead_runs_lock_and_temporary_files_are_cleared(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from advhash.checkpoint import checkpoint_lock

    path, lock = tmp_path / "m.pt", tmp_path / "m.pt.lock"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{other.pid}@{socket.gethostname()}")          # a live run holds it
        with pytest.raises(RuntimeError, match=rf"checkpoint .*m.pt is being written by another run \(process "
                                               rf"{other.pid}@.*wait for it to finish"):
            with checkpoint_lock(path):
                pass
        assert lock.read_text().startswith(str(other.pid)), "the holder's lock is left alone"
    finally:
        other.kill()
        other.wait()
    (tmp_path / ".m.pt.x1y2.tmp").write_bytes(b"half a checkpoint")   # the killed run's interrupted write
    with checkpoint_lock(path):                                        # its process is gone: a stale lock
        assert lock.read_text() == f"{os.getpid()}@{socket.gethostname()}"
        assert not (tmp_path / ".m.pt.x1y2.tmp").exists()
        with pytest.raises(RuntimeError, match="being written by another run"):
            with checkpoint_lock(path):                                # this run, a second time: refused too
                pass
    assert not lock.exists(), "released at the end"


def test_training_holds_the_lock_of_its_checkpoint(tmp_path):
    from helpers import StripesSplit

    from advhash.checkpoint import checkpoint_lock
    from advhash.losses import build_loss
    from advhash.models import HashingModel
    from advhash.train import train_hashing

    split = StripesSplit(32)
    model = HashingModel("small_cnn", bits=8, in_channels=1)
    loss = build_loss("dpsh", num_train=len(split), bits=8, num_classes=4)
    with checkpoint_lock(tmp_path / "m.pt"):
        with pytest.raises(RuntimeError, match="being written by another run"):
            train_hashing(model, loss, split, epochs=1, checkpoint_path=tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists(), "refused before the first epoch"
    train_hashing(model, loss, split, epochs=1, checkpoint_path=tmp_path / "m.pt")
    assert (tmp_path / "m.pt").is_file() and not (tmp_path / "m.pt.lock").exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 half a zip", b"not a checkpoint at all"])
def test_an_unreadable_checkpoint_is_named_with_its_path_and_the_fix(tmp_path, content):
    path = tmp_path / "dph_16bits_small_cnn_1a2b3c4d.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"checkpoint .*dph_16bits_small_cnn_1a2b3c4d.pt cannot be read .*delete it "
                                         r"to train that model again"):
        load_checkpoint(path)


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root may write in a read-only folder")
def test_a_read_only_checkpoint_folder_is_refused_before_training(tmp_path):
    from advhash.checkpoint import checkpoint_lock

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=r"cannot write in .*checkpoints, where checkpoint m.pt goes"):
            with checkpoint_lock(folder / "m.pt"):
                pass
    finally:
        folder.chmod(0o755)


def test_split_digest_reads_image_files_and_notices_changes_in_place(tmp_path):
    from PIL import Image

    from advhash.data import ImageFileSplit

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(paths[-1])
    labels = torch.eye(3)
    files = ImageFileSplit(paths, labels, image_size=8)
    before = split_digest(files)
    assert split_digest(ImageFileSplit(paths, labels, image_size=8)) == before
    assert split_digest(ImageFileSplit(paths, labels, image_size=4)) != before, "the decoding is part of the data"
    Image.new("RGB", (8, 8), (0, 0, 9)).save(paths[1])                 # a corrected image, same name
    assert split_digest(files) != before
    memory = _tiny_split()
    first = split_digest(memory)
    memory.images[0, 0, 0, 0] += 1                                      # changed in place: not served from memory
    assert split_digest(memory) != first
    memory.images[0, 0, 0, 0] -= 1
    assert split_digest(memory) == first


def test_a_longer_run_starts_from_the_longest_finished_shorter_one(tmp_path):
    from advhash.checkpoint import resume_shorter_run, run_file

    settings = dict(lr=0.1)
    paths = {epochs: run_file(tmp_path, "dph_8bits_small_cnn", epochs=epochs, settings=settings)
             for epochs in range(1, 6)}
    save_checkpoint({"epoch": 1}, paths[1])
    save_checkpoint({"epoch": 2}, paths[3])                              # an unfinished 3-epoch run
    paths[4].write_bytes(b"truncated")                                   # an unreadable 4-epoch run
    save_checkpoint({"epoch": 1}, run_file(tmp_path, "dph_8bits_small_cnn", epochs=2, settings=dict(lr=0.2)))
    with pytest.warns(UserWarning, match=r"not resuming from .*_e4_\w+\.pt: checkpoint .* cannot be read"):
        assert resume_shorter_run(paths[5]) == paths[1]
    assert paths[5].read_bytes() == paths[1].read_bytes() and load_checkpoint(paths[1])["epoch"] == 1, "a copy"
    assert resume_shorter_run(paths[5]) is None, "an existing checkpoint is left alone"
    assert resume_shorter_run(tmp_path / "model.pt") is None, "not a run file"
    assert not list(tmp_path.glob(".*.tmp"))


def test_checkpoint_file_adds_the_data_the_arithmetic_and_the_code_to_the_callers_settings(tmp_path, monkeypatch):
    from advhash.checkpoint import checkpoint_file, numeric_setting, precision_setting, run_file

    split = InMemorySplit(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.eye(4), source_indices=[3, 1, 2, 0])
    where = dict(epochs=2, settings=dict(lr=0.1), data_name="stripes", train_split=split, precision="fp32",
                 code=("advhash.checkpoint",))
    path = checkpoint_file(tmp_path, "dph_8bits_small_cnn", **where)
    identity = dict(data="stripes", train_items=train_items_tag(split), content=split_digest(split), lr=0.1,
                    threads=torch.get_num_threads(), code=checkpoint_module.code_fingerprint("advhash.checkpoint"))
    assert path == run_file(tmp_path, "dph_8bits_small_cnn", epochs=2, settings=identity)
    assert path.name.startswith("dph_8bits_small_cnn_e2_")
    others = [checkpoint_file(tmp_path, "dph_8bits_small_cnn", **dict(where, **change)) for change in
              (dict(data_name="other"), dict(precision="bf16"), dict(code=("advhash.fingerprint",)),
               dict(settings=dict(lr=0.2)), dict(train_split=InMemorySplit(split.images, torch.eye(4).flip(0))))]
    assert len({path, *others}) == 6, "each part of the identity names the checkpoint"
    monkeypatch.setattr(checkpoint_module.torch, "get_num_threads", lambda: 7)
    assert checkpoint_file(tmp_path, "dph_8bits_small_cnn", **where) != path, "the thread count is in the name"
    assert numeric_setting("fp32") == {"threads": 7} and precision_setting("bf16") == {"precision": "bf16"}
    with pytest.raises(TypeError, match="multiple values for keyword argument 'data'"):
        checkpoint_file(tmp_path, "x", **dict(where, settings=dict(data="mine")))


def test_the_seed_names_the_checkpoint_of_every_trainer(tmp_path, one_thread):
    """Two seeds train two models: in one checkpoint folder, a run with seed 1 trains its own model instead of
    loading seed 0's, for the hashing models, the defenses and the cross-modal models alike."""
    from helpers import DCMH_TRAINING, same_weights, stripes, stripes_data, stripes_pairs

    from advhash.crossmodal import fit_dcmh
    from advhash.defenses import fit_defense
    from advhash.train import fit_hashing_model, hashing_checkpoint_name

    data = stripes_data(stripes(32))
    hashing = dict(method="dpsh", bits=8, epochs=1, batch_size=16)
    names = {seed: hashing_checkpoint_name(data, seed=seed, **hashing) for seed in (0, 1)}
    models = {seed: fit_hashing_model(data, seed=seed, checkpoint_dir=tmp_path / "hashing", **hashing)[0]
              for seed in (0, 1)}
    assert sorted(path.name for path in (tmp_path / "hashing").glob("*.pt")) == sorted(names.values())
    assert not same_weights(models[0], models[1]), "seed 1 trained its own model"
    defense = dict(eps=8 / 255, alpha=2 / 255, steps=1, method="dpsh", epochs=1, batch_size=16)
    for seed in (0, 1):
        fit_defense("saat", data, models[0], seed=seed, checkpoint_dir=tmp_path / "defense", **defense)
    assert len(list((tmp_path / "defense").glob("*.pt"))) == 2
    pairs = stripes_data(stripes_pairs(24))
    for seed in (0, 1):
        fit_dcmh(pairs, bits=8, epochs=1, seed=seed, text_hidden=16, checkpoint_dir=tmp_path / "cross-modal",
                 **DCMH_TRAINING)
    assert len(list((tmp_path / "cross-modal").glob("*.pt"))) == 2


KILLED_RUN = """
import os, sys, time
sys.path.insert(0, sys.argv[2])
import torch
torch.set_num_threads(1)
import advhash.checkpoint as checkpoint
from helpers import StripesSplit
from advhash.losses import build_loss
from advhash.models import HashingModel
from advhash.train import train_hashing

real_save = torch.save
def save_then_hang(state, file):
    if state["epoch"] == 2:                    # the second checkpoint: write half of it, then hang until killed
        file.write(b"half a checkpoint")
        file.flush()
        open(sys.argv[1] + ".writing", "w").close()
        time.sleep(600)
    real_save(state, file)
checkpoint.torch.save = save_then_hang
torch.manual_seed(0)
split = StripesSplit(48)
model = HashingModel("small_cnn", bits=8, in_channels=1)
train_hashing(model, build_loss("dpsh", num_train=48, bits=8, num_classes=4), split, epochs=3, batch_size=16,
              checkpoint_path=sys.argv[1])
"""


def test_a_run_killed_while_writing_leaves_the_last_checkpoint_and_the_next_run_cleans_up_and_resumes(tmp_path,
                                                                                                     one_thread):
    """kill -9 during a checkpoint write (issue 15): the previous checkpoint stays readable, and the next run
    removes the half-written temporary file and the dead run's lock, resumes, and reaches the uninterrupted
    weights bit for bit."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from helpers import StripesSplit, same_weights

    from advhash.losses import build_loss
    from advhash.models import HashingModel
    from advhash.train import train_hashing

    path = tmp_path / "run.pt"
    process = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(path), str(Path(__file__).parent)])
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "run.pt.writing").exists():
            assert process.poll() is None, "the run ended before its second checkpoint"
            assert time.monotonic() < deadline, "the run never reached its second checkpoint"
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    assert load_checkpoint(path)["epoch"] == 1, "the first checkpoint is intact"
    assert list(tmp_path.glob(".run.pt.*.tmp")) and (tmp_path / "run.pt.lock").exists(), "what the kill left"

    def run(checkpoint_path):
        torch.manual_seed(0)
        split = StripesSplit(48)
        model = HashingModel("small_cnn", bits=8, in_channels=1)
        train_hashing(model, build_loss("dpsh", num_train=48, bits=8, num_classes=4), split, epochs=3,
                      batch_size=16, checkpoint_path=checkpoint_path)
        return model

    resumed = run(path)
    assert not list(tmp_path.glob(".run.pt.*.tmp")) and not (tmp_path / "run.pt.lock").exists()
    assert load_checkpoint(path)["epoch"] == 3
    assert same_weights(resumed, run(None))



# Behaviour the mutation tests (make mutants, issue 27) found unguarded: the lock's liveness probe, the first
# difference a refusal names, and a missing image of a file-backed split.

def test_probing_a_live_lock_holder_leaves_it_running_and_another_users_live_process_is_respected(tmp_path,
                                                                                                  monkeypatch):
    import os
    import socket
    import subprocess
    import sys

    from advhash.checkpoint import checkpoint_lock

    path, lock = tmp_path / "m.pt", tmp_path / "m.pt.lock"
    other = subprocess.Popen([sys.executable, "-c", "import signal, time\n"      # any signal would end it (not nohup's)
                              "for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM): signal.signal(s, signal.SIG_DFL)\n"
                              "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "ready"
        lock.write_text(f"{other.pid}@{socket.gethostname()}")
        with pytest.raises(RuntimeError, match="being written by another run"):
            with checkpoint_lock(path):
                pass
        with pytest.raises(subprocess.TimeoutExpired):
            other.wait(timeout=0.3)                                    # the probe sent no signal: still running
    finally:
        other.kill()
        other.wait()

    def not_yours(pid, signal):                                        # a live process of another user
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "kill", not_yours)
    with pytest.raises(RuntimeError, match=rf"process {other.pid}@"):
        with checkpoint_lock(path):
            pass
    assert lock.exists(), "not taken over as stale"


def test_first_difference_names_the_nested_key_and_a_setting_one_side_lacks():
    from advhash.checkpoint import first_difference

    assert first_difference({"a": 1, "m": {"x": 1, "y": 2}}, {"a": 1, "m": {"x": 1, "y": 3}}) == ("m.y", 2, 3)
    assert first_difference({"m": {"x": 1}}, {"m": 3}) == ("m", {"x": 1}, 3), "a dict against a number"
    assert first_difference({"a": 1}, {"a": 1}) is None
    key, stored, expected = first_difference({"a": 1, "z": 3}, {"a": 1})
    assert (key, stored, repr(expected)) == ("z", 3, "(absent)"), "a setting only the file has"
    key, stored, expected = first_difference({}, {"k": None})
    assert (key, repr(stored), expected) == ("k", "(absent)", None), "absent is not None"
    key, stored, expected = first_difference({"k": None}, {})
    assert (key, stored, repr(expected)) == ("k", None, "(absent)")


def test_a_refusal_names_a_setting_only_the_file_has(tmp_path):
    from advhash.checkpoint import CheckpointMismatch, run_file

    path = run_file(tmp_path, "m", epochs=1, settings={"lr": 0.1})
    save_checkpoint({"epoch": 1, "settings": {"lr": 0.1, "margin": 2}}, path.with_name(path.name))
    with pytest.raises(CheckpointMismatch, match=rf"checkpoint {path} .*margin is 2 in the file but \(absent\) here"):
        load_checkpoint(path)


@pytest.mark.parametrize("listed", [True, False])
def test_a_missing_image_of_a_file_backed_split_is_named_with_its_list_line(tmp_path, listed):
    from types import SimpleNamespace

    for i in range(3):
        (tmp_path / f"{i}.bmp").write_bytes(bytes([i]) * 10)
    paths = [tmp_path / f"{i}.bmp" for i in range(3)]
    origins = [f"list.txt, line {i + 1}" for i in range(3)]
    split = SimpleNamespace(paths=paths, labels=torch.eye(3), origins=origins if listed else None)
    split_digest(split)
    paths[1].unlink()
    where = r" \(list.txt, line 2\)" if listed else ""
    with pytest.raises(FileNotFoundError, match=rf"image {paths[1]}{where} is missing: .*Put it back, or fix the list"):
        split_digest(split)


def test_a_file_holding_no_dict_under_a_runs_name_is_refused_as_holding_no_settings(tmp_path):
    from advhash.checkpoint import CheckpointMismatch, run_file

    path = run_file(tmp_path, "m", epochs=1, settings={"lr": 0.1})
    torch.save(torch.zeros(3), path)                                   # a bare tensor saved under the run's name
    with pytest.raises(CheckpointMismatch, match=rf"checkpoint {path} holds no record of the settings"):
        load_checkpoint(path)


def test_a_refusal_counts_the_other_differing_settings_absent_ones_included(tmp_path):
    from advhash.checkpoint import CheckpointMismatch, run_file

    expected = {"a": 9, "b": 8, "c": 3, "e": None}
    path = run_file(tmp_path, "m", epochs=1, settings=expected)
    for stored, more in [({"a": 1, "b": 8, "c": 3, "e": None}, None),
                         ({"a": 1, "b": 2, "c": 3, "e": None}, "1 other setting"),
                         ({"a": 1, "b": 2, "c": 0, "e": None}, "2 other settings"),
                         ({"a": 1, "b": 8, "c": 3, "x": None}, "2 other settings")]:   # e absent, x only in the file
        save_checkpoint({"epoch": 1, "settings": stored}, path.with_name(path.name))
        with pytest.raises(CheckpointMismatch, match=r"a is 1 in the file but 9 here") as caught:
            load_checkpoint(path)
        if more is None:
            assert "(and " not in str(caught.value), "one difference: no others counted"
        else:
            assert f"(and {more})" in str(caught.value)


def test_a_file_renamed_from_another_run_names_both_tags(tmp_path):
    from pathlib import Path

    from advhash.checkpoint import CheckpointMismatch, run_file

    theirs = {"lr": 0.01}
    path = run_file(tmp_path, "m", epochs=1, settings={"lr": 0.1})
    save_checkpoint({"epoch": 1, "settings": theirs}, Path(path))
    with pytest.raises(CheckpointMismatch, match=rf"hash to {settings_tag(theirs)}, its name to "
                                                 rf"{settings_tag({'lr': 0.1})}\)"):
        load_checkpoint(Path(path))                                    # by path alone: the name is the reference


def test_a_checkpoint_that_would_run_code_when_loaded_is_refused_and_the_code_never_runs(tmp_path):
    import os

    marker = tmp_path / "ran"

    class Payload:                                                     # what a planted checkpoint could hold
        def __reduce__(self):
            return os.system, (f"touch {marker}",)
    torch.save({"epoch": 1, "model": Payload()}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match=rf"checkpoint {tmp_path / 'm.pt'} cannot be read \(UnpicklingError: Weights "
                                         r"only load failed.*delete it"):
        load_checkpoint(tmp_path / "m.pt")
    assert not marker.exists(), "loaded with weights_only=True: nothing in the file was executed"


def test_load_checkpoint_puts_the_tensors_where_map_location_says(tmp_path):
    save_checkpoint({"w": torch.ones(2)}, tmp_path / "m.pt")           # e.g. trained on a GPU, loaded on a laptop
    assert load_checkpoint(tmp_path / "m.pt", map_location="meta")["w"].device.type == "meta"
    assert load_checkpoint(tmp_path / "m.pt")["w"].device.type == "cpu"


def test_split_digest_is_remembered_while_the_tensors_live_and_recomputed_when_one_is_replaced(monkeypatch):
    memory = _tiny_split()
    first = split_digest(memory)
    hashed = []
    sha1 = checkpoint_module.hashlib.sha1
    monkeypatch.setattr(checkpoint_module.hashlib, "sha1", lambda *a: hashed.append(1) or sha1(*a))
    assert split_digest(memory) == first and hashed == [], "served from memory (a second at paper scale)"
    memory.labels = torch.eye(3)[[0, 1, 2]]                            # replaced, not changed in place: version 0 again
    assert split_digest(memory) != first and hashed == [1], "another tensor: hashed again"

    class Slotted:                                                     # a split that cannot be weakly referenced
        __slots__ = ("images", "labels", "texts")
    slotted = Slotted()
    slotted.images, slotted.labels, slotted.texts = _tiny_split().images, torch.eye(3)[[0, 2, 1]], _tiny_split().texts
    assert split_digest(slotted) == split_digest(slotted) == first
