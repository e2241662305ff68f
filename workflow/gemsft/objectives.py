"""The training objectives as configs name them (CE, CE + weight decay, NEFT, CE + entropy, GEM
linear, GEM log-sigmoid) and their settings.

Torch-free, so that planning the DAG (the Snakefile reads which objectives use beta) does not import
torch; `Objective.compute` imports the losses when it runs.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

DEFAULT_BETA = 0.7  # the paper's setting (Section 6)
GEM_H_CHOICES = ("linear", "log_sigmoid")
LOSS_KINDS = ("ce", "ce_entropy", "gem")


def check_gamma(gamma) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
        raise ValueError(f"gamma must be a finite number >= 0; got {gamma!r}")
    value = float(gamma)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"gamma must be a finite number >= 0; got {gamma!r}")
    return value


def check_h(h) -> str:
    if h not in GEM_H_CHOICES:
        raise ValueError(f"h must be one of {', '.join(map(repr, GEM_H_CHOICES))}; got {h!r}")
    return h


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
            check_h(self.h)
        elif self.h is not None:
            raise ValueError(f"objective {self.name!r}: h applies only to 'gem'")
        if (self.loss == "ce_entropy") != (self.entropy_gamma is not None):
            raise ValueError(
                f"objective {self.name!r}: entropy_gamma is required exactly for 'ce_entropy'"
            )
        if self.entropy_gamma is not None:
            check_gamma(self.entropy_gamma)

    def compute(self, logits, labels, beta: float | None = None, ignore_index: int = -100):
        """Loss on aligned logits/labels (torch tensors). ``beta`` only for GEM (default 0.7)."""
        from gemsft.losses import ce_entropy_loss, ce_loss, gem_loss

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
