"""Scoring raw generations, shared by the evaluation driver and `rescore`.

Every prediction row carries the flexible reading ("extracted", "correct": the headline) and, for
settings whose exemplars teach an answer format (strict.STRICT_SETTINGS), the strict reading
("strict_extracted", "strict_correct"). A setting's metrics hold both: "score" / "unparsed" are
the flexible reader's, "strict_score" / "strict_unparsed" the strict reader's (the peer harness's
flexible-extract and strict-match filters; behaviour reference only).

`rescore(run_dir, benchmark)` re-reads the stored raw generations of a run (after an extraction
fix) without touching the model and rewrites the predictions and the benchmark's metrics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flan_nb.eval import answers, scores, strict


class EvalError(ValueError):
    """An evaluation request that cannot run (bad setting, no model, stored predictions missing or
    not JSON, ...); names what and where. Re-exported by driver."""


def score_row(benchmark: str, setting: str, raw: str | list[str], item: Any) -> dict[str, Any]:
    """extracted / correct (/ f1, votes) of one raw generation or of a list of SC samples (majority
    vote), plus strict_extracted / strict_correct (/ strict_votes) where the setting has them."""
    both = strict.has_strict(benchmark, setting)
    if isinstance(raw, list):
        votes = [answers.extract(benchmark, setting, r, item) for r in raw]
        out = {**answers.score_extracted(benchmark, setting, answers.majority_vote(votes), item),
               "votes": votes}
        if both:
            s_votes = [strict.extract_strict(benchmark, setting, r, item) for r in raw]
            s_pred = answers.majority_vote(s_votes)
            out.update(strict_extracted=s_pred, strict_votes=s_votes,
                       strict_correct=answers.is_correct(benchmark, setting, s_pred, item))
        return out
    out = answers.score(benchmark, setting, raw, item)
    if both:
        s_pred = strict.extract_strict(benchmark, setting, raw, item)
        out.update(strict_extracted=s_pred,
                   strict_correct=answers.is_correct(benchmark, setting, s_pred, item))
    return out


def aggregate_rows(benchmark: str, rows: Sequence[Mapping[str, Any]],
                   baselines: Mapping[str, float] | None) -> dict[str, Any]:
    """The metrics of one setting from its scored rows (scores.aggregate of the flexible reading,
    the strict reading folded in by scores.add_strict, prompt-fitting counts)."""
    out = scores.aggregate(benchmark, rows, baselines)
    if rows and all("strict_correct" in r for r in rows):
        strict_rows = [{"subtask": r["subtask"], "correct": r["strict_correct"],
                        "extracted": r["strict_extracted"]} for r in rows]
        scores.add_strict(out, scores.aggregate(benchmark, strict_rows, baselines))
    out["n_exemplars_dropped"] = sum(int(r.get("n_exemplars_dropped", 0)) for r in rows)
    out["n_items_with_dropped_exemplars"] = sum(1 for r in rows if r.get("n_exemplars_dropped"))
    out["n_prompts_truncated"] = sum(1 for r in rows if r.get("prompt_truncated"))
    return out


def update_normalized_average(run: Any) -> None:
    """Write the paper's normalized average once all six components are in this run."""
    result = scores.normalized_average(run.read_metrics())
    if result.get("value") is not None and math.isfinite(result["value"]):
        run.write_metrics("normalized_average", {"value": result["value"],
                                                 "components": result["components"],
                                                 "bbh_method": result["bbh_method"]})


def read_predictions(run_dir: str | Path, benchmark: str) -> list[dict[str, Any]]:
    """The rows of `<run_dir>/predictions/<benchmark>.jsonl`. Raises EvalError (file, line)."""
    from flan_nb import config

    path = config.resolve_path(str(run_dir)) / "predictions" / f"{benchmark}.jsonl"
    if not path.is_file():
        raise EvalError(f"{path}: no stored predictions for {benchmark} (run its eval notebook)")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise EvalError(f"{path}:{n}: not JSON ({exc})") from None
    return rows


_ROW_KEYS = ("f1", "votes", "strict_extracted", "strict_correct", "strict_votes")


def score_predictions(benchmark: str, rows: list[dict[str, Any]],
                      baselines: Mapping[str, float] | None = None) -> dict[str, dict[str, Any]]:
    """Re-read stored prediction rows (updated in place: extracted, correct, strict_*, ...) and
    return {setting: metrics} with both readers. Writes nothing."""
    by_setting: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        item = {"subtask": row["subtask"], "gold": row["gold"], "options": row.get("options", []),
                "meta": row.get("meta", {})}
        scored = score_row(benchmark, row["setting"], row["raw"], item)
        row["extracted"], row["correct"] = scored["extracted"], bool(scored["correct"])
        for key in _ROW_KEYS:
            if key in scored:
                row[key] = bool(scored[key]) if key == "strict_correct" else scored[key]
        by_setting.setdefault(row["setting"], []).append(row)
    return {s: aggregate_rows(benchmark, srows, baselines) for s, srows in by_setting.items()}


def rescore(run_dir: str | Path, benchmark: str) -> dict[str, Any]:
    """Re-extract and re-score `predictions/<benchmark>.jsonl` of a run from the raw generations
    (flexible and strict readers), rewrite the predictions and the benchmark's metrics (meta
    kept, marked "rescored"); return the new section."""
    from flan_nb import runs

    run = runs.open_run(str(run_dir), notebook="rescore")
    rows = read_predictions(run.path, benchmark)
    old = run.read_metrics().get(benchmark, {})
    baselines = None
    if benchmark == "bbh":
        baselines = {sub: m["random"] for s in old.values() if isinstance(s, Mapping)
                     for sub, m in (s.get("per_subtask") or {}).items() if "random" in m} or None
    by_setting = score_predictions(benchmark, rows, baselines)
    section: dict[str, Any] = {"meta": {**old.get("meta", {}), "rescored": True}}
    for setting, sec in by_setting.items():
        section[setting] = sec
        if "max_new_tokens" in old.get(setting, {}):
            section[setting]["max_new_tokens"] = old[setting]["max_new_tokens"]
    if "direct_ranked" in old:
        section["direct_ranked"] = old["direct_ranked"]
    run.write_jsonl(f"predictions/{benchmark}.jsonl", rows)
    metrics_all = run.read_metrics()
    metrics_all[benchmark] = section
    runs.write_json(run.path / "metrics.json", metrics_all)
    update_normalized_average(run)
    return section
