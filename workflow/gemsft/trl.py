"""GEM (and every objective the pipeline trains with) for TRL users: one import.

    from gemsft.trl import GEMSFTTrainer
    trainer = GEMSFTTrainer(model=model, args=SFTConfig(...), train_dataset=dataset, beta=0.7, h="linear")

:class:`GEMSFTTrainer` is TRL's ``SFTTrainer`` (its dataset preparation, chat templates, collator,
completion-only and assistant-only masks, packing, logging) with the loss replaced by an objective's,
by subclassing, the route TRL recommends over the deprecated ``compute_loss_func``. The loss is the
pipeline's own (:class:`gemsft.train.trainer.ObjectiveLossMixin`): the fused loss where the model's
head allows (``fused_loss``: True, False or "auto"), a frozen reference copy for ASFT. Under
gradient accumulation each micro-batch's token mean is rescaled by TRL's ``num_items_in_batch`` to its
share of the step's token sum, so every token weighs alike (the official GEM code warns of the
accumulation bug this avoids).
"""

from __future__ import annotations

import dataclasses

from trl import SFTTrainer

from gemsft.objectives import Objective, get_objective
from gemsft.train.trainer import ObjectiveLossMixin


def resolve_objective(objective: str | Objective, h: str | None = None) -> Objective:
    """The registered objective `objective` (a name, or an :class:`Objective` as is), with GEM's
    weighting function `h` ("linear" or "log_sigmoid") when given."""
    found = objective if isinstance(objective, Objective) else get_objective(objective)
    if h is None:
        return found
    if found.h is None:
        raise ValueError(f"objective {found.name!r} has no weighting function h; h={h!r} is only for GEM")
    return dataclasses.replace(found, h=h)


class GEMSFTTrainer(ObjectiveLossMixin, SFTTrainer):
    """TRL's SFTTrainer trained with `objective` (default GEM at the paper's beta 0.7, h linear).

    `objective` is any name of :data:`gemsft.objectives.OBJECTIVES` ("gem", "gem_log_sigmoid", "ce",
    "dft", ...) or an :class:`~gemsft.objectives.Objective`; `beta` and `h` set GEM's. Objectives that
    differ from CE only in their training arguments (``ce_wd``'s weight decay, ``neft``'s noise) need
    them in the SFTConfig, and a mismatch is an error naming the argument."""

    normalise_by_items = True

    def __init__(self, *args, objective: str | Objective = "gem", beta: float | None = None, h: str | None = None,
                 fused_loss: bool | str | None = None, **kwargs):
        resolved = resolve_objective(objective, h)
        config = kwargs.get("args") if "args" in kwargs else (args[1] if len(args) > 1 else None)
        if config is not None:
            check_training_arguments(resolved, config)
        super().__init__(*args, objective=resolved, beta=beta, fused_loss=fused_loss, **kwargs)


def check_training_arguments(objective: Objective, args) -> None:
    """The settings that define an objective but live in the training arguments (``ce_wd``'s weight
    decay, ``neft``'s noise) must be set there; other objectives leave them to the user."""
    wanted = {"weight_decay": objective.weight_decay, "neftune_noise_alpha": objective.neftune_noise_alpha}
    for name, value in wanted.items():
        have = getattr(args, name, None)
        if value and value != have:
            raise ValueError(f"objective {objective.name!r} trains with {name}={value!r}; "
                             f"the SFTConfig has {name}={have!r}: set it there")
