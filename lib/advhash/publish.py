"""What a pipeline run may touch: one run of a stage at a time, and results published file by file.

:func:`stage_lock` holds ``build/locks/<stem>.lock`` while a stage runs: a second run of the same stage in the
same project is refused at once (:class:`StageRunning`), naming the holder. :func:`publish_files` copies a
successful run's figures and metrics from its staging folder into their folders, replacing only files the stage
owns and removing only files it wrote and no longer writes, so that a ``figure_dir`` shared with a user's files or
another stage's folders loses nothing. A stage owns (a) everything inside the outputs ``dvc.yaml`` declares for it
(:func:`stage_outputs`: DVC itself treats them as the stage's) and (b) the files its record in a folder lists,
``.advhash-outputs-<stem>.json`` (:func:`outputs_record`), which a run writes wherever it publishes. Records are a
convenience for folders of one's own choosing (a ``figure_dir`` outside the stage's declared outputs); the default
layout needs none, so they are not kept in git. Files are
written and copied atomically (:mod:`advhash.atomic`). Used by :func:`advhash.pipeline.run_notebook`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator

import yaml

from .atomic import copy_atomically, write_atomically

__all__ = ["OUTPUTS_RECORD_PREFIX", "StageRunning", "PublishFailed", "stage_lock", "stage_outputs",
           "publish_results", "outputs_record", "publish_files"]

OUTPUTS_RECORD_PREFIX = ".advhash-outputs-"   # <folder>/.advhash-outputs-<stem>.json: the files stage <stem> wrote
STAGE_COMMAND = "python -m advhash.pipeline run "   # + <stem>: the cmd of a notebook's stage in dvc.yaml


class StageRunning(RuntimeError):
    """A run of a stage refused because another run of the same stage holds its lock."""


class PublishFailed(RuntimeError):
    """Publishing a successful run's results stopped part way (a full disk, a permission); its staging folder is
    kept whole, so that it can be published again."""


@contextlib.contextmanager
def stage_lock(stem: str, root: str | os.PathLike) -> Iterator[Path]:
    """One run of a stage at a time in a project, since two runs of a stage would write the same report, figures,
    metrics and checkpoints: an exclusive ``flock`` on ``build/locks/<stem>.lock``, held through an open file for as
    long as the block runs. The kernel releases it when the process ends, however it ends (``kill -9`` included),
    so a lock is never stale and no process guesses whether another is gone. The holder writes its pid, host,
    start time and command into the file, for the refusal: a second run is refused at once (:class:`StageRunning`)
    naming the holder and the fix. The file itself stays (deleting it would let a run that opened it before the
    deletion and one that opens the new file both hold "the" lock). Yields the lock's path."""
    lock = Path(root) / "build" / "locks" / f"{stem}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(handle, 65536, 0).decode("utf-8"))
            except (OSError, ValueError):
                holder = {}                                # being written this instant
            holder = holder if isinstance(holder, dict) else {}
            raise StageRunning(
                f"stage {stem} is already running: process {holder.get('pid', '?')} on {holder.get('host', '?')}, "
                f"started {holder.get('started', '?')} ({holder.get('command', '?')}); it holds the lock {lock}. "
                f"Wait for it to finish (two runs of a stage would overwrite each other's results) or stop that "
                f"process; the lock is freed the moment it ends, however it ends") from None
        me = dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime("%Y-%m-%d %H:%M:%S %z"),
                  command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))
        os.ftruncate(handle, 0)
        os.pwrite(handle, json.dumps(me).encode("utf-8"), 0)
        try:
            yield lock
        finally:
            os.ftruncate(handle, 0)                        # nobody holds it: nothing to name
    finally:
        os.close(handle)                                   # releases the flock


def stage_outputs(root: str | os.PathLike) -> dict[str, list[Path]]:
    """Every notebook stage's declared outputs in ``<root>/dvc.yaml``: {notebook stem: [output paths]}, the stem
    taken from a stage whose ``cmd`` is ``python -m advhash.pipeline run <stem>``, the paths from its ``outs``,
    ``metrics`` and ``plots``. An output that is a folder is the stage's with all it holds. No dvc.yaml (or no such
    stage) declares nothing."""
    path = Path(root) / "dvc.yaml"
    try:
        stages = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages") or {}
    except FileNotFoundError:
        return {}
    except (yaml.YAMLError, AttributeError) as error:
        raise ValueError(f"{path} is not a readable DVC pipeline ({type(error).__name__}: {error}); it says which "
                         f"outputs each stage owns: fix it, or `git checkout dvc.yaml`") from None
    outputs: dict[str, list[Path]] = {}
    for stage in stages.values() if isinstance(stages, dict) else ():
        command = " ".join(str(stage.get("cmd", "")).split()) if isinstance(stage, dict) else ""
        if not command.startswith(STAGE_COMMAND):
            continue
        entries = [entry for kind in ("outs", "metrics", "plots") for entry in stage.get(kind) or ()]
        outputs.setdefault(command[len(STAGE_COMMAND):].strip(), []).extend(
            Path(root) / (next(iter(entry)) if isinstance(entry, dict) else str(entry)) for entry in entries)
    return outputs


