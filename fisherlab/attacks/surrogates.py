"""LOMMA's model augmentation: surrogate models distilled from the target on public data.

A surrogate of another architecture learns the target's soft labels on the
*public* images (the attacker has no private data): knowledge distillation
(Hinton et al. 2015) with the loss

    T^2 * KL( softmax(t(x) / T) || softmax(s(x) / T) ),

``t`` the target's and ``s`` the surrogate's logits, averaged over the batch.
LOMMA's authors (Re-thinking_MI, ``train_augmented_model.py``) distil three
EfficientNets (b0, b1, b2) for 20 epochs with SGD at lr 0.01, temperature 1,
batch 64 and seed 1; fisherlab keeps that recipe (SGD with momentum 0.9) and
replaces the EfficientNets, which need large inputs, by small networks of
other families (:data:`DEFAULT_SURROGATES`).

A surrogate is saved in fisherlab's checkpoint format with the target's class
names and input spec; its ``train_config`` records the distillation (with the
target's content digest) and its ``metrics`` the agreement with the target's
top-1 prediction on the public test split. :func:`distill` returns a saved
surrogate of the same config at once, so the reproduction's steps and
``fisherlab distill`` resume.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fisherlab._device import model_device, resolve_device
from fisherlab._progress import tqdm
from fisherlab.data.datasets import load_dataset
from fisherlab.data.specs import InputSpec
from fisherlab.errors import FisherlabError
from fisherlab.models.architectures import available, build_model
from fisherlab.models.checkpoint import checkpoint_digest, load_model, save_model
from fisherlab.models.meta import model_meta

DEFAULT_SURROGATES = ("lenet5", "mlp", "vit_small")
"""Surrogate architectures for 28x28 targets: a LeNet, a perceptron and a small ViT."""


@dataclass(frozen=True)
class DistillConfig:
    """One surrogate's distillation (defaults: LOMMA's authors' recipe).

    Attributes:
        public: Public dataset string (its train split is distilled on).
        arch: Surrogate architecture (:func:`fisherlab.models.architectures.available`).
        epochs: Passes over the public data.
        lr: SGD learning rate (momentum 0.9).
        temperature: Softmax temperature ``T``.
        batch_size: Mini-batch size.
        seed: Seed of initialisation and shuffling.
    """

    public: str
    arch: str
    epochs: int = 20
    lr: float = 0.01
    temperature: float = 1.0
    batch_size: int = 64
    seed: int = 1

    def __post_init__(self) -> None:
        if self.arch not in available():
            raise FisherlabError(
                f"unknown surrogate architecture {self.arch!r}: expected one of "
                f"{', '.join(available())}"
            )
        if self.epochs < 1 or self.batch_size < 1:
            raise FisherlabError("distillation needs epochs >= 1 and batch_size >= 1")
        for name in ("lr", "temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise FisherlabError(f"--{name} must be finite and > 0, got {value}")

    def key(self, target_digest: str) -> str:
        """A 12-hex-digit hash of the config and the target's content."""
        d = {**asdict(self), "target": target_digest}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float):
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, averaged over the batch."""
    t = temperature
    return (
        F.kl_div(
            F.log_softmax(student / t, dim=1),
            F.log_softmax(teacher / t, dim=1),
            log_target=True,
            reduction="batchmean",
        )
        * t
        * t
    )


def _check_fits(arch: str, spec: InputSpec, n_classes: int) -> None:
    """Refuse an architecture that cannot take the target's input, before any work."""
    try:
        model = build_model(arch, n_classes, spec.channels, spec.size)
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, spec.channels, spec.size, spec.size))
    except Exception as exc:  # noqa: BLE001 - the architecture decides what fits
        message = " ".join(str(exc).split())[:160]
        raise FisherlabError(
            f"surrogate architecture {arch} does not take the target's "
            f"{spec.channels}x{spec.size}x{spec.size} input ({message}); choose another --arch"
        ) from None
    if tuple(out.shape) != (2, n_classes):
        raise FisherlabError(f"surrogate architecture {arch} gives outputs {tuple(out.shape)}")


