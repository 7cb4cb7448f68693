"""What ``fisherlab attack`` and ``fisherlab evaluate`` write, and reading reconstructions back.

An attack's folder holds ``attack.csv`` (one row per reconstruction),
``fisher.csv`` (the Fisher recorded along the attack; only when it was
recorded, i.e. with ``--fisher-every``), ``trajectory.csv``,
``reconstructions.pt`` (read back by :func:`read_reconstructions` for
``fisherlab evaluate``), ``reconstructions.png`` (the labelled grid of
:mod:`fisherlab.attacks.grid`) and, last, ``summary.json``,
its manifest: a folder without it is an unfinished attack. ``fisherlab
evaluate`` writes only its own files, ``evaluation.csv`` and
``evaluation.json`` (:func:`write_evaluation`), so it never changes an
attack's outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fisherlab._io import is_complete, output_set, write_atomic, write_json, write_torch
from fisherlab.attacks.base import AttackConfig
from fisherlab.attacks.evaluation import AttackOutcome
from fisherlab.attacks.grid import reconstruction_grid
from fisherlab.attacks.method import AttackResult
from fisherlab.errors import FisherlabError

ATTACK_MANIFEST = "summary.json"
EVALUATION_MANIFEST = "evaluation.json"
FISHER_FILE = "fisher.csv"
"""The attack's recorded Fisher: written only when something was recorded."""


def attack_files(outcome: AttackOutcome) -> list[str]:
    """The files :func:`write_outputs` writes for ``outcome``, the manifest last."""
    recorded = [FISHER_FILE] if not outcome.result.fisher.empty else []
    return [
        "attack.csv",
        *recorded,
        "trajectory.csv",
        "reconstructions.pt",
        "reconstructions.png",
        ATTACK_MANIFEST,
    ]


def write_outputs(outcome: AttackOutcome, out: str | Path) -> None:
    """Write an attack's outputs to the folder ``out``, as one set (see the module docs).

    Files: ``attack.csv``, ``fisher.csv`` (only when the Fisher was recorded:
    an attack without ``fisher_every`` writes none, and a stale one of an
    earlier attack in ``out`` is removed), ``trajectory.csv``,
    ``reconstructions.pt`` (for ``fisherlab evaluate``), ``reconstructions.png``
    (per class: reconstructions, then real private samples) and ``summary.json``
    (which lists the files under ``files``).
    """
    with output_set(out, ATTACK_MANIFEST, owns=[FISHER_FILE]) as tmp:
        _write_attack_files(outcome, tmp)


def _write_attack_files(outcome: AttackOutcome, out: Path) -> None:
    write_atomic(out / "attack.csv", lambda p: outcome.rows.to_csv(p, index=False))
    if not outcome.result.fisher.empty:
        write_atomic(out / FISHER_FILE, lambda p: outcome.result.fisher.to_csv(p, index=False))
    write_atomic(out / "trajectory.csv", lambda p: outcome.result.trajectory.to_csv(p, index=False))
    summary = {**outcome.summary, "files": attack_files(outcome)}
    write_json(out / "summary.json", json.loads(json.dumps(summary, default=str)))
    result = outcome.result
    saved = {
        "images": result.images,
        "labels": result.labels,
        "restart": result.restart,
        "confidence": result.confidence,
        "config": outcome.summary["config"],
    }
    write_torch(out / "reconstructions.pt", saved)
    config = outcome.summary["config"]
    per_class = int(config["per_class"])
    images = outcome.result.images
    recon = images.view(-1, per_class, *images.shape[1:])
    names = outcome.summary.get("class_names") or [str(c) for c in config["classes"]]
    private = outcome.private_examples
    image = reconstruction_grid(
        recon, names, private.to(images.dtype) if private is not None else None
    )
    write_atomic(out / "reconstructions.png", lambda p: image.save(p, format="png"))


def write_evaluation(outcome: AttackOutcome, out: str | Path) -> None:
    """Write an evaluation's own files to the folder ``out``: ``evaluation.csv`` and ``.json``.

    ``out`` may be the attack's folder: its files are left as they are.
    """
    with output_set(out, EVALUATION_MANIFEST) as tmp:
        write_atomic(tmp / "evaluation.csv", lambda p: outcome.rows.to_csv(p, index=False))
        write_json(tmp / EVALUATION_MANIFEST, json.loads(json.dumps(outcome.summary, default=str)))


_SAVED_KEYS = ("images", "labels", "restart", "confidence", "config")


def read_reconstructions(path: str | Path) -> tuple[AttackResult, AttackConfig]:
    """The reconstructions an attack saved, and its config.

    Args:
        path: An attack's output folder or its ``reconstructions.pt``.

    Returns:
        ``(result, config)``; the result has no latents, Fisher or trajectory.

    Raises:
        FisherlabError: If the file does not exist, the folder is an unfinished
            attack, or the file is not reconstructions saved by fisherlab.
    """
    source = Path(path)
    if source.is_dir() and not is_complete(source, ATTACK_MANIFEST):
        raise FisherlabError(
            f"{source} has no {ATTACK_MANIFEST}: it is not a finished fisherlab attack folder "
            "(rerun the attack)"
        )
    file = source / "reconstructions.pt" if source.is_dir() else source
    if not file.is_file():
        raise FisherlabError(f"{file} does not exist: give the --out directory of fisherlab attack")
    try:
        saved = torch.load(file, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure means a bad file
        raise FisherlabError(
            f"{file} is not readable reconstructions ({type(exc).__name__}); give the "
            "reconstructions.pt written by fisherlab attack"
        ) from None
    images = saved.get("images") if isinstance(saved, dict) else None
    ok = (
        isinstance(saved, dict)
        and all(k in saved for k in _SAVED_KEYS)
        and isinstance(saved["config"], dict)
        and all(isinstance(saved[k], torch.Tensor) for k in _SAVED_KEYS[:4])
        and images is not None
        and images.dim() == 4
        and images.is_floating_point()
        and all(len(saved[k]) == len(images) for k in _SAVED_KEYS[1:4])
        and bool(torch.isfinite(images).all())
    )
    if not ok:
        raise FisherlabError(
            f"{file} does not hold reconstructions saved by fisherlab attack (expected "
            f"{', '.join(_SAVED_KEYS)} with one image per label): rerun the attack"
        )
    try:
        config = AttackConfig(**{**saved["config"], "classes": tuple(saved["config"]["classes"])})
    except (TypeError, KeyError) as exc:
        raise FisherlabError(f"{file}: its attack config is not readable ({exc})") from None
    result = AttackResult(
        saved["images"], saved["labels"], saved["restart"], saved["confidence"], None
    )
    return result, config
