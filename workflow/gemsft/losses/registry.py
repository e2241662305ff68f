"""The one place a loss is chosen: loss kinds mapped to their functions, and the objective's loss
bound with its settings and the run's beta.

An :class:`~gemsft.objectives.Objective` names a loss kind; :data:`LOSSES` says how that kind is
computed, and :func:`bind_loss` gives the trainer one :class:`BoundLoss` to call on logits and, where
the kind has one, on hidden states and the head's weight. Beta is checked there and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from gemsft.losses.fused import (
    fused_linear_ce_loss,
    fused_linear_gem_loss,
)
from gemsft.losses.fused_weighted import fused_linear_dft_loss, fused_linear_eaft_loss
from gemsft.losses.logits import ce_entropy_loss, ce_loss, gem_loss
from gemsft.losses.newer import asft_loss, dft_loss, eaft_loss, ts2_loss
from gemsft.objectives import DEFAULT_BETA, Objective, check_beta


@dataclass(frozen=True)
class LossKind:
    """How one loss kind is computed.

    ``logits(logits, labels, *, ignore_index=-100, **settings)`` is the token mean on aligned
    logits; the optional ``fused(hidden, weight, labels, *, return_stats=False, **settings)`` gives
    the same loss of ``hidden @ weight.T`` without building those logits (with ``return_stats``:
    ``(loss, TokenStats)``). ``settings`` maps each keyword the functions take to the
    :class:`~gemsft.objectives.Objective` field it comes from; ``uses_beta``: they also take the
    run's ``beta``. ``reference``: the loss also takes the frozen reference (base) model's logits,
    ``logits(logits, labels, ref_logits, ...)``, which the trainer computes without gradient; such a
    kind has no fused form.
    """

    logits: Callable
    fused: Callable | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
    uses_beta: bool = False
    reference: bool = False

    def __post_init__(self):
        if self.reference and self.fused is not None:
            raise ValueError("a loss kind that takes reference logits has no fused form (fused must be None)")


LOSSES: dict[str, LossKind] = {
    "ce": LossKind(logits=ce_loss, fused=fused_linear_ce_loss),
    "ce_entropy": LossKind(logits=ce_entropy_loss, settings={"gamma": "entropy_gamma"}),
    "gem": LossKind(logits=gem_loss, fused=fused_linear_gem_loss, settings={"h": "h"}, uses_beta=True),
    # The newer objectives (gemsft.losses.newer). DFT and EAFT are a CE with a constant per-token
    # weight that depends on the token's own row of logits only, so their fused forms compute it
    # chunk by chunk. TS² has none: its sparsemax threshold needs a full sort of each row's logits
    # (per chunk, rows x V sorted values and int64 indices on top of the logits) and its gradient is
    # not a weighted CE's; row-local, so a chunk kernel is possible, but none is written. ASFT has
    # none: it needs the reference model's distribution over the full vocabulary for every token,
    # i.e. the reference's own (N, V) logits (reference=True).
    "dft": LossKind(logits=dft_loss, fused=fused_linear_dft_loss),
    "ts2": LossKind(logits=ts2_loss, settings={"alpha": "ts2_alpha"}),
    "eaft": LossKind(logits=eaft_loss, fused=fused_linear_eaft_loss, settings={"alpha": "eaft_alpha"}),
    "asft": LossKind(logits=asft_loss, settings={"alpha": "asft_alpha"}, reference=True),
}


@dataclass(frozen=True)
class BoundLoss:
    """An objective's loss with its settings and the run's beta bound: what the trainer calls."""

    objective: str  # the objective's name
    beta: float | None  # the beta the loss uses; None for objectives without one
    logits: Callable  # (logits, labels[, ref_logits], ignore_index=-100) -> loss
    fused: Callable | None  # (hidden, weight, labels, return_stats=False) -> loss [, TokenStats]
    reference: bool = False  # logits also takes the frozen reference model's logits (ref_logits)


def bind_loss(objective: Objective, beta: float | None = None) -> BoundLoss:
    """``objective``'s loss with its settings bound, and ``beta`` (the run's, from
    ``train.gem_betas``) if its kind takes one: :data:`DEFAULT_BETA` when None. A beta for an
    objective without one, or settings that do not fit its kind, are a ValueError naming it."""
    name = objective.name
    kind = LOSSES.get(objective.loss)
    if kind is None:
        raise ValueError(f"objective {name!r}: unknown loss kind {objective.loss!r}; "
                         f"registered: {', '.join(LOSSES)}")
    if objective.uses_beta != kind.uses_beta:
        raise ValueError(f"objective {name!r}: uses_beta must be {kind.uses_beta} for loss {objective.loss!r}")
    used = set(kind.settings.values())
    for setting in sorted({f for k in LOSSES.values() for f in k.settings.values()}):
        given = getattr(objective, setting) is not None
        if given != (setting in used):
            need = "needs" if setting in used else "does not use"
            raise ValueError(f"objective {name!r}: loss {objective.loss!r} {need} {setting}")
    settings = {keyword: getattr(objective, setting) for keyword, setting in kind.settings.items()}
    if kind.uses_beta:
        beta = settings["beta"] = check_beta(DEFAULT_BETA if beta is None else beta)
    elif beta is not None:
        raise ValueError(f"objective {name!r} does not use beta; got beta={beta!r}")
    return BoundLoss(
        objective=name,
        beta=beta,
        logits=partial(kind.logits, **settings),
        fused=partial(kind.fused, **settings) if kind.fused is not None else None,
        reference=kind.reference,
    )
