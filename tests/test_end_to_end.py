"""A tiny end-to-end run on real Fashion-MNIST: train a few steps, encode, retrieve, beat random."""

import pytest
import torch

from advhash.data import load_dataset
from advhash.data.fashion import DEBIAN_DIR
from advhash.metrics import mean_average_precision, random_ranking_map
from advhash.train import encode, fit_hashing_model

pytestmark = pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason=f"Fashion-MNIST not installed at {DEBIAN_DIR} "
                                                                "(apt-get install dataset-fashion-mnist)")


@pytest.mark.parametrize("method", ["dph", "dpsh", "hashnet"])
def test_small_model_learns_codes_that_beat_random(method, tmp_path):
    data = load_dataset("fashion-mnist", root=tmp_path, num_query=100, num_train=400, num_database=600, seed=0)
    model, history = fit_hashing_model(data, method=method, bits=16, epochs=6, batch_size=50, optimizer="adam",
                                       lr=0.003, weight_decay=0.0, pairs="batch", checkpoint_dir=tmp_path)
    query_codes, db_codes = encode(model, data.query), encode(model, data.database)
    assert set(torch.cat([query_codes, db_codes]).unique().tolist()) == {-1.0, 1.0}
    learned = mean_average_precision(query_codes, db_codes, data.query.labels, data.database.labels)
    random = random_ranking_map(data.query.labels, data.database.labels)
    assert random == pytest.approx(0.1, abs=0.02), "ten balanced classes: a random ranking scores about 0.1"
    assert learned > 2 * random, f"{method}: mAP {learned:.3f} is not twice random ({random:.3f})"
    assert len(history) == 6 and history[-1]["loss"] < history[0]["loss"]
