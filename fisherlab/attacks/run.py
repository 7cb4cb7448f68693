"""Running an attack: :func:`attack` inverts a target and judges the reconstructions.

The attacks are those of the registry (:data:`fisherlab.attacks.registry.ATTACKS`):

===============  =================================================  ====================
``gmi``          :mod:`fisherlab.attacks.gmi`, latent SGD with a     GAN prior (gmi)
                 critic prior
``kedmi``        :mod:`fisherlab.attacks.kedmi`, a learned latent    GAN prior (kedmi)
                 distribution per class
``whitebox``     :mod:`fisherlab.attacks.whitebox`, pixels with a    none
                 total-variation prior
``lomma-gmi``    :mod:`fisherlab.attacks.lomma`, GMI with the        GAN prior (gmi),
                 logit loss and model augmentation                   surrogates
``lomma-kedmi``  the same on KEDMI                                   GAN prior (kedmi),
                                                                     surrogates
``plgmi``        :mod:`fisherlab.attacks.plgmi`, a conditional GAN   GAN prior (plgmi)
                 on pseudo-labels, max-margin loss
===============  =================================================  ====================

LOMMA's surrogates come from :func:`fisherlab.attacks.surrogates.distill`
(``fisherlab distill``); its feature mean is computed here from up to 5,000
public images (``public_data``, by default the GAN prior's training data).

After the attack, :func:`fisherlab.attacks.evaluation.evaluate_attack` judges
the reconstructions.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fisherlab._device import (
    check_amp,
    check_workers,
    describe_device,
    model_device,
    resolve_device,
)
from fisherlab._progress import tqdm
from fisherlab.attacks.base import AttackConfig
from fisherlab.attacks.evaluation import AttackOutcome, evaluate_attack
from fisherlab.attacks.identity import ModelAugmentation, feature_mean
from fisherlab.attacks.outputs import read_reconstructions
from fisherlab.attacks.recorder import FisherRecorder
from fisherlab.attacks.registry import attack_method
from fisherlab.attacks.train_gan import CONDITIONAL_KINDS, GANPrior, load_gan
from fisherlab.data.datasets import load_dataset
from fisherlab.data.specs import InputSpec
from fisherlab.data.subsets import capped_rows
from fisherlab.errors import FisherlabError, preview
from fisherlab.models.layers import layers
from fisherlab.models.meta import check_data_classes, model_meta
from fisherlab.models.source import open_model


def _model(value: nn.Module | str | Path | None, trust_pickle: bool = False) -> nn.Module | None:
    if value is None or isinstance(value, nn.Module):
        return value
    return open_model(value, trust_pickle=trust_pickle)


def _spec(model: nn.Module, role: str, given: InputSpec | None = None) -> InputSpec:
    """The model's input spec, or ``given`` for a model that records none."""
    spec = model_meta(model).input_spec or given
    if spec is None:
        raise FisherlabError(
            f"the {role} records no input spec (how pixels become its input): give "
            "--private-data (its preprocessing is assumed) or --input-size and --channels "
            "(input_spec= in Python), or record it once with `fisherlab import`"
        )
    return spec


def _prior(value: Any) -> GANPrior | None:
    if value is None or isinstance(value, GANPrior):
        return value
    return load_gan(value)


def _on(model: nn.Module | None, device: torch.device, owned: bool) -> nn.Module | None:
    """``model`` on ``device``; a caller's model is copied rather than moved."""
    if model is None or model_device(model) == device:
        return model
    return (model if owned else copy.deepcopy(model)).to(device)


def _prior_on(prior: GANPrior | None, device: torch.device, owned: bool) -> GANPrior | None:
    """``prior`` with its networks on ``device``; a caller's prior is copied rather than moved."""
    if prior is None:
        return None
    generator = _on(prior.generator, device, owned)
    discriminator = _on(prior.discriminator, device, owned)
    return replace(prior, generator=generator, discriminator=discriminator)


