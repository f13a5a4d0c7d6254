"""The paper's tables built from run directories (metrics.json + manifest.json only, never notebook output).

Main entry points:
- `load_run(path) -> RunRecord`, `find_runs(results_root)`: read run dirs.
- `table5(records)`: a Table-5-style frame (one row per evaluated run + the paper's reference rows,
  with a delta where a run evaluates the same checkpoint as a paper row).
- `mmlu_subjects`, `mmlu_categories`, `bbh_subtasks`, `bbh_groups`, `language_table`: per-task breakdowns.
- `to_markdown`, `to_latex`, `export`, `style`: rendering.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from flan_nb import yaml_io
from flan_nb.eval import protocols
from flan_nb.report.readers import strict_flexible
from flan_nb.report.records import (
    BENCHMARKS,
    ReportError,
    RunRecord,
    as_records,
    find_runs,
    short_model,
)

HEADLINE_COLUMNS: tuple[str, ...] = (
    "Norm. avg",
    "MMLU Direct",
    "MMLU CoT",
    "BBH Direct",
    "BBH CoT",
    "TyDiQA",
    "MGSM",
)
# (benchmark, setting) behind each score column; the paper reports TyDiQA direct only and MGSM CoT only
CELLS: dict[str, tuple[str, str]] = {
    "MMLU Direct": ("mmlu", "direct"),
    "MMLU CoT": ("mmlu", "cot"),
    "BBH Direct": ("bbh", "direct"),
    "BBH CoT": ("bbh", "cot"),
    "TyDiQA": ("tydiqa", "direct"),
    "MGSM": ("mgsm", "cot"),
}
# column -> key in the resources/paper/*.yaml rows
PAPER_KEYS: dict[str, str] = {
    "Norm. avg": "norm_avg",
    "MMLU Direct": "mmlu_direct",
    "MMLU CoT": "mmlu_cot",
    "BBH Direct": "bbh_direct",
    "BBH CoT": "bbh_cot",
    "TyDiQA": "tydiqa",
    "MGSM": "mgsm",
}
PAPER_TABLE5 = "paper, Table 5"

# metrics.json may key languages by name (the TyDiQA files) or by code (MGSM); tables use codes
LANGUAGE_CODES: dict[str, str] = {
    "arabic": "ar", "bengali": "bn", "finnish": "fi", "indonesian": "id", "korean": "ko",
    "russian": "ru", "swahili": "sw", "telugu": "te", "english": "en", "german": "de",
    "spanish": "es", "french": "fr", "japanese": "ja", "thai": "th", "chinese": "zh",
}  # fmt: skip
# per-item bookkeeping keys that sit next to the per-language dicts in a setting dict
_SETTING_SCALARS = {"score", "n", "unparsed", "f1", "per_subtask", "em", "exact_match"}


# ---------------------------------------------------------------------------------------------
# resources


@cache
def load_paper(name: str) -> dict[str, Any]:
    """A reference file of flan_nb/resources/paper/ (e.g. "table5", "table3", "mmlu_categories")."""
    ref = resources.files("flan_nb") / "resources" / "paper" / f"{name}.yaml"
    try:
        return yaml_io.load_file(ref)
    except FileNotFoundError as exc:
        raise ReportError(f"no paper reference file resources/paper/{name}.yaml") from exc


def mmlu_category(subject: str) -> str:
    """STEM / humanities / social sciences / other for an MMLU subject ("unmapped" if unknown)."""
    data = load_paper("mmlu_categories")
    sub = data["subcategories"].get(subject)
    if sub is None:
        return "unmapped"
    for category, subs in data["categories"].items():
        if sub in subs:
            return category
    raise ReportError(f"resources/paper/mmlu_categories.yaml: subcategory {sub!r} in no category")


def bbh_group(subtask: str) -> str:
    """"nlp" or "alg" (Suzgun et al.'s split) for a BBH subtask; "unmapped" if unknown."""
    data = load_paper("bbh_split")
    for group in ("nlp", "alg"):
        if subtask in data[group]:
            return group
    return "unmapped"


def language_code(name: str) -> str:
    low = name.lower()
    return LANGUAGE_CODES.get(low, low)


# ---------------------------------------------------------------------------------------------
# scores


def setting_score(metrics: Mapping[str, Any], benchmark: str, setting: str) -> float:
    block = (metrics.get(benchmark) or {}).get(setting)
    if not isinstance(block, Mapping) or block.get("score") is None:
        return math.nan
    return float(block["score"])


def normalized_average(metrics: Mapping[str, Any]) -> float:
    """The stored normalized average, else flan_nb.eval.scores' value; NaN if it cannot be computed."""
    stored = metrics.get("normalized_average")
    if isinstance(stored, Mapping) and stored.get("value") is not None:
        return float(stored["value"])
    from flan_nb.eval import scores

    try:
        value = scores.normalized_average(dict(metrics))["value"]
    except Exception as exc:  # a partial run (e.g. no TyDiQA) has no normalized average: show "–"
        warnings.warn(f"normalized average not computable: {exc}", stacklevel=2)
        return math.nan
    return math.nan if value is None else float(value)


def headline(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The seven Table-5 numbers of one metrics.json (NaN where a benchmark/setting was not run)."""
    row = {"Norm. avg": normalized_average(metrics)}
    for col, (bench, setting) in CELLS.items():
        row[col] = setting_score(metrics, bench, setting)
    return row


def protocol_label(metrics: Mapping[str, Any]) -> str:
    """"paper" when every evaluated benchmark ran under the paper protocol with no departure,
    else "not paper: " + the departures (protocols.deviations: subsampled, shorter context,
    shorter chains, test split, protocol quick, ...) and the benchmarks they concern."""
    by_tag: dict[str, list[str]] = {}
    for item in protocols.run_deviations(metrics, BENCHMARKS):
        bench, _, tag = item.partition(": ")
        by_tag.setdefault(tag, []).append(bench)
    if not by_tag:
        return protocols.PAPER
    parts = [tag if len(b) == len([x for x in BENCHMARKS if x in metrics]) else f"{tag} ({'/'.join(b)})"
             for tag, b in by_tag.items()]
    return "not paper: " + ", ".join(parts)


def paper_rows(table: str = "table5") -> list[dict[str, Any]]:
    return list(load_paper(table)["rows"])


def paper_row_for(model: str, table: str = "table5") -> dict[str, Any] | None:
    """The paper row whose checkpoint is `model` (hub id, or a local dir named like the checkpoint)."""
    if not model:
        return None
    want_full = model.rstrip("/").lower()
    want_short = short_model(model).lower()
    for row in paper_rows(table):
        for ckpt in row.get("checkpoints") or []:
            ckpt = ckpt.lower()
            if want_full == ckpt or want_short == short_model(ckpt):
                return row
    return None


# ---------------------------------------------------------------------------------------------
# Table 5


def table5(
    runs: Iterable[RunRecord | str | Path],
    *,
    paper: str | Sequence[str] = "t5",
) -> pd.DataFrame:
    """Table-5-style frame: evaluated runs first, then the paper's rows.

    paper: "t5" (the 10 T5/Flan-T5 rows), "all", "matched" (only rows a run matches), "none", or a
    list of paper model names. A run whose model is a checkpoint of a paper row gets "Paper row" and
    "Δ Norm. avg" (run minus paper).
    """
    records = [r for r in as_records(runs) if r.evaluated]
    rows: list[dict[str, Any]] = []
    labels: list[str] = []
    matched: list[str] = []
    for rec in records:
        cells = headline(rec.metrics)
        match = paper_row_for(rec.model)
        delta = math.nan
        if match is not None:
            matched.append(match["model"])
            delta = cells["Norm. avg"] - float(match["norm_avg"])
        rows.append(
            {
                "Source": f"run {rec.run_id}",
                "Model": rec.model,
                "Data": rec.data,
                "Protocol": protocol_label(rec.metrics),
                **cells,
                "Paper row": match["model"] if match else "",
                "Δ Norm. avg": delta,
            }
        )
        labels.append(rec.label)
    for row in _select_paper_rows(paper, matched):
        rows.append(
            {
                "Source": PAPER_TABLE5,
                "Model": row["model"],
                "Data": "paper",
                "Protocol": protocols.PAPER,
                **{col: float(row[key]) for col, key in PAPER_KEYS.items()},
                "Paper row": "",
                "Δ Norm. avg": math.nan,
            }
        )
        labels.append(f"{row['model']} ({PAPER_TABLE5})")
    frame = pd.DataFrame(rows, index=_unique(labels))
    frame.index.name = "Row"
    return frame


def _select_paper_rows(paper: str | Sequence[str], matched: Sequence[str]) -> list[dict[str, Any]]:
    rows = paper_rows("table5")
    if isinstance(paper, str):
        if paper == "all":
            return rows
        if paper == "none":
            return []
        if paper == "t5":
            return [r for r in rows if r["family"] == "T5"]
        if paper == "matched":
            return [r for r in rows if r["model"] in matched]
        raise ReportError(f"paper={paper!r}: expected t5|all|matched|none or a list of model names")
    names = set(paper)
    unknown = names - {r["model"] for r in rows}
    if unknown:
        raise ReportError(f"paper rows {sorted(unknown)} not in resources/paper/table5.yaml")
    return [r for r in rows if r["model"] in names]


def paper_deltas(runs: Iterable[RunRecord | str | Path]) -> pd.DataFrame:
    """Run minus paper for every headline column, for runs that evaluate a paper checkpoint."""
    out = {}
    for rec in as_records(runs):
        match = paper_row_for(rec.model)
        if match is None or not rec.evaluated:
            continue
        cells = headline(rec.metrics)
        out[f"{rec.label} − {match['model']}"] = {
            col: cells[col] - float(match[key]) for col, key in PAPER_KEYS.items()
        }
    frame = pd.DataFrame.from_dict(out, orient="index", columns=list(HEADLINE_COLUMNS))
    frame.index.name = "Run − paper"
    return frame


def _unique(labels: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


# ---------------------------------------------------------------------------------------------
# per-task breakdowns


def subtask_scores(metrics: Mapping[str, Any], benchmark: str, setting: str) -> dict[str, float]:
    """{subtask or language: score} of one benchmark/setting.

    Reads `per_subtask` and, for the multilingual benchmarks, per-language dicts stored directly in
    the setting dict (the schema's `"english": {"score": ..}` form).
    """
    block = (metrics.get(benchmark) or {}).get(setting)
    if not isinstance(block, Mapping):
        return {}
    out: dict[str, float] = {}
    per = block.get("per_subtask") or {}
    if not isinstance(per, Mapping):
        raise ReportError(f"metrics {benchmark}.{setting}.per_subtask: expected a dict")
    for name, value in per.items():
        out[name] = _score_of(value, f"{benchmark}.{setting}.per_subtask.{name}")
    for name, value in block.items():
        if name in _SETTING_SCALARS or name in out or not isinstance(value, Mapping):
            continue
        if "score" in value:
            out[name] = _score_of(value, f"{benchmark}.{setting}.{name}")
    return out


def _score_of(value: Any, where: str) -> float:
    if isinstance(value, Mapping):
        value = value.get("score")
    if value is None:
        return math.nan
    if not isinstance(value, (int, float)):
        raise ReportError(f"metrics {where}: score {value!r} is not a number")
    return float(value)


def _by_run(records: Sequence[RunRecord], benchmark: str, setting: str) -> dict[str, dict[str, float]]:
    labels = _unique([r.label for r in records])
    return {lab: subtask_scores(r.metrics, benchmark, setting) for lab, r in zip(labels, records)}


def _grouped_subtasks(runs: Iterable[RunRecord | str | Path], benchmark: str, setting: str,
                      group_of: Callable[[str], str], names: tuple[str, str]) -> pd.DataFrame:
    """Per-subtask scores indexed (group, subtask), one column per run."""
    per_run = _by_run(as_records(runs), benchmark, setting)
    subtasks = sorted({s for scores in per_run.values() for s in scores})
    index = pd.MultiIndex.from_tuples(sorted((group_of(s), s) for s in subtasks), names=list(names))
    data = {lab: [scores.get(s, math.nan) for _, s in index] for lab, scores in per_run.items()}
    return pd.DataFrame(data, index=index)


def mmlu_subjects(runs: Iterable[RunRecord | str | Path], setting: str = "direct") -> pd.DataFrame:
    """Per-subject MMLU scores, index (category, subject), one column per run."""
    return _grouped_subtasks(runs, "mmlu", setting, mmlu_category, ("category", "subject"))


def mmlu_categories(runs: Iterable[RunRecord | str | Path], setting: str = "direct") -> pd.DataFrame:
    """Unweighted mean over subjects per MMLU category (as the paper averages over tasks)."""
    subjects = mmlu_subjects(runs, setting)
    if subjects.empty:
        return subjects
    return subjects.groupby(level="category").mean()


def bbh_subtasks(runs: Iterable[RunRecord | str | Path], setting: str = "direct") -> pd.DataFrame:
    """Per-subtask BBH scores, index (group nlp|alg, subtask), one column per run."""
    return _grouped_subtasks(runs, "bbh", setting, bbh_group, ("group", "subtask"))


def bbh_groups(runs: Iterable[RunRecord | str | Path]) -> pd.DataFrame:
    """Table-4-style BBH-nlp / BBH-alg averages (unweighted over subtasks) per run and setting."""
    records = as_records(runs)
    labels = _unique([r.label for r in records])
    rows = {}
    for label, rec in zip(labels, records):
        row = {}
        for setting, name in (("direct", "Direct"), ("cot", "CoT"), ("zs", "Zero-shot"),
                              ("zs_cot", "Zero-shot CoT")):  # fmt: skip
            scores = subtask_scores(rec.metrics, "bbh", setting)
            if not scores:
                continue
            for group in ("nlp", "alg"):
                vals = [v for k, v in scores.items() if bbh_group(k) == group and not math.isnan(v)]
                row[f"BBH-{group} {name}"] = sum(vals) / len(vals) if vals else math.nan
        rows[label] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "Row"
    return frame


def language_table(
    runs: Iterable[RunRecord | str | Path], benchmark: str, *, with_paper: bool = True
) -> pd.DataFrame:
    """Per-language TyDiQA (direct) or MGSM (CoT) scores, one column per run, plus the paper's
    Table 20/21 column for every run whose checkpoint is a Flan-T5 row; last row "avg" is the
    unweighted mean over the paper's languages (English excluded, as in the paper)."""
    if benchmark not in ("tydiqa", "mgsm"):
        raise ReportError(f"language_table: benchmark {benchmark!r} is not tydiqa or mgsm")
    setting = "direct" if benchmark == "tydiqa" else "cot"
    table = "table20_tydiqa" if benchmark == "tydiqa" else "table21_mgsm"
    ref = load_paper(table)
    records = as_records(runs)
    columns: dict[str, dict[str, float]] = {}
    printed_avg: dict[str, float] = {}
    for label, rec in zip(_unique([r.label for r in records]), records):
        scores = subtask_scores(rec.metrics, benchmark, setting)
        columns[label] = {language_code(k): v for k, v in scores.items()}
        row = paper_row_for(rec.model, table) if with_paper else None
        if row is not None:
            name = f"{row['model']} ({ref['source']})"
            columns[name] = dict(zip(ref["languages"], row["values"]))
            printed_avg[name] = float(row["avg"])
    langs = list(ref["languages"])
    extra = sorted({k for col in columns.values() for k in col} - set(langs))
    frame = pd.DataFrame(
        {name: [col.get(lang, math.nan) for lang in langs + extra] for name, col in columns.items()},
        index=pd.Index(langs + extra, name="language"),
    )
    # the paper's own printed average for its columns (the mean of its rounded values can differ)
    frame.loc["avg"] = [
        printed_avg.get(name, frame.loc[langs, name].mean(skipna=True)) for name in frame.columns
    ]
    return frame


# ---------------------------------------------------------------------------------------------
# notebooks/07_tables.ipynb


@dataclass(frozen=True)
class TablesParams:
    """The parameters cell of notebooks/07_tables.ipynb (names and types must match)."""

    other_runs: list[str]      # more run dirs or run ids (under results_root) to tabulate
    include_results: bool      # also every evaluated run under results_root
    experiment: str            # with include_results: only runs of this experiment ("" = all)
    paper_rows: str            # t5 | all | matched | none: which Table 5 rows to show
    out_dir: str               # "" = <run>/tables
    results_root: str          # "" = results/ (or $FLAN_NB_RESULTS)
    run_dir: str
    params_file: str


def _results_root(value: str = "") -> Path:
    from flan_nb import runs

    return runs.results_root(value or None)


def resolve_run(ref: str, results_root: str = "") -> Path:
    """A run dir from a path or a run id / unique part of one under results_root."""
    from flan_nb import runs

    try:
        return runs.find_run(ref, results_root or None)
    except FileNotFoundError as exc:
        raise ReportError(str(exc)) from None


def collect_runs(cfg: TablesParams, this_run: str | Path | None) -> list[RunRecord]:
    """This run (if it has metrics), cfg.other_runs, and optionally every evaluated run under the
    results root; deduplicated by path, each loaded from its metrics.json + manifest.json."""
    paths: list[Path] = []
    if this_run is not None and (Path(this_run) / "metrics.json").is_file():
        paths.append(Path(this_run))
    paths += [resolve_run(ref, cfg.results_root) for ref in cfg.other_runs]
    if cfg.include_results:
        paths += find_runs(_results_root(cfg.results_root), experiment=cfg.experiment or None)
    seen: set[Path] = set()
    unique = []
    for p in paths:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return [r for r in as_records(unique) if r.evaluated]


def all_tables(records: Sequence[RunRecord], *, paper: str = "t5") -> dict[str, pd.DataFrame]:
    """Every table the runs support, by export name (empty breakdowns are left out)."""
    tables = {"table5": table5(records, paper=paper)}
    deltas = paper_deltas(records)
    if not deltas.empty:
        tables["table5_deltas"] = deltas
    for setting in ("direct", "cot"):
        cats = mmlu_categories(records, setting)
        if not cats.empty:
            tables[f"mmlu_{setting}_categories"] = cats
            tables[f"mmlu_{setting}_subjects"] = mmlu_subjects(records, setting)
        bbh = bbh_subtasks(records, setting)
        if not bbh.empty:
            tables[f"bbh_{setting}_subtasks"] = bbh
    groups = bbh_groups(records)
    if not groups.dropna(how="all").empty and len(groups.columns):
        tables["bbh_nlp_alg"] = groups
    reading = strict_flexible(records)
    if not reading.empty:
        tables["strict_flexible"] = reading
    for bench in ("tydiqa", "mgsm"):
        langs = language_table(records, bench)
        run_cols = [c for c in langs.columns if "(paper" not in c]
        if run_cols and not langs[run_cols].drop(index="avg").dropna(how="all").empty:
            tables[f"{bench}_languages"] = langs
    return tables


def paper_norm_avg_check(table: str = "table5") -> pd.DataFrame:
    """Each paper row's printed Norm. avg beside the value recomputed from its six printed numbers
    with scores.normalized_average_from_scores (aggregate BBH baseline). Per-task BBH baselines are
    not recoverable from a printed average, so the two agree only for some rows (see tests)."""
    from flan_nb.eval import scores

    rows = {}
    for row in paper_rows(table):
        six = {"mmlu_direct": row["mmlu_direct"], "mmlu_cot": row["mmlu_cot"],
               "bbh_direct": row["bbh_direct"], "bbh_cot": row["bbh_cot"],
               "tydiqa_direct": row["tydiqa"], "mgsm_cot": row["mgsm"]}  # fmt: skip
        value = scores.normalized_average_from_scores(six)
        name = row["model"] if table == "table5" else f"{row['model']} ({row['n_tasks']} tasks)"
        rows[name] = {"printed": float(row["norm_avg"]), "recomputed": value,
                      "difference": value - float(row["norm_avg"])}  # fmt: skip
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = f"{load_paper(table)['source']} row"
    return frame
