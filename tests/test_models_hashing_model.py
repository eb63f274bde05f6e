"""The hashing model (advhash.models.hashing_model): shapes, ranges, normalization inside the model, the tanh
scale, rebuilding from a config, the scaled hash layer."""

import pytest
import torch

from advhash.models import BACKBONES, HashingModel, binarize, build_model


@pytest.mark.parametrize("backbone", ["small_cnn", "alexnet", "vgg11", "resnet18"])
@pytest.mark.parametrize("in_channels,size", [(1, 28), (3, 32)])
def test_relaxed_codes_in_open_interval_and_codes_binary(backbone, in_channels, size):
    torch.manual_seed(0)
    model = HashingModel(backbone, bits=12, in_channels=in_channels).eval()
    images = torch.rand(3, in_channels, size, size)
    h = model(images)
    assert h.shape == (3, 12)
    assert h.abs().max() < 1
    codes = model.codes(images)
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(codes, binarize(h))


def test_scale_scales_the_tanh_argument():
    torch.manual_seed(0)
    model = HashingModel("small_cnn", bits=8, in_channels=1).eval()
    images = torch.rand(4, 1, 28, 28)
    z = model.hash_logits(images)
    assert torch.allclose(model(images, scale=0.1), torch.tanh(0.1 * z))
    assert torch.allclose(model(images, scale=5.0), torch.tanh(5.0 * z))
    assert torch.equal(model(images, 5.0), model(images, scale=5.0))
    assert torch.equal(model(images), torch.tanh(z)), "the default scale is 1"


def test_binarize_maps_zero_to_plus_one():
    assert binarize(torch.tensor([-0.2, 0.0, 0.3])).tolist() == [-1.0, 1.0, 1.0]
    assert binarize(torch.tensor([-0.2, 0.0], dtype=torch.float64)).dtype == torch.float64, "the codes keep the dtype"


def test_normalization_happens_inside_the_model():
    model = HashingModel("small_cnn", bits=8, in_channels=3, mean=(0.1, 0.2, 0.3), std=(0.25, 0.5, 1.0)).eval()
    images = torch.rand(2, 3, 32, 32)
    reference = model.hash_layer(model.backbone((images - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1))
                                                / torch.tensor([0.25, 0.5, 1.0]).view(1, 3, 1, 1)))
    assert torch.allclose(model.hash_logits(images), reference, atol=1e-6)


def test_input_size_resizes_inside_the_model():
    model = HashingModel("alexnet", bits=8, in_channels=3, input_size=96).eval()
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 8)


def backbone_inputs(model):
    """The shapes of what ``model``'s backbone is given, call by call."""
    seen = []
    model.backbone.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    return seen


def test_the_backbone_sees_the_input_size_asked_for_resized_bilinearly():
    """input_size=224 is the paper's AlexNet setting: the backbone must be given 224 x 224 images whatever the
    stored size (a model that ignored it would still run, its adaptive pooling hides the size)."""
    torch.manual_seed(0)
    model = HashingModel("small_cnn", bits=8, in_channels=1, input_size=20).eval()
    seen = backbone_inputs(model)
    images = torch.rand(2, 1, 28, 28)
    logits = model.hash_logits(images)
    assert seen == [(2, 1, 20, 20)]
    by_hand = torch.nn.functional.interpolate((images - 0.5) / 0.5, size=(20, 20), mode="bilinear",
                                              align_corners=False)
    assert torch.allclose(logits, model.hash_layer(model.backbone(by_hand)), atol=1e-6)
    model.hash_logits(torch.rand(2, 1, 20, 20))
    assert seen[-1] == (2, 1, 20, 20), "already at the input size: passed as it is"