FEATURE_MEAN_IMAGES = 5000
"""Public images LOMMA's feature mean is taken over (the authors' cap)."""


def _check_surrogates(surrogates, method, spec: InputSpec, n_classes: int) -> None:
    """Surrogates only for LOMMA, at least one, each taking the target's input and classes."""
    if not method.needs_surrogates():
        if surrogates:
            raise FisherlabError(
                f"the {method.name} attack uses no surrogates: drop --surrogates (LOMMA's "
                "attacks, lomma-gmi and lomma-kedmi, take them)"
            )
        return
    if not surrogates:
        raise FisherlabError(
            f"the {method.name} attack averages its loss over surrogates distilled from the "
            "target: give --surrogates (make them with fisherlab distill)"
        )
    for i, model in enumerate(surrogates):
        own = model_meta(model).input_spec or spec
        if (own.channels, own.size) != (spec.channels, spec.size):
            raise FisherlabError(
                f"surrogate {i + 1} takes {own.channels}x{own.size}x{own.size} images but the "
                f"target takes {spec.channels}x{spec.size}x{spec.size}: distil it from this target"
            )
        probe = torch.rand(2, spec.channels, spec.size, spec.size).to(model_device(model))
        with torch.no_grad():
            out = model(own.normalize(probe))
        if tuple(out.shape) != (2, n_classes):
            raise FisherlabError(
                f"surrogate {i + 1} has {tuple(out.shape)[1:]} outputs but the target has "
                f"{n_classes} classes: distil it from this target"
            )


def _augmentation(
    target: nn.Module, spec: InputSpec, surrogates, public: str | None, config: AttackConfig
) -> ModelAugmentation:
    """LOMMA's surrogates with the target's mean penultimate feature over public images."""
    if public is None:
        raise FisherlabError(
            f"the {config.attack} attack needs public images for its feature mean: give "
            "--public-data"
        )
    data = load_dataset(public, input_spec=spec).train
    rows = capped_rows(data, FEATURE_MEAN_IMAGES, 0)
    if rows is None:
        pixels = data.tensors()[0][:FEATURE_MEAN_IMAGES]
    else:
        pixels = torch.stack([data[int(r)][0] for r in rows])
    head = dict(target.named_modules())[layers(target)[-1].name]
    mean = feature_mean(target, head, pixels.to(model_device(target)))
    return ModelAugmentation(tuple(surrogates), mean, config.feature_weight)


def _check(target, spec, prior, eval_model, config, private_data) -> int:
    meta = model_meta(target)
    probe = torch.rand(1, spec.channels, spec.size, spec.size).to(model_device(target))
    with torch.no_grad():
        n_classes = int(target(spec.normalize(probe)).shape[1])
    bad = [c for c in config.classes if not 0 <= c < n_classes]
    if bad:
        raise FisherlabError(
            f"classes {preview(bad)} are outside the target's range: it has classes "
            f"0-{n_classes - 1}"
        )
    needed = attack_method(config.attack).prior
    if needed is not None:
        if prior is None:
            raise FisherlabError(f"the {config.attack} attack needs a GAN prior: give --generator")
        gspec = prior.image_spec
        if (gspec.channels, gspec.size) != (spec.channels, spec.size):
            raise FisherlabError(
                f"the generator makes {gspec.channels}x{gspec.size}x{gspec.size} images but "
                f"the target takes {spec.channels}x{spec.size}x{spec.size}"
            )
        if prior.kind != needed:
            wants = needed in CONDITIONAL_KINDS
            what = {True: "a class-conditional ", False: "an unconditional "}
            differ = wants != prior.conditional
            raise FisherlabError(
                f"the {config.attack} attack needs {what[wants] if differ else 'a '}{needed} "
                f"GAN, got {what[prior.conditional] if differ else 'a '}{prior.kind} one "
                f"(fisherlab train-gan --kind {needed})"
            )
        if prior.conditional and prior.num_classes != n_classes:
            raise FisherlabError(
                f"the conditional generator was trained for {prior.num_classes} classes and the "
                f"target has {n_classes}: train it on this target (fisherlab train-gan --kind "
                f"{needed} --target ...)"
            )
    if eval_model is not None:
        _spec(eval_model, "evaluation model")
        emeta = model_meta(eval_model)
        if meta.class_names and emeta.class_names and emeta.class_names != meta.class_names:
            raise FisherlabError(
                f"the evaluation model was trained on classes {emeta.class_names}, the target "
                f"on {meta.class_names}: train the evaluator on the private data"
            )
        if private_data is None:
            raise FisherlabError("evaluation needs the private data: give --private-data")
    if private_data is not None:
        private = load_dataset(private_data, input_spec=spec)
        check_data_classes(private.class_names, target, private_data, same_count=True)
    return n_classes


