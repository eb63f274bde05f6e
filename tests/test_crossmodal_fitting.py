"""What DCMH's and SSAH's trainers share (advhash.crossmodal.fitting): the text-modality check and the
checkpoint of a fine-tune, named after the model it started from; no import of the trainers above it."""

import pytest
import torch

from helpers import stripes, stripes_data, stripes_pairs

from advhash.checkpoint import model_digest
from advhash.crossmodal import fit_dcmh
from advhash.crossmodal.fitting import require_texts
from advhash.fingerprint import code_modules

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


def test_the_shared_fitting_sits_below_the_trainers_it_serves():
    """No import circle: fitting.py imports neither trainer (nor the orchestrator of notebook 03 above them)."""
    below = code_modules("advhash.crossmodal.fitting")
    assert not {"advhash.crossmodal.dcmh", "advhash.crossmodal.ssah", "advhash.crossmodal.victims",
                "advhash.train"} & set(below)
