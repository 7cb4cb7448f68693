"""Training the GAN priors of model-inversion attacks on public data.

Two kinds, as in the attacks' papers:

* ``gmi`` (Zhang et al., CVPR 2020): a generator and a critic trained on the
  public data alone, with either the WGAN-GP loss of GMI (``n_critic`` = 5,
  gradient penalty 10) or the non-saturating DCGAN loss with 1:1 updates,
  which gave clean MNIST digits in far fewer CPU minutes in our calibration
  (``../shared/REFERENCE.md`` section 7).
* ``kedmi`` (Chen et al., ICCV 2021): the discriminator has one logit per
  target class; on public images it learns the target's soft labels
  ``softmax(T(x))`` and "real" (``log Z = logsumexp(logits)``), on generated
  images "fake". The generator matches the discriminator's mean features on
  public data and lowers the entropy of the *discriminator's* class
  prediction ``softmax(D(G(z)))`` on its fakes, summed over the batch and
  weighted ``1e-4``, as in KEDMI's reference code (``k+1_gan.py``, its
  ``HLoss`` in ``utils.py``; see :func:`discriminator_entropy`). The target
  enters only the discriminator's loss, through its soft labels.
* ``plgmi`` (Yuan et al., AAAI 2023): a class-conditional generator and a
  projection discriminator trained with the hinge loss on the public images
  the target is most confident about, labelled with those classes
  (:mod:`fisherlab.attacks.pseudo_labels`, ``top_n`` per class). The
  generator's loss adds ``inversion_weight`` (PLG-MI's alpha, 0.2) times the
  target's max-margin loss (:func:`fisherlab.attacks.identity.max_margin`) on
  augmented fakes (:data:`fisherlab.attacks.augment.PLGMI_GAN_AUGMENT`) of
  uniformly drawn classes. Adam with betas (0, 0.9) and 5 discriminator steps
  per generator step, as in the authors' ``train_cgan.py``; they train 30,000
  generator steps on 64x64 faces, fisherlab's presets far fewer on digits.

A GAN checkpoint (``format = "fisherlab-gan"``) holds both networks, their
arguments, the optimiser states and the epoch, and loads with
``torch.load(weights_only=True)``; training resumes from it. Adam with
``lr = 2e-4`` and betas (0.5, 0.999) and batch 64 follow GMI.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.utils import save_image

from fisherlab._device import (
    AMP_DTYPES,
    autocast,
    check_amp,
    check_workers,
    device_key,
    device_name,
    grad_scaler,
    no_autocast,
    resolve_device,
)
from fisherlab._io import write_atomic, write_torch
from fisherlab._progress import tqdm
from fisherlab._version import __version__
from fisherlab.attacks.augment import PLGMI_GAN_AUGMENT, augment
from fisherlab.attacks.gan import (
    Z_DIM,
    ConditionalGenerator,
    Critic,
    Generator,
    KEDMIDiscriminator,
    ProjectionDiscriminator,
)
from fisherlab.attacks.identity import max_margin
from fisherlab.attacks.pseudo_labels import target_probabilities, top_n_pseudo_labels
from fisherlab.data.datasets import iterate_batches, load_dataset
from fisherlab.data.limits import MAX_CLASSES
from fisherlab.data.specs import InputSpec
from fisherlab.data.subsets import capped_rows
from fisherlab.errors import FisherlabError, preview
from fisherlab.models.checkpoint import checkpoint_digest, load_model, non_finite
from fisherlab.models.meta import model_meta

GAN_FORMAT = "fisherlab-gan"
KINDS = ("gmi", "kedmi", "plgmi")
CONDITIONAL_KINDS = ("plgmi",)
"""GAN kinds whose generator takes a class: ``G(z, y)``."""
LOSSES = ("dcgan", "wgan-gp")


@dataclass(frozen=True)
class GANConfig:
    """A GAN prior's training run; :meth:`key` identifies it for resuming.

    Attributes:
        data: Public dataset string, e.g. ``"mnist5k:5-9"``.
        kind: ``"gmi"``, ``"kedmi"`` or ``"plgmi"``.
        loss: For ``gmi``: ``"dcgan"`` or ``"wgan-gp"`` (``plgmi`` always
            uses the hinge loss).
        target: Target checkpoint (``kedmi`` and ``plgmi`` need it; it also
            fixes the image size and channels for ``gmi`` when given).
        epochs: Passes over the public data.
        batch_size: Mini-batch size.
        lr: Adam learning rate of both networks.
        n_critic: Discriminator steps per generator step (default 5 for
            WGAN-GP and ``plgmi``, 1 otherwise).
        gp_weight: Gradient-penalty weight (WGAN-GP).
        entropy_weight: Weight of the entropy term of the KEDMI generator, the
            entropy of the discriminator's class prediction on the fakes,
            summed over the batch (:func:`discriminator_entropy`); ``1e-4`` as
            in KEDMI's reference code.
        top_n: ``plgmi``: public images pseudo-labelled per target class.
        inversion_weight: ``plgmi``: weight of the target's max-margin loss
            in the generator's loss (PLG-MI's alpha).
        seed: Seed of initialisation, shuffling and latents.
        max_train_samples: Use only this many public images, a class-balanced
            subset (:func:`public_pixels`).
        device: Where to train (``None``/``"auto"``: CUDA when available);
            :func:`train_gan` records the device it used.
        amp: Mixed precision on CUDA, ``"bf16"`` or ``"fp16"`` (``None``: float32).

    ``device`` enters :meth:`key` only when it is not the CPU, and ``amp``
    only when set, so CPU keys are those of earlier fisherlab versions.
    """

    data: str
    kind: str = "gmi"
    loss: str = "dcgan"
    target: str | None = None
    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-4
    n_critic: int | None = None
    gp_weight: float = 10.0
    entropy_weight: float = 1e-4
    top_n: int = 200
    inversion_weight: float = 0.2
    seed: int = 0
    max_train_samples: int | None = None
    device: str | None = None
    amp: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FisherlabError(f"unknown GAN kind {self.kind!r}: expected one of {KINDS}")
        if self.loss not in LOSSES:
            raise FisherlabError(f"unknown GAN loss {self.loss!r}: expected one of {LOSSES}")
        if self.kind == "kedmi" and self.target is None:
            raise FisherlabError("a KEDMI GAN learns the target's soft labels: give --target")
        if self.kind == "plgmi" and self.target is None:
            raise FisherlabError(
                "a PLG-MI GAN learns from the target's pseudo-labels: give --target"
            )
        if self.top_n < 1:
            raise FisherlabError(f"--top-n must be >= 1, got {self.top_n}")
        if not (math.isfinite(self.inversion_weight) and self.inversion_weight >= 0):
            raise FisherlabError(
                f"--inversion-weight must be finite and >= 0, got {self.inversion_weight}"
            )
        if self.epochs < 1 or self.batch_size < 2:
            raise FisherlabError("epochs must be >= 1 and batch_size >= 2")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise FisherlabError(f"lr must be finite and > 0, got {self.lr}")
        if self.device is not None:
            device_name(self.device)  # a malformed name; whether it exists is train_gan's check
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise FisherlabError(f"unknown --amp {self.amp!r}: expected bf16 or fp16")

    @property
    def critic_steps(self) -> int:
        """Discriminator updates per generator update."""
        return self.n_critic or (5 if self.loss == "wgan-gp" or self.kind == "plgmi" else 1)

    def key(self) -> str:
        """A 12-hex-digit hash of the config (``epochs`` excluded, so runs extend).

        The ``target`` file enters by the digest of its content
        (:func:`~fisherlab.models.checkpoint.checkpoint_digest`), not of its bytes.
        """
        d = keyed(self)
        del d["epochs"]
        if self.target is not None and Path(self.target).is_file():
            d["target"] = checkpoint_digest(self.target)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def keyed(config: GANConfig) -> dict[str, Any]:
    """The config's fields as they enter keys.

    ``device`` enters (as its type) only off the CPU and ``amp`` only when
    set, so CPU keys are those of earlier fisherlab versions. ``entropy_weight``
    acts on KEDMI GANs only: a GMI key holds the weight's former default
    (``1e-2``) whatever it is set to, so GMI keys did not change when the
    default did, and a KEDMI key records that its entropy term is the
    discriminator's (it once was the target's), so a KEDMI
    checkpoint of the old loss is never resumed with the new one.
    """
    d = asdict(config)
    if config.kind == "kedmi":
        d["entropy_of"] = "discriminator"
    else:
        d["entropy_weight"] = 1e-2
    if config.kind != "plgmi":  # PLG-MI's settings: absent from other kinds' (older) keys
        del d["top_n"], d["inversion_weight"]
    del d["device"]
    if (kind := device_key(config.device)) is not None:
        d["device"] = kind
    if d["amp"] is None:
        del d["amp"]
    return d


@dataclass
class GANPrior:
    """A loaded GAN prior.

    Attributes:
        generator: ``z -> image in [0, 1]`` (eval mode), or ``(z, y) -> image``
            for a conditional kind (:class:`~fisherlab.attacks.gan.ConditionalGenerator`).
        discriminator: :class:`~fisherlab.attacks.gan.Critic`,
            :class:`~fisherlab.attacks.gan.KEDMIDiscriminator` or
            :class:`~fisherlab.attacks.gan.ProjectionDiscriminator` (eval mode).
        kind: ``"gmi"``, ``"kedmi"`` or ``"plgmi"``.
        image_spec: Channels and size of the generated images.
        epoch: Epochs trained.
        config: The training config.
    """

    generator: nn.Module
    discriminator: nn.Module
    kind: str
    image_spec: InputSpec
    epoch: int
    config: dict

    @property
    def conditional(self) -> bool:
        """Whether the generator takes a class, ``G(z, y)``."""
        return self.kind in CONDITIONAL_KINDS

    @property
    def num_classes(self) -> int | None:
        """Classes of a conditional generator (``None`` for an unconditional one)."""
        return getattr(self.generator, "num_classes", None)

    def prior_score(self, images: Tensor) -> Tensor:
        """The discriminator's realness score per image (higher = more real)."""
        d = self.discriminator
        return d.score(images) if isinstance(d, KEDMIDiscriminator) else d(images)


