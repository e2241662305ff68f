"""The paper's figures, one module per figure, drawn from the tidy results table.

Every figure module exposes ``draw(data: FigureData, options: dict) -> Figure``; its name and caption
(what is plotted and from which stage) are in :mod:`gemsft.report.registry`. :data:`FIGURES` maps a
figure's name to its module; :func:`draw_figure` imports the module by name (so the workflow can give
each figure its own rule, and editing one module re-runs only that figure), and :func:`save` writes
PNG/PDF atomically.

Input: ``results/summary.csv`` (one row per model, objective, beta, task, metric, k aggregated over
seeds, with a 95% bootstrap interval ``ci_low``/``ci_high``; read by
:mod:`gemsft.report.summary_reader`) and, for Figure 11, the model-statistics stage JSONs
(``model_stats``: dicts with ``run`` and ``next_token``); the claims figure reads the claims' verdicts
(``results/claims.csv``, :func:`gemsft.report.claims.load_claims`) instead. Missing data is an error
that names the missing task and metric, never an empty plot.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window

import pandas as pd  # noqa: E402

__all__ = [
    "ALIASES",
    "FIGURES",
    "SUMMARY_COLUMNS",
    "FigureData",
    "caption",
    "draw_figure",
    "figure_caption",
    "rows_for",
    "save",
    "select_model",
]

from gemsft.report.registry import (COMPARISON_FIGURE_CAPTIONS, COMPARISON_FIGURE_NAMES, FIGURE_CAPTIONS,  # noqa: E402
                                    FIGURE_NAMES)
from gemsft.report.summary import SUMMARY_COLUMNS  # noqa: E402
from gemsft.report.summary_reader import load_summary, normalise  # noqa: E402

#: figure name -> module in this package. The name is the module's name, so a workflow rule can
#: depend on ``workflow/gemsft/report/figures/{name}.py`` and write ``figures/{name}.png``. The paper's
#: figures, then the objectives comparison's (drawn only when report.comparison is on).
FIGURES: dict[str, str] = {name: name for name in (*FIGURE_NAMES, *COMPARISON_FIGURE_NAMES)}
_CAPTIONS = {**FIGURE_CAPTIONS, **COMPARISON_FIGURE_CAPTIONS}
#: short names accepted by draw_figure/caption as well
ALIASES = {name.split("_")[0]: name for name in FIGURES if name.startswith("fig")}

DEFAULT_DPI = 150


# --------------------------------------------------------------------------- data


@dataclass
class FigureData:
    """What the figures are drawn from: the summary table, (Figure 11) model-stats stage JSONs and (the
    claims figure) the claims' verdicts."""

    summary: pd.DataFrame
    model_stats: list[dict] = field(default_factory=list)
    claims: pd.DataFrame | None = None

    @classmethod
    def from_files(cls, summary_csv: str | os.PathLike | None = None,
                   model_stats: Iterable[str | os.PathLike] = ()) -> FigureData:
        from gemsft import files

        summary = load_summary(summary_csv) if summary_csv else pd.DataFrame(columns=SUMMARY_COLUMNS)
        return cls(summary=summary, model_stats=[files.read_json(p) for p in model_stats])


def select_model(summary: pd.DataFrame, options: dict | None = None) -> tuple[pd.DataFrame, str]:
    """Rows of one model: ``options["model"]`` or, with several models, the one with the most rows
    (the main model of a scalability run; ties broken by name)."""
    df = normalise(summary)
    if df.empty:
        raise ValueError("summary table is empty")
    options = options or {}
    model = options.get("model")
    if model is not None:
        if model not in set(df["model"]):
            raise ValueError(f"summary has no rows for model {model!r}; models: {', '.join(sorted(set(df['model'])))}")
    else:
        counts = df.groupby("model").size()
        model = sorted(counts.index, key=lambda m: (-counts[m], m))[0]
    return df[df["model"] == model], model


def rows_for(df: pd.DataFrame, task: str | Sequence[str], metric: str, k=None) -> pd.DataFrame:
    """Rows of (task, metric[, k]); ValueError naming the task and metric when there are none."""
    tasks = [task] if isinstance(task, str) else list(task)
    sel = df[df["task"].isin(tasks) & (df["metric"] == metric)]
    if k is not None:
        sel = sel[sel["k"] == float(k)]
    if sel.empty:
        where = " or ".join(repr(t) for t in tasks)
        extra = f" at k={k}" if k is not None else ""
        raise ValueError(f"summary has no rows for task {where}, metric {metric!r}{extra}")
    return sel


# --------------------------------------------------------------------------- drawing and saving


def _name(name: str) -> str:
    """The figure's full name, from itself or its short alias ("fig7a")."""
    full = name if name in FIGURES else ALIASES.get(name)
    if full is None:
        raise ValueError(f"unknown figure {name!r}; choose one of: {', '.join(FIGURES)}")
    return full


def _module(name: str):
    return importlib.import_module(f"{__name__}.{FIGURES[_name(name)]}")


def draw_figure(name: str, data: FigureData, options: dict | None = None):
    """Draw figure ``name`` (a key of FIGURES, or its module name) and return the Figure."""
    return _module(name).draw(data, dict(options or {}))


def caption(name: str) -> str:
    """The figure's caption: what is plotted and from which stage."""
    return _CAPTIONS[_name(name)]


figure_caption = caption


def save(fig, stem: str | os.PathLike, formats: Sequence[str] = ("png", "pdf"), dpi: int = DEFAULT_DPI) -> list[Path]:
    """Write ``fig`` to ``stem.<fmt>`` for each format; returns the paths.

    Every format is first rendered to a temporary file in the destination directory, and only when
    all have been rendered are they renamed into place (os.replace), so an error leaves neither a
    partial figure nor a temporary file behind. PDFs carry no creation date (reproducible bytes).
    """
    stem = Path(stem)
    if isinstance(formats, str):
        formats = (formats,)
    if not formats:
        raise ValueError("save needs at least one format")
    stem.parent.mkdir(parents=True, exist_ok=True)
    targets = [stem.parent / f"{stem.name}.{fmt}" for fmt in formats]
    temps: list[Path] = []
    try:
        for fmt, target in zip(formats, targets):
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            os.close(fd)
            temps.append(Path(name))
            metadata = {"CreationDate": None} if fmt == "pdf" else None
            fig.savefig(name, format=fmt, dpi=dpi, metadata=metadata, bbox_inches="tight")
            os.chmod(name, 0o644)
        for tmp, target in zip(temps, targets):
            os.replace(tmp, target)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    return targets
