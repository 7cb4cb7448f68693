"""One table of runs, differences judged against noise: :func:`compare_runs`.

A run is an attack (its folder or ``summary.json``, written by ``fisherlab
attack``, ``fisherlab defend`` or ``fisherlab reproduce``) or a training run
(its ``<stem>.run.json``, the checkpoint beside it, or a step folder holding
one). Each becomes one row with its headline accuracy: the evaluator's top-1
attack accuracy over its reconstructions, or the natural accuracy on the
test split. Every run after the first of its kind is compared with that first
one: the difference, its 95 % interval (Newcombe's score interval for two
independent proportions,
:func:`~fisherlab.experiments.statistics.proportion_difference`) and
``within_noise``, true when the interval covers 0: such a difference is not
evidence that the runs differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from fisherlab.data.chance import wilson_interval
from fisherlab.errors import FisherlabError
from fisherlab.experiments.statistics import proportion_difference

__all__ = ["COMPARE_COLUMNS", "compare_runs", "read_run"]

COMPARE_COLUMNS = [
    "run",
    "kind",
    "metric",
    "value",
    "n",
    "low",
    "high",
    "baseline",
    "difference",
    "difference_low",
    "difference_high",
    "within_noise",
    "details",
    "warnings",
]
"""The columns of :func:`compare_runs`' table."""


def _find(path: Path) -> Path:
    """The JSON record a run argument stands for."""
    if path.is_dir():
        for name in ("summary.json", "model.run.json"):
            if (path / name).is_file():
                return path / name
        found = sorted(path.glob("*.run.json"))
        if len(found) == 1:
            return found[0]
        raise FisherlabError(
            f"{path} holds no attack summary.json and no single training *.run.json: give an "
            "attack folder, a run.json or a checkpoint written by fisherlab train"
        )
    if path.suffix == ".json" and path.is_file():
        return path
    if path.is_file():
        beside = path.with_suffix("").with_name(path.with_suffix("").name + ".run.json")
        if beside.is_file():
            return beside
        raise FisherlabError(f"{path} has no {beside.name} beside it: compare needs its run record")
    raise FisherlabError(f"no run at {path}")


def read_run(path: str | Path) -> dict[str, Any]:
    """One run's row (before the comparison columns): see the module docs.

    Raises:
        FisherlabError: For a path that is no attack or training run.
    """
    record_path = _find(Path(path))
    try:
        record = json.loads(record_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FisherlabError(f"{record_path} is not a run record (not JSON: {exc})") from None
    if not isinstance(record, dict):
        raise FisherlabError(f"{record_path} is not a run record")
    if "attack_accuracy_top1" in record or "n_reconstructions" in record:
        value = record.get("attack_accuracy_top1")
        if value is None:
            raise FisherlabError(
                f"{record_path} was not judged by an evaluation model (no attack accuracy): "
                "run fisherlab evaluate on it first"
            )
        config = record.get("config", {})
        details = (
            f"{config.get('attack')} {config.get('iterations')} it, "
            f"{config.get('per_class')}/class, seed {config.get('seed')}"
        )
        kind, metric, n = "attack", "attack_accuracy_top1", int(record["n_reconstructions"])
    elif "final_natural_accuracy" in record:
        config = record.get("config", {})
        value = record["final_natural_accuracy"]
        frozen = record.get("frozen_layers") or []
        details = (
            f"{config.get('arch') or 'fine-tune'} on {config.get('data')}, {config.get('epochs')} "
            f"ep, frozen {len(frozen)} layers, |theta_C| {record.get('n_trainable_params')}"
            + (f", {config['defense']}" if config.get("defense", "none") != "none" else "")
        )
        kind, metric, n = "train", "natural_accuracy", int(record["test_samples"])
    else:
        raise FisherlabError(f"{record_path} is neither an attack summary nor a training run.json")
    low, high = wilson_interval(float(value) * n, n)
    return {
        "run": str(path),
        "kind": kind,
        "metric": metric,
        "value": float(value),
        "n": n,
        "low": low,
        "high": high,
        "details": details,
        "warnings": " | ".join(record.get("warnings", [])),
    }


def compare_runs(paths: list[str | Path]) -> pd.DataFrame:
    """One row per run, each compared with the first run of its kind (module docs).

    Args:
        paths: Attack folders or ``summary.json`` files, training ``run.json``
            files, their checkpoints, or step folders.

    Returns:
        The table (:data:`COMPARE_COLUMNS`).

    Raises:
        FisherlabError: For no runs or a path that is not a run.
    """
    if not paths:
        raise FisherlabError("give at least one run to compare")
    rows = [read_run(p) for p in paths]
    first: dict[str, dict[str, Any]] = {}
    for row in rows:
        base = first.setdefault(row["kind"], row)
        if base is row:
            row.update(baseline=True, difference=None, difference_low=None)
            row.update(difference_high=None, within_noise=None)
            continue
        diff = proportion_difference(row["value"], row["n"], base["value"], base["n"])
        row.update(
            baseline=False,
            difference=diff.effect,
            difference_low=diff.low,
            difference_high=diff.high,
            within_noise=bool(diff.low <= 0 <= diff.high),
        )
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)
