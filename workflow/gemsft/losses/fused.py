"""Fused linear + loss: the losses of ``hidden @ weight.T`` without ever holding those logits.

The losses of :mod:`gemsft.losses.logits` take materialised logits. For a language-model head the
logits z = hidden @ weight.T are (N, V): with V = 128256 and a few thousand tokens they (and the
copies a loss keeps for backward) are the largest tensors of a training step. The fused losses here
take ``hidden`` and ``weight`` instead, walk over the tokens in chunks of rows, and compute the loss
*and* both gradients chunk by chunk in the forward pass: per chunk z_c = hidden_c @ weight.T, the
gradient g_c = dL/dz_c (GEM: a - onehot(y) * sum_j a_j, see ``logits._GemFunction``; CE:
softmax(z) - onehot(y)), then grad_hidden_c = g_c @ weight and grad_weight += g_c.T @ hidden_c.
Only the two gradients are kept for the backward pass, which scales them by grad_output. No (N, V)
tensor exists at any time. What a loss does to one chunk is its kernel
(:mod:`gemsft.losses.chunk_kernels`); optionally the CE and entropy for logging come from the same
chunks (:class:`TokenStats`). ``benchmarks/loss_bench.py`` times them against torch's cross-entropy.

Per-token weights: :func:`fused_linear_ce_loss` takes optional constant ``token_weights`` (the mean
of ``w_t * CE_t``); DFT and EAFT are such a weighted CE whose weight each chunk computes from its
own rows of logits (:mod:`gemsft.losses.fused_weighted`).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

from gemsft.losses.chunk_kernels import CeChunk, GemChunk, WeightedCeChunk
from gemsft.losses.logits import compute_dtype
from gemsft.objectives import DEFAULT_BETA, check_beta, check_h

# Default chunk: a quarter of the tokens (the two (rows, V) float32 buffers then hold half as much as
# the logits would), but no fewer rows than fit _FUSED_MIN_CHUNK_BYTES (below that, chunking only
# costs matmul efficiency) and no more than fit _FUSED_MAX_CHUNK_BYTES. Timed in loss_bench.py.
_FUSED_CHUNK_FRACTION = 4
_FUSED_MIN_CHUNK_BYTES = 32 * 2**20
_FUSED_MAX_CHUNK_BYTES = {"cuda": 512 * 2**20}  # GPUs: the weight-gradient matmul wants rows
_FUSED_MAX_CHUNK_BYTES_DEFAULT = 256 * 2**20
_FUSED_BLOCK_BYTES = 8 * 2**20  # CPU: rows of elementwise work at a time, a block that stays in cache


class TokenStats(NamedTuple):
    """Logging statistics of a fused loss call, from the same chunks (no extra matmul).

    Token means over the unmasked tokens, detached, in the compute dtype: ``ce`` is
    the cross-entropy ``-log f_y`` and ``entropy`` the entropy of ``f = softmax(z)``
    (what :func:`ce_loss` and :func:`token_entropy` give on the logits).
    """

    ce: torch.Tensor
    entropy: torch.Tensor


def _check_fused_inputs(hidden, weight, labels, chunk_size) -> None:
    if not all(isinstance(t, torch.Tensor) for t in (hidden, weight, labels)):
        raise ValueError("hidden, weight and labels must be torch tensors")
    if not hidden.is_floating_point() or not weight.is_floating_point():
        raise ValueError(
            f"hidden and weight must be floating-point tensors; got {hidden.dtype} and {weight.dtype}"
        )
    if hidden.dim() < 1 or tuple(hidden.shape[:-1]) != tuple(labels.shape):
        raise ValueError(
            f"hidden.shape[:-1] must equal labels.shape; got hidden {tuple(hidden.shape)} "
            f"and labels {tuple(labels.shape)}"
        )
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"weight must be (V, H) with H = hidden.shape[-1]; got weight {tuple(weight.shape)} "
            f"and hidden {tuple(hidden.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor; got {labels.dtype}")
    if not (hidden.device == weight.device == labels.device):
        raise ValueError(
            f"hidden, weight and labels must be on one device; got {hidden.device}, "
            f"{weight.device} and {labels.device}"
        )
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be None or an integer >= 1; got {chunk_size!r}")


def _check_token_weights(token_weights, labels) -> None:
    if not isinstance(token_weights, torch.Tensor) or not token_weights.is_floating_point():
        kind = token_weights.dtype if isinstance(token_weights, torch.Tensor) else type(token_weights).__name__
        raise ValueError(f"token_weights must be a floating-point tensor; got {kind}")
    if tuple(token_weights.shape) != tuple(labels.shape):
        raise ValueError(
            f"token_weights must have the labels' shape {tuple(labels.shape)}; got {tuple(token_weights.shape)}"
        )
    if token_weights.device != labels.device:
        raise ValueError(f"token_weights must be on the labels' device {labels.device}; got {token_weights.device}")


def _matmul_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype ``hidden @ weight.T`` would be computed in (autocast's, if active)."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    if hidden.dtype != weight.dtype:
        raise ValueError(
            f"hidden and weight must have one dtype (outside autocast); got {hidden.dtype} "
            f"and {weight.dtype}"
        )
    return hidden.dtype


def _chunk_rows(n: int, v: int, device: torch.device, chunk_size: int | None) -> int:
    if chunk_size is None:
        row_bytes = 4 * v
        most = _FUSED_MAX_CHUNK_BYTES.get(device.type, _FUSED_MAX_CHUNK_BYTES_DEFAULT) // row_bytes
        least = _FUSED_MIN_CHUNK_BYTES // row_bytes
        chunk_size = min(max(-(-n // _FUSED_CHUNK_FRACTION), least), most)
    return max(1, min(int(chunk_size), n))



class _Scratch:
    """Up to two (block, V) work buffers, allocated on first use (a kernel may need none)."""

    def __init__(self, block, v, dtype, device):
        self.shape, self.dtype, self.device = (block, v), dtype, device
        self.buffers = {}

    def rows(self, m):
        def get(i):
            if i not in self.buffers:
                self.buffers[i] = torch.empty(self.shape, dtype=self.dtype, device=self.device)
            return self.buffers[i][:m]

        return get


def _minus_ones(yi: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.full(yi.shape, -1.0, dtype=dtype, device=yi.device)



def _fused_pass(hidden, weight, mask, y, kernel, chunk_rows, need_gh, need_gw, want_stats, token_weights=None):
    """Loss sum / n (and stats, gradients) over the selected rows, chunk by chunk.

    ``token_weights``: None, or the selected rows' constant weights (n, 1) in the compute dtype,
    handed to the kernel block by block (a weighted kernel's ``wi``).

    ``hidden`` (..., H) and ``weight`` (V, H) share the matmul dtype. Returns
    ``(loss, ce, entropy, grad_hidden, grad_weight)``; the gradients are those of
    the mean loss (``grad_output = 1``) in the inputs' dtype, or None.

    A chunk of ``chunk_rows`` rows goes through the matmuls at once; the
    elementwise work in between runs over blocks of a few rows that stay in cache.
    """
    h_dim = hidden.shape[-1]
    n_all = mask.numel()
    n = y.numel()
    x = hidden.reshape(n_all, h_dim) if n == n_all else hidden[mask]
    v = weight.shape[0]
    mm_dtype = weight.dtype
    cdtype = compute_dtype(mm_dtype)
    low = cdtype != mm_dtype  # bf16/fp16: matmuls in that dtype, the rest in float32
    dev = x.device
    rows = min(chunk_rows, n)
    # CPU: blocks that stay in cache; CUDA: whole chunks (kernel launches cost more than memory there)
    block = rows if dev.type == "cuda" else max(1, min(rows, _FUSED_BLOCK_BYTES // (4 * v)))
    n_chunks = -(-n // rows)
    want_grad = need_gh or need_gw
    z_buf = torch.empty(rows, v, dtype=cdtype, device=dev)
    a_buf = torch.empty(rows, v, dtype=cdtype, device=dev) if want_grad else None
    scratch = _Scratch(block, v, cdtype, dev)
    z_low = torch.empty(rows, v, dtype=mm_dtype, device=dev) if low else None
    gx = torch.empty(n, h_dim, dtype=mm_dtype, device=dev) if need_gh else None
    gw = gw_tmp = None
    if need_gw:
        # Accumulate in float32 at least; a single chunk is computed in one matmul.
        gw = torch.empty(v, h_dim, dtype=cdtype if n_chunks > 1 else mm_dtype, device=dev)
        if low and n_chunks > 1 and dev.type == "cuda":
            gw_tmp = torch.empty(v, h_dim, dtype=mm_dtype, device=dev)
    zero = torch.zeros((), dtype=cdtype, device=dev)
    loss = zero.clone()
    ce = zero.clone() if want_stats else None
    entropy = zero.clone() if want_stats else None
    wt = weight.t()
    inv_n = 1.0 / n
    yi_all = y.unsqueeze(1)
    for i, start in enumerate(range(0, n, rows)):
        xc = x[start : start + rows]
        m = xc.shape[0]
        z = z_buf[:m]
        if low:
            z.copy_(torch.mm(xc, wt, out=z_low[:m]))
            if kernel.scale != 1.0:
                z.mul_(kernel.scale)
        elif kernel.scale != 1.0:
            torch.addmm(z, xc, wt, beta=0.0, alpha=kernel.scale, out=z)
        else:
            torch.mm(xc, wt, out=z)
        a = a_buf[:m] if want_grad else None
        for b0 in range(0, m, block):
            b1 = min(b0 + block, m)
            yi = yi_all[start + b0 : start + b1]
            args = (z[b0:b1], yi, None if a is None else a[b0:b1], scratch.rows(b1 - b0), want_stats)
            if token_weights is not None:
                args += (token_weights[start + b0 : start + b1],)
            part = kernel(*args)
            part_loss, g, g_sum, part_ce, part_ent = part
            loss += part_loss
            if want_stats:
                ce += part_ce
                entropy += part_ent
            if want_grad:  # a - onehot(y) * sum_j a_j
                g.scatter_add_(1, yi, g_sum.neg_() if g_sum is not None else _minus_ones(yi, g.dtype))
        if not want_grad:
            continue
        g32 = a
        if low:  # round dL/dz (already / n) to the matmul dtype, as autograd would
            g = z_low[:m].copy_(g32.mul_(inv_n))
            alpha = 1.0
        else:
            g, alpha = g32, inv_n
        if need_gh:
            gxc = torch.mm(g, weight, out=gx[start : start + m])
            if alpha != 1.0:
                gxc.mul_(alpha)
        if need_gw:
            if n_chunks == 1 or not low:
                gw.addmm_(g.t(), xc, beta=0.0 if i == 0 else 1.0, alpha=alpha)
            elif gw_tmp is None:
                # Exactly the rounded low-precision operands, multiplied and summed in float32 over
                # all chunks as one low-precision matmul accumulates them: one rounding at the end.
                gw.addmm_(g32.copy_(g).t(), xc.to(cdtype), beta=0.0 if i == 0 else 1.0)
            elif i == 0:  # CUDA: keep the tensor-core matmul; each chunk's product is rounded once
                gw.copy_(torch.mm(g.t(), xc, out=gw_tmp))
            else:
                gw.add_(torch.mm(g.t(), xc, out=gw_tmp))
    del z_buf, a_buf, scratch, z_low, gw_tmp
    if gw is not None and gw.dtype != mm_dtype:
        gw = gw.to(mm_dtype)
    if gx is not None:
        if n == n_all:
            gx = gx.view(hidden.shape)
        else:
            full = torch.zeros(hidden.shape, dtype=mm_dtype, device=dev)
            full[mask] = gx
            gx = full
    if want_stats:
        ce, entropy = ce * inv_n, entropy * inv_n
    return loss * inv_n, ce, entropy, gx, gw


class _FusedLinearLossFunction(torch.autograd.Function):
    """Mean loss of ``hidden @ weight.T``; both gradients are computed in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, mask, y, kernel, chunk_rows, stats_out, token_weights):
        need_gh, need_gw = ctx.needs_input_grad[:2]
        loss, ce, entropy, gh, gw = _fused_pass(
            hidden, weight, mask, y, kernel, chunk_rows, need_gh, need_gw, stats_out is not None, token_weights
        )
        if stats_out is not None:
            stats_out.extend((ce, entropy))
        ctx.grads = (gh, gw)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        if ctx.grads is None:
            raise RuntimeError(
                "the fused loss keeps its gradients for a single backward pass; "
                "recompute it to differentiate again"
            )
        gh, gw = ctx.grads
        ctx.grads = None  # the stored gradients are scaled in place and handed out
        if float(grad_out) != 1.0:
            for g in (gh, gw):
                if g is not None:
                    g.mul_(grad_out.to(g.dtype))
        return gh, gw, None, None, None, None, None, None  # no gradient for the token weights


