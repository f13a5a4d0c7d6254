"""Before vs after finetuning inside one run: notebook 09_before_after.

A params file evaluates the base model under labelled keys ("04_eval_bbh@before", written to
<run>/before/), finetunes it, and evaluates the checkpoint under the plain keys (written to <run>/)
on exactly the same seeded items. This module compares the two with the run comparison of
`compare.compare_runs` (after − before, paired bootstrap over items within each subtask, the
benchmark score being the unweighted mean over subtasks as in the paper), and adds what a reader
of a before/after table needs beside the scores: unparsed counts (a format change shows there
first) and the normalized average of each side (Chung et al. 2022, §2.3 / Table 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from flan_nb import config
from flan_nb.report import compare, records
from flan_nb.report import tables as report


@dataclass(frozen=True)
class BeforeAfterParams:
    """The parameters cell of notebooks/09_before_after.ipynb (names and types must match)."""

    before: str            # label of the baseline evaluation: <run>/<before>/ ("before")
    after: str             # label of the evaluation after finetuning ("" = the run itself)
    n_resamples: int       # paired bootstrap resamples
    level: float           # interval coverage, e.g. 0.95
    seed: int              # bootstrap seed
    run_dir: str
    params_file: str


class BeforeAfterError(ValueError):
    """A side of the comparison has no evaluation; the message names the directory."""


@dataclass
class BeforeAfter:
    """After − before, in percentage points (`compare.CompareResult` with A = before, B = after)."""

    result: compare.CompareResult
    unparsed: pd.DataFrame
    files: dict[str, str] = field(default_factory=dict)

    @property
    def benchmarks(self) -> pd.DataFrame:
        """One row per benchmark and setting: before, after, diff, 95% CI, its half-width, n."""
        df = self.result.benchmarks.rename(columns={"A": "before", "B": "after"})
        df["ci_halfwidth"] = (df["ci_high"] - df["ci_low"]) / 2.0
        df["significant"] = (df["ci_low"] > 0) | (df["ci_high"] < 0)
        return df

    @property
    def subtasks(self) -> pd.DataFrame:
        """Per-subtask (per-language) scores before and after, largest absolute change first."""
        df = self.result.tasks.rename(columns={"A": "before", "B": "after"})
        return df.reindex(df["diff"].abs().sort_values(ascending=False).index).reset_index(drop=True)


def side(run_path: str | Path, label: str) -> records.RunRecord:
    """One side of a comparison: the run itself (label "") or its labelled evaluation
    <run>/<label>/. Raises BeforeAfterError when it holds no benchmark scores."""
    path = Path(run_path) / label if label else Path(run_path)
    if not (path / "metrics.json").is_file():
        what = f"no evaluation labelled `{label}`" if label else "no evaluation"
        raise BeforeAfterError(
            f"{path / 'metrics.json'} is missing: the run has {what} (evaluate under keys like "
            f"`{config.labelled_key('04_eval_bbh', label)}` first)")
    rec = records.load_run(path)
    if not rec.evaluated:
        raise BeforeAfterError(f"{path / 'metrics.json'} holds no benchmark scores")
    return rec


def unparsed_counts(before: dict[str, Any], after: dict[str, Any]) -> pd.DataFrame:
    """Rows (benchmark, setting, n, unparsed_before, unparsed_after) from two metrics.json dicts."""
    rows = []
    for bench in records.BENCHMARKS:
        for setting in compare.SETTINGS:
            blocks = [((m.get(bench) or {}).get(setting) or {}) for m in (before, after)]
            if not any(blocks):
                continue
            n = next((b.get("n") for b in blocks if b.get("n") is not None), None)
            rows.append({"benchmark": bench, "setting": setting, "n": n,
                         "unparsed_before": blocks[0].get("unparsed"),
                         "unparsed_after": blocks[1].get("unparsed")})
    return pd.DataFrame(rows, columns=["benchmark", "setting", "n", "unparsed_before",
                                       "unparsed_after"])


def before_after(run: Any, cfg: BeforeAfterParams) -> BeforeAfter:
    """Compare the `before` and `after` evaluations of `run`; write <run>/tables/before_after.csv,
    before_after_subtasks.csv and the `before_after` section of metrics.json.

    Raises BeforeAfterError when a side has no metrics. Differences are after − before in points;
    intervals are seeded paired bootstrap intervals over items (stratified by subtask)."""
    before, after = side(run.path, cfg.before), side(run.path, cfg.after)
    result = compare.compare_runs(before, after, n_resamples=cfg.n_resamples, seed=cfg.seed,
                                  level=cfg.level)
    out = BeforeAfter(result=result, unparsed=unparsed_counts(before.metrics, after.metrics))
    table = out.benchmarks
    out.files["benchmarks"] = str(run.write_text("tables/before_after.csv",
                                                 table.to_csv(index=False)))
    out.files["subtasks"] = str(run.write_text("tables/before_after_subtasks.csv",
                                               out.subtasks.to_csv(index=False)))
    rows = {}
    for rec in table.to_dict("records"):
        key = rec["benchmark"] + (f".{rec['setting']}" if rec["setting"] else "")
        rows[key] = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                     for k, v in rec.items() if k not in ("benchmark", "setting")}
        rows[key]["significant"] = bool(rows[key]["significant"])
    run.write_metrics("before_after", {
        "before": cfg.before or "(run)", "after": cfg.after or "(run)", "level": cfg.level,
        "n_resamples": cfg.n_resamples, "seed": cfg.seed, "rows": rows,
        "notes": list(result.notes)})
    return out


def normalized_averages(ba: BeforeAfter) -> dict[str, float]:
    """{"before": ..., "after": ...}: each side's normalized average (NaN if incomplete)."""
    return {"before": report.normalized_average(ba.result.run_a.metrics),
            "after": report.normalized_average(ba.result.run_b.metrics)}
