"""Rendering tables: Markdown and LaTeX files under `<run>/tables/`, and the notebook's pandas style.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from flan_nb import runs

# ---------------------------------------------------------------------------------------------
# rendering


def _fmt(value: Any, floatfmt: str, na: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return na
    if isinstance(value, float):
        return floatfmt.format(value)
    return str(value)


def to_markdown(
    df: pd.DataFrame, *, floatfmt: str = "{:.1f}", na: str = "–", notes: Sequence[str] = ()
) -> str:
    """GitHub-flavoured Markdown table (own renderer: tabulate is not a dependency)."""
    index_names = [n or "" for n in df.index.names]
    header = index_names + [str(c) for c in df.columns]
    numeric = [False] * len(index_names) + [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    lines = [
        "| " + " | ".join(_md_escape(h) for h in header) + " |",
        "|" + "|".join("---:" if num else ":---" for num in numeric) + "|",
    ]
    for idx, row in zip(df.index, df.itertuples(index=False)):
        keys = list(idx) if isinstance(idx, tuple) else [idx]
        cells = [str(k) for k in keys] + [_fmt(v, floatfmt, na) for v in row]
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(f"{n}" for n in notes) + "\n"
    return text


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_latex(
    df: pd.DataFrame, *, caption: str | None = None, label: str | None = None, precision: int = 1
) -> str:
    """LaTeX tabular (booktabs rules) via pandas' Styler; text cells and headers are escaped."""
    styler = df.style.format(precision=precision, na_rep="--", escape="latex")
    styler = styler.format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
    return styler.to_latex(hrules=True, caption=caption, label=label, position_float="centering"
                           if caption else None)  # fmt: skip


def export(
    tables: Mapping[str, pd.DataFrame], out_dir: str | Path, *, notes: Sequence[str] = ()
) -> list[Path]:
    """Write <name>.md and <name>.tex for each table into out_dir; returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in tables.items():
        md, tex = out / f"{name}.md", out / f"{name}.tex"
        # portable: no checkout location in a committed table (runs.portable)
        md.write_text(runs.portable(to_markdown(df, notes=notes)), encoding="utf-8")
        tex.write_text(runs.portable(to_latex(df, caption=name.replace("_", " "))),
                       encoding="utf-8")
        written += [md, tex]
    return written


def data_notes(df: pd.DataFrame) -> list[str]:
    """Footnotes explaining non-hub Data markers in a table5 frame."""
    if "Data" not in df.columns:
        return []
    kinds = set(df["Data"].astype(str))
    notes = []
    if any("synthetic" in k for k in kinds):
        notes.append("synthetic: built-in synthetic eval sets; not comparable to the paper's numbers.")
    if any("offline" in k for k in kinds):
        notes.append("offline: the offline data mirror (same data as the hub datasets).")
    if any("subsampled" in k for k in kinds):
        notes.append("subsampled: evaluated on a subset of items; expect wide error bars.")
    if "Protocol" in df.columns and df["Protocol"].astype(str).str.startswith("not paper").any():
        notes.append("not paper: evaluated under another protocol than the paper's "
                     "(flan_nb/resources/protocols.yaml); the Protocol column says how it departs.")
    if any(k == "paper" for k in kinds):
        notes.append("paper: reference numbers from Chung et al. 2022 (arXiv 2210.11416 v5).")
    return notes


def style(df: pd.DataFrame):
    """A pandas Styler: one decimal, '–' for missing, paper rows greyed, deltas coloured."""
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    styler = df.style.format("{:.1f}", subset=numeric, na_rep="–")
    if "Source" in df.columns:
        grey = df["Source"].astype(str).str.startswith("paper")
        styler = styler.apply(
            lambda row: ["color: #666; font-style: italic" if grey[row.name] else "" for _ in row],
            axis=1,
        )
    deltas = [c for c in numeric if str(c).startswith("Δ")]
    if deltas:
        styler = styler.map(
            lambda v: "" if pd.isna(v) else ("color: #1a7f37" if v >= 0 else "color: #cf222e"),
            subset=deltas,
        )
    return styler