def _fused_linear_loss(kernel, hidden, weight, labels, ignore_index, chunk_size, return_stats, token_weights=None):
    _check_fused_inputs(hidden, weight, labels, chunk_size)
    if token_weights is not None:
        _check_token_weights(token_weights, labels)
    mm_dtype = _matmul_dtype(hidden, weight)
    cdtype = compute_dtype(mm_dtype)
    mask = labels != ignore_index
    y = labels[mask]
    if y.numel() == 0:
        # Exact 0, attached to both inputs (zero gradients), never NaN.
        loss = (
            hidden.narrow(-1, 0, 0).to(cdtype).sum() + weight.narrow(-1, 0, 0).to(cdtype).sum()
        )
        if not return_stats:
            return loss
        zero = torch.zeros((), dtype=cdtype, device=hidden.device)
        return loss, TokenStats(ce=zero, entropy=zero.clone())
    rows = _chunk_rows(y.numel(), weight.shape[0], hidden.device, chunk_size)
    stats_out = [] if return_stats else None
    # Constants: detached, the selected rows only (a copy), (n, 1) in the compute dtype.
    tw = None if token_weights is None else token_weights.detach()[mask].to(cdtype).unsqueeze(1)
    with torch.autocast(hidden.device.type, enabled=False):
        h, w = hidden.to(mm_dtype), weight.to(mm_dtype)  # no-ops unless autocast is on
        if torch.is_grad_enabled() and (h.requires_grad or w.requires_grad):
            loss = _FusedLinearLossFunction.apply(h, w, mask, y, kernel, rows, stats_out, tw)
        else:
            loss, ce, entropy, _, _ = _fused_pass(
                h, w, mask, y, kernel, rows, False, False, return_stats, tw
            )
            if return_stats:
                stats_out = [ce, entropy]
    if not return_stats:
        return loss
    return loss, TokenStats(ce=stats_out[0], entropy=stats_out[1])


