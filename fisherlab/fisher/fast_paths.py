"""The per-module fast paths of the Fisher engine: one table of closed forms.

A fast path computes, in the backward pass, the per-sample gradients of a
module's parameters from the module's saved input ``a`` and the gradient of the
summed objective with respect to its output ``b`` (row ``i`` of both belongs to
sample ``i``). For every parameter ``theta`` it returns::

    sq_norms[i] = ||dL_i/dtheta||^2          (N,)  -> the trace of the Fisher
    diag        = sum_i (dL_i/dtheta)^2      same shape as theta (or None)

:data:`FAST_PATHS` maps a module type (the exact type: a subclass may compute
something else) to a BackPACK ``FirstOrderModuleExtension`` factory, and
:data:`PARAMETERS` names the parameters each computes; :func:`fast_path_reason`
says why a module cannot use one. The closed forms:

* ``nn.Linear``: ``g_i = b_i a_i^T``, so ``||g_i||^2 = ||a_i||^2 ||b_i||^2``
  (the "ghost norm") and ``sum_i g_i^2 = (b^2)^T (a^2)``. With extra
  (sequence) dimensions ``g_i = B_i^T A_i``, and the norm is
  ``<A_i A_i^T, B_i B_i^T>`` (Gram form) or taken from ``g_i``, whichever
  costs fewer FLOPs.
* ``nn.Conv1d`` and ``nn.Conv2d`` (any ``groups``, zero padding; a Conv1d is
  the Conv2d of height 1): per group ``g``, with the unfolded input ``U_ig``
  (``C_in/G k x P``) and output gradient ``B_ig`` (``C_out/G x P``),
  ``g_ig = B_ig U_ig^T``. The norm uses the Gram form
  ``sum_g <U_ig^T U_ig, B_ig^T B_ig>`` when
  ``P (C_in/G k + C_out/G) < 1.2 (C_in/G k) (C_out/G)``, else explicit
  per-sample gradients: on large maps for 8 samples at a time as one
  convolution whose groups are samples x groups (``conv2d_weight``), on
  small maps by batched matmul, as many samples at a time as keep the result
  within about 2 MiB. A 1x1 convolution with stride 1 and one group is a
  Linear over positions and takes the Linear's path.
* ``nn.BatchNorm1d/2d`` in eval mode: with ``r = 1/sqrt(var + eps)``,
  ``g_i(gamma) = r (sum_p b_ip a_ip - mu sum_p b_ip)`` and
  ``g_i(beta) = sum_p b_ip`` over positions ``p``.
* ``nn.LayerNorm`` and ``nn.GroupNorm``: with the normalised input ``xhat``
  (recomputed from ``a`` with the module's own function and no affine),
  ``g_i(gamma) = sum_p b_ip * xhat_ip`` and ``g_i(beta) = sum_p b_ip``, summed
  over the positions that share an affine entry.
* ``nn.Embedding`` (integer ids): ``g_i = sum_p e_{id_ip} b_ip^T``, the output
  gradients summed per distinct id of the sample (rows of ``padding_idx`` get
  none, as in torch). ``max_norm`` (the forward renormalises the weight in
  place) and ``scale_grad_by_freq`` (the gradient is scaled by counts over the
  whole batch) are refused.
* ``nn.MultiheadAttention`` (``batch_first=True``; ``in_proj_weight`` or
  ``q/k/v_proj_weight``, ``in_proj_bias``, and the ``out_proj`` Linear, which
  the attention uses without calling it): the attention core is recomputed from
  the saved projections, and one batched backward of it through the module's
  output gradient gives the gradients ``dq, dk, dv`` of the projections (the
  samples do not mix: each row of the batch attends within itself). Each
  projection is then a Linear with sequence dimensions: ``g_i(W_q) = dq_i^T
  q_in_i`` and so on, and ``g_i(out_proj) = b_i^T c_i`` with the attention
  context ``c``. ``bias_k``/``bias_v`` use the fallback; a call whose
  attention weights are used downstream, or whose key/value do not have the
  query's samples, is refused.

A fast path may also answer :class:`Refused` for a call that breaks its
assumptions (e.g. a LayerNorm that normalises over the sample dimension); the
engine then moves the module to the torch.func fallback with that reason.
Every fast path is also compared with a per-sample autograd loop on a probe
batch when the engine is built (:mod:`fisherlab.fisher.checks`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from backpack.extensions.firstorder.base import FirstOrderModuleExtension
from torch import Tensor, nn
from torch.nn.utils import parametrize

GROUPED_MIN_POSITIONS = 128
"""Convolutions with more output positions than this get per-sample gradients as one
grouped convolution (8 samples a call); smaller maps use unfold + batched matmul per
sample, which is faster there (measured on the 2-core CPU, see benchmarks/)."""
_CHUNK_BYTES = 64 * 2**20
_CACHE_BYTES = 2 * 2**20


@dataclass(frozen=True)
class Refused:
    """A fast path's answer for a call that breaks its assumptions.

    Attributes:
        reason: Why, for the engine's record (the module moves to the fallback).
    """

    reason: str


def _chunks(n: int, per_sample_numel: int, itemsize: int) -> list[slice]:
    size = max(1, _CHUNK_BYTES // max(1, per_sample_numel * itemsize))
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


def _slices(n: int, size: int) -> list[slice]:
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def from_per_sample(grads: Tensor, diagonal: bool) -> tuple[Tensor, Tensor | None]:
    """Squared norms and summed squares of explicit per-sample gradients (N, ...)."""
    squared = grads.square()
    sq = squared.flatten(1).sum(1)
    return sq, (squared.sum(0) if diagonal else None)


def linear_weight(a: Tensor, b: Tensor, diagonal: bool) -> tuple[Tensor, Tensor | None]:
    """Per-sample ``||B_i^T A_i||^2`` (and summed squares) for inputs ``a`` and output grads ``b``.

    Args:
        a: ``(N, d_in)`` or ``(N, ..., d_in)`` inputs of a linear map.
        b: ``(N, d_out)`` or ``(N, ..., d_out)`` gradients of its output.
        diagonal: Also return ``sum_i g_i^2`` (shape ``(d_out, d_in)``).

    Returns:
        ``(sq_norms (N,), diag or None)``.
    """
    if a.dim() == 2:
        a2, b2 = a.square(), b.square()
        return a2.sum(1) * b2.sum(1), (b2.T @ a2 if diagonal else None)
    a, b = a.flatten(1, -2), b.flatten(1, -2)  # (N, T, d)
    t, d_in, d_out = a.shape[1], a.shape[2], b.shape[2]
    if not diagonal and t * t * (d_in + d_out) < t * d_in * d_out:
        gram_a = torch.bmm(a, a.transpose(1, 2))
        gram_b = torch.bmm(b, b.transpose(1, 2))
        return (gram_a * gram_b).sum((1, 2)), None
    sqs, diag = [], None
    for s in _chunks(a.shape[0], d_in * d_out, a.element_size()):
        sq, dg = from_per_sample(torch.bmm(b[s].transpose(1, 2), a[s]), diagonal)
        sqs.append(sq)
        diag = dg if diag is None else (diag + dg if dg is not None else None)
    return torch.cat(sqs), diag


def linear_bias(b: Tensor, diagonal: bool) -> tuple[Tensor, Tensor | None]:
    """Per-sample squared norms (and summed squares) of a linear map's bias gradient."""
    return from_per_sample(b if b.dim() == 2 else b.flatten(1, -2).sum(1), diagonal)


