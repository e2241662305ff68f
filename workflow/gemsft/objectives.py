"""The training objectives as configs name them (CE, CE + weight decay, NEFT, CE + entropy, GEM
linear, GEM log-sigmoid, and the newer SFT objectives DFT, TS², EAFT and ASFT): for each, its loss kind
and settings. Data only.

Torch-free, so that planning the DAG (the run matrix reads which objectives use beta) does not import
torch. The loss functions and the registry of loss kinds live in :mod:`gemsft.losses`, which imports
this module, never the other way round; :func:`gemsft.losses.bind_loss` turns an objective into the
loss the trainer calls.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

DEFAULT_BETA = 0.7  # the paper's setting (Section 6); what a GEM loss gets when no beta is given
GEM_H_CHOICES = ("linear", "log_sigmoid")

# Defaults of the newer objectives, from their official code (docs/objectives.md, "Newer objectives"):
# TS²: xzy-bit/TS-2-ICLR-2026 train_ts2_ultrafeedback.sh passes --ts2_alpha 0.25 (train.py's argument
# default, 10.0, is not what its experiments ran with).
TS2_ALPHA = 0.25
# EAFT: ymxyll/ms-swift-EAFT (a submodule of PRIS-CV/EAFT) swift/trainers/arguments.py eaft_alpha = 1.0.
EAFT_ALPHA = 1.0
# ASFT: zhuchichi56/ASFT train_v2.py kl_weight = 0.1, the KL's coefficient (train_v2.sh KL_WEIGHT=0.1).
ASFT_ALPHA = 0.1


def check_beta(beta) -> float:
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise ValueError(f"beta must be a finite number > 0; got {beta!r}")
    value = float(beta)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"beta must be a finite number > 0; got {beta!r}")
    return value


def check_gamma(gamma) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
        raise ValueError(f"gamma must be a finite number >= 0; got {gamma!r}")
    value = float(gamma)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"gamma must be a finite number >= 0; got {gamma!r}")
    return value


def check_alpha(alpha, name: str = "alpha") -> float:
    """A weight of the newer objectives (TS²'s, EAFT's, ASFT's alpha): a finite number >= 0."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(float(alpha)) \
            or float(alpha) < 0.0:
        raise ValueError(f"{name} must be a finite number >= 0; got {alpha!r}")
    return float(alpha)


def check_h(h) -> str:
    if h not in GEM_H_CHOICES:
        raise ValueError(f"h must be one of {', '.join(map(repr, GEM_H_CHOICES))}; got {h!r}")
    return h


@dataclass(frozen=True)
class Objective:
    """One training objective as named in configs.

    The values of its settings are checked here. Whether they fit its loss kind (``h`` only for GEM,
    ``entropy_gamma`` exactly for ``ce_entropy``, ``uses_beta`` exactly for kinds that take beta) is
    checked where the kinds are registered, when the loss is bound (:func:`gemsft.losses.bind_loss`),
    so that a new kind needs no edit here.
    """

    name: str
    loss: str  # a loss kind registered in gemsft.losses.LOSSES ("ce", "ce_entropy", "gem", "dft", ...)
    h: str | None = None  # GEM weighting function; None for CE-type losses
    uses_beta: bool = False  # trained once per train.gem_betas value (the run matrix reads it)
    weight_decay: float = 0.0
    neftune_noise_alpha: float | None = None  # passed to TrainingArguments by the trainer
    entropy_gamma: float | None = None
    ts2_alpha: float | None = None  # TS²: weight of the out-of-support suppression term
    eaft_alpha: float | None = None  # EAFT: exponent of the normalised top-k entropy weight
    asft_alpha: float | None = None  # ASFT: weight of KL(reference || model)

    def __post_init__(self):
        if self.h is not None:
            check_h(self.h)
        if self.entropy_gamma is not None:
            check_gamma(self.entropy_gamma)
        for setting in ("ts2_alpha", "eaft_alpha", "asft_alpha"):
            if getattr(self, setting) is not None:
                check_alpha(getattr(self, setting), setting)


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective(name="ce", loss="ce"),
        Objective(name="ce_wd", loss="ce", weight_decay=0.1),
        Objective(name="neft", loss="ce", neftune_noise_alpha=5.0),
        Objective(name="ce_entropy", loss="ce_entropy", entropy_gamma=0.1),
        Objective(name="gem", loss="gem", h="linear", uses_beta=True),
        Objective(name="gem_log_sigmoid", loss="gem", h="log_sigmoid", uses_beta=True),
        Objective(name="dft", loss="dft"),
        Objective(name="ts2", loss="ts2", ts2_alpha=TS2_ALPHA),
        Objective(name="eaft", loss="eaft", eaft_alpha=EAFT_ALPHA),
        Objective(name="asft", loss="asft", asft_alpha=ASFT_ALPHA),
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
