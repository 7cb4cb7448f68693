"""The fast Fisher engine: a BackPACK first-order extension with per-layer fast paths.

:class:`PerSampleFisher` is a BackPACK ``FirstOrderBackpropExtension``. During
one backward pass of the summed per-sample objective ``sum_i L_i`` it stores
on every supported parameter ``theta``::

    sq_norms[i] = ||dL_i/dtheta||^2          (N,)  -> the trace of the Fisher
    diag        = sum_i (dL_i/dtheta)^2      same shape as theta (optional)

Per-layer support is one table, :data:`FAST_PATHS`, keyed by module type
(add your own with :func:`register_fast_path`):

* ``nn.Linear``: with input ``a_i`` and output gradient ``b_i`` the per-sample
  weight gradient is the outer product ``b_i a_i^T``, so
  ``||g_i||^2 = ||a_i||^2 ||b_i||^2`` (the "ghost norm", never forming
  ``g_i``) and ``sum_i g_i^2 = (b^2)^T (a^2)``, one matrix product. With extra
  (sequence) dimensions ``g_i = B_i^T A_i`` and the norm is either
  ``<A_i A_i^T, B_i B_i^T>`` (Gram form) or taken from ``g_i`` directly,
  whichever costs fewer FLOPs.
* ``nn.Conv2d`` (``groups=1``, zero padding): with the unfolded input ``U_i``
  (``C_in k^2 x P``) and output gradient ``B_i`` (``C_out x P``),
  ``g_i = B_i U_i^T``. The norm uses the Gram form ``<U_i^T U_i, B_i^T B_i>``
  when ``P (C_in k^2 + C_out) < 1.2 C_in k^2 C_out`` (small feature maps, where
  it is cheaper) and explicit per-sample gradients otherwise: on large maps
  for 8 samples at a time as one convolution whose groups are the samples
  (``conv2d_weight`` with ``groups=8``), which runs near the speed of the
  batched weight gradient; on small maps as ``B_i U_i^T`` by batched matmul,
  one sample at a time to keep the result in cache.
* ``nn.BatchNorm1d/2d`` in eval mode (running statistics): with
  ``xhat = (x - mu) / sqrt(var + eps)``, ``g_i(gamma) = sum_p b_ip xhat_ip``
  and ``g_i(beta) = sum_p b_ip``, over positions ``p``.

Parameters of other modules go to the torch.func fallback
(:mod:`fisherlab.fisher.functorch_engine`).

The pass runs ``loss.backward(inputs=[x])``: autograd then skips the batched
weight gradients, which the per-sample quantities replace, so the cost stays
close to one forward and backward pass.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from backpack import backpack, extend
from backpack.custom_module.graph_utils import convert_module_to_backpack
from backpack.extensions.backprop_extension import FAIL_SILENT
from backpack.extensions.firstorder.base import (
    FirstOrderBackpropExtension,
    FirstOrderModuleExtension,
)
from torch import Tensor, nn
from torch.nn.utils import parametrize

from fisherlab.fisher.checks import CallMonitor, same_gradients

SAVEFIELD = "fisherlab_fisher"
GROUPED_MIN_POSITIONS = 128
"""Convolutions with more output positions than this get per-sample gradients as one
grouped convolution (8 samples a call); smaller maps use unfold + batched matmul per
sample, which is faster there (measured on the 2-core CPU, see benchmarks/)."""
_CHUNK_BYTES = 64 * 2**20


def _chunks(n: int, per_sample_numel: int, itemsize: int) -> list[slice]:
    size = max(1, _CHUNK_BYTES // max(1, per_sample_numel * itemsize))
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


def _slices(n: int, size: int) -> list[slice]:
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def _from_per_sample(grads: Tensor, diagonal: bool) -> tuple[Tensor, Tensor | None]:
    """Squared norms and summed squares of explicit per-sample gradients (N, ...)."""
    squared = grads.square()
    sq = squared.flatten(1).sum(1)
    return sq, (squared.sum(0) if diagonal else None)


class _LinearFisher(FirstOrderModuleExtension):
    """``nn.Linear``: ghost norms without sequence dims, Gram or direct with them."""

    def __init__(self) -> None:
        super().__init__(params=["weight", "bias"])

    def weight(self, ext, module, g_inp, g_out, bpq):
        a, b = module.input0, g_out[0]
        if a.dim() == 2:
            a2, b2 = a.square(), b.square()
            sq = a2.sum(1) * b2.sum(1)
            return sq, (b2.T @ a2 if ext.diagonal else None)
        a, b = a.flatten(1, -2), b.flatten(1, -2)  # (N, T, d)
        t, d_in, d_out = a.shape[1], a.shape[2], b.shape[2]
        if not ext.diagonal and t * t * (d_in + d_out) < t * d_in * d_out:
            gram_a = torch.bmm(a, a.transpose(1, 2))
            gram_b = torch.bmm(b, b.transpose(1, 2))
            return (gram_a * gram_b).sum((1, 2)), None
        sqs, diag = [], None
        for s in _chunks(a.shape[0], d_in * d_out, a.element_size()):
            sq, dg = _from_per_sample(torch.bmm(b[s].transpose(1, 2), a[s]), ext.diagonal)
            sqs.append(sq)
            diag = dg if diag is None else (diag + dg if dg is not None else None)
        return torch.cat(sqs), diag

    def bias(self, ext, module, g_inp, g_out, bpq):
        b = g_out[0]
        gb = b if b.dim() == 2 else b.flatten(1, -2).sum(1)
        return _from_per_sample(gb, ext.diagonal)


class _Conv2dFisher(FirstOrderModuleExtension):
    """``nn.Conv2d`` with ``groups=1``: Gram form, or per-sample grads as one grouped conv."""

    def __init__(self) -> None:
        super().__init__(params=["weight", "bias"])

    @staticmethod
    def use_gram(module: nn.Conv2d, positions: int) -> bool:
        """Whether the Gram form costs fewer FLOPs than per-sample gradients."""
        k = module.weight[0].numel()
        c_out = module.out_channels
        return positions * (k + c_out) < 1.2 * k * c_out

    @staticmethod
    def per_sample_grads(module: nn.Conv2d, x: Tensor, g: Tensor) -> Tensor:
        """``(n, C_out, C_in, kh, kw)`` per-sample weight gradients.

        The samples of the chunk become the groups of one convolution, so a
        single ``conv2d_weight`` call computes all of them.
        """
        n, c_in = x.shape[:2]
        c_out = g.shape[1]
        grads = torch.nn.grad.conv2d_weight(
            x.reshape(1, n * c_in, *x.shape[2:]),
            (n * c_out, c_in, *module.kernel_size),
            g.reshape(1, n * c_out, *g.shape[2:]),
            stride=module.stride,
            padding=conv_padding(module),
            dilation=module.dilation,
            groups=n,
        )
        return grads.view(n, c_out, c_in, *module.kernel_size)

    def weight(self, ext, module, g_inp, g_out, bpq):
        x, g = module.input0, g_out[0]
        n, positions = g.shape[0], g.shape[2] * g.shape[3]
        if not ext.diagonal and self.use_gram(module, positions):
            return torch.cat([self.gram_norms(module, x[s], g[s]) for s in _slices(n, 8)]), None
        grouped = positions > GROUPED_MIN_POSITIONS
        sqs, diag = [], None
        for s in _slices(n, 8 if grouped else 1):
            if grouped:
                grads = self.per_sample_grads(module, x[s], g[s])
            else:
                u = self.unfold(module, x[s])
                grads = torch.bmm(g[s].flatten(2), u.transpose(1, 2))
            sq, dg = _from_per_sample(grads, ext.diagonal)
            sqs.append(sq)
            if dg is not None:
                diag = dg if diag is None else diag + dg
        return torch.cat(sqs), (diag.view_as(module.weight) if diag is not None else None)

    @staticmethod
    def unfold(module: nn.Conv2d, x: Tensor) -> Tensor:
        """The ``(n, C_in k^2, P)`` patches of ``x`` that the convolution multiplies."""
        return F.unfold(x, module.kernel_size, module.dilation, conv_padding(module), module.stride)

    def gram_norms(self, module: nn.Conv2d, x: Tensor, g: Tensor) -> Tensor:
        """``||g_i||^2 = <U_i^T U_i, B_i^T B_i>`` without forming ``g_i``."""
        u = self.unfold(module, x)
        b = g.flatten(2)
        gram_u = torch.bmm(u.transpose(1, 2), u)
        gram_b = torch.bmm(b.transpose(1, 2), b)
        return (gram_u * gram_b).sum((1, 2))

    def bias(self, ext, module, g_inp, g_out, bpq):
        return _from_per_sample(g_out[0].sum((2, 3)), ext.diagonal)


class _BatchNormFisher(FirstOrderModuleExtension):
    """``nn.BatchNorm1d/2d`` in eval mode: per-sample grads from running statistics.

    With ``r = 1/sqrt(var + eps)``: ``g_i(gamma) = r (sum_p b_ip x_ip - mu sum_p b_ip)``,
    which avoids forming ``xhat``.
    """

    def __init__(self) -> None:
        super().__init__(params=["weight", "bias"])

    @staticmethod
    def _flat(t: Tensor) -> Tensor:
        return t.unsqueeze(2) if t.dim() == 2 else t.flatten(2)  # (N, C, P)

    def weight(self, ext, module, g_inp, g_out, bpq):
        x, g = self._flat(module.input0), self._flat(g_out[0])
        s1 = torch.linalg.vecdot(g, x, dim=2)
        s0 = g.sum(2)
        r = torch.rsqrt(module.running_var + module.eps)
        return _from_per_sample(r * (s1 - module.running_mean * s0), ext.diagonal)

    def bias(self, ext, module, g_inp, g_out, bpq):
        return _from_per_sample(self._flat(g_out[0]).sum(2), ext.diagonal)


FAST_PATHS: dict[type[nn.Module], Callable[[], FirstOrderModuleExtension]] = {
    nn.Linear: _LinearFisher,
    nn.Conv2d: _Conv2dFisher,
    nn.BatchNorm1d: _BatchNormFisher,
    nn.BatchNorm2d: _BatchNormFisher,
}
"""Module type -> BackPACK module extension computing its per-sample quantities."""


def register_fast_path(
    module_type: type[nn.Module], extension: Callable[[], FirstOrderModuleExtension]
) -> None:
    """Add (or replace) the fast path of a module type.

    ``extension()`` must build a BackPACK ``FirstOrderModuleExtension`` whose
    method per parameter returns ``(sq_norms, diag)``: the ``(N,)``
    per-sample squared gradient norms and, when ``ext.diagonal`` is true, the
    summed squares ``sum_i g_i^2`` (else ``None``), as the built-in paths do.
    The fast path is then used for every module of exactly that type (checked
    against the torch.func fallback by the tests of your own code, please).

    Args:
        module_type: The ``nn.Module`` subclass.
        extension: A factory of its module extension.

    Raises:
        TypeError: If ``module_type`` is not an ``nn.Module`` subclass.

    Example:
        >>> from torch import nn
        >>> register_fast_path(nn.Linear, FAST_PATHS[nn.Linear])  # the built-in one again
        >>> fast_path_reason(nn.Linear(2, 2)) is None
        True
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"module_type must be an nn.Module subclass, got {module_type!r}")
    FAST_PATHS[module_type] = extension


