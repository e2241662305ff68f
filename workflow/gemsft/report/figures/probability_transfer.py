"""Figures 2-4 (probability transfer, CE vs GEM) and a numerical check of Proposition 2, computed
with the project's own training losses (:func:`gemsft.losses.logits.ce_loss`,
:func:`gemsft.losses.logits.gem_loss`) on a toy categorical model ``f = softmax(z)`` with a trainable
logit vector ``z`` over 10 tokens.

* Transfer (Figures 2-4, Section 4): the model starts from a "pre-trained" distribution in which
  the target token 3 is a minority, and takes plain gradient steps on one example with label 3.
  CE moves mass from every other token to the target and keeps going until the distribution
  collapses on it; GEM with beta = 0 takes mass only from the most likely token (sparse update) and
  stops once the target is the most likely token (adaptive termination), so every other token's
  logit, and the ratios among them, are untouched; GEM with beta = 0.7 lies in between.
  ``gem_loss`` needs beta > 0; beta = 0 is run as ``BETA_ZERO`` = 1e-3, for which
  ``q = softmax(z / beta)`` is the indicator of the argmax whenever the top logit leads by more
  than about 0.01 (the paper's Eq. (6) limit).
* Proposition 2: trained on a data set whose label distribution is ``p > 0``, GEM (linear h)
  converges to ``f* = softmax(beta * log p)`` (proportional to ``p ** beta``), where its
  auxiliary distribution is ``q* = p``; ``beta = 1`` gives CE's optimum ``f* = p``.

Everything is deterministic (a seeded ``torch.Generator`` for the random start) and runs in well
under a second on a CPU.

Plotted data (`plotted`): panels TRANSFER_PANEL (the final distribution of each method over tokens
1-10, and the initial one), TARGET_PANEL (the target's probability per step) and PROPOSITION2_PANEL
(the distance per step, as drawn: floored at 1e-16 for the log axis); series are the legends' names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch

from gemsft.losses.logits import ce_loss, gem_loss
from gemsft.report.figures import FigureData
from gemsft.report.figures.plotted import record
from gemsft.report.figures.style import label_axes, run_color

#: the toy "pre-trained" next-token distribution; the target (token 3) is a minority
INITIAL_PROBS = (0.28, 0.20, 0.06, 0.14, 0.10, 0.08, 0.06, 0.04, 0.025, 0.015)
TARGET = 2  # 0-based index of "token 3", the label in the paper's Figure 2
BETA_ZERO = 1e-3  # stand-in for beta = 0 (gem_loss requires beta > 0)
#: label counts of the Proposition 2 data set (100 examples, every token present: p > 0)
DATA_COUNTS = (30, 20, 15, 10, 8, 6, 4, 3, 2, 2)
METHODS = (("ce", None), ("gem", 0.0), ("gem", 0.7))
TRANSFER_PANEL, TARGET_PANEL, PROPOSITION2_PANEL = "transfer", "target probability", "proposition 2"
INITIAL_SERIES = "initial"


@contextlib.contextmanager
def _one_thread():
    # Tiny tensors: waking intra-op threads would cost more than the arithmetic.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _loss(method: str, beta: float | None, h: str):
    if method == "ce":
        if beta is not None:
            raise ValueError("CE takes no beta")
        return lambda z, y: ce_loss(z, y)
    if method == "gem":
        if beta is None:
            raise ValueError("GEM needs beta (0 is run as BETA_ZERO)")
        b = BETA_ZERO if beta == 0 else float(beta)
        return lambda z, y: gem_loss(z, y, beta=b, h=h)
    raise ValueError(f"method must be 'ce' or 'gem'; got {method!r}")


def _descend(logits: torch.Tensor, labels: torch.Tensor, loss_fn, steps: int, lr: float) -> torch.Tensor:
    """Plain gradient descent on the mean loss over ``labels``; returns softmax(z) at every step."""
    if steps < 0 or lr <= 0:
        raise ValueError(f"steps must be >= 0 and lr > 0; got steps={steps}, lr={lr}")
    z = logits.detach().clone().to(torch.float64).requires_grad_(True)
    trajectory = [torch.softmax(z.detach(), -1)]
    with _one_thread():
        for _ in range(steps):
            loss = loss_fn(z.expand(labels.numel(), -1), labels)
            (grad,) = torch.autograd.grad(loss, z)
            with torch.no_grad():
                z -= lr * grad
            trajectory.append(torch.softmax(z.detach(), -1))
    return torch.stack(trajectory)


def transfer_steps(method: str = "ce", beta: float | None = None, init_probs: Sequence[float] = INITIAL_PROBS,
                   labels: int | Sequence[int] = TARGET, steps: int = 300, lr: float = 0.1,
                   h: str = "linear") -> np.ndarray:
    """Probabilities ``f_t`` for t = 0..steps (array (steps + 1, K)) of a softmax model that starts at
    ``init_probs`` and takes gradient steps on the examples ``labels`` (one int: a single target).

    ``method="ce"`` uses :func:`gemsft.losses.logits.ce_loss`; ``method="gem"`` uses
    :func:`gemsft.losses.logits.gem_loss` with ``beta`` (0 is run as ``BETA_ZERO``) and weighting ``h``.
    """
    probs = torch.as_tensor(init_probs, dtype=torch.float64)
    if probs.dim() != 1 or (probs <= 0).any() or abs(float(probs.sum()) - 1.0) > 1e-6:
        raise ValueError("init_probs must be a positive probability vector")
    y = torch.as_tensor([labels] if isinstance(labels, int) else list(labels), dtype=torch.long)
    if y.numel() == 0 or (y < 0).any() or (y >= probs.numel()).any():
        raise ValueError(f"labels must be token indices in 0..{probs.numel() - 1}")
    return _descend(probs.log(), y, _loss(method, beta, h), steps, lr).numpy()


def fixed_point(p: Sequence[float], beta: float) -> np.ndarray:
    """Proposition 2's equilibrium model f* = softmax(beta * log p)."""
    p = np.asarray(p, dtype=float)
    w = np.exp(beta * np.log(p) - np.max(beta * np.log(p)))
    return w / w.sum()


