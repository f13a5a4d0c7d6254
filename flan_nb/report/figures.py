"""The paper's figures from run dirs or a sweep record: task scaling (Fig. 4 / Table 3), the CoT
ablation (Fig. 5) and zero-shot CoT on BBH (Fig. 6). Each plot returns a matplotlib Figure;
`save` writes PNG + SVG.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from flan_nb.report import records
from flan_nb.report import tables as report

PAPER_TASK_TICKS: tuple[int, ...] = (0, 9, 89, 282, 1836)
# held-out evaluations split as in P §4.2: CoT benchmarks vs non-CoT benchmarks
COT_EVALS: tuple[str, ...] = ("MMLU CoT", "BBH CoT", "MGSM")
NON_COT_EVALS: tuple[str, ...] = ("MMLU Direct", "BBH Direct", "TyDiQA")
ZS_COLUMNS = {"BBH zero-shot": ("bbh", "zs"), "BBH zero-shot CoT": ("bbh", "zs_cot")}


class FigureError(ValueError):
    """Inputs that cannot be plotted (missing column, empty frame); the message says which."""


# ---------------------------------------------------------------------------------------------
# frames


def run_row(rec: report.RunRecord, tags: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Headline scores + zero-shot BBH + tags of one run as a flat dict."""
    row: dict[str, Any] = {"run_id": rec.run_id, "label": rec.label, "model": rec.model,
                           "data": rec.data, "protocol": report.protocol_label(rec.metrics)}  # fmt: skip
    row.update(report.headline(rec.metrics))
    for col, (bench, setting) in ZS_COLUMNS.items():
        row[col] = report.setting_score(rec.metrics, bench, setting)
    mixing = rec.metrics.get("mixing") or {}
    if isinstance(mixing, Mapping):
        # a sweep's n_tasks tag (the paper's nominal count) wins below; else what was mixed
        for key in ("n_tasks", "tasks_mixed"):
            if isinstance(mixing.get(key), (int, float)):
                row.setdefault("n_tasks", int(mixing[key]))
        if isinstance(mixing.get("tasks_mixed"), (int, float)):
            row["tasks_mixed"] = int(mixing["tasks_mixed"])
    row.update(dict(tags or {}))
    return row


def runs_frame(
    runs: Iterable[report.RunRecord | str | Path], tags: Sequence[Mapping[str, Any]] | None = None
) -> pd.DataFrame:
    """One row per run (headline columns, zero-shot BBH, n_tasks from mixing metrics, given tags)."""
    records = report.as_records(runs)
    tags = list(tags) if tags is not None else [{}] * len(records)
    if len(tags) != len(records):
        raise FigureError(f"{len(tags)} tag dicts for {len(records)} runs")
    return pd.DataFrame([run_row(r, t) for r, t in zip(records, tags)])


def sweep_frame(record: str | Path | Mapping[str, Any]) -> pd.DataFrame:
    """One row per grid point of a sweep record (results/sweeps/<name>.json) that has an
    evaluated run; grid tags (e.g. n_tasks, model, variant) become columns."""
    if not isinstance(record, Mapping):
        path = Path(record)
        record = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for point in record.get("points", []):
        run_dir = point.get("run_dir")
        if not run_dir or not (Path(run_dir) / "metrics.json").is_file():
            continue
        rec = records.load_run(run_dir)
        if rec.evaluated:
            rows.append(run_row(rec, {**point.get("tags", {}), "point": point.get("label", "")}))
    return pd.DataFrame(rows)


