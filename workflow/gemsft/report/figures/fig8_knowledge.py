"""Figure 8: knowledge (forgetting) accuracy per leaderboard task, pre-trained model vs each run.

Plotted data (`plotted`): one panel per task and metric (named "<task> <metric>", and AVERAGE_PANEL),
one bar per run (x = its label)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gemsft.report.figures import FigureData, rows_for, select_model
from gemsft.report.figures.plotted import record
from gemsft.report.figures.style import error_bars, label_axes, new_figure, run_color, run_label, sorted_runs

TASK_TITLES = {
    "knowledge": "World knowledge probes",
    "arc_challenge": "ARC-Challenge",
    "hellaswag": "HellaSwag",
    "mmlu": "MMLU",
    "truthfulqa_mc2": "TruthfulQA",
    "winogrande": "WinoGrande",
    "gsm8k": "GSM8K",
}
AVERAGE_PANEL = "average"
METRIC_LABELS = {
    "acc": "Accuracy (%)",
    "acc_norm": "Normalised accuracy (%)",
    "mc2": "MC2 score (%)",
    "exact_match": "Exact match (%)",
}


def _pairs(options: dict) -> list[tuple[str, str]]:
    pairs = options.get("knowledge_tasks") or [("knowledge", "acc")]
    out = []
    for pair in pairs:
        if isinstance(pair, str) or len(pair) != 2:
            raise ValueError(f"knowledge_tasks must hold (task, metric) pairs; got {pair!r}")
        out.append((str(pair[0]), str(pair[1])))
    return out


def draw(data: FigureData, options: dict | None = None):
    options = dict(options or {})
    df, model = select_model(data.summary, options)
    pairs = _pairs(options)
    selections = [rows_for(df, task, metric) for task, metric in pairs]
    runs = sorted_runs(pd.concat(selections, ignore_index=True))
    panels = [(TASK_TITLES.get(task, task) + f" ({metric})", METRIC_LABELS.get(metric, f"{metric} (%)"), sel,
               (task, metric)) for (task, metric), sel in zip(pairs, selections)]
    if options.get("average", len(pairs) > 1):
        panels.append(("Average over tasks", "Mean score (%)", _average(selections, runs), ("", AVERAGE_PANEL)))

    ncols = min(len(panels), 4 if len(panels) in (7, 8) else 3)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = new_figure(max(3.3 * ncols, 5.0) + 2.2, 3.5 * nrows, nrows, ncols, sharey=False)
    handles = {}
    for index, (title, ylabel, sel, (task, metric)) in enumerate(panels):
        ax = axes[index // ncols, index % ncols]
        present = [run for run in runs if ((sel["objective"] == run[0]) & (sel["beta"] == run[1])).any()]
        lows, highs = [], []
        for x, (objective, beta) in enumerate(present):
            r = sel[(sel["objective"] == objective) & (sel["beta"] == beta)].iloc[0]
            label = run_label(objective, beta)
            bar = ax.bar([x], [r["value"]], width=0.75, color=run_color(objective, beta),
                         hatch="//" if objective == "base" else None, edgecolor="white", linewidth=0.5,
                         label=label)
            handles.setdefault(label, bar)
            error_bars(ax, [x], [r["value"]], [r["ci_low"]], [r["ci_high"]], color="black",
                       label=f"_err {label}")
            record(fig, f"{task} {metric}".strip(), label, label, r["value"], r["ci_low"], r["ci_high"],
                   objective=objective, beta=beta, task=task, metric=metric)
            lows += [r["value"], r["ci_low"]]
            highs += [r["value"], r["ci_high"]]
            if objective == "base":
                ax.axhline(r["value"], color=run_color("base"), linestyle="--", linewidth=1.0, zorder=1)
        _zoom(ax, lows, highs)
        ax.set_xticks([])
        ax.grid(axis="x", visible=False)
        label_axes(ax, None, ylabel, title)
    for index in range(len(panels), nrows * ncols):
        axes[index // ncols, index % ncols].set_visible(False)
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8.5,
               title="Model")
    fig.suptitle(f"Knowledge retained after fine-tuning ({model})")
    return fig


def _average(selections: list[pd.DataFrame], runs) -> pd.DataFrame:
    """Per run, the mean score over the tasks (only runs that have every task); no interval."""
    rows = []
    for objective, beta in runs:
        values = [sel[(sel["objective"] == objective) & (sel["beta"] == beta)]["value"] for sel in selections]
        if all(len(v) for v in values):
            rows.append({"objective": objective, "beta": beta, "value": float(np.mean([v.iloc[0] for v in values])),
                         "ci_low": np.nan, "ci_high": np.nan})
    return pd.DataFrame(rows, columns=["objective", "beta", "value", "ci_low", "ci_high"])


def _zoom(ax, lows, highs) -> None:
    values = np.asarray(lows + highs, dtype=float)
    values = values[np.isfinite(values)]
    lo, hi = float(values.min()), float(values.max())
    pad = max(0.35 * (hi - lo), 0.02 * abs(hi), 1e-3)
    ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad) if hi <= 100 else hi + pad)
