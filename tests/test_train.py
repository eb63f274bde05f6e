"""The training loop (advhash.train): seeded determinism, resume after interruption, checkpoints that load
with weights_only, reuse of another folder's finished checkpoint, code extraction."""

import re

import pytest
import torch

from advhash.checkpoint import load_checkpoint
from advhash.losses import build_loss
from advhash.models import HashingModel
from advhash.train import encode, epoch_order, load_trained_model, train_hashing


class StripesSplit(torch.utils.data.Dataset):
    """A tiny in-memory split: class c brightens horizontal stripe c (no fast ``batch`` path)."""

    def __init__(self, n=96, classes=4, seed=0):
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, classes, (n,), generator=g)
        self.labels = torch.nn.functional.one_hot(y, classes).float()
        self.images = torch.rand(n, 1, 16, 16, generator=g) * 0.3
        for c in range(classes):
            self.images[y == c, :, 4 * c:4 * c + 4, :] += 0.6

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i], i


def _run(split, *, epochs, checkpoint_path=None, loss_name="dpsh", seed=0):
    torch.manual_seed(seed)
    model = HashingModel("small_cnn", bits=8, in_channels=1)
    loss = build_loss(loss_name, num_train=len(split), bits=8, num_classes=4)
    history = train_hashing(model, loss, split, epochs=epochs, batch_size=32, lr=0.05, seed=seed,
                            checkpoint_path=checkpoint_path)
    return model, history


def test_same_seed_same_weights():
    split = StripesSplit()
    first, history_a = _run(split, epochs=2)
    second, history_b = _run(split, epochs=2)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    assert [r["loss"] for r in history_a] == [r["loss"] for r in history_b]


def test_epoch_order_depends_on_seed_and_epoch_only():
    assert torch.equal(epoch_order(10, seed=3, epoch=1), epoch_order(10, seed=3, epoch=1))
    assert not torch.equal(epoch_order(50, seed=3, epoch=1), epoch_order(50, seed=3, epoch=2))


@pytest.mark.parametrize("loss_name", ["dph", "hashnet"])
def test_interrupted_run_resumes_to_identical_weights(tmp_path, loss_name):
    split = StripesSplit()
    uninterrupted, history = _run(split, epochs=3, loss_name=loss_name)
    path = tmp_path / "model.pt"
    _run(split, epochs=1, checkpoint_path=path, loss_name=loss_name)        # "interrupted" after epoch 1
    assert load_checkpoint(path)["epoch"] == 1
    resumed, resumed_history = _run(split, epochs=3, checkpoint_path=path, loss_name=loss_name)
    for a, b in zip(uninterrupted.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert [r["loss"] for r in resumed_history] == [r["loss"] for r in history]


def test_finished_checkpoint_is_loaded_not_retrained(tmp_path):
    split = StripesSplit()
    path = tmp_path / "model.pt"
    trained, _ = _run(split, epochs=2, checkpoint_path=path)
    stamp = path.stat().st_mtime_ns
    again, history = _run(split, epochs=2, checkpoint_path=path)
    assert path.stat().st_mtime_ns == stamp
    assert len(history) == 2
    assert torch.equal(encode(trained, split), encode(again, split))
    assert torch.equal(encode(load_trained_model(path), split), encode(trained, split))


def test_checkpoint_of_another_run_is_refused_not_overwritten(tmp_path):
    split = StripesSplit()
    path = tmp_path / "model.pt"
    _run(split, epochs=1, checkpoint_path=path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="different run.*seed"):
        _run(split, epochs=2, checkpoint_path=path, seed=1)
    assert path.read_bytes() == before


def test_checkpoints_load_with_weights_only(tmp_path):
    split = StripesSplit()
    path = tmp_path / "model.pt"
    _run(split, epochs=1, checkpoint_path=path)
    state = torch.load(path, weights_only=True)
    assert set(state) >= {"model", "optimizer", "loss", "epoch", "history", "run_config"}


def test_loss_built_for_another_split_size_is_refused():
    split = StripesSplit(n=40)
    model = HashingModel("small_cnn", bits=8, in_channels=1)
    loss = build_loss("dph", num_train=41, bits=8, num_classes=4)
    with pytest.raises(ValueError, match="num_train=len"):
        train_hashing(model, loss, split, epochs=1)


def test_encode_gives_binary_codes_in_eval_mode():
    split = StripesSplit(n=40)
    model, _ = _run(split, epochs=1)
    model.train()
    codes = encode(model, split, batch_size=16)
    assert codes.shape == (40, 8)
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}
    assert model.training  # mode restored
    assert torch.equal(codes, encode(model, split.images))


