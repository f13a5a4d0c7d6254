"""Compare two runs: per-benchmark and per-task score differences (B − A), the params diff
(flattened dotted keys) and a seeded paired bootstrap confidence interval for every benchmark
difference, resampling items from predictions/<benchmark>.jsonl within each subtask.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flan_nb.eval import scores
from flan_nb.report import records
from flan_nb.report import tables as report

ABSENT = "<absent>"


class CompareError(ValueError):
    """Unreadable predictions or run dirs; the message names file and line."""


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and scalars are leaves."""
    if isinstance(obj, Mapping) and obj:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: obj} if prefix else {}


def params_diff(params_a: Mapping[str, Any], params_b: Mapping[str, Any]) -> pd.DataFrame:
    """Rows (key, A, B) for every flattened key whose value differs or exists on one side only."""
    fa, fb = flatten(params_a), flatten(params_b)
    rows = [
        {"key": k, "A": fa.get(k, ABSENT), "B": fb.get(k, ABSENT)}
        for k in sorted(set(fa) | set(fb))
        if fa.get(k, ABSENT) != fb.get(k, ABSENT)
    ]
    return pd.DataFrame(rows, columns=["key", "A", "B"])


# ---------------------------------------------------------------------------------------------
# predictions and bootstrap


def load_predictions(run_dir: str | Path, benchmark: str) -> dict[tuple[str, str], dict[str, float]]:
    """{(setting, subtask): {item_id: correct (0..1)}} from <run>/predictions/<benchmark>.jsonl."""
    path = Path(run_dir) / "predictions" / f"{benchmark}.jsonl"
    out: dict[tuple[str, str], dict[str, float]] = {}
    if not path.is_file():
        return out
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key = (str(row["setting"]), str(row.get("subtask") or ""))
                correct = row["correct"]
                out.setdefault(key, {})[str(row["item_id"])] = float(correct)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise CompareError(f"{path}:{lineno}: bad prediction row ({exc})") from exc
    return out


