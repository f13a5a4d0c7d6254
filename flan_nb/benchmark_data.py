"""The four held-out benchmarks (MMLU, BBH, TyDiQA GoldP, MGSM) as raw records, from three sources.

Every source — the offline mirror (`data_root`), the Hugging Face hub ids, or the built-in
synthetic suite — ends in the same `BenchmarkData`, validated by one function, so prompt building
and scoring never care where the data came from. Settings (subjects, languages, baselines, answer
phrases) live in `flan_nb/resources/benchmarks.yaml`.

Raw record schemas (shared with flan_nb.synthetic):
  MMLU   {"subject", "question", "choices": [4 str], "answer": int 0-3}; exemplars = dev records
         per subject; cot_prompts = the mmlu-cot.json string per subject.
  BBH    {"input", "target"}; exemplars = the cot-prompts/<task>.txt text per subtask.
  TyDiQA {"id", "context", "question", "answers": [str]}; exemplars = candidate one-shot records
         per language, in order of preference (prompts.py takes the first that is not the item).
  MGSM   {"question", "answer": str}; exemplars = the 8 {"q", "a"} per language.
"""

from __future__ import annotations

import csv
import functools
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from flan_nb import config

BENCHMARKS = ("mmlu", "bbh", "tydiqa", "mgsm")
SOURCES = ("offline", "hub", "synthetic")

HUB_IDS = {
    "mmlu": "cais/mmlu",
    "bbh": "lukaemon/bbh",  # falls back to SaylorTwift/bbh, a parquet copy with the same fields
    "tydiqa": "google-research-datasets/tydiqa",
    "mgsm": "juletxara/mgsm",
}
# Prompt files that are not on the hub; a connected user without the mirror gets them from the
# repositories the paper cites.
BBH_COT_URL = "https://raw.githubusercontent.com/suzgunmirac/BIG-Bench-Hard/main/cot-prompts/{task}.txt"
MMLU_COT_URL = "https://raw.githubusercontent.com/jasonwei20/flan-2/main/mmlu-cot.json"


class BenchmarkDataError(ValueError):
    """A benchmark record or file is malformed; the message names the item."""


