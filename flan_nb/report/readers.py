"""Strict vs flexible answer reading per run, benchmark and setting (issue 13).

`score` in metrics.json is the flexible reader's (the headline, as every other table shows);
`strict_score` reads only the answer format the prompt's exemplars teach (flan_nb.eval.strict).
A large gap means the headline depends on reading answers the exemplars never showed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from flan_nb.report.records import BENCHMARKS, RunRecord, as_records

COLUMNS = ("n", "Flexible", "Flexible unparsed", "Strict", "Strict unparsed", "Flexible − strict")


def strict_flexible(runs: Iterable[RunRecord | str | Path]) -> pd.DataFrame:
    """One row per (run, benchmark, setting) that has a strict score: both scores (%) and the
    unparsed count of each. Empty frame (same columns) when no run has strict scores, e.g. runs
    scored before the strict reader existed (flan_nb.eval.rescore adds them from the stored generations)."""
    rows, index = [], []
    for rec in as_records(runs):
        for bench in BENCHMARKS:
            section = rec.metrics.get(bench)
            if not isinstance(section, Mapping):
                continue
            for setting, m in section.items():
                if not isinstance(m, Mapping) or m.get("strict_score") is None:
                    continue
                flex, strict = float(m["score"]), float(m["strict_score"])
                rows.append((m.get("n"), flex, m.get("unparsed"), strict,
                             m.get("strict_unparsed"), flex - strict))
                index.append((rec.label, bench, setting))
    frame = pd.DataFrame(rows, columns=list(COLUMNS),
                         index=pd.MultiIndex.from_tuples(index, names=["Run", "Benchmark", "Setting"])
                         if index else None)
    if not index:
        frame.index = pd.MultiIndex.from_tuples([], names=["Run", "Benchmark", "Setting"])
    return frame
