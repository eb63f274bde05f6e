"""advhash.resumable: the run every trainer shares. An interrupted run resumes to the weights, buffers and history
of an uninterrupted one, bit for bit; another run's checkpoint, or one of more epochs, is refused; the cadence of
the saves; the pieces (RNG state, the refusals, the epoch record) on their own."""

import pytest
import torch

from advhash.checkpoint import load_checkpoint
from advhash.resumable import (ResumableRun, append_epoch, check_epochs, check_same_run, restore_rng_state,
                               rng_state)

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def toy_run(path, *, epochs, stop_after=None, checkpoint_every=1, config=None, evaluate=None):
    """A linear model trained by SGD on draws of the global RNG, with a running-sum buffer and a step count:
    whatever it resumes wrongly (weights, optimizer, RNG, buffer, step, history) changes its result."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    config = config or dict(lr=0.1)
    with ResumableRun(path, config, model, parts=dict(optimizer=optimizer), device=CPU, epochs=epochs,
                      checkpoint_every=checkpoint_every, evaluate=evaluate) as run:
        state = run.start(total=torch.zeros(2), step=0)
        total, step = state["total"], state["step"]
        for epoch in run.epochs():
            if stop_after is not None and epoch == stop_after:
                break                                         # an interruption: nothing saved for this epoch
            inputs = torch.randn(4, 3)
            loss = model(inputs).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, step = total + model(inputs).detach().sum(0), step + 1
            run.end_epoch(dict(epoch=epoch + 1, loss=loss.item()), total=total, step=step)
        return model, total, step, run


def test_an_interrupted_run_resumes_to_the_uninterrupted_one_bit_for_bit(tmp_path):
    model, total, step, run = toy_run(None, epochs=4)
    assert not run.resumed and [r["epoch"] for r in run.history] == [1, 2, 3, 4]
    path = tmp_path / "run.pt"
    toy_run(path, epochs=4, stop_after=2)
    assert load_checkpoint(path)["epoch"] == 2
    resumed, resumed_total, resumed_step, again = toy_run(path, epochs=4)
    assert again.resumed and again.start_epoch == 2
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))
    assert torch.equal(total, resumed_total) and step == resumed_step == 4
    assert again.history == run.history
    saved = load_checkpoint(path)
    assert {"model", "optimizer", "total", "step", "torch_rng", "threads", "epoch", "history",
            "run_config"} <= set(saved) and saved["threads"] == torch.get_num_threads()
    finished, *_ , only_loaded = toy_run(path, epochs=4)
    assert only_loaded.history == run.history and len(list(only_loaded.epochs())) == 0, "a finished run only loads"


def test_checkpoints_are_saved_every_checkpoint_every_epochs_and_after_the_last(tmp_path):
    path = tmp_path / "run.pt"
    toy_run(path, epochs=5, stop_after=3, checkpoint_every=2)
    assert load_checkpoint(path)["epoch"] == 2
    toy_run(path, epochs=5, checkpoint_every=2)
    assert load_checkpoint(path)["epoch"] == 5
    with pytest.raises(ValueError, match="checkpoint_every must be at least 1"):
        toy_run(path, epochs=5, checkpoint_every=0)


def test_another_runs_checkpoint_or_one_of_more_epochs_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    toy_run(path, epochs=3)
    with pytest.raises(ValueError, match=r"different run \(lr: checkpoint 0.1 vs now 0.2\)"):
        toy_run(path, epochs=3, config=dict(lr=0.2))
    with pytest.raises(ValueError, match="holds 3 epochs, more than the 2 asked for"):
        toy_run(path, epochs=2)


def test_no_path_trains_without_saving_and_evaluate_joins_each_record(tmp_path):
    _, _, _, run = toy_run(None, epochs=2, evaluate=lambda model: {"score": torch.tensor(0.5)})
    assert [r["score"] for r in run.history] == [0.5, 0.5] and type(run.history[0]["score"]) is float
    assert not list(tmp_path.iterdir())


def test_the_pieces_on_their_own(tmp_path):
    torch.manual_seed(1)
    state = rng_state(CPU)
    first = torch.rand(3)
    restore_rng_state(state, CPU)
    assert torch.equal(torch.rand(3), first)
    check_same_run(dict(lr=0.1, extra=1), dict(lr=0.1), "x.pt")            # only the current settings count
    with pytest.raises(ValueError, match="seed: checkpoint None vs now 3"):
        check_same_run(dict(lr=0.1), dict(lr=0.1, seed=3), "x.pt")
    check_epochs(dict(epoch=2), 2, "x.pt")
    with pytest.raises(ValueError, match="holds 3 epochs"):
        check_epochs(dict(epoch=3), 2, "x.pt")
    history, model = [], torch.nn.Linear(1, 1).train()
    append_epoch(history, dict(epoch=1), model, lambda m: {"training": m.training})
    assert history == [dict(epoch=1, training=0.0)], "evaluate sees the model in eval mode"
    append_epoch(history, dict(epoch=2), model, None)
    assert history[-1] == dict(epoch=2)


def test_the_run_holds_the_checkpoint_lock(tmp_path):
    path = tmp_path / "run.pt"
    with ResumableRun(path, {}, torch.nn.Linear(1, 1), device=CPU, epochs=1):
        assert (tmp_path / "run.pt.lock").exists()
        with pytest.raises(RuntimeError, match="being written by another run"):
            with ResumableRun(path, {}, torch.nn.Linear(1, 1), device=CPU, epochs=1):
                pass
    assert not (tmp_path / "run.pt.lock").exists()