def publish_results(stem: str, staging: Path, root: Path, *, figure_dir: str | os.PathLike,
                    metrics_dir: str | os.PathLike) -> None:
    """Publish a successful run's figures (``staging/figures``) and metrics (``staging/metrics``) into the
    notebook's ``figure_dir`` and ``metrics_dir`` (relative to ``root``, or absolute; they may be one folder) by
    :func:`publish_files`, the stage owning its outputs declared in ``root/dvc.yaml``."""
    targets: dict[Path, list[Path]] = {}
    for source, target in ((staging / "figures", figure_dir), (staging / "metrics", metrics_dir)):
        folder = (root / target).resolve()
        same = next((known for known in targets if _same_file(known, folder)), folder)
        targets.setdefault(same, []).append(source)
    publish_files(stem, targets, declared=stage_outputs(root))


def outputs_record(stem: str, folder: Path) -> Path:
    """The record of the files stage ``stem`` published into ``folder`` and their sha256:
    ``<folder>/.advhash-outputs-<stem>.json``. Its next run there replaces and removes those files, and no other
    file outside the stage's declared outputs. Needed only where the stage publishes outside what dvc.yaml declares
    for it (a ``figure_dir`` of one's own); a lost record makes the stage refuse, naming the files, never delete."""
    return folder / f"{OUTPUTS_RECORD_PREFIX}{stem}.json"


def _read_record(record: Path) -> dict[str, str | None]:
    """{relative path: sha256 of the content the stage wrote} from an outputs record (a bare list, from the first
    records, has no hashes: None); a damaged one, or one naming a path outside its folder, is refused rather than
    trusted with deletions."""
    fix = ("delete it: the stage then replaces the files inside its outputs declared in dvc.yaml, refuses to "
           "replace any other, and removes none")
    try:
        files = json.loads(record.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"the outputs record {record} is unreadable ({type(error).__name__}: {error}); {fix}") from None
    if isinstance(files, list):
        files = dict.fromkeys(files)
    if not isinstance(files, dict) or not all(
            isinstance(name, str) and name and not Path(name).is_absolute() and ".." not in Path(name).parts
            and (digest is None or isinstance(digest, str)) for name, digest in files.items()):
        raise ValueError(f"the outputs record {record} lists {files!r}, not relative paths inside its folder with "
                         f"their sha256; {fix}")
    return files


def _identity(path: Path) -> tuple[int, int] | None:
    """What names one file whatever the spelling of its path (a case-insensitive file system, a symlinked folder):
    its (device, inode), the path's last part not followed; None if nothing is there."""
    try:
        status = os.lstat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:                                        # one is not there yet: compare the spelled paths
        return first == second


