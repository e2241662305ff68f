"""Newer SFT objectives on materialised logits: DFT, TS², EAFT and ASFT.

Each follows the conventions of :mod:`gemsft.losses.logits` (aligned logits/labels, no shift inside;
token mean over the unmasked labels of the tensors passed in; float32 at least; an exact, attached 0
when nothing is unmasked). Per token with logits ``z``, target ``y``, ``f = softmax(z)``:

* :func:`dft_loss`, Dynamic Fine-Tuning (Wu et al. 2025, arXiv 2508.05629):
  ``-sg(f_y) * log f_y``.
* :func:`ts2_loss`, TS² (Xu et al., ICLR 2026; official ``trainer.py`` ``SFTTrainer.ts2_loss`` of
  xzy-bit/TS-2-ICLR-2026): the sparsemax loss plus ``alpha * -log(1 - min(s, 0.99))``, where ``s`` is
  the softmax mass of the tokens outside the sparsemax support other than ``y``.
* :func:`eaft_loss`, Entropy-Adaptive Fine-Tuning (arXiv 2601.02151; official ms-swift-EAFT
  ``swift/trainers/utils.py`` ``per_token_loss_func``): ``sg((H_20(z) / 3)^alpha) * -log f_y``, with
  ``H_20`` the entropy of the softmax over the 20 largest logits.
* :func:`asft_loss`, Anchored SFT (ICLR 2026; official zhuchichi56/ASFT ``train_v2.py``
  ``EnhancedTrainer.compute_loss``, mode ``asft``): DFT plus ``alpha * KL(q || f)`` over the full
  vocabulary, ``q = softmax(reference logits)`` of the frozen base model, without gradient.

DFT and EAFT are a cross-entropy with a constant per-token weight (``sg(f_y)``; ``sg((H_20 / 3)^alpha)``),
which depends on the token's own row of logits only: their fused forms
(:func:`gemsft.losses.fused_weighted.fused_linear_dft_loss`, :func:`~gemsft.losses.fused_weighted.fused_linear_eaft_loss`)
compute it chunk by chunk with the helpers below (:func:`dft_weight`, :func:`eaft_weight`). TS² and ASFT
have none (:data:`gemsft.losses.LOSSES` says why); the trainer computes them on the logits.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from gemsft.losses.logits import _check_inputs, _empty_loss, _select, compute_dtype
from gemsft.objectives import ASFT_ALPHA, EAFT_ALPHA, TS2_ALPHA, check_alpha

TS2_MAX_SUPPRESSED = 0.99  # official: suppressed_mass = torch.clamp(suppressed_mass, max=0.99)
EAFT_TOP_K = 20  # official: torch.topk(logits, k=20)
EAFT_ENTROPY_NORM = 3.0  # official: entropy_approx / 3.0 (about log 20 = 2.996)


def _rows(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int):
    """The unmasked rows in the compute dtype, with -inf (banned tokens) clamped to the dtype's
    lowest finite value so that 0 * log 0 stays 0; None when no label is unmasked."""
    _check_inputs(logits, labels)
    z, y = _select(logits, labels, ignore_index)
    if y.numel() == 0:
        return None, None
    z = z.to(compute_dtype(z.dtype))
    return z.clamp(min=torch.finfo(z.dtype).min), y


def _target_log_prob(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    log_f = F.log_softmax(z, dim=-1)
    return log_f, log_f.gather(1, y.unsqueeze(1)).squeeze(1)


# --------------------------------------------------------------------------- DFT


def dft_loss(logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = -100) -> torch.Tensor:
    """Dynamic Fine-Tuning: token mean of ``-sg(f_y) * log f_y`` over unmasked labels.

    Equal to TRL 1.16's ``SFTTrainer(loss_type="dft")`` loss (``per_token_loss * log_probs.exp().detach()``,
    summed and divided by the number of unmasked labels) when TRL gets no ``num_items_in_batch``.
    With gradient accumulation TRL (as transformers >= 4.46) divides instead by
    ``num_items_in_batch``, the unmasked labels of all micro-batches of the optimizer step; here every
    micro-batch is its own token mean (the project's convention, :mod:`gemsft.losses.logits`).
    """
    z, y = _rows(logits, labels, ignore_index)
    if y is None:
        return _empty_loss(logits)
    _, log_f_y = _target_log_prob(z, y)
    return -(dft_weight(log_f_y) * log_f_y).mean()


def dft_weight(log_f_y: torch.Tensor) -> torch.Tensor:
    """DFT's constant per-token weight ``sg(f_y)`` from the target log-probabilities (detached)."""
    return log_f_y.detach().exp()


# --------------------------------------------------------------------------- TS²


@torch.no_grad()
def sparsemax(z: torch.Tensor) -> torch.Tensor:
    """``sparsemax(z)`` over the last dimension (Martins & Astudillo 2016), without gradient.

    ``p_j = max(z_j - tau, 0)`` with ``tau = (sum_{i<=k} z_(i) - 1) / k`` over the sorted logits
    ``z_(1) >= z_(2) >= ...`` and ``k = max{k : 1 + k z_(k) > sum_{i<=k} z_(i)}`` (entmax's
    ``_sparsemax_threshold_and_support`` with a full sort, which the official code calls).
    """
    z_sorted = torch.sort(z, dim=-1, descending=True).values
    cumsum = z_sorted.cumsum(dim=-1).sub_(1.0)
    rho = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
    support = (rho * z_sorted > cumsum).sum(dim=-1, keepdim=True)  # >= 1: the largest logit
    tau = cumsum.gather(-1, support - 1) / support.to(z.dtype)
    return (z - tau).clamp_(min=0.0)


def ts2_loss(logits: torch.Tensor, labels: torch.Tensor, *, alpha: float = TS2_ALPHA,
             ignore_index: int = -100) -> torch.Tensor:
    """TS² ("Sparsemax+"): token mean over unmasked labels of

        L = (1 - ||p||^2) / 2 + <p, z> - z_y  +  alpha * -log(1 - min(s, 0.99)),

    ``p = sparsemax(z)``, ``s = sum_{j : p_j = 0, j != y} softmax(z)_j``: the sparsemax loss (entmax's
    ``sparsemax_loss``, gradient ``p - onehot(y)``) plus the suppression of the softmax mass outside
    the support. The support (``p_j == 0``) is a constant; once ``s`` exceeds 0.99 the second term is
    constant (the official clamp). Temperature: the official default 1.0 (not a setting here).
    """
    alpha = check_alpha(alpha, "ts2_loss alpha")
    z, y = _rows(logits, labels, ignore_index)
    if y is None:
        return _empty_loss(logits)
    p = sparsemax(z.detach())
    z_y = z.gather(1, y.unsqueeze(1)).squeeze(1)
    # p is a constant: the gradient of <p, z> - z_y is p - onehot(y), the sparsemax loss's own.
    sparse = (1.0 - (p * p).sum(-1)) / 2.0 + (p * z).sum(-1) - z_y
    outside = p == 0
    outside.scatter_(1, y.unsqueeze(1), False)
    suppressed = (torch.softmax(z, dim=-1) * outside).sum(-1).clamp(max=TS2_MAX_SUPPRESSED)
    return (sparse - alpha * torch.log1p(-suppressed)).mean()


# --------------------------------------------------------------------------- EAFT


def eaft_loss(logits: torch.Tensor, labels: torch.Tensor, *, alpha: float = EAFT_ALPHA,
              top_k: int = EAFT_TOP_K, entropy_norm: float = EAFT_ENTROPY_NORM,
              ignore_index: int = -100) -> torch.Tensor:
    """Entropy-Adaptive Fine-Tuning: token mean over unmasked labels of ``w * -log f_y`` with the
    constant weight ``w = (H_k / entropy_norm) ** alpha``, ``H_k`` the entropy of the softmax of the
    ``k = min(top_k, V)`` largest logits (official: k = 20, always, and norm 3.0; the official code
    fails for a vocabulary under 20).
    """
    alpha, top_k, entropy_norm = check_eaft_settings(alpha, top_k, entropy_norm)
    z, y = _rows(logits, labels, ignore_index)
    if y is None:
        return _empty_loss(logits)
    weight = eaft_weight(z, alpha, top_k, entropy_norm)
    _, log_f_y = _target_log_prob(z, y)
    return -(weight * log_f_y).mean()


def check_eaft_settings(alpha, top_k, entropy_norm, name: str = "eaft_loss") -> tuple[float, int, float]:
    """EAFT's settings checked (one-line ValueErrors naming ``name``): ``(alpha, top_k, entropy_norm)``."""
    alpha = check_alpha(alpha, f"{name} alpha")
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"{name} top_k must be an integer >= 1; got {top_k!r}")
    if check_alpha(entropy_norm, f"{name} entropy_norm") == 0.0:
        raise ValueError(f"{name} entropy_norm must be a finite number > 0; got {entropy_norm!r}")
    return alpha, int(top_k), float(entropy_norm)


