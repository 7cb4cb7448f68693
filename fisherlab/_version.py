"""The package version, and the versions every run records beside its results."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

import torch

__version__ = "0.1.0"


def _installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """The versions of fisherlab, torch, BackPACK and Python, for ``run.json`` files.

    This is the one place they are collected: training, profiles, attacks and
    the reproduction all record this dict.

    Example:
        >>> sorted(versions())
        ['backpack', 'fisherlab', 'python', 'torch']
    """
    return {
        "fisherlab": __version__,
        "torch": str(torch.__version__),
        "backpack": _installed("backpack-for-pytorch"),
        "python": platform.python_version(),
    }
