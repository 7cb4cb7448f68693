from __future__ import annotations

import numpy as np
import pytest
import torch
from fisherlab.evaluate import frechet_distance, knn_distances, topk_correct

from fisherlab.attacks import attack
from fisherlab.errors import FisherlabError
from fisherlab.fisher import profile


@pytest.fixture(scope="module")
def target(pretrained, tmp_path_factory):
    from fisherlab.train import TrainConfig, train

    out = tmp_path_factory.mktemp("target") / "t.pt"
    train(
        TrainConfig(data="mnist5k:0-4", init=str(pretrained), epochs=2, max_train_samples=600),
        out=out,
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def gans(target, tmp_path_factory):
    from fisherlab.train_gan import GANConfig, train_gan

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
    from fisherlab.checkpoint import load_model, model_meta

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


def test_evaluation_summary(target, gans, tmp_path):
    from fisherlab.train import TrainConfig, train

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
    assert rows["correct_top5"].all()  # 5 classes: top-5 always contains the label
    assert 0.2 < s["natural_accuracy"] <= 1.0 and np.isfinite(s["fid"])


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
    from scipy import linalg

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    b = torch.randn(60, 4, generator=gen, dtype=torch.float64) * 1.5 + 0.3
    ca, cb = np.cov(a.numpy().T), np.cov(b.numpy().T)
    root = linalg.sqrtm(ca @ cb).real
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum().item() + np.trace(ca + cb - 2 * root)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_bad_inputs_are_refused_before_work(target, gans, tmp_path):
    with pytest.raises(FisherlabError, match=r"classes \[7\] are outside"):
        attack(target, gans["gmi"], classes=(0, 7))
    with pytest.raises(FisherlabError, match="needs a gmi GAN"):
        attack(target, gans["kedmi"], attack="gmi")
    from fisherlab.checkpoint import save_model

    from fisherlab.data import InputSpec
    from fisherlab.models import build_model

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


def test_train_gan_resumes_from_its_last_epoch(tmp_path):
    from fisherlab.train_gan import GANConfig, load_gan, train_gan

    out = tmp_path / "g.pt"
    base = dict(data="mnist5k:5-9", max_train_samples=128, batch_size=32)
    first = train_gan(GANConfig(epochs=1, **base), out, progress=False)
    w1 = first.generator.fc.weight.detach().clone()
    second = train_gan(GANConfig(epochs=2, **base), out, progress=False)
    assert second.epoch == 2 and not torch.equal(second.generator.fc.weight, w1)
    again = train_gan(GANConfig(epochs=2, **base), out, progress=False)  # nothing left to do
    assert torch.equal(again.generator.fc.weight, second.generator.fc.weight)
    assert load_gan(out).epoch == 2 and (tmp_path / "g.samples.png").is_file()
    with pytest.raises(FisherlabError, match="different GAN run"):
        train_gan(GANConfig(epochs=2, lr=1e-3, **base), out, progress=False)
