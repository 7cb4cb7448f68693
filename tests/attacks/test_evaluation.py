"""Attack evaluation (fisherlab.attacks.evaluation): metrics by hand, and the summary."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from fisherlab.attacks import attack, frechet_distance, knn_distances, topk_correct
from fisherlab.training import TrainConfig, train


def test_evaluation_summary(target, gans, tmp_path):
    judge = tmp_path / "eval.pt"
    train(
        TrainConfig(data="mnist5k:0-4", arch="eval_cnn", epochs=1, max_train_samples=500),
        out=judge,
        progress=False,
    )
    outcome = attack(
        target,
        gans["gmi"],
        judge,
        attack="gmi",
        classes=(0, 1),
        per_class=2,
        restarts=1,
        iterations=3,
        private_data="mnist5k:0-4",
    )
    rows, s = outcome.rows, outcome.summary
    assert s["attack_accuracy_top1"] == pytest.approx(rows["correct_top1"].mean())
    assert s["knn_distance"] == pytest.approx(rows["knn_distance"].mean())
    # 5 classes: top-5 always holds the label, so it is not reported
    assert "correct_top5" not in rows and s["attack_accuracy_top5"] is None
    assert 0.2 < s["natural_accuracy"] <= 1.0 and np.isfinite(s["fd_eval"])
    assert s["fd_eval_n"] == len(rows) and s["fd_eval_dims"] > 1


def test_knn_distance_by_hand():
    f = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [10.0, 10.0]])
    d = knn_distances(f, torch.tensor([0, 1]), p, torch.tensor([0, 0, 1, 0]))
    assert d.tolist() == [1.0, 1.0]  # class 0: min(1, 4, 200); class 1: only (3, 3)


def test_topk_by_hand():
    logits = torch.tensor([[0.1, 0.9, 0.5], [0.8, 0.1, 0.3]])
    assert topk_correct(logits, torch.tensor([2, 2]), 1).tolist() == [False, False]
    assert topk_correct(logits, torch.tensor([2, 2]), 2).tolist() == [True, True]


def test_frechet_distance_against_scipy():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    b = torch.randn(60, 4, generator=gen, dtype=torch.float64) * 1.5 + 0.3
    ca, cb = np.cov(a.numpy().T), np.cov(b.numpy().T)
    root = linalg.sqrtm(ca @ cb).real
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum().item() + np.trace(ca + cb - 2 * root)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
