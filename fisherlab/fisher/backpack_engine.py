"""The fast Fisher engine: a BackPACK first-order extension with per-layer fast paths.

:class:`PerSampleFisher` is a BackPACK ``FirstOrderBackpropExtension``. During
one backward pass of the summed per-sample objective ``sum_i L_i`` it stores
on every supported parameter ``theta``::

    sq_norms[i] = ||dL_i/dtheta||^2          (N,)  -> the trace of the Fisher
    diag        = sum_i (dL_i/dtheta)^2      same shape as theta (optional)

Per-layer support is one table, :data:`~fisherlab.fisher.fast_paths.FAST_PATHS`,
keyed by module type, with the closed forms in :mod:`fisherlab.fisher.fast_paths`
(Linear, Conv1d/Conv2d with any groups, BatchNorm, LayerNorm, GroupNorm,
Embedding, MultiheadAttention's projections; add your own with
:func:`register_fast_path`); the names are re-exported here. Parameters of
other modules go to the torch.func fallback
(:mod:`fisherlab.fisher.functorch_engine`).

A module's fast path runs in BackPACK's module backward hook. A module whose
output the model then modifies in place (torchvision's ``out += identity``,
MobileNetV3's and EfficientNet's ``result += input``) cannot carry that hook
("Output 0 of BackwardHookFunction is a view and is being modified inplace"):
such modules are found on the probe batch and run the same fast path from a
tensor hook on their output instead, which sees the gradient of the output as
the module returned it. A module whose *input* is modified in place after the
call goes to the fallback (its saved input would be wrong).

The pass runs ``loss.backward(inputs=[x])``: autograd then skips the batched
weight gradients, which the per-sample quantities replace, so the cost stays
close to one forward and backward pass.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import torch
from backpack import backpack, extend
from backpack.context import CTX
from backpack.custom_module.graph_utils import convert_module_to_backpack
from backpack.extensions.backprop_extension import FAIL_SILENT
from backpack.extensions.firstorder.base import FirstOrderBackpropExtension
from torch import Tensor, nn
from torch.func import functional_call

from fisherlab.fisher.checks import CallMonitor, same_gradients
from fisherlab.fisher.fast_paths import (
    FAST_PATH_PARAMETERS,
    FAST_PATHS,
    GROUPED_MIN_POSITIONS,
    PARAMETERS,
    Refused,
    conv_padding,
    fast_path_parameters,
    fast_path_reason,
    from_per_sample,
    register_fast_path,
)

__all__ = [
    "FAST_PATHS",
    "FAST_PATH_PARAMETERS",
    "GROUPED_MIN_POSITIONS",
    "PARAMETERS",
    "SAVEFIELD",
    "PerSampleFisher",
    "Refused",
    "backpack_pass",
    "conv_padding",
    "copy_model",
    "fast_path_parameters",
    "fast_path_reason",
    "prepare_backpack_model",
    "register_fast_path",
]

SAVEFIELD = "fisherlab_fisher"


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model``, also of models that hold computed (non-leaf) tensors.

    The old ``torch.nn.utils.weight_norm`` keeps the computed ``weight`` as a
    plain attribute, which ``copy.deepcopy`` refuses; it is copied detached
    here (the module's pre-hook recomputes it at every forward) and the
    caller's model is left as it was.
    """
    computed = [
        (module, key, value)
        for module in model.modules()
        for key, value in vars(module).items()
        if isinstance(value, Tensor) and not value.is_leaf
    ]
    try:
        for module, key, value in computed:
            module.__dict__[key] = value.detach()
        return copy.deepcopy(model)
    finally:
        for module, key, value in computed:
            module.__dict__[key] = value


class PerSampleFisher(FirstOrderBackpropExtension):
    """BackPACK extension storing per-sample squared gradient norms (and squares).

    Each supported parameter gets ``param.fisherlab_fisher = (sq_norms, diag)``
    where ``sq_norms`` has shape ``(N,)`` and ``diag`` is ``sum_i g_i^2`` (or
    ``None`` when ``diagonal`` is false). The loss must be a sum of independent
    per-sample terms, as for any BackPACK first-order extension.

    Args:
        diagonal: Also accumulate the elementwise squares.
    """

    def __init__(self, diagonal: bool = False) -> None:
        super().__init__(
            savefield=SAVEFIELD,
            module_exts={t: make() for t, make in FAST_PATHS.items()},
            fail_mode=FAIL_SILENT,
        )
        self.diagonal = diagonal


def _first(output: Any) -> Any:
    return output[0] if isinstance(output, tuple | list) and output else output


