"""The per-chunk kernels of the fused losses: what one loss does to one block of logits rows.

:func:`gemsft.losses.fused._fused_pass` computes the block's scaled logits ``z * kernel.scale``
with the matmul and calls ``kernel(s, yi, a, scratch, want_stats)`` with the (rows, V) block
``s``, its targets ``yi`` (rows, 1), the (rows, V) buffer ``a`` to write dL/dz into (None when no
gradient is wanted) and ``scratch(i)``, up to two (rows, V) work buffers. The kernel returns
``(loss_sum, g, g_sum, ce_sum, entropy_sum)``: the summed loss of the rows, the part ``g`` of
the gradient without the target term, with ``g_sum`` (rows, 1) the amount the pass subtracts at
each target (None: 1 per row), and with ``want_stats`` the summed CE and entropy of
``softmax(z)`` (else None). A fused form of a new loss is one such kernel.

A weighted kernel (:class:`WeightedCeChunk` and its DFT and EAFT forms) also takes ``wi``, the
given per-token weights of the block's rows (rows, 1), when the loss was called with
``token_weights``; the pass passes it as a sixth argument then, and only then.
"""

from __future__ import annotations

import torch

from gemsft.losses.logits import LOG_SIGMOID_SCALE
from gemsft.losses.newer import dft_weight, eaft_weight


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


class GemChunk:
    """GEM on one chunk of logits (see :class:`gemsft.losses.logits._GemFunction` for the algebra).

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
            a.mul_(torch.sub(s, s_y, out=scratch(1)).mul_(LOG_SIGMOID_SCALE * beta).sigmoid_())
            a_sum = a.sum(dim=1, keepdim=True)
            loss = (_dot(a, s) - _dot(s_y, a_sum)) * beta
        else:  # sum_j q_j = 1
            a_sum = None
            loss = (_dot(a, s) - s_y.sum()) * beta
        return loss, a, a_sum, *stats


class CeChunk:
    """Cross-entropy on one chunk of logits: gradient ``softmax(z) - onehot(y)``."""

    scale = 1.0

    def __call__(self, z, yi, a, scratch, want_stats):
        log_f = torch.log_softmax(z, dim=-1, out=scratch(1))
        loss = -log_f.gather(1, yi).sum()
        f = torch.softmax(z, dim=-1, out=scratch(0) if a is None else a)
        entropy = -_dot(f, log_f) if want_stats else None
        return loss, f, None, (loss if want_stats else None), entropy


class WeightedCeChunk:
    """Cross-entropy with a constant weight per token: loss ``w * -log f_y``, gradient
    ``w * (softmax(z) - onehot(y))`` with respect to ``z``, the weight never differentiated.

    Per row ``w`` is the given weight ``wi`` (``token_weights``), times :meth:`token_weight` of the
    row's own logits where a subclass computes one (DFT, EAFT). A token's weight depends on its own
    row only, so the block's rows are all it needs: no (N, V) tensor. The pass holds no autograd
    graph, so nothing is differentiated through the weights (``sg``).
    """

    scale = 1.0

    def token_weight(self, z, log_f_y):
        """The weights (rows, 1) computed from the block's logits ``z`` and ``log f_y``; None: none."""
        return None

    def __call__(self, z, yi, a, scratch, want_stats, wi=None):
        log_f = torch.log_softmax(z, dim=-1, out=scratch(1))
        log_f_y = log_f.gather(1, yi)
        w = self.token_weight(z, log_f_y)
        if w is None:
            if wi is None:
                raise ValueError("a weighted cross-entropy needs token weights or a weight of the logits")
            w = wi.clone()  # a fresh tensor: the pass negates the returned g_sum in place
        elif wi is not None:
            w = w * wi
        loss = -(w * log_f_y).sum()
        f = torch.softmax(z, dim=-1, out=scratch(0) if a is None else a)
        stats = (-log_f_y.sum(), -_dot(f, log_f)) if want_stats else (None, None)
        if a is not None:
            f.mul_(w)  # the gradient without the target term; the pass subtracts w at y
        return loss, f, w, *stats


class DftChunk(WeightedCeChunk):
    """DFT on one chunk: ``w = sg(f_y)`` (:func:`gemsft.losses.newer.dft_weight`)."""

    def token_weight(self, z, log_f_y):
        return dft_weight(log_f_y)


class EaftChunk(WeightedCeChunk):
    """EAFT on one chunk: ``w = sg((H_k / entropy_norm) ** alpha)`` of each row's top-k logits
    (:func:`gemsft.losses.newer.eaft_weight`; a (rows, k) top-k per block)."""

    def __init__(self, alpha: float, top_k: int, entropy_norm: float):
        self.alpha, self.top_k, self.entropy_norm = alpha, top_k, entropy_norm

    def token_weight(self, z, log_f_y):
        return eaft_weight(z, self.alpha, self.top_k, self.entropy_norm).unsqueeze(1)
