"""Figure 12: GEM minus CE on a few headline metrics, for every model of a scalability run. Where a
model's reward model was trained by the DAG, its held-out pair accuracy is in the title: it scored the
win rates.

Plotted data (`plotted`): one panel, "gains", one row per model (x) and metric (series, the legend's
label); and per model a row of its reward model's held-out accuracy."""

from __future__ import annotations

import numpy as np

from gemsft.config import beta_label
from gemsft.report.figures import FigureData
from gemsft.report.figures.plotted import record
from gemsft.report.figures.style import label_axes, new_figure, run_label
from gemsft.report.reward_accuracy import METRIC as RM_ACCURACY, SERIES as RM_ACCURACY_SERIES, figure_accuracy
from gemsft.report.summary_reader import normalise

#: (task or tasks (first present wins), metric, k or "min"/"max"/None, label; "{k}" is the k used)
DEFAULT_METRICS = (
    ("chat", "win_rate", "min", "Win rate, N={k}"),
    ("chat", "win_rate", "max", "Best-of-{k} win rate"),
    (("humaneval", "code"), "pass_at_k", 100, "pass@{k} (code)"),
    ("math", "majority_accuracy", "max", "Math majority@{k}"),
    ("chat", "sbert_diversity", None, "SBERT diversity"),
)
METRIC_COLORS = ["#4c72b0", "#1b3f75", "#55a868", "#c44e52", "#8172b2", "#937860", "#da8bc3"]


def _value(df, model, objective, beta, tasks, metric, k):
    sel = df[(df["model"] == model) & (df["objective"] == objective) & (df["beta"] == beta)
             & df["task"].isin(tasks) & (df["metric"] == metric)]
    if sel.empty:
        return None, None
    for task in tasks:  # first task present wins
        task_sel = sel[sel["task"] == task]
        if not task_sel.empty:
            sel = task_sel
            break
    if k in ("min", "max"):
        ks = sel["k"].dropna()
        if ks.empty:
            return None, None
        k = ks.min() if k == "min" else ks.max()
    if k is None:
        row = sel[sel["k"].isna()]
    else:
        row = sel[sel["k"] == float(k)]
    if row.empty:
        return None, None
    return float(row["value"].iloc[0]), (None if k is None else float(k))


def _gem_run(df, model, options) -> tuple[str, str] | None:
    objectives = [options["gem_objective"]] if options.get("gem_objective") else ["gem", "gem_log_sigmoid"]
    beta = beta_label(options.get("gem_beta", "0.7"))
    for objective in objectives:
        betas = sorted(set(df[(df["model"] == model) & (df["objective"] == objective)]["beta"]))
        if beta in betas:
            return objective, beta
        if not options.get("gem_beta") and len(betas) == 1:
            return objective, betas[0]
    return None


def draw(data: FigureData, options: dict | None = None):
    options = dict(options or {})
    df = normalise(data.summary)
    models = sorted(set(df["model"]))
    if len(models) < 2:
        raise ValueError("figure 12 needs more than one model")
    metrics = [(tuple([t] if isinstance(t, str) else t), m, k, label)
               for t, m, k, label in options.get("metrics", DEFAULT_METRICS)]
    gains: dict[str, list[float]] = {label: [] for *_, label in metrics}
    ks_used: dict[str, set] = {label: set() for *_, label in metrics}
    used_models, gem_names = [], set()
    for model in models:
        gem = _gem_run(df, model, options)
        if gem is None or not ((df["model"] == model) & (df["objective"] == "ce")).any():
            continue
        gem_names.add(gem)
        used_models.append(model)
        for tasks, metric, k, label in metrics:
            g, k_gem = _value(df, model, *gem, tasks, metric, k)
            c, k_ce = _value(df, model, "ce", "na", tasks, metric, k)
            if g is not None and c is not None and k_gem != k_ce:  # "min"/"max" resolved differently
                g, k_gem = _value(df, model, *gem, tasks, metric, k_ce)
            gains[label].append(np.nan if g is None or c is None else g - c)
            if g is not None and c is not None and k_ce is not None:
                ks_used[label].add(k_ce)
    if len(used_models) < 2:
        raise ValueError("figure 12 needs CE and GEM runs for more than one model")
    gains = {label.replace("{k}", "/".join(f"{k:g}" for k in sorted(ks_used[label])) or "k"): v
             for label, v in gains.items() if np.isfinite(v).any()}
    if not gains:
        raise ValueError("figure 12: none of the headline metrics is present for both CE and GEM")

    fig, axes = new_figure(max(6.0, 1.5 * len(used_models) + 3.5), 4.4)
    ax = axes[0, 0]
    width = 0.8 / len(gains)
    x = np.arange(len(used_models), dtype=float)
    for i, (label, values) in enumerate(gains.items()):
        ax.bar(x - 0.4 + width * (i + 0.5), values, width=width, color=METRIC_COLORS[i % len(METRIC_COLORS)],
               label=label)
        record(fig, "gains", label, used_models, values)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, used_models, rotation=0 if len(used_models) < 5 else 30)
    ax.grid(axis="x", visible=False)
    gem_text = ", ".join(sorted(run_label(o, b) for o, b in gem_names))
    title = f"Gain of {gem_text} over CE, per model"
    accuracies = {model: figure_accuracy(df[df["model"] == model]) for model in used_models}
    accuracies = {model: found for model, found in accuracies.items() if found is not None}
    if accuracies:  # how far each model's win rates can be trusted
        title += "\nreward model's held-out pair accuracy (chat): " + ", ".join(
            f"{model} {found[0]:.1f}%" for model, found in accuracies.items())
        for model, found in accuracies.items():
            record(fig, "gains", RM_ACCURACY_SERIES, model, *found, task="chat", metric=RM_ACCURACY)
    label_axes(ax, "Model", "GEM − CE (percentage points)", title)
    fig.legend(loc="outside right upper", fontsize=8.5, title="Metric")
    return fig
