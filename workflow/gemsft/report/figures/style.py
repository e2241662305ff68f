"""One look for every figure: a colour and marker per objective (GEM betas as shades of one hue),
labelled axes, asymmetric error bars and CI bands from the summary's ci_low/ci_high."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from gemsft.config import NO_BETA, beta_label, parse_beta  # noqa: E402
# Shared with the tables, so runs read and sort alike everywhere.
from gemsft.report.labels import OBJECTIVE_ORDER, objective_label, run_sort_key  # noqa: E402

__all__ = [
    "OBJECTIVE_COLORS",
    "OBJECTIVE_MARKERS",
    "OBJECTIVE_ORDER",
    "ci_band",
    "error_bars",
    "label_axes",
    "new_figure",
    "place_point_labels",
    "run_color",
    "run_label",
    "run_marker",
    "run_sort_key",
    "sorted_runs",
]

BASE_COLOR = "#6e6e6e"
#: fixed colours of the objectives without beta (colour-blind friendly, distinct from the GEM hues)
OBJECTIVE_COLORS = {
    "base": BASE_COLOR,
    "ce": "#1f5fa8",          # blue
    "ce_wd": "#6a3d9a",       # purple
    "neft": "#2a9d3a",        # green
    "ce_entropy": "#8c6d1f",  # brown / olive
}
#: GEM variants: one hue each, the shade set by beta (darker = smaller beta)
GEM_COLORMAPS = {"gem": "Reds", "gem_log_sigmoid": "Oranges"}
OBJECTIVE_MARKERS = {"base": "X", "ce": "o", "ce_wd": "s", "neft": "^", "ce_entropy": "v",
                     "gem": "D", "gem_log_sigmoid": "P"}
_OTHER_COLORS = ["#17becf", "#e377c2", "#bcbd22", "#7f7f7f"]

plt.rcParams.update({
    "figure.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "pdf.fonttype": 42,  # embed TrueType: editable text in the PDF
})


def _shade_beta(beta) -> float:
    """The beta that sets a GEM run's shade: its value, or the paper's 0.7 when it has none."""
    try:
        value = parse_beta(beta_label(beta))
    except ValueError:  # a label that is not a number
        value = None
    return 0.7 if value is None else value


def run_color(objective: str, beta=NO_BETA) -> str:
    """The run's colour: fixed per objective; GEM shades of one hue depend on beta alone
    (beta 1.0 light ... 0.5 dark), so a run has the same colour in every figure."""
    if objective in GEM_COLORMAPS:
        b = _shade_beta(beta)
        shade = 0.95 - 0.5 * min(max((b - 0.5) / 0.5, 0.0), 1.0)  # 0.5 -> 0.95, 0.7 -> 0.75, 1.0 -> 0.45
        return to_hex(colormaps[GEM_COLORMAPS[objective]](shade))
    if objective in OBJECTIVE_COLORS:
        return OBJECTIVE_COLORS[objective]
    return _OTHER_COLORS[sum(map(ord, objective)) % len(_OTHER_COLORS)]


def run_marker(objective: str) -> str:
    return OBJECTIVE_MARKERS.get(objective, "*")


def run_label(objective: str, beta=NO_BETA) -> str:
    return objective_label(objective, beta)


def sorted_runs(df) -> list[tuple[str, str]]:
    """The distinct (objective, beta) pairs of a summary slice, in display order."""
    pairs = {(str(o), str(b)) for o, b in zip(df["objective"], df["beta"])}
    return sorted(pairs, key=lambda ob: run_sort_key(*ob))


def new_figure(width: float = 6.4, height: float = 4.4, nrows: int = 1, ncols: int = 1, **kw):
    """A figure with constrained layout (no clipped labels) and its axes."""
    return plt.subplots(nrows, ncols, figsize=(width, height), layout="constrained", squeeze=False, **kw)


def label_axes(ax, xlabel: str | None = None, ylabel: str | None = None, title: str | None = None) -> None:
    """Axis labels (with units) and title in one call."""
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)


def _asymmetric(value, low, high) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask of finite intervals, minus extent, plus extent) for value/ci_low/ci_high arrays."""
    value, low, high = (np.asarray(a, dtype=float).reshape(-1) for a in (value, low, high))
    ok = np.isfinite(value) & np.isfinite(low) & np.isfinite(high)
    minus = np.where(ok, np.clip(value - low, 0.0, None), 0.0)
    plus = np.where(ok, np.clip(high - value, 0.0, None), 0.0)
    return ok, minus, plus