def proposition2_distances(betas: Sequence[float] = (0.5, 0.7, 1.0), counts: Sequence[int] = DATA_COUNTS,
                           steps: int = 300, lr: float = 2.0, seed: int = 0,
                           reference: str = "fixed_point") -> dict[float, np.ndarray]:
    """For each beta: ||f_t - f*||_2 for t = 0..steps, where f_t is a softmax model trained with
    full-batch gradient descent on :func:`gemsft.losses.logits.gem_loss` (linear h) over a data set with
    ``counts[j]`` examples of label j (label distribution p = counts / sum(counts)), from the same
    random start (``seed``) for every beta.

    ``reference="fixed_point"``: f* = softmax(beta log p) (Proposition 2; the distances go to 0);
    ``reference="data"``: the data distribution p itself (reached only at beta = 1).
    """
    counts_t = torch.as_tensor(counts, dtype=torch.long)
    if counts_t.dim() != 1 or (counts_t <= 0).any():
        raise ValueError("Proposition 2 needs p > 0: every count must be positive")
    if reference not in ("fixed_point", "data"):
        raise ValueError(f"reference must be 'fixed_point' or 'data'; got {reference!r}")
    labels = torch.repeat_interleave(torch.arange(counts_t.numel()), counts_t)
    p = (counts_t.double() / counts_t.sum()).numpy()
    start = torch.randn(counts_t.numel(), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out = {}
    for beta in betas:
        trajectory = _descend(start, labels, _loss("gem", float(beta), "linear"), steps, lr).numpy()
        target = fixed_point(p, float(beta)) if reference == "fixed_point" else p
        out[float(beta)] = np.linalg.norm(trajectory - target, axis=1)
    return out


def _entropy(f: np.ndarray) -> float:
    return float(-(f * np.log(f)).sum())


def draw(data: FigureData | None = None, options: dict | None = None):
    """Figures 2-4 panels and the Proposition 2 check; ``data`` is not used (pure computation).

    options: steps (300), lr (0.1), prop2_betas ((0.5, 0.7, 1.0)), prop2_steps (300), prop2_lr (2.0).
    """
    import matplotlib.pyplot as plt

    options = dict(options or {})
    steps, lr = int(options.get("steps", 300)), float(options.get("lr", 0.1))
    init = np.asarray(INITIAL_PROBS)
    runs = [(method, beta, transfer_steps(method, beta, steps=steps, lr=lr)) for method, beta in METHODS]

    fig = plt.figure(figsize=(13.0, 7.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(1.0, 1.05))
    top_axes = top.subplots(1, 4, sharey=True)
    bottom_axes = bottom.subplots(1, 2)
    tokens = np.arange(1, init.size + 1)
    panels = [("Initial ('pre-trained')", None, None, np.stack([init]))] + \
        [(_method_title(m, b, steps), m, b, t) for m, b, t in runs]
    for col, (title, method, beta, trajectory) in enumerate(panels):
        ax = top_axes[col]
        f = trajectory[-1]
        color = "#9a9a9a" if method is None else _method_color(method, beta)
        colors = [color] * init.size
        bars = ax.bar(tokens, f, width=0.72, color=colors, edgecolor="none", label="probability")
        record(fig, TRANSFER_PANEL, INITIAL_SERIES if method is None else _method_title(method, beta, None),
               tokens, f)
        bars[TARGET].set_edgecolor("black")
        bars[TARGET].set_linewidth(1.8)
        if method is not None:
            ax.scatter(tokens, init, marker="_", s=160, color="black", linewidths=1.6, zorder=4,
                       label="initial")
        ax.set_xticks(tokens)
        ax.grid(axis="x", visible=False)
        ax.text(0.97, 0.95, f"p(token {TARGET + 1}) = {f[TARGET]:.2f}\nentropy = {_entropy(f):.2f} nats",
                transform=ax.transAxes, ha="right", va="top", fontsize=8.5,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})
        label_axes(ax, "Token (target: 3, outlined)", "Probability" if col == 0 else None, title)
    top_axes[0].set_ylim(0, 1.05)
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black", linewidth=1.8),
               plt.Line2D([], [], marker="_", linestyle="none", color="black", markersize=12, mew=1.6)]
    top.legend(handles, ["target token (label)", "initial probability"], loc="outside upper right",
               ncols=2, fontsize=8.5)

    ax = bottom_axes[0]
    for method, beta, trajectory in runs:
        ax.plot(np.arange(trajectory.shape[0]), trajectory[:, TARGET], color=_method_color(method, beta),
                linewidth=1.8, label=_method_title(method, beta, None))
        record(fig, TARGET_PANEL, _method_title(method, beta, None), np.arange(trajectory.shape[0]),
               trajectory[:, TARGET])
    ax.axhline(init.max(), color="#9a9a9a", linestyle=":", linewidth=1.0,
               label="initial top probability")
    label_axes(ax, "Gradient step", f"p(target token {TARGET + 1})",
               "Target probability: CE keeps transferring, GEM (β=0) stops")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="center right", fontsize=8.5)

    ax = bottom_axes[1]
    betas = tuple(float(b) for b in options.get("prop2_betas", (0.5, 0.7, 1.0)))
    p_steps, p_lr = int(options.get("prop2_steps", 300)), float(options.get("prop2_lr", 2.0))
    distances = proposition2_distances(betas, steps=p_steps, lr=p_lr)
    for beta, d in distances.items():
        name = "β=1 (= CE): f* = p" if beta == 1.0 else f"β={beta:g}: f* = softmax({beta:g}·log p)"
        ax.plot(np.arange(d.size), np.maximum(d, 1e-16), color=_method_color("gem", beta), linewidth=1.8,
                label=name)
        record(fig, PROPOSITION2_PANEL, name, np.arange(d.size), np.maximum(d, 1e-16))
    if 0.7 in betas:
        to_data = proposition2_distances((0.7,), steps=p_steps, lr=p_lr, reference="data")[0.7]
        ax.plot(np.arange(to_data.size), to_data, color=_method_color("gem", 0.7), linestyle="--",
                linewidth=1.3, label="β=0.7: distance to p (not a fixed point)")
        record(fig, PROPOSITION2_PANEL, "β=0.7: distance to p (not a fixed point)", np.arange(to_data.size), to_data)
    ax.set_yscale("log")
    ax.set_ylim(1e-16, 3)
    label_axes(ax, "Gradient step (full batch, 100 examples)", "‖f_t − f*‖₂ (log scale)",
               "Proposition 2: GEM converges to f* = softmax(β log p)")
    ax.legend(loc="lower left", fontsize=8.5)
    fig.suptitle("Probability transfer of CE and GEM on a 10-token softmax model")
    return fig


def _method_title(method: str, beta, steps: int | None) -> str:
    name = "CE" if method == "ce" else f"GEM (β={beta:g})"
    return name if steps is None else f"After {name}, {steps} steps"


def _method_color(method: str, beta) -> str:
    if method == "ce":
        return run_color("ce")
    return run_color("gem", max(float(beta), 0.5) if beta != 1.0 else 1.0)
