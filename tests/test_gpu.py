"""The same paths on CUDA: one train step, one GAN step, one attack iteration, each with --amp.

Collected only where ``torch.cuda.is_available()``: on a machine without a GPU
this module defines no test (nothing is skipped, nothing is reported). The
CPU tests of the same code are in ``tests/test_devices.py``; the models here
are small and untrained, so each test takes seconds.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import rel
from test_devices import SPEC, small_prior, small_target

from fisherlab.attacks import GANConfig, attack, load_gan, train_gan
from fisherlab.fisher import profile
from fisherlab.models import load_model
from fisherlab.training import TrainConfig, train

if torch.cuda.is_available():
    AMPS = [None, "fp16", *(["bf16"] if torch.cuda.is_bf16_supported() else [])]

    @pytest.mark.parametrize("amp", AMPS)
    def test_one_train_step_on_cuda(tmp_path, amp):
        config = TrainConfig(
            data="mnist5k:0-4",
            arch="target_cnn",
            epochs=1,
            batch_size=32,
            max_train_samples=64,
            device="cuda",
            amp=amp,
        )
        result = train(config, out=tmp_path / "m.pt", progress=False)
        assert all(p.is_cuda for p in result.model.parameters())
        record = json.loads((tmp_path / "m.run.json").read_text())
        assert record["device"].startswith("cuda:") and record["config"]["amp"] == amp
        assert record["key"] != TrainConfig(**{**record["config"], "device": "cpu"}).key()
        saved = torch.load(tmp_path / "m.pt", weights_only=True)
        assert all(t.device.type == "cpu" for t in saved["state_dict"].values())
        model = load_model(tmp_path / "m.pt")
        assert all(torch.isfinite(p).all() for p in model.parameters())
        assert result.history["train_loss"].notna().all()

    @pytest.mark.parametrize("amp", AMPS)
    def test_one_gan_step_on_cuda(tmp_path, amp):
        config = GANConfig(
            data="mnist5k:5-9",
            epochs=1,
            batch_size=32,
            max_train_samples=64,
            device="cuda",
            amp=amp,
        )
        prior = train_gan(config, tmp_path / "g.pt", progress=False)
        assert prior.config["device"] == "cuda" and prior.config.get("amp") == amp
        saved = torch.load(tmp_path / "g.pt", weights_only=True)
        assert all(t.device.type == "cpu" for t in saved["generator"].values())
        assert load_gan(tmp_path / "g.pt").epoch == 1

    @pytest.mark.parametrize("amp", AMPS)
    def test_one_attack_iteration_on_cuda_sees_the_cpus_latents(amp):
        common = dict(
            attack="gmi", classes=(0, 2), per_class=2, iterations=1, restarts=1, fisher_every=1
        )
        cpu = attack(small_target(), small_prior(), device="cpu", **common)
        gpu = attack(small_target(), small_prior(), device="cuda", amp=amp, **common)
        assert gpu.summary["device"].startswith("cuda:")
        assert gpu.result.images.device.type == "cpu" and gpu.result.latents is not None
        # the latents were drawn on the CPU: after one step they still agree closely
        assert torch.allclose(gpu.result.latents, cpu.result.latents, atol=0.1)
        # the Fisher of iteration 1 (the drawn latents) is float32 on both devices;
        # with amp only the prior's images differ, by their rounding
        tolerance = 1e-3 if amp is None else 0.2
        assert rel(gpu.result.fisher["trace"], cpu.result.fisher["trace"]) < tolerance

    def test_profile_matches_across_devices(device):
        x = torch.rand(24, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        data = torch.utils.data.TensorDataset(SPEC.normalize(x), torch.arange(24) % 3)
        on_cpu = profile(small_target(), data, device="cpu")
        here = profile(small_target(), data, device=device)
        assert rel(here["trace"], on_cpu["trace"]) < 1e-4  # IEEE float32 on CUDA too, no TF32
        low = torch.float16 if device.type == "cuda" else torch.bfloat16
        with torch.autocast(device.type, dtype=low):  # never reaches the engine
            inside = profile(small_target(), data, device=device)
        assert inside["trace"].tolist() == here["trace"].tolist()