def distill(
    target: nn.Module | str | Path,
    config: DistillConfig,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    trust_pickle: bool = False,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Distil a surrogate of ``config.arch`` from ``target`` on the public data.

    Args:
        target: The target model or its checkpoint (not modified).
        config: The distillation.
        out: Save the surrogate here (a finished file of the same config and
            target is loaded instead of training again).
        progress: Show a progress bar.
        trust_pickle: Let the target path be a pickle or TorchScript archive.
        device: Where to train (``None``/``"auto"``: CUDA when available).

    Returns:
        The surrogate, in eval mode on the CPU.

    Raises:
        FisherlabError: For a target without an input spec, an architecture
            that does not take its input, or public data of another image shape.
    """
    chosen = resolve_device(device)
    if isinstance(target, nn.Module):
        teacher, digest = copy.deepcopy(target), None  # the caller's model keeps its mode
    else:
        teacher = load_model(target, trust_pickle=trust_pickle)
        digest = checkpoint_digest(target)
    meta = model_meta(teacher)
    spec = meta.input_spec
    if spec is None:
        raise FisherlabError(
            "the target records no input spec (how pixels become its input): record it once "
            "with `fisherlab import`"
        )
    key = config.key(digest or "in-memory")
    if out is not None and digest is not None and Path(out).is_file():
        saved = load_model(out)
        if (model_meta(saved).train_config or {}).get("key") == key:
            return saved.eval()  # made (and checked) before: no data or teacher pass needed
    public = load_dataset(config.public, input_spec=spec)
    x, _ = public.train.tensors()
    teacher.eval()
    logits = _logits(teacher, x)
    n_classes = int(logits.shape[1])
    _check_fits(config.arch, spec, n_classes)
    torch.manual_seed(config.seed)
    student = build_model(config.arch, n_classes, spec.channels, spec.size).to(chosen)
    opt = torch.optim.SGD(student.parameters(), lr=config.lr, momentum=0.9)
    gen = torch.Generator().manual_seed(config.seed)
    steps = math.ceil(len(x) / config.batch_size)
    bar = tqdm(
        total=config.epochs * steps,
        disable=None if progress else True,
        unit="batch",
        desc=f"distill {config.arch}",
    )
    for _ in range(config.epochs):
        student.train()
        order = torch.randperm(len(x), generator=gen)
        for step in range(steps):
            rows = order[step * config.batch_size : (step + 1) * config.batch_size]
            loss = distillation_loss(
                student(x[rows].to(chosen)), logits[rows].to(chosen), config.temperature
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if not math.isfinite(float(loss.detach())):
                raise FisherlabError(f"distilling {config.arch} diverged: lower --lr")
            bar.update(1)
    bar.close()
    student.eval().cpu()
    agreement = _agreement(teacher, student, public.test.tensors()[0])
    student.fisherlab_meta.class_names = meta.class_names
    student.fisherlab_meta.input_spec = spec
    student.fisherlab_meta.train_config = {**asdict(config), "key": key, "target": digest}
    student.fisherlab_meta.metrics = {"agreement": agreement}
    if out is not None:
        save_model(student, out)
    return student


def _logits(model: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """``model``'s outputs for the prepared inputs ``x``, in batches, on the CPU."""
    device = model_device(model)
    with torch.no_grad():
        return torch.cat(
            [model(x[i : i + batch].to(device)).cpu() for i in range(0, len(x), batch)]
        )


def _agreement(teacher: nn.Module, student: nn.Module, x: torch.Tensor) -> float | None:
    """Share of images on which the student's top-1 class is the teacher's."""
    if not len(x):
        return None
    same = _logits(teacher, x).argmax(1) == _logits(student, x).argmax(1)
    return float(same.double().mean())
