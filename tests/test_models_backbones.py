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
