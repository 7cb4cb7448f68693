r"""The Fisher engine: per-sample squared gradients of any per-sample objective, per layer.

For a layer :math:`l` with parameters :math:`\theta_l`, samples
:math:`i = 1..N` and per-sample objective :math:`L_i` (e.g. cross-entropy of
the model on :math:`(x_i, y_i)`), fisherlab reports

.. math::

    F_l = \frac{1}{N} \sum_i \Big(\frac{\partial L_i}{\partial \theta_l}\Big)^2
    \quad\text{(diagonal, elementwise)}, \qquad
    \operatorname{tr} F_l = \frac{1}{N} \sum_i
    \Big\| \frac{\partial L_i}{\partial \theta_l} \Big\|^2,

the mean per parameter :math:`\operatorname{tr} F_l / |\theta_l|` (the trace
favours large layers) and the share :math:`\operatorname{tr} F_l / \sum_k
\operatorname{tr} F_k`. This is the *empirical* Fisher, with the given labels.
The *true* Fisher replaces :math:`y_i` by :math:`M` labels drawn from the
model's :math:`\operatorname{softmax}(f(x_i))` and averages over the
:math:`N M` terms. Squaring the gradient of the batch *mean* is not the Fisher;
fisherlab never does that.

Layers are those of :func:`fisherlab.models.layers.layers`. Each parameter is
computed by the BackPACK engine when its module has a fast path
(:data:`fisherlab.fisher.backpack_engine.FAST_PATHS`, extended with
:func:`~fisherlab.fisher.backpack_engine.register_fast_path`) and by the
torch.func fallback otherwise; :func:`choose_engines` decides, with a reason,
and the ``engine`` column says which. The model is profiled in eval mode on
private copies: the caller's model keeps its mode, its ``requires_grad``
flags, and gets no hooks.

This module holds the engine (:class:`FisherEngine`), its running sums and the
per-layer rows; :mod:`fisherlab.fisher.profile` feeds it data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils import parametrize

from fisherlab._device import full_precision, resolve_device
from fisherlab.errors import FisherlabError
from fisherlab.fisher.backpack_engine import (
    SAVEFIELD,
    backpack_pass,
    copy_model,
    prepare_backpack_model,
)
from fisherlab.fisher.checks import CallMonitor, agree, per_sample_norms_by_loop
from fisherlab.fisher.fast_paths import (
    FAST_PATHS,
    Refused,
    fast_path_parameters,
    fast_path_reason,
)
from fisherlab.fisher.functorch_engine import forward_logits, functorch_pass
from fisherlab.fisher.objectives import (
    FisherType,
    Objective,
    resolve_fisher,
    resolve_objective,
    sample_labels,
    uniforms,
)
from fisherlab.models.layers import Layer, layers

ENGINES = ("auto", "backpack", "functorch")
COLUMNS = [
    "index",
    "name",
    "kind",
    "n_params",
    "trace",
    "mean",
    "share",
    "objective",
    "fisher",
    "engine",
    "n_samples",
    "mc_samples",
]


@dataclass
class FisherSums:
    """Running sums over samples, per parameter name.

    Attributes:
        sq: ``sum_i ||g_i||^2`` (float64 scalars).
        diag: ``sum_i g_i^2`` (float64 tensors), when requested.
        n_terms: Number of (sample, label draw) terms summed.
        n_samples: Number of inputs.
    """

    sq: dict[str, Tensor]
    diag: dict[str, Tensor] | None
    n_terms: int = 0
    n_samples: int = 0

    def add(self, name: str, sq: Tensor, diag: Tensor | None) -> None:
        """Add a batch's per-sample squared norms (and summed squares)."""
        self.sq[name] += sq.detach().double().sum().cpu()
        if self.diag is not None and diag is not None:
            self.diag[name] += diag.detach().double().cpu()

    def all_reduce(self) -> None:
        """Sum the statistics over the processes of ``torch.distributed``."""
        names = list(self.sq)
        parts = [torch.stack([self.sq[n] for n in names]).view(-1)]
        parts.append(torch.tensor([self.n_terms, self.n_samples], dtype=torch.float64))
        if self.diag is not None:
            parts += [self.diag[n].view(-1) for n in names]
        flat = torch.cat(parts)
        backend = dist.get_backend()
        if backend == "nccl":
            flat = flat.cuda()
        dist.all_reduce(flat)
        flat = flat.cpu()
        k = len(names)
        for i, n in enumerate(names):
            self.sq[n] = flat[i].clone()
        self.n_terms, self.n_samples = int(flat[k].item()), int(flat[k + 1].item())
        if self.diag is not None:
            pos = k + 2
            for n in names:
                size = self.diag[n].numel()
                self.diag[n] = flat[pos : pos + size].view_as(self.diag[n]).clone()
                pos += size


