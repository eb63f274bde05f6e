"""Victim manifests: the models one notebook trained, written down for the notebooks that attack them.

Notebook 01 trains one hashing model per (method, bits) and writes ``<checkpoint_dir>/victims.json``
(:class:`VictimManifest`); notebooks 02, 04 and 05 read it (their ``victims_from`` parameter) instead of
re-declaring notebook 01's settings, and DVC, which tracks the folder as their dependency, reruns them.
A listed victim is loaded from its own file only, and only when that file is exactly what the manifest says: the
name the reader's data and the manifest's settings give (``advhash.train.hashing_checkpoint_name``: dataset,
training items, settings, epochs, training code and torch thread count), training data of the same content
(``train_digest``) and a finished run. Anything else is an error naming the file, the difference and the fix
(a notebook at another thread count is told to set it); never a silent retrain or a stale model. The file must
also hold those settings (``advhash.checkpoint.check_settings``: a file copied or renamed from another run is
refused, naming the first differing setting) and the model of that method, code length and backbone. A victim the
manifest does not list is trained with its settings into the reader's own folder (``advhash.fitting.fit_victims``).

    source = VictimManifest(Path("checkpoints/01_deep_hashing"), split=split, training=training)   # notebook 01
    model, history = source.fit(data, "dph", 32); source.write()
    model = read_manifest("checkpoints/01_deep_hashing/victims.json").load(data, "dph", 32)         # a reader
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import RUN_FILE, CheckpointMismatch, RunPath, load_checkpoint, split_digest
from .fingerprint import code_fingerprint
from .data import load_dataset
from .data.storage import write_bytes_atomic
from .models import HashingModel, effective_precision
from .models.backbones import weights_file
from .utils import resolve_device
from .losses import LOSSES
from .train import fit_hashing_model, hashing_checkpoint_path, model_from_state

__all__ = ["MANIFEST_NAME", "VictimManifest", "read_manifest"]

MANIFEST_NAME = "victims.json"
FORMAT = 1
SPLIT_KEYS = ("dataset", "root", "num_query", "num_train", "num_database", "seed")
VICTIM_CODE = ("advhash.train",)          # the training path of a victim, fingerprinted into its checkpoint name


@dataclass
class VictimManifest:
    """The victims trained in ``folder``: the data ``split`` they were trained on (dataset name, its folder
    ``root`` relative to the project root, and the ``load_dataset`` split sizes and seed), the ``training``
    settings of ``fit_hashing_model`` shared by all (backbone, epochs, seed, pairs, optimizer, ...), and
    ``victims``: {(method, bits): checkpoint file name}, and ``train_digest``, the content digest of the training
    split they share, and ``threads``, the torch thread count they were trained on (None: unknown, the reader's).
    Its file:

        {"format": 1,
         "split": {"dataset": "fashion-mosaic", "root": "data", "num_query": 500, "num_train": 3000,
                   "num_database": 6000, "seed": 0},
         "training": {"backbone": "small_cnn", "epochs": 10, "seed": 0, "pairs": "batch", "batch_size": 64,
                      "optimizer": "adam", "lr": 0.001, ...},
         "train_digest": "5e6f7a8b", "code": "b0157b58", "threads": 1,
         "victims": [{"method": "dph", "bits": 16, "checkpoint": "dph_16bits_small_cnn_e10_1a2b3c4d.pt"}, ...]}
    """

    folder: Path
    split: dict[str, Any]
    training: dict[str, Any]
    victims: dict[tuple[str, int], str] = field(default_factory=dict)
    train_digest: str | None = None
    code: str | None = None
    threads: int | None = None

    def __post_init__(self):
        self.folder = Path(self.folder)
        missing = [key for key in SPLIT_KEYS if key not in self.split]
        if missing:
            raise ValueError(f"victim manifest {self.path}: its split lacks {missing}")
        if "epochs" not in self.training:
            raise ValueError(f"victim manifest {self.path}: its training settings lack 'epochs'")

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST_NAME

    @property
    def dataset(self) -> str:
        return self.split["dataset"]

    @property
    def fine_tuning(self) -> dict[str, Any]:
        """The settings a fine-tune of these victims keeps (the loss's pairs, the batch size, the optimizer and the
        checkpoint cadence); its epochs, learning rate and seed are its own."""
        keys = ("pairs", "batch_size", "optimizer", "momentum", "weight_decay", "checkpoint_every")
        return {key: self.training[key] for key in keys if key in self.training}

    def load_data(self, project_root: str | os.PathLike, dataset: str | None = None):
        """The data split the victims were trained on (``advhash.data.load_dataset`` from the manifest's data
        folder under ``project_root``); with ``dataset``, the split of the same sizes and seed of another dataset."""
        sizes = {key: value for key, value in self.split.items() if key not in ("dataset", "root")}
        return load_dataset(dataset or self.dataset, root=Path(project_root) / self.split["root"], **sizes)

    def fit(self, data, method: str, bits: int, *, device: str | torch.device = "cpu"):
        """Train (or resume, or load) victim ``method`` / ``bits`` on ``data`` with this manifest's settings in
        its folder, and list it. Returns ``fit_hashing_model``'s (model, history)."""
        digest = split_digest(data.train)
        if self.train_digest not in (None, digest):
            raise ValueError(f"victim manifest {self.path} lists victims trained on other data ({self.train_digest}) "
                             f"than the {data.name} given ({digest}): one manifest holds the victims of one split")
        if self.training.get("precision", "auto") == "auto":       # listed as it was resolved for this device
            self.training["precision"] = effective_precision("auto", resolve_device(device))
        self._require_threads()                      # one manifest holds the victims of one thread count
        self.threads = torch.get_num_threads()
        model, history = fit_hashing_model(data, method=method, bits=bits, checkpoint_dir=self.folder,
                                           device=device, **self.training)
        self.train_digest, self.code = digest, code_fingerprint(*VICTIM_CODE)
        self.victims[method, bits] = self.checkpoint_name(data, method, bits)
        return model, history

    def checkpoint_name(self, data, method: str, bits: int) -> str:
        """The checkpoint file name of victim ``method`` / ``bits`` trained on ``data`` with these settings."""
        return self.checkpoint_path(data, method, bits).name

    def checkpoint_path(self, data, method: str, bits: int) -> RunPath:
        """The checkpoint of victim ``method`` / ``bits`` trained on ``data`` with these settings, in the manifest's
        folder: an ``advhash.checkpoint.RunPath`` carrying the settings it must hold. A local weights file the
        settings name that is no longer there is named as such (not blamed on the data)."""
        settings = dict(self.training)
        settings["precision"] = effective_precision(settings.get("precision", "fp32"), "cpu")   # resolved when fit
        try:
            weights_file(settings.get("weights"))    # only this: a missing image or code file is named by its own error
        except FileNotFoundError as error:
            weights = Path(str(settings.get("weights")))
            what = "is a folder, not a file" if weights.is_dir() else "does not exist"
            where = "" if weights.is_absolute() else f" (looked for at {weights.absolute()})"
            raise FileNotFoundError(
                f"victim manifest {self.path} lists victims trained from weights file {weights}, which {what}"
                f"{where}: it was moved, renamed or deleted since notebook 01 trained them. Put it back, or "
                "rerun notebook 01 (dvc repro deep_hashing) with weights set to its new place") from error
        return hashing_checkpoint_path(self.folder, data, method=method, bits=bits, **settings)

    def lists(self, dataset: str, method: str, bits: int, *, backbone: str | None = None,
              seed: int | None = None) -> bool:
        """Whether the manifest holds this victim (``backbone`` / ``seed`` None: the manifest's own)."""
        return (dataset == self.dataset and (method, bits) in self.victims
                and backbone in (None, self.training.get("backbone", "small_cnn"))
                and seed in (None, self.training.get("seed", 0)))

    def _require_threads(self) -> None:
        """Refuse to load or add victims at another torch thread count than the listed ones were trained on (their
        checkpoint names hold it), naming the fix."""
        if self.threads not in (None, torch.get_num_threads()):
            raise ValueError(f"victim manifest {self.path} lists victims trained on {self.threads} torch threads, "
                             f"and their checkpoint names say so; this process runs {torch.get_num_threads()}. "
                             f"Call torch.set_num_threads({self.threads}) first, or start Python or JupyterLab "
                             f"with OMP_NUM_THREADS={self.threads} (the pipeline's pipeline.threads)")

    def load(self, data, method: str, bits: int, *, device: str | torch.device = "cpu") -> HashingModel:
        """Victim ``method`` / ``bits``, read (never written) from its checkpoint after checking it is the one
        listed for ``data``: same name, finished after the manifest's epochs. Eval mode, on ``device``."""
        if (method, bits) not in self.victims:
            listed = ", ".join(f"{m} {b} bits" for m, b in self.victims) or "none"
            raise KeyError(f"victim manifest {self.path} lists no {method} model of {bits} bits (listed: {listed}); "
                           "add the method and code length to notebook 01's parameters (params.yaml, section "
                           "deep_hashing: methods, bits_list) and rerun it")
        path = self.folder / self.victims[method, bits]
        self._require_threads()
        given = split_digest(data.train)
        if given != self.train_digest:
            raise ValueError(f"victim manifest {self.path} lists victims trained on other data than the {data.name} "
                             f"given (content digest {self.train_digest} vs {given}): the data "
                             "differs from the one the victims were trained on; load it with the manifest's "
                             "load_data(), or rerun notebook 01 (dvc repro deep_hashing) after a data change")
        expected_path = self.checkpoint_path(data, method, bits)
        expected = expected_path.name
        if path.name != expected:
            listed, now = RUN_FILE.match(path.name), RUN_FILE.match(expected)
            if listed and now and listed["epochs"] != now["epochs"]:
                why = (f"it lists a run of {listed['epochs']} epochs but its training settings say {now['epochs']}: "
                       "the manifest and the checkpoint come from different runs")
            elif self.code is not None and self.code != code_fingerprint(*VICTIM_CODE):
                why = (f"the training code changed since notebook 01 trained it (code fingerprint {self.code} vs "
                       f"{code_fingerprint(*VICTIM_CODE)}, advhash.fingerprint)")
            else:
                why = (f"the data given ({data.name}) or its split differs from the one the victims were trained on "
                       "(load it with the manifest's load_data()), or the pretrained weights file changed since")
            raise ValueError(f"victim manifest {self.path} lists {path.name} for {method} {bits} bits, but these "
                             f"settings would name it {expected}: {why}; rerun notebook 01 (dvc repro deep_hashing)")
        if not path.is_file():
            raise FileNotFoundError(f"{path}, listed in {self.path}, is missing: rerun notebook 01 "
                                    "(dvc repro deep_hashing) to train it again")
        state = load_checkpoint(path, map_location=device, settings=expected_path.settings)
        self._check_model(state, path, method, bits)
        if state["epoch"] != self.training["epochs"]:
            raise ValueError(f"{path} holds a run of {state['epoch']} epochs but {self.path} says "
                             f"{self.training['epochs']}: the run that wrote it did not finish; "
                             "rerun notebook 01 (dvc repro deep_hashing)")
        return model_from_state(state, device=device)

    def _check_model(self, state: dict[str, Any], path: Path, method: str, bits: int) -> None:
        """Refuse a listed checkpoint whose model is not victim ``method`` / ``bits`` of the manifest's backbone
        (its code length, backbone or hashing loss differ), naming the file and the difference."""
        run_config = state.get("run_config", {})
        model = run_config.get("model", {})
        expected = dict(bits=bits, backbone=self.training.get("backbone", "small_cnn"),
                        loss=LOSSES[method.lower()].__name__)
        held = dict(bits=model.get("bits"), backbone=model.get("backbone"), loss=run_config.get("loss"))
        for key, value in expected.items():
            if held[key] != value:
                raise CheckpointMismatch(
                    f"{path}, listed in {self.path} for {method} {bits} bits, holds a model of {key} "
                    f"{held[key]!r}, not {value!r}: it was copied or renamed from another run; delete it, then "
                    "rerun notebook 01 (dvc repro deep_hashing)")

    def write(self) -> Path:
        """Write the manifest to ``folder / victims.json`` atomically. Returns its path."""
        content = dict(format=FORMAT, split=self.split, training=self.training, train_digest=self.train_digest,
                       code=self.code, threads=self.threads,
                       victims=[dict(method=method, bits=bits, checkpoint=name)
                                for (method, bits), name in self.victims.items()])
        write_bytes_atomic(self.path, (json.dumps(content, indent=2) + "\n").encode())
        return self.path


def read_manifest(path: str | os.PathLike) -> VictimManifest:
    """Read a manifest written by :meth:`VictimManifest.write` (a ``victims.json``, or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no victim manifest at {path}: run notebook 01 first (dvc repro deep_hashing; "
                                "in CI, nbval runs it before the others), or point victims_from at its "
                                f"checkpoint folder's {MANIFEST_NAME}")
    try:
        content = json.loads(path.read_text())
        if content.get("format") != FORMAT:
            raise ValueError(f"format {content.get('format')!r}, this advhash reads format {FORMAT}")
        victims = {(entry["method"], int(entry["bits"])): entry["checkpoint"] for entry in content["victims"]}
        training = dict(content["training"])
        if "lr_milestones" in training:
            training["lr_milestones"] = tuple(training["lr_milestones"])   # as the writer passed them
        return VictimManifest(path.parent, split=content["split"], training=training, victims=victims,
                              train_digest=content["train_digest"], code=content.get("code"),
                              threads=content.get("threads"))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"victim manifest {path} is unreadable ({type(error).__name__}: {error}); rerun "
                         "notebook 01 (dvc repro deep_hashing) to write it again") from error