def test_finished_checkpoint_in_another_folder_is_reused_read_only(tmp_path):
    from advhash.data import HashingData, InMemorySplit
    from advhash.train import fit_hashing_model

    stripes = StripesSplit(n=64)
    split = InMemorySplit((stripes.images * 255).to(torch.uint8), stripes.labels)
    data = HashingData("stripes", train=split, query=split, database=split, class_names=list("abcd"))
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    trained, _ = fit_hashing_model(data, method="dph", bits=8, epochs=1, checkpoint_dir=first_dir, batch_size=32)
    (written,) = first_dir.iterdir()
    stamp = written.stat().st_mtime_ns
    reused, history = fit_hashing_model(data, method="dph", bits=8, epochs=1, checkpoint_dir=second_dir,
                                        reuse_from=(first_dir,), batch_size=32)
    assert written.stat().st_mtime_ns == stamp and not second_dir.exists()
    assert len(history) == 1
    for a, b in zip(trained.state_dict().values(), reused.state_dict().values()):
        assert torch.equal(a, b)
    # other settings are not taken from the other folder
    fit_hashing_model(data, method="dph", bits=8, epochs=1, checkpoint_dir=second_dir, reuse_from=(first_dir,),
                      batch_size=16)
    assert len(list(second_dir.iterdir())) == 1


def test_checkpoint_name_says_the_run_and_hashes_what_determines_its_weights(tmp_path, monkeypatch):
    """A kept (DVC persist) checkpoint folder is matched by file name: the name changes with the settings, the
    epochs, the data's content and the training code, and with nothing else."""
    from helpers import stripes, stripes_data

    import advhash.checkpoint as checkpoint_module
    from advhash.train import fit_hashing_model, hashing_checkpoint_name

    data = stripes_data(stripes(64), stripes(16, seed=1))
    settings = dict(method="hashnet", bits=8, epochs=1, batch_size=32)
    fit_hashing_model(data, checkpoint_dir=tmp_path, **settings)
    name = hashing_checkpoint_name(data, **settings)
    assert [path.name for path in tmp_path.glob("*.pt")] == [name]
    assert re.fullmatch(r"hashnet_8bits_small_cnn_e1_[0-9a-f]{8}\.pt", name)
    assert hashing_checkpoint_name(stripes_data(stripes(64), stripes(16, seed=1)), **settings) == name
    assert hashing_checkpoint_name(data, **dict(settings, checkpoint_every=2)) == name, "cadence is not identity"
    others = {"lr": hashing_checkpoint_name(data, **dict(settings, lr=0.02)),
              "epochs": hashing_checkpoint_name(data, **dict(settings, epochs=2))}
    flipped = stripes(64)
    flipped.images[0, 0, 0, 0] ^= 1                       # one pixel of one training image
    others["pixel"] = hashing_checkpoint_name(stripes_data(flipped, stripes(16, seed=1)), **settings)
    relabelled = stripes(64)
    relabelled.labels[0] = relabelled.labels[0].roll(1)
    others["label"] = hashing_checkpoint_name(stripes_data(relabelled, stripes(16, seed=1)), **settings)
    monkeypatch.setattr(checkpoint_module, "code_fingerprint", lambda *modules: "0ther0de")
    others["code"] = hashing_checkpoint_name(data, **settings)
    assert len(set(others.values()) | {name}) == len(others) + 1, others