def modified_in_place(model: nn.Module, modules: list[str], example: Tensor) -> dict[str, str]:
    """Which named modules have their input or output modified in place later in a forward pass.

    One forward pass of ``model`` on ``example`` (with gradients, as the
    engine runs it) records the version counter of each module's tensor
    inputs and output when it returns and compares them after the pass.

    Args:
        model: The prepared model (in-place activations already made out-of-place).
        modules: Names of the modules to check.
        example: A probe batch.

    Returns:
        ``{module name: "input" or "output"}`` for the modules concerned.
    """
    by_name = dict(model.named_modules())
    seen: dict[str, list[tuple[list[tuple[Tensor, int]], Any, int]]] = {}

    def recorder(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple, output: Any) -> None:
            inputs = [(a, a._version) for a in args if isinstance(a, Tensor)]
            out = _first(output)
            version = out._version if isinstance(out, Tensor) else 0
            seen.setdefault(name, []).append((inputs, out, version))

        return record

    handles = [by_name[name].register_forward_hook(recorder(name)) for name in modules]
    try:
        with torch.enable_grad():
            xin = example.detach().requires_grad_(True) if example.is_floating_point() else example
            model(xin)
    finally:
        for handle in handles:
            handle.remove()
    found: dict[str, str] = {}
    for name, calls in seen.items():
        for inputs, out, version in calls:
            if any(a._version != v for a, v in inputs):
                found[name] = "input"
            elif isinstance(out, Tensor) and out._version != version:
                found.setdefault(name, "output")
    return found


def _hook_output(module: nn.Module) -> None:
    """Run ``module``'s fast path from a tensor hook on its output (no module backward hook).

    Used for modules whose output the model modifies in place: a hook
    registered on the output when the module returns fires with the gradient
    of the output as returned, before the in-place change. It computes only
    while a :class:`PerSampleFisher` is active, as BackPACK's hooks do.
    """
    extension = FAST_PATHS[type(module)]()

    def forward_hook(mod: nn.Module, args: tuple, output: Any) -> None:
        active = [e for e in CTX.get_active_exts() if isinstance(e, PerSampleFisher)]
        out = _first(output)
        if not active or not isinstance(out, Tensor) or not out.requires_grad:
            return

        def on_grad(grad: Tensor) -> None:
            for i, value in enumerate(args):
                setattr(mod, f"input{i}", value)
            mod.output = out
            try:
                for ext in active:
                    extension(ext, mod, (None,), (grad, None))
            finally:
                for i in range(len(args)):
                    delattr(mod, f"input{i}")
                del mod.output

        out.register_hook(on_grad)

    module.register_forward_hook(forward_hook)


def _keep_call_arguments(module: nn.MultiheadAttention) -> None:
    """Store the arguments of each call (masks, ``is_causal``) for the attention's fast path."""
    signature = inspect.signature(module.forward)

    def pre_hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
        try:
            mod.fisherlab_kwargs = dict(signature.bind(*args, **kwargs).arguments)
        except TypeError:
            mod.fisherlab_kwargs = None

    module.register_forward_pre_hook(pre_hook, with_kwargs=True)


def prepare_backpack_model(
    model: nn.Module, modules: list[str], example: Tensor, convert: bool = True
) -> nn.Module:
    """A deep copy of ``model`` ready for :class:`PerSampleFisher`.

    The copy is in eval mode with every parameter requiring grad. In-place
    activations are made out-of-place and, with ``convert``, where torch.fx
    can trace the model, BackPACK's converter rewrites in-place additions; the
    converted model is kept only if it has the same parameter names and
    module names and reproduces the model's outputs *and gradients* on
    ``example`` (:func:`fisherlab.fisher.checks.same_gradients`: the converter
    drops ``torch.no_grad`` blocks, for one). The modules named in ``modules``
    are then hooked: by BackPACK (``extend``), or, when the model modifies
    their output in place (:func:`modified_in_place` on ``example``), by a
    tensor hook on their output (modules of other types in ``modules`` own
    broadcast parameters, see :func:`backpack_pass`, and are not hooked).
    Modules whose input is modified in place are
    not hooked; they are listed in the copy's ``fisherlab_refused``
    attribute (name -> reason) for the engine to move to the fallback. The
    caller's model is not touched. The engine first tries without the
    converter (``convert=False``) and converts only when BackPACK fails.

    Args:
        model: The user's model.
        modules: Names of the modules whose parameters use a fast path.
        example: An input batch to validate the conversion with.
        convert: Try BackPACK's converter.

    Returns:
        The prepared copy.
    """
    work = copy_model(model).eval()
    for m in work.modules():
        if getattr(m, "inplace", False) is True:
            m.inplace = False
    if convert:
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                converted = convert_module_to_backpack(copy_model(work), False).eval()
            same_names = [n for n, _ in converted.named_parameters()] == [
                n for n, _ in work.named_parameters()
            ] and set(modules) <= set(dict(converted.named_modules()))
            if same_names and same_gradients(work, converted, example[:1]):
                work = converted
        except Exception:  # noqa: BLE001 - untraceable models keep their own forward
            pass
    work.eval()
    for p in work.parameters():
        p.requires_grad_(True)
    by_name = dict(work.named_modules())
    modules = [name for name in modules if type(by_name[name]) in FAST_PATHS]
    changed = modified_in_place(work, modules, example)
    work.fisherlab_refused = {
        name: "its input is modified in place after the call (the saved input would be wrong)"
        for name, what in changed.items()
        if what == "input"
    }
    for name in modules:
        module = by_name[name]
        if isinstance(module, nn.MultiheadAttention):
            _keep_call_arguments(module)
        if name in work.fisherlab_refused:
            continue
        if changed.get(name) == "output":
            _hook_output(module)
        else:
            extend(module)
    return work


