"""A table on disk: the same cells as CSV, Markdown (with the caption) and LaTeX (pdflatex-safe)."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pandas as pd

from gemsft.files import atomic_path

_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  # pdflatex without extra packages cannot typeset these Unicode characters.
                  "±": r"$\pm$", "β": r"$\beta$", "—": "---"}
_LATEX_SPECIAL = re.compile("|".join(re.escape(c) for c in _LATEX_ESCAPES))


def _latex_text(text) -> str:
    return _LATEX_SPECIAL.sub(lambda m: _LATEX_ESCAPES[m.group()], str(text))


def _to_latex(df: pd.DataFrame, name: str, caption: str) -> str:
    styler = df.style.hide(axis="index").format(_latex_text).format_index(_latex_text, axis=1)
    return styler.to_latex(caption=_latex_text(caption), label=f"tab:{name}", hrules=True,
                           position_float="centering")


def write_table(df: pd.DataFrame, out_dir, name: str, caption: str) -> list[Path]:
    """Write name.csv, name.md and name.tex; all three appear together or none does."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{name}.{ext}" for ext in ("csv", "md", "tex")]
    with contextlib.ExitStack() as stack:
        # Entered in order, renamed in reverse only after all three are written.
        csv_tmp, md_tmp, tex_tmp = (stack.enter_context(atomic_path(p)) for p in paths)
        df.to_csv(csv_tmp, index=False)
        md_tmp.write_text(f"{caption}\n\n{df.to_markdown(index=False, disable_numparse=True)}\n", encoding="utf-8")
        tex_tmp.write_text(_to_latex(df, name, caption), encoding="utf-8")
    return paths
