r"""Training-time defenses against model inversion: one registry, :data:`DEFENSES`.

A defense changes what :func:`fisherlab.train` minimises and, for MID, the
model's head. The choices of ``TrainConfig.defense`` (``--defense``):

========  ====================================================================
``none``  plain cross-entropy ``CE = -log softmax(f(x))_y`` (the default)
``mid``   MID (Wang et al., AAAI 2021): a variational information bottleneck
          head, ``CE + beta * KL(N(mu, sigma^2) || N(0, I))``
``bido``  BiDO-HSIC (Peng et al., KDD 2022): ``CE + a1 sum_l nHSIC(X, Z_l)
          - a2 sum_l nHSIC(Z_l, Y)`` over the hidden layers' outputs ``Z_l``
``ls``    label smoothing (Struppek et al., ICLR 2024): cross-entropy with the
          soft targets ``(1 - alpha) onehot(y) + alpha / K``; a negative
          ``alpha`` is their defense, scheduled as theirs (0 for half the run)
========  ====================================================================

Each defense is a small :class:`Defense` subclass, used in three steps:

1. construction checks its strengths (:class:`Strength`) and names the
   allowed range in a :class:`~fisherlab.errors.FisherlabError`;
2. :meth:`Defense.prepare` changes the model before its layer map is taken
   (MID puts a :class:`~fisherlab.models.heads.VIBHead` in place of the ``Linear`` head; it remains
   the last layer, and the head is always trained);
3. inside :meth:`Defense.watching`, which adds and removes the forward hooks
   it needs, :meth:`Defense.loss` maps ``(model, x, logits, y)`` to the
   training loss and its named parts (batch means, averaged per epoch into
   ``history.csv``).

The strengths are fields of :class:`fisherlab.TrainConfig` and CLI flags
(``beta``, ``hsic_a1``, ``hsic_a2``, ``smoothing``); ``None`` means the
defense's default, and setting one for another defense is an error
(:func:`resolve_strengths`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fisherlab.errors import FisherlabError
from fisherlab.models.heads import VIBHead, install_head, vib_statistics
from fisherlab.models.layers import Layer, layers


# --------------------------------------------------------------------------- strengths
@dataclass(frozen=True)
class Strength:
    """One strength of a defense: its default and allowed range ``[low, high)``.

    Attributes:
        default: Value used when none is given.
        low: Smallest allowed value.
        high: Values must be below this (``None``: no upper bound).
        meaning: What it weighs, for help texts and errors.
    """

    default: float
    low: float
    high: float | None = None
    meaning: str = ""

    @property
    def allowed(self) -> str:
        """The range in words, e.g. ``">= 0"`` or ``"in [-1, 1)"``."""
        return f">= {self.low:g}" if self.high is None else f"in [{self.low:g}, {self.high:g})"

    def check(self, field: str, value: float) -> float:
        """Return ``value`` as a float, or raise naming the allowed range."""
        value = float(value)
        ok = math.isfinite(value) and value >= self.low
        if ok and self.high is not None:
            ok = value < self.high
        if not ok:
            raise FisherlabError(
                f"{flag(field)} ({self.meaning}) must be {self.allowed}, got {value:g}"
            )
        return value


def flag(field: str) -> str:
    """The CLI flag of a config field, e.g. ``hsic_a1`` -> ``--hsic-a1``."""
    return "--" + field.replace("_", "-")


# --------------------------------------------------------------------------- base
class Defense:
    """No defense: the cross-entropy loss. The base class of every defense.

    Subclasses set :attr:`name` and :attr:`strengths` and override what they
    need of :meth:`prepare`, :meth:`watching` and :meth:`loss`.

    Args:
        **values: A value per strength; missing or ``None`` ones take the default.

    Raises:
        FisherlabError: For a value out of its range, or a strength the
            defense does not have.
    """

    name: ClassVar[str] = "none"
    strengths: ClassVar[dict[str, Strength]] = {}

    def __init__(self, **values: float | None) -> None:
        stray = [k for k, v in values.items() if v is not None and k not in self.strengths]
        if stray:
            owner = next((d.name for d in DEFENSES.values() if stray[0] in d.strengths), None)
            if owner is None:
                raise FisherlabError(
                    f"unknown defense strength {stray[0]!r}: expected one of "
                    f"{', '.join(STRENGTH_FIELDS)}"
                )
            raise FisherlabError(
                f"{flag(stray[0])} is a strength of --defense {owner}, but the defense is "
                f"{self.name!r}: drop it or choose --defense {owner}"
            )
        for field, strength in self.strengths.items():
            value = values.get(field)
            setattr(
                self, field, strength.check(field, strength.default if value is None else value)
            )

    def settings(self) -> dict[str, float]:
        """The strengths in effect, e.g. ``{"beta": 0.003}``."""
        return {field: getattr(self, field) for field in self.strengths}

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Set any strength that follows a schedule for an epoch (default: nothing).

        :func:`fisherlab.train` calls it before each epoch.

        Args:
            epoch: The epoch about to run, counted from 0.
            epochs: Epochs of the whole run.
        """

    def behaviour(self) -> dict[str, str]:
        """Tags of behaviour that changed after configs were first keyed (default: none).

        They enter :meth:`fisherlab.TrainConfig.key`, so that a result cached
        before the change is not mistaken for one of the new behaviour.
        """
        return {}

    def prepare(self, model: nn.Module, seed: int | None = None) -> None:
        """Change the model before its layer map is taken (default: nothing).

        Args:
            model: The model to train, changed in place.
            seed: Seed for any new parameters.
        """

    @contextmanager
    def watching(self, model: nn.Module, trainable: Sequence[int]) -> Iterator[None]:
        """Observe ``model``'s forward passes for :meth:`loss` while inside (default: nothing).

        Args:
            model: The prepared model.
            trainable: Indices (in its layer map) of the layers being trained.
        """
        yield

    def loss(
        self, model: nn.Module, x: Tensor, logits: Tensor, y: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The training loss of a batch and its named parts.

        Args:
            model: The model, whose forward pass on ``x`` gave ``logits``.
            x: The input batch.
            logits: ``(N, K)`` outputs.
            y: ``(N,)`` labels.

        Returns:
            ``(loss, parts)``: the scalar to minimise and detached scalars
            (batch means) of its terms, e.g. ``{"ce": ..., "kl": ...}``.
        """
        return F.cross_entropy(logits, y), {}


# --------------------------------------------------------------------------- MID
def kl_to_standard_normal(mu: Tensor, sigma: Tensor) -> Tensor:
    r"""Batch mean of the KL divergence of ``N(mu, diag sigma^2)`` from ``N(0, I)``.

    Per sample, :math:`\mathrm{KL}(\mathcal N(\mu, \operatorname{diag}\sigma^2)
    \,\|\, \mathcal N(0, I)) = \frac12 \sum_j (\mu_j^2 + \sigma_j^2 - 2 \log
    \sigma_j - 1)`, in closed form.

    Args:
        mu: ``(N, k)`` means.
        sigma: ``(N, k)`` standard deviations (> 0).

    Returns:
        A scalar.

    Example:
        >>> kl_to_standard_normal(torch.zeros(3, 2), torch.ones(3, 2)).item()
        0.0
    """
    return 0.5 * (mu.square() + sigma.square() - 2 * sigma.log() - 1).sum(-1).mean()


class MID(Defense):
    r"""MID: mutual information regularisation by a VIB head (Wang et al., AAAI 2021).

    "Improving robustness to model inversion attacks via mutual information
    regularization". :meth:`prepare` replaces the head ``Linear(d, K)`` by a
    :class:`VIBHead` with bottleneck ``k`` and the loss is

    .. math::

        \mathrm{CE}(\mathrm{decoder}(z), y) + \beta \, \frac1N \sum_i
        \mathrm{KL}\big(\mathcal N(\mu_i, \operatorname{diag}\sigma_i^2)
        \,\|\, \mathcal N(0, I)\big),

    the variational information bottleneck (Alemi et al., ICLR 2017), whose KL
    term bounds the mutual information between the features and ``z``.
    Defaults as in MID's code: ``k = d // 2`` and ``beta = 0.003`` (their
    VGG16 target on CelebA). The loss parts are ``ce`` and ``kl``.

    Args:
        beta: Weight of the KL term, >= 0.
        bottleneck: ``k``; ``None``: ``d // 2`` (at least 1).

    Example:
        >>> from fisherlab.models import build_model
        >>> model = build_model("target_cnn", num_classes=5)
        >>> MID(beta=0.01).prepare(model, seed=0)
        >>> type(model.head).__name__, model.head.bottleneck
        ('VIBHead', 128)
    """

    name = "mid"
    strengths: ClassVar[dict[str, Strength]] = {
        "beta": Strength(0.003, 0.0, meaning="MID's weight of the KL term")
    }
    beta: float

    def __init__(self, beta: float | None = None, bottleneck: int | None = None, **others):
        super().__init__(beta=beta, **others)
        if bottleneck is not None and bottleneck < 1:
            raise FisherlabError(f"the MID bottleneck must be >= 1, got {bottleneck}")
        self.bottleneck = bottleneck
        self._stats: Tensor | None = None
        self._k = 0

    def prepare(self, model: nn.Module, seed: int | None = None) -> None:
        """Put a :class:`VIBHead` in place of the model's ``Linear`` head (kept if already one)."""
        last = layers(model)[-1]
        if last.kind == "vib_head":
            return
        if last.kind != "linear":
            raise FisherlabError(
                f"--defense mid puts a VIB head in place of the model's Linear head, but its "
                f"last layer {last.name!r} is a {last.kind}: use a model whose last layer is "
                "an nn.Linear on a feature vector, or another defense"
            )
        d = dict(model.named_modules())[last.name].in_features
        k = self.bottleneck or max(1, d // 2)
        try:
            install_head(model, {"kind": "vib", "bottleneck": k}, seed=seed)
        except FisherlabError as exc:
            raise FisherlabError(f"--defense mid: {exc}") from None

    @contextmanager
    def watching(self, model: nn.Module, trainable: Sequence[int]) -> Iterator[None]:
        """Keep the head encoder's output of each forward pass with gradients."""
        head = dict(model.named_modules())[layers(model)[-1].name]
        if not isinstance(head, VIBHead):
            raise FisherlabError("--defense mid: the model has no VIB head; call prepare first")

        def keep(module: nn.Module, inputs: Any, output: Tensor) -> None:
            if torch.is_grad_enabled():
                self._stats = output

        self._k = head.bottleneck
        handle = head.encoder.register_forward_hook(keep)
        try:
            yield
        finally:
            handle.remove()
            self._stats = None

    def loss(
        self, model: nn.Module, x: Tensor, logits: Tensor, y: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``CE + beta * KL`` with the statistics of the last forward pass."""
        if self._stats is None:
            raise RuntimeError("MID.loss needs a forward pass inside MID.watching")
        mu, sigma = vib_statistics(self._stats.to(logits.dtype), self._k)  # float32 under amp
        self._stats = None
        ce, kl = F.cross_entropy(logits, y), kl_to_standard_normal(mu, sigma)
        return ce + self.beta * kl, {"ce": ce.detach(), "kl": kl.detach()}


# --------------------------------------------------------------------------- BiDO
def gaussian_gram(a: Tensor, sigma: float) -> Tensor:
    r"""BiDO's Gaussian kernel matrix :math:`K_{ij} = \exp(-\|a_i - a_j\|^2 / (2 \sigma^2 d))`.

    The bandwidth grows with the feature dimension ``d`` (BiDO's rule, from
    the HSIC bottleneck of Ma et al., AAAI 2020).

    Args:
        a: ``(n, d)`` samples (flattened).
        sigma: Bandwidth per dimension.

    Returns:
        ``(n, n)`` kernel matrix.
    """
    sq = a.square().sum(1)
    d2 = (sq.view(-1, 1) + sq.view(1, -1) - 2 * a @ a.T).clamp_min(0)
    return torch.exp(-d2 / (2 * sigma**2 * a.shape[1]))


def _centre(k: Tensor) -> Tensor:
    """``H K H`` with ``H = I - 11^T / n``."""
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


def hsic(x: Tensor, y: Tensor, sigma_x: float = 5.0, sigma_y: float = 5.0) -> Tensor:
    r"""The biased HSIC estimator (Gretton et al., ALT 2005) with Gaussian kernels.

    .. math::

        \mathrm{HSIC}(X, Y) = \frac{\operatorname{tr}(K H L H)}{(n - 1)^2},
        \qquad H = I - \tfrac1n \mathbf 1 \mathbf 1^\top,

    with ``K = gaussian_gram(x, sigma_x)`` and ``L = gaussian_gram(y, sigma_y)``
    (:func:`gaussian_gram`). It is >= 0 and 0 for independent samples in the
    limit. :class:`BiDO` uses the normalised form :func:`normalized_hsic`.

    Args:
        x: ``(n, ...)`` samples, flattened per sample.
        y: ``(n, ...)`` paired samples.
        sigma_x: Bandwidth of ``x``.
        sigma_y: Bandwidth of ``y``.

    Returns:
        A scalar.

    Raises:
        FisherlabError: For fewer than 2 samples or unpaired inputs.

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(2, 16, 3, dtype=torch.float64, generator=gen)
        >>> bool(hsic(x, x, 1.0, 1.0) > hsic(x, y, 1.0, 1.0))
        True
    """
    n = len(x)
    if n < 2 or len(y) != n:
        raise FisherlabError(f"hsic needs >= 2 paired samples, got {len(x)} and {len(y)}")
    k, l_ = gaussian_gram(x.flatten(1), sigma_x), gaussian_gram(y.flatten(1), sigma_y)
    return (_centre(k) * l_).sum() / (n - 1) ** 2


def _resolvent(k: Tensor, eps: float) -> Tensor:
    """``R = K~ (K~ + eps n I)^-1`` with ``K~ = H K H`` (the two commute)."""
    kc = _centre(k)
    n = len(k)
    return torch.linalg.solve(kc + eps * n * torch.eye(n, dtype=k.dtype, device=k.device), kc)


def normalized_hsic(
    x: Tensor, y: Tensor, sigma_x: float = 5.0, sigma_y: float = 5.0, eps: float = 1e-5
) -> Tensor:
    r"""The normalised HSIC of BiDO, :math:`\operatorname{tr}(R_X R_Y)`.

    .. math::

        R_X = \tilde K (\tilde K + \epsilon n I)^{-1}, \quad \tilde K = H K H,

    and likewise :math:`R_Y` from :math:`L`: an estimator of the normalised
    cross-covariance operator (Fukumizu et al., NIPS 2007), which BiDO's code
    uses as its "HSIC" measure. It lies in ``[0, n - 1]`` and is nearly
    invariant to the kernels' scale, unlike :func:`hsic`. (BiDO's code centres
    on one side only, ``K H``; fisherlab uses the symmetric ``H K H``.)

    Args:
        x: ``(n, ...)`` samples, flattened per sample.
        y: ``(n, ...)`` paired samples.
        sigma_x: Bandwidth of ``x`` (see :func:`gaussian_gram`).
        sigma_y: Bandwidth of ``y``.
        eps: Regularisation ``epsilon``.

    Returns:
        A scalar.

    Example:
        >>> x = 3 * torch.arange(16, dtype=torch.float64).view(16, 1)  # far apart
        >>> round(normalized_hsic(x, x, 1.0, 1.0).item())  # the rank of H K H
        15
    """
    rx = _resolvent(gaussian_gram(x.flatten(1), sigma_x), eps)
    ry = _resolvent(gaussian_gram(y.flatten(1), sigma_y), eps)
    return (rx * ry.T).sum()


def _output_module(layer: Layer, by_name: Mapping[str, nn.Module]) -> str:
    """The layer's last module (e.g. the BatchNorm of a ``conv_bn``)."""
    return [m for m in layer.modules if m in by_name][-1]


class BiDO(Defense):
    r"""BiDO-HSIC: bilateral dependency optimisation (Peng et al., KDD 2022).

    "Bilateral dependency optimization: defending against model-inversion
    attacks". The loss is

    .. math::

        \mathrm{CE} + a_1 \sum_l \mathrm{nHSIC}(X, Z_l)
        - a_2 \sum_l \mathrm{nHSIC}(Z_l, Y):

    each hidden representation should depend little on the input and much on
    the label. Here

    * ``X`` is the input batch and ``Y`` the one-hot labels;
    * ``Z_l`` is the output of hidden layer ``l`` of the layer map (every layer
      but the head), taken at the layer's last module (the BatchNorm of a
      ``conv_bn``, before any functional activation), flattened. Only outputs
      that depend on trained parameters count, since the others give no
      gradient: with a freeze boundary ``b`` the layers ``b .. n-2``, with
      ``train_layers`` every layer from the first trained one on;
    * nHSIC is BiDO's normalised HSIC (:func:`normalized_hsic`) with
      Gaussian kernels of bandwidth ``sigma = 5`` per dimension
      (:func:`gaussian_gram`, BiDO's values). On one-hot labels the Gaussian
      kernel is an affine function of the same-class indicator, so after
      centring it equals BiDO's default linear label kernel up to scale.

    The plain :func:`hsic` is not used: with this bandwidth it is of order
    1e-5 on MNIST features of ``target_cnn``, so BiDO's weights would leave it
    no effect (nHSIC is near 55 of at most 63 for ``X`` and 4 for ``Y`` there).
    Defaults ``a1 = 0.05, a2 = 0.5`` are BiDO's published setting for GMI and
    KED-MI on CelebA (their code lists ``(1, 50)`` for MNIST with the COCO
    measure and ``(0.1, 2)`` for VMI). The loss parts are ``ce``,
    ``hsic_xz`` and ``hsic_yz`` (the two sums).

    Args:
        hsic_a1: Weight ``a1`` of the input dependence, >= 0.
        hsic_a2: Weight ``a2`` of the label dependence, >= 0.
    """

    name = "bido"
    strengths: ClassVar[dict[str, Strength]] = {
        "hsic_a1": Strength(0.05, 0.0, meaning="BiDO's weight of sum_l nHSIC(X, Z_l)"),
        "hsic_a2": Strength(0.5, 0.0, meaning="BiDO's weight of sum_l nHSIC(Z_l, Y)"),
    }
    sigma: ClassVar[float] = 5.0
    hsic_a1: float
    hsic_a2: float

    def __init__(self, **values: float | None) -> None:
        super().__init__(**values)
        self._outputs: list[Tensor] = []

    @contextmanager
    def watching(self, model: nn.Module, trainable: Sequence[int]) -> Iterator[None]:
        """Keep the hidden layers' outputs of the last forward pass with gradients.

        Raises:
            FisherlabError: If the model has no hidden layer or only its head is trained.
        """
        all_layers = layers(model)
        head = len(all_layers) - 1
        if head == 0 or not any(i < head for i in trainable):
            raise FisherlabError(
                "--defense bido regularises the outputs of trained hidden layers, but "
                + ("the model has only its head" if head == 0 else "only the head is trained")
                + ": train more layers (lower --freeze-boundary), or use --defense mid or ls"
            )
        by_name = dict(model.named_modules())

        def keep(module: nn.Module, inputs: Any, output: Any) -> None:
            if torch.is_grad_enabled():
                self._outputs.append(output[0] if isinstance(output, tuple) else output)

        handles = [model.register_forward_pre_hook(lambda *_: self._outputs.clear())]
        handles += [
            by_name[_output_module(layer, by_name)].register_forward_hook(keep)
            for layer in all_layers[:head]
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            self._outputs = []

    def loss(
        self, model: nn.Module, x: Tensor, logits: Tensor, y: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``CE + a1 sum_l nHSIC(X, Z_l) - a2 sum_l nHSIC(Z_l, Y)`` of the last forward pass."""
        # in the logits' dtype: float32 also after an autocast forward (solve needs it)
        hidden = [z.flatten(1).to(logits.dtype) for z in self._outputs if z.requires_grad]
        self._outputs = []
        ce = F.cross_entropy(logits, y)
        eps = 1e-5
        rx = _resolvent(gaussian_gram(x.flatten(1).to(logits.dtype), self.sigma), eps)
        onehot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
        ry = _resolvent(gaussian_gram(onehot, self.sigma), eps)
        hx, hy = logits.new_zeros(()), logits.new_zeros(())
        for z in hidden:
            rz = _resolvent(gaussian_gram(z, self.sigma), eps)
            hx = hx + (rx * rz.T).sum()
            hy = hy + (rz * ry.T).sum()
        total = ce + self.hsic_a1 * hx - self.hsic_a2 * hy
        return total, {"ce": ce.detach(), "hsic_xz": hx.detach(), "hsic_yz": hy.detach()}


# --------------------------------------------------------------------------- LS
def smoothed_cross_entropy(logits: Tensor, y: Tensor, alpha: float) -> Tensor:
    r"""Cross-entropy with smoothed targets, for any ``alpha`` (negative too).

    .. math::

        t = (1 - \alpha)\, \mathrm{onehot}(y) + \alpha / K, \qquad
        \ell = -\frac1N \sum_i \sum_k t_{ik} \log \operatorname{softmax}(f(x_i))_k.

    ``torch.nn.functional.cross_entropy(label_smoothing=...)`` computes the
    same for ``alpha`` in ``[0, 1]`` but rejects negative factors.

    Args:
        logits: ``(N, K)`` outputs.
        y: ``(N,)`` labels.
        alpha: Smoothing factor.

    Returns:
        A scalar.

    Example:
        >>> logits, y = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
        >>> a = smoothed_cross_entropy(logits, y, 0.1)
        >>> bool(torch.isclose(a, F.cross_entropy(logits, y, label_smoothing=0.1)))
        True
    """
    logp = F.log_softmax(logits, dim=1)
    target = F.one_hot(y, logits.shape[1]).to(logp.dtype) * (1 - alpha) + alpha / logits.shape[1]
    return -(target * logp).sum(1).mean()


LS_WARMUP: float = 0.5
"""Fraction of the run trained with ``alpha = 0`` before negative smoothing starts."""

LS_RAMP_END: float = 0.75
"""Fraction of the run from which the full negative factor applies."""


def negative_ls_factor(alpha: float, epoch: int, epochs: int) -> float:
    r"""The smoothing factor of epoch ``epoch`` under Struppek et al.'s schedule.

    Their training script (github LukasStruppek/Plug-and-Play-Attacks,
    ``train_model.py``, ``ls_scheduler``; 100-epoch runs) uses, for 0-based
    epoch ``e`` of ``N`` and a negative final factor ``alpha``,

    * ``e < 50``: ``0`` (plain cross-entropy);
    * ``50 <= e < 75``: ``alpha * (e + 1 - 50) / (N - 50)``;
    * ``e >= 75``: ``alpha``.

    fisherlab states the epoch thresholds as fractions of the run,
    :data:`LS_WARMUP` ``= 50/100`` and :data:`LS_RAMP_END` ``= 75/100``:

    .. math::

        \alpha_e = \begin{cases}
            0 & e / N < 0.5 \\
            \alpha \min\big(1, \frac{(e + 1)/N - 0.5}{1 - 0.5}\big) & 0.5 \le e / N < 0.75 \\
            \alpha & e / N \ge 0.75,
        \end{cases}

    which is their rule exactly for ``N = 100``. Like theirs, the ramp's
    denominator is the rest of the run (``N - 50``), not the ramp's length,
    so it reaches ``alpha / 2`` at 75% of the run and then steps to
    ``alpha`` (where their learning rate also drops, MultiStepLR at 75, 90).
    It is evaluated once per epoch, as theirs. A one-epoch run therefore
    trains with ``alpha = 0`` throughout; a two-epoch run uses ``0`` then
    ``alpha``; five epochs use ``0, 0, 0, 0.6 alpha, alpha``. Positive and
    zero factors are not scheduled (their script applies them from the start).

    Args:
        alpha: The final factor.
        epoch: The epoch, from 0.
        epochs: Epochs of the run, >= 1.

    Returns:
        The factor for that epoch.

    Example:
        >>> [negative_ls_factor(-0.1, e, 5) for e in range(5)]
        [0.0, 0.0, 0.0, -0.06, -0.1]
        >>> negative_ls_factor(-0.1, 74, 100), negative_ls_factor(-0.1, 75, 100)
        (-0.05, -0.1)
    """
    if alpha >= 0:
        return alpha
    done = epoch / epochs
    if done < LS_WARMUP:
        return 0.0
    if done < LS_RAMP_END:
        return round(alpha * min(1.0, ((epoch + 1) / epochs - LS_WARMUP) / (1 - LS_WARMUP)), 12)
    return alpha


class LabelSmoothing(Defense):
    r"""Label smoothing with factor ``alpha`` in ``[-1, 1)`` (Struppek et al., ICLR 2024).

    "Be careful what you smooth for: label smoothing can be a privacy shield
    but also a catalyst for model inversion attacks". The loss is
    :func:`smoothed_cross_entropy`, with targets
    ``(1 - alpha) onehot(y) + alpha / K`` (their ``CrossEntropyLoss``:
    ``(1 - alpha) NLL + alpha mean_k(-log p_k)``, the same, with no clipping
    of the targets). Positive ``alpha`` (Szegedy et al., CVPR 2016) makes
    model inversion easier; negative ``alpha`` (negative label smoothing,
    Wei et al., ICML 2022) is the defense; the default ``alpha = -0.05`` is
    the negative factor of the paper's experiments (its public configs ship
    with ``alpha = 0``).

    A negative factor follows the authors' schedule (:func:`negative_ls_factor`):
    ``alpha = 0`` for the first half of the run, a ramp, then the full factor
    from 75% of the run on. :func:`fisherlab.train` sets it before each epoch
    (:meth:`start_epoch`); until then the full factor applies. With
    ``alpha < 0`` the loss has no lower bound (it rewards pushing the wrong
    classes' probabilities to 0), and the schedule does not make every factor
    stable: fine-tuning ``target_cnn`` (pretrained on 1,500 Fashion-MNIST
    images) on ``mnist5k:0-4`` for 5 epochs with SGD (lr 0.01, momentum 0.9),
    the scheduled run holds 0.99 test accuracy through epoch 4 at every
    factor, ends at 0.986 with ``alpha = -0.05``, but drops to chance (0.21)
    in the last epoch with ``-0.1`` and ``-0.2``; unscheduled, ``-0.2`` is
    at 0.25 after epoch 2. (Their recipe, Adam at lr 1e-3, also lowers the
    learning rate tenfold at epoch 75, when the full factor starts.) The loss
    parts are ``ce`` (plain cross-entropy with the hard labels) and
    ``smoothing`` (the factor in effect).

    Args:
        smoothing: ``alpha``, in ``[-1, 1)``.
    """

    name = "ls"
    strengths: ClassVar[dict[str, Strength]] = {
        "smoothing": Strength(-0.05, -1.0, 1.0, meaning="the label smoothing factor alpha")
    }
    smoothing: float

    def __init__(self, **values: float | None) -> None:
        super().__init__(**values)
        self.current = self.smoothing

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Set :attr:`current` to the scheduled factor (:func:`negative_ls_factor`)."""
        self.current = negative_ls_factor(self.smoothing, epoch, epochs)

    def behaviour(self) -> dict[str, str]:
        """``{"ls_schedule": ...}`` for a negative factor (unscheduled before)."""
        return {"ls_schedule": "struppek2024"} if self.smoothing < 0 else {}

    def loss(
        self, model: nn.Module, x: Tensor, logits: Tensor, y: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy with the targets smoothed by the factor in effect."""
        loss = smoothed_cross_entropy(logits, y, self.current)
        parts = {
            "ce": F.cross_entropy(logits, y).detach(),
            "smoothing": logits.new_tensor(self.current),
        }
        return loss, parts


# --------------------------------------------------------------------------- registry
DEFENSES: dict[str, type[Defense]] = {
    "none": Defense,
    "mid": MID,
    "bido": BiDO,
    "ls": LabelSmoothing,
}
"""Defense name -> class, the choices of ``--defense``."""

STRENGTH_FIELDS: tuple[str, ...] = tuple(f for d in DEFENSES.values() for f in d.strengths)
"""Every defense strength, as named in :class:`fisherlab.TrainConfig`."""


def build_defense(name: str, **strengths: float | None) -> Defense:
    """The defense ``name`` with the given strengths (``None``: its defaults).

    Args:
        name: One of :data:`DEFENSES`.
        **strengths: Values by field name, e.g. ``beta=0.01``.

    Returns:
        The defense.

    Raises:
        FisherlabError: For an unknown name, a strength of another defense, or
            a value out of range.

    Example:
        >>> build_defense("ls", smoothing=-0.1).settings()
        {'smoothing': -0.1}
    """
    if name not in DEFENSES:
        raise FisherlabError(f"unknown defense {name!r}: expected one of {', '.join(DEFENSES)}")
    return DEFENSES[name](**strengths)


def resolve_strengths(name: str, given: Mapping[str, float | None]) -> dict[str, float | None]:
    """Every field of :data:`STRENGTH_FIELDS`: the value in effect for ``name``, else ``None``.

    Args:
        name: The defense.
        given: Values by field name (``None``: not given).

    Returns:
        The resolved values.

    Raises:
        FisherlabError: As :func:`build_defense`.
    """
    settings = build_defense(name, **given).settings()
    return {field: settings.get(field) for field in STRENGTH_FIELDS}
