"""Figure 11: next-token probabilities of fine-tuned models for one prompt (log scale), one panel per
run, beside the world's true answer distribution where the synthetic world knows it.

Plotted data (`plotted`): one panel per run (named after its label), one row per bar: x is the token
as on the axis, series the run's label or WORLD_SERIES."""

from __future__ import annotations

from collections import Counter

import numpy as np

from gemsft.config import beta_label
from gemsft.report.figures import FigureData
from gemsft.report.figures.plotted import record
from gemsft.report.figures.style import label_axes, new_figure, run_color, run_label, run_sort_key

THRESHOLD = 1e-4
DEFAULT_OBJECTIVES = ("ce", "ce_entropy", "gem", "gem_log_sigmoid")
WORLD_COLOR = "#9a9a9a"
WORLD_SERIES = "World (true distribution)"


def show_token(token: str) -> str:
    """A token as printed on the axis: visible spaces and newlines."""
    if token == "":
        return "∅"
    return token.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥")


def _entries(data: FigureData, options: dict) -> tuple[list[tuple[dict, dict]], str]:
    stats = [s for s in (data.model_stats or []) if isinstance(s, dict) and s.get("next_token")]
    if not stats:
        raise ValueError("figure 11 needs model_stats entries with a 'next_token' field; none given")
    for s in stats:
        if not isinstance(s.get("run"), dict) or "objective" not in s["run"]:
            raise ValueError("every model_stats entry needs a 'run' dict with model, objective, beta, seed")
        nt = s["next_token"]
        if len(nt.get("tokens", [])) != len(nt.get("probs", [])) or not nt.get("tokens"):
            raise ValueError(f"next_token of run {s['run']} needs equally long non-empty 'tokens' and 'probs'")
    models = Counter(str(s["run"].get("model")) for s in stats)
    model = options.get("model") or sorted(models, key=lambda m: (-models[m], m))[0]
    wanted = set(DEFAULT_OBJECTIVES) | set(options.get("next_token_objectives") or ())
    chosen: dict[tuple[str, str], dict] = {}
    for s in stats:
        run = s["run"]
        if str(run.get("model")) != model or run["objective"] not in wanted:
            continue
        key = (str(run["objective"]), beta_label(run.get("beta")))
        seed = run.get("seed", 0)
        if key not in chosen or seed < chosen[key]["run"].get("seed", 0):  # lowest seed per run
            chosen[key] = s
    if not chosen:
        raise ValueError(f"figure 11: no next_token for objectives {', '.join(sorted(wanted))} "
                         f"of model {model!r}")
    keys = sorted(chosen, key=lambda ob: run_sort_key(*ob))
    return [(chosen[k]["run"], chosen[k]["next_token"]) for k in keys], model


def token_order(next_tokens: list[dict], max_tokens: int | None = None) -> tuple[list[str], list[dict]]:
    """The shared x-axis: world answers first (by true probability), then every other token by its
    largest probability over the runs. Returns (categories, per run {category: probability}).

    A token whose stripped text is a world answer (" 7" for answer "7") counts as that answer;
    probabilities of tokens that fall in one category are added.
    """
    world = next((nt.get("world_p") for nt in next_tokens if nt.get("world_p")), None) or {}
    answers = sorted(world, key=lambda a: (-world[a], a))
    per_run = []
    for nt in next_tokens:
        probs: dict[str, float] = {}
        for token, p in zip(nt["tokens"], nt["probs"]):
            category = token.strip() if token.strip() in world else token
            probs[category] = probs.get(category, 0.0) + float(p)
        per_run.append(probs)
    others = {}
    for probs in per_run:
        for category, p in probs.items():
            if category not in world:
                others[category] = max(others.get(category, 0.0), p)
    rest = sorted(others, key=lambda c: (-others[c], c))
    order = answers + rest
    if max_tokens is not None:
        order = order[: max(int(max_tokens), len(answers))]
    return order, per_run


def draw(data: FigureData, options: dict | None = None):
    options = dict(options or {})
    entries, model = _entries(data, options)
    next_tokens = [nt for _, nt in entries]
    order, per_run = token_order(next_tokens, options.get("max_tokens", 30))
    world = next((nt.get("world_p") for nt in next_tokens if nt.get("world_p")), None)
    positions = np.arange(len(order), dtype=float)
    width = 0.4 if world else 0.75
    shift = width / 2 if world else 0.0

    all_probs = [p for probs in per_run for c, p in probs.items() if c in order and p > 0]
    if world:
        all_probs += [p for p in world.values() if p > 0]
    bottom = min(min(all_probs, default=THRESHOLD), THRESHOLD) / 4

    fig, axes = new_figure(max(7.0, 0.3 * len(order) + 2.5), 2.5 * len(entries) + 1.0,
                           len(entries), 1, sharex=True)
    tokens = np.array([show_token(c) for c in order], dtype=object)  # as on the x axis
    for ax, (run, nt), probs in zip(axes[:, 0], entries, per_run):
        objective, beta = str(run["objective"]), beta_label(run.get("beta"))
        label = run_label(objective, beta)
        heights = np.array([probs.get(c, np.nan) for c in order])
        shown = np.isfinite(heights)
        ax.bar(positions[shown] - shift, heights[shown], width=width, bottom=0,
               color=run_color(objective, beta), label=label)
        record(fig, label, label, tokens[shown], heights[shown], objective=objective, beta=beta,
               metric="next_token")
        if world:
            truth = np.array([float(world.get(c, np.nan)) for c in order])
            ok = np.isfinite(truth) & (truth > 0)
            ax.bar(positions[ok] + shift, truth[ok], width=width, color="white", edgecolor=WORLD_COLOR,
                   hatch="///", label=WORLD_SERIES)
            record(fig, label, WORLD_SERIES, tokens[ok], truth[ok], metric="world_p")
        ax.axhline(THRESHOLD, color="red", linestyle=":", linewidth=1.4, label="10⁻⁴ threshold")
        ax.set_yscale("log")
        ax.set_ylim(bottom, 1.5)
        ax.grid(axis="x", visible=False)
        rest = nt.get("rest")
        seed = run.get("seed")
        title = f"{label}" + (f", seed {seed}" if seed is not None else "")
        label_axes(ax, None, "Probability (log)", title)
        if rest is not None:
            ax.text(0.995, 0.96, f"mass outside top {len(nt['tokens'])}: {float(rest):.3g}",
                    transform=ax.transAxes, ha="right", va="top", fontsize=8)
    handles, labels = [], []
    for ax in axes[:, 0]:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            if text not in labels:
                handles.append(handle)
                labels.append(text)
    shared = (WORLD_SERIES, "10⁻⁴ threshold")
    ranked = [i for i, t in enumerate(labels) if t not in shared] + [labels.index(t) for t in shared if t in labels]
    handles, labels = [handles[i] for i in ranked], [labels[i] for i in ranked]
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5), fontsize=8.5)
    last = axes[-1, 0]
    last.set_xticks(positions, [show_token(c) for c in order], rotation=90 if len(order) > 12 else 0,
                    fontsize=9)
    label_axes(last, "Next token (shared order: world answers first, then by probability)")
    prompt = next_tokens[0].get("prompt", "")
    prefix = next_tokens[0].get("prefix", "")
    fig.suptitle(f"Next-token distribution after “{prompt}”" + (f" + “{prefix}”" if prefix else "")
                 + f" ({model})")
    return fig
