"""The resumable run every trainer shares (``train_hashing``, ``train_dcmh``, ``train_ssah``).

A :class:`ResumableRun` holds the checkpoint lock, resumes an interrupted run (the model, every optimizer,
scheduler or other stateful part, the trainer's own buffers, the torch RNG and the epoch history), refuses a
checkpoint of another run or of more epochs, starts a longer run from a finished shorter one, shows progress,
joins ``evaluate``'s numbers to each epoch's record and saves atomically (with the torch thread count) every
``checkpoint_every`` epochs and after the last. The trainer writes only its paper's steps:

    with ResumableRun(path, run_config, model, parts=dict(optimizer=opt), device=device, epochs=epochs) as run:
        step = run.start(step=0)["step"]
        for epoch in run.epochs():
            ...                                  # one epoch of the paper's updates
            run.end_epoch(record, step=step)
        model.eval()
        return run.history
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

from .checkpoint import checkpoint_lock, load_checkpoint, resume_shorter_run, save_checkpoint
from .utils import progress

__all__ = ["ResumableRun", "append_epoch", "check_epochs", "check_same_run", "restore_rng_state", "rng_state"]


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The torch RNG state to checkpoint: the CPU generator's ("torch_rng") and, on CUDA, the device's
    ("cuda_rng": dropout and random starts drawn there)."""
    state = dict(torch_rng=torch.get_rng_state())
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` saved. A checkpoint loaded with ``map_location`` on a GPU holds its RNG
    states on that GPU, while torch sets them only from CPU byte tensors: they are moved back first."""
    torch.set_rng_state(state["torch_rng"].cpu())
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)


def append_epoch(history: list[dict[str, Any]], record: dict[str, Any], model: torch.nn.Module,
                 evaluate: Callable[[Any], dict[str, float]] | None) -> None:
    """End of a training epoch: join ``evaluate(model)``'s numbers (computed in eval mode) to the epoch's
    ``record``, then append it to ``history``."""
    if evaluate is not None:
        model.eval()
        record.update({key: float(value) for key, value in evaluate(model).items()})
    history.append(record)


def check_same_run(saved: dict, current: dict, path) -> None:
    """Refuse to resume a checkpoint whose run settings differ from the current ones, naming each difference."""
    differences = {key: (saved.get(key), value) for key, value in current.items() if saved.get(key) != value}
    if differences:
        described = ", ".join(f"{key}: checkpoint {old!r} vs now {new!r}" for key, (old, new) in differences.items())
        raise ValueError(f"checkpoint {path} was written by a different run ({described}); "
                         "delete it or choose another checkpoint path")


def check_epochs(state: dict, epochs: int, path) -> None:
    """Refuse a checkpoint that ran past the ``epochs`` asked for: its weights are not those of the run asked for."""
    if state["epoch"] > epochs:
        raise ValueError(f"checkpoint {path} holds {state['epoch']} epochs, more than the {epochs} asked for; "
                         "ask for its epoch count, or choose another checkpoint path (the fit_* functions name "
                         "each epoch count's checkpoint apart)")


class ResumableRun:
    """One training run of ``epochs`` epochs, checkpointed at ``path`` (None: not checkpointed, never resumed).

    Args:
        run_config: every setting of the run; a checkpoint written with other settings is refused.
        model: the ``nn.Module`` trained (saved as "model").
        parts: {key: object with ``state_dict`` / ``load_state_dict``} saved beside it: optimizers, schedulers,
            a loss's tables, a defense.
        device: where the run trains (the checkpoint is loaded there; its RNG too).
        checkpoint_every: save every this many epochs, and after the last.
        evaluate: optional ``evaluate(model) -> {name: value}`` after each epoch, joined to its record.
        desc: the progress bar's label.

    Use as a context manager (it holds ``advhash.checkpoint.checkpoint_lock`` of ``path``), then :meth:`start`,
    :meth:`epochs` and :meth:`end_epoch` (module docstring).
    """

    def __init__(self, path: str | Path | None, run_config: dict[str, Any], model: torch.nn.Module, *,
                 parts: Mapping[str, Any] = {}, device: torch.device, epochs: int, checkpoint_every: int = 1,
                 evaluate: Callable[[Any], dict[str, float]] | None = None, desc: str = "train"):
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1 (epochs between checkpoints), got {checkpoint_every}")
        self.path, self.run_config, self.model, self.parts = path, run_config, model, dict(parts)
        self.device, self.total, self.checkpoint_every = device, epochs, checkpoint_every
        self.evaluate, self.desc = evaluate, desc
        self.history: list[dict[str, Any]] = []
        self.start_epoch, self.resumed = 0, False
        self._lock = checkpoint_lock(path)

    def __enter__(self) -> "ResumableRun":
        self._lock.__enter__()
        return self

    def __exit__(self, *exception) -> None:
        self._lock.__exit__(*exception)

    def start(self, **initial: Any) -> dict[str, Any]:
        """Resume from the checkpoint when there is one (from a finished shorter run when it is not written
        yet): restore the model, the parts and the torch RNG, take the epoch and the history, and return the
        trainer's own state (its buffers, a step count) under the keys of ``initial``, whose values serve a
        fresh run. Sets ``resumed``."""
        if self.path is None:
            return initial
        resume_shorter_run(self.path)         # a longer run of a finished shorter one starts from it
        if not Path(self.path).is_file():
            return initial
        state = load_checkpoint(self.path, map_location=self.device)
        check_same_run(state["run_config"], self.run_config, self.path)
        check_epochs(state, self.total, self.path)
        self.model.load_state_dict(state["model"])
        for key, part in self.parts.items():
            part.load_state_dict(state[key])
        restore_rng_state(state, self.device)
        self.start_epoch, self.history, self.resumed = state["epoch"], list(state["history"]), True
        return {key: state[key] for key in initial}

    def epochs(self) -> Iterable[int]:
        """The epochs left to train (0-based), with a progress bar."""
        return progress(range(self.start_epoch, self.total), desc=self.desc, initial=self.start_epoch,
                        total=self.total)

    def end_epoch(self, record: dict[str, Any], **state: Any) -> None:
        """Join ``evaluate``'s numbers to the epoch's ``record`` (its "epoch" is the count done), append it to the
        history and, every ``checkpoint_every`` epochs and after the last, save the model, the parts, the
        trainer's own ``state`` (buffers, step count), the RNG, the thread count and the history atomically."""
        append_epoch(self.history, record, self.model, self.evaluate)
        done = record["epoch"]
        if self.path is None or (done % self.checkpoint_every != 0 and done != self.total):
            return
        save_checkpoint(dict(model=self.model.state_dict(),
                             **{key: part.state_dict() for key, part in self.parts.items()}, **state,
                             **rng_state(self.device), threads=torch.get_num_threads(), epoch=done,
                             history=self.history, run_config=self.run_config), self.path)