def backpack_pass(
    model: nn.Module,
    x: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    diagonal: bool,
    monitor: CallMonitor | None = None,
    broadcast: dict[str, Tensor] | None = None,
) -> tuple[Tensor | None, dict[str, str]]:
    """One forward and backward pass with :class:`PerSampleFisher`.

    The results stay on the fast-path parameters (``param.fisherlab_fisher``)
    for the caller to take. No backward runs if a loss is not finite, or if
    ``monitor`` finds a module that broke a fast path's assumptions in the
    forward pass (then the caller moves it to the fallback and tries again).
    The backward pass runs with ``inputs=[x]``, so autograd skips the batched
    weight gradients, plus the parameters of watched modules whose input did
    not require grad (a path the input does not reach); for integer inputs
    (token ids) it runs with respect to the parameters instead. Their ``.grad``
    is cleared afterwards.

    ``broadcast`` parameters (shape ``(1, ...)``, broadcast over the batch by the
    model, e.g. a ViT's class token and position embedding) are replaced for
    the pass by ``N`` stacked copies, one per sample
    (``torch.func.functional_call``); the gradient of copy ``i`` is then
    ``dL_i/dtheta``, and its squared norms (and squares) are stored on the
    parameter like a fast path's.

    Args:
        model: A model from :func:`prepare_backpack_model`.
        x: The input batch.
        loss_fn: Maps the model output to per-sample losses ``(N,)``.
        diagonal: Also compute ``sum_i g_i^2``.
        monitor: Checks the forward pass (:class:`~fisherlab.fisher.checks.CallMonitor`).
        broadcast: Parameter name -> parameter of ``model`` to copy per sample.

    Returns:
        ``(losses, violations)``: the detached per-sample losses (``None`` when
        a violation stopped the pass) and module name -> reason.
    """
    floating = x.is_floating_point()
    xin = x.detach().requires_grad_(True) if floating else x
    n = x.shape[0]
    copies = {
        name: p.detach().expand(n, *p.shape[1:]).clone().requires_grad_(True)
        for name, p in (broadcast or {}).items()
    }
    with backpack(PerSampleFisher(diagonal)):
        out = functional_call(model, copies, (xin,)) if copies else model(xin)
        violations = monitor.violations() if monitor is not None else {}
        if violations:
            return None, violations
        if floating and monitor is not None:
            by_name = dict(model.named_modules())
            cut = monitor.detached_inputs()
            params = [p for m in sorted(cut) for p in by_name[m].parameters(recurse=False)]
        else:
            params = [] if floating else [p for p in model.parameters() if p.requires_grad]
        losses = loss_fn(out)
        if torch.isfinite(losses).all():
            wrt = ([xin] if floating else []) + params + list(copies.values())
            with warnings.catch_warnings():
                # an Embedding's input (ids) needs no gradient: its hook still fires, as wanted
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                losses.sum().backward(inputs=wrt)
    for p in params:
        p.grad = None
    for name, copy_ in copies.items():
        if copy_.grad is not None:
            param = (broadcast or {})[name]
            sq, diag = from_per_sample(copy_.grad, diagonal)
            setattr(param, SAVEFIELD, (sq, diag.view(param.shape) if diag is not None else None))
    return losses.detach(), {}
