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

Baselines in the registry (Section 6 / Appendix D of the paper): plain CE,
CE with weight decay 0.1 (``ce_wd``), NEFTune with noise alpha 5 (``neft``; the
noise is applied by the trainer, the loss is plain CE) and CE with an entropy
bonus (``ce_entropy``, Appendix D.4: maximise log-likelihood + gamma * H(f),
gamma = 0.1).

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
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = [
    "DEFAULT_BETA",
    "GEM_H_CHOICES",
    "LOSS_KINDS",
    "OBJECTIVES",
    "Objective",
    "ce_entropy_loss",
    "ce_loss",
    "gem_listing1_loss",
    "gem_loss",
    "get_objective",
    "shift_for_causal_lm",
    "token_entropy",
]

DEFAULT_BETA = 0.7  # the paper's setting (Section 6)
GEM_H_CHOICES = ("linear", "log_sigmoid")
LOSS_KINDS = ("ce", "ce_entropy", "gem")
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


def _check_gamma(gamma) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
        raise ValueError(f"gamma must be a finite number >= 0; got {gamma!r}")
    value = float(gamma)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"gamma must be a finite number >= 0; got {gamma!r}")
    return value


def _check_h(h) -> str:
    if h not in GEM_H_CHOICES:
        raise ValueError(f"h must be one of {', '.join(map(repr, GEM_H_CHOICES))}; got {h!r}")
    return h


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
        d = logits[mask]  # fresh (N, V) copy
        d = d.to(_compute_dtype(d.dtype))
        n = d.shape[0]
        # d_j = (z_j - z_y) / beta = (log f_j - log f_y) / beta; d_y == 0 exactly.
        d.sub_(d.gather(1, y.unsqueeze(1))).div_(beta)
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
    h = _check_h(h)
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
    gamma = _check_gamma(gamma)
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


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Objective:
    """One training objective as named in configs."""

    name: str
    loss: str  # one of LOSS_KINDS
    h: str | None = None  # GEM weighting function; None for CE-type losses
    uses_beta: bool = False
    weight_decay: float = 0.0
    neftune_noise_alpha: float | None = None  # passed to TrainingArguments by the trainer
    entropy_gamma: float | None = None

    def __post_init__(self):
        if self.loss not in LOSS_KINDS:
            raise ValueError(f"loss must be one of {', '.join(LOSS_KINDS)}; got {self.loss!r}")
        if (self.loss == "gem") != self.uses_beta:
            raise ValueError(f"objective {self.name!r}: uses_beta must be True exactly for 'gem'")
        if self.loss == "gem":
            _check_h(self.h)
        elif self.h is not None:
            raise ValueError(f"objective {self.name!r}: h applies only to 'gem'")
        if (self.loss == "ce_entropy") != (self.entropy_gamma is not None):
            raise ValueError(
                f"objective {self.name!r}: entropy_gamma is required exactly for 'ce_entropy'"
            )
        if self.entropy_gamma is not None:
            _check_gamma(self.entropy_gamma)

    def compute(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        beta: float | None = None,
        ignore_index: int = -100,
    ) -> torch.Tensor:
        """Loss on aligned logits/labels. ``beta`` only for GEM (default 0.7)."""
        if self.loss == "gem":
            return gem_loss(
                logits,
                labels,
                beta=DEFAULT_BETA if beta is None else beta,
                h=self.h,
                ignore_index=ignore_index,
            )
        if beta is not None:
            raise ValueError(f"objective {self.name!r} does not use beta; got beta={beta!r}")
        if self.loss == "ce_entropy":
            return ce_entropy_loss(
                logits, labels, gamma=self.entropy_gamma, ignore_index=ignore_index
            )
        return ce_loss(logits, labels, ignore_index=ignore_index)


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective(name="ce", loss="ce"),
        Objective(name="ce_wd", loss="ce", weight_decay=0.1),
        Objective(name="neft", loss="ce", neftune_noise_alpha=5.0),
        Objective(name="ce_entropy", loss="ce_entropy", entropy_gamma=0.1),
        Objective(name="gem", loss="gem", h="linear", uses_beta=True),
        Objective(name="gem_log_sigmoid", loss="gem", h="log_sigmoid", uses_beta=True),
    )
}


def get_objective(name: str) -> Objective:
    """The registered objective called ``name``."""
    try:
        return OBJECTIVES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown objective {name!r}; choose one of: {', '.join(OBJECTIVES)}"
        ) from None
