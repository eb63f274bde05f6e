"""CMLA's adversarial training (advhash.crossmodal.adversarial_training): DCMH+ and SSAH+ put CMLA samples in
front of the training set and fine-tune on that augmented set (SSAH+'s checkpoint: tests/test_crossmodal_ssah.py)."""

import pytest
import torch

from helpers import DCMH_TRAINING as TRAINING
from helpers import same_weights

from advhash.attacks import perturb
from advhash.crossmodal import CMLA, augmented_training_split, fit_cmla_training, fit_dcmh, fit_ssah
from advhash.train import encode

pytestmark = pytest.mark.usefixtures("one_thread")


def test_adversarial_training_puts_cmla_samples_in_front_and_fine_tunes(pairs, tmp_path):
    model, _, data = pairs
    quick = dict(steps=5)
    augmented = augmented_training_split(model, data.train, num_adversarial=12, image_attack=quick, text_attack=quick)
    assert len(augmented) == len(data.train) + 12
    assert torch.equal(augmented.labels[:12], data.train.labels[:12])
    assert torch.equal(augmented.labels[12:], data.train.labels) and torch.equal(augmented.texts[12:], data.train.texts)
    assert not torch.equal(augmented.images[:12], data.train.images[:12])
    assert ((augmented.images[:12].float() - data.train.images[:12].float()).abs() <= 255 * 0.2).all()
    robust, history, _ = fit_cmla_training(data, model, num_adversarial=12, epochs=1, image_attack=quick,
                                           text_attack=quick, checkpoint_dir=tmp_path, text_hidden=64, **TRAINING)
    assert len(history) == 1 and not same_weights(robust, model)
    path, samples = sorted(tmp_path.iterdir())          # the checkpoint, and the samples it was trained on
    assert path.name.startswith("dcmh+_16bits_small_cnn_e1_") and samples.name.startswith("dcmh+_samples_16bits_")


def test_the_samples_are_each_modality_attacked_against_its_pairs_codes_with_its_own_settings(pairs):
    """The augmented split's first items are, exactly, CMLA run by hand on the first pairs: each image (image
    modality, ``image_attack``) against the clean codes of its paired text and its own, stored as 8-bit images;
    each text (text modality: its own step and budget, ``text_attack``) against its image's codes and its own."""
    model, _, data = pairs
    first = torch.arange(6)
    images, texts, labels = data.train.batch(first)[0], data.train.texts[first].float(), data.train.labels[first]
    image_codes, text_codes = encode(model.image, images), encode(model.text, texts)
    image_attack, text_attack = dict(steps=4), dict(steps=7)
    images_by_hand = perturb(CMLA(model.image, modality="image", **image_attack).set_pairs(text_codes, image_codes),
                             images, labels)
    texts_by_hand = perturb(CMLA(model.text, modality="text", **text_attack).set_pairs(image_codes, text_codes),
                            texts, labels)
    augmented = augmented_training_split(model, data.train, num_adversarial=6, image_attack=image_attack,
                                         text_attack=text_attack)
    assert torch.equal(augmented.images[:6], (images_by_hand * 255).round().to(torch.uint8))
    assert torch.equal(augmented.texts[:6], texts_by_hand)
    assert torch.equal(augmented.images[6:], data.train.images)


def test_every_count_of_adversarial_pairs_from_one_to_all_and_no_other(pairs):
    model, _, data = pairs
    still = dict(steps=0)                                      # no steps: the samples are the clean pairs
    n = len(data.train)
    for count in (1, n):
        augmented = augmented_training_split(model, data.train, num_adversarial=count, image_attack=still,
                                             text_attack=still)
        assert len(augmented) == n + count and torch.equal(augmented.images[:count], data.train.images[:count])
    for count in (0, n + 1):
        with pytest.raises(ValueError, match=rf"^num_adversarial must be in \[1, {n}\] \(the training pairs\); "
                                             rf"got {count}$"):
            augmented_training_split(model, data.train, num_adversarial=count)
    with pytest.raises(TypeError, match=r"base must be a trained CrossModalHashing \(DCMH\) or SSAHModel; got "
                                        r"HashingModel$"):
        fit_cmla_training(data, model.image, num_adversarial=4, epochs=1)


