"""What ``fisherlab profile`` writes: a profile's files and its ``run.json``.

A profile folder holds ``profile.csv`` (the tidy per-layer frame),
``engines.csv`` (per parameter: the engine that computed it and why),
``diagonal.pt`` (with ``--diagonal``: ``{parameter name: float64 tensor}``) and
``run.json`` (the config, the model's fingerprint, timing, engines and
versions), each written atomically. The figure ``profile.png`` is drawn by the
CLI from ``profile.csv`` (:func:`fisherlab.plots.plot_profile`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch.distributed as dist
from torch import Tensor, nn

from fisherlab._io import output_set, write_atomic, write_json, write_torch
from fisherlab._version import versions
from fisherlab.fisher.profile import profile
from fisherlab.models.meta import fingerprint, model_meta


def profile_record(
    frame: pd.DataFrame,
    model: nn.Module,
    config: dict[str, Any],
    seconds: float,
    *,
    source: str | None = None,
    world_size: int = 1,
) -> dict[str, Any]:
    """The ``run.json`` of a profile: what was profiled, how, and how long it took.

    Args:
        frame: The profile.
        model: The profiled model.
        config: The settings it was profiled with (plain JSON values).
        seconds: Wall time of the profile.
        source: Where the model came from (a checkpoint path).
        world_size: Processes that shared the work.

    Returns:
        The record.
    """
    meta = model_meta(model)
    n_samples = float(frame["n_samples"].iloc[0]) if len(frame) else 0.0
    return {
        "command": "profile",
        "config": config,
        "model": {
            "path": source,
            "fingerprint": fingerprint(model),
            "arch": meta.arch,
            "class_names": meta.class_names,
            "input_spec": meta.input_spec.to_dict() if meta.input_spec else None,
        },
        "world_size": world_size,
        "seconds": seconds,
        "samples_per_second": n_samples / seconds if seconds else None,
        "engines": sorted(frame["engine"].unique().tolist()),
        "versions": versions(),
    }


def write_profile(
    out: str | Path,
    frame: pd.DataFrame,
    record: dict[str, Any],
    diagonal: dict[str, Tensor] | None = None,
) -> list[Path]:
    """Write a profile's files into ``out`` as one set; ``run.json`` is its manifest.

    Args:
        out: The folder.
        frame: The profile.
        record: Its :func:`profile_record`.
        diagonal: The per-parameter diagonal, if computed.

    Returns:
        The written paths.
    """
    out = Path(out)
    records = frame.attrs.get("engines")
    engines = pd.DataFrame(records) if isinstance(records, list) else None
    names = ["profile.csv", "run.json"] + (["diagonal.pt"] if diagonal is not None else [])
    with output_set(out, "run.json") as tmp:
        write_atomic(tmp / "profile.csv", lambda p: frame.to_csv(p, index=False))
        if isinstance(engines, pd.DataFrame):
            write_atomic(tmp / "engines.csv", lambda p: engines.to_csv(p, index=False))
            names.append("engines.csv")
        if diagonal is not None:
            write_torch(tmp / "diagonal.pt", diagonal)
        write_json(tmp / "run.json", record)
    return [out / n for n in names]


def profile_to(
    out: str | Path,
    model: nn.Module,
    data: Any,
    *,
    source: str | None = None,
    config: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[pd.DataFrame, dict[str, Tensor] | None, dict[str, Any]]:
    """Profile ``model`` on ``data`` and write the profile's files to ``out``.

    Under ``torch.distributed`` every process computes its share and only rank 0
    writes.

    Args:
        out: The folder.
        model: The model.
        data: As for :func:`fisherlab.profile`.
        source: Where the model came from, for ``run.json``.
        config: The settings to record (default: ``options``).
        **options: Keyword arguments of :func:`fisherlab.profile`.

    Returns:
        ``(frame, diagonal or None, run record)``.
    """
    start = time.perf_counter()
    result = profile(model, data, **options)
    seconds = time.perf_counter() - start
    frame, diagonal = result if options.get("diagonal") else (result, None)
    distributed = dist.is_available() and dist.is_initialized()
    world = dist.get_world_size() if distributed else 1
    record = profile_record(
        frame,
        model,
        config if config is not None else dict(options),
        seconds,
        source=source,
        world_size=world,
    )
    if not distributed or dist.get_rank() == 0:
        write_profile(out, frame, record, diagonal)
    return frame, diagonal, record
