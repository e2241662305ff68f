"""Token-level training objectives for supervised fine-tuning: CE, CE + entropy, and GEM.

GEM (Li et al., ICLR 2025, "Preserving Diversity in Supervised Fine-Tuning of
LLMs") replaces cross-entropy with a game between the model ``f = softmax(z)``
and an auxiliary distribution ``q = softmax(z / beta)`` (the closed-form best
response of Eq. (6)). Per token with logits ``z`` and target ``y`` the loss is

    L(z, y) = -sum_j q_j * w_j * (log f_y - log f_j),

with ``q`` and the weights ``w`` treated as constants (no gradient):

* ``h="linear"``:      ``w_j = 1``. Because ``sum_j q_j = 1`` this equals
  ``CE(z, y) + sum_j q_j log f_j`` and its gradient is exactly
  ``dL/dz = softmax(z / beta) - onehot(y)``. At ``beta = 1`` it is CE's gradient;
  for ``beta < 1`` probability is drawn mainly from the model's top tokens, so
  the tail (pre-trained alternatives) is protected. Proposition 2: the
  population optimum of a free model is ``f* = softmax(beta * log p)``.
* ``h="log_sigmoid"``: ``w_j = sigmoid(0.01 * (z_j - z_y))`` (Appendix B,
  ``h(t) = log sigmoid(-t)`` with the paper's 0.01 input scale), the variant the
  paper reports using in its experiments.

Since ``log f_j - log f_y = z_j - z_y`` the implementation never needs a
log-softmax: ``L = sum_j a_j (z_j - z_y)`` with constant ``a = q * w``, whose
gradient is ``a - onehot(y) * sum_j a_j``. It runs as one custom autograd
function that keeps a single (N, V) tensor for the backward pass.

Baselines in the objective registry (``gemsft.objectives``; Section 6 /
Appendix D of the paper): plain CE, CE with weight decay 0.1 (``ce_wd``),
NEFTune with noise alpha 5 (``neft``; the noise is applied by the trainer, the
loss is plain CE) and CE with an entropy bonus (``ce_entropy``, Appendix D.4:
maximise log-likelihood + gamma * H(f), gamma = 0.1).

Conventions shared by every function here:

* ``logits`` has shape ``(..., V)`` and ``labels`` shape ``(...)`` and they are
  already aligned (label ``t`` is the target of logits ``t``); use
  :func:`shift_for_causal_lm` once to align HF-style causal-LM labels.
* Averaging is the token-level mean over the unmasked tokens
  (``label != ignore_index``) of the tensors passed in, i.e. per micro-batch.
  That is the transformers 4.45 behaviour the paper's training used (before the
  ``num_items_in_batch`` change), so with gradient accumulation every
  micro-batch counts equally, whatever its number of tokens.
* Computation is in float32 at least (bf16/fp16 logits are upcast inside);
  the result is a float32 scalar (float64 for float64 logits).
* With no unmasked token the loss is an exact 0 that is still attached to the
  graph (its gradient is zero), never NaN.

:func:`gem_listing1_loss` keeps the paper's Listing 1 verbatim (with its
internal shift) as the reference for tests and benchmarks.

:func:`fused_linear_gem_loss` and :func:`fused_linear_ce_loss` take the last
hidden states and the LM head's weight instead of logits and give the value and
gradients of ``gem_loss`` / ``ce_loss`` on ``hidden @ weight.T`` without ever
holding the (N, V) logits (chunks of tokens, gradients computed in the forward
pass); optionally with the CE and entropy for logging (:class:`TokenStats`).
``benchmarks/loss_bench.py`` times them against torch's cross-entropy.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from gemsft.objectives import DEFAULT_BETA, check_gamma, check_h

__all__ = [
    "TokenStats",
    "ce_entropy_loss",
    "ce_loss",
    "fused_linear_ce_loss",
    "fused_linear_gem_loss",
    "gem_listing1_loss",
    "gem_loss",
    "shift_for_causal_lm",
    "token_entropy",
]

_LOG_SIGMOID_SCALE = 0.01  # Listing 1: sigmoid(0.01 * logits_diff)
_ENTROPY_CHUNK_ROWS = 1024


# --------------------------------------------------------------------------- helpers


def shift_for_causal_lm(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Align HF-style causal-LM labels: position ``t`` predicts token ``t + 1``.

    Returns ``(logits[..., :-1, :], labels[..., 1:])`` (views, no copy).
    """
    if logits.dim() < 2 or labels.dim() < 1:
        raise ValueError(
            f"shift_for_causal_lm needs logits (..., T, V) and labels (..., T); "
            f"got logits {tuple(logits.shape)} and labels {tuple(labels.shape)}"
        )
    return logits[..., :-1, :], labels[..., 1:]


