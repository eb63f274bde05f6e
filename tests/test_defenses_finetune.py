"""The clean fine-tune control (advhash.defenses.finetune): registered as "finetune", and the same run as
``defense=None`` in ``fit_defended_model``: bit-identical weights, history and checkpoint file."""

import pytest
from helpers import DEFENSE_BITS, DEFENSE_CLASSES, same_weights

from advhash.checkpoint import load_checkpoint
from advhash.defenses import DEFENSES, FineTune, build_defense, fit_defended_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_registry_builds_the_control_and_it_ignores_the_defense_settings():
    assert DEFENSES["finetune"] is FineTune
    control = build_defense("finetune", num_train=10, bits=DEFENSE_BITS, num_classes=DEFENSE_CLASSES, eps=8 / 255,
                            steps=7)
    assert type(control) is FineTune and control.name == "finetune" and control.adversarial is False
    assert control.ignored == ["bits", "eps", "num_classes", "num_train", "steps"]
    assert repr(control) == "FineTune()" and FineTune().ignored == []


def test_fine_tune_is_the_same_run_as_no_defense(tmp_path, base):
    model, data = base
    settings = dict(method="dpsh", epochs=1, batch_size=32, lr=0.05, seed=2)
    plain, plain_history = fit_defended_model(data, model, None, checkpoint_dir=tmp_path / "none", **settings)
    control, control_history = fit_defended_model(data, model, FineTune(), checkpoint_dir=tmp_path / "control",
                                                  **settings)
    assert same_weights(control, plain) and not same_weights(control, model), "fine-tuned, like defense=None"
    assert [r["loss"] for r in control_history] == [r["loss"] for r in plain_history]
    (plain_path,), (control_path,) = (tmp_path / "none").iterdir(), (tmp_path / "control").iterdir()
    assert control_path.name == plain_path.name
    assert control_path.name.startswith(f"finetune_dpsh_{DEFENSE_BITS}bits_small_cnn_")
    assert load_checkpoint(control_path)["epoch"] == 1
    settings_of_a_notebook = FineTune(num_train=len(data.train), bits=DEFENSE_BITS, eps=16 / 255)
    again, _ = fit_defended_model(data, model, settings_of_a_notebook, checkpoint_dir=tmp_path / "control", **settings)
    assert same_weights(again, plain) and len(list((tmp_path / "control").iterdir())) == 1, \
        "the ignored settings do not make another run: the finished checkpoint is loaded"
