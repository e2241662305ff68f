"""The claims' forest plot: one row per claim of results/claims.csv, its paired difference and 95%
interval signed so that the paper's claimed direction points right, a line at 0, and the verdict
written and coloured at the row. Differences of different units (percentage points, nats) get a
panel each, so no axis puts an entropy gap beside a win-rate gap as if they were comparable.

Plotted data (`plotted`): one panel per unit (named after it), one row per claim: x is the claim's id,
series its verdict, value and interval the signed difference as drawn (NaN for an untestable claim,
which has no point)."""

from __future__ import annotations

import numpy as np
from matplotlib.transforms import blended_transform_factory

from gemsft.report.bounds import NATS, POINTS, difference_unit
from gemsft.report.claims import CLAIM_IDS, UNTESTABLE, metric_text, normalise_claims
from gemsft.report.figures import FigureData
from gemsft.report.figures.plotted import record
from gemsft.report.figures.style import error_bars, label_axes, new_figure

VERDICT_COLORS = {"supported": "#2a9d3a", "contradicted": "#c0392b", "inconclusive": "#d08a00",
                  UNTESTABLE: "#8c8c8c"}
UNIT_ORDER = (POINTS, NATS)  # other units after these, by name


def _model(df, options) -> str:
    models = sorted(set(df["model"]))
    model = options.get("model")
    if model is None:
        return models[0]
    if model not in models:
        raise ValueError(f"claims have no rows for model {model!r}; models: {', '.join(models)}")
    return model


def oriented(direction: str, difference: float, low: float, high: float) -> tuple[float, float, float]:
    """(difference, low, high) signed so that the claimed direction is positive: B - A for a claim
    that A is lower than B."""
    sign = 1.0 if direction == ">" else -1.0
    low, high = sorted((sign * low, sign * high))
    return sign * difference, low, high


def draw(data: FigureData, options: dict | None = None):
    options = dict(options or {})
    if data.claims is None:
        raise ValueError("the claims figure is drawn from results/claims.csv; no claims were given")
    df = normalise_claims(data.claims)
    if df.empty:
        raise ValueError("claims have no rows (was results/claims.csv built from any stage?)")
    model = _model(df, options)
    rank = {cid: i for i, cid in enumerate(CLAIM_IDS)}
    rows = sorted(df[df["model"] == model].to_dict("records"), key=lambda r: (rank.get(r["id"], len(rank)), r["id"]))
    panels: dict[str, list[dict]] = {}
    for row in rows:
        panels.setdefault(difference_unit(row["metric"]), []).append(row)
    units = sorted(panels, key=lambda u: (UNIT_ORDER.index(u) if u in UNIT_ORDER else len(UNIT_ORDER), u))
    heights = [len(panels[u]) + 1.2 for u in units]
    fig, axes = new_figure(9.0, 0.42 * sum(heights) + 0.6, nrows=len(units), ncols=1,
                           gridspec_kw={"height_ratios": heights})
    for ax, unit in zip(axes[:, 0], units):
        _panel(fig, ax, panels[unit], unit)
    fig.suptitle(f"The paper's claims on {model}: paired difference, 95% interval", fontsize=11)
    return fig


def _panel(fig, ax, rows: list[dict], unit: str) -> None:
    n = len(rows)
    y = np.arange(n, dtype=float)[::-1]  # the first claim on top
    values = np.array([oriented(r["direction"], r["difference"], r["ci_low"], r["ci_high"]) for r in rows])
    tested = np.array([r["verdict"] != UNTESTABLE for r in rows])
    colors = [VERDICT_COLORS.get(r["verdict"], "black") for r in rows]
    ax.axvline(0.0, color="black", linewidth=0.9, zorder=1)
    for i in np.flatnonzero(tested):
        error_bars(ax, None, values[i:i + 1, 0], values[i:i + 1, 1], values[i:i + 1, 2], direction="x",
                   y=y[i:i + 1], color=colors[i])
        ax.plot(values[i, 0], y[i], "o", color=colors[i], markersize=6, zorder=4)
    for row, drawn, (difference, low, high) in zip(rows, tested, values):
        record(fig, unit, row["verdict"], row["id"], *((difference, low, high) if drawn else (np.nan,) * 3),
               task=row["task"], metric=row["metric"])
    at_row = blended_transform_factory(ax.transAxes, ax.transData)
    for yi, row, color in zip(y, rows, colors):
        ax.text(1.01, yi, row["verdict"], transform=at_row, ha="left", va="center", color=color,
                fontsize=9, fontweight="bold")
    ax.set_yticks(y, [f"{r['claim']}\n{metric_text(r['task'], r['metric'], r['k'])}: {r['arm_a']} vs {r['arm_b']}"
                      for r in rows], fontsize=7.5)
    ax.set_ylim(-0.7, n - 0.3)
    ax.grid(axis="y", visible=False)
    shown = values[tested][:, :3]
    finite = shown[np.isfinite(shown)]
    reach = max(float(np.abs(finite).max()) if finite.size else 1.0, 1e-9) * 1.15
    ax.set_xlim(-reach, reach)  # 0 in the middle: either side reads at a glance
    label_axes(ax, f"difference in the paper's direction ({unit}); right = as the paper claims", None,
               f"Differences in {unit}")
