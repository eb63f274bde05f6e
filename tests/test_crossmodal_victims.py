"""Notebook 03's victims (advhash.crossmodal.victims): DCMH, SSAH and their "+" versions at every code length."""

import pytest

from helpers import same_weights, stripes_data, stripes_pairs

from advhash.crossmodal import CrossModalHashing, SSAHModel, fit_cmla_training, fit_dcmh, fit_ssah
from advhash.crossmodal.victims import fit_crossmodal_victims

pytestmark = pytest.mark.usefixtures("one_thread")


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
    assert len(files) == 6, "four checkpoints, and the samples of the two + models"
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


def test_another_training_seed_fits_other_models_under_other_checkpoints(tmp_path):
    """Notebook 03's findings compare the "+" models over training seeds at one code length: each seed's four models
    are their own fits, beside the first seed's in the same checkpoint folder, and a rerun only loads them."""
    data = stripes_data(stripes_pairs(24, seed=2))
    settings = dict(dcmh=dict(epochs=1, batch_size=12, lr=0.001, optimizer="adam"),
                    ssah=dict(epochs=1, batch_size=12, hidden=16, label_passes=1, adversarial_gradient=False),
                    adversarial=dict(num_adversarial=4, epochs=1, steps=2, attack_batch_size=8),
                    text_hidden=16, checkpoint_dir=tmp_path)
    first, _ = fit_crossmodal_victims(data, [8], seed=0, **settings)
    second, _ = fit_crossmodal_victims(data, [8], seed=1, **settings)
    assert len(list(tmp_path.iterdir())) == 12, "four checkpoints and two sample files per seed"
    for key in first:
        assert not same_weights(first[key], second[key]), key
    again, _ = fit_crossmodal_victims(data, [8], seed=1, **settings)
    assert len(list(tmp_path.iterdir())) == 12 and all(same_weights(again[key], second[key]) for key in second)


def test_all_models_bits_limits_ssah_and_the_plus_models_to_those_code_lengths(tmp_path):
    """The default profile trains SSAH, DCMH+ and SSAH+ at the featured code length only: DCMH alone at the others,
    the same fits as a full run at the lengths kept, and a length outside bits_list is refused, naming it."""
    data = stripes_data(stripes_pairs(24, seed=2))
    settings = dict(dcmh=dict(epochs=1, batch_size=12, lr=0.001, optimizer="adam"),
                    ssah=dict(epochs=1, batch_size=12, hidden=16, label_passes=1, adversarial_gradient=False),
                    adversarial=dict(num_adversarial=4, epochs=1, steps=2, attack_batch_size=8),
                    text_hidden=16, checkpoint_dir=tmp_path)
    models, histories = fit_crossmodal_victims(data, [4, 8], all_models_bits=[8], **settings)
    assert list(models) == [("DCMH", 4), ("DCMH", 8), ("DCMH+", 8), ("SSAH", 8), ("SSAH+", 8)]
    assert set(histories[histories.bits == 4].model) == {"DCMH"}
    assert len(list(tmp_path.iterdir())) == 7, "five checkpoints, the samples of the two + models"
    full, _ = fit_crossmodal_victims(data, [8], **settings)       # the kept lengths: the same checkpoints, loaded
    assert len(list(tmp_path.iterdir())) == 7 and all(same_weights(full[key], models[key]) for key in full)
    with pytest.raises(ValueError, match=r"all_models_bits \[16\].*bits_list \[4, 8\]"):
        fit_crossmodal_victims(data, [4, 8], all_models_bits=[16], **settings)