class _LinearFisher(FirstOrderModuleExtension):
    """``nn.Linear``: ghost norms without sequence dims, Gram or direct with them."""

    def __init__(self) -> None:
        super().__init__(params=["weight", "bias"])

    def weight(self, ext, module, g_inp, g_out, bpq):
        return linear_weight(module.input0, g_out[0], ext.diagonal)

    def bias(self, ext, module, g_inp, g_out, bpq):
        return linear_bias(g_out[0], ext.diagonal)


def conv_padding(module: nn.Conv1d | nn.Conv2d) -> tuple[int, ...]:
    """The symmetric zero padding of a convolution, also for ``padding="valid"/"same"``.

    Raises:
        ValueError: For ``"same"`` padding that needs an asymmetric pad (an even
            effective kernel); :func:`fast_path_reason` sends those to the fallback.
    """
    if module.padding == "valid":
        return (0,) * len(module.kernel_size)
    if module.padding == "same":
        total = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size, strict=True)]
        if any(t % 2 for t in total):
            raise ValueError("'same' padding with an even effective kernel is asymmetric")
        return tuple(t // 2 for t in total)
    return tuple(module.padding)  # type: ignore[arg-type]


def _geometry(module: nn.Conv1d | nn.Conv2d) -> tuple[tuple[int, int], ...]:
    """Kernel, stride, padding and dilation as 2-D tuples (a Conv1d is a Conv2d of height 1)."""
    padding = conv_padding(module)
    if isinstance(module, nn.Conv1d):
        return (
            (1, module.kernel_size[0]),
            (1, module.stride[0]),
            (0, padding[0]),
            (1, module.dilation[0]),
        )
    return module.kernel_size, module.stride, padding, module.dilation  # type: ignore[return-value]


class _ConvFisher(FirstOrderModuleExtension):
    """``nn.Conv1d``/``nn.Conv2d``, any ``groups``: Gram form, or per-sample grads."""

    def __init__(self) -> None:
        super().__init__(params=["weight", "bias"])

    @staticmethod
    def _as_2d(module: nn.Module, t: Tensor) -> Tensor:
        return t.unsqueeze(2) if isinstance(module, nn.Conv1d) else t

    @staticmethod
    def use_gram(module: nn.Conv1d | nn.Conv2d, positions: int) -> bool:
        """Whether the Gram form costs fewer FLOPs than per-sample gradients (per group)."""
        k = module.weight[0].numel()
        c_out = module.out_channels // module.groups
        return positions * (k + c_out) < 1.2 * k * c_out

    @staticmethod
    def per_sample_grads(module: nn.Conv1d | nn.Conv2d, x: Tensor, g: Tensor) -> Tensor:
        """``(n, C_out, C_in/G, kh, kw)`` per-sample weight gradients of 2-D ``x``, ``g``.

        The samples x groups of the chunk become the groups of one convolution,
        so a single ``conv2d_weight`` call computes all of them.
        """
        kernel, stride, padding, dilation = _geometry(module)
        n, c_in = x.shape[:2]
        c_out = g.shape[1]
        grads = torch.nn.grad.conv2d_weight(
            x.reshape(1, n * c_in, *x.shape[2:]),
            (n * c_out, c_in // module.groups, *kernel),
            g.reshape(1, n * c_out, *g.shape[2:]),
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=n * module.groups,
        )
        return grads.view(n, c_out, c_in // module.groups, *kernel)

    @staticmethod
    def unfold(module: nn.Conv1d | nn.Conv2d, x: Tensor) -> Tensor:
        """The ``(n, G, C_in/G k, P)`` patches of 2-D ``x`` that each group multiplies."""
        kernel, stride, padding, dilation = _geometry(module)
        u = F.unfold(x, kernel, dilation, padding, stride)
        return u.view(u.shape[0], module.groups, -1, u.shape[-1])

    def gram_norms(self, module: nn.Conv1d | nn.Conv2d, x: Tensor, g: Tensor) -> Tensor:
        """``||g_i||^2 = sum_g <U_ig^T U_ig, B_ig^T B_ig>`` without forming ``g_i``."""
        u = self.unfold(module, x)
        b = g.flatten(2).view(g.shape[0], module.groups, -1, u.shape[-1])
        gram_u = torch.matmul(u.transpose(2, 3), u)
        gram_b = torch.matmul(b.transpose(2, 3), b)
        return (gram_u * gram_b).sum((1, 2, 3))

    @staticmethod
    def pointwise(module: nn.Conv1d | nn.Conv2d) -> bool:
        """A 1x1 convolution with stride 1, no padding and one group: a Linear over positions."""
        kernel, stride, padding, _ = _geometry(module)
        return module.groups == 1 and kernel == (1, 1) and stride == (1, 1) and padding == (0, 0)

    def weight(self, ext, module, g_inp, g_out, bpq):
        x, g = self._as_2d(module, module.input0), self._as_2d(module, g_out[0])
        n, positions = g.shape[0], g.shape[2] * g.shape[3]
        if self.pointwise(module):
            sq, diag = linear_weight(
                x.flatten(2).transpose(1, 2), g.flatten(2).transpose(1, 2), ext.diagonal
            )
            return sq, (diag.reshape(module.weight.shape) if diag is not None else None)
        if not ext.diagonal and self.use_gram(module, positions):
            return torch.cat([self.gram_norms(module, x[s], g[s]) for s in _slices(n, 8)]), None
        grouped = positions > GROUPED_MIN_POSITIONS
        # small maps: as many samples per matmul as keep the result within ~2 MiB (in cache)
        per_call = (
            8 if grouped else max(1, _CACHE_BYTES // (module.weight.numel() * x.element_size()))
        )
        sqs, diag = [], None
        for s in _slices(n, per_call):
            if grouped:
                grads = self.per_sample_grads(module, x[s], g[s])
            else:
                u = self.unfold(module, x[s])
                b = g[s].flatten(2).view(u.shape[0], module.groups, -1, u.shape[-1])
                grads = torch.matmul(b, u.transpose(2, 3))
            sq, dg = from_per_sample(grads, ext.diagonal)
            sqs.append(sq)
            if dg is not None:
                diag = dg if diag is None else diag + dg
        return torch.cat(sqs), (diag.reshape(module.weight.shape) if diag is not None else None)

    def bias(self, ext, module, g_inp, g_out, bpq):
        return from_per_sample(g_out[0].flatten(2).sum(2), ext.diagonal)


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
        return from_per_sample(r * (s1 - module.running_mean * s0), ext.diagonal)

    def bias(self, ext, module, g_inp, g_out, bpq):
        return from_per_sample(self._flat(g_out[0]).sum(2), ext.diagonal)


class _LayerNormFisher(FirstOrderModuleExtension):
    """``nn.LayerNorm``: ``g_i(gamma) = sum_p b_ip * xhat_ip``, ``g_i(beta) = sum_p b_ip``."""

    def __init__(self) -> None:
        super().__init__(params=["weight", "bias"])

    @staticmethod
    def _per_sample(module: nn.LayerNorm, t: Tensor) -> Tensor | Refused:
        """Sum ``t`` over the positions between the sample dim and the normalised dims."""
        shape = tuple(module.normalized_shape)
        if t.dim() <= len(shape):
            return Refused("it normalises over the sample dimension")
        return t.reshape(t.shape[0], -1, *shape).sum(1)

    def weight(self, ext, module, g_inp, g_out, bpq):
        x = module.input0
        xhat = F.layer_norm(x, module.normalized_shape, None, None, module.eps)
        per_sample = self._per_sample(module, g_out[0] * xhat)
        return (
            per_sample
            if isinstance(per_sample, Refused)
            else from_per_sample(per_sample, ext.diagonal)
        )

    def bias(self, ext, module, g_inp, g_out, bpq):
        per_sample = self._per_sample(module, g_out[0])
        return (
            per_sample
            if isinstance(per_sample, Refused)
            else from_per_sample(per_sample, ext.diagonal)
        )


class _GroupNormFisher(FirstOrderModuleExtension):
    """``nn.GroupNorm``: ``g_i(gamma_c) = sum_p b_icp xhat_icp``, ``g_i(beta_c) = sum_p b_icp``."""

    def __init__(self) -> None:
        super().__init__(params=["weight", "bias"])

    def weight(self, ext, module, g_inp, g_out, bpq):
        x, b = module.input0, g_out[0]
        xhat = F.group_norm(x, module.num_groups, None, None, module.eps)
        return from_per_sample((b * xhat).flatten(2).sum(2), ext.diagonal)

    def bias(self, ext, module, g_inp, g_out, bpq):
        return from_per_sample(g_out[0].flatten(2).sum(2), ext.diagonal)


class _EmbeddingFisher(FirstOrderModuleExtension):
    """``nn.Embedding``: output gradients summed per (sample, id) pair.

    With ``K`` distinct (sample, id) pairs in the batch, ``r_k = sum_{p: (i, id_ip) = k} b_ip``
    is row ``id`` of ``g_i``; ``||g_i||^2 = sum_{k in i} ||r_k||^2`` and
    ``sum_i g_i^2`` adds ``r_k^2`` into row ``id``. Rows of ``padding_idx`` are zero.
    """

    def __init__(self) -> None:
        super().__init__(params=["weight"])

    def weight(self, ext, module, g_inp, g_out, bpq):
        ids, b = module.input0, g_out[0]
        n, dim, vocab = b.shape[0], b.shape[-1], module.num_embeddings
        ids, b = ids.reshape(n, -1), b.reshape(n, -1, dim)
        if module.padding_idx is not None:
            b = b * (ids != module.padding_idx).unsqueeze(-1)
        sample = torch.arange(n, device=ids.device).unsqueeze(1)
        keys, where = torch.unique((sample * vocab + ids).flatten(), return_inverse=True)
        rows = b.new_zeros(len(keys), dim).index_add_(0, where, b.reshape(-1, dim))
        squared = rows.square()
        sq = b.new_zeros(n).index_add_(0, keys // vocab, squared.sum(1))
        if not ext.diagonal:
            return sq, None
        return sq, b.new_zeros(vocab, dim).index_add_(0, keys % vocab, squared)


class _AttentionFisher(FirstOrderModuleExtension):
    """``nn.MultiheadAttention`` (batch first): its input and output projections.

    Saves its values on ``out_proj``'s parameters too (see the module docs for the maths).
    """

    def __init__(self) -> None:
        super().__init__(params=[])

    def __call__(self, ext, module, g_inp, g_out) -> None:
        """Compute every projection's per-sample quantities and save them on the parameters."""
        results = self.compute(ext, module, g_out)
        params = dict(module.named_parameters())
        for name, value in results.items():
            param = params.get(name)
            if param is not None and param.requires_grad:
                setattr(param, ext.savefield, value)

    @staticmethod
    def _refuse(module: nn.MultiheadAttention, reason: str) -> dict[str, Refused]:
        return {n: Refused(reason) for n, _ in module.named_parameters()}

    def compute(
        self, ext, module: nn.MultiheadAttention, g_out: tuple[Tensor | None, ...]
    ) -> dict[str, tuple[Tensor, Tensor | None] | Refused]:
        """Parameter name -> ``(sq_norms, diag)`` for the attention's projections."""
        inputs = [getattr(module, f"input{i}", None) for i in range(3)]
        kwargs = getattr(module, "fisherlab_kwargs", None)
        grad = g_out[0]
        if any(t is None for t in inputs) or kwargs is None or grad is None:
            return self._refuse(module, "query, key and value were not passed by position")
        if len(g_out) > 1 and g_out[1] is not None and bool(g_out[1].any()):
            return self._refuse(module, "its attention weights are used downstream")
        query, key, value = inputs
        n = grad.shape[0]
        if not module.batch_first or query.dim() != 3:
            return self._refuse(module, "not batch-first (the samples are not on dim 0)")
        if key.shape[0] != n or value.shape[0] != n or query.shape[0] != n:
            return self._refuse(module, "its query, key and value have different samples")
        if module._qkv_same_embed_dim:
            w_q, w_k, w_v = module.in_proj_weight.chunk(3)
        else:
            w_q, w_k, w_v = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
        b_q = b_k = b_v = None
        if module.in_proj_bias is not None:
            b_q, b_k, b_v = module.in_proj_bias.chunk(3)
        with torch.enable_grad():
            q, k, v = (
                F.linear(t, w, bias).detach().requires_grad_(True)
                for t, w, bias in ((query, w_q, b_q), (key, w_k, b_k), (value, w_v, b_v))
            )
            context = _attention_core(module, q, k, v, kwargs)  # (N, L, E), before out_proj
            d_context = grad @ module.out_proj.weight
            dq, dk, dv = torch.autograd.grad(context, (q, k, v), d_context)
        diag = ext.diagonal
        results: dict[str, tuple[Tensor, Tensor | None] | Refused] = {
            "out_proj.weight": linear_weight(context.detach(), grad, diag),
            "out_proj.bias": linear_bias(grad, diag),
        }
        parts = [linear_weight(a, d, diag) for a, d in ((query, dq), (key, dk), (value, dv))]
        if module._qkv_same_embed_dim:
            results["in_proj_weight"] = _stack(parts, diag)
        else:
            names = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
            results.update(zip(names, parts, strict=True))
        if module.in_proj_bias is not None:
            results["in_proj_bias"] = _stack([linear_bias(d, diag) for d in (dq, dk, dv)], diag)
        return results


def _attention_core(
    module: nn.MultiheadAttention, q: Tensor, k: Tensor, v: Tensor, kwargs: dict
) -> Tensor:
    """The attention's output before ``out_proj``, from batch-first projections ``q, k, v``.

    Without masks, ``bias_k``/``bias_v`` or ``add_zero_attn`` it is one
    ``scaled_dot_product_attention`` over the heads; otherwise torch's own
    ``multi_head_attention_forward`` with identity projections, so that masks
    and the other options mean exactly what they mean in the module's forward.
    """
    heads, e = module.num_heads, module.embed_dim
    masks = [kwargs.get(name) for name in ("key_padding_mask", "attn_mask")]
    plain = (
        all(m is None for m in masks)
        and not kwargs.get("is_causal", False)
        and module.bias_k is None
        and module.bias_v is None
        and not module.add_zero_attn
    )
    if plain:
        n, length, source = q.shape[0], q.shape[1], k.shape[1]

        def split(t: Tensor, size: int) -> Tensor:
            return t.view(n, size, heads, e // heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(q, length), split(k, source), split(v, source))
        return out.transpose(1, 2).reshape(n, length, e)
    eye = torch.eye(e, dtype=q.dtype, device=q.device)
    context, _ = F.multi_head_attention_forward(
        q.transpose(0, 1),
        k.transpose(0, 1),
        v.transpose(0, 1),
        e,
        heads,
        None,
        None,
        module.bias_k.detach() if module.bias_k is not None else None,
        module.bias_v.detach() if module.bias_v is not None else None,
        module.add_zero_attn,
        0.0,
        eye,
        None,
        training=False,
        key_padding_mask=masks[0],
        need_weights=False,
        attn_mask=masks[1],
        use_separate_proj_weight=True,
        q_proj_weight=eye,
        k_proj_weight=eye,
        v_proj_weight=eye,
        is_causal=kwargs.get("is_causal", False),
    )
    return context.transpose(0, 1)


def _stack(
    parts: list[tuple[Tensor, Tensor | None]], diagonal: bool
) -> tuple[Tensor, Tensor | None]:
    """The results of the row blocks of one parameter (e.g. q, k, v of ``in_proj_weight``)."""
    sq = sum(p[0] for p in parts)
    return sq, (torch.cat([p[1] for p in parts]) if diagonal else None)  # type: ignore[misc]


FAST_PATHS: dict[type[nn.Module], Callable[[], FirstOrderModuleExtension]] = {
    nn.Linear: _LinearFisher,
    nn.Conv1d: _ConvFisher,
    nn.Conv2d: _ConvFisher,
    nn.BatchNorm1d: _BatchNormFisher,
    nn.BatchNorm2d: _BatchNormFisher,
    nn.LayerNorm: _LayerNormFisher,
    nn.GroupNorm: _GroupNormFisher,
    nn.Embedding: _EmbeddingFisher,
    nn.MultiheadAttention: _AttentionFisher,
}
"""Module type -> BackPACK module extension computing its per-sample quantities."""

DEFAULT_PARAMETERS = ("weight", "bias")
PARAMETERS: dict[type[nn.Module], tuple[str, ...]] = {
    nn.Embedding: ("weight",),
    nn.MultiheadAttention: (
        "in_proj_weight",
        "in_proj_bias",
        "q_proj_weight",
        "k_proj_weight",
        "v_proj_weight",
    ),
}
"""The parameters a fast path computes, where not :data:`DEFAULT_PARAMETERS`; a module's
other parameters (e.g. ``weight_g``/``weight_v`` of the old ``torch.nn.utils.weight_norm``,
or an attention's ``bias_k``) use the fallback. ``nn.MultiheadAttention``'s fast path
also computes its ``out_proj`` child's weight and bias."""

FAST_PATH_PARAMETERS = DEFAULT_PARAMETERS
"""The parameter names most fast paths compute (kept for old imports; see :data:`PARAMETERS`)."""


def fast_path_parameters(module: nn.Module) -> tuple[str, ...]:
    """The names of ``module``'s own parameters its fast path computes."""
    return PARAMETERS.get(type(module), DEFAULT_PARAMETERS)


def register_fast_path(
    module_type: type[nn.Module],
    extension: Callable[[], FirstOrderModuleExtension],
    parameters: tuple[str, ...] = DEFAULT_PARAMETERS,
) -> None:
    """Add (or replace) the fast path of a module type.

    ``extension()`` must build a BackPACK ``FirstOrderModuleExtension`` whose
    method per parameter returns ``(sq_norms, diag)``: the ``(N,)``
    per-sample squared gradient norms and, when ``ext.diagonal`` is true, the
    summed squares ``sum_i g_i^2`` (else ``None``), as the built-in paths do,
    or a :class:`Refused`. The fast path is then used for every module of
    exactly that type, and checked on a probe batch against a per-sample
    autograd loop whenever an engine is built.

    Args:
        module_type: The ``nn.Module`` subclass.
        extension: A factory of its module extension.
        parameters: The names of the module's parameters it computes.

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
    if tuple(parameters) != DEFAULT_PARAMETERS:
        PARAMETERS[module_type] = tuple(parameters)
    else:
        PARAMETERS.pop(module_type, None)


def fast_path_reason(module: nn.Module) -> str | None:
    """Why ``module`` cannot use a fast path, or ``None`` if it can.

    Only the module's own type counts (a subclass may compute something else),
    and a parametrized module (``torch.nn.utils.parametrize``) computes its
    weight from other tensors, so it uses the fallback.

    Example:
        >>> from torch import nn
        >>> fast_path_reason(nn.Embedding(5, 3, max_norm=1.0))
        'nn.Embedding with max_norm renormalises its weight in the forward pass'
    """
    if parametrize.is_parametrized(module):
        return "a parametrized module (its weight is computed from other tensors)"
    if type(module) not in FAST_PATHS:
        return f"no fast path for {type(module).__name__}"
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        if module.padding_mode != "zeros":
            return f"a convolution with padding_mode={module.padding_mode!r}"
        try:
            conv_padding(module)
        except ValueError as exc:
            return str(exc)
    if isinstance(module, nn.Embedding):
        if module.max_norm is not None:
            return "nn.Embedding with max_norm renormalises its weight in the forward pass"
        if module.scale_grad_by_freq:
            return "nn.Embedding with scale_grad_by_freq scales by counts over the whole batch"
    return None
