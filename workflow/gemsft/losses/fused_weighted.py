"""DFT and EAFT fused with the LM head (:mod:`gemsft.losses.fused`): a cross-entropy weighted per token
(``sg(f_y)``; ``sg((H_20 / 3)^alpha)``, :mod:`gemsft.losses.newer`) whose weight each chunk computes
from its own rows of logits (:class:`~gemsft.losses.chunk_kernels.WeightedCeChunk`), so no (N, V)
tensor exists at any time.
"""

from __future__ import annotations

import torch

from gemsft.losses.chunk_kernels import DftChunk, EaftChunk
from gemsft.losses.fused import _fused_linear_loss
from gemsft.losses.newer import EAFT_ENTROPY_NORM, EAFT_TOP_K, check_eaft_settings
from gemsft.objectives import EAFT_ALPHA


def fused_linear_dft_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    chunk_size: int | None = None,
    return_stats: bool = False,
):
    """:func:`~gemsft.losses.newer.dft_loss` of ``hidden @ weight.T``, chunked like :func:`fused_linear_gem_loss`:
    a CE weighted per token by ``sg(f_y)``, which each chunk computes from its own rows of logits."""
    return _fused_linear_loss(DftChunk(), hidden, weight, labels, ignore_index, chunk_size, return_stats)


def fused_linear_eaft_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float = EAFT_ALPHA,
    top_k: int = EAFT_TOP_K,
    entropy_norm: float = EAFT_ENTROPY_NORM,
    ignore_index: int = -100,
    chunk_size: int | None = None,
    return_stats: bool = False,
):
    """:func:`~gemsft.losses.newer.eaft_loss` of ``hidden @ weight.T``, chunked like :func:`fused_linear_gem_loss`:
    a CE weighted per token by ``sg((H_k / entropy_norm) ** alpha)``, ``H_k`` the entropy of the softmax
    of the row's ``min(top_k, V)`` largest logits, which each chunk computes from its own rows (a
    (rows, k) top-k per block)."""
    alpha, top_k, entropy_norm = check_eaft_settings(alpha, top_k, entropy_norm, "fused_linear_eaft_loss")
    kernel = EaftChunk(alpha, top_k, entropy_norm)
    return _fused_linear_loss(kernel, hidden, weight, labels, ignore_index, chunk_size, return_stats)