def bootstrap_diff(
    a: Mapping[str, Mapping[str, float]],
    b: Mapping[str, Mapping[str, float]],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Bootstrap CI of (B − A) for a benchmark scored as the unweighted mean over subtasks.

    a, b: {subtask: {item_id: correct}}. Items present in both runs are resampled jointly (paired),
    stratified by subtask; a subtask with no shared items is resampled independently per run.
    Returns {"diff", "low", "high", "n_items", "paired"} in percentage points.
    """
    rng = np.random.default_rng(seed)
    subtasks = sorted(set(a) & set(b))
    if not subtasks:
        return {"diff": math.nan, "low": math.nan, "high": math.nan, "n_items": 0, "paired": False}
    per_sub = np.zeros((n_resamples, len(subtasks)))
    point = []
    n_items, paired_all = 0, True
    for j, sub in enumerate(subtasks):
        shared = sorted(set(a[sub]) & set(b[sub]))
        if shared:
            va = np.array([a[sub][i] for i in shared])
            vb = np.array([b[sub][i] for i in shared])
            idx = rng.integers(0, len(shared), size=(n_resamples, len(shared)))
            per_sub[:, j] = (vb[idx] - va[idx]).mean(axis=1)
            point.append((vb - va).mean())
            n_items += len(shared)
        else:
            paired_all = False
            va = np.array(list(a[sub].values()))
            vb = np.array(list(b[sub].values()))
            ia = rng.integers(0, len(va), size=(n_resamples, len(va)))
            ib = rng.integers(0, len(vb), size=(n_resamples, len(vb)))
            per_sub[:, j] = vb[ib].mean(axis=1) - va[ia].mean(axis=1)
            point.append(vb.mean() - va.mean())
            n_items += len(va) + len(vb)
    dist = per_sub.mean(axis=1) * 100.0
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(dist, [alpha, 1.0 - alpha])
    return {"diff": float(np.mean(point) * 100.0), "low": float(low), "high": float(high),
            "n_items": n_items, "paired": paired_all}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# comparison


@dataclass
class CompareResult:
    """Differences are B − A, in percentage points."""

    run_a: report.RunRecord
    run_b: report.RunRecord
    benchmarks: pd.DataFrame
    tasks: pd.DataFrame
    params: pd.DataFrame
    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.to_text()

    def text(self) -> str:
        """The printable form (what `flan-nb compare` prints)."""
        return self.to_text()

    def to_text(self, *, max_tasks: int = 15) -> str:
        a, b = self.run_a, self.run_b
        lines = [
            f"A: {a.run_id}  ({a.label}; data {a.data})",
            f"B: {b.run_id}  ({b.label}; data {b.data})",
            "",
            f"Benchmarks (B − A; {100 * self.level:g}% paired bootstrap CI over items, "
            f"{self.n_resamples} resamples, seed {self.seed}):",
        ]
        lines += _text_table(self.benchmarks)
        if not self.tasks.empty:
            top = self.tasks.reindex(
                self.tasks["diff"].abs().sort_values(ascending=False).index
            ).head(max_tasks)
            lines += ["", f"Largest per-task differences (top {len(top)} of {len(self.tasks)}):"]
            lines += _text_table(top)
        lines += ["", f"Params diff ({len(self.params)} keys):"]
        lines += _text_table(self.params) if len(self.params) else ["  (identical params)"]
        if self.notes:
            lines += ["", *self.notes]
        return "\n".join(lines) + "\n"


def _text_table(df: pd.DataFrame) -> list[str]:
    text = df.to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="–")
    return ["  " + line for line in text.splitlines()]


SETTINGS = ("direct", "cot", "zs", "zs_cot", "cot_sc")


def protocol_warnings(metrics_a: Mapping[str, Any], metrics_b: Mapping[str, Any]) -> list[str]:
    """"warning: ..." lines for every benchmark the two runs evaluated under different protocols,
    protocol overrides or subsamples (eval/protocols.py): their scores are not comparable."""
    out = []
    for bench in records.BENCHMARKS:
        ma = (metrics_a.get(bench) or {}).get("meta")
        mb = (metrics_b.get(bench) or {}).get("meta")
        if not (isinstance(ma, Mapping) and isinstance(mb, Mapping)):
            continue
        for key, what in (("protocol", "protocols"), ("protocol_overrides", "protocol overrides"),
                          ("n_per_subtask", "subsamples (items per subtask)"),
                          ("split", "splits"), ("max_context", "contexts")):
            va, vb = ma.get(key), mb.get(key)
            if va != vb:
                out.append(f"warning: {bench}: runs used different {what} (A: {va}; B: {vb}); "
                           "differences mix model and evaluation protocol")
    return out


def compare_runs(
    run_a: str | Path | report.RunRecord,
    run_b: str | Path | report.RunRecord,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> CompareResult:
    """Compare two run dirs (B − A): benchmark/setting scores with bootstrap CIs, per-task diffs,
    normalized average, params diff."""
    a, b = report.as_records([run_a, run_b])
    bench_rows, task_rows, notes = [], [], []
    if a.data != b.data:
        notes.append(f"data differ (A: {a.data}; B: {b.data}): score differences mix model and data")
    notes += protocol_warnings(a.metrics, b.metrics)
    na, nb = report.normalized_average(a.metrics), report.normalized_average(b.metrics)
    if not (math.isnan(na) and math.isnan(nb)):
        bench_rows.append({"benchmark": "normalized_average", "setting": "", "A": na, "B": nb,
                           "diff": nb - na, "ci_low": math.nan, "ci_high": math.nan,
                           "n_items": 0})  # fmt: skip
    for bench in records.BENCHMARKS:
        preds_a, preds_b = load_predictions(a.path, bench), load_predictions(b.path, bench)
        for setting in SETTINGS:
            sa = report.setting_score(a.metrics, bench, setting)
            sb = report.setting_score(b.metrics, bench, setting)
            if math.isnan(sa) and math.isnan(sb):
                continue
            # resample exactly the subtasks the score averages (not TyDiQA's English, kept apart)
            pa = {sub: items for (st, sub), items in preds_a.items() if st == setting}
            pb = {sub: items for (st, sub), items in preds_b.items() if st == setting}
            keep = set(scores.scored_subtasks(bench, sorted(set(pa) | set(pb))))
            pa = {k: v for k, v in pa.items() if k in keep}
            pb = {k: v for k, v in pb.items() if k in keep}
            ci = bootstrap_diff(pa, pb, n_resamples=n_resamples, seed=seed, level=level)
            both = not (math.isnan(sa) or math.isnan(sb))
            if both and ci["n_items"] == 0:
                notes.append(f"{bench}.{setting}: no shared predictions/{bench}.jsonl items, no CI")
            elif both and not ci["paired"]:
                notes.append(f"{bench}.{setting}: runs scored different items; unpaired bootstrap")
            bench_rows.append({"benchmark": bench, "setting": setting, "A": sa, "B": sb,
                               "diff": sb - sa, "ci_low": ci["low"], "ci_high": ci["high"],
                               "n_items": ci["n_items"]})  # fmt: skip
            ta = report.subtask_scores(a.metrics, bench, setting)
            tb = report.subtask_scores(b.metrics, bench, setting)
            for sub in sorted(set(ta) | set(tb)):
                va, vb = ta.get(sub, math.nan), tb.get(sub, math.nan)
                task_rows.append({"benchmark": bench, "setting": setting, "task": sub,
                                  "A": va, "B": vb, "diff": vb - va})  # fmt: skip
    cols = ["benchmark", "setting", "A", "B", "diff", "ci_low", "ci_high", "n_items"]
    return CompareResult(
        run_a=a,
        run_b=b,
        benchmarks=pd.DataFrame(bench_rows, columns=cols),
        tasks=pd.DataFrame(task_rows, columns=["benchmark", "setting", "task", "A", "B", "diff"]),
        params=params_diff(a.params, b.params),
        n_resamples=n_resamples,
        seed=seed,
        level=level,
        notes=notes,
    )
