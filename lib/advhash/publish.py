"""What a pipeline run may touch: one run of a stage at a time, and results published file by file.

:func:`stage_lock` holds ``build/locks/<stem>.lock`` while a stage runs: a second run of the same stage in the
same project is refused at once (:class:`StageRunning`), naming the holder. :func:`publish_files` moves a successful
run's figures and metrics from its staging folder into their folders, replacing or removing only the files the
stage wrote (each folder keeps a record of them, ``.advhash-outputs-<stem>.json``), so that a ``figure_dir`` shared
with a user's files or another stage's folders loses nothing. :func:`write_atomically` writes a text file so that a
reader sees the old content or the new, never half. Used by :func:`advhash.pipeline.run_notebook`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

__all__ = ["OUTPUTS_RECORD_PREFIX", "StageRunning", "stage_lock", "publish_results", "outputs_record",
           "publish_files", "write_atomically"]

OUTPUTS_RECORD_PREFIX = ".advhash-outputs-"   # <folder>/.advhash-outputs-<stem>.json: the files stage <stem> wrote


class StageRunning(RuntimeError):
    """A run of a stage refused because another run of the same stage holds its lock."""


@contextlib.contextmanager
def stage_lock(stem: str, root: str | os.PathLike) -> Iterator[Path]:
    """One run of a stage at a time in a project: ``build/locks/<stem>.lock`` holds the running process (pid,
    host, start time, command) for as long as the block runs, since two runs of a stage would write the same
    report, figures, metrics and checkpoints. A second run is refused at once (:class:`StageRunning`) with a
    message naming the holder and the fix; a lock whose process is gone (same host, no such pid: a killed run)
    is stale and taken over. Yields the lock's path. The style of :func:`advhash.checkpoint.checkpoint_lock`."""
    lock = Path(root) / "build" / "locks" / f"{stem}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime("%Y-%m-%d %H:%M:%S %z"),
              command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))
    for _ in range(2):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                holder = {}                              # being written this instant, or damaged
            if not isinstance(holder, dict):
                holder = {}
            pid = holder.get("pid")
            if holder.get("host") == me["host"] and isinstance(pid, int) and not _process_alive(pid):
                lock.unlink(missing_ok=True)             # stale: the run that held it is gone
                continue
            raise StageRunning(
                f"stage {stem} is already running: process {pid or '?'} on {holder.get('host', '?')}, started "
                f"{holder.get('started', '?')} ({holder.get('command', '?')}); it holds the lock {lock}. Wait for "
                f"it to finish (two runs of a stage would overwrite each other's results), or, if that process "
                f"is gone, delete the lock") from None
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(me, file)
        break
    else:
        raise StageRunning(f"could not take the lock {lock} of stage {stem}; delete it if no run of {stem} is going")
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish_results(stem: str, staging: Path, root: Path, *, figure_dir: str | os.PathLike,
                    metrics_dir: str | os.PathLike) -> None:
    """Move a successful run's figures (``staging/figures``) and metrics (``staging/metrics``) into the notebook's
    ``figure_dir`` and ``metrics_dir`` (relative to ``root``, or absolute; they may be one folder) by
    :func:`publish_files`."""
    targets: dict[Path, list[Path]] = {}
    for source, target in ((staging / "figures", figure_dir), (staging / "metrics", metrics_dir)):
        targets.setdefault((root / target).resolve(), []).append(source)
    publish_files(stem, targets)


def outputs_record(stem: str, folder: Path) -> Path:
    """The record of the files stage ``stem`` published into ``folder``: ``<folder>/.advhash-outputs-<stem>.json``,
    kept (and committed) with them, so that its next run knows which files there are its own."""
    return folder / f"{OUTPUTS_RECORD_PREFIX}{stem}.json"


def _read_record(record: Path) -> list[str]:
    """The files (relative paths) an outputs record lists; a damaged one, or one naming a path outside its folder,
    is refused rather than trusted with deletions."""
    try:
        files = json.loads(record.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"the outputs record {record} is unreadable ({type(error).__name__}: {error}); delete it: "
                         f"the stage then replaces only the files of the names it writes, and removes none") from None
    if not isinstance(files, list) or not all(
            isinstance(name, str) and name and not Path(name).is_absolute() and ".." not in Path(name).parts
            for name in files):
        raise ValueError(f"the outputs record {record} lists {files!r}, not relative paths inside its folder; "
                         f"delete it: the stage then replaces only the files of the names it writes, and removes none")
    return files