def test_a_code_fix_retrains_and_a_finished_run_serves_only_its_own_epoch_count(tmp_path, monkeypatch):
    """Stale models after a change (issue 15): asking for 1 epoch after a 3-epoch run trains 1 epoch (not the
    3-epoch model); a 3-epoch run after a 2-epoch one resumes from it and equals 3 epochs at once, bit for bit;
    a change to the training code trains a new model beside the old one."""
    from helpers import same_weights, stripes, stripes_data

    import advhash.checkpoint as checkpoint_module
    from advhash.train import fit_hashing_model

    data = stripes_data(stripes(64), stripes(16, seed=1))
    settings = dict(method="dpsh", bits=8, batch_size=32, lr_milestones=(2,))
    direct = {epochs: fit_hashing_model(data, epochs=epochs, **settings)[0] for epochs in (1, 3)}
    folder = tmp_path / "kept"
    fit_hashing_model(data, epochs=2, checkpoint_dir=folder, **settings)
    three, history = fit_hashing_model(data, epochs=3, checkpoint_dir=folder, **settings)
    assert same_weights(three, direct[3]) and [row["epoch"] for row in history] == [1, 2, 3]
    one, history = fit_hashing_model(data, epochs=1, checkpoint_dir=folder, **settings)
    assert same_weights(one, direct[1]) and len(history) == 1
    assert sorted(path.name.split("_")[4] for path in folder.glob("*.pt")) == ["e1", "e2", "e3"]
    stamps = {path.name: path.stat().st_mtime_ns for path in folder.glob("*.pt")}
    monkeypatch.setattr(checkpoint_module, "code_fingerprint", lambda *modules: "0ther0de")
    fit_hashing_model(data, epochs=3, checkpoint_dir=folder, **settings)
    assert len(list(folder.glob("*.pt"))) == 4, "the new code trained its own model"
    assert all(path.stat().st_mtime_ns == stamps[path.name] for path in folder.glob("*.pt") if path.name in stamps)


def test_a_checkpoint_past_the_epochs_asked_for_is_refused(tmp_path):
    split = StripesSplit()
    path = tmp_path / "model.pt"
    _run(split, epochs=2, checkpoint_path=path)
    with pytest.raises(ValueError, match=r"model.pt holds 2 epochs, more than the 1 asked for"):
        _run(split, epochs=1, checkpoint_path=path)


def test_asking_for_cuda_without_it_is_a_clear_error_and_auto_falls_back_to_the_cpu():
    from advhash.utils import resolve_device

    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device 'cuda' asks for CUDA, but this torch .* sees no CUDA device; "
                                             r"set device to \"auto\" or \"cpu\""):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_interrupted_run_resumes_on_the_gpu_from_its_checkpoint(tmp_path):
    """The checkpoint is loaded with map_location=cuda, so its RNG states arrive on the GPU: the resume must
    restore them (torch only takes CPU byte tensors) and continue the run."""
    split = StripesSplit()
    path = tmp_path / "model.pt"

    def run(epochs, checkpoint_path):
        torch.manual_seed(0)
        model = HashingModel("small_cnn", bits=8, in_channels=1)
        loss = build_loss("dpsh", num_train=len(split), bits=8, num_classes=4)
        train_hashing(model, loss, split, epochs=epochs, batch_size=32, lr=0.05, checkpoint_path=checkpoint_path,
                      device="cuda")
        return model

    uninterrupted = run(3, None)
    run(1, path)
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and "cuda_rng" in state
    resumed = run(3, path)
    assert load_checkpoint(path)["epoch"] == 3
    for a, b in zip(uninterrupted.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)     # cuDNN may order its sums differently


