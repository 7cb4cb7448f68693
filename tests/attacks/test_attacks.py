"""Model-inversion attacks (fisherlab.attacks.run): they work, and recording the Fisher is free.

The target and its GAN priors are session fixtures of ``tests/conftest.py``.
"""

from __future__ import annotations

import pytest
import torch

from fisherlab.attacks import attack
from fisherlab.data import InputSpec
from fisherlab.errors import FisherlabError
from fisherlab.fisher import profile
from fisherlab.models import build_model, load_model, model_meta, save_model


@pytest.mark.parametrize("kind", ["gmi", "kedmi", "whitebox"])
def test_attack_raises_target_confidence(target, gans, kind):
    common = dict(attack=kind, classes=(0, 3), per_class=3, restarts=1, seed=0)
    if kind == "kedmi":  # a distribution moves slowly from N(0, I) at the default lr
        common["lr"] = 0.1
    before = attack(target, gans[kind], iterations=1, **common).summary["target_confidence"]
    after = attack(target, gans[kind], iterations=60, **common).summary["target_confidence"]
    assert after > before + 0.1, (before, after)


@pytest.mark.parametrize("kind", ["gmi", "kedmi"])
def test_recording_fisher_leaves_the_trajectory_bitwise_unchanged(target, gans, kind):
    common = dict(attack=kind, classes=(1, 2), per_class=2, restarts=2, iterations=6, seed=4)
    plain = attack(target, gans[kind], **common).result
    recorded = attack(target, gans[kind], fisher_every=1, **common).result
    assert torch.equal(plain.images, recorded.images)
    assert torch.equal(plain.latents, recorded.latents)
    assert len(recorded.fisher) == 2 * 6 * 6  # restarts x iterations x layers
    again = attack(target, gans[kind], **common).result
    assert torch.equal(plain.images, again.images)


def test_fisher_rows_equal_profile_on_that_iterations_latents(target, gans):
    t = 5
    common = dict(attack="gmi", classes=(0, 4), per_class=3, restarts=1, seed=2)
    recorded = attack(target, gans["gmi"], iterations=8, fisher_every=1, **common).result.fisher
    # the latents of iteration t are those after t-1 updates
    latents = attack(target, gans["gmi"], iterations=t - 1, **common).result.latents
    model = load_model(target)
    spec = model_meta(model).input_spec
    with torch.no_grad():
        images = gans["gmi"].generator(latents)
    labels = torch.tensor([0, 0, 0, 4, 4, 4])
    expected = profile(model, torch.utils.data.TensorDataset(spec.normalize(images), labels))
    rows = recorded[recorded["iteration"] == t].reset_index(drop=True)
    assert rows["trace"].to_numpy() == pytest.approx(expected["trace"].to_numpy(), rel=1e-5)


def test_bad_inputs_are_refused_before_work(target, gans, tmp_path):
    with pytest.raises(FisherlabError, match=r"classes \[7\] are outside"):
        attack(target, gans["gmi"], classes=(0, 7))
    with pytest.raises(FisherlabError, match="needs a gmi GAN"):
        attack(target, gans["kedmi"], attack="gmi")
    big = build_model("target_cnn", 5, image_size=32)
    save_model(
        big,
        tmp_path / "big.pt",
        input_spec=InputSpec(1, 32, (0.5,), (0.5,)),
        class_names=list("01234"),
    )
    with pytest.raises(FisherlabError, match="generator makes 1x28x28 images"):
        attack(tmp_path / "big.pt", gans["gmi"])
    other = build_model("eval_cnn", 5)
    save_model(
        other,
        tmp_path / "other.pt",
        input_spec=InputSpec(1, 28, (0.5,), (0.5,)),
        class_names=list("56789"),
    )
    with pytest.raises(FisherlabError, match="evaluation model was trained on classes"):
        attack(target, gans["gmi"], tmp_path / "other.pt", private_data="mnist5k:0-4")
