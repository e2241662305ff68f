"""The paper's Listing 1, verbatim: the reference GEM implementation that tests and
``benchmarks/loss_bench.py`` compare :func:`gemsft.losses.gem_loss` with. Not used for training."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