def attack(
    target: nn.Module | str | Path,
    generator: Any = None,
    eval_model: nn.Module | str | Path | None = None,
    config: AttackConfig | None = None,
    *,
    private_data: str | None = None,
    progress: bool = False,
    trust_pickle: bool = False,
    input_spec: InputSpec | None = None,
    device: str | torch.device | None = None,
    workers: int = 0,
    surrogates: Sequence[nn.Module | str | Path] = (),
    public_data: str | None = None,
    **options: Any,
) -> AttackOutcome:
    """Invert ``target`` and evaluate the reconstructions.

    Everything runs on ``device``: the target, the GAN prior and the
    evaluation model are moved there (models passed in are copied, not
    moved), and the latents are drawn on the CPU with the seeded generator and
    then moved, so a CPU and a CUDA run start from the same latents (their
    results still differ in the last bits). The summary records the device.

    Args:
        target: The attacked classifier (model or checkpoint path); not modified.
        generator: A GAN prior (:class:`fisherlab.attacks.train_gan.GANPrior` or path);
            not needed by ``whitebox``.
        eval_model: Evaluation classifier (model or path) trained on the
            private classes, or ``None`` to skip evaluation.
        config: The attack; ``options`` override or replace it
            (e.g. ``attack="kedmi", iterations=300``).
        private_data: Private dataset string (KNN, FID, natural accuracy).
        progress: Show a progress bar.
        trust_pickle: Let ``target`` and ``eval_model`` paths be pickled
            modules or TorchScript archives (both run code from the file; see
            :func:`~fisherlab.models.checkpoint.load_model`).
        input_spec: How pixels become the target's input, for a target that
            records none (any ``nn.Module`` of yours); a recorded one wins.
        device: Where to compute: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, or
            ``None``/``"auto"`` (CUDA when available, else the CPU).
        workers: Data-loading processes for image folders (0: this one).
        surrogates: LOMMA's surrogate models (models or checkpoint paths,
            :func:`fisherlab.attacks.surrogates.distill`); only ``lomma-*``
            attacks take them, and they need at least one.
        public_data: Public dataset string of LOMMA's feature mean (default:
            the GAN prior's training data).
        **options: Fields of :class:`AttackConfig`.

    Returns:
        The outcome (reconstructions, rows, summary); its tensors are on the CPU.

    Raises:
        FisherlabError: For a generator that does not fit the target, classes
            out of range, an evaluation model of other classes, a device this
            machine lacks or ``amp`` off CUDA; checked before any work starts.
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
    chosen = resolve_device(device)
    check_amp(config.amp, chosen)
    check_workers(workers)
    target_model = _on(_model(target, trust_pickle), chosen, not isinstance(target, nn.Module))
    assert target_model is not None
    spec = _spec(target_model, "target", input_spec)
    prior = _prior_on(_prior(generator), chosen, not isinstance(generator, GANPrior))
    judge = _on(_model(eval_model, trust_pickle), chosen, not isinstance(eval_model, nn.Module))
    n_classes = _check(target_model, spec, prior, judge, config, private_data)
    method = attack_method(config.attack)
    # a caller's surrogates are copied: they are put in eval mode and frozen here
    helpers = [
        (copy.deepcopy(m) if isinstance(m, nn.Module) else _model(m, trust_pickle)).to(chosen)
        for m in surrogates
    ]
    for helper in helpers:
        helper.eval().requires_grad_(False)
    _check_surrogates(helpers, method, spec, n_classes)
    target_model.eval()
    if prior is not None:
        prior.generator.requires_grad_(False)
        prior.discriminator.requires_grad_(False)
    # before LOMMA's feature mean: it refuses a target it cannot record (e.g. TorchScript)
    recorder = FisherRecorder(target_model, spec, config.fisher_every, config.fisher_samples)
    augmentation = None
    if method.needs_surrogates():
        public = public_data or (prior.config.get("data") if prior is not None else None)
        augmentation = _augmentation(target_model, spec, helpers, public, config)
    total = config.restarts * config.iterations
    bar = tqdm(total=total, disable=None if progress else True, unit="it", desc=config.attack)
    result = method.run(target_model, spec, prior, config, recorder, bar.update, augmentation)
    bar.close()
    outcome = evaluate_attack(result, target_model, judge, private_data, config, workers=workers)
    outcome.summary["device"] = describe_device(chosen)
    outcome.summary["identity_loss"] = method.identity.value
    if augmentation is not None:
        outcome.summary["surrogates"] = [
            {"arch": model_meta(m).arch, "agreement": model_meta(m).metrics.get("agreement")}
            for m in helpers
        ]
    return outcome


def default_private_data(
    target: nn.Module | str | Path, *, trust_pickle: bool = False
) -> str | None:
    """The dataset the target was trained on (from its checkpoint), for evaluation.

    Args:
        target: The target model or its checkpoint path.
        trust_pickle: Let the path be a pickled module or TorchScript archive.

    Returns:
        The dataset string, or ``None`` if the checkpoint does not record it.
    """
    model = _model(target, trust_pickle)
    assert model is not None
    return (model_meta(model).train_config or {}).get("data")


def evaluate_saved(
    reconstructions: str | Path,
    target: nn.Module | str | Path,
    eval_model: nn.Module | str | Path,
    private_data: str | None = None,
    *,
    trust_pickle: bool = False,
    device: str | torch.device | None = None,
    workers: int = 0,
) -> AttackOutcome:
    """Judge the reconstructions an attack saved (``fisherlab evaluate``).

    Args:
        reconstructions: An attack's output folder or its ``reconstructions.pt``.
        target: The attacked classifier (model or checkpoint path).
        eval_model: The evaluation classifier (model or checkpoint path).
        private_data: Private dataset string (default: the target's training data).
        trust_pickle: Let ``target`` and ``eval_model`` paths be pickled
            modules or TorchScript archives (both run code from the file).
        device: Where the models compute (``None``/``"auto"``: CUDA when
            available, else the CPU); models passed in are copied, not moved.
        workers: Data-loading processes for image folders (0: this one).

    Returns:
        The outcome, as :func:`attack` would give it.

    Raises:
        FisherlabError: For unreadable files, models without an input spec,
            or a device this machine lacks.
    """
    chosen = resolve_device(device)
    check_workers(workers)
    result, config = read_reconstructions(reconstructions)
    target_model = _on(_model(target, trust_pickle), chosen, not isinstance(target, nn.Module))
    judge = _on(_model(eval_model, trust_pickle), chosen, not isinstance(eval_model, nn.Module))
    assert target_model is not None
    _spec(target_model, "target")
    if judge is not None:
        _spec(judge, "evaluation model")
    data = private_data or default_private_data(target_model)
    outcome = evaluate_attack(result, target_model, judge, data, config, workers=workers)
    outcome.summary["device"] = describe_device(chosen)
    return outcome