def _check_inputs(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError("logits and labels must be torch tensors")
    if logits.dim() < 1 or tuple(logits.shape[:-1]) != tuple(labels.shape):
        raise ValueError(
            f"logits.shape[:-1] must equal labels.shape; got logits {tuple(logits.shape)} "
            f"and labels {tuple(labels.shape)}"
        )
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor; got {logits.dtype}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor; got {labels.dtype}")


def _check_beta(beta) -> float:
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise ValueError(f"beta must be a finite number > 0; got {beta!r}")
    value = float(beta)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"beta must be a finite number > 0; got {beta!r}")
    return value


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _select(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``logits`` (as (N, V)) and their labels where label != ignore_index."""
    mask = labels != ignore_index
    return logits[mask], labels[mask]


def _empty_loss(logits: torch.Tensor) -> torch.Tensor:
    # Sum of an empty slice: exactly 0 (even if logits hold inf), zero gradient,
    # and still part of the graph so backward() works on every rank.
    return logits.narrow(-1, 0, 0).to(_compute_dtype(logits.dtype)).sum()


# --------------------------------------------------------------------------- GEM


class _GemFunction(torch.autograd.Function):
    """Mean over selected rows of ``sum_j a_j (z_j - z_y)`` with constant ``a = q * w``.

    Takes the full logits and the row mask so that the selected rows are copied
    once into a buffer this function owns (and upcast there), then worked on in
    place; only ``a`` (N, V) is kept for backward, which writes the gradient
    straight into a tensor of the logits' shape.
    """

    @staticmethod
    def forward(ctx, logits, mask, y, beta, log_sigmoid):
        # Under autocast the bmm below would run in bf16/fp16; the loss is computed in float32.
        with torch.autocast(logits.device.type, enabled=False):
            return _GemFunction._forward(ctx, logits, mask, y, beta, log_sigmoid)

    @staticmethod
    def _forward(ctx, logits, mask, y, beta, log_sigmoid):
        cdtype = _compute_dtype(logits.dtype)
        all_rows = y.numel() == mask.numel()
        yi = y.unsqueeze(1)
        # d_j = (z_j - z_y) / beta = (log f_j - log f_y) / beta; d_y == 0 exactly.
        if all_rows and logits.dtype == cdtype:  # no row to drop: no selection copy
            rows = logits.reshape(-1, logits.shape[-1])
            d = torch.sub(rows, rows.gather(1, yi))  # fresh (N, V)
        else:
            d = logits[mask] if not all_rows else logits.reshape(-1, logits.shape[-1])
            d = d.to(cdtype)  # fresh (N, V) copy (the selection copies, or the upcast)
            d.sub_(d.gather(1, yi))
        d.div_(beta)
        n = d.shape[0]
        # A -inf logit (e.g. a banned token) has q_j = 0; keep 0 * d_j at 0, not NaN.
        d.clamp_(min=torch.finfo(d.dtype).min)
        a = torch.softmax(d, dim=-1)  # q = softmax(z / beta) (shift-invariant)
        if log_sigmoid:
            a.mul_(torch.sigmoid(d * (_LOG_SIGMOID_SCALE * beta)))
            a_sum = a.sum(dim=-1)
        else:
            a_sum = None  # sum_j q_j = 1
        per_token = torch.bmm(a.unsqueeze(1), d.unsqueeze(2))  # (N, 1, 1), no (N, V) temp
        loss = per_token.sum() * (beta / n)
        ctx.save_for_backward(a, mask, y, a_sum)
        ctx.n = n
        ctx.all_rows = all_rows
        ctx.shape = logits.shape
        ctx.in_dtype = logits.dtype
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        a, mask, y, a_sum = ctx.saved_tensors
        scale = grad_out.to(a.dtype) / ctx.n
        grad_rows = a * scale
        rows = torch.arange(a.shape[0], device=a.device)
        on_label = scale.expand(a.shape[0]) if a_sum is None else a_sum * scale
        grad_rows.index_put_((rows, y), -on_label, accumulate=True)
        if ctx.all_rows:
            return grad_rows.to(ctx.in_dtype).view(ctx.shape), None, None, None, None
        grad = torch.zeros(ctx.shape, dtype=ctx.in_dtype, device=a.device)
        grad[mask] = grad_rows.to(ctx.in_dtype)
        return grad, None, None, None, None


def gem_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    beta: float = DEFAULT_BETA,
    h: str = "linear",
    ignore_index: int = -100,
) -> torch.Tensor:
    """GEM loss on aligned ``logits`` (..., V) / ``labels`` (...); no shift inside.

    Per token: ``-sum_j q_j w_j (log f_y - log f_j)`` with ``q = softmax(z/beta)``
    and ``w`` (1 for ``h="linear"``, ``sigmoid(0.01 (z_j - z_y))`` for
    ``h="log_sigmoid"``) both detached. Token-level mean over unmasked tokens.
    For ``h="linear"`` the gradient is ``(softmax(z/beta) - onehot(y)) / N``.
    """
    beta = _check_beta(beta)
    h = check_h(h)
    _check_inputs(logits, labels)
    mask = labels != ignore_index
    y = labels[mask]
    if y.numel() == 0:
        return _empty_loss(logits)
    return _GemFunction.apply(logits, mask, y, beta, h == "log_sigmoid")


def gem_listing1_loss(logits, labels, beta=0.7, ignore_index=-100, h="linear"):
    """Verbatim transcription of the paper's Listing 1 (reference only).

    Kept as the reference for tests and benchmarks. Unlike :func:`gem_loss` it
    SHIFTS internally (``logits[..., :-1, :]`` vs ``labels[..., 1:]``), computes
    in the input dtype and builds several (N, V) temporaries. As printed in the
    paper, ``logits_diff`` (hence the log-sigmoid weights) is computed outside
    ``torch.no_grad()``, so for ``h="log_sigmoid"`` its gradient also flows
    through the weights; :func:`gem_loss` detaches them as the authors' released
    code does. Values agree; log-sigmoid gradients differ slightly.
    """
    shift_logits = logits[..., :-1, :].contiguous()
    shift_labels = labels[..., 1:].contiguous()

    mask = shift_labels != ignore_index
    shift_logits = shift_logits[mask]
    shift_labels = shift_labels[mask]

    with torch.no_grad():
        logits_on_labels = torch.gather(
            shift_logits, dim=-1, index=shift_labels.unsqueeze(-1)
        ).squeeze(-1)

    logits_diff = shift_logits - logits_on_labels.unsqueeze(-1)
    if h == "linear":
        weights = torch.ones_like(logits_diff)
    elif h == "log_sigmoid":
        weights = F.sigmoid(0.01 * logits_diff)
    else:
        raise ValueError(h)

    gene_log_probs = F.log_softmax(shift_logits, dim=-1)
    q_probs = torch.exp(
        F.log_softmax(shift_logits / beta, dim=-1)
    ).detach()

    real_log_probs = torch.gather(
        gene_log_probs, dim=-1, index=shift_labels.unsqueeze(-1)
    ).squeeze(-1)

    loss = -torch.sum(
        q_probs * weights * (real_log_probs.unsqueeze(-1) -
        gene_log_probs), dim=-1
    ).mean()
    return loss


# --------------------------------------------------------------------------- CE family


def ce_loss(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> torch.Tensor:
    """Mean token cross-entropy over unmasked tokens of aligned logits/labels."""
    _check_inputs(logits, labels)
    z, y = _select(logits, labels, ignore_index)
    if y.numel() == 0:
        return _empty_loss(logits)
    return F.cross_entropy(z.to(_compute_dtype(z.dtype)), y, reduction="mean")


def ce_entropy_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 0.1,
    ignore_index: int = -100,
) -> torch.Tensor:
    """CE minus ``gamma`` times the mean token entropy of ``softmax(z)``.

    Minimising it maximises log-likelihood + gamma * H(f) (Appendix D.4, Eq. 15).
    Both terms are token-level means over the unmasked tokens.
    """
    gamma = check_gamma(gamma)
    _check_inputs(logits, labels)
    z, y = _select(logits, labels, ignore_index)
    if y.numel() == 0:
        return _empty_loss(logits)
    z = z.to(_compute_dtype(z.dtype))
    # -inf logits (banned tokens) would make f log f = 0 * -inf = NaN.
    log_f = F.log_softmax(z.clamp(min=torch.finfo(z.dtype).min), dim=-1)
    nll = -log_f.gather(1, y.unsqueeze(1)).squeeze(1)
    entropy = -torch.linalg.vecdot(log_f.exp(), log_f)
    return (nll - gamma * entropy).mean()


@torch.no_grad()
def token_entropy(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> torch.Tensor:
    """Mean exact entropy (nats) of ``softmax(z)`` over unmasked tokens; no grad.

    For logging. Processed in row chunks to bound memory; 0 if nothing is unmasked.
    """
    _check_inputs(logits, labels)
    z, _ = _select(logits.detach(), labels, ignore_index)
    cdtype = _compute_dtype(z.dtype)
    if z.shape[0] == 0:
        return torch.zeros((), dtype=cdtype, device=logits.device)
    total = torch.zeros((), dtype=cdtype, device=logits.device)
    for chunk in z.split(_ENTROPY_CHUNK_ROWS):
        log_f = F.log_softmax(chunk.to(cdtype).clamp(min=torch.finfo(cdtype).min), dim=-1)
        total -= torch.linalg.vecdot(log_f.exp(), log_f).sum()
    return total / z.shape[0]


# --------------------------------------------------------------------------- fused linear + loss
#
# The losses above take materialised logits. For a language-model head the logits
# z = hidden @ weight.T are (N, V): with V = 128256 and a few thousand tokens they
# (and the copies a loss keeps for backward) are the largest tensors of a training
# step. The fused losses below take ``hidden`` and ``weight`` instead, walk over the
# tokens in chunks of rows, and compute the loss *and* both gradients chunk by chunk
# in the forward pass: per chunk z_c = hidden_c @ weight.T, the gradient
# g_c = dL/dz_c (GEM: a - onehot(y) * sum_j a_j, see _GemFunction; CE:
# softmax(z) - onehot(y)), then grad_hidden_c = g_c @ weight and
# grad_weight += g_c.T @ hidden_c. Only the two gradients are kept for the backward
# pass, which scales them by grad_output. No (N, V) tensor exists at any time.

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


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a * b).sum()`` of two contiguous tensors without an (N, V) temporary."""
    return torch.dot(a.view(-1), b.view(-1))


def _ce_entropy_sums(z, yi, log_f_buf, f_buf) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums over the rows of ``-log f_y`` and of the entropy of ``f = softmax(z)``.

    Through ``log_softmax`` (shifted by the row maximum inside), so a peaked row's
    small entropy is not the difference of two large numbers. Overwrites both buffers.
    """
    log_f = torch.log_softmax(z, dim=-1, out=log_f_buf)
    f = torch.exp(log_f, out=f_buf)
    return -log_f.gather(1, yi).sum(), -_dot(f, log_f)


class _GemChunk:
    """GEM on one chunk of logits (see :class:`_GemFunction` for the algebra).

    Gets ``s = z / beta`` (the scale is applied by the matmul). Per row with
    ``a = q * w`` (``q = softmax(s)``) the loss is
    ``beta * sum_j a_j (s_j - s_y) = beta * (a . s - s_y * sum_j a_j)`` and the
    gradient with respect to ``z`` is ``a - onehot(y) * sum_j a_j``.
    """

    def __init__(self, beta: float, log_sigmoid: bool):
        self.beta = beta
        self.scale = 1.0 / beta
        self.log_sigmoid = log_sigmoid

    def __call__(self, s, yi, a, scratch, want_stats):
        """Loss sum (and CE, entropy sums) of the rows of ``s``; gradient into ``a`` (or scratch)."""
        beta = self.beta
        s_y = s.gather(1, yi)
        stats = (None, None)
        if want_stats:
            z = torch.mul(s, beta, out=scratch(0)) if beta != 1.0 else s
            stats = _ce_entropy_sums(z, yi, scratch(1), scratch(0))
        a = torch.softmax(s, dim=-1, out=scratch(0) if a is None else a)  # q
        if self.log_sigmoid:  # w_j = sigmoid(0.01 (z_j - z_y))
            a.mul_(torch.sub(s, s_y, out=scratch(1)).mul_(_LOG_SIGMOID_SCALE * beta).sigmoid_())
            a_sum = a.sum(dim=1, keepdim=True)
            loss = (_dot(a, s) - _dot(s_y, a_sum)) * beta
        else:  # sum_j q_j = 1
            a_sum = None
            loss = (_dot(a, s) - s_y.sum()) * beta
        return loss, a, a_sum, *stats


class _CeChunk:
    """Cross-entropy on one chunk of logits: gradient ``softmax(z) - onehot(y)``."""

    scale = 1.0

    def __call__(self, z, yi, a, scratch, want_stats):
        log_f = torch.log_softmax(z, dim=-1, out=scratch(1))
        loss = -log_f.gather(1, yi).sum()
        f = torch.softmax(z, dim=-1, out=scratch(0) if a is None else a)
        entropy = -_dot(f, log_f) if want_stats else None
        return loss, f, None, (loss if want_stats else None), entropy


def _fused_pass(hidden, weight, mask, y, kernel, chunk_rows, need_gh, need_gw, want_stats):
    """Loss sum / n (and stats, gradients) over the selected rows, chunk by chunk.

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
    cdtype = _compute_dtype(mm_dtype)
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
            part = kernel(z[b0:b1], yi, None if a is None else a[b0:b1], scratch.rows(b1 - b0), want_stats)
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
    def forward(ctx, hidden, weight, mask, y, kernel, chunk_rows, stats_out):
        need_gh, need_gw = ctx.needs_input_grad[:2]
        loss, ce, entropy, gh, gw = _fused_pass(
            hidden, weight, mask, y, kernel, chunk_rows, need_gh, need_gw, stats_out is not None
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
        return gh, gw, None, None, None, None, None


def _fused_linear_loss(kernel, hidden, weight, labels, ignore_index, chunk_size, return_stats):
    _check_fused_inputs(hidden, weight, labels, chunk_size)
    mm_dtype = _matmul_dtype(hidden, weight)
    cdtype = _compute_dtype(mm_dtype)
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
    with torch.autocast(hidden.device.type, enabled=False):
        h, w = hidden.to(mm_dtype), weight.to(mm_dtype)  # no-ops unless autocast is on
        if torch.is_grad_enabled() and (h.requires_grad or w.requires_grad):
            loss = _FusedLinearLossFunction.apply(h, w, mask, y, kernel, rows, stats_out)
        else:
            loss, ce, entropy, _, _ = _fused_pass(
                h, w, mask, y, kernel, rows, False, False, return_stats
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
    """:func:`gem_loss` of ``hidden @ weight.T`` without ever holding the (N, V) logits.

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
    beta = _check_beta(beta)
    h = check_h(h)
    kernel = _GemChunk(beta, h == "log_sigmoid")
    return _fused_linear_loss(kernel, hidden, weight, labels, ignore_index, chunk_size, return_stats)


def fused_linear_ce_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    chunk_size: int | None = None,
    return_stats: bool = False,
):
    """:func:`ce_loss` of ``hidden @ weight.T``, chunked like :func:`fused_linear_gem_loss`."""
    return _fused_linear_loss(_CeChunk(), hidden, weight, labels, ignore_index, chunk_size, return_stats)