def test_without_input_size_the_native_size_is_kept_unless_below_the_backbones_minimum():
    torch.manual_seed(0)
    native = HashingModel("alexnet", bits=8, in_channels=1).eval()
    seen = backbone_inputs(native)
    native.hash_logits(torch.rand(1, 1, 70, 70))
    native.hash_logits(torch.rand(1, 1, 28, 40))
    native.hash_logits(torch.rand(1, 1, 64, 64))
    assert seen == [(1, 3, 70, 70), (1, 3, 64, 64), (1, 3, 64, 64)], \
        "kept at 70; raised to AlexNet's minimum of 64 (grey repeated to 3 channels); 64 kept"
    grey = torch.rand(1, 1, 64, 64)
    by_hand = ((grey - 0.5) / 0.5).expand(-1, 3, -1, -1)
    assert torch.allclose(native.hash_logits(grey), native.hash_layer(native.backbone(by_hand)), atol=1e-6)


@pytest.mark.parametrize("bits", [0, -4, 3.5])
def test_bits_must_be_positive_integer(bits):
    with pytest.raises(ValueError, match="bits must be a positive integer"):
        HashingModel("small_cnn", bits=bits, in_channels=1)


def test_the_documented_defaults_and_the_smallest_code():
    """Default: the small CNN on RGB input, normalized with mean 0.5 and std 0.5, native size; one bit is a code."""
    assert HashingModel(bits=8).config == dict(backbone="small_cnn", bits=8, in_channels=3, mean=[0.5] * 3,
                                               std=[0.5] * 3, input_size=None)
    assert HashingModel("small_cnn", bits=1, in_channels=1).eval()(torch.rand(2, 1, 8, 8)).shape == (2, 1)
    with pytest.raises(ValueError, match=r"^in_channels must be 1 \(grey\) or 3 \(RGB\), got 2$"):
        HashingModel("small_cnn", bits=8, in_channels=2)


def test_unknown_backbone_lists_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        HashingModel("lenet9000", bits=8)


def test_mean_std_must_match_channels():
    for mean, std in (((0.5,), (0.5,)), ((0.5,) * 3, (0.5,)), ((0.5,), (0.5,) * 3)):
        with pytest.raises(ValueError, match="one per input channel"):
            HashingModel("small_cnn", bits=8, in_channels=3, mean=mean, std=std)


def test_build_model_from_config_round_trips():
    model = HashingModel("small_cnn", bits=16, in_channels=1)
    rebuilt = build_model(model.config)
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.config == model.config
    resized = HashingModel("small_cnn", bits=8, in_channels=3, mean=(0.1, 0.2, 0.3), std=(0.3, 0.2, 0.1),
                           input_size=20)
    assert resized.config["input_size"] == 20, "a checkpoint's config keeps the input size"
    rebuilt = build_model(resized.config)
    rebuilt.load_state_dict(resized.state_dict())
    images = torch.rand(2, 3, 28, 28)
    assert rebuilt.input_size == 20
    assert torch.equal(rebuilt.eval().hash_logits(images), resized.eval().hash_logits(images))
    assert set(BACKBONES) >= {"alexnet", "vgg11", "vgg16", "resnet18", "resnet50", "small_cnn"}


def test_build_model_passes_the_weights_on():
    """build_model(config, weights=...) builds the backbone from those weights: a weights name torchvision does not
    know is refused, not silently replaced by a random init."""
    config = HashingModel("resnet18", bits=8, in_channels=3).config
    with pytest.raises(Exception, match="NO_SUCH_WEIGHTS"):
        build_model(config, weights="NO_SUCH_WEIGHTS")


def test_backbone_precision_reports_bf16_when_any_hashing_model_inside_runs_in_bf16():
    from advhash.models import backbone_precision, set_precision

    class TwoTowers(torch.nn.Module):                       # a cross-modal model: an image network and a text one
        def __init__(self):
            super().__init__()
            self.image = HashingModel("small_cnn", bits=8, in_channels=1)
            self.text = torch.nn.Linear(4, 8)

    model = TwoTowers()
    assert backbone_precision(model, "cpu") == "fp32" and backbone_precision(model, "cuda") == "bf16", "auto"
    set_precision(model, "bf16")
    assert model.image.precision == "bf16" and backbone_precision(model, "cpu") == "bf16"
    set_precision(model, "fp32")
    assert backbone_precision(model, "cuda") == "fp32"
    assert backbone_precision(torch.nn.Linear(2, 2), "cuda") == "fp32", "no hashing model: float32"


