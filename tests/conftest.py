"""Shared fixtures: model cases, devices, trained models and GAN priors, the smoke reproduction.

All fixtures live here, in the one ``conftest.py`` (with ``--doctest-modules``
a second, rootless ``conftest.py`` in a sub-folder clashes with this one).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from cases import CASES, MODEL_CASES

from fisherlab.attacks import GANConfig, GANPrior, train_gan
from fisherlab.experiments import reproduce
from fisherlab.experiments.executors import RayExecutor
from fisherlab.training import TrainConfig, train

# Tests run on the CPU, also on a GPU machine: "auto" (every default device, in this
# process and in the CLI subprocesses) means the CPU here. Tests that run on CUDA ask for
# it (the `device` fixture, tests/test_gpu.py). FISHERLAB_DEVICE=cuda runs the rest there.
os.environ.setdefault("FISHERLAB_DEVICE", "cpu")


@pytest.fixture(params=[case["name"] for case in MODEL_CASES])
def model_case(request) -> dict:
    """One case of ``tests/cases.py``, by name (the pytest id).

    Every case by default; a test picks some by name with
    ``@pytest.mark.parametrize("model_case", ["target_cnn", "resnet18"], indirect=True)``.
    """
    return CASES[request.param]


DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Where the code under test computes: the CPU, and the GPU where there is one."""
    return torch.device(request.param)


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


@pytest.fixture(scope="session")
def target(pretrained: Path, tmp_path_factory) -> Path:
    """The pretrained target_cnn fine-tuned two epochs on 600 private images."""
    out = tmp_path_factory.mktemp("target") / "t.pt"
    train(
        TrainConfig(data="mnist5k:0-4", init=str(pretrained), epochs=2, max_train_samples=600),
        out=out,
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def gans(target: Path, tmp_path_factory) -> dict[str, GANPrior | None]:
    """The prior of each attack: a GMI GAN, a KEDMI GAN of the target, none for white-box."""
    d = tmp_path_factory.mktemp("gan")
    gmi = train_gan(
        GANConfig(data="mnist5k:5-9", epochs=2, max_train_samples=512), d / "g.pt", progress=False
    )
    kedmi = train_gan(
        GANConfig(
            data="mnist5k:5-9", kind="kedmi", target=str(target), epochs=2, max_train_samples=512
        ),
        d / "k.pt",
        progress=False,
    )
    return {"gmi": gmi, "kedmi": kedmi, "whitebox": None}


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory) -> Path:
    """The smoke preset's results (every step and table of ``quick``, tiny data), run once."""
    out = tmp_path_factory.mktemp("smoke")
    reproduce("smoke", out, progress=False)
    return out


@pytest.fixture(scope="session")
def ray_executor():
    """One local Ray instance of 2 CPUs for the session (starting one takes seconds).

    Ray is an extra (``make setup`` installs it): without it the tests that
    need this instance are skipped, and the rest of the suite runs.
    """
    pytest.importorskip("ray", reason="needs the ray extra: pip install 'fisherlab[ray]'")
    executor = RayExecutor(num_cpus=2)
    yield executor
    executor.close()
