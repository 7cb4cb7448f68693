"""LOMMA (on GMI and KEDMI) and PLG-MI: their losses, and the Fisher recorded along them.

The recorded per-layer Fisher of iteration 1 is compared with a float64
per-sample autograd loop written here (it shares nothing with the recorder:
one backward pass per sample on a float64 copy), for the BackPACK fast paths
and for the torch.func fallback. The inputs of iteration 1 are rebuilt from
the attacks' seeded draws.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fisherlab.attacks import (
    AttackConfig,
    FisherRecorder,
    GANConfig,
    GANPrior,
    attack,
    load_gan,
    train_gan,
)
from fisherlab.attacks.augment import PLGMI_AUGMENT, AugmentPolicy, augment
from fisherlab.attacks.gan import (
    Z_DIM,
    ConditionalGenerator,
    Critic,
    Generator,
    KEDMIDiscriminator,
    ProjectionDiscriminator,
)
from fisherlab.attacks.identity import (
    IdentityLoss,
    ModelAugmentation,
    max_margin,
)
from fisherlab.attacks.lomma import run_lomma_gmi, run_lomma_kedmi
from fisherlab.attacks.method import class_labels
from fisherlab.attacks.plgmi import run_plgmi
from fisherlab.attacks.pseudo_labels import top_n_pseudo_labels
from fisherlab.attacks.surrogates import DistillConfig, distill
from fisherlab.data import InputSpec
from fisherlab.errors import FisherlabError
from fisherlab.models import build_model, layers, load_model, model_meta, save_model

SPEC = InputSpec(1, 28, (0.5,), (0.5,))
CLASSES = (0, 2)
N_CLASSES = 3


def _model(arch: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(arch, N_CLASSES, in_channels=1, image_size=28).eval()
    model_meta(model).input_spec = SPEC
    return model


def _prior(kind: str) -> GANPrior:
    torch.manual_seed(1)
    if kind == "plgmi":
        gen, disc = ConditionalGenerator(N_CLASSES), ProjectionDiscriminator(N_CLASSES)
    else:
        gen = Generator(1, 28)
        disc = KEDMIDiscriminator(N_CLASSES, 1, 28) if kind == "kedmi" else Critic(1, 28)
    return GANPrior(gen.eval(), disc.eval(), kind, InputSpec(1, 28, None, None), 0, {})


def _augmentation() -> ModelAugmentation:
    surrogates = [_model("lenet5", 3), _model("mlp", 4)]
    mean = torch.rand(256, generator=torch.Generator().manual_seed(5))
    return ModelAugmentation(surrogates, mean, 0.5)


def _loop_traces(target, pixels, labels, loss) -> list[float]:
    """Per-layer ``1/n sum_i ||d loss_i / d theta_layer||^2`` by one backward pass per sample."""
    model = copy.deepcopy(target).double().eval()
    head = dict(model.named_modules())[layers(model)[-1].name]
    captured = []
    head.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
    params = dict(model.named_parameters())
    totals = {name: 0.0 for name in params}
    for x, y in zip(SPEC.normalize(pixels.double()), labels, strict=True):
        captured.clear()
        value = loss(model(x[None]), y[None], captured[0]).sum()
        grads = torch.autograd.grad(value, list(params.values()))
        for name, g in zip(params, grads, strict=True):
            totals[name] += float(g.square().sum())
    return [sum(totals[p] for p in layer.params) / len(labels) for layer in layers(model)]


def _first(fisher):
    return fisher[fisher["iteration"] == 1]["trace"].to_numpy()


def _lomma_loss(aug: ModelAugmentation):
    m = 1 + len(aug.surrogates)

    def loss(logits, y, features):
        own = -logits[torch.arange(len(y)), y] / m
        reg = (features.flatten(1) - aug.feature_mean.double()).square().mean(1)
        return own + aug.feature_weight * reg

    return loss


@pytest.mark.parametrize("fallback", [False, True], ids=["fast", "fallback"])
@pytest.mark.parametrize("kind", ["lomma-gmi", "lomma-kedmi"])
def test_lomma_records_the_fisher_of_its_logit_loss_with_feature_regulariser(kind, fallback):
    target, aug = _model("target_cnn", 0), _augmentation()
    base = "kedmi" if kind == "lomma-kedmi" else "gmi"
    prior = _prior(base)
    config = AttackConfig(
        attack=kind, classes=CLASSES, per_class=2, iterations=1, restarts=1, seed=3,
        fisher_every=1, kedmi_samples=2,
    )  # fmt: skip
    recorder = FisherRecorder(target, SPEC, 1, None)
    if fallback:
        recorder.engine._to_fallback(set(recorder.engine.owners.values()), "forced by the test")
    run = run_lomma_kedmi if base == "kedmi" else run_lomma_gmi
    result = run(target, SPEC, prior, config, recorder, augmentation=aug)
    gen = torch.Generator().manual_seed(config.seed)
    if base == "gmi":
        labels = class_labels(CLASSES, 2)
        z = torch.randn(len(labels), Z_DIM, generator=gen).clamp_(-1, 1)
    else:  # mu = 0, logvar = 0 at the first step: z = eps
        labels = class_labels(CLASSES, config.kedmi_samples)
        z = torch.randn(len(CLASSES), config.kedmi_samples, Z_DIM, generator=gen).reshape(-1, Z_DIM)
    with torch.no_grad():
        pixels = prior.generator(z)
    expected = _loop_traces(target, pixels, labels, _lomma_loss(aug))
    assert _first(result.fisher) == pytest.approx(expected, rel=1e-4)
    assert set(result.fisher["identity_loss"]) == {"lomma"}
    assert set(result.fisher["engine"]) == ({"functorch"} if fallback else {"backpack"})


@pytest.mark.parametrize("fallback", [False, True], ids=["fast", "fallback"])
def test_plgmi_records_the_fisher_of_the_max_margin_loss_per_augmented_view(fallback):
    target, prior = _model("target_cnn", 0), _prior("plgmi")
    config = AttackConfig(
        attack="plgmi", classes=CLASSES, per_class=2, iterations=1, restarts=1, seed=6,
        fisher_every=1, views=2,
    )  # fmt: skip
    recorder = FisherRecorder(target, SPEC, 1, None)
    if fallback:
        recorder.engine._to_fallback(set(recorder.engine.owners.values()), "forced by the test")
    result = run_plgmi(target, SPEC, prior, config, recorder)
    gen = torch.Generator().manual_seed(config.seed)
    labels = class_labels(CLASSES, 2)
    z = torch.randn(len(labels), Z_DIM, generator=gen)
    with torch.no_grad():
        images = prior.generator(z, labels).repeat_interleave(2, dim=0)
    viewed = augment(images, PLGMI_AUGMENT, gen)
    expected = _loop_traces(
        target, viewed, labels.repeat_interleave(2), lambda out, y, f: max_margin(out, y)
    )
    assert _first(result.fisher) == pytest.approx(expected, rel=1e-4)
    assert set(result.fisher["identity_loss"]) == {"max-margin"}
    assert set(result.fisher["n_samples"]) == {4 * 2}  # every view is a recorded sample


@pytest.mark.parametrize("kind", ["lomma-gmi", "lomma-kedmi", "plgmi"])
def test_recording_leaves_the_new_attacks_bitwise_unchanged(kind):
    target, aug = _model("target_cnn", 0), _augmentation()
    prior = _prior({"lomma-gmi": "gmi", "lomma-kedmi": "kedmi", "plgmi": "plgmi"}[kind])
    run = {"lomma-gmi": run_lomma_gmi, "lomma-kedmi": run_lomma_kedmi, "plgmi": run_plgmi}[kind]
    results = []
    for every in (0, 1, 0):
        config = AttackConfig(
            attack=kind, classes=CLASSES, per_class=2, iterations=4, restarts=2, seed=1,
            fisher_every=every, kedmi_samples=2,
        )  # fmt: skip
        recorder = FisherRecorder(target, SPEC, every, None)
        results.append(run(target, SPEC, prior, config, recorder, augmentation=aug))
    plain, recorded, again = results
    assert torch.equal(plain.images, recorded.images)
    assert torch.equal(plain.latents, recorded.latents)
    assert torch.equal(plain.images, again.images)
    assert len(recorded.fisher) == 2 * 4 * len(layers(target)) and plain.fisher.empty


def test_max_margin_and_lomma_term_by_hand():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.5, 4.0, -1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 2])
    by_hand = [-3.0 + 2.0, 1.0 + 4.0]  # -own + best other
    assert max_margin(logits, labels).tolist() == pytest.approx(by_hand)
    target, aug = _model("target_cnn", 0), _augmentation()
    recorder = FisherRecorder(target, SPEC, 0, None)
    pixels = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    term = recorder.identity_term(pixels[:2], IdentityLoss.LOMMA, aug)
    y = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        loss, _ = term(pixels, y)
        x = SPEC.normalize(pixels)
        models = [target, *aug.surrogates]
        logit = sum(m(x)[torch.arange(4), y] for m in models) / len(models)
        features = F.relu(target.fc(target.features(x).flatten(1)))
        reg = (features - aug.feature_mean).square().mean(1)
    assert loss.tolist() == pytest.approx((-logit + 0.5 * reg).tolist(), rel=1e-5)


def test_augment_is_per_image_and_the_identity_when_it_draws_nothing():
    images = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    still = AugmentPolicy(min_area=1.0, degrees=0.0, brightness=0.0, contrast=0.0)
    same = augment(images, still, torch.Generator().manual_seed(1))
    assert torch.allclose(same, images, atol=1e-5)
    a = augment(images, PLGMI_AUGMENT, torch.Generator().manual_seed(2))
    changed = images.clone()
    changed[1] = torch.rand(1, 28, 28)
    b = augment(changed, PLGMI_AUGMENT, torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) and not torch.equal(a[1], b[1])
    assert not torch.allclose(a, images, atol=1e-3)  # it does augment


def test_bad_inputs_are_refused_before_work():
    target, aug = _model("target_cnn", 0), _augmentation()
    common = dict(classes=CLASSES, per_class=1, iterations=1, restarts=1)
    with pytest.raises(FisherlabError, match="give --surrogates"):
        attack(target, _prior("gmi"), attack="lomma-gmi", **common)
    with pytest.raises(FisherlabError, match="uses no surrogates"):
        attack(target, _prior("gmi"), attack="gmi", surrogates=aug.surrogates, **common)
    with pytest.raises(FisherlabError, match="class-conditional plgmi GAN, got an uncond"):
        attack(target, _prior("gmi"), attack="plgmi", **common)
    with pytest.raises(FisherlabError, match="unconditional gmi GAN, got a class-conditional"):
        attack(target, _prior("plgmi"), attack="gmi", **common)
    other = _prior("plgmi")
    other.generator = ConditionalGenerator(N_CLASSES + 1).eval()
    with pytest.raises(FisherlabError, match="trained for 4 classes and the target has 3"):
        attack(target, other, attack="plgmi", **common)
    big = build_model("lenet5", N_CLASSES, image_size=32).eval()
    model_meta(big).input_spec = InputSpec(1, 32, (0.5,), (0.5,))
    with pytest.raises(FisherlabError, match="surrogate 2 takes 1x32x32 images"):
        attack(
            target, _prior("gmi"), attack="lomma-gmi", surrogates=[aug.surrogates[0], big], **common
        )
    wide = _model("mlp", 0)
    wide.head = torch.nn.Linear(256, 7)
    with pytest.raises(FisherlabError, match=r"surrogate 1 has \(7,\) outputs"):
        attack(target, _prior("gmi"), attack="lomma-gmi", surrogates=[wide], **common)


def test_pseudo_labels_are_each_classs_top_n_by_a_loop():
    probs = torch.softmax(torch.randn(40, 4, generator=torch.Generator().manual_seed(0)), 1)
    rows, labels = top_n_pseudo_labels(probs, 5)
    for c in range(4):
        by_loop = sorted(range(40), key=lambda i: -float(probs[i, c]))[:5]
        assert sorted(rows[labels == c].tolist()) == sorted(by_loop)
    with pytest.raises(FisherlabError, match="at least 2"):
        top_n_pseudo_labels(torch.ones(10, 1), 3)
    with pytest.raises(FisherlabError, match="--top-n 50 needs at least that many"):
        top_n_pseudo_labels(probs, 50)


def test_plgmi_prior_trains_resumes_and_is_refused_without_a_target(target, tmp_path):
    with pytest.raises(FisherlabError, match="give --target"):
        GANConfig(data="mnist5k:5-9", kind="plgmi")
    base = dict(
        data="mnist5k:5-9", kind="plgmi", target=str(target), max_train_samples=256, top_n=40,
        batch_size=32,
    )  # fmt: skip
    out = tmp_path / "p.pt"
    first = train_gan(GANConfig(epochs=1, **base), out, progress=False)
    assert first.conditional and first.num_classes == 5 and first.epoch == 1
    w1 = first.generator.fc.weight.detach().clone()
    second = train_gan(GANConfig(epochs=2, **base), out, progress=False)
    assert second.epoch == 2 and not torch.equal(second.generator.fc.weight, w1)
    assert load_gan(out).kind == "plgmi" and (tmp_path / "p.samples.png").is_file()
    with pytest.raises(FisherlabError, match="--top-n 300 needs at least that many"):
        train_gan(GANConfig(epochs=1, **{**base, "top_n": 300}), tmp_path / "q.pt")
    # PLG-MI's settings stay out of the other kinds' keys
    gmi = GANConfig(data="mnist5k:5-9")
    assert gmi.key() == GANConfig(data="mnist5k:5-9", top_n=7, inversion_weight=1.0).key()


def test_distilled_surrogate_agrees_with_the_target_and_is_reused(target, tmp_path):
    config = DistillConfig("mnist5k:5-9", "mlp", epochs=2)
    out = tmp_path / "s.pt"
    student = distill(target, config, out, progress=False)
    meta = model_meta(student)
    assert meta.arch == "mlp" and meta.input_spec == model_meta(load_model(target)).input_spec
    assert meta.metrics["agreement"] > 0.5  # far above the 0.2 of a random 5-class guess
    again = distill(target, config, out, progress=False)
    assert all(
        torch.equal(a, b)
        for a, b in zip(again.state_dict().values(), student.state_dict().values(), strict=True)
    )
    small = build_model("target_cnn", 5, image_size=8).eval()
    save_model(small, tmp_path / "small.pt", input_spec=InputSpec(1, 8, (0.5,), (0.5,)),
               class_names=list("01234"))  # fmt: skip
    with pytest.raises(FisherlabError, match="lenet5 does not take the target's 1x8x8 input"):
        distill(tmp_path / "small.pt", DistillConfig("mnist5k:5-9", "lenet5"), progress=False)


def test_lomma_without_its_regulariser_records_the_averaged_logit_loss_alone():
    target, aug = _model("target_cnn", 0), _augmentation()
    aug.feature_weight = 0.0
    prior = _prior("gmi")
    config = AttackConfig(
        attack="lomma-gmi", classes=CLASSES, per_class=2, iterations=1, restarts=1, seed=3,
        fisher_every=1, feature_weight=0.0,
    )  # fmt: skip
    recorder = FisherRecorder(target, SPEC, 1, None)
    result = run_lomma_gmi(target, SPEC, prior, config, recorder, augmentation=aug)
    labels = class_labels(CLASSES, 2)
    z = torch.randn(len(labels), Z_DIM, generator=torch.Generator().manual_seed(3)).clamp_(-1, 1)
    with torch.no_grad():
        pixels = prior.generator(z)
    m = 1 + len(aug.surrogates)
    expected = _loop_traces(
        target, pixels, labels, lambda out, y, f: -out[torch.arange(len(y)), y] / m
    )
    assert _first(result.fisher) == pytest.approx(expected, rel=1e-4)


def test_a_callers_surrogates_and_a_torchscript_target_are_handled():
    target, aug = _model("target_cnn", 0), _augmentation()
    mine = aug.surrogates[1].train()
    common = dict(classes=CLASSES, per_class=1, iterations=1, restarts=1, public_data="mnist5k:5-9")
    attack(target, _prior("gmi"), attack="lomma-gmi", surrogates=[mine], **common)
    assert mine.training and all(p.requires_grad for p in mine.parameters())
    scripted = torch.jit.script(_model("mlp", 0))
    scripted.fisherlab_meta = model_meta(_model("mlp", 0))
    with pytest.raises(FisherlabError, match="TorchScript"):
        attack(scripted, _prior("gmi"), attack="lomma-gmi", surrogates=[mine], **common)


def test_a_plgmi_gan_with_fewer_pseudo_labels_than_a_batch_is_refused(target, tmp_path):
    config = GANConfig(
        data="mnist5k:5-9", kind="plgmi", target=str(target), top_n=10, max_train_samples=256
    )
    with pytest.raises(FisherlabError, match="--top-n 10 x 5 classes gives 50 training images"):
        train_gan(config, tmp_path / "p.pt", progress=False)
    assert not (tmp_path / "p.pt").exists()
