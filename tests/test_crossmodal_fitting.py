"""What DCMH's and SSAH's trainers share (advhash.crossmodal.fitting): the text-modality check and the
checkpoint of a fine-tune, named after the model it started from; and CMLA's victims at every code length."""

import pytest
import torch

from helpers import same_weights, stripes, stripes_data, stripes_pairs

from advhash.checkpoint import model_digest
from advhash.crossmodal import CrossModalHashing, SSAHModel, fit_cmla_training, fit_dcmh, fit_ssah
from advhash.crossmodal.fitting import fit_crossmodal_victims, require_texts

pytestmark = pytest.mark.usefixtures("one_thread")


def test_require_texts_returns_the_tags_or_says_which_dataset_has_them():
    split = stripes_pairs(8)
    assert torch.equal(require_texts(split), split.texts)
    with pytest.raises(ValueError, match="the query split has no texts.*fashion-mosaic"):
        require_texts(stripes(8), "the query split")


def test_a_fine_tune_copies_its_base_and_gets_its_own_checkpoint(tmp_path):
    data = stripes_data(stripes_pairs(32, seed=2))
    settings = dict(bits=8, epochs=1, text_hidden=16, batch_size=16, lr=0.001, optimizer="adam")
    base, _ = fit_dcmh(data, checkpoint_dir=tmp_path, **settings)
    digest = model_digest(base)
    tuned, _ = fit_dcmh(data, base=base, checkpoint_dir=tmp_path, **settings)
    assert model_digest(base) == digest and tuned is not base, "the base model is copied, not trained"
    assert len(list(tmp_path.iterdir())) == 2, "the fine-tune's settings name the base model's weights"
    with pytest.raises(ValueError, match="the base model has 8 bits, not 16"):
        fit_dcmh(data, base=base, **dict(settings, bits=16))


def test_fit_crossmodal_victims_fits_each_base_model_and_its_plus_version_with_its_own_settings(tmp_path):
    data = stripes_data(stripes_pairs(24, seed=2))
    dcmh = dict(epochs=1, batch_size=12, lr=0.001, optimizer="adam")
    ssah = dict(epochs=1, batch_size=12, hidden=16, label_passes=1, adversarial_gradient=False)
    attacks = {"image": dict(lr=0.01), "text": dict(lr=0.01)}
    adversarial = dict(num_adversarial=4, epochs=1, steps=2, attack_batch_size=8, attacks=attacks)
    models, histories = fit_crossmodal_victims(data, [8], dcmh=dcmh, ssah=ssah, adversarial=adversarial,
                                               text_hidden=16, checkpoint_dir=tmp_path)
    assert list(models) == [("DCMH", 8), ("DCMH+", 8), ("SSAH", 8), ("SSAH+", 8)]
    assert type(models["DCMH", 8]) is CrossModalHashing and type(models["SSAH+", 8]) is SSAHModel
    assert not same_weights(models["DCMH", 8], models["DCMH+", 8]), "the + model is fine-tuned"
    assert list(histories.columns[:3]) == ["model", "bits", "epoch"]
    assert list(histories.model.unique()) == ["DCMH", "DCMH+", "SSAH", "SSAH+"] and (histories.bits == 8).all()
    assert dcmh["epochs"] == 1 and adversarial["attacks"] is attacks, "the settings are not consumed"
    files = sorted(tmp_path.iterdir())
    assert len(files) == 4
    # the same fits called one by one name the same checkpoints: they only load them
    base, _ = fit_dcmh(data, bits=8, epochs=1, text_hidden=16, checkpoint_dir=tmp_path,
                       **{k: v for k, v in dcmh.items() if k != "epochs"})
    plus, _, _ = fit_cmla_training(data, base, num_adversarial=4, epochs=1, attack_batch_size=8,
                                   image_attack=dict(steps=2, **attacks["image"]),
                                   text_attack=dict(steps=2, **attacks["text"]), checkpoint_dir=tmp_path,
                                   **{k: v for k, v in dcmh.items() if k != "epochs"})
    ssah_base, _ = fit_ssah(data, bits=8, checkpoint_dir=tmp_path, **ssah)
    assert sorted(tmp_path.iterdir()) == files
    assert same_weights(plus, models["DCMH+", 8]) and same_weights(ssah_base, models["SSAH", 8])
