"""Benchmark prompts exactly as the paper ran them (where known), as data the generator can trim.

A `Prompt` keeps its parts (header, exemplars, query) apart so a context budget is met by dropping
whole exemplars from the front and reporting how many — never by cutting text.

Formats (settings: direct, cot, zs, zs_cot; cot_sc prompts as cot):
- MMLU (P App. D.1; jasonwei20/flan-2 mmlu-cot.json). Header "The following are multiple choice
  questions (with answers) about {subject}.\\n\\n"; blocks "Q: {question}\\n(A) a (B) b (C) c (D) d
  \\nA: ..." joined by a blank line. CoT = the mmlu-cot.json string verbatim (raw control
  characters and the two leading-newline headers included) + the query ending "A: Let's think
  step by step.". Direct (the paper's exact direct prompt is unconfirmed) mirrors that layout with
  the 5 dev exemplars answered "A: (X)" and a query ending "A:".
- BBH (Suzgun et al. cot-prompts): header = the task description (canary and ----- removed), the
  3 official CoT exemplars; direct uses the same 3 questions answered "A: {answer}".
- TyDiQA GoldP 1-shot (the paper's prompt is unconfirmed; ours): blocks "Passage: {context}
  \\nQuestion: {question}\\nAnswer: {answer}", no header, query ending "Answer:". The exemplar
  is the first candidate of the language's pool that is not the scored item: the shortest item
  (context+question+answer) whose context has >= 150 characters, from train where the data has
  train (mirror: en, ko, sw; hub: all), else from the whole dev set (ties by id).
- MGSM 8-shot native CoT (Shi et al. exemplars.json): blocks "{q}\\n{a}" (prefixes already in the
  strings), query "{question prefix}{question}\\n{answer prefix without trailing space}".
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flan_nb.eval import benchmark_schema as bd
from flan_nb.eval.answers import COT_SETTINGS, canonical_number
from flan_nb.eval.benchmark_schema import (
    BenchmarkData,
    BenchmarkDataError,
    parse_bbh_cot_prompt,
    split_cot_prompt,
)

SETTINGS = {
    "mmlu": ("direct", "cot", "zs", "zs_cot", "cot_sc"),
    "bbh": ("direct", "cot", "zs", "zs_cot", "cot_sc"),
    "tydiqa": ("direct", "zs"),
    "mgsm": ("cot", "zs_cot", "cot_sc"),
}
LETTERS = "ABCD"


class PromptTooLong(ValueError):
    """Even with every exemplar dropped the prompt exceeds the token budget."""


@dataclass
class Prompt:
    """header + joiner.join(exemplars + [query]); exemplars drop from the front to fit."""

    header: str
    exemplars: list[str]
    query: str
    joiner: str = "\n\n"

    def render(self, n_drop: int = 0) -> str:
        return self.header + self.joiner.join([*self.exemplars[n_drop:], self.query])

    def text(
        self, max_tokens: int | None = None, count_tokens: Callable[[str], int] | None = None
    ) -> tuple[str, int]:
        """The prompt text and how many exemplars were dropped from the front to fit max_tokens."""
        if max_tokens is None:
            return self.render(), 0
        if count_tokens is None:
            raise ValueError("Prompt.text: max_tokens needs count_tokens (str -> int)")
        for n_drop in range(len(self.exemplars) + 1):
            text = self.render(n_drop)
            n = count_tokens(text)
            if n <= max_tokens:
                return text, n_drop
        raise PromptTooLong(
            f"prompt needs {n} tokens with all {len(self.exemplars)} exemplars dropped; "
            f"budget {max_tokens}"
        )


@dataclass
class EvalItem:
    benchmark: str
    subtask: str
    setting: str
    item_id: str
    prompt: Prompt
    gold: Any
    options: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def text(
        self, max_tokens: int | None = None, count_tokens: Callable[[str], int] | None = None
    ) -> tuple[str, int]:
        try:
            return self.prompt.text(max_tokens, count_tokens)
        except PromptTooLong as exc:
            raise PromptTooLong(f"{self.benchmark}/{self.subtask} item {self.item_id} "
                                f"({self.setting}): {exc}") from None


_SETTING_FALLBACK = {"cot_sc": "cot", "zs": "direct", "zs_cot": "cot"}


def max_new_tokens(benchmark: str, setting: str) -> int:
    """Generation budget of a setting (benchmarks.yaml); zero-shot and SC settings share the
    budget of their few-shot counterpart unless the yaml lists them."""
    conf = bd.settings()[benchmark]["settings"]
    entry = conf.get(setting) or conf.get(_SETTING_FALLBACK.get(setting, ""))
    if entry is None:
        raise BenchmarkDataError(bd._unknown(f"{benchmark} setting", setting, list(conf)))
    return int(entry["max_new_tokens"])


def build_items(benchmark: str, setting: str, data: BenchmarkData) -> list[EvalItem]:
    """Every scored item of `data` as an EvalItem for one setting."""
    if benchmark not in SETTINGS:
        raise BenchmarkDataError(bd._unknown("benchmark", benchmark, list(SETTINGS)))
    if setting not in SETTINGS[benchmark]:
        raise BenchmarkDataError(bd._unknown(f"{benchmark} setting", setting, SETTINGS[benchmark]))
    if data.benchmark != benchmark:
        raise BenchmarkDataError(f"build_items({benchmark!r}) got {data.benchmark} data")
    builder = {"mmlu": _mmlu, "bbh": _bbh, "tydiqa": _tydiqa, "mgsm": _mgsm}[benchmark]
    out: list[EvalItem] = []
    for subtask, rows in data.items.items():
        out.extend(builder(subtask, setting, rows, data))
    return out


def _triggers(setting: str) -> str:
    s = bd.settings()
    return s["zs_cot_trigger"] if setting == "zs_cot" else s["cot_trigger"]


# ---------------------------------------------------------------------------------------------
# MMLU


def mmlu_header(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def mmlu_question(rec: Mapping[str, Any]) -> str:
    c = rec["choices"]
    return f"Q: {rec['question'].strip()}\n(A) {c[0]} (B) {c[1]} (C) {c[2]} (D) {c[3]}\nA:"


def _mmlu(subject: str, setting: str, rows, data: BenchmarkData) -> list[EvalItem]:
    header = mmlu_header(subject)
    exemplars: list[str] = []
    if setting == "direct":
        dev = data.exemplars[subject][: bd.settings()["mmlu"]["shots"]]
        exemplars = [f"{mmlu_question(r)} ({LETTERS[r['answer']]})" for r in dev]
    elif setting in ("cot", "cot_sc"):
        if subject not in data.cot_prompts:
            raise BenchmarkDataError(f"mmlu/{subject}: no CoT prompt (mmlu-cot.json entry)")
        header, exemplars, _ = split_cot_prompt(data.cot_prompts[subject], f"mmlu-cot.json[{subject}]")
    suffix = f" {_triggers(setting)}" if setting in COT_SETTINGS else ""
    out = []
    for i, rec in enumerate(rows):
        out.append(EvalItem(
            "mmlu", subject, setting, str(rec.get("id", f"{subject}/{i}")),
            Prompt(header, list(exemplars), mmlu_question(rec) + suffix),
            gold=LETTERS[rec["answer"]], options=list(LETTERS),
            meta={"choices": list(rec["choices"])},
        ))
    return out


# ---------------------------------------------------------------------------------------------
# BBH


def _bbh(subtask: str, setting: str, rows, data: BenchmarkData) -> list[EvalItem]:
    parsed = parse_bbh_cot_prompt(data.exemplars[subtask], f"bbh cot-prompt {subtask}")
    if setting in ("cot", "cot_sc"):
        exemplars = list(parsed.cot_blocks)
    elif setting == "direct":
        exemplars = [f"Q: {q}\nA: {a}" for q, a in zip(parsed.questions, parsed.answers)]
    else:
        exemplars = []
    suffix = f" {_triggers(setting)}" if setting in COT_SETTINGS else ""
    info = bd.bbh_info_for(data, subtask)
    out = []
    for i, rec in enumerate(rows):
        if info["kind"] == "multiple_choice":
            options = [f"({o})" for o in bd.bbh_options(rec["input"])]
        else:
            options = list(info.get("labels", []))
        out.append(EvalItem(
            "bbh", subtask, setting, str(rec.get("id", f"{subtask}/{i}")),
            Prompt(parsed.header, list(exemplars), f"Q: {rec['input']}\nA:{suffix}"),
            gold=rec["target"].strip(), options=options,
            meta={"kind": info["kind"], "group": info.get("group"),
                  "option_texts": bd.bbh_option_texts(rec["input"])},
        ))
    return out


# ---------------------------------------------------------------------------------------------
# TyDiQA GoldP


def tydiqa_block(rec: Mapping[str, Any], answer: str | None = None) -> str:
    lab = bd.settings()["tydiqa"]["labels"]
    text = f"{lab['passage']} {rec['context']}\n{lab['question']} {rec['question']}\n{lab['answer']}"
    return text if answer is None else f"{text} {answer}"


def _tydiqa(lang: str, setting: str, rows, data: BenchmarkData) -> list[EvalItem]:
    pool = data.exemplars.get(lang, [])
    out = []
    for i, rec in enumerate(rows):
        item_id = str(rec.get("id", f"{lang}/{i}"))
        exemplars = []
        if setting == "direct":
            shot = next((c for c in pool if str(c["id"]) != item_id), None)
            if shot is None:
                raise BenchmarkDataError(f"tydiqa/{lang} item {item_id}: no exemplar candidate "
                                         "other than the item itself")
            exemplars = [tydiqa_block(shot, shot["answers"][0])]
        out.append(EvalItem(
            "tydiqa", lang, setting, item_id, Prompt("", exemplars, tydiqa_block(rec)),
            gold=list(rec["answers"]), options=[],
            meta={"language": lang, "exemplar_id": str(shot["id"]) if exemplars else None},
        ))
    return out


# ---------------------------------------------------------------------------------------------
# MGSM


def _common_prefix(texts: Sequence[str]) -> str:
    """The shared 'Question: ' style prefix of exemplar strings, up to the first colon."""
    prefix = os.path.commonprefix(list(texts))
    m = re.match(r"^[^\n]*?[:：]\s?", prefix)
    return m.group(0) if m else ""


def mgsm_prefixes(lang: str, exemplars: Sequence[Mapping[str, str]]) -> tuple[str, str]:
    s = bd.settings()["mgsm"]
    q = s["question_prefix"].get(lang) or _common_prefix([e["q"] for e in exemplars])
    a = s["answer_prefix"].get(lang) or _common_prefix([e["a"] for e in exemplars])
    return q, a


def _mgsm(lang: str, setting: str, rows, data: BenchmarkData) -> list[EvalItem]:
    ex = data.exemplars[lang]
    q_prefix, a_prefix = mgsm_prefixes(lang, ex)
    shots = bd.settings()["mgsm"]["shots"]
    exemplars = [f"{e['q']}\n{e['a']}" for e in ex[:shots]] if setting != "zs_cot" else []
    zs = f" {_triggers(setting)}" if setting == "zs_cot" else ""
    out = []
    for i, rec in enumerate(rows):
        query = f"{q_prefix}{rec['question']}\n{a_prefix.rstrip()}{zs}"
        out.append(EvalItem(
            "mgsm", lang, setting, str(rec.get("id", f"{lang}/{i}")), Prompt("", exemplars, query),
            gold=canonical_number(bd.parse_number(str(rec["answer"]))), options=[],
            meta={"language": lang, "question_prefix": q_prefix},
        ))
    return out
