"""Shared fixtures: a small pretrained model and its fine-tuned variants."""

from __future__ import annotations

from pathlib import Path

import pytest
from fisherlab.train import TrainConfig, train


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fisherlab")


@pytest.fixture(scope="session")
def pretrained(workdir: Path) -> Path:
    """target_cnn pretrained one epoch on 1,500 Fashion-MNIST images."""
    out = workdir / "pre.pt"
    config = TrainConfig(
        data="fashion", arch="target_cnn", epochs=1, max_train_samples=1500, seed=0
    )
    train(config, out=out, progress=False)
    return out