@torch.no_grad()
def eaft_weight(z: torch.Tensor, alpha: float, top_k: int = EAFT_TOP_K,
                entropy_norm: float = EAFT_ENTROPY_NORM) -> torch.Tensor:
    """EAFT's constant per-token weight ``(H_k / entropy_norm) ** alpha`` of each row of ``z`` (..., V),
    ``H_k`` the entropy of the softmax of its ``k = min(top_k, V)`` largest logits; shape ``z.shape[:-1]``,
    without gradient. Row-local: a chunk of rows gives the rows' weights."""
    top = z.topk(min(int(top_k), z.shape[-1]), dim=-1).values
    log_top = F.log_softmax(top, dim=-1)
    entropy = -(log_top.exp() * log_top).sum(-1)
    return (entropy / float(entropy_norm)).pow(alpha)


# --------------------------------------------------------------------------- ASFT


def asft_loss(logits: torch.Tensor, labels: torch.Tensor, ref_logits: torch.Tensor, *,
              alpha: float = ASFT_ALPHA, ignore_index: int = -100) -> torch.Tensor:
    """Anchored SFT: token mean over unmasked labels of

        -sg(f_y) * log f_y  +  alpha * KL(q || f),   KL(q || f) = sum_j q_j (log q_j - log f_j),

    over the full vocabulary, ``q = softmax(ref_logits)`` the frozen reference (base) model's
    distribution, aligned with ``logits`` (same shape) and never differentiated. The official code's
    ``F.kl_div(log_softmax(z), softmax(z_ref)).sum(-1)``; its gradient w.r.t. ``z`` is ``f - q``.
    """
    alpha = check_alpha(alpha, "asft_loss alpha")
    if not isinstance(ref_logits, torch.Tensor) or tuple(ref_logits.shape) != tuple(logits.shape):
        shape = tuple(ref_logits.shape) if isinstance(ref_logits, torch.Tensor) else type(ref_logits).__name__
        raise ValueError(f"asft_loss needs ref_logits of the logits' shape {tuple(logits.shape)}; got {shape}")
    z, y = _rows(logits, labels, ignore_index)
    if y is None:
        return _empty_loss(logits)
    with torch.no_grad():
        z_ref = ref_logits.detach()[labels != ignore_index].to(z.dtype)
        log_q = F.log_softmax(z_ref.clamp(min=torch.finfo(z.dtype).min), dim=-1)
        q = log_q.exp()
        q_log_q = torch.xlogy(q, q).sum(-1)  # 0 log 0 = 0
    log_f, log_f_y = _target_log_prob(z, y)
    kl = q_log_q - torch.linalg.vecdot(q, log_f)
    return (-(log_f_y.detach().exp() * log_f_y) + alpha * kl).mean()
