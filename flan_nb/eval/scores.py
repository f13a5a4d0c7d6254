"""Benchmark metrics and the paper's normalized average (P §2.3, footnote 5).

Per benchmark the score is the unweighted mean over subtasks (MMLU subjects, BBH subtasks) or
languages (TyDiQA, MGSM), as in the paper; English TyDiQA/MGSM is reported apart, never averaged.
The normalized average is the macro mean of six normalized scores — MMLU-Direct, MMLU-CoT,
BBH-Direct, BBH-CoT, TyDiQA-Direct, MGSM-CoT — each 100*(s - r)/(100 - r) against a random
baseline r (MMLU 25; BBH per subtask: 100/options for multiple choice, 50 for two-label tasks,
0 for free form; TyDiQA and MGSM 0). Negative values are kept.

Two BBH variants: "per_subtask" normalizes every subtask by its own baseline before averaging
(BIG-bench's normalized preferred metric, our default); "aggregate" normalizes the BBH mean by
the mean baseline. Since normalization is linear with a per-task slope the two differ; the
paper's Table 5 cannot be reproduced exactly by the aggregate variant (see tests/test_scores.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from statistics import mean
from typing import Any

from flan_nb.eval import benchmark_schema as bd

COMPONENTS = ("mmlu_direct", "mmlu_cot", "bbh_direct", "bbh_cot", "tydiqa_direct", "mgsm_cot")


def normalize(score: float, random: float) -> float:
    """100*(score - random)/(100 - random); below-chance scores stay negative."""
    if random >= 100:
        raise ValueError(f"random baseline must be < 100, got {random}")
    return 100.0 * (score - random) / (100.0 - random)


def bbh_random(subtask: str) -> float:
    """Random baseline of a real BBH subtask (benchmarks.yaml)."""
    return float(bd.bbh_subtask_info(subtask)["random"])


def bbh_baselines(data: bd.BenchmarkData) -> dict[str, float]:
    """Random baseline per BBH subtask of a loaded set (yaml for real names, inferred otherwise)."""
    return {s: float(bd.bbh_info_for(data, s)["random"]) for s in data.items}


def mean_bbh_random(key: str = "random") -> float:
    """Mean BBH baseline over the 27 subtasks: key "random" (expected accuracy of guessing, the
    mean over items of 100/options; 26.63) or "random_mode" (100/most common n_options; 26.39)."""
    subs = bd.settings()["bbh"]["subtasks"].values()
    return mean(float(v.get(key, v["random"])) for v in subs)


def _apart(benchmark: str) -> list[str]:
    return list(bd.settings().get(benchmark, {}).get("reported_apart", []))


def aggregate(benchmark: str, records: Iterable[Mapping[str, Any]],
              baselines: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Metrics of one benchmark/setting from scored records {"subtask", "correct", "extracted",
    "f1"?}: {"score", "n", "unparsed", "per_subtask", ...} in the metrics.json schema."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        groups[str(r["subtask"])].append(r)
    if not groups:
        raise ValueError(f"{benchmark}: no scored records to aggregate")
    per: dict[str, dict[str, Any]] = {}
    for sub, rows in groups.items():
        entry: dict[str, Any] = {
            "score": 100.0 * sum(bool(r["correct"]) for r in rows) / len(rows),
            "n": len(rows),
            "unparsed": sum(r.get("extracted") is None for r in rows),
        }
        if benchmark == "tydiqa":
            entry["f1"] = 100.0 * mean(float(r.get("f1", 0.0)) for r in rows)
        if benchmark == "bbh":
            if baselines and sub in baselines:
                entry["random"] = float(baselines[sub])
            elif sub in bd.settings()["bbh"]["subtasks"]:
                entry["random"] = bbh_random(sub)
        per[sub] = entry
    apart = [s for s in _apart(benchmark) if s in per]
    scored = scored_subtasks(benchmark, per)
    out: dict[str, Any] = {
        "score": mean(per[s]["score"] for s in scored),
        "n": sum(per[s]["n"] for s in scored),
        "unparsed": sum(per[s]["unparsed"] for s in scored),
        "n_subtasks": len(scored),
        "per_subtask": per,
    }
    if benchmark == "tydiqa":
        out["f1"] = mean(per[s]["f1"] for s in scored)
    for s in apart:
        if s in scored:
            continue
        extra = {k: per[s][k] for k in ("score", "f1", "n", "unparsed") if k in per[s]}
        out["english" if s == "en" else s] = extra
    if benchmark == "bbh":
        info = bd.settings()["bbh"]["subtasks"]
        for group in ("nlp", "alg"):
            members = [s for s in scored if info.get(s, {}).get("group") == group]
            if members:
                out[f"bbh_{group}"] = mean(per[s]["score"] for s in members)
    return out


def scored_subtasks(benchmark: str, subtasks: Any) -> list[str]:
    """The subtasks a benchmark's score averages over: all but those reported apart (TyDiQA's
    English, as in the paper's Table 5), unless only those exist."""
    subs = list(subtasks)
    apart = set(_apart(benchmark))
    return [s for s in subs if s not in apart] or subs


