"""The backbones (advhash.models.backbones): torchvision weights from a local file, clear errors."""

import pytest
import torch

from advhash.models import HashingModel


def test_local_torchvision_weights_file_is_loaded(tmp_path):
    from torchvision.models import resnet18
    torch.manual_seed(1)
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = HashingModel("resnet18", bits=8, in_channels=3, weights=path)
    assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HashingModel("alexnet", bits=8, weights=tmp_path / "nope.pth")


def test_a_weights_name_that_cannot_be_downloaded_names_both_ways_to_get_weights(monkeypatch, tmp_path):
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("no network")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))          # an empty cache
    with pytest.raises(RuntimeError, match=r"torchvision weights 'IMAGENET1K_V1' are not in torch's cache .* could "
                                           r"not be downloaded \(URLError.*pass a local torchvision state dict"):
        HashingModel("alexnet", bits=8, weights="IMAGENET1K_V1")


def test_checkpoints_name_a_weights_file_by_its_content(tmp_path):
    from advhash.checkpoint import weights_tag

    path = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(2)}, path)
    first = weights_tag(path)
    torch.save({"w": torch.ones(2)}, path)                   # other weights at the same path
    assert first.startswith("sha1:") and weights_tag(path) != first and weights_tag(str(path)) == weights_tag(path)
    assert weights_tag(None) == "None" and weights_tag("IMAGENET1K_V1") == "IMAGENET1K_V1"


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A self-saved torchvision resnet18 state dict (random init: no download), and the model it came from."""
    from torchvision.models import resnet18
    torch.manual_seed(2)
    reference = resnet18(weights=None)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    return path, reference


def test_a_weights_file_of_another_architecture_names_the_file_the_keys_and_the_architecture(resnet18_file):
    """torch's own error has no file name and lists every key (thousands of characters)."""
    path, _ = resnet18_file
    expected = (rf"weights file {path} does not fit backbone alexnet \(torchvision.models.alexnet\): "
                r"16 keys missing \(features.0.weight, .*, \.\.\. \(11 more\)\); "
                r"122 unexpected keys \(conv1.weight, .*\(117 more\)\)\. "
                r"It holds a torchvision resnet18 state dict: set backbone: resnet18 .*"
                r"torch.save\(torchvision.models.alexnet\(\).state_dict\(\), path\)")
    with pytest.raises(ValueError, match=expected) as refused:
        HashingModel("alexnet", bits=8, weights=path)
    assert len(str(refused.value)) < 800


def test_a_weights_file_saved_from_data_parallel_loads_without_the_module_prefix(resnet18_file, tmp_path):
    path, reference = resnet18_file
    parallel = tmp_path / "resnet18-ddp.pth"
    torch.save(torch.nn.DataParallel(reference).state_dict(), parallel)     # every key starts with "module."
    model = HashingModel("resnet18", bits=8, in_channels=3, weights=parallel)
    assert torch.equal(model.backbone.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)


def test_a_truncated_weights_file_is_named_as_such(resnet18_file, tmp_path):
    path, _ = resnet18_file
    truncated = tmp_path / "resnet18-half.pth"
    truncated.write_bytes(path.read_bytes()[:path.stat().st_size // 2])     # an interrupted download
    with pytest.raises(ValueError, match=rf"weights file {truncated} \(\d+ bytes\) cannot be read as a state dict "
                                         r"\(RuntimeError: .*\): it is truncated .*Download or copy it again"):
        HashingModel("resnet18", bits=8, weights=truncated)


def test_a_training_checkpoint_given_as_weights_is_told_apart_from_a_state_dict(resnet18_file, tmp_path):
    path, reference = resnet18_file
    checkpoint = tmp_path / "training.pth"
    torch.save({"epoch": 3, "state_dict": reference.state_dict()}, checkpoint)
    with pytest.raises(ValueError, match=rf"weights file {checkpoint} holds a dict of epoch, state_dict, not a state "
                                         r"dict .*save that entry alone"):
        HashingModel("resnet18", bits=8, weights=checkpoint)


@pytest.mark.parametrize("name", ["IMAGENET1K_V3", "imagenet"])
def test_a_mistyped_weights_name_lists_the_valid_names(name):
    with pytest.raises(ValueError, match=rf"unknown torchvision weights name '{name}' for resnet18: its valid names "
                                         r"are IMAGENET1K_V1, DEFAULT; or give the path of a local state dict file"):
        HashingModel("resnet18", bits=8, weights=name)


def test_a_moved_weights_file_is_named_as_moved_not_taken_for_a_weights_name(resnet18_file, tmp_path, monkeypatch):
    from advhash.checkpoint import weights_tag

    monkeypatch.chdir(tmp_path)
    for moved in ("weights/resnet18.pth", "resnet18.pth", tmp_path / "resnet18.pth"):
        with pytest.raises(FileNotFoundError, match=rf"weights file {moved} does not exist.*: it was moved, renamed "
                                                    r"or deleted since the settings named it"):
            HashingModel("resnet18", bits=8, weights=moved)
        with pytest.raises(FileNotFoundError, match=r"it was moved, renamed or deleted"):
            weights_tag(moved)                       # the checkpoint's name: not a torchvision weights name