def _need(df: pd.DataFrame, cols: Iterable[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise FigureError(f"{what}: frame lacks columns {missing} (has {list(df.columns)})")
    if df.empty:
        raise FigureError(f"{what}: no evaluated runs to plot")


# ---------------------------------------------------------------------------------------------
# plots


def plot_task_scaling(
    df: pd.DataFrame,
    *,
    x: str = "n_tasks",
    y: str = "Norm. avg",
    hue: str = "model",
    paper: bool = True,
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """Normalized average vs number of finetuning tasks, one line per model (size); the paper's
    Table 3 points (Flan-PaLM 8B/62B/540B) drawn dashed with hollow markers for reference."""
    _need(df, [x, y, hue], "task scaling")
    fig, ax = _axes(ax, (7, 4.5))
    data = df.dropna(subset=[y]).sort_values(x)
    for name, group in data.groupby(hue, sort=False):
        ax.plot(group[x], group[y], marker="o", label=f"{name} (this repo)")
    _mark_not_paper(ax, data, x, y)
    if paper:
        ref = pd.DataFrame(report.paper_rows("table3"))
        for params, group in ref.groupby("params", sort=False):
            ax.plot(group["n_tasks"], group["norm_avg"], linestyle="--", marker="o",
                    markerfacecolor="none", color="0.55", alpha=0.8, linewidth=1)  # fmt: skip
            last = group.iloc[-1]
            ax.annotate(f"Flan-PaLM {params}", (last["n_tasks"], last["norm_avg"]), fontsize=7,
                        color="0.4", xytext=(4, 0), textcoords="offset points")  # fmt: skip
        ax.plot([], [], linestyle="--", marker="o", markerfacecolor="none", color="0.55",
                label="paper, Table 3 (Flan-PaLM)")  # fmt: skip
    ticks = sorted(set(PAPER_TASK_TICKS) | {int(v) for v in data[x].dropna()})
    # symlog keeps 0 (no finetuning) on the axis while spreading 9 .. 1836 like a log axis
    ax.set_xscale("symlog", linthresh=5)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:,}" for t in ticks], rotation=45 if len(ticks) > 7 else 0)
    ax.minorticks_off()
    ax.axhline(0, color="0.8", linewidth=0.8, zorder=0)
    ax.set_xlabel("Number of finetuning tasks (symlog scale; 0 = no finetuning)")
    ax.set_ylabel("Normalized average (%)")
    ax.set_title("Task scaling: held-out normalized average")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def cot_ablation_frame(df: pd.DataFrame, *, variant: str = "variant") -> pd.DataFrame:
    """Per finetuning variant: mean held-out CoT score (MMLU CoT, BBH CoT, MGSM) and mean non-CoT
    score (MMLU Direct, BBH Direct, TyDiQA); benchmarks missing from a run are left out of its mean."""
    _need(df, [variant, *COT_EVALS, *NON_COT_EVALS], "CoT ablation")
    rows = []
    for _, r in df.iterrows():
        for name, cols in (("Held-out CoT evals", COT_EVALS), ("Held-out non-CoT evals", NON_COT_EVALS)):
            vals = [float(r[c]) for c in cols if not pd.isna(r[c])]
            rows.append({variant: r[variant], "evaluation": name,
                         "score": sum(vals) / len(vals) if vals else math.nan,
                         "n_benchmarks": len(vals)})  # fmt: skip
    return pd.DataFrame(rows)


def plot_cot_ablation(
    df: pd.DataFrame, *, variant: str = "variant", order: Sequence[str] | None = None,
    ax: plt.Axes | None = None,
) -> plt.Figure:  # fmt: skip
    """Grouped bars: finetuning data (no CoT / CoT only / both) x held-out CoT vs non-CoT average."""
    long = cot_ablation_frame(df, variant=variant)
    fig, ax = _axes(ax, (6.5, 4.2))
    sns.barplot(data=long, x=variant, y="score", hue="evaluation", order=order, ax=ax,
                errorbar=None)  # fmt: skip
    return _finish_bars(fig, ax, long["score"], "Finetuning mixture",
                        "Mean accuracy over benchmarks (%)",
                        "CoT ablation: finetuning with / without chain-of-thought data",
                        not_paper=_not_paper(df, variant))


def plot_zero_shot_cot(
    df: pd.DataFrame, *, by: str = "label", ax: plt.Axes | None = None
) -> plt.Figure:
    """BBH zero-shot accuracy without and with "Let's think step-by-step", per model/run."""
    _need(df, [by, *ZS_COLUMNS], "zero-shot CoT")
    df = df.dropna(subset=list(ZS_COLUMNS), how="all")  # runs without zero-shot BBH evals
    if df.empty:
        raise FigureError("zero-shot CoT: no run has BBH zs / zs_cot scores")
    long = df.melt(id_vars=[by], value_vars=list(ZS_COLUMNS), var_name="prompt", value_name="score")
    long["prompt"] = long["prompt"].map({"BBH zero-shot": "Direct (zero-shot)",
                                         "BBH zero-shot CoT": "Let's think step-by-step"})  # fmt: skip
    fig, ax = _axes(ax, (max(5.5, 1.2 * df[by].nunique() + 3), 4.2))
    sns.barplot(data=long, x=by, y="score", hue="prompt", ax=ax, errorbar=None)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    return _finish_bars(fig, ax, long["score"], "Model", "BBH zero-shot accuracy (%)",
                        "Zero-shot chain-of-thought on BBH", not_paper=_not_paper(df, by))


def _not_paper(df: pd.DataFrame, by: str) -> set[str]:
    """The `by` values (bar groups) with a run not evaluated under the paper protocol."""
    if "protocol" not in df.columns:
        return set()
    return {str(v) for v in df.loc[df["protocol"].astype(str) != "paper", by]}


def _finish_bars(fig: plt.Figure, ax: plt.Axes, scores: pd.Series, xlabel: str, ylabel: str,
                 title: str, *, not_paper: set[str] = frozenset()) -> plt.Figure:  # type: ignore[assignment]
    """Labels, legend and an accuracy axis from 0 for the grouped-bar figures; groups in
    `not_paper` get a "*" and a footnote (not evaluated under the paper protocol).

    The axis starts at 0 and leaves room for the bar labels: all-zero bars otherwise get an
    autoscaled axis of +-0.04 that reads as noise rather than as 'nothing learned'."""
    if not_paper:
        labels = [t.get_text() for t in ax.get_xticklabels()]
        ax.set_xticks(ax.get_xticks())
        ax.set_xticklabels([f"{t} *" if t in not_paper else t for t in labels])
        fig.text(0.01, 0.005, "* not evaluated under the paper protocol", fontsize=7, color="0.3")
    for cont in ax.containers:
        ax.bar_label(cont, fmt="%.1f", fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    top = float(scores.max()) if scores.notna().any() else 0.0
    ax.set_ylim(0, max(10.0, top * 1.15))
    ax.set_title(title)
    ax.legend(title=None, fontsize=8)
    fig.tight_layout()
    return fig


def _mark_not_paper(ax: plt.Axes, data: pd.DataFrame, x: str, y: str) -> None:
    """Cross out the points not evaluated under the paper protocol (column `protocol`)."""
    if "protocol" not in data.columns:
        return
    off = data[data["protocol"].astype(str) != "paper"]
    if len(off):
        ax.scatter(off[x], off[y], marker="x", color="black", s=40, zorder=5,
                   label="not under the paper protocol")


def _axes(ax: plt.Axes | None, size: tuple[float, float]) -> tuple[plt.Figure, plt.Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size)
    return fig, ax


def save(fig: plt.Figure, out_dir: str | Path, name: str, *, dpi: int = 150) -> list[Path]:
    """Write <out_dir>/<name>.png and .svg; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.savefig(paths[0], dpi=dpi, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


# ---------------------------------------------------------------------------------------------
# notebooks/08_scaling.ipynb

FIGURES = ("task_scaling", "cot_ablation", "zero_shot_cot")


@dataclass(frozen=True)
class ScalingParams:
    """The parameters cell of notebooks/08_scaling.ipynb (names and types must match)."""

    sweep: str                 # sweep name (results/sweeps/<name>.json) or record path; "" = none
    run_refs: list[str]        # run dirs or run ids to plot when there is no sweep record
    plots: list[str]           # any of task_scaling, cot_ablation, zero_shot_cot
    hue: str                   # task scaling: one line per value of this column (a grid axis)
    variant: str               # CoT ablation: the column naming the finetuning variant
    paper_points: bool         # draw the paper's Table 3 points on the task-scaling plot
    out_dir: str               # "" = <run>/figures
    results_root: str          # "" = results/ (or $FLAN_NB_RESULTS)
    run_dir: str
    params_file: str


def collect(cfg: ScalingParams, this_run: str | Path | None = None) -> pd.DataFrame:
    """The frame to plot: the sweep record's points, else cfg.run_refs, else this run."""
    if cfg.sweep:
        from flan_nb.report import sweeps

        return sweep_frame(sweeps.load_record(cfg.sweep, cfg.results_root or None))
    refs = [report.resolve_run(r, cfg.results_root) for r in cfg.run_refs]
    if not refs and this_run is not None and (Path(this_run) / "metrics.json").is_file():
        refs = [Path(this_run)]
    records = [r for r in report.as_records(refs) if r.evaluated]
    return runs_frame(records) if records else pd.DataFrame()


def draw(
    df: pd.DataFrame, names: Sequence[str] = FIGURES, *, hue: str = "model",
    variant: str = "variant", paper: bool = True,
) -> tuple[dict[str, plt.Figure], dict[str, str]]:  # fmt: skip
    """The requested figures the frame can support, and why each other one was skipped."""
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise FigureError(f"unknown figures {unknown}; choose from {list(FIGURES)}")
    figs: dict[str, plt.Figure] = {}
    skipped: dict[str, str] = {}
    for name in names:
        if df.empty:
            skipped[name] = "no evaluated runs"
        elif name == "task_scaling":
            if "n_tasks" not in df or df["n_tasks"].isna().all() or df["Norm. avg"].isna().all():
                skipped[name] = "needs n_tasks (a sweep tag or mixing metrics) and a Norm. avg"
            else:
                figs[name] = plot_task_scaling(df, hue=hue if hue in df else "label", paper=paper)
        elif name == "cot_ablation":
            if variant not in df:
                skipped[name] = f"needs a {variant!r} column (the CoT ablation sweep's axis)"
            else:
                figs[name] = plot_cot_ablation(df, variant=variant)
        elif name == "zero_shot_cot":
            if df[list(ZS_COLUMNS)].isna().all().all():
                skipped[name] = "no BBH zero-shot (zs / zs_cot) scores in these runs"
            else:
                figs[name] = plot_zero_shot_cot(df)
    return figs, skipped