def publish_files(stem: str, targets: dict[Path, list[Path]]) -> None:
    """Put the files under each target's sources (staging folders of one successful run of stage ``stem``) into
    that target folder, file by file, and remove the stage's own files it no longer writes. Never replaces nor
    deletes a file the stage did not write:

    - the stage's files in a folder are the ones its record there (:func:`outputs_record`) lists from its last run;
      those this run does not write again are removed (and a folder they leave empty), the others replaced;
    - every other file and folder there (a user's own, another stage's folder) is left alone. A file this run
      writes whose path holds a file that another stage's record lists, a folder, or (the stage having a record)
      a file that is not the stage's own makes it refuse before anything is moved in any folder, naming the files
      and the fix;
    - with no record yet (results written before records were kept), a file of a name this run writes is taken
      as the stage's own and replaced.

    Each record is updated before the moves (to what the stage owns during them) and after them, so that an
    interrupted publish never leaves a file of the stage unrecorded."""
    plans, clashes = [], []
    for target, sources in targets.items():
        files = {}                                                # relative path -> staged file
        for source in sources:
            for path in sorted(source.rglob("*")) if source.is_dir() else []:
                if path.is_file():
                    files.setdefault(path.relative_to(source).as_posix(), path)
        record = outputs_record(stem, target)
        previous = _read_record(record) if record.is_file() else None
        if previous is None and not any(source.is_dir() for source in sources):
            continue                                              # the stage writes nothing here, never did
        owned = set(previous or ())
        others = {}                             # path -> the other stage whose record (here, above, below) lists it
        folders = {*target.parents, *(folder for name in files for folder in (target / name).parents)}
        for folder in sorted(folder for folder in folders if folder.is_dir()):
            for other in folder.glob(f"{OUTPUTS_RECORD_PREFIX}*.json"):
                owner = other.name[len(OUTPUTS_RECORD_PREFIX):-len(".json")]
                if owner != stem:
                    others.update({(folder / path).resolve(): owner for path in _read_record(other)})
        for name in files:
            path = target / name
            if path.resolve() in others:
                clashes.append(f"{path} (stage {others[path.resolve()]}'s)")
            elif path.is_dir() and not path.is_symlink():
                clashes.append(f"{path} (a folder)")
            elif (path.exists() or path.is_symlink()) and previous is not None and name not in owned:
                clashes.append(f"{path} (not written by stage {stem})")
        plans.append((target, record, files, owned))
    if clashes:
        sources = ", ".join(str(source) for sources in targets.values() for source in sources if source.is_dir())
        raise FileExistsError(
            f"stage {stem} ran, but publishing its results would replace files it did not write: "
            f"{', '.join(clashes)}. Nothing was moved; its results are kept in {sources}. Move those files "
            f"elsewhere, or give the stage a folder of its own (figure_dir / metrics_dir in params.yaml), and rerun")
    for target, record, files, owned in plans:
        target.mkdir(parents=True, exist_ok=True)
        _write_record(record, stem, sorted(owned | set(files)))
        for name, source in files.items():
            _move_into(source, target / name)
        for name in sorted(owned - set(files)):                 # the stage's files from its last run, not rewritten
            path = target / name
            if path.is_file() or path.is_symlink():
                path.unlink()
                for folder in path.parents:
                    if folder == target or not folder.is_relative_to(target) or any(folder.iterdir()):
                        break
                    folder.rmdir()
        _write_record(record, stem, sorted(files))


def _write_record(record: Path, stem: str, files: list[str]) -> None:
    text = json.dumps(dict(about=f"the files pipeline stage {stem} wrote here (advhash.publish.publish_files): "
                                 f"it replaces or removes these only", stage=stem, files=files), indent=1)
    write_atomically(record, text + "\n")


def _move_into(source: Path, target: Path) -> None:
    """Move the file ``source`` to ``target``, replacing it atomically (a reader sees the old file or the new one,
    never half of one), across file systems too."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(handle)
        shutil.copy2(source, temporary)
        os.replace(temporary, target)
        source.unlink()


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in its folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