def test_a_training_split_read_from_image_files_gives_the_same_augmented_split(tmp_path, one_thread):
    """Pairs whose images are files on disk (an ``ImageFileSplit`` with texts) are decoded once to the 8-bit images
    an in-memory split of the same pictures holds: the augmented splits are equal."""
    from PIL import Image

    from helpers import stripes_data, stripes_pairs

    from advhash.data import ImageFileSplit, InMemorySplit

    grey = stripes_pairs(20)
    colour = InMemorySplit(grey.images.expand(-1, 3, -1, -1).contiguous(), grey.labels, texts=grey.texts)
    paths = []
    for i, image in enumerate(colour.images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(paths[-1])
    files = ImageFileSplit(paths, grey.labels, texts=grey.texts, image_size=colour.images.shape[-1])
    model, _ = fit_dcmh(stripes_data(colour), bits=8, epochs=1, text_hidden=16, **TRAINING)
    quick = dict(steps=2)
    from_memory, from_files = (augmented_training_split(model, split, num_adversarial=5, image_attack=quick,
                                                        text_attack=quick) for split in (colour, files))
    assert torch.equal(from_files.images, from_memory.images) and torch.equal(from_files.texts, from_memory.texts)
    assert torch.equal(from_files.labels, from_memory.labels)


def test_the_defaults_are_the_published_codes():
    """5,000 adversarial pairs, 5 epochs, attacked in batches of 128 (``demo_AdversarialTraining.py``)."""
    import inspect

    defaults = {name: parameter.default for name, parameter in inspect.signature(fit_cmla_training).parameters.items()}
    assert (defaults["num_adversarial"], defaults["epochs"], defaults["attack_batch_size"]) == (5000, 5, 128)


@pytest.mark.parametrize("method", ["dcmh", "ssah"])
def test_the_model_is_fine_tuned_on_the_augmented_split_not_the_clean_one(pairs, method, tmp_path):
    """DCMH+ / SSAH+ are the clean model fine-tuned on the training set *with* its CMLA samples: the same weights
    as fine-tuning the base on the returned augmented split by hand, other weights than fine-tuning it on the clean
    split (which would still change the weights and name a "+" checkpoint)."""
    from helpers import SSAH_TRAINING

    model, _, data = pairs
    fit, training = (fit_dcmh, dict(text_hidden=64, **TRAINING)) if method == "dcmh" else (fit_ssah, SSAH_TRAINING)
    if method == "ssah":
        model, _ = fit_ssah(data, bits=model.bits, epochs=1, **training)        # a base of one epoch is enough here
    image_attack, text_attack = dict(steps=3), dict(steps=2)
    robust, _, augmented = fit_cmla_training(data, model, num_adversarial=8, epochs=1, image_attack=image_attack,
                                             text_attack=text_attack, checkpoint_dir=tmp_path, **training)
    by_hand = augmented_training_split(model, data.train, num_adversarial=8, image_attack=image_attack,
                                       text_attack=text_attack)
    assert torch.equal(augmented.images, by_hand.images) and torch.equal(augmented.texts, by_hand.texts)
    path = next(path for path in tmp_path.iterdir() if "_samples_" not in path.name)   # the checkpoint
    assert path.name.startswith(f"{method}+_{model.bits}bits_small_cnn_e1_")
    on_augmented, _ = fit(data, bits=model.bits, epochs=1, base=model, train_split=augmented, **training)
    on_clean, _ = fit(data, bits=model.bits, epochs=1, base=model, train_split=data.train, **training)
    assert same_weights(robust, on_augmented), "fine-tuned on the augmented split"
    assert not same_weights(robust, on_clean), "not on the clean split"


def test_the_augmented_split_is_stored_once_and_a_rerun_loads_the_plus_model_without_attacking(pairs, tmp_path,
                                                                                                monkeypatch):
    """A rerun with the checkpoints kept needs the augmented split only to name the "+" checkpoint: it is read from
    the file the first run stored (the same bytes, so the same checkpoint), never made again; a file holding other
    settings than its name says is refused."""
    import advhash.crossmodal.adversarial_training as adversarial_training
    from advhash.checkpoint import CheckpointMismatch, load_checkpoint

    model, _, data = pairs
    quick = dict(steps=3)
    settings = dict(num_adversarial=8, epochs=1, image_attack=quick, text_attack=quick, checkpoint_dir=tmp_path,
                    text_hidden=64, **TRAINING)
    first, _, made = fit_cmla_training(data, model, **settings)
    stored = sorted(path.name for path in tmp_path.iterdir())
    assert len(stored) == 2 and stored[1].startswith("dcmh+_samples_16bits_small_cnn_e0_")

    def attack_again(*args, **kwargs):
        raise AssertionError("the samples were made again")

    monkeypatch.setattr(adversarial_training, "cmla_samples", attack_again)
    again, _, loaded = fit_cmla_training(data, model, **settings)
    assert sorted(path.name for path in tmp_path.iterdir()) == stored, "nothing new trained or stored"
    assert same_weights(again, first)
    assert torch.equal(loaded.images, made.images) and torch.equal(loaded.texts, made.texts)
    with pytest.raises(AssertionError, match="made again"):      # other attack settings: other samples
        fit_cmla_training(data, model, **dict(settings, image_attack=dict(steps=4)))
    samples = tmp_path / stored[1]                     # a file renamed from another run's samples is refused
    renamed = samples.with_name(samples.name.rsplit("_", 1)[0] + "_00000000.pt")
    samples.rename(renamed)
    with pytest.raises(CheckpointMismatch, match="00000000"):
        load_checkpoint(renamed)