def _declared_owner(path: Path, declared: dict[str, list[Path]]) -> tuple[str, Path] | None:
    """The stage (and its output) whose declared outputs hold the existing file ``path``: the output is that file,
    or a folder at or above it."""
    here = _identity(path)
    above = {(status.st_dev, status.st_ino) for folder in path.parents
             for status in [_stat(folder)] if status is not None}
    for stage, outputs in declared.items():
        for output in outputs:
            status = _stat(output)
            if status is not None and ((status.st_dev, status.st_ino) in above or _identity(output) == here):
                return stage, output
    return None


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def publish_files(stem: str, targets: dict[Path, list[Path]], *,
                  declared: dict[str, list[Path]] | None = None) -> None:
    """Put the files under each target's sources (staging folders of one successful run of stage ``stem``) into
    that target folder, file by file, and remove the stage's own files it no longer writes. ``declared``: every
    stage's outputs in dvc.yaml (:func:`stage_outputs`). Never replaces nor deletes a file the stage does not own:

    - the stage owns every file inside its own ``declared`` outputs, and the files its record in a folder
      (:func:`outputs_record`) lists from its last run there; files are compared as files (device and inode), so
      that a second spelling of a path (a case-insensitive file system) is no other file;
    - a file this run writes whose path holds a file the stage does not own (a user's, another stage's) or a folder,
      or two staged files bound for one path (``figure_dir`` and ``metrics_dir`` one folder), make it refuse before
      anything is copied anywhere, naming the files and the fix;
    - a recorded file this run no longer writes is removed only when its content is still what the stage wrote
      (the sha256 in the record); one changed since is kept, with a warning naming it, and leaves the record.

    Files are copied (through a temporary beside the target, then ``os.replace``: a reader sees the old file or
    the new), so that the sources stay whole until the caller removes them; a failure part way raises
    :class:`PublishFailed` naming what was published and the sources, from which a second publish completes it.
    Each record is updated before the copies (to what the stage owns during them) and after them."""
    declared = declared or {}
    mine = {stem: declared.get(stem, [])}
    kept = ", ".join(str(source) for sources in targets.values() for source in sources if source.is_dir())
    plans, clashes, doubles, bound = [], [], [], {}
    for target, sources in targets.items():
        files = {}                                                # relative path -> staged file
        for source in sources:
            for path in sorted(source.rglob("*")) if source.is_dir() else []:
                if path.is_file():
                    name = path.relative_to(source).as_posix()
                    folder = _identity((target / name).parent) or (target / name).parent.resolve()
                    first = bound.setdefault((folder, Path(name).name), path)
                    if first != path:
                        doubles.append(f"{target / name} (both {first} and {path} would go there)")
                    files[name] = path
        record = outputs_record(stem, target)
        previous = _read_record(record) if record.is_file() else None
        if previous is None and not any(source.is_dir() for source in sources):
            continue                                              # the stage writes nothing here, never did
        recorded = {_identity(target / name) for name in previous or ()} - {None}
        others = {}                          # file -> the other stage whose record (here, above, below) lists it
        folders = {*target.parents, *(folder for name in files for folder in (target / name).parents)}
        for folder in sorted(folder for folder in folders if folder.is_dir()):
            for other in folder.glob(f"{OUTPUTS_RECORD_PREFIX}*.json"):
                owner = other.name[len(OUTPUTS_RECORD_PREFIX):-len(".json")]
                if owner != stem:
                    others.update({identity: owner for path in _read_record(other)
                                   if (identity := _identity(folder / path)) is not None})
        for name in files:
            path = target / name
            identity = _identity(path)
            if identity is None or (identity in recorded and not path.is_dir()) or (
                    not path.is_dir() and _declared_owner(path, mine)):
                continue                                          # a new file, or one the stage owns
            if path.is_dir() and not path.is_symlink():
                clashes.append(f"{path} (a folder)")
            elif identity in others:
                clashes.append(f"{path} (stage {others[identity]}'s)")
            elif owner := _declared_owner(path, declared):
                clashes.append(f"{path} (stage {owner[0]}'s: inside its output {owner[1]} in dvc.yaml)")
            else:
                clashes.append(f"{path} (not written by stage {stem}: neither inside its outputs in dvc.yaml "
                               f"nor listed in its record {record})")
        plans.append((target, record, files, previous or {}))
    if doubles:
        raise FileExistsError(
            f"stage {stem} ran, but two of its results would go to one path, and one would be lost: "
            f"{', '.join(doubles)}. Nothing was moved; its results are kept in {kept}. Give figure_dir and "
            f"metrics_dir different folders in params.yaml, and rerun")
    if clashes:
        raise FileExistsError(
            f"stage {stem} ran, but publishing its results would replace files it does not own: "
            f"{', '.join(clashes)}. Nothing was moved; its results are kept in {kept}. A stage owns what dvc.yaml "
            f"declares as its outputs, and elsewhere only the files it wrote there itself. Move those files "
            f"elsewhere, or give the stage a folder of its own (figure_dir / metrics_dir in params.yaml), and rerun")
    published: list[str] = []
    try:
        for target, record, files, previous in plans:
            target.mkdir(parents=True, exist_ok=True)
            written = {name: _sha256(source) for name, source in files.items()}
            _write_record(record, stem, {**previous, **written})
            published.append(f"{target} (0 of {len(files)} files)")
            for count, (name, source) in enumerate(files.items(), 1):
                copy_atomically(source, target / name)
                published[-1] = f"{target} ({count} of {len(files)} files)"
            now = {_identity(target / name) for name in files}
            for name in sorted(set(previous) - set(files)):        # the stage's files from its last run, not rewritten
                if _identity(target / name) not in now:             # (not one just written, spelled otherwise)
                    _remove_own(target, name, previous[name], stem)
            _write_record(record, stem, written)
    except OSError as error:
        raise PublishFailed(
            f"stage {stem} ran, but publishing its results stopped part way ({type(error).__name__}: {error}). "
            f"Published: {', '.join(published) or 'nothing'}; every result is still kept, whole, in {kept}. Fix "
            f"the cause (a full disk, a permission) and publish them again") from error


def _remove_own(target: Path, name: str, digest: str | None, stem: str) -> None:
    """Remove the file ``name`` that stage ``stem`` wrote into ``target`` (and the folders it leaves empty), unless
    its content is no longer what the stage wrote (sha256 ``digest``): then it is someone's own now, kept, with a
    warning."""
    path = target / name
    if not (path.is_file() or path.is_symlink()):
        return
    if path.is_symlink() or digest is None or _sha256(path) != digest:
        warnings.warn(f"{path} was written by stage {stem}, which no longer writes it, but its content has changed "
                      f"since (or was never recorded): kept, as yours now; delete it if it is not",
                      stacklevel=3)
        return
    path.unlink()
    for folder in path.parents:
        if folder == target or not folder.is_relative_to(target) or any(folder.iterdir()):
            break
        folder.rmdir()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_record(record: Path, stem: str, files: dict[str, str | None]) -> None:
    text = json.dumps(dict(about=f"the files pipeline stage {stem} wrote here and their sha256 (advhash.publish."
                                 f"publish_files): besides its outputs declared in dvc.yaml, it replaces only "
                                 f"these, and removes one only while its content is unchanged",
                           stage=stem, files=dict(sorted(files.items()))), indent=1)
    write_atomically(record, text + "\n")