def layer_row(
    layer: Layer,
    trace: float,
    *,
    objective: str,
    fisher: str,
    engine: str,
    n_samples: int,
    mc_samples: int,
) -> dict[str, Any]:
    """One row of a per-layer Fisher frame (every column of :data:`COLUMNS` but ``share``).

    The one place a row is built: :func:`fisher_frame` and the attacks' Fisher
    recorder both call it.

    Args:
        layer: The layer.
        trace: Its Fisher trace ``1/N sum_i ||g_i||^2`` over its parameters.
        objective: The objective's name.
        fisher: ``"empirical"`` or ``"true"``.
        engine: Which engines computed its parameters (``+``-joined).
        n_samples: Inputs the trace is averaged over.
        mc_samples: Label draws per input.

    Returns:
        The row.
    """
    return {
        "index": layer.index,
        "name": layer.name,
        "kind": layer.kind,
        "n_params": layer.n_params,
        "trace": trace,
        "mean": trace / layer.n_params if layer.n_params else 0.0,
        "objective": objective,
        "fisher": fisher,
        "engine": engine,
        "n_samples": n_samples,
        "mc_samples": mc_samples,
    }


def fisher_frame(
    model_layers: list[Layer],
    sums: FisherSums,
    engines: dict[str, str],
    objective: str,
    fisher: str,
    mc_samples: int,
) -> pd.DataFrame:
    """Turn per-parameter sums into the tidy per-layer frame (see module docs)."""
    if sums.n_terms == 0:
        raise FisherlabError("no samples were profiled: the data is empty")
    rows = [
        layer_row(
            layer,
            sum(float(sums.sq[p]) for p in layer.params) / sums.n_terms,
            objective=objective,
            fisher=fisher,
            engine="+".join(sorted({engines[p] for p in layer.params})),
            n_samples=sums.n_samples,
            mc_samples=mc_samples,
        )
        for layer in model_layers
    ]
    frame = pd.DataFrame(rows)
    total = frame["trace"].sum()
    frame["share"] = frame["trace"] / total if total > 0 else 0.0
    return frame[COLUMNS]


BROADCAST_REASON = "per-sample copies of a parameter broadcast over the batch (shape (1, ...))"
_BROADCAST_NUMEL = 2**20


def broadcastable(param: Tensor) -> bool:
    """Whether a parameter has the shape of one sample's copy (``(1, ...)``, 2-D or more).

    Such a parameter (a ViT's class token ``(1, 1, d)`` or position embedding
    ``(1, T, d)``) is typically broadcast over the batch; the fast engine then
    computes it exactly with one copy per sample (see
    :func:`~fisherlab.fisher.backpack_engine.backpack_pass`), and the probe
    checks that the model uses it that way. 1-D parameters of size 1 (a
    single PReLU slope) are left to the fallback: their dim 0 is not a sample
    dim by any convention.
    """
    return param.dim() >= 2 and param.shape[0] == 1 and param.numel() <= _BROADCAST_NUMEL


@dataclass(frozen=True)
class EngineChoice:
    """Which engine computes one parameter, and why.

    Attributes:
        module: Name of the module that holds the parameter.
        engine: ``"backpack"`` (a fast path) or ``"functorch"`` (the fallback).
        reason: Why (e.g. ``"fast path for Conv2d"`` or ``"no fast path for LayerNorm"``).
    """

    module: str
    engine: str
    reason: str


