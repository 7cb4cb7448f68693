"""Judging an attack: top-1/top-5 attack accuracy, KNN distance, FD, natural accuracy.

The reconstructions are judged by an evaluation model of a different
architecture trained on the private classes: top-1 and top-5 attack accuracy
(:func:`topk_correct`), the KNN distance (:func:`knn_distances`: minimum
squared L2 distance in the evaluation model's penultimate features to the
private training images of the same class), a Fréchet distance in the same
feature space (:func:`frechet_distance`), and the target's natural accuracy
on held-out private data.

Beside them, the **target's own accuracy** on the reconstructions
(``target_accuracy``: the share the target assigns to the class they were
optimised for) and the ``warnings`` of :mod:`fisherlab.data.chance`: a target
near chance, an attack within noise of chance, a GAN prior whose optimised
samples the target itself does not recognise.

Two of these are not what their usual names promise, and are named for what
they are:

* **top-5** is reported only when the evaluation model has more than 5
  classes. With 5 or fewer, every prediction's top 5 holds the label and the
  number is 1.0 whatever the attack did; ``attack_accuracy_top5`` is then
  ``None``.
* **``fd_eval``** is the Fréchet distance of Gaussians fitted in the
  evaluation model's penultimate features, *not* the standard FID (Inception
  features, thousands of samples). Its sample count ``fd_eval_n`` and the
  feature dimension ``fd_eval_dims`` are reported beside it: with fewer
  reconstructions than dimensions the covariance is singular (rank at most
  ``n - 1``) and the number compares runs of the same size only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from fisherlab._device import model_device
from fisherlab.attacks.base import AttackConfig
from fisherlab.attacks.method import AttackResult
from fisherlab.data.chance import attack_warning, natural_accuracy_warning, prior_warning
from fisherlab.data.datasets import load_dataset
from fisherlab.data.specs import InputSpec
from fisherlab.models.layers import layers
from fisherlab.models.meta import check_data_classes, fingerprint, model_meta
from fisherlab.training.accuracy import natural_accuracy

SUMMARY_METRICS = [
    "attack_accuracy_top1",
    "attack_accuracy_top5",
    "knn_distance",
    "fd_eval",
    "natural_accuracy",
    "target_confidence",
    "target_accuracy",
]
"""The numbers of an attack's ``summary.json``, in reporting order."""


@dataclass
class AttackOutcome:
    """An attack's reconstructions, per-reconstruction rows and summary.

    Attributes:
        result: Reconstructions, recorded Fisher and trajectory.
        rows: One row per reconstruction: ``class``, ``restart``,
            ``target_confidence``, ``target_correct``, ``eval_prediction``, ``correct_top1``,
            ``correct_top5`` (only with more than 5 evaluation classes),
            ``knn_distance``.
        summary: Attack accuracy, KNN distance, ``fd_eval`` (with
            ``fd_eval_n`` and ``fd_eval_dims``), natural accuracy,
            ``target_accuracy``, config and ``warnings`` (one line each).
        private_examples: A few private images per class (pixels), for figures.
    """

    result: AttackResult
    rows: pd.DataFrame
    summary: dict[str, Any]
    private_examples: torch.Tensor | None = field(default=None, repr=False)


def penultimate_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the model's head (its last layer, a Linear), flattened.

    This is the feature space of the KNN distance and of the FID.
    """
    head = dict(model.named_modules())[layers(model)[-1].name]
    captured: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return captured[0].flatten(1)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Whether each label is among the ``k`` largest logits, ``(N,)`` bool."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels.view(-1, 1)).any(1)


def knn_distances(
    features: torch.Tensor,
    labels: torch.Tensor,
    private_features: torch.Tensor,
    private_labels: torch.Tensor,
) -> torch.Tensor:
    """Per reconstruction, the minimum squared L2 distance to a private sample of its class.

    Args:
        features: ``(N, F)`` evaluation features of the reconstructions.
        labels: ``(N,)`` their classes.
        private_features: ``(M, F)`` evaluation features of the private images.
        private_labels: ``(M,)`` their classes.

    Returns:
        ``(N,)`` float64 distances (``inf`` where the class has no private sample).
    """
    f, p = features.double(), private_features.double()
    d = (f.square().sum(1, keepdim=True) - 2 * f @ p.T + p.square().sum(1)).clamp_min(0)
    d[labels.view(-1, 1) != private_labels.view(1, -1)] = float("inf")
    return d.min(1).values


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance of Gaussians fitted to two feature sets (FID's formula).

    ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, with the trace of
    the matrix square root taken as ``sum sqrt(eig(S_a^(1/2) S_b S_a^(1/2)))``.
    """
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    vals, vecs = torch.linalg.eigh(cov_a)
    root_a = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * middle)


