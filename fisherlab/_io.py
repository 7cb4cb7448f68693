"""Atomic file output: write to a temporary file beside the target, then rename.

:func:`write_torch` is the one way fisherlab writes ``torch.save`` files
(checkpoints, GAN priors, reconstructions, Fisher diagonals), so that the same
content always gives the same bytes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` only if the block succeeds.

    The temporary file lives in the target's directory so that the final
    ``os.replace`` is atomic. On any exception the temporary file is removed and
    ``path`` is left as it was (absent, or its previous content).

    Args:
        path: The file to write.

    Yields:
        A temporary path to write the content to.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
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
