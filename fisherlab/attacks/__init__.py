"""Model-inversion attacks and their evaluation: :func:`attack`.

=============  =================================================  ====================
``gmi``        :mod:`fisherlab.attacks.gmi`, latent SGD with a     GAN prior (gmi)
               critic prior
``kedmi``      :mod:`fisherlab.attacks.kedmi`, a learned latent    GAN prior (kedmi)
               distribution per class
``whitebox``   :mod:`fisherlab.attacks.whitebox`, pixels with a    none
               total-variation prior
=============  =================================================  ====================

After the attack, the reconstructions are judged by an evaluation model of a
different architecture trained on the private classes: top-1 and top-5 attack
accuracy, the KNN distance (minimum squared L2 distance in the evaluation
model's penultimate features to the private training images of the same
class), a FID in the same feature space, and the target's natural accuracy on
held-out private data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from fisherlab._io import write_atomic, write_json
from fisherlab.attacks.base import AttackConfig, AttackResult, FisherRecorder
from fisherlab.attacks.gmi import run_gmi
from fisherlab.attacks.kedmi import run_kedmi
from fisherlab.attacks.whitebox import run_whitebox
from fisherlab.checkpoint import fingerprint, load_model, model_meta
from fisherlab.data import InputSpec, load_dataset
from fisherlab.errors import FisherlabError
from fisherlab.evaluate import (
    frechet_distance,
    knn_distances,
    natural_accuracy,
    penultimate_features,
    topk_correct,
)

ATTACKS = {"gmi": run_gmi, "kedmi": run_kedmi, "whitebox": run_whitebox}
SUMMARY_METRICS = [
    "attack_accuracy_top1",
    "attack_accuracy_top5",
    "knn_distance",
    "fid",
    "natural_accuracy",
    "target_confidence",
]
"""The numbers of an attack's ``summary.json``, in reporting order."""

__all__ = [
    "ATTACKS",
    "SUMMARY_METRICS",
    "AttackConfig",
    "AttackOutcome",
    "AttackResult",
    "attack",
    "evaluate_attack",
    "write_outputs",
]


@dataclass
class AttackOutcome:
    """An attack's reconstructions, per-reconstruction rows and summary.

    Attributes:
        result: Reconstructions, recorded Fisher and trajectory.
        rows: One row per reconstruction: ``class``, ``restart``,
            ``target_confidence``, ``eval_prediction``, ``correct_top1``,
            ``correct_top5``, ``knn_distance``.
        summary: Attack accuracy, KNN distance, FID, natural accuracy, config.
        private_examples: A few private images per class (pixels), for figures.
    """

    result: AttackResult
    rows: pd.DataFrame
    summary: dict[str, Any]
    private_examples: torch.Tensor | None = field(default=None, repr=False)


def _model(value: nn.Module | str | Path | None) -> nn.Module | None:
    if value is None or isinstance(value, nn.Module):
        return value
    return load_model(value)


def _prior(value: Any):
    from fisherlab.train_gan import GANPrior, load_gan

    if value is None or isinstance(value, GANPrior):
        return value
    return load_gan(value)


def _check(target, spec, prior, eval_model, config, private_data) -> int:
    meta = model_meta(target)
    with torch.no_grad():
        n_classes = int(
            target(spec.normalize(torch.rand(1, spec.channels, spec.size, spec.size))).shape[1]
        )
    bad = [c for c in config.classes if not 0 <= c < n_classes]
    if bad:
        raise FisherlabError(
            f"classes {bad} are outside the target's range: it has classes 0-{n_classes - 1}"
        )
    if config.attack != "whitebox":
        if prior is None:
            raise FisherlabError(f"the {config.attack} attack needs a GAN prior: give --generator")
        gspec = prior.image_spec
        if (gspec.channels, gspec.size) != (spec.channels, spec.size):
            raise FisherlabError(
                f"the generator makes {gspec.channels}x{gspec.size}x{gspec.size} images but "
                f"the target takes {spec.channels}x{spec.size}x{spec.size}"
            )
        if prior.kind != config.attack:
            raise FisherlabError(
                f"the {config.attack} attack needs a {config.attack} GAN, got a {prior.kind} "
                "one (fisherlab train-gan --kind ...)"
            )
    if eval_model is not None:
        emeta = model_meta(eval_model)
        if meta.class_names and emeta.class_names and emeta.class_names != meta.class_names:
            raise FisherlabError(
                f"the evaluation model was trained on classes {emeta.class_names}, the target "
                f"on {meta.class_names}: train the evaluator on the private data"
            )
        if private_data is None:
            raise FisherlabError("evaluation needs the private data: give --private-data")
    return n_classes