def _build(config: GANConfig, channels: int, size: int, num_classes: int | None):
    torch.manual_seed(config.seed)
    if config.kind == "plgmi":
        assert num_classes is not None
        return (
            ConditionalGenerator(num_classes, channels, size),
            ProjectionDiscriminator(num_classes, channels, size),
        )
    generator = Generator(channels, size)
    if config.kind == "kedmi":
        assert num_classes is not None
        return generator, KEDMIDiscriminator(num_classes, channels, size)
    return generator, Critic(channels, size)


def _gradient_penalty(
    critic: nn.Module, real: Tensor, fake: Tensor, gen: torch.Generator
) -> Tensor:
    """WGAN-GP's penalty, in float32 even under ``--amp`` (its double backward needs the range)."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, generator=gen).to(real.device)
    with no_autocast(real.device):
        mixed = (alpha * real.float() + (1 - alpha) * fake.float()).requires_grad_(True)
        (grads,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
        return (grads.flatten(1).norm(dim=1) - 1).square().mean()


def _cpu(obj: Any) -> Any:
    """``obj`` with every tensor on the CPU (saved files never depend on the device)."""
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def _payload(config, generator, discriminator, opt_g, opt_d, epoch, spec, num_classes) -> dict:
    return {
        "format": GAN_FORMAT,
        "format_version": 1,
        "kind": config.kind,
        "config": {**asdict(config), "key": config.key()},
        "image_spec": spec.to_dict(),
        "num_classes": num_classes,
        "epoch": epoch,
        "generator": _cpu(generator.state_dict()),
        "discriminator": _cpu(discriminator.state_dict()),
        "opt_g": _cpu(opt_g.state_dict()),
        "opt_d": _cpu(opt_d.state_dict()),
        "fisherlab_version": __version__,
    }


def load_gan(path: str | Path) -> GANPrior:
    """Load a GAN prior written by :func:`train_gan`.

    Raises:
        FisherlabError: For a missing, unreadable or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise FisherlabError(
            f"GAN checkpoint {path} does not exist; train one with fisherlab train-gan"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means a bad file
        raise FisherlabError(
            f"{path} is not a readable GAN checkpoint ({type(exc).__name__}); expected a "
            "file written by fisherlab train-gan"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != GAN_FORMAT:
        raise FisherlabError(
            f"{path} is not a fisherlab GAN checkpoint ('format': {GAN_FORMAT!r} missing); "
            "a classifier checkpoint goes to --target or --eval-model"
        )
    try:
        spec = InputSpec.from_dict(obj["image_spec"])
        config = GANConfig(**{k: v for k, v in obj["config"].items() if k != "key"})
        num_classes, epoch = obj["num_classes"], int(obj["epoch"])
        states = {"generator": obj["generator"], "discriminator": obj["discriminator"]}
        if not all(isinstance(state, dict) for state in states.values()):
            raise TypeError("the network states are not dicts")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FisherlabError(
            f"{path} is a damaged GAN checkpoint ({type(exc).__name__}: {exc}); train it "
            "again with fisherlab train-gan"
        ) from None
    if (num_classes is not None or config.kind != "gmi") and (
        not isinstance(num_classes, int) or not 1 <= num_classes <= MAX_CLASSES
    ):
        raise FisherlabError(
            f"{path} declares {num_classes!r} classes; expected 1..{MAX_CLASSES}: the file is "
            "damaged"
        )
    bad = [f"{net}.{k}" for net, state in states.items() for k in non_finite(state)]
    if bad:
        raise FisherlabError(
            f"{path} holds non-finite values (NaN or inf) in {preview(bad)}: the GAN training "
            "diverged; train it again with a lower --lr"
        )
    with torch.device("meta"):  # shapes first, at no memory cost
        built = _build(config, spec.channels, spec.size, num_classes)
    skeletons = dict(zip(states, built, strict=True))
    for net, skeleton in skeletons.items():
        own, saved = skeleton.state_dict(), states[net]
        wrong = [
            k
            for k in set(own) | set(saved)
            if k not in own
            or k not in saved
            or tuple(getattr(saved[k], "shape", ())) != tuple(own[k].shape)
        ]
        if wrong:
            raise FisherlabError(
                f"{path}: the {net} state does not match its config ({preview(sorted(wrong))}); "
                "the file is damaged or was edited by hand"
            )
    generator, discriminator = _build(config, spec.channels, spec.size, num_classes)
    generator.load_state_dict(states["generator"])
    discriminator.load_state_dict(states["discriminator"])
    return GANPrior(generator.eval(), discriminator.eval(), obj["kind"], spec, epoch, obj["config"])


def save_samples(prior_or_generator: GANPrior | nn.Module, path: str | Path, n: int = 64) -> Path:
    """Write a grid of ``n`` samples (fixed latents, seed 0) as a PNG, atomically.

    A conditional generator's samples cycle through its classes, one class per row.
    """
    generator = getattr(prior_or_generator, "generator", prior_or_generator)
    was_training = generator.training
    generator.eval()
    nrow = math.ceil(math.sqrt(n))
    with torch.no_grad():
        z = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(0))
        if isinstance(generator, ConditionalGenerator):
            y = (torch.arange(n) // nrow) % generator.num_classes
            images = generator(z, y)
        else:
            images = generator(z)
    generator.train(was_training)
    return write_atomic(path, lambda p: save_image(images, p, nrow=nrow, format="png"))


def _other_run(out: Path, saved: dict, config: GANConfig) -> str:
    """Why the GAN checkpoint ``out`` cannot be resumed with ``config``."""
    fields = {k: v for k, v in saved.get("config", {}).items() if k != "key"}
    with contextlib.suppress(TypeError, FisherlabError):
        if GANConfig(**{**fields, "device": config.device}).key() == config.key():
            was = fields.get("device") or "cpu"
            return (
                f"{out} was trained on {was}, and a GPU result is not bitwise a CPU one: "
                f"resume it with --device {was}, or choose another --out"
            )
    return f"{out} holds a different GAN run; choose another --out or delete it"


def public_pixels(config: GANConfig, spec: InputSpec, workers: int = 0) -> tuple[Tensor, Tensor]:
    """The public training images in pixel space [0, 1], and their labels.

    With ``config.max_train_samples`` only a class-balanced subset of that
    size (:func:`fisherlab.data.stratified_indices`, seeded by
    ``config.seed``) is read, so a cap keeps every public class.

    Args:
        config: The run (its ``data``, ``max_train_samples`` and ``seed``).
        spec: Channels and size of the images.
        workers: Processes that read image folders (0: this one).
    """
    public = load_dataset(config.data, input_spec=InputSpec(spec.channels, spec.size, None, None))
    rows = capped_rows(public.train, config.max_train_samples, config.seed)
    if rows is None:
        return public.train.tensors(workers=workers)
    batches = list(iterate_batches(public.train, rows, 256, workers=workers))
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def train_gan(
    config: GANConfig,
    out: str | Path,
    progress: bool = True,
    *,
    trust_pickle: bool = False,
    workers: int = 0,
) -> GANPrior:
    """Train (or resume) a GAN prior and save it after every epoch.

    If ``out`` holds a checkpoint of the same config (same :meth:`GANConfig.key`),
    training continues from its epoch; a finished run returns at once. A grid of
    samples is written to ``<out stem>.samples.png``. The networks train on
    ``config.device``; latents and shuffles are drawn on the CPU with the
    seeded generator and then moved, so every device sees the same numbers,
    and the checkpoint holds CPU tensors.

    Args:
        config: The run.
        out: Checkpoint path.
        progress: Show a progress bar.
        trust_pickle: Let ``config.target`` be a pickled module or a TorchScript
            archive (both run code from the file; see
            :func:`~fisherlab.models.checkpoint.load_model`).
        workers: Processes that read image folders (0: this one).

    Returns:
        The trained prior (on the CPU).

    Raises:
        FisherlabError: For bad data, a bad target, a device this machine
            lacks, ``amp`` off CUDA, or a checkpoint of another config.
    """
    device = resolve_device(config.device)
    check_amp(config.amp, device)
    check_workers(workers)
    config = replace(config, device=str(device))
    amp = config.amp
    out = Path(out)
    target = None
    spec: InputSpec | None = None
    if config.target is not None:
        target = load_model(config.target, trust_pickle=trust_pickle)
        spec = model_meta(target).input_spec
        for p in target.parameters():  # (requires_grad_ on a ScriptModule fails)
            p.requires_grad_(False)
        target.to(device)
    splits = load_dataset(config.data, input_spec=spec)
    spec = splits.input_spec
    pixels = public_pixels(config, spec, workers)[0]
    num_classes = None
    if target is not None:
        target.eval()
        with torch.no_grad():
            num_classes = int(target(spec.normalize(pixels[:2].to(device))).shape[1])
    pseudo = torch.zeros(len(pixels), dtype=torch.int64)  # labels of the real images (plgmi)
    if config.kind == "plgmi":
        rows, pseudo = top_n_pseudo_labels(target_probabilities(target, spec, pixels), config.top_n)
        pixels = pixels[rows]
    generator, discriminator = _build(config, spec.channels, spec.size, num_classes)
    generator.to(device)
    discriminator.to(device)
    betas = (0.5, 0.999) if config.loss == "dcgan" or config.kind == "kedmi" else (0.5, 0.9)
    if config.kind == "plgmi":
        betas = (0.0, 0.9)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=betas)
    scaler = grad_scaler(amp, device)
    start_epoch = 0
    if out.is_file():
        saved = torch.load(out, map_location="cpu", weights_only=True)
        if saved.get("format") != GAN_FORMAT or saved["config"].get("key") != config.key():
            raise FisherlabError(_other_run(out, saved, config))
        generator.load_state_dict(saved["generator"])
        discriminator.load_state_dict(saved["discriminator"])
        opt_g.load_state_dict(saved["opt_g"])
        opt_d.load_state_dict(saved["opt_d"])
        start_epoch = int(saved["epoch"])
    gen = torch.Generator().manual_seed(config.seed * 7919 + start_epoch)
    n = pixels.shape[0]
    steps = n // config.batch_size
    if steps == 0:
        what = (
            f"--top-n {config.top_n} x {num_classes} classes gives"
            if config.kind == "plgmi"
            else "there are"
        )
        raise FisherlabError(
            f"{what} {n} training images, fewer than --batch-size {config.batch_size}: no "
            "step would train; lower --batch-size or use more images"
        )
    bar = tqdm(
        total=(config.epochs - start_epoch) * steps,
        disable=None if progress else True,
        unit="batch",
        desc=f"train-gan {config.kind}" + ("" if config.kind == "plgmi" else f"/{config.loss}"),
    )
    for epoch in range(start_epoch + 1, config.epochs + 1):
        generator.train()
        discriminator.train()
        order = torch.randperm(n, generator=gen)
        for step in range(steps):
            batch = order[step * config.batch_size : (step + 1) * config.batch_size]
            real = pixels[batch].to(device, non_blocking=True)
            z = torch.randn(real.shape[0], Z_DIM, generator=gen).to(device)
            with autocast(amp, device):
                if config.kind == "plgmi":
                    real_labels = pseudo[batch].to(device)
                    d_loss = _plgmi_discriminator_loss(
                        discriminator, generator, real, real_labels, z, gen
                    )
                else:
                    fake = generator(z)
                    d_loss = _discriminator_loss(
                        config, discriminator, target, spec, real, fake, gen
                    )
            opt_d.zero_grad(set_to_none=True)
            scaler.scale(d_loss).backward()
            scaler.step(opt_d)
            if step % config.critic_steps == 0:
                with autocast(amp, device):
                    if config.kind == "plgmi":
                        g_loss = _plgmi_generator_loss(
                            config, discriminator, generator, target, spec, real, gen
                        )
                    else:
                        g_loss = _generator_loss(config, discriminator, real, generator, gen)
                opt_g.zero_grad(set_to_none=True)
                scaler.scale(g_loss).backward()
                scaler.step(opt_g)
            scaler.update()
            losses = torch.stack([d_loss.detach().float(), g_loss.detach().float()]).cpu()
            if not bool(torch.isfinite(losses).all()):  # one synchronisation per step
                raise FisherlabError(
                    f"GAN training diverged at epoch {epoch}, step {step}: lower --lr"
                )
            bar.update(1)
            bar.set_postfix(epoch=epoch, d=f"{losses[0]:.3f}", g=f"{losses[1]:.3f}")
        payload = _payload(config, generator, discriminator, opt_g, opt_d, epoch, spec, num_classes)
        bad = non_finite(payload["generator"]) + non_finite(payload["discriminator"])
        if bad:
            raise FisherlabError(
                f"GAN training diverged at epoch {epoch}: non-finite values in {preview(bad)}; "
                f"lower --lr (now {config.lr})"
            )
        write_torch(out, payload)
    bar.close()
    prior = load_gan(out)
    save_samples(prior, out.with_suffix("").with_name(out.stem + ".samples.png"))
    return prior


def _discriminator_loss(config, disc, target, spec, real, fake, gen) -> Tensor:
    fake = fake.detach()
    if config.kind == "kedmi":
        logits_real, _ = disc(real)
        logits_fake, _ = disc(fake)
        with torch.no_grad():
            soft = torch.softmax(target(spec.normalize(real)), dim=1)
        supervised = -(soft * torch.log_softmax(logits_real, dim=1)).sum(1).mean()
        lse_real = KEDMIDiscriminator.real_logit(logits_real)
        lse_fake = KEDMIDiscriminator.real_logit(logits_fake)
        unsupervised = F.softplus(-lse_real).mean() + F.softplus(lse_fake).mean()
        return supervised + unsupervised
    if config.loss == "wgan-gp":
        penalty = _gradient_penalty(disc, real, fake, gen)
        return disc(fake).mean() - disc(real).mean() + config.gp_weight * penalty
    return F.softplus(-disc(real)).mean() + F.softplus(disc(fake)).mean()


def discriminator_entropy(logits: Tensor) -> Tensor:
    """Entropy of the discriminator's class prediction, summed over the batch.

    For class logits ``l_i`` of fake image ``i``, with ``p_i = softmax(l_i)``
    over the classes,

        H = - sum_i sum_c p_ic log p_ic,

    a sum (not a mean) over the batch, as KEDMI's ``HLoss`` (reference code,
    ``utils.py``) computes it on the discriminator's logits of the fakes. The
    KEDMI generator adds ``entropy_weight * H`` to its loss, so it pushes the
    fakes towards confident classes of the discriminator.

    Args:
        logits: Class logits ``(N, K)`` of the discriminator.

    Returns:
        The scalar ``H``.
    """
    return -(torch.softmax(logits, dim=1) * torch.log_softmax(logits, dim=1)).sum()


def _generator_loss(config, disc, real, generator, gen) -> Tensor:
    z = torch.randn(real.shape[0], Z_DIM, generator=gen).to(real)  # real's device and dtype
    fake = generator(z)
    if config.kind == "kedmi":
        # KEDMI's k+1_gan.py: feature matching (mean absolute difference of the
        # mean features) plus 1e-4 * HLoss of D's class logits on the fakes; the
        # target does not enter the generator's loss. KEDMI matches against a
        # separate unlabelled batch; here the same real batch serves both.
        logits_fake, feat_fake = disc(fake)
        with torch.no_grad():
            _, feat_real = disc(real)
        matching = (feat_real.mean(0) - feat_fake.mean(0)).abs().mean()
        return matching + config.entropy_weight * discriminator_entropy(logits_fake)
    if config.loss == "wgan-gp":
        return -disc(fake).mean()
    return F.softplus(-disc(fake)).mean()


def _plgmi_discriminator_loss(disc, generator, real, real_labels, z, gen) -> Tensor:
    """The hinge loss on pseudo-labelled real images and fakes of uniformly drawn classes."""
    fake_labels = torch.randint(disc.num_classes, (len(z),), generator=gen).to(z.device)
    with torch.no_grad():
        fake = generator(z, fake_labels)
    return F.relu(1 - disc(real, real_labels)).mean() + F.relu(1 + disc(fake, fake_labels)).mean()


def _plgmi_generator_loss(config, disc, generator, target, spec, real, gen) -> Tensor:
    """``-mean D(G(z, y), y) + alpha * mean max-margin(T(aug(G(z, y))), y)`` on fresh ``z, y``."""
    n = real.shape[0]
    z = torch.randn(n, Z_DIM, generator=gen).to(real)
    labels = torch.randint(disc.num_classes, (n,), generator=gen).to(real.device)
    fake = generator(z, labels)
    adversarial = -disc(fake, labels).mean()
    views = augment(fake, PLGMI_GAN_AUGMENT, gen)
    inversion = max_margin(target(spec.normalize(views)), labels).mean()
    return adversarial + config.inversion_weight * inversion
