"""What ``fisherlab attack`` writes, and reading saved reconstructions back.

An attack's folder holds ``attack.csv`` (one row per reconstruction),
``summary.json``, ``fisher.csv`` (the Fisher recorded along the attack),
``trajectory.csv``, ``reconstructions.pt`` (read back by
:func:`read_reconstructions` for ``fisherlab evaluate``) and
``reconstructions.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torchvision.utils import save_image

from fisherlab._io import write_atomic, write_json, write_torch
from fisherlab.attacks.base import AttackConfig
from fisherlab.attacks.evaluation import AttackOutcome
from fisherlab.attacks.method import AttackResult
from fisherlab.errors import FisherlabError


def write_outputs(outcome: AttackOutcome, out: str | Path) -> None:
    """Write an attack's outputs to ``out``, each file atomically.

    Files: ``attack.csv``, ``summary.json``, ``fisher.csv``, ``trajectory.csv``,
    ``reconstructions.pt`` (for ``fisherlab evaluate``) and ``reconstructions.png``
    (per class: reconstructions, then real private samples).
    """
    out = Path(out)
    write_atomic(out / "attack.csv", lambda p: outcome.rows.to_csv(p, index=False))
    write_atomic(out / "fisher.csv", lambda p: outcome.result.fisher.to_csv(p, index=False))
    write_atomic(out / "trajectory.csv", lambda p: outcome.result.trajectory.to_csv(p, index=False))
    write_json(out / "summary.json", json.loads(json.dumps(outcome.summary, default=str)))
    result = outcome.result
    saved = {
        "images": result.images,
        "labels": result.labels,
        "restart": result.restart,
        "confidence": result.confidence,
        "config": outcome.summary["config"],
    }
    write_torch(out / "reconstructions.pt", saved)
    per_class = int(outcome.summary["config"]["per_class"])
    images = outcome.result.images
    grid = images
    if outcome.private_examples is not None:
        k = outcome.private_examples.shape[1]
        recon = images.view(-1, per_class, *images.shape[1:])
        grid = torch.cat([recon, outcome.private_examples.to(images.dtype)[:, :k]], dim=1).flatten(
            0, 1
        )
        per_class = per_class + k
    write_atomic(
        out / "reconstructions.png",
        lambda p: save_image(grid, p, nrow=per_class, format="png", padding=2, pad_value=0.5),
    )


def read_reconstructions(path: str | Path) -> tuple[AttackResult, AttackConfig]:
    """The reconstructions an attack saved, and its config.

    Args:
        path: An attack's output folder or its ``reconstructions.pt``.

    Returns:
        ``(result, config)``; the result has no latents, Fisher or trajectory.

    Raises:
        FisherlabError: If the file does not exist or is not an attack's.
    """
    source = Path(path)
    file = source / "reconstructions.pt" if source.is_dir() else source
    if not file.is_file():
        raise FisherlabError(f"{file} does not exist: give the --out directory of fisherlab attack")
    try:
        saved = torch.load(file, weights_only=True)
        config = AttackConfig(**{**saved["config"], "classes": tuple(saved["config"]["classes"])})
        result = AttackResult(
            saved["images"], saved["labels"], saved["restart"], saved["confidence"], None
        )
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise FisherlabError(
            f"{file} is not readable reconstructions ({type(exc).__name__}); give the --out "
            "directory of fisherlab attack"
        ) from None
    return result, config