def test_image_files_are_decoded_by_dataloader_workers_in_the_given_order(tmp_path):
    from PIL import Image

    from advhash.data.dataset import ImageFileSplit
    from advhash.train import iterate_batches

    paths = []
    for i in range(10):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (9, 7), color=(25 * i, 0, 255 - 25 * i)).save(paths[-1])
    split = ImageFileSplit(paths, torch.eye(10), image_size=8)
    order = torch.tensor([3, 1, 4, 0, 5, 9, 2, 6, 8, 7])
    batches = list(iterate_batches(split, order, 4))
    assert [len(indices) for _, _, indices in batches] == [4, 4, 2]
    for images, labels, indices in batches:
        expected_images, expected_labels, _ = split.batch(indices)
        assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_in_memory_split_gives_the_same_batches_held_on_the_gpu():
    from helpers import stripes

    split = stripes(40, seed=3)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    for device in ("cpu", "cuda"):
        images, labels, _ = split.batch(order[:16], device=device)
        assert images.device.type == device
        if device == "cuda":
            torch.testing.assert_close(images.cpu(), split.batch(order[:16])[0], rtol=0, atol=0)
    assert list(split.__dict__["_on_device"].values())[0] is not None, "40 tiny images fit on any GPU"


def test_checkpoints_are_written_at_their_cadence_and_the_cadence_does_not_rename_them(tmp_path, monkeypatch):
    import advhash.resumable as resumable_module
    from advhash.checkpoint import settings_tag

    written = []
    save = resumable_module.save_checkpoint
    monkeypatch.setattr(resumable_module, "save_checkpoint", lambda state, path: written.append(state["epoch"]) or
                        save(state, path))
    split = StripesSplit(n=32)
    torch.manual_seed(0)
    model = HashingModel("small_cnn", bits=8, in_channels=1)
    loss = build_loss("dpsh", num_train=len(split), bits=8, num_classes=4)
    train_hashing(model, loss, split, epochs=5, batch_size=32, checkpoint_path=tmp_path / "m.pt", checkpoint_every=2)
    assert written == [2, 4, 5], "every 2 epochs, and after the last"
    assert settings_tag(dict(lr=0.1, checkpoint_every=3)) == settings_tag(dict(lr=0.1))
    with pytest.raises(ValueError, match="checkpoint_every must be at least 1"):
        train_hashing(model, loss, split, epochs=1, checkpoint_every=0)


def test_encode_refuses_nan_and_0_to_255_images_with_a_clear_error():
    model = HashingModel("small_cnn", bits=8, in_channels=1).eval()
    images = torch.rand(4, 1, 16, 16)
    images[2, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"the images to encode hold 1 NaN or infinite values \(images \[2\]\)"):
        encode(model, images)
    with pytest.raises(ValueError, match=r"values in \[0, 1\] .*got range \[0, 255\]"):
        encode(model, torch.linspace(0, 255, 4 * 256).view(4, 1, 16, 16))


def test_a_bad_checkpoint_in_another_folder_is_skipped_with_a_warning(tmp_path):
    from helpers import stripes, stripes_data

    from advhash.train import fit_hashing_model, hashing_checkpoint_name

    data = stripes_data(stripes(32, seed=0))
    settings = dict(method="dph", bits=8, batch_size=32)
    other = tmp_path / "other"
    other.mkdir()
    (other / hashing_checkpoint_name(data, epochs=1, **settings)).write_bytes(b"truncated")
    with pytest.warns(UserWarning, match=r"skipping .*other/dph_8bits_small_cnn_e1_\w+\.pt: checkpoint .* cannot be "
                                         r"read"):
        fit_hashing_model(data, epochs=1, checkpoint_dir=tmp_path / "own", reuse_from=(other,), **settings)
    assert len(list((tmp_path / "own").glob("*.pt"))) == 1, "this run trained its own"
