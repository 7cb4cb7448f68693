"""Run-time checks of the fast engine's assumptions: no fast path is trusted unverified.

A BackPACK fast path computes a module's per-sample gradients from its input
and output gradient, and that is right only when

1. the module is called exactly once per forward pass (per-call quantities of a
   shared module cannot be summed: ``||g1 + g2||^2 != ||g1||^2 + ||g2||^2``);
2. its input and output carry the samples on dim 0, exactly ``N`` rows
   (a sequence-first transformer or a model that folds crops into the batch
   breaks this);
3. it is reached by gradient the way the model itself computes (a block run
   under ``torch.no_grad`` has zero gradient, whatever a rewritten graph says).

:class:`CallMonitor` checks 1 and 2 on every forward pass of the fast engine's
model; :func:`per_sample_norms_by_loop` is the independent per-sample autograd
loop that the engine compares its fast results with on a probe batch when it is
built (3, and anything else a fast path could get wrong); and
:func:`same_gradients` decides whether BackPACK's fx converter kept the model's
gradients. A module that fails any check goes to the torch.func fallback, with
the reason recorded (:attr:`fisherlab.fisher.engine.FisherEngine.engine_reasons`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.hooks import RemovableHandle


def _rows(value: Any) -> int | None:
    """Dim 0 of a tensor (or of the first tensor in a tuple), ``None`` for anything else."""
    if isinstance(value, tuple | list) and value:
        value = value[0]
    if isinstance(value, Tensor) and value.dim() >= 1:
        return int(value.shape[0])
    return None


class CallMonitor:
    """Counts the calls of the named modules of ``model`` and the rows of their inputs and outputs.

    Every forward pass of ``model`` starts a new record. After a pass,
    :meth:`violations` says which modules broke the fast engine's assumptions.

    Args:
        model: The fast engine's model (the monitor adds forward hooks to it).
        modules: Names of the modules to watch.
    """

    def __init__(self, model: nn.Module, modules: Iterable[str]) -> None:
        self.samples: int | None = None
        self.calls: dict[str, list[tuple[int | None, int | None]]] = {}
        self.detached: set[str] = set()
        by_name = dict(model.named_modules())
        self.handles: list[RemovableHandle] = [model.register_forward_pre_hook(self._start)]
        for name in modules:
            self.calls[name] = []
            self.handles.append(by_name[name].register_forward_hook(self._recorder(name)))

    def _start(self, module: nn.Module, args: tuple) -> None:
        self.samples = _rows(args)
        self.detached.clear()
        for record in self.calls.values():
            record.clear()

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple, output: Any) -> None:
            self.calls[name].append((_rows(args), _rows(output)))
            first = args[0] if args else None
            if not (isinstance(first, Tensor) and first.requires_grad):
                self.detached.add(name)

        return record

    def violations(self) -> dict[str, str]:
        """Module name -> why its fast path does not apply to the last forward pass."""
        n = self.samples
        found: dict[str, str] = {}
        for name, record in self.calls.items():
            if len(record) > 1:
                found[name] = f"called {len(record)} times in one forward pass"
            elif record and n is not None and record[0][0] is None:
                found[name] = "its first input is not a tensor passed by position"
            elif record and n is not None and record[0] != (n, n):
                found[name] = (
                    f"its input/output have {record[0][0]}/{record[0][1]} rows on dim 0 "
                    f"for a batch of {n} samples"
                )
        return found

    def detached_inputs(self) -> set[str]:
        """Watched modules whose input did not require grad in the last forward pass.

        A backward pass taken only with respect to the model's input would not
        reach them (e.g. a head after a ``torch.no_grad`` feature extractor).
        """
        return set(self.detached)

    def reached(self) -> set[str]:
        """The watched modules called in the last forward pass."""
        return {name for name, record in self.calls.items() if record}

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self.handles:
            handle.remove()


def per_sample_norms_by_loop(
    model: nn.Module,
    names: list[str],
    x: Tensor,
    targets: Tensor,
    objective: Callable[[Tensor, Tensor], Tensor],
) -> dict[str, Tensor]:
    """``||dL_i/dtheta||^2`` per sample for the named parameters, one autograd call per sample.

    The model runs as it is (its own autograd semantics: ``torch.no_grad``
    blocks, tied weights, hooks), through ``torch.func.functional_call`` with
    fresh copies of its parameters, so the model is not changed.

    Args:
        model: An eval-mode model.
        names: Parameter names.
        x: ``(n, ...)`` inputs.
        targets: ``(n,)`` targets of ``objective``.
        objective: ``(output, target) -> per-sample losses``.

    Returns:
        ``{name: (n,) float64 squared norms}``.
    """
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    state = {**dict(model.named_buffers()), **params}
    chosen = [params[n] for n in names]
    norms = {n: torch.zeros(len(x), dtype=torch.float64) for n in names}
    for i in range(len(x)):
        with torch.enable_grad():
            out = functional_call(model, state, (x[i : i + 1],))
            loss = objective(out, targets[i : i + 1]).sum()
            grads = torch.autograd.grad(loss, chosen, allow_unused=True)
        for n, g in zip(names, grads, strict=True):
            if g is not None:
                norms[n][i] = g.detach().double().square().sum().cpu()
    return norms


def _probe_loss(out: Tensor, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    weights = torch.randn(out.shape, generator=gen, dtype=out.dtype).to(out.device)
    return (out * weights).sum()


def same_gradients(reference: nn.Module, candidate: nn.Module, x: Tensor) -> bool:
    """Whether two models agree in outputs and in the gradients of a random projection of them.

    Both models are called through ``functional_call`` with the same fresh
    parameter copies; gradients are compared with respect to every parameter
    and, for floating inputs, the input. BackPACK's fx converter may rewrite a
    model (e.g. drop a ``torch.no_grad`` block): its result is used only when
    this holds.

    Args:
        reference: The model as the user wrote it.
        candidate: The rewritten model (same parameter names).
        x: A probe batch.

    Returns:
        ``True`` when outputs and gradients agree to floating-point tolerance.
    """
    results = []
    for model in (reference, candidate):
        params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
        xin = x.detach().clone().requires_grad_(True) if x.is_floating_point() else x
        wrt = list(params.values()) + ([xin] if x.is_floating_point() else [])
        with torch.enable_grad():
            out = functional_call(model, {**dict(model.named_buffers()), **params}, (xin,))
            grads = torch.autograd.grad(_probe_loss(out), wrt, allow_unused=True)
        filled = [
            g if g is not None else torch.zeros_like(w) for g, w in zip(grads, wrt, strict=True)
        ]
        results.append((out.detach(), filled))
    (out_a, grads_a), (out_b, grads_b) = results
    tol = 1e-4 if out_a.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-9
    if out_a.shape != out_b.shape or not torch.allclose(out_a, out_b, rtol=tol, atol=tol):
        return False
    return all(
        a.shape == b.shape and torch.allclose(a, b, rtol=tol, atol=tol * (1 + a.abs().max()))
        for a, b in zip(grads_a, grads_b, strict=True)
    )


def agree(fast: Tensor, slow: Tensor, dtype: torch.dtype) -> bool:
    """Whether per-sample squared norms of the fast engine match the loop's (scale-aware)."""
    fast, slow = fast.detach().double().cpu(), slow.detach().double().cpu()
    if fast.shape != slow.shape:
        return False
    rtol = 1e-3 if dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-7
    scale = float(slow.abs().max()) if slow.numel() else 0.0
    return bool(torch.allclose(fast, slow, rtol=rtol, atol=rtol * scale + 1e-30))
