"""The four held-out benchmarks (MMLU, BBH, TyDiQA GoldP, MGSM) as raw records, from three sources.

Every source — the offline mirror (`data_root`), the Hugging Face hub ids, or the built-in
synthetic suite — ends in the same `BenchmarkData`, validated by one function, so prompt building
and scoring never care where the data came from. Settings (subjects, languages, baselines, answer
phrases) live in `flan_nb/resources/benchmarks.yaml`.

Raw record schemas (shared with flan_nb.data.synthetic):
  MMLU   {"subject", "question", "choices": [4 str], "answer": int 0-3}; exemplars = dev records
         per subject; cot_prompts = the mmlu-cot.json string per subject.
  BBH    {"input", "target"}; exemplars = the cot-prompts/<task>.txt text per subtask.
  TyDiQA {"id", "context", "question", "answers": [str]}; exemplars = candidate one-shot records
         per language, in order of preference (prompts.py takes the first that is not the item).
  MGSM   {"question", "answer": str}; exemplars = the 8 {"q", "a"} per language.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flan_nb import config
from flan_nb.eval import benchmark_files as files
from flan_nb.eval.benchmark_hub import _HUB
from flan_nb.eval.benchmark_schema import (
    BENCHMARKS,
    SOURCES,
    BenchmarkData,
    BenchmarkDataError,
    _exemplar_pool,
    _unknown,
    settings,
    squad_records,
    subtask_names,
    validate,
)

# ---------------------------------------------------------------------------------------------
# Public entry point


def load(
    benchmark: str,
    *,
    source: str = "offline",
    data_root: str | Path = "",
    split: str = "",
    subtasks: Sequence[str] | None = None,
    n_per_subtask: int | None = None,
    seed: int = 0,
    on_bad_rows: str = "raise",
) -> BenchmarkData:
    """Load one benchmark; `n_per_subtask` subsamples each subtask deterministically by `seed`.

    A malformed record raises BenchmarkDataError naming the file and line or JSON path
    (`examples[12]`); with on_bad_rows="skip" scored items that are malformed are dropped and
    counted in meta["bad_items"] (a malformed exemplar or prompt file still raises).

    split: MMLU "validation" (the paper's Tables 3/5) or "test" (Tables 1/4); the offline mirror
    has no validation split, so "" means validation on the hub and test offline (said in meta).
    """
    if benchmark not in BENCHMARKS:
        raise BenchmarkDataError(_unknown("benchmark", benchmark, BENCHMARKS))
    if source not in SOURCES:
        raise BenchmarkDataError(_unknown("data source", source, SOURCES))
    if subtasks is not None and source != "synthetic":
        known = subtask_names(benchmark)
        for name in subtasks:
            if name not in known:
                raise BenchmarkDataError(_unknown(f"{benchmark} subtask", name, known))
    if source == "offline":
        root = config.require_data_root(str(data_root), what=f"{benchmark} (offline mirror)")
        data = _OFFLINE[benchmark](root, subtasks, split)
    elif source == "hub":
        data = _HUB[benchmark](subtasks, split, data_root)
    else:
        data = _synthetic(benchmark, subtasks, n_per_subtask, seed)
    data.meta.setdefault("data", source)
    validate(data, on_bad_rows)
    if n_per_subtask is not None:
        subsample(data, n_per_subtask, seed)
    return data


def subsample(data: BenchmarkData, n_per_subtask: int, seed: int) -> BenchmarkData:
    """Keep `n_per_subtask` items of each subtask, chosen by a seed-and-subtask RNG, in file order.

    Exemplar pools are left whole: a TyDiQA dev exemplar may be any dev item but the scored one.
    """
    if n_per_subtask < 1:
        raise BenchmarkDataError(f"n_per_subtask must be >= 1, got {n_per_subtask}")
    any_cut = False
    for name, rows in data.items.items():
        if len(rows) > n_per_subtask:
            rng = random.Random(f"{seed}:{data.benchmark}:{name}")
            keep = sorted(rng.sample(range(len(rows)), n_per_subtask))
            data.items[name] = [rows[i] for i in keep]
            any_cut = True
    data.meta["subsampled"] = any_cut
    data.meta["n_per_subtask"] = n_per_subtask
    data.meta["seed"] = seed
    data.meta["n_items"] = data.n_items
    return data


# ---------------------------------------------------------------------------------------------
# Offline mirror


def _read_mmlu_csv(path: Path, subject: str, locs: list[str]) -> list[dict[str, Any]]:
    """Records of one MMLU CSV; a malformed row becomes a `broken` record validate() names by line."""
    if not path.is_file():
        raise BenchmarkDataError(f"missing file {path}")
    rows = []
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as fh:
        reader = csv.DictReader(fh)
        try:
            for row in reader:
                line_no = reader.line_num
                locs.append(f"{path} line {line_no}")
                rows.append(_mmlu_row(row, subject, f"{subject}/{path.stem.rsplit('_', 1)[-1]}/{len(rows)}"))
        except csv.Error as exc:
            raise BenchmarkDataError(f"{path} line {reader.line_num}: invalid CSV: {exc}") from None
    return rows


def _mmlu_row(row: Mapping[str | None, Any], subject: str, item_id: str) -> dict[str, Any]:
    for key in ("question", "choice0", "choice1", "choice2", "choice3", "answer"):
        if row.get(key) is None:
            return files.broken(f"missing column `{key}`", id=item_id)
    if row.get(None):
        return files.broken(f"{len(row[None])} more field(s) than the header has", id=item_id)
    try:
        answer = int(row["answer"])
    except ValueError:
        return files.broken(f"answer {row['answer']!r} is not an int 0-3", id=item_id)
    return {"subject": subject, "question": row["question"],
            "choices": [row[f"choice{k}"] for k in range(4)], "answer": answer, "id": item_id}


def _offline_mmlu(root: Path, subtasks: Sequence[str] | None, split: str) -> BenchmarkData:
    base = root / "mmlu"
    split = split or "test"
    if split == "validation":
        raise BenchmarkDataError(
            "MMLU validation split is not in the offline mirror (it has dev and test only); "
            "use split='test' offline or source='hub' for the paper's validation numbers"
        )
    if split not in ("test", "dev"):
        raise BenchmarkDataError(_unknown("MMLU split", split, ("validation", "test", "dev")))
    cot_path = base / "mmlu-cot.json"
    cot = files.read_json(cot_path)
    if not isinstance(cot, Mapping):
        raise BenchmarkDataError(f"{cot_path}: expected an object of subject -> prompt text")
    items, dev, where, dev_where = {}, {}, {}, {}
    for subject in subtasks or settings()["mmlu"]["subjects"]:
        where[subject], dev_where[subject] = [], []
        items[subject] = _read_mmlu_csv(base / split / f"{subject}_{split}.csv", subject, where[subject])
        dev_path = base / "dev" / f"{subject}_dev.csv"
        if not dev_path.is_file():
            raise BenchmarkDataError(f"mmlu/{subject}: no dev exemplars ({dev_path} is missing)")
        dev[subject] = _read_mmlu_csv(dev_path, subject, dev_where[subject])
        if not isinstance(cot.get(subject), str):
            raise BenchmarkDataError(f"{cot_path}: no CoT prompt text for `{subject}`")
        files.require_clean(cot[subject], f"{cot_path} [{subject!r}]")
    return BenchmarkData(
        "mmlu", items, dev, {s: cot[s] for s in items},
        {"source_files": str(base), "split": split, "splits_available": ["dev", "test"],
         "note": "offline mirror has dev+test only; the paper's Tables 3/5 use validation",
         "item_where": where, "exemplar_where": dev_where},
    )


def _offline_bbh(root: Path, subtasks: Sequence[str] | None, split: str) -> BenchmarkData:
    base = root / "bbh"
    items, prompts, where = {}, {}, {}
    for task in subtasks or list(settings()["bbh"]["subtasks"]):
        path = base / "bbh" / f"{task}.json"
        doc = files.read_json(path)
        if not isinstance(doc, Mapping) or not isinstance(doc.get("examples"), list):
            raise BenchmarkDataError(f"{path}: expected an object with a list `examples`")
        items[task] = [dict(ex, id=f"{task}/{i}") if isinstance(ex, Mapping) else ex
                       for i, ex in enumerate(doc["examples"])]
        where[task] = [f"{path} examples[{i}]" for i in range(len(doc["examples"]))]
        prompts[task] = files.read_text_strict(base / "cot-prompts" / f"{task}.txt")
    return BenchmarkData("bbh", items, prompts, {},
                         {"source_files": str(base), "split": "test", "item_where": where})


def _offline_tydiqa(root: Path, subtasks: Sequence[str] | None, split: str) -> BenchmarkData:
    base = root / "tydiqa_goldp"
    langs = settings()["tydiqa"]["languages"]
    code_to_name = {v: k for k, v in langs.items()}
    items, pools, source, where = {}, {}, {}, {}
    for code in subtasks or list(langs.values()):
        name = code_to_name[code]
        dev_path = base / f"{name}_tydiqa_dev.json"
        where[code] = []
        items[code] = squad_records(files.read_json(dev_path), str(dev_path), where[code])
        train_path = base / f"{name}_tydiqa_train.json"
        if train_path.is_file():
            # malformed train records are never candidates (_exemplar_pool takes valid ones only)
            pools[code] = _exemplar_pool(squad_records(files.read_json(train_path), str(train_path)))
            source[code] = "train"
        else:
            # the mirror has train for en/ko/sw only; the others take a dev item that is never
            # the scored one (prompts.py skips a candidate equal to the item)
            pools[code] = _exemplar_pool(items[code])
            source[code] = "dev"
    return BenchmarkData("tydiqa", items, pools, {},
                         {"source_files": str(base), "split": "dev", "exemplar_source": source,
                          "item_where": where})


def _read_mgsm_tsv(path: Path, lang: str, locs: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        raise BenchmarkDataError(f"missing file {path}")
    rows = []
    text = files.read_text(path)
    for line_no, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line:
            continue
        parts = line.split("\t")
        locs.append(f"{path} line {line_no}")
        if len(parts) != 2:
            rows.append(files.broken(f"expected question<TAB>answer, got {len(parts)} field(s)",
                                     id=f"{lang}/{line_no - 1}"))
            continue
        rows.append({"question": parts[0], "answer": parts[1], "id": f"{lang}/{line_no - 1}"})
    return rows


def _offline_mgsm(root: Path, subtasks: Sequence[str] | None, split: str) -> BenchmarkData:
    base = root / "mgsm"
    ex_path = base / "exemplars.json"
    ex_doc = files.read_json(ex_path)
    if not isinstance(ex_doc, Mapping) or not isinstance(ex_doc.get("MGSM_EXEMPLARS"), Mapping):
        raise BenchmarkDataError(f"{ex_path}: missing key `MGSM_EXEMPLARS`")
    items, exemplars, where, ex_where = {}, {}, {}, {}
    for lang in subtasks or settings()["mgsm"]["languages"]:
        where[lang] = []
        items[lang] = _read_mgsm_tsv(base / f"mgsm_{lang}.tsv", lang, where[lang])
        by_lang = ex_doc["MGSM_EXEMPLARS"].get(lang) or {}
        if not isinstance(by_lang, Mapping) or not all(str(k).isdigit() for k in by_lang):
            raise BenchmarkDataError(f"{ex_path}: exemplars of `{lang}` must be an object \"1\"..\"8\"")
        order = sorted(by_lang, key=int)  # none: validate() names the language
        exemplars[lang] = [by_lang[k] for k in order]
        ex_where[lang] = [f"{ex_path} MGSM_EXEMPLARS.{lang}.{k}" for k in order]
    return BenchmarkData("mgsm", items, exemplars, {},
                         {"source_files": str(base), "split": "test", "item_where": where,
                          "exemplar_where": ex_where})


_OFFLINE = {"mmlu": _offline_mmlu, "bbh": _offline_bbh, "tydiqa": _offline_tydiqa,
            "mgsm": _offline_mgsm}


# ---------------------------------------------------------------------------------------------
# Synthetic


def from_mapping(benchmark: str, obj: Any) -> BenchmarkData:
    """Accept a BenchmarkData or a mapping {"items", "exemplars", "cot_prompts"?, "meta"?}."""
    if isinstance(obj, BenchmarkData):
        return obj
    if not isinstance(obj, Mapping) or "items" not in obj:
        raise BenchmarkDataError(
            f"{benchmark}: expected BenchmarkData or a mapping with `items` and `exemplars`, got "
            f"{type(obj).__name__}"
        )
    exemplars = dict(obj.get("exemplars", {}))
    for key, value in exemplars.items():
        # exemplars.json form {"1": {...}, ..., "8": {...}} -> the ordered list
        if isinstance(value, Mapping) and value and all(str(k).isdigit() for k in value):
            exemplars[key] = [value[k] for k in sorted(value, key=int)]
    return BenchmarkData(benchmark, {k: list(v) for k, v in obj["items"].items()},
                         exemplars, dict(obj.get("cot_prompts", {})), dict(obj.get("meta", {})))


def _synthetic(benchmark, subtasks, n_per_subtask, seed) -> BenchmarkData:
    from flan_nb.data import synthetic

    kwargs: dict[str, Any] = {"seed": seed}
    if n_per_subtask is not None:
        kwargs["n_per_subtask"] = n_per_subtask
    data = from_mapping(benchmark, synthetic.benchmark_data(benchmark, **kwargs))
    data.benchmark = benchmark
    if subtasks is not None:
        missing = [s for s in subtasks if s not in data.items]
        if missing:
            raise BenchmarkDataError(_unknown(f"synthetic {benchmark} subtask", missing[0],
                                              list(data.items)))
        data.items = {s: data.items[s] for s in subtasks}
    # the synthetic suite draws benchmark items from its test split
    data.meta["split"] = "test"
    return data
