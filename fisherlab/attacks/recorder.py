"""Recording the per-layer Fisher of an attack's identity loss along the attack: the paper's Fig. 5.

The Fisher information of the identity loss (``L_j = CE(T(x_j), y_j)`` for
GMI and KEDMI; LOMMA's logit loss with its feature regulariser, PLG-MI's
max-margin loss: :mod:`fisherlab.attacks.identity`) with respect to the
target's parameters, recorded every ``fisher_every`` iterations with
fisherlab's BackPACK extension during the attack's own backward pass, gives
one row per (restart, iteration, layer); ``identity_loss`` names the loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pandas as pd
import torch
from backpack import backpack
from torch import Tensor, nn

from fisherlab._device import full_precision, model_device
from fisherlab.attacks.identity import (
    IdentityLoss,
    IdentityTerm,
    ModelAugmentation,
    head_input_hook,
)
from fisherlab.data.specs import InputSpec
from fisherlab.errors import FisherlabError
from fisherlab.fisher.backpack_engine import PerSampleFisher
from fisherlab.fisher.engine import FisherEngine, layer_row
from fisherlab.fisher.functorch_engine import functorch_pass
from fisherlab.models.layers import layers
from fisherlab.models.meta import model_meta

RecordedLoss = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]
"""``(logits, labels, features or None) -> (N,)``: the per-sample loss whose Fisher is recorded."""


class _WithFeatures(nn.Module):
    """``model`` returning ``[logits | head input]`` side by side, for the torch.func fallback."""

    def __init__(self, model: nn.Module, head: str) -> None:
        super().__init__()
        self.inner = model
        self.captured, _ = head_input_hook(dict(model.named_modules())[head])  # for its lifetime

    def forward(self, x: Tensor) -> Tensor:
        self.captured.clear()
        logits = self.inner(x)
        return torch.cat([logits, self.captured[0].flatten(1)], dim=1)


class FisherRecorder:
    """Records the per-layer Fisher of the identity loss along an attack, for free.

    The attack runs the target as :meth:`network` (a hooked copy with the same
    outputs, used whether or not anything is recorded, so recording cannot change
    the trajectory). At a recorded iteration, the attack's own backward pass runs
    inside :meth:`observe` with fisherlab's BackPACK extension active: the
    gradient reaching the target's output for latent ``j`` is
    ``scale * dL_j/d output_j``, where ``scale`` is the weight of ``L_j`` in the
    attack's loss (``lam / n`` for a mean), so the per-sample squared gradient
    norms of ``L_j`` are the extension's values divided by ``scale^2``, with no
    extra forward or backward pass. Parameters without a fast path are added by
    the torch.func fallback on the same images. The engine works on the
    target's device, and :meth:`network` always runs in the target's own
    precision, even inside an autocast block (``--amp``), and without TF32 on
    CUDA, as does the backward pass inside :meth:`observe`: the recorded
    Fisher is never computed in low precision.

    Args:
        target: The target model (left untouched; a copy is used).
        spec: The target's input spec.
        every: Record at iteration 1 and every ``every``-th (0: never).
        samples: Record only the first this many rows of each class of the
            batch (``None``: all). Each attack tells :meth:`observe` how its
            batch is laid out (``per_class`` rows per class, class after
            class), so the rule holds for GMI's latents, KEDMI's draws of the
            iteration and the white-box baseline's images alike.
    """

    def __init__(
        self,
        target: nn.Module,
        spec: InputSpec,
        every: int,
        samples: int | None,
    ) -> None:
        self.every, self.spec, self.samples = every, spec, samples
        self.engine = FisherEngine(
            target, "classification", "empirical", device=model_device(target)
        )
        self.rows: list[dict] = []
        self.loss_name = IdentityLoss.CROSS_ENTROPY.value
        self.recorded_loss: RecordedLoss | None = None  # None: the engine's cross-entropy
        self.uses_features = False
        self.head = layers(target)[-1].name
        self._with_features: tuple[_WithFeatures, int] | None = None  # the fallback's network

    def identity_term(
        self,
        example: Tensor,
        loss: IdentityLoss,
        augmentation: ModelAugmentation | None = None,
    ) -> IdentityTerm:
        """The attack's identity loss through :meth:`network`; fixes the recorded loss.

        Args:
            example: An image batch in pixel space (builds the network once).
            loss: The identity loss.
            augmentation: LOMMA's surrogates and feature mean (``lomma`` only).

        Raises:
            FisherlabError: For ``lomma`` without an augmentation, or a target
                whose head cannot be found in the hooked copy.
        """
        if loss is IdentityLoss.LOMMA and augmentation is None:
            raise FisherlabError("the LOMMA loss needs surrogates and a feature mean")
        net = self.network(example)
        captured: list[Tensor] = []
        uses_features = loss is IdentityLoss.LOMMA and bool(
            augmentation is not None and augmentation.feature_weight > 0
        )
        if uses_features:
            modules = dict(self.engine.fast_model(self.spec.normalize(example)).named_modules())
            if self.head not in modules:
                raise FisherlabError(
                    f"the target's head {self.head!r} is not a module of its traced copy; "
                    "LOMMA's feature regulariser cannot read its input: use lomma's "
                    "--feature-weight 0"
                )
            captured, _ = head_input_hook(modules[self.head])

        def run(x: Tensor) -> tuple[Tensor, Tensor | None]:
            captured.clear()
            logits = net(x)
            return logits, (captured[0] if captured else None)

        specs = []
        for model in augmentation.surrogates if augmentation is not None else ():
            spec = model_meta(model).input_spec
            specs.append(spec if spec is not None else self.spec)
        term = IdentityTerm(loss, run, self.spec, augmentation, specs)
        self.loss_name = loss.value
        self.recorded_loss = None if loss is IdentityLoss.CROSS_ENTROPY else term.recorded()
        self.uses_features = uses_features
        return term

    def network(self, example: Tensor) -> Callable[[Tensor], Tensor]:
        """The target as the attack must run it (same outputs as the target).

        Autocast (and TF32) is switched off around it and its input is cast
        to the target's dtype, so the recorded Fisher keeps full precision.
        """
        net: nn.Module = self.engine.fast_model(self.spec.normalize(example))
        device, dtype = self.engine.device, self.engine.dtype

        def run(x: Tensor) -> Tensor:
            with full_precision(device):
                return net(x.to(dtype) if x.is_floating_point() else x)

        return run

    def due(self, iteration: int) -> bool:
        """Whether iteration ``iteration`` (1-based) is recorded."""
        return self.every > 0 and (iteration == 1 or iteration % self.every == 0)

    @contextlib.contextmanager
    def observe(
        self,
        iteration: int,
        restart: int,
        pixels: Tensor,
        labels: Tensor,
        scale: float,
        per_class: int,
    ) -> Iterator[None]:
        """Run the attack's backward pass inside this block to record iteration ``iteration``.

        Args:
            iteration: The 1-based iteration.
            restart: The restart.
            pixels: The images of this iteration (pixel space).
            labels: Their target classes.
            scale: Weight of each per-sample identity loss in the attack's loss.
            per_class: Rows per class of this batch, which holds the classes
                one after the other (``class_labels(classes, per_class)``):
                GMI's and the white-box baseline's ``per_class``, KEDMI's
                ``kedmi_samples`` draws. With ``samples`` set, the first
                ``samples`` rows of each class are recorded.

        Raises:
            ValueError: If ``labels`` is not a whole number of ``per_class`` blocks.
        """
        if per_class < 1 or len(labels) % per_class:
            raise ValueError(f"{len(labels)} rows are not blocks of {per_class} rows per class")
        if not self.due(iteration):
            with full_precision(self.engine.device):  # as when recording: same trajectory
                yield
            return
        with full_precision(self.engine.device), backpack(PerSampleFisher(diagonal=False)):
            yield
        results = self.engine.take_fast_results()
        with full_precision(self.engine.device):
            pixels = pixels.detach().to(self.engine.dtype)
            fallback = self._fallback(self.spec.normalize(pixels), labels)
        keep = torch.ones(len(labels), dtype=torch.bool)
        if self.samples is not None and self.samples < per_class:
            keep = (torch.arange(len(labels)) % per_class) < self.samples
        n = int(keep.sum())
        keep = keep.to(self.engine.device)
        per_param = {
            name: float(sq[keep].double().sum()) / scale**2 for name, (sq, _) in results.items()
        }
        per_param.update(
            {name: float(sq[keep].double().sum()) for name, (sq, _) in fallback.items()}
        )
        for layer in self.engine.layers:
            row = layer_row(
                layer,
                sum(per_param[p] for p in layer.params) / n,
                objective="identity",
                fisher="empirical",
                engine="+".join(sorted({self.engine.engines[p] for p in layer.params})),
                n_samples=n,
                mc_samples=1,
            )
            row["identity_loss"] = self.loss_name
            self.rows.append({"restart": restart, "iteration": iteration, **row})

    def _fallback(self, x: Tensor, labels: Tensor) -> dict[str, tuple[Tensor, Tensor | None]]:
        """The torch.func fallback's per-sample results for the recorded loss."""
        if self.recorded_loss is None:
            return self.engine.fallback_results(x, labels)
        names = [p for p, e in self.engine.engines.items() if e == "functorch"]
        if not names:
            return {}
        loss = self.recorded_loss
        if not self.uses_features:
            return functorch_pass(
                self.engine.plain, names, x, labels, lambda out, y: loss(out, y, None), False
            )
        if self._with_features is None:  # built once: every recorded iteration reuses it
            with torch.no_grad():
                outputs = int(self.engine.plain(x[:1]).shape[1])
            self._with_features = (_WithFeatures(self.engine.plain, self.head), outputs)
        wrapped, k = self._with_features
        results = functorch_pass(
            wrapped,
            ["inner." + n for n in names],
            x,
            labels,
            lambda out, y: loss(out[:, :k], y, out[:, k:]),
            False,
        )
        return {n.removeprefix("inner."): v for n, v in results.items()}

    def frame(self) -> pd.DataFrame:
        """All recorded rows, one per (restart, iteration, layer), with ``share``."""
        if not self.rows:
            return pd.DataFrame()
        frame = pd.DataFrame(self.rows)
        totals = frame.groupby(["restart", "iteration"])["trace"].transform("sum")
        frame.insert(frame.columns.get_loc("mean") + 1, "share", frame["trace"] / totals)
        return frame