@functools.lru_cache(maxsize=1)
def settings() -> dict[str, Any]:
    """flan_nb/resources/benchmarks.yaml, parsed once."""
    text = resources.files("flan_nb").joinpath("resources/benchmarks.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def subtask_names(benchmark: str) -> list[str]:
    """The paper's subtasks: 57 MMLU subjects, 27 BBH subtasks, TyDiQA/MGSM language codes."""
    s = settings()
    if benchmark == "mmlu":
        return list(s["mmlu"]["subjects"])
    if benchmark == "bbh":
        return list(s["bbh"]["subtasks"])
    if benchmark == "tydiqa":
        return list(s["tydiqa"]["languages"].values())
    if benchmark == "mgsm":
        return list(s["mgsm"]["languages"])
    raise BenchmarkDataError(_unknown("benchmark", benchmark, BENCHMARKS))


def _unknown(kind: str, name: str, known: Sequence[str]) -> str:
    return f"unknown {kind} `{name}`{config.did_you_mean(name, known)}"


@dataclass
class BenchmarkData:
    """Scored items per subtask plus what the prompts need (exemplars, CoT prompt texts)."""

    benchmark: str
    items: dict[str, list[dict[str, Any]]]
    exemplars: dict[str, Any] = field(default_factory=dict)
    cot_prompts: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return sum(len(v) for v in self.items.values())


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
# Validation shared by all sources


def _require(rec: Any, keys: Sequence[str], where: str) -> None:
    if not isinstance(rec, Mapping):
        raise BenchmarkDataError(f"{where}: expected a record (mapping), got {type(rec).__name__}")
    for key in keys:
        if key not in rec or rec[key] is None:
            raise BenchmarkDataError(f"{where}: missing field `{key}` (has {sorted(rec)})")


OPTION_LINE = re.compile(r"^\(([A-Z])\) ", re.M)
_OPTION_TEXT = re.compile(r"^\(([A-Z])\) (.*)$", re.M)


def bbh_options(text: str) -> list[str]:
    """The option letters listed in a BBH input ("(A) ..." lines), e.g. ["A", "B", "C"]."""
    return OPTION_LINE.findall(text)


def bbh_option_texts(text: str) -> dict[str, str]:
    """Letter -> option text of the "(A) ..." lines of a BBH input, e.g. {"A": "12/11/1937"}."""
    return dict(_OPTION_TEXT.findall(text))


def validate(data: BenchmarkData) -> None:
    """Raise BenchmarkDataError naming the first bad item; record tolerated quirks in meta."""
    b = data.benchmark
    if not data.items:
        raise BenchmarkDataError(f"{b}: no subtasks loaded")
    for sub, rows in data.items.items():
        if not rows:
            raise BenchmarkDataError(f"{b}/{sub}: no items")
        for i, rec in enumerate(rows):
            where = f"{b}/{sub} item {i}" + (f" (id {rec['id']})" if isinstance(rec, Mapping)
                                              and "id" in rec else "")
            _VALIDATORS[b](rec, where)
    if b in _EXEMPLAR_CHECKS:
        missing, noun, check = _EXEMPLAR_CHECKS[b]
        for sub in data.items:
            pool = data.exemplars.get(sub)
            if not pool:
                raise BenchmarkDataError(f"{b}/{sub}: {missing}")
            for i, rec in enumerate(pool):
                check(rec, f"{b}/{sub} {noun} {i}")
    elif b == "bbh":
        quirks = []
        for sub, rows in data.items.items():
            if sub not in data.exemplars:
                raise BenchmarkDataError(f"bbh/{sub}: no cot-prompt text for this subtask")
            info = bbh_info_for(data, sub)
            for i, rec in enumerate(rows):
                target = rec["target"].strip()
                m = re.fullmatch(r"\(([A-Z])\)", target)
                if m:
                    opts = bbh_options(rec["input"])
                    if m.group(1) not in opts:
                        raise BenchmarkDataError(
                            f"bbh/{sub} item {i}: target {target} is not among the options "
                            f"{['(' + o + ')' for o in opts]}"
                        )
                elif info["kind"] == "labels" and target not in info["labels"]:
                    raise BenchmarkDataError(
                        f"bbh/{sub} item {i}: target {target!r} is not one of {info['labels']}"
                    )
                elif info["kind"] == "multiple_choice":
                    # real BBH keeps a few of these (movie_recommendation, ruin_names); kept as is
                    quirks.append(f"{sub}/{i}")
        data.meta["bbh_targets_not_an_option"] = quirks


def _validate_mmlu(rec: Any, where: str) -> None:
    _require(rec, ("question", "choices", "answer"), where)
    choices = rec["choices"]
    if not isinstance(choices, Sequence) or isinstance(choices, str) or len(choices) != 4:
        raise BenchmarkDataError(f"{where}: `choices` must be a list of 4 strings, got {choices!r}")
    ans = rec["answer"]
    if isinstance(ans, bool) or not isinstance(ans, int) or not 0 <= ans <= 3:
        raise BenchmarkDataError(
            f"{where}: `answer` {ans!r} is outside the options (an int 0-3 indexing `choices`)"
        )


def _validate_bbh(rec: Any, where: str) -> None:
    _require(rec, ("input", "target"), where)
    if not str(rec["target"]).strip():
        raise BenchmarkDataError(f"{where}: empty `target`")


def _validate_tydiqa(rec: Any, where: str) -> None:
    _require(rec, ("id", "context", "question", "answers"), where)
    answers = rec["answers"]
    if isinstance(answers, str) or not answers or not all(isinstance(a, str) for a in answers):
        raise BenchmarkDataError(f"{where}: `answers` must be a non-empty list of str, got {answers!r}")


def _validate_mgsm(rec: Any, where: str) -> None:
    _require(rec, ("question", "answer"), where)
    try:
        parse_number(str(rec["answer"]))
    except ValueError as exc:
        raise BenchmarkDataError(f"{where}: `answer` {rec['answer']!r} is not a number") from exc


def _validate_mgsm_exemplar(rec: Any, where: str) -> None:
    _require(rec, ("q", "a"), where)


_VALIDATORS = {"mmlu": _validate_mmlu, "bbh": _validate_bbh, "tydiqa": _validate_tydiqa,
               "mgsm": _validate_mgsm}
# Benchmarks whose exemplars are a list of records per subtask (BBH's are one prompt text):
# (error when a subtask has none, what one is called in messages, its validator).
_EXEMPLAR_CHECKS = {
    "mmlu": ("no dev exemplars for this subject (the 5-shot prompt needs them)", "dev exemplar",
             _validate_mmlu),
    "tydiqa": ("no one-shot exemplar candidates", "exemplar candidate", _validate_tydiqa),
    "mgsm": ("no exemplars for this language", "exemplar", _validate_mgsm_exemplar),
}


def parse_number(text: str) -> float:
    """MGSM gold answers: ints, some with thousands separators ("2,125")."""
    return float(text.strip().replace(",", ""))


def bbh_subtask_info(name: str, rows: Sequence[Mapping[str, Any]] = (),
                     extra_answers: Sequence[str] = (),
                     given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The yaml entry of a real BBH subtask; else `given` (e.g. data.meta["subtask_info"][name]
    from a synthetic set); else inferred from the items (and the CoT exemplars' answers):
    options listed as "(X) " lines -> multiple choice (random = mean 100/n_options); exactly two
    distinct word targets -> labels (random 50); anything else free form (random 0).
    """
    known = settings()["bbh"]["subtasks"]
    if name in known:
        return dict(known[name])
    if given:
        return dict(given)
    counts = [len(bbh_options(r["input"])) for r in rows]
    if counts and all(counts):
        mode = max(set(counts), key=counts.count)
        return {"group": None, "kind": "multiple_choice", "n_options": mode,
                "random": sum(100.0 / c for c in counts) / len(counts), "inferred": True}
    targets = sorted({str(r["target"]).strip() for r in rows} | {a.strip() for a in extra_answers})
    if len(targets) == 2 and all(re.fullmatch(r"[A-Za-z]+", t) for t in targets):
        return {"group": None, "kind": "labels", "labels": targets, "n_options": 2,
                "random": 50.0, "inferred": True}
    return {"group": None, "kind": "free_form", "n_options": 0, "random": 0.0, "inferred": True}


def bbh_info_for(data: BenchmarkData, name: str) -> dict[str, Any]:
    """bbh_subtask_info with everything a loaded set knows about the subtask."""
    from flan_nb.prompts import parse_bbh_cot_prompt

    extra: list[str] = []
    if name not in settings()["bbh"]["subtasks"] and name in data.exemplars:
        extra = parse_bbh_cot_prompt(data.exemplars[name], f"bbh cot-prompt {name}").answers
    given = (data.meta.get("subtask_info") or {}).get(name)
    return bbh_subtask_info(name, data.items.get(name, ()), extra, given)


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


def squad_records(doc: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """Flatten SQuAD-1.1-form JSON into TyDiQA records."""
    out = []
    for a, article in enumerate(doc.get("data", [])):
        for p, para in enumerate(article.get("paragraphs", [])):
            for q, qa in enumerate(para.get("qas", [])):
                loc = f"{where} data[{a}].paragraphs[{p}].qas[{q}]"
                _require(qa, ("id", "question", "answers"), loc)
                out.append({"id": qa["id"], "context": para["context"], "question": qa["question"],
                            "answers": [x["text"] for x in qa["answers"]]})
    return out


TYDIQA_MIN_EXEMPLAR_CONTEXT = 150


def _exemplar_pool(rows: Sequence[Mapping[str, Any]], k: int = 2) -> list[dict[str, Any]]:
    """The `k` shortest records (by context+question+answer, ties by id) among those whose context
    has at least 150 characters: short one-shot exemplars leave room for the scored passage in
    small context windows, and the floor skips table fragments such as "The Sun 1,447,959 -7%".
    Deterministic and seed-free."""
    def length(r: Mapping[str, Any]) -> int:
        return len(r["context"]) + len(r["question"]) + len(r["answers"][0])

    ok = [r for r in rows if len(r["context"]) >= TYDIQA_MIN_EXEMPLAR_CONTEXT] or list(rows)
    ranked = sorted(ok, key=lambda r: (length(r), r["id"]))
    return [dict(r) for r in ranked[:k]]


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
# Hugging Face hub (for connected machines; not exercised by the offline tests)


def _hub_load(repo: str, name: str | None, split: str):
    import datasets

    try:
        return datasets.load_dataset(repo, name, split=split)
    except Exception as exc:  # network, auth, or a renamed config: say which one
        raise BenchmarkDataError(f"could not load {repo} (config {name}, split {split}) from the "
                                 f"hub: {exc}") from exc


def _fetch_text(url: str, local: Path | None) -> str:
    """Prompt files the hub lacks: from the mirror when given, else from their GitHub repo."""
    if local is not None and local.is_file():
        return local.read_text(encoding="utf-8")
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.read().decode("utf-8")
    except OSError as exc:
        raise BenchmarkDataError(f"could not fetch {url}: {exc}") from exc


def _root_or_none(data_root: str | Path) -> Path | None:
    return config.data_root(str(data_root))


def _hub_mmlu(subtasks, split, data_root) -> BenchmarkData:
    split = split or "validation"
    root = _root_or_none(data_root)
    cot = json.loads(_fetch_text(MMLU_COT_URL, root / "mmlu" / "mmlu-cot.json" if root else None))
    items, dev = {}, {}
    for subject in subtasks or settings()["mmlu"]["subjects"]:
        def rows(sp: str, subject: str = subject) -> list[dict[str, Any]]:
            ds = _hub_load(HUB_IDS["mmlu"], subject, sp)
            return [{"subject": subject, "question": r["question"], "choices": list(r["choices"]),
                     "answer": int(r["answer"]), "id": f"{subject}/{sp}/{i}"}
                    for i, r in enumerate(ds)]
        items[subject] = rows(split)
        dev[subject] = rows("dev")
        if subject not in cot:
            raise BenchmarkDataError(f"mmlu-cot.json has no CoT prompt for `{subject}`")
    return BenchmarkData("mmlu", items, dev, {s: cot[s] for s in items},
                         {"hub_id": HUB_IDS["mmlu"], "split": split})


def _hub_bbh(subtasks, split, data_root) -> BenchmarkData:
    root = _root_or_none(data_root)
    items, prompts = {}, {}
    for task in subtasks or list(settings()["bbh"]["subtasks"]):
        try:
            ds = _hub_load(HUB_IDS["bbh"], task, "test")
        except BenchmarkDataError:
            # lukaemon/bbh is a script dataset that newer `datasets` releases refuse to run
            ds = _hub_load("SaylorTwift/bbh", task, "test")
        items[task] = [{"input": r["input"], "target": r["target"], "id": f"{task}/{i}"}
                       for i, r in enumerate(ds)]
        local = root / "bbh" / "cot-prompts" / f"{task}.txt" if root else None
        prompts[task] = _fetch_text(BBH_COT_URL.format(task=task), local)
    return BenchmarkData("bbh", items, prompts, {}, {"hub_id": HUB_IDS["bbh"], "split": "test"})


def _hub_tydiqa(subtasks, split, data_root) -> BenchmarkData:
    langs = settings()["tydiqa"]["languages"]
    wanted = set(subtasks or langs.values())

    def by_lang(sp: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for r in _hub_load(HUB_IDS["tydiqa"], "secondary_task", sp):
            code = langs.get(r["id"].split("-", 1)[0])
            if code in wanted:
                out.setdefault(code, []).append(
                    {"id": r["id"], "context": r["context"], "question": r["question"],
                     "answers": list(r["answers"]["text"])})
        return out

    items = by_lang("validation")
    train = by_lang("train")
    pools = {c: _exemplar_pool(train[c]) for c in items if c in train}
    return BenchmarkData("tydiqa", {c: items[c] for c in sorted(items)}, pools, {},
                         {"hub_id": HUB_IDS["tydiqa"], "split": "validation",
                          "exemplar_source": {c: "train" for c in pools}})


def _hub_mgsm(subtasks, split, data_root) -> BenchmarkData:
    items, exemplars = {}, {}
    for lang in subtasks or settings()["mgsm"]["languages"]:
        test = _hub_load(HUB_IDS["mgsm"], lang, "test")
        items[lang] = [{"question": r["question"], "answer": str(r["answer_number"]),
                        "id": f"{lang}/{i}"} for i, r in enumerate(test)]
        # the train split holds the 8 exemplars with their native prefixes, like exemplars.json
        train = _hub_load(HUB_IDS["mgsm"], lang, "train")
        exemplars[lang] = [{"q": r["question"], "a": r["answer"]} for r in train]
    return BenchmarkData("mgsm", items, exemplars, {}, {"hub_id": HUB_IDS["mgsm"], "split": "test"})


_HUB = {"mmlu": _hub_mmlu, "bbh": _hub_bbh, "tydiqa": _hub_tydiqa, "mgsm": _hub_mgsm}


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
    from flan_nb import synthetic

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