def attack(
    target: nn.Module | str | Path,
    generator: Any = None,
    eval_model: nn.Module | str | Path | None = None,
    config: AttackConfig | None = None,
    *,
    private_data: str | None = None,
    progress: bool = False,
    **options: Any,
) -> AttackOutcome:
    """Invert ``target`` and evaluate the reconstructions.

    Args:
        target: The attacked classifier (model or checkpoint path); not modified.
        generator: A GAN prior (:class:`fisherlab.train_gan.GANPrior` or path);
            not needed by ``whitebox``.
        eval_model: Evaluation classifier (model or path) trained on the
            private classes, or ``None`` to skip evaluation.
        config: The attack; ``options`` override or replace it
            (e.g. ``attack="kedmi", iterations=300``).
        private_data: Private dataset string (KNN, FID, natural accuracy).
        progress: Show a progress bar.
        **options: Fields of :class:`AttackConfig`.

    Returns:
        The outcome (reconstructions, rows, summary).

    Raises:
        FisherlabError: For a generator that does not fit the target, classes
            out of range, or an evaluation model of other classes; checked
            before any work starts.
    """
    if config is None:
        config = AttackConfig(**options)
    elif options:
        config = AttackConfig(
            **{
                **config.to_dict(),
                **options,
                "classes": tuple(options.get("classes", config.classes)),
            }
        )
    target_model = _model(target)
    assert target_model is not None
    spec = model_meta(target_model).input_spec
    if spec is None:
        raise FisherlabError(
            "the target has no input spec: use a checkpoint written by fisherlab train"
        )
    prior = _prior(generator)
    judge = _model(eval_model)
    _check(target_model, spec, prior, judge, config, private_data)
    target_model.eval()
    if prior is not None:
        prior.generator.requires_grad_(False)
        prior.discriminator.requires_grad_(False)
    recorder = FisherRecorder(
        target_model, spec, config.fisher_every, config.fisher_samples, config.per_class
    )
    total = config.restarts * config.iterations
    bar = tqdm(total=total, disable=None if progress else True, unit="it", desc=config.attack)
    result = ATTACKS[config.attack](target_model, spec, prior, config, recorder, bar.update)
    bar.close()
    return evaluate_attack(result, target_model, judge, private_data, config)


def evaluate_attack(
    result: AttackResult,
    target: nn.Module,
    eval_model: nn.Module | None,
    private_data: str | None,
    config: AttackConfig,
) -> AttackOutcome:
    """Judge an attack's reconstructions (see the module docs for the metrics)."""
    spec = model_meta(target).input_spec
    assert spec is not None
    rows = pd.DataFrame(
        {
            "class": result.labels.numpy(),
            "restart": result.restart.numpy(),
            "target_confidence": result.confidence.numpy(),
        }
    )
    summary: dict[str, Any] = {
        "config": config.to_dict(),
        "target": {"fingerprint": fingerprint(target)},
        "n_reconstructions": len(rows),
    }
    summary["target_confidence"] = float(result.confidence.mean())
    examples = None
    if private_data is not None:
        private = load_dataset(private_data, input_spec=spec)
        summary["natural_accuracy"] = natural_accuracy(target, private.test)
    if eval_model is not None and private_data is not None:
        espec = model_meta(eval_model).input_spec
        assert espec is not None
        eval_model.eval()
        pixel = InputSpec(espec.channels, espec.size, None, None)
        private_pixels = load_dataset(private_data, input_spec=pixel).train
        x_priv, y_priv = private_pixels.tensors()
        with torch.no_grad():
            logits = eval_model(espec.normalize(result.images))
        rows["eval_prediction"] = logits.argmax(1).numpy()
        rows["correct_top1"] = topk_correct(logits, result.labels, 1).numpy()
        rows["correct_top5"] = topk_correct(logits, result.labels, 5).numpy()
        feats = penultimate_features(eval_model, espec.normalize(result.images))
        priv_feats = torch.cat(
            [
                penultimate_features(eval_model, espec.normalize(x_priv[i : i + 512]))
                for i in range(0, len(x_priv), 512)
            ]
        )
        rows["knn_distance"] = knn_distances(feats, result.labels, priv_feats, y_priv).numpy()
        summary.update(
            attack_accuracy_top1=float(rows["correct_top1"].mean()),
            attack_accuracy_top5=float(rows["correct_top5"].mean()),
            knn_distance=float(rows["knn_distance"].mean()),
            fid=frechet_distance(feats, priv_feats[torch.isin(y_priv, result.labels)]),
        )
        examples = (
            torch.stack(
                [
                    x_priv[y_priv == c][: min(4, config.per_class)]
                    for c in config.classes
                    if (y_priv == c).any()
                ]
            )
            if all((y_priv == c).any() for c in config.classes)
            else None
        )
    return AttackOutcome(result, rows, summary, examples)


def write_outputs(outcome: AttackOutcome, out: str | Path) -> None:
    """Write an attack's outputs to ``out``, each file atomically.

    Files: ``attack.csv``, ``summary.json``, ``fisher.csv``, ``trajectory.csv``,
    ``reconstructions.pt`` (for ``fisherlab evaluate``) and ``reconstructions.png``
    (per class: reconstructions, then real private samples).
    """
    from torchvision.utils import save_image

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
    write_atomic(out / "reconstructions.pt", lambda p: torch.save(saved, p))
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
