"""The training losses (CE, CE + entropy, GEM, and the newer DFT, TS², EAFT, ASFT) and the registry
that picks one for an objective.

* :mod:`~gemsft.losses.logits`: the losses on materialised logits, and their shared conventions;
* :mod:`~gemsft.losses.newer`: DFT, TS², EAFT and ASFT on materialised logits (ASFT also takes
  the frozen reference model's logits);
* :mod:`~gemsft.losses.fused`: CE, GEM, DFT and EAFT of ``hidden @ weight.T`` computed chunk by
  chunk, the (N, V) logits never held (per-chunk kernels in :mod:`~gemsft.losses.chunk_kernels`;
  CE optionally with constant per-token weights; TS² and ASFT have no fused form);
* :mod:`~gemsft.losses.listing1`: the paper's Listing 1, the reference tests compare with;
* :mod:`~gemsft.losses.registry`: loss kind -> functions (:data:`LOSSES`), and :func:`bind_loss`,
  which the trainer calls once to get its objective's loss with settings and beta bound.

Adding an objective: write its loss ``my_loss(logits, labels, *, <settings>, ignore_index=-100)``
in ``logits.py`` (optionally a fused ``fused_linear_my_loss(hidden, weight, labels, *, <settings>,
return_stats=False)`` in ``fused.py``, with its kernel in ``chunk_kernels.py``), register it with
one entry ``"my": LossKind(logits=my_loss, fused=..., settings={keyword: Objective field})`` in
:data:`LOSSES`, and name the objective in ``gemsft.objectives.OBJECTIVES`` (and in the config
schema's ``train.objectives``) with ``loss="my"``. A loss that also needs the frozen base model's
logits takes them as a third argument and is registered with ``reference=True`` (as ``asft``); the
trainer then keeps a frozen copy of the model it starts from and passes its logits.
"""

from gemsft.losses.fused import (
    TokenStats,
    fused_linear_ce_loss,
    fused_linear_gem_loss,
)
from gemsft.losses.fused_weighted import fused_linear_dft_loss, fused_linear_eaft_loss
from gemsft.losses.listing1 import gem_listing1_loss
from gemsft.losses.logits import ce_entropy_loss, ce_loss, gem_loss, shift_for_causal_lm, token_entropy
from gemsft.losses.newer import asft_loss, dft_loss, eaft_loss, ts2_loss
from gemsft.losses.registry import LOSSES, BoundLoss, LossKind, bind_loss

__all__ = [
    "LOSSES",
    "BoundLoss",
    "LossKind",
    "TokenStats",
    "asft_loss",
    "bind_loss",
    "ce_entropy_loss",
    "ce_loss",
    "dft_loss",
    "eaft_loss",
    "fused_linear_ce_loss",
    "fused_linear_dft_loss",
    "fused_linear_eaft_loss",
    "fused_linear_gem_loss",
    "gem_listing1_loss",
    "gem_loss",
    "shift_for_causal_lm",
    "token_entropy",
    "ts2_loss",
]