def evaluate_attack(
    result: AttackResult,
    target: nn.Module,
    eval_model: nn.Module | None,
    private_data: str | None,
    config: AttackConfig,
    *,
    workers: int = 0,
) -> AttackOutcome:
    """Judge an attack's reconstructions (see the module docs for the metrics).

    Each model computes on its own device (in full precision); the metrics
    are taken on the CPU in float64.

    Args:
        result: The attack's result (tensors on the CPU).
        target: The attacked classifier.
        eval_model: The evaluation classifier, or ``None`` to skip evaluation.
        private_data: Private dataset string, or ``None``.
        config: The attack's config.
        workers: Data-loading processes for image folders.

    Returns:
        The outcome.
    """
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
    names = model_meta(target).class_names
    summary["class_names"] = [
        str(names[c]) if names and c < len(names) else str(c) for c in config.classes
    ]
    target.eval()
    with torch.no_grad():
        scores = target(spec.normalize(result.images.to(model_device(target)))).cpu()
    rows["target_correct"] = (scores.argmax(1) == result.labels).long().numpy()
    summary["target_accuracy"] = float(rows["target_correct"].mean())
    n_classes = scores.shape[1]
    found = [prior_warning(summary["target_accuracy"], len(rows), n_classes)]
    examples = None
    if private_data is not None:
        private = load_dataset(private_data, input_spec=spec)
        check_data_classes(private.class_names, target, private_data, same_count=True)
        summary["natural_accuracy"] = natural_accuracy(target, private.test, workers=workers)
        found.append(natural_accuracy_warning(summary["natural_accuracy"], n_classes, "the target"))
    if eval_model is not None and private_data is not None:
        espec = model_meta(eval_model).input_spec
        assert espec is not None
        eval_model.eval()
        device = model_device(eval_model)
        pixel = InputSpec(espec.channels, espec.size, None, None)
        private_pixels = load_dataset(private_data, input_spec=pixel).train
        x_priv, y_priv = private_pixels.tensors(workers=workers)
        images = espec.normalize(result.images.to(device))
        with torch.no_grad():
            logits = eval_model(images).cpu()
        rows["eval_prediction"] = logits.argmax(1).numpy()
        rows["correct_top1"] = topk_correct(logits, result.labels, 1).numpy()
        informative_top5 = logits.shape[1] > 5
        if informative_top5:
            rows["correct_top5"] = topk_correct(logits, result.labels, 5).numpy()
        feats = penultimate_features(eval_model, images).cpu()
        priv_feats = torch.cat(
            [
                penultimate_features(
                    eval_model, espec.normalize(x_priv[i : i + 512].to(device))
                ).cpu()
                for i in range(0, len(x_priv), 512)
            ]
        )
        rows["knn_distance"] = knn_distances(feats, result.labels, priv_feats, y_priv).numpy()
        summary.update(
            attack_accuracy_top1=float(rows["correct_top1"].mean()),
            attack_accuracy_top5=float(rows["correct_top5"].mean()) if informative_top5 else None,
            knn_distance=float(rows["knn_distance"].mean()),
            fd_eval=frechet_distance(feats, priv_feats[torch.isin(y_priv, result.labels)]),
            fd_eval_n=len(feats),
            fd_eval_dims=int(feats.shape[1]),
        )
        found.append(attack_warning(summary["attack_accuracy_top1"], len(rows), logits.shape[1]))
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
    summary["warnings"] = [w for w in found if w is not None]
    return AttackOutcome(result, rows, summary, examples)
