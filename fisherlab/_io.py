"""Atomic output: a file is written beside its target and renamed; a command's files come as a set.

* :func:`atomic_path` / :func:`write_atomic`: one file, written to a hidden
  temporary file in the target's folder, then renamed over the target, so a
  reader never sees half a file. The temporary name carries the writer's
  process id; temporaries of processes that no longer exist (a kill -9) are
  removed on the next write to the same path.
* :func:`output_set`: a command's whole output folder. The files are written
  into a hidden temporary folder and moved into place at the end: a new folder
  by one rename; over an existing folder, the old manifest (the file that says
  the set is complete, e.g. ``run.json``) is removed first and the new one is
  moved last. A folder without its manifest is therefore an incomplete set, and
  readers treat it as absent.
* :func:`write_torch`: the one way fisherlab writes ``torch.save`` files
  (checkpoints, GAN priors, reconstructions, Fisher diagonals), so that the
  same content always gives the same bytes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from fisherlab.errors import FisherlabError

_TMP = ".tmp"


def _umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from ``open()``: ``0o666`` less the umask."""
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """The mode a new folder gets from ``mkdir``: ``0o777`` less the umask."""
    return 0o777 & ~_umask()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(folder: Path, name: str) -> None:
    """Remove temporaries of ``name`` in ``folder`` left by processes that no longer run."""
    prefix = f".{name}."
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if not (entry.name.startswith(prefix) and entry.name.endswith(_TMP)):
                continue
            pid = entry.name[len(prefix) :].split(".", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


def _writable_parent(target: Path, create: bool = False) -> None:
    """Check that ``target``'s folder exists or can be made, and is writable.

    With ``create=False`` (the checks before any work) nothing is created: the
    nearest existing ancestor must be a writable folder.
    """
    if create:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FisherlabError(
                f"cannot create the folder {target.parent} ({exc.strerror}): "
                "choose another output path"
            ) from None
    existing = target.parent.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise FisherlabError(
            f"cannot create the folder {target.parent}: {existing} is a file; "
            "choose another output path"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FisherlabError(f"{existing} is not writable: choose another output path")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` only if the block succeeds.

    The temporary file lives in the target's directory so that the final
    ``os.replace`` is atomic. On any exception the temporary file is removed and
    ``path`` is left as it was (absent, or its previous content). The file gets
    the mode of any new file (``0o666`` less the umask), not the ``0o600`` of
    :func:`tempfile.mkstemp`.

    Args:
        path: The file to write.

    Yields:
        A temporary path to write the content to.

    Raises:
        FisherlabError: If ``path`` is a directory or its folder cannot be written.
    """
    target = Path(path)
    if target.is_dir():
        raise FisherlabError(f"{target} is a directory: give a file path")
    _writable_parent(target, create=True)
    clean_stale(target.parent, target.name)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=_TMP, dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_atomic(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically.

    Args:
        path: The file to write.
        writer: A function that writes the whole content to the path it is given.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    return write_atomic(path, lambda p: p.write_text(text))


def write_torch(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save(obj)`` to ``path``, atomically and byte-reproducibly.

    The object is serialised in memory first: ``torch.save`` names the zip
    archive's root folder after the file it writes to, so saving straight to
    :func:`write_atomic`'s random temporary name gave every save different
    bytes. In memory the root is always ``archive/``, and equal objects give
    equal files.

    Args:
        path: The file to write.
        obj: What to save (loadable with ``torch.load(weights_only=True)`` if
            it holds only tensors and plain values).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    return write_atomic(path, lambda p: p.write_bytes(data))


def check_output_file(path: str | os.PathLike) -> Path:
    """Check, before any work, that ``path`` can become an output file.

    Raises:
        FisherlabError: If it is an existing directory or its folder is not writable.
    """
    target = Path(path)
    if target.is_dir():
        raise FisherlabError(f"--out {target} is an existing directory: give a file path")
    _writable_parent(target)
    return target


def check_output_folder(path: str | os.PathLike) -> Path:
    """Check, before any work, that ``path`` can become an output folder.

    Raises:
        FisherlabError: If it is an existing file or its parent is not writable.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise FisherlabError(f"--out {target} is an existing file: give a folder")
    _writable_parent(target)
    return target


@contextlib.contextmanager
def removed_on_error(folder: Path) -> Iterator[None]:
    """Create ``folder``; if the block raises, remove the folders this made that stay empty.

    So a command refused before it wrote anything leaves no empty folders
    (``folder`` and any missing parents; a folder with files is kept).
    """
    made = [d for d in (folder, *folder.parents) if not d.exists()]  # innermost first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for d in made:
            with contextlib.suppress(OSError):  # not empty: something was written there
                d.rmdir()
        raise


@contextlib.contextmanager
def output_set(path: str | os.PathLike, manifest: str, owns: Sequence[str] = ()) -> Iterator[Path]:
    """Write a command's output files as one set into the folder ``path``.

    Yields a hidden temporary folder beside ``path``; when the block succeeds,
    its files move into ``path`` (see the module docs), ``manifest`` last. On
    any exception nothing of the new set is left, and an existing ``path``
    keeps its files. Files already in ``path`` that the block does not write
    (another command's outputs) are never touched, except the optional files
    of this set listed in ``owns``: one the new set does not write is removed,
    so that a stale one of an earlier run cannot pass for this run's. A new
    folder gets the mode of any new folder (``0o777`` less the umask), not the
    ``0o700`` of :func:`tempfile.mkdtemp`.

    Args:
        path: The output folder.
        manifest: The file whose presence marks a complete set.
        owns: Names of files that belong to this kind of set but may be absent
            from it (e.g. an attack's ``fisher.csv``).

    Yields:
        The temporary folder to write into.

    Raises:
        FisherlabError: If ``path`` is a file or cannot be written.
    """
    target = check_output_folder(path)
    _writable_parent(target, create=True)
    clean_stale(target.parent, target.name)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=_TMP, dir=target.parent)
    )
    try:
        yield tmp
        if not (tmp / manifest).is_file():
            raise RuntimeError(f"the output set of {target} has no {manifest}")
        os.chmod(tmp, folder_mode())
        moved = False
        if not target.exists():
            with contextlib.suppress(OSError):  # another writer created it meanwhile
                os.rename(tmp, target)
                moved = True
        if not moved:
            (target / manifest).unlink(missing_ok=True)
            for name in owns:
                if not (tmp / name).exists():
                    (target / name).unlink(missing_ok=True)
            entries = sorted(tmp.iterdir(), key=lambda p: p.name == manifest)
            for entry in entries:
                destination = target / entry.name
                if entry.is_dir() and destination.is_dir():
                    shutil.rmtree(destination)
                os.replace(entry, destination)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def is_complete(folder: str | os.PathLike, manifest: str) -> bool:
    """Whether ``folder`` holds a complete output set (its manifest exists)."""
    return (Path(folder) / manifest).is_file()
