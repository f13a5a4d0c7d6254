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
import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flan_nb import config
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
) -> BenchmarkData:
    """Load one benchmark; `n_per_subtask` subsamples each subtask deterministically by `seed`.

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
    validate(data)
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchmarkDataError(f"missing file {path}") from None
    except json.JSONDecodeError as exc:
        raise BenchmarkDataError(f"{path} line {exc.lineno}: invalid JSON: {exc.msg}") from exc


def _read_mmlu_csv(path: Path, subject: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise BenchmarkDataError(f"missing file {path}")
    rows = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for line_no, row in enumerate(reader, start=2):
            where = f"{path} line {line_no}"
            for key in ("question", "choice0", "choice1", "choice2", "choice3", "answer"):
                if row.get(key) is None:
                    raise BenchmarkDataError(f"{where}: missing column `{key}`")
            try:
                answer = int(row["answer"])
            except ValueError:
                raise BenchmarkDataError(f"{where}: answer {row['answer']!r} is not an int 0-3") from None
            rows.append({"subject": subject, "question": row["question"],
                         "choices": [row[f"choice{k}"] for k in range(4)], "answer": answer,
                         "id": f"{subject}/{path.stem.rsplit('_', 1)[-1]}/{line_no - 2}"})
    return rows


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
    cot = _read_json(base / "mmlu-cot.json")
    items, dev = {}, {}
    for subject in subtasks or settings()["mmlu"]["subjects"]:
        items[subject] = _read_mmlu_csv(base / split / f"{subject}_{split}.csv", subject)
        dev_path = base / "dev" / f"{subject}_dev.csv"
        if not dev_path.is_file():
            raise BenchmarkDataError(f"mmlu/{subject}: no dev exemplars ({dev_path} is missing)")
        dev[subject] = _read_mmlu_csv(dev_path, subject)
        if subject not in cot:
            raise BenchmarkDataError(f"{base / 'mmlu-cot.json'}: no CoT prompt for `{subject}`")
    return BenchmarkData(
        "mmlu", items, dev, {s: cot[s] for s in items},
        {"source_files": str(base), "split": split, "splits_available": ["dev", "test"],
         "note": "offline mirror has dev+test only; the paper's Tables 3/5 use validation"},
    )


def _offline_bbh(root: Path, subtasks: Sequence[str] | None, split: str) -> BenchmarkData:
    base = root / "bbh"
    items, prompts = {}, {}
    for task in subtasks or list(settings()["bbh"]["subtasks"]):
        doc = _read_json(base / "bbh" / f"{task}.json")
        if "examples" not in doc:
            raise BenchmarkDataError(f"{base / 'bbh' / (task + '.json')}: missing key `examples`")
        items[task] = [dict(ex, id=f"{task}/{i}") for i, ex in enumerate(doc["examples"])]
        cot_path = base / "cot-prompts" / f"{task}.txt"
        if not cot_path.is_file():
            raise BenchmarkDataError(f"missing file {cot_path}")
        prompts[task] = cot_path.read_text(encoding="utf-8")
    return BenchmarkData("bbh", items, prompts, {}, {"source_files": str(base), "split": "test"})


def _offline_tydiqa(root: Path, subtasks: Sequence[str] | None, split: str) -> BenchmarkData:
    base = root / "tydiqa_goldp"
    langs = settings()["tydiqa"]["languages"]
    code_to_name = {v: k for k, v in langs.items()}
    items, pools, source = {}, {}, {}
    for code in subtasks or list(langs.values()):
        name = code_to_name[code]
        dev_path = base / f"{name}_tydiqa_dev.json"
        items[code] = squad_records(_read_json(dev_path), str(dev_path))
        train_path = base / f"{name}_tydiqa_train.json"
        if train_path.is_file():
            pools[code] = _exemplar_pool(squad_records(_read_json(train_path), str(train_path)))
            source[code] = "train"
        else:
            # the mirror has train for en/ko/sw only; the others take a dev item that is never
            # the scored one (prompts.py skips a candidate equal to the item)
            pools[code] = _exemplar_pool(items[code])
            source[code] = "dev"
    return BenchmarkData("tydiqa", items, pools, {},
                         {"source_files": str(base), "split": "dev", "exemplar_source": source})


def _offline_mgsm(root: Path, subtasks: Sequence[str] | None, split: str) -> BenchmarkData:
    base = root / "mgsm"
    ex_doc = _read_json(base / "exemplars.json")
    if "MGSM_EXEMPLARS" not in ex_doc:
        raise BenchmarkDataError(f"{base / 'exemplars.json'}: missing key `MGSM_EXEMPLARS`")
    items, exemplars = {}, {}
    for lang in subtasks or settings()["mgsm"]["languages"]:
        path = base / f"mgsm_{lang}.tsv"
        if not path.is_file():
            raise BenchmarkDataError(f"missing file {path}")
        rows = []
        with path.open(encoding="utf-8", newline="") as fh:
            for line_no, line in enumerate(fh, start=1):
                line = line.rstrip("\n")
                if not line:
                    continue
                parts = line.split("\t")
                if len(parts) != 2:
                    raise BenchmarkDataError(f"{path} line {line_no}: expected question<TAB>answer")
                rows.append({"question": parts[0], "answer": parts[1], "id": f"{lang}/{line_no - 1}"})
        items[lang] = rows
        by_lang = ex_doc["MGSM_EXEMPLARS"].get(lang)
        if not by_lang:
            raise BenchmarkDataError(f"{base / 'exemplars.json'}: no exemplars for `{lang}`")
        exemplars[lang] = [by_lang[k] for k in sorted(by_lang, key=int)]
    return BenchmarkData("mgsm", items, exemplars, {}, {"source_files": str(base), "split": "test"})


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
