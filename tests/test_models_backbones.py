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