def error_bars(ax, x, value, ci_low, ci_high, direction: str = "y", y=None, color="black", **kw):
    """Asymmetric error bars spanning [ci_low, ci_high] around ``value``; a NaN bound = no bar.

    ``direction="y"``: bars vertical at positions ``x`` (``value`` on the y-axis);
    ``direction="x"``: horizontal bars at heights ``y`` (``value`` on the x-axis).
    Returns the ErrorbarContainer, or None when no interval is finite. Only the bars are drawn.
    """
    ok, minus, plus = _asymmetric(value, ci_low, ci_high)
    if not ok.any():
        return None
    value = np.asarray(value, dtype=float).reshape(-1)
    kw = {"fmt": "none", "ecolor": color, "elinewidth": 1.1, "capsize": 3, "zorder": 3, **kw}
    if direction == "y":
        pos = np.asarray(x, dtype=float).reshape(-1)
        return ax.errorbar(pos[ok], value[ok], yerr=np.vstack([minus[ok], plus[ok]]), **kw)
    if direction == "x":
        pos = np.asarray(y, dtype=float).reshape(-1)
        return ax.errorbar(value[ok], pos[ok], xerr=np.vstack([minus[ok], plus[ok]]), **kw)
    raise ValueError(f"direction must be 'x' or 'y'; got {direction!r}")


def ci_band(ax, x, ci_low, ci_high, color, alpha: float = 0.18, **kw):
    """Shaded CI band between ci_low and ci_high; NaN bounds leave gaps. None if nothing is finite."""
    x, low, high = (np.asarray(a, dtype=float).reshape(-1) for a in (x, ci_low, ci_high))
    ok = np.isfinite(low) & np.isfinite(high)
    if not ok.any():
        return None
    return ax.fill_between(x, np.where(ok, low, np.nan), np.where(ok, high, np.nan), where=ok,
                           color=color, alpha=alpha, linewidth=0, **kw)


def place_point_labels(ax, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str],
                       colors: Sequence[str] | None = None, fontsize: float = 8.5) -> list:
    """Label points with text beside them so that no label overlaps another label, a point marker or
    an error bar, nor leaves the axes.

    Greedy, highest point first: the label tries the four diagonal spots next to its point, then
    spots further up or down (joined to the point by a thin leader line); if none is free it takes
    the first spot.
    """
    fig = ax.figure
    fig.canvas.draw()  # layout + renderer
    renderer = fig.canvas.get_renderer()
    colors = list(colors) if colors is not None else ["black"] * len(texts)
    xy_pixels = ax.transData.transform(np.column_stack([np.asarray(xs, float), np.asarray(ys, float)]))
    obstacles = [Bbox.from_extents(px - 5, py - 5, px + 5, py + 5) for px, py in xy_pixels]
    for container in ax.containers:  # error bars are obstacles too
        for collection in getattr(container, "lines", [None, None, ()])[2] or ():
            for seg in collection.get_segments():
                (x0, y0), (x1, y1) = ax.transData.transform(seg[[0, -1]])
                obstacles.append(Bbox.from_extents(min(x0, x1) - 1, min(y0, y1) - 1,
                                                   max(x0, x1) + 1, max(y0, y1) + 1))
    axes_box = ax.get_window_extent(renderer)
    spots = [(5, 3, "left", "bottom"), (5, -3, "left", "top"), (-5, 3, "right", "bottom"),
             (-5, -3, "right", "top")]
    for dy in (10, 17, 24, 31, 38):
        spots += [(8, dy, "left", "bottom"), (8, -dy, "left", "top"), (-8, dy, "right", "bottom"),
                  (-8, -dy, "right", "top")]
    annotations = [None] * len(texts)
    for i in np.argsort(np.asarray(ys, dtype=float))[::-1]:
        chosen = None
        for n, (dx, dy, ha, va) in enumerate(spots):
            leader = None if abs(dy) < 5 else {"arrowstyle": "-", "color": colors[i], "lw": 0.6,
                                                "shrinkA": 0, "shrinkB": 4}
            ann = ax.annotate(texts[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                              ha=ha, va=va, fontsize=fontsize, color=colors[i], arrowprops=leader)
            box = ann.get_window_extent(renderer)
            inside = box.x0 >= axes_box.x0 and box.x1 <= axes_box.x1 and \
                box.y0 >= axes_box.y0 and box.y1 <= axes_box.y1
            if inside and not any(box.overlaps(b) for b in obstacles):
                chosen = (ann, box)
                break
            ann.remove()
        if chosen is None:  # nowhere free: the first spot
            dx, dy, ha, va = spots[0]
            ann = ax.annotate(texts[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                              ha=ha, va=va, fontsize=fontsize, color=colors[i])
            chosen = (ann, ann.get_window_extent(renderer))
        obstacles.append(chosen[1])
        annotations[i] = chosen[0]
    return annotations