def choose_engines(model: nn.Module, engine: str = "auto") -> dict[str, EngineChoice]:
    """Decide, per parameter, which engine computes it: the one place this is decided.

    A parameter uses its module's BackPACK fast path when
    :func:`~fisherlab.fisher.fast_paths.fast_path_reason` finds one, the
    fast path computes a parameter of that name
    (:func:`~fisherlab.fisher.fast_paths.fast_path_parameters`), the
    parameter belongs to that module alone (a tied parameter's gradient sums
    over its uses) and the module is not inside an ``nn.MultiheadAttention``
    (which computes with its children's weights without calling them; the
    ``out_proj`` of an attention with a fast path is computed by the
    attention's, and belongs to it); otherwise the torch.func fallback.
    ``engine="functorch"`` sends every parameter to the fallback;
    ``engine="backpack"`` refuses a parameter without a fast path. At run
    time the engine checks the fast paths' other assumptions and moves any
    module that breaks one to the fallback
    (:mod:`fisherlab.fisher.checks`).

    Args:
        model: The model.
        engine: ``"auto"``, ``"backpack"`` or ``"functorch"``.

    Returns:
        ``{parameter name: EngineChoice}`` in the order of
        ``model.named_parameters()`` (a tied parameter under its first name).

    Raises:
        FisherlabError: For an unknown engine, or with ``engine="backpack"``
            a parameter without a fast path.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.PReLU(4))
        >>> {p: c.engine for p, c in choose_engines(net).items()}  # doctest: +NORMALIZE_WHITESPACE
        {'0.weight': 'backpack', '0.bias': 'backpack', '1.weight': 'backpack',
         '1.bias': 'backpack', '2.weight': 'functorch'}
    """
    if engine not in ENGINES:
        raise FisherlabError(f"unknown engine {engine!r}: expected one of {ENGINES}")
    attention = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    owners: dict[int, list[tuple[str, str, nn.Module]]] = {}
    for mname, module in model.named_modules(remove_duplicate=False):
        for pname, param in module.named_parameters(recurse=False):
            owners.setdefault(id(param), []).append((mname, pname, module))
    choices: dict[str, EngineChoice] = {}
    by_name = dict(model.named_modules())
    for name, param in model.named_parameters():
        held = owners[id(param)]
        mname, pname, module = held[0]
        reason = fast_path_reason(module)
        parent = mname.rpartition(".")[0] if "." in mname else ""
        if (
            mname.endswith("out_proj")
            and parent in attention
            and by_name[parent].out_proj is module
            and fast_path_reason(by_name[parent]) is None
        ):
            mname, module, reason = parent, by_name[parent], None  # the attention's fast path
            pname = "out_proj." + pname
        if len({m for m, _, _ in held}) > 1 or len(held) > 1:
            uses = ", ".join(f"{m}.{p}" if m else p for m, p, _ in held[:3])
            reason = f"shared by several modules or names ({uses}): its gradient sums the uses"
        elif (
            reason is None
            and pname not in fast_path_parameters(module)
            and not pname.startswith("out_proj.")
        ):
            reason = f"{type(module).__name__}'s fast path does not compute {pname!r}"
        if reason is None and any(mname.startswith(a + ".") for a in attention):
            reason = "inside nn.MultiheadAttention, which bypasses its children"
        if (
            reason is not None
            and broadcastable(param)
            and reason == fast_path_reason(module)
            and type(module) not in FAST_PATHS
            and not parametrize.is_parametrized(module)
            and ".parametrizations." not in f".{mname}."
            and not any(mname == a or mname.startswith(a + ".") for a in attention)
        ):
            reason = BROADCAST_REASON
        if engine == "functorch":
            reason = reason or "engine='functorch'"
        if reason is not None and reason != BROADCAST_REASON and engine == "backpack":
            raise FisherlabError(
                f"module {mname or '(root)'} ({type(module).__name__}) has no BackPACK fast "
                f"path ({reason}); use engine='auto' for the torch.func fallback"
            )
        fast = reason is None or reason == BROADCAST_REASON
        choices[name] = EngineChoice(
            mname,
            "backpack" if fast else "functorch",
            reason or f"fast path for {type(module).__name__}",
        )
    return choices


