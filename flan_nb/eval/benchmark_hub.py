"""Benchmarks from the Hugging Face hub, for connected machines: `cais/mmlu`, `lukaemon/bbh`,
`google-research-datasets/tydiqa` (GoldP), `juletxara/mgsm`, plus the prompt files that are not on
the hub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flan_nb import config
from flan_nb.eval.benchmark_schema import (
    BBH_COT_URL,
    HUB_IDS,
    MMLU_COT_URL,
    BenchmarkData,
    BenchmarkDataError,
    _exemplar_pool,
    settings,
)

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