def test_scaled_hash_layer_keeps_codes_and_saturates_tanh():
    from advhash.models import with_scaled_hash_layer
    torch.manual_seed(0)
    model = HashingModel("small_cnn", bits=16, in_channels=1).eval()
    images = torch.rand(8, 1, 28, 28)
    scaled = with_scaled_hash_layer(model, 30.0)
    assert torch.equal(scaled.codes(images), model.codes(images))
    assert scaled(images).abs().mean() > model(images).abs().mean()
    assert torch.allclose(scaled.hash_logits(images), 30 * model.hash_logits(images), rtol=1e-4, atol=1e-5)
    assert model.hash_layer.weight.data_ptr() != scaled.hash_layer.weight.data_ptr()  # a copy
    for factor in (-1.0, 0.0):
        with pytest.raises(ValueError, match=rf"^factor must be positive \(it must keep the sign of every logit\), "
                                             rf"got {factor}$"):
            with_scaled_hash_layer(model, factor)
    assert torch.equal(with_scaled_hash_layer(model, 0.5).codes(images), model.codes(images)), "a factor below 1"


def test_bf16_backbone_codes_agree_with_fp32_on_at_least_99_percent_of_the_bits(trained):
    from advhash.models import effective_precision, set_precision

    model, db_codes, database, _ = trained
    images = database.images
    try:
        fp32 = binarize(set_precision(model, "fp32").hash_logits(images).detach())
        logits = set_precision(model, "bf16").hash_logits(images).detach()
    finally:
        set_precision(model, "auto")
    assert logits.dtype == torch.float32, "only the backbone runs in bf16: the hash layer and codes stay float32"
    assert torch.equal(fp32, db_codes)
    agreement = (binarize(logits) == fp32).float().mean().item()
    assert agreement >= 0.99, f"bf16 and fp32 codes agree on {agreement:.2%} of the bits"
    assert effective_precision("auto", "cpu") == "fp32" and effective_precision("auto", "cuda") == "bf16"
    with pytest.raises(ValueError, match=r"precision must be one of \('auto', 'fp32', 'bf16'\); got 'fp16'"):
        set_precision(model, "fp16")


def test_a_bf16_training_run_gets_its_own_checkpoint_and_float32_names_omit_the_precision(tmp_path):
    from helpers import stripes, stripes_data

    from advhash.train import fit_hashing_model, hashing_checkpoint_name

    data = stripes_data(stripes(32, seed=0))
    settings = dict(method="dph", bits=8, batch_size=32, lr=0.01)
    fit = dict(settings)
    settings["epochs"] = 1
    assert hashing_checkpoint_name(data, **settings) == hashing_checkpoint_name(data, precision="fp32", **settings)
    assert hashing_checkpoint_name(data, precision="bf16", **settings) != hashing_checkpoint_name(data, **settings)
    fit_hashing_model(data, epochs=1, checkpoint_dir=tmp_path, precision="bf16", **fit)
    fit_hashing_model(data, epochs=1, checkpoint_dir=tmp_path, **fit)              # auto: fp32 on the CPU
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_a_checkpoint_trained_on_other_thread_counts_is_never_reused(tmp_path):
    """Float sums, hence trained weights, differ between torch thread counts: a run on 1 thread gets its own
    checkpoint instead of loading one trained on 2."""
    from helpers import stripes, stripes_data

    from advhash.train import hashing_checkpoint_name

    data = stripes_data(stripes(32, seed=0))
    settings = dict(method="dph", bits=8, batch_size=32, lr=0.01, epochs=1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = hashing_checkpoint_name(data, **settings)
        torch.set_num_threads(2)
        two = hashing_checkpoint_name(data, **settings)
    finally:
        torch.set_num_threads(before)
    assert one != two
