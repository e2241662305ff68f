"""The token-level losses on materialised logits: CE, CE + entropy, and GEM.

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

Conventions shared by every loss of this package (the fused ones of
:mod:`gemsft.losses.fused` included):

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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from gemsft.objectives import DEFAULT_BETA, check_beta, check_gamma, check_h

LOG_SIGMOID_SCALE = 0.01  # Listing 1: sigmoid(0.01 * logits_diff)
_ENTROPY_CHUNK_ROWS = 1024


# --------------------------------------------------------------------------- helpers


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a loss computes in for inputs of ``dtype``: float64 stays, the rest is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


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


def _select(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``logits`` (as (N, V)) and their labels where label != ignore_index."""
    mask = labels != ignore_index
    return logits[mask], labels[mask]


def _empty_loss(logits: torch.Tensor) -> torch.Tensor:
    # Sum of an empty slice: exactly 0 (even if logits hold inf), zero gradient,
    # and still part of the graph so backward() works on every rank.
    return logits.narrow(-1, 0, 0).to(compute_dtype(logits.dtype)).sum()


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
        cdtype = compute_dtype(logits.dtype)
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
            a.mul_(torch.sigmoid(d * (LOG_SIGMOID_SCALE * beta)))
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
    beta = check_beta(beta)
    h = check_h(h)
    _check_inputs(logits, labels)
    mask = labels != ignore_index
    y = labels[mask]
    if y.numel() == 0:
        return _empty_loss(logits)
    return _GemFunction.apply(logits, mask, y, beta, h == "log_sigmoid")




# --------------------------------------------------------------------------- CE family


def ce_loss(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> torch.Tensor:
    """Mean token cross-entropy over unmasked tokens of aligned logits/labels."""
    _check_inputs(logits, labels)
    z, y = _select(logits, labels, ignore_index)
    if y.numel() == 0:
        return _empty_loss(logits)
    return F.cross_entropy(z.to(compute_dtype(z.dtype)), y, reduction="mean")


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
    z = z.to(compute_dtype(z.dtype))
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
    cdtype = compute_dtype(z.dtype)
    if z.shape[0] == 0:
        return torch.zeros((), dtype=cdtype, device=logits.device)
    total = torch.zeros((), dtype=cdtype, device=logits.device)
    for chunk in z.split(_ENTROPY_CHUNK_ROWS):
        log_f = F.log_softmax(chunk.to(cdtype).clamp(min=torch.finfo(cdtype).min), dim=-1)
        total -= torch.linalg.vecdot(log_f.exp(), log_f).sum()
    return total / z.shape[0]