FAST_PATH_PARAMETERS = ("weight", "bias")
"""The parameter names a fast path computes; a module's other parameters (e.g. the
``weight_g``/``weight_v`` of the old ``torch.nn.utils.weight_norm``) use the fallback."""


def conv_padding(module: nn.Conv2d) -> tuple[int, int]:
    """The symmetric zero padding of a convolution, also for ``padding="valid"/"same"``.

    Raises:
        ValueError: For ``"same"`` padding that needs an asymmetric pad (an even
            effective kernel); :func:`fast_path_reason` sends those to the fallback.
    """
    if module.padding == "valid":
        return (0, 0)
    if module.padding == "same":
        total = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size, strict=True)]
        if any(t % 2 for t in total):
            raise ValueError("'same' padding with an even effective kernel is asymmetric")
        return (total[0] // 2, total[1] // 2)
    return tuple(module.padding)  # type: ignore[return-value]


def fast_path_reason(module: nn.Module) -> str | None:
    """Why ``module`` cannot use a fast path, or ``None`` if it can.

    Only the module's own type counts (a subclass may compute something else),
    and a parametrized module (``torch.nn.utils.parametrize``) computes its
    weight from other tensors, so it uses the fallback.
    """
    if parametrize.is_parametrized(module):
        return "a parametrized module (its weight is computed from other tensors)"
    if type(module) not in FAST_PATHS:
        return f"no fast path for {type(module).__name__}"
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or module.padding_mode != "zeros":
            return "grouped or non-zero-padded convolution"
        try:
            conv_padding(module)
        except ValueError as exc:
            return str(exc)
    return None


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


def prepare_backpack_model(
    model: nn.Module, modules: list[str], example: Tensor, convert: bool = True
) -> nn.Module:
    """A deep copy of ``model`` ready for :class:`PerSampleFisher`.

    The copy is in eval mode with every parameter requiring grad. In-place
    activations are made out-of-place and, where torch.fx can trace the model,
    BackPACK's converter rewrites in-place additions (torchvision's
    ``out += identity``); the converted model is kept only if it has the same
    parameter names and module names and reproduces the model's outputs *and
    gradients* on ``example`` (:func:`fisherlab.fisher.checks.same_gradients`:
    the converter drops ``torch.no_grad`` blocks, for one). Only the modules
    named in ``modules`` are extended (hooked). The caller's model is not touched.
    The engine first tries without the converter (``convert=False``) and
    converts only when BackPACK fails on the model as it is.

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
    for name in modules:
        extend(by_name[name])
    return work


def backpack_pass(
    model: nn.Module,
    x: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    diagonal: bool,
    monitor: CallMonitor | None = None,
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

    Args:
        model: A model from :func:`prepare_backpack_model`.
        x: The input batch.
        loss_fn: Maps the model output to per-sample losses ``(N,)``.
        diagonal: Also compute ``sum_i g_i^2``.
        monitor: Checks the forward pass (:class:`~fisherlab.fisher.checks.CallMonitor`).

    Returns:
        ``(losses, violations)``: the detached per-sample losses (``None`` when
        a violation stopped the pass) and module name -> reason.
    """
    floating = x.is_floating_point()
    xin = x.detach().requires_grad_(True) if floating else x
    with backpack(PerSampleFisher(diagonal)):
        out = model(xin)
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
            losses.sum().backward(inputs=([xin] if floating else []) + params)
    for p in params:
        p.grad = None
    return losses.detach(), {}