class FisherEngine:
    """Accumulates per-layer Fisher sums of one model over batches.

    Built once per model (copies are made and prepared here) and fed batches
    with :meth:`add_batch`; attacks reuse one engine across iterations.

    Args:
        model: The model to profile (left untouched).
        objective: A built-in objective name or ``(output, target) -> (N,)``.
        fisher: ``"empirical"`` or ``"true"``.
        mc_samples: Label draws per input for the true Fisher.
        seed: Seed of the true-Fisher label draws.
        engine: ``"auto"`` (BackPACK fast paths, torch.func fallback),
            ``"backpack"`` (fast paths only, error otherwise) or
            ``"functorch"`` (torch.func for every parameter).
        diagonal: Also accumulate the per-parameter diagonal.
        device: Where to compute.

    Raises:
        FisherlabError: For a model that cannot be profiled per sample.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: str | Objective = "classification",
        fisher: str | FisherType = "empirical",
        mc_samples: int = 1,
        seed: int = 0,
        engine: str = "auto",
        diagonal: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        if isinstance(model, torch.jit.ScriptModule):
            raise FisherlabError(
                "TorchScript models cannot be profiled per sample (no module hooks or "
                "torch.func; TorchScript serves `layers` and `evaluate`): profile the eager "
                "model, its spec with a state dict (SPEC --weights FILE, or `fisherlab import`)"
            )
        if engine not in ENGINES:
            raise FisherlabError(f"unknown engine {engine!r}: expected one of {ENGINES}")
        if mc_samples < 1:
            raise FisherlabError(f"mc_samples must be >= 1, got {mc_samples}")
        self.objective_name, self.objective = resolve_objective(objective)
        self.fisher = resolve_fisher(fisher)
        self.mc_samples = mc_samples if self.fisher is FisherType.TRUE else 1
        self.seed, self.diagonal = seed, diagonal
        self.device = resolve_device(device)
        self.layers = layers(model)
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is None:
                raise FisherlabError(
                    f"module {name} ({type(m).__name__}) has no running statistics, so it "
                    "mixes samples even in eval mode; per-sample Fisher is undefined"
                )
        choices = choose_engines(model, engine)
        owners = {p: choice.module for p, choice in choices.items()}
        self.engines: dict[str, str] = {p: choice.engine for p, choice in choices.items()}
        self.engine_reasons: dict[str, str] = {p: choice.reason for p, choice in choices.items()}
        self.owners = owners
        self.plain = copy_model(model).eval().to(self.device)
        self.plain.requires_grad_(False)
        floating = [p.dtype for p in self.plain.parameters() if p.is_floating_point()]
        self.dtype = floating[0] if floating else torch.get_default_dtype()
        self.bp_model: nn.Module | None = None
        self.bp_params: dict[str, nn.Parameter] = {}
        self.broadcast: dict[str, nn.Parameter] = {}
        self.monitor: CallMonitor | None = None
        self._example: Tensor | None = None
        self._stale = False
        self._converted = False
        self.num_outputs: int | None = None
        self.reset()

    def reset(self) -> None:
        """Start new sums (e.g. for the next attack iteration)."""
        zeros = {n: torch.zeros((), dtype=torch.float64) for n in self.engines}
        diag = None
        if self.diagonal:
            diag = {
                n: torch.zeros(p.shape, dtype=torch.float64)
                for n, p in self.plain.named_parameters()
            }
        self.sums = FisherSums(zeros, diag)

    def _targets(self, logits: Tensor, y: Tensor, u: Tensor | None, m: int) -> Tensor:
        if self.num_outputs is None:
            self.num_outputs = int(logits.shape[1]) if logits.dim() == 2 else None
        if self.fisher is FisherType.TRUE:
            assert u is not None
            return sample_labels(logits, u[:, m])
        if logits.dim() == 2 and y.numel() and (y.max() >= logits.shape[1] or y.min() < 0):
            raise FisherlabError(
                f"labels range over {int(y.min())}..{int(y.max())} but the model has "
                f"{logits.shape[1]} outputs: the data's classes do not fit the model"
            )
        return y

    def add_batch(self, x: Tensor, y: Tensor, start: int = 0, batch_no: int = 0) -> Tensor:
        """Add the Fisher terms of one batch.

        Args:
            x: Inputs, prepared for the model.
            y: Labels (used by the empirical Fisher; ignored by the true one).
            start: Global index of the batch's first sample (true-Fisher draws).
            batch_no: Batch number, for error messages.

        Returns:
            The per-sample losses of the last label draw.
        """
        with full_precision(self.device):  # the model's precision: never amp's, nor TF32
            return self._add_batch(x, y, start, batch_no)

    def _add_batch(self, x: Tensor, y: Tensor, start: int, batch_no: int) -> Tensor:
        x = self._prepare(x)
        y = y.to(self.device)
        n = x.shape[0]
        u = (
            uniforms(self.seed, start, n, self.mc_samples)
            if self.fisher is FisherType.TRUE
            else None
        )
        self.fast_model(x)
        losses = torch.empty(0)
        for m in range(self.mc_samples):
            used: list[Tensor] = []

            def loss_fn(out: Tensor, m: int = m, used: list[Tensor] = used) -> Tensor:
                t = self._targets(out, y, u, m)
                used.append(t)
                return self.objective(out, t)

            losses = self._fast_pass(x, loss_fn)
            if losses is None:
                losses = loss_fn(forward_logits(self.plain, x)).detach()
            if not torch.isfinite(losses).all():
                bad = int((~torch.isfinite(losses)).nonzero()[0])
                raise FisherlabError(
                    f"the objective is {losses[bad].item()} for sample {start + bad} "
                    f"(batch {batch_no}); check the data and the model's outputs"
                )
            results = self.take_fast_results() if self.bp_model is not None else {}
            results.update(self.fallback_results(x, used[-1]))
            for p, (sq, dg) in results.items():
                self.sums.add(p, sq, dg)
            self.sums.n_terms += n
        self.sums.n_samples += n
        return losses

    def _prepare(self, x: Tensor) -> Tensor:
        """Inputs on the engine's device; floating ones in the model's dtype (ids stay ids)."""
        x = x.detach()
        return x.to(self.device, self.dtype) if x.is_floating_point() else x.to(self.device)

    def _fast_pass(self, x: Tensor, loss_fn: Callable[[Tensor], Tensor]) -> Tensor | None:
        """The fast engine's pass on ``x``, or ``None`` when no module uses a fast path.

        A module that breaks an assumption in this forward pass moves to the
        fallback and the pass runs again without it; if BackPACK itself fails,
        every module moves to the fallback (the reason names the failure).
        """
        if self._stale and self._example is not None:
            self._build_fast_model(self._example)
        while self.bp_model is not None:
            try:
                losses, violations = backpack_pass(
                    self.bp_model, x, loss_fn, self.diagonal, self.monitor, self.broadcast
                )
            except FisherlabError:
                raise
            except Exception as exc:  # noqa: BLE001 - any BackPACK failure: fall back
                if self.broadcast:
                    message = " ".join(str(exc).split())[:160]
                    reason = f"per-sample copies failed ({type(exc).__name__}: {message})"
                    self._to_fallback(set(), reason, params=list(self.broadcast))
                    continue
                if not self._converted and self._example is not None:
                    self._converted = True  # e.g. an in-place add on a hooked output
                    self._build_fast_model(self._example)
                    continue
                message = " ".join(str(exc).split())[:160]
                self._to_fallback(
                    set(self._fast_modules()), f"BackPACK failed ({type(exc).__name__}: {message})"
                )
                return None
            if not violations:
                return losses
            for module, reason in violations.items():
                self._to_fallback({module}, reason)
        return None

    def _fast_modules(self) -> list[str]:
        return sorted({self.owners[p] for p, e in self.engines.items() if e == "backpack"})

    def _to_fallback(
        self, modules: set[str], reason: str, rebuild: bool = True, params: Iterable[str] = ()
    ) -> None:
        """Move the parameters of ``modules`` (and the named ``params``) to the torch.func fallback.

        The fast model is rebuilt without them now, or (``rebuild=False``, while
        an attack holds the current one) before the engine's next own pass.
        """
        params = set(params)
        for p, owner in self.owners.items():
            if (owner in modules or p in params) and self.engines[p] == "backpack":
                self.engines[p] = "functorch"
                self.engine_reasons[p] = reason
        for p in list(self.bp_params):
            if self.engines[p] != "backpack":
                param = self.bp_params.pop(p)
                if hasattr(param, SAVEFIELD):
                    delattr(param, SAVEFIELD)
        if rebuild and self._example is not None:
            self._build_fast_model(self._example)
        else:
            self._stale = True

    def explain(self) -> pd.DataFrame:
        """Which engine computes each parameter, and why: one row per parameter.

        Columns ``parameter``, ``layer``, ``module``, ``engine`` and ``reason``;
        ``fisherlab profile --explain`` prints it and every profile writes it
        to ``engines.csv``.
        """
        layer_of = {p: layer.index for layer in self.layers for p in layer.params}
        return pd.DataFrame(
            [
                {
                    "parameter": p,
                    "layer": layer_of.get(p, -1),
                    "module": self.owners[p],
                    "engine": e,
                    "reason": self.engine_reasons[p],
                }
                for p, e in self.engines.items()
            ],
            columns=["parameter", "layer", "module", "engine", "reason"],
        )

    def fast_model(self, example: Tensor) -> nn.Module:
        """The network the fast engine runs: a hooked copy of the model, built on first use.

        Its outputs (and gradients) equal the model's. Run a backward pass
        through it inside ``backpack(PerSampleFisher())`` and call
        :meth:`take_fast_results` to get per-sample quantities of *that* pass,
        without a pass of its own (the attacks do this to record the Fisher
        along their trajectory).

        When it is built, the fast paths are checked on a probe of up to two
        samples of ``example`` against an independent per-sample autograd loop
        on the model (:func:`~fisherlab.fisher.checks.per_sample_norms_by_loop`);
        modules that disagree, are called more than once, see other than one
        row per sample, or make BackPACK fail move to the torch.func fallback.

        Args:
            example: An input batch.
        """
        if self.bp_model is None and self._fast_modules() and self._example is None:
            self._example = self._prepare(example)[:2]
            with full_precision(self.device):  # the probe checks run in full precision
                self._build_fast_model(self._example)
        return self.bp_model if self.bp_model is not None else self.plain

    def _build_fast_model(self, example: Tensor) -> None:
        """(Re)build the hooked copy for the current fast modules and verify it on ``example``."""
        if self.monitor is not None:
            self.monitor.remove()
        self.bp_model, self.monitor, self.bp_params, self._stale = None, None, {}, False
        self.broadcast: dict[str, nn.Parameter] = {}
        modules = self._fast_modules()
        if not modules:
            return
        broadcast = {p for p, r in self.engine_reasons.items() if r == BROADCAST_REASON}
        if broadcast and example.shape[0] < 2:
            unfit = {p: "a probe of one sample cannot check per-sample copies" for p in broadcast}
        else:
            unfit = self._unfit_copies(broadcast, example)
        if unfit:
            for p, reason in unfit.items():
                self._to_fallback(set(), reason, rebuild=False, params=[p])
            self._build_fast_model(example)
            return
        model = prepare_backpack_model(self.plain, modules, example, convert=self._converted)
        refused = getattr(model, "fisherlab_refused", {})
        if refused:
            for module, reason in refused.items():
                self._to_fallback({module}, reason, rebuild=False)
            self._build_fast_model(example)
            return
        self.monitor = CallMonitor(model, modules)
        named = dict(model.named_parameters())
        self.bp_model = model
        self.bp_params = {p: named[p] for p, e in self.engines.items() if e == "backpack"}
        self.broadcast = {p: named[p] for p in broadcast if self.engines[p] == "backpack"}
        self._verify(example)

    def _unfit_copies(self, names: set[str], example: Tensor) -> dict[str, str]:
        """Broadcast parameters whose per-sample copies break the model's forward pass.

        Each is replaced alone by ``N`` copies on the probe ``example``; a
        failure or an output of another shape sends it to the fallback (the
        probe then checks the values of the others).
        """
        if not names:
            return {}
        params = dict(self.plain.named_parameters())
        unfit = {}
        with torch.no_grad():
            expected = self.plain(example)
            for p in sorted(names):
                copies = params[p].expand(len(example), *params[p].shape[1:]).clone()
                try:
                    out = functional_call(self.plain, {p: copies}, (example,))
                    if not isinstance(out, Tensor) or out.shape != expected.shape:
                        raise ValueError(f"the output has another shape ({tuple(out.shape)})")
                except Exception as exc:  # noqa: BLE001 - the model decides what fits
                    message = " ".join(str(exc).split())[:120]
                    unfit[p] = (
                        f"per-sample copies do not fit the model ({type(exc).__name__}: {message})"
                    )
        return unfit

    def _verify(self, example: Tensor) -> None:
        """Compare the fast paths with the per-sample loop on ``example`` (:meth:`fast_model`)."""
        with torch.no_grad():
            logits = self.plain(example)
        if logits.dim() != 2:
            # a custom output: the run-time checks still apply, the probe does not, and
            # per-sample copies are used only where the probe checked them
            if self.broadcast:
                reason = "per-sample copies need the probe (the model's output is not 2-D)"
                self._to_fallback(set(), reason, params=list(self.broadcast))
            return
        targets = logits.argmax(1)

        def loss_fn(out: Tensor) -> Tensor:
            return self.objective(out, targets)

        if self._fast_pass(example, loss_fn) is None or self.bp_model is None:
            return
        fast = self.take_fast_results()
        if not fast:
            return
        slow = per_sample_norms_by_loop(self.plain, list(fast), example, targets, self.objective)
        wrong = {p for p, (sq, _) in fast.items() if not agree(sq, slow[p], self.dtype)}
        if wrong:
            modules = {self.owners[p] for p in wrong if p not in self.broadcast}
            self._to_fallback(
                modules,
                "its fast path disagreed with a per-sample autograd loop",
                params=wrong & set(self.broadcast),
            )

    def take_fast_results(self) -> dict[str, tuple[Tensor, Tensor | None]]:
        """Per-sample results the last backward left on the fast-path parameters.

        Each result must hold one value per sample of that pass; parameters
        whose module was not reached, was called more than once or saw other
        than one row per sample move to the torch.func fallback (their values
        of this pass are then computed by :meth:`fallback_results`).
        """
        violations = self.monitor.violations() if self.monitor is not None else {}
        n = self.monitor.samples if self.monitor is not None else None
        results, moved = {}, {}
        for name, p in list(self.bp_params.items()):
            value = getattr(p, SAVEFIELD, None)
            if hasattr(p, SAVEFIELD):
                delattr(p, SAVEFIELD)
            module = self.owners[name]
            if module in violations:
                moved[module] = violations[module]
            elif isinstance(value, Refused):
                moved[module] = value.reason
            elif value is None:
                moved[module] = "not reached by the fast engine's backward pass"
            elif n is not None and tuple(value[0].shape) != (n,):
                shape = tuple(value[0].shape)
                moved[module] = f"its per-sample result has shape {shape}, not ({n},)"
            else:
                results[name] = value
        for module, reason in moved.items():
            self._to_fallback({module}, reason, rebuild=False)
        return {p: v for p, v in results.items() if self.engines[p] == "backpack"}

    def fallback_results(
        self, x: Tensor, targets: Tensor
    ) -> dict[str, tuple[Tensor, Tensor | None]]:
        """Per-sample results of the torch.func fallback parameters on ``(x, targets)``.

        Raises:
            FisherlabError: If torch.func cannot differentiate those modules.
        """
        names = [p for p, e in self.engines.items() if e == "functorch"]
        if not names:
            return {}
        try:
            return functorch_pass(
                self.plain, names, x.detach(), targets, self.objective, self.diagonal
            )
        except FisherlabError:
            raise
        except Exception as exc:  # noqa: BLE001 - name the failing parameters
            raise FisherlabError(
                f"the torch.func fallback failed for parameters {names[:3]} "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                "these modules have no fallback"
            ) from None

    def frame(self) -> pd.DataFrame:
        """The per-layer frame of the sums so far."""
        return fisher_frame(
            self.layers,
            self.sums,
            self.engines,
            self.objective_name,
            self.fisher.value,
            self.mc_samples,
        )

    def diagonal_dict(self) -> dict[str, Tensor]:
        """Per-parameter Fisher diagonal ``1/(N M) sum g^2`` (float64)."""
        if self.sums.diag is None:
            raise FisherlabError("the diagonal was not requested: pass diagonal=True")
        return {n: d / self.sums.n_terms for n, d in self.sums.diag.items()}