def fused_linear_gem_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    beta: float = DEFAULT_BETA,
    h: str = "linear",
    ignore_index: int = -100,
    chunk_size: int | None = None,
    return_stats: bool = False,
):
    """:func:`~gemsft.losses.logits.gem_loss` of ``hidden @ weight.T`` without ever holding the (N, V) logits.

    ``hidden`` is (..., H) with ``labels`` (...) already aligned (shift done by the
    caller, e.g. ``hidden[:, :-1]`` and ``labels[:, 1:]``), ``weight`` is the output
    embedding (V, H) (tied weights are fine). Value and gradients with respect to
    ``hidden`` and ``weight`` are those of ``gem_loss(hidden @ weight.T, labels,
    beta, h, ignore_index)``; the same conventions hold (token mean over the
    unmasked tokens, float32 compute for bf16/fp16 inputs whose matmuls run in that
    dtype as ``hidden @ weight.T`` would, exact attached 0 when nothing is unmasked).
    Under autocast the matmuls run in autocast's dtype, as an ``nn.Linear`` head's.

    The tokens are processed ``chunk_size`` rows at a time (default: a quarter of
    them, within 32 MiB .. 256 MiB (CUDA: 512 MiB) of float32 logits per chunk);
    both gradients are computed in the forward pass and kept for backward (which
    can run once).
    With ``return_stats=True`` returns ``(loss, TokenStats(ce, entropy))``, the
    mean CE and next-token entropy of ``softmax(hidden @ weight.T)`` on the same
    tokens, computed from the same chunks.
    """
    beta = check_beta(beta)
    h = check_h(h)
    kernel = GemChunk(beta, h == "log_sigmoid")
    return _fused_linear_loss(kernel, hidden, weight, labels, ignore_index, chunk_size, return_stats)


def fused_linear_ce_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    chunk_size: int | None = None,
    return_stats: bool = False,
    token_weights: torch.Tensor | None = None,
):
    """:func:`~gemsft.losses.logits.ce_loss` of ``hidden @ weight.T``, chunked like :func:`fused_linear_gem_loss`.

    With ``token_weights`` (a floating-point tensor of the labels' shape) the loss is the mean over the
    unmasked tokens of ``w_t * CE_t`` (divided by the number of unmasked tokens, not by the weights'
    sum); the weights are constants: detached, never given a gradient, read on the unmasked tokens
    only. The statistics (``return_stats``) stay the unweighted CE and entropy.
    """
    kernel = CeChunk() if token_weights is None else WeightedCeChunk()
    return _fused_linear_loss(kernel, hidden, weight, labels, ignore_index, chunk_size, return_stats, token_weights)