def _component(metrics: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    benchmark, setting = name.split("_", 1)
    node = metrics.get(benchmark, {})
    node = node.get(setting) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) and "score" in node else None


def bbh_normalized(entry: Mapping[str, Any], method: str = "per_subtask",
                   random: float | None = None) -> tuple[float, float]:
    """(normalized BBH score, effective baseline) of a BBH metrics entry."""
    if method == "aggregate":
        r = mean_bbh_random() if random is None else random
        return normalize(float(entry["score"]), r), r
    if method != "per_subtask":
        raise ValueError(f"unknown BBH normalization {method!r}: per_subtask or aggregate")
    per = entry.get("per_subtask") or {}
    if not per:
        raise ValueError("per_subtask BBH normalization needs `per_subtask` scores")
    apart = set(_apart("bbh"))
    vals, rs = [], []
    for sub, e in per.items():
        if sub in apart:
            continue
        r = e.get("random")
        if r is None:
            if sub not in bd.settings()["bbh"]["subtasks"]:
                raise ValueError(f"BBH subtask {sub!r} has no random baseline (give `random`)")
            r = bbh_random(sub)
        vals.append(normalize(float(e["score"]), float(r)))
        rs.append(float(r))
    return mean(vals), mean(rs)


def normalized_average(metrics: Mapping[str, Any], *, bbh: str = "per_subtask",
                       allow_partial: bool = False) -> dict[str, Any]:
    """The paper's normalized average from a metrics.json-shaped mapping.

    value is None when a component is missing, unless allow_partial (then the mean of those
    present, flagged complete=False)."""
    s = bd.settings()
    fixed = {"mmlu": float(s["mmlu"]["random"]), "tydiqa": float(s["tydiqa"]["random"]),
             "mgsm": float(s["mgsm"]["random"])}
    components, baselines, raw, missing = {}, {}, {}, []
    for name in COMPONENTS:
        entry = _component(metrics, name)
        if entry is None:
            missing.append(name)
            continue
        raw[name] = float(entry["score"])
        if name.startswith("bbh"):
            components[name], baselines[name] = bbh_normalized(entry, bbh)
        else:
            r = fixed[name.split("_", 1)[0]]
            components[name], baselines[name] = normalize(raw[name], r), r
    complete = not missing
    value = mean(components.values()) if components and (complete or allow_partial) else None
    return {"value": value, "components": components, "raw": raw, "baselines": baselines,
            "bbh_method": bbh, "complete": complete, "missing": missing}


def normalized_average_from_scores(scores: Mapping[str, float], *,
                                   bbh_random: float | None = None,
                                   bbh_random_cot: float | None = None,
                                   mmlu_random: float | None = None) -> float:
    """Aggregate-level variant from the six headline scores (as printed in P Table 5). Baselines
    not given come from benchmarks.yaml, as in normalized_average."""
    s = bd.settings()
    rm = float(s["mmlu"]["random"]) if mmlu_random is None else mmlu_random
    rb = mean_bbh_random() if bbh_random is None else bbh_random
    rc = rb if bbh_random_cot is None else bbh_random_cot
    r = {"mmlu_direct": rm, "mmlu_cot": rm, "bbh_direct": rb, "bbh_cot": rc,
         "tydiqa_direct": float(s["tydiqa"]["random"]), "mgsm_cot": float(s["mgsm"]["random"])}
    missing = [c for c in COMPONENTS if c not in scores]
    if missing:
        raise ValueError(f"normalized average needs all six components; missing {missing}")
    return mean(normalize(float(scores[c]), r[c]) for c in COMPONENTS)


def add_strict(out: dict[str, Any], strict: Mapping[str, Any]) -> dict[str, Any]:
    """Fold the aggregate of the strict reader into `out` (the flexible aggregate, in place):
    "strict_score" / "strict_unparsed" beside "score" / "unparsed" at every level that has them
    (setting, per_subtask entries, languages reported apart, BBH nlp/alg as "strict_bbh_nlp")."""
    out["strict_score"], out["strict_unparsed"] = strict["score"], strict["unparsed"]
    for sub, entry in strict.get("per_subtask", {}).items():
        if sub in out.get("per_subtask", {}):
            out["per_subtask"][sub]["strict_score"] = entry["score"]
            out["per_subtask"][sub]["strict_unparsed"] = entry["unparsed"]
    for key, entry in strict.items():
        if isinstance(entry, Mapping) and key != "per_subtask" and isinstance(out.get(key), dict):
            out[key]["strict_score"] = entry.get("score")
            out[key]["strict_unparsed"] = entry.get("unparsed")
    for group in ("bbh_nlp", "bbh_alg"):
        if group in strict:
            out[f"strict_{group}"] = strict[group]
    return out
