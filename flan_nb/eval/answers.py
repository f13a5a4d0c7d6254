"""Answer extraction and correctness, applied to stored raw generations so runs can be re-scored.

Nothing here relies on newlines: the T5 tokenizer has no newline piece, so a model's continuation
into the next few-shot example is cut at the next "Q:" (or the language's question prefix) too.
An unparseable output extracts to None; it is wrong and counted as "unparsed" by scores.py.

- MMLU: the first "(X)" of a direct answer (also a bare "B"/"B."/"b)", or an exact choice text);
  CoT: the letter after "the answer is" / "The answer:" / "The final answer:" (first occurrence).
- BBH: CoT the span after "the answer is" up to the sentence end, trailing period stripped;
  direct the first answer-looking span. Spans are normalized by subtask kind: "(X)" for multiple
  choice (also "X", "(x)" or the option's text), the canonical label for label tasks
  (True/False, Yes/No, valid/invalid, yes/no), whitespace-collapsed text for free-form tasks.
- TyDiQA: the answer span, SQuAD-style normalization (lowercase, Unicode punctuation removed,
  English articles removed as the SQuAD script does for every language, whitespace collapsed —
  non-ASCII letters are kept), EM and token F1, max over gold answers.
- MGSM: the number after the language's answer phrase (benchmarks.yaml, plus "The answer is"),
  else the last number; "2,125" -> 2125, "11.0" -> 11, native digits read, "80.000" read as
  thousands only in languages that write it so (de, es), "1 250" only in fr and ru.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from flan_nb.eval import benchmark_schema as bd

__all__ = ["extract", "is_correct", "score", "score_extracted", "majority_vote", "normalize_answer",
           "exact_match", "f1_score", "parse_number", "canonical_number", "mmlu_letter", "bbh_answer",
           "mgsm_number", "COT_SETTINGS"]

# The chain-of-thought settings, in one place: the prompt's trigger, how an answer is read
# (after an answer phrase only) and the generation budget must agree on them.
COT_SETTINGS = ("cot", "zs_cot", "cot_sc")


def _field(item: Any, name: str, default: Any = None) -> Any:
    if isinstance(item, Mapping):
        return item.get(name, default)
    return getattr(item, name, default)


_NEXT_QUESTION = re.compile(r"(?:^|\s)Q:\s")


def cut_continuation(raw: str, markers: Iterable[str] = ()) -> str:
    """The generation up to where the model starts a new few-shot example."""
    text = raw
    m = _NEXT_QUESTION.search(text, 1)
    if m:
        text = text[: m.start()]
    for marker in markers:
        idx = text.find(marker, 1)
        if idx > 0:
            text = text[:idx]
    return text


def _strip_period(text: str) -> str:
    text = text.strip()
    while text.endswith("."):
        text = text[:-1].rstrip()
    return text


# ---------------------------------------------------------------------------------------------
# MMLU

# MMLU's and BBH's CoT prompts end "the answer is X."; Flan's CoT finetuning targets also end
# "The answer: X" / "The final answer: X", which a finetuned model may prefer.
_ANSWER_PHRASE = re.compile(r"the (?:final )?answer(?: is|:)\s*", re.I)
_PAREN_LETTER = re.compile(r"\(([A-Za-z])\)")


def _letter_at_start(text: str, letters: str) -> str | None:
    """A bare option letter opening the text: "B", "B.", "B)", "(b)", "b." — not the article "a"."""
    text = text.strip()
    m = _PAREN_LETTER.match(text)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    m = re.match(r"([A-Z])(?:$|[.):,]|\s*$)", text)
    if m and m.group(1) in letters:
        return m.group(1)
    m = re.match(r"([a-z])(?:$|[.):])", text)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    return None


def mmlu_letter(raw: str, *, cot: bool, choices: list[str] | None = None) -> str | None:
    """The answer letter A-D of an MMLU generation, or None."""
    text = cut_continuation(raw)
    m = _ANSWER_PHRASE.search(text)
    if m:
        return _letter_at_start(text[m.end():], "ABCD")
    if cot:
        return None
    for pm in _PAREN_LETTER.finditer(text):
        if pm.group(1).upper() in "ABCD":
            return pm.group(1).upper()
    letter = _letter_at_start(text, "ABCD")
    if letter is None and choices:
        # a model may answer with the option text itself
        span = _strip_period(text).casefold()
        hits = [k for k, c in enumerate(choices) if _strip_period(str(c)).casefold() == span]
        if len(hits) == 1:
            letter = "ABCD"[hits[0]]
    return letter


# ---------------------------------------------------------------------------------------------
# BBH

_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n")


def bbh_normalize(span: str, kind: str, *, labels: list[str] | None = None,
                  option_texts: Mapping[str, str] | None = None) -> str | None:
    """Map an answer span to the form of BBH targets for the subtask kind."""
    span = _strip_period(span)
    if not span:
        return None
    if kind == "multiple_choice":
        m = _PAREN_LETTER.search(span)
        if m:
            return f"({m.group(1).upper()})"
        letter = _letter_at_start(span, string.ascii_uppercase)
        if letter:
            return f"({letter})"
        if option_texts:
            hits = [k for k, t in option_texts.items() if _strip_period(t).casefold() == span.casefold()]
            if len(hits) == 1:
                return f"({hits[0]})"
        return None
    if kind == "labels" and labels:
        lookup = {lab.casefold(): lab for lab in labels}
        words = re.findall(r"[A-Za-z]+", span)
        for w in words:
            if w.casefold() in lookup:
                return lookup[w.casefold()]
        return None
    return " ".join(span.split())


def bbh_answer(raw: str, *, cot: bool, kind: str, labels: list[str] | None = None,
               option_texts: Mapping[str, str] | None = None) -> str | None:
    text = cut_continuation(raw)
    m = _ANSWER_PHRASE.search(text)
    if m:
        rest = text[m.end():]
        end = _SENTENCE_END.search(rest)
        span = rest[: end.start()] if end else rest
        return bbh_normalize(span, kind, labels=labels, option_texts=option_texts)
    if cot:
        return None
    # direct: the first answer-looking span — the first line / sentence of the generation
    text = text.strip()
    end = _SENTENCE_END.search(text)
    first = text[: end.start()] if end else text
    got = bbh_normalize(first, kind, labels=labels, option_texts=option_texts)
    if got is None and kind != "free_form":
        got = bbh_normalize(text, kind, labels=labels, option_texts=option_texts)
    return got


def _bbh_option_texts(item: Any) -> dict[str, str]:
    meta = _field(item, "meta", {}) or {}
    if meta.get("option_texts"):
        return dict(meta["option_texts"])
    prompt = _field(item, "prompt")
    query = getattr(prompt, "query", "") if prompt is not None else ""
    return bd.bbh_option_texts(query)


# ---------------------------------------------------------------------------------------------
# TyDiQA (SQuAD-style)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(pred: str | None, golds: Iterable[str]) -> bool:
    if pred is None:
        return False
    p = normalize_answer(pred)
    return any(p == normalize_answer(g) for g in golds)


def _f1(pred: str, gold: str) -> float:
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def f1_score(pred: str | None, golds: Iterable[str]) -> float:
    if pred is None:
        return 0.0
    return max((_f1(pred, g) for g in golds), default=0.0)


def tydiqa_answer(raw: str) -> str | None:
    lab = bd.settings()["tydiqa"]["labels"]
    text = raw.strip()
    if text.startswith(lab["answer"]):  # a model repeating the cue
        text = text[len(lab["answer"]):]
    text = cut_continuation(text, (lab["passage"], lab["question"], lab["answer"]))
    text = text.strip().split("\n")[0].strip()
    return text or None


# ---------------------------------------------------------------------------------------------
# MGSM

_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")


def _ascii_digits(text: str) -> str:
    out = []
    for ch in text:
        if ch.isdigit() and not ("0" <= ch <= "9"):
            try:
                ch = str(unicodedata.decimal(ch))
            except ValueError:
                pass
        out.append(ch)
    return "".join(out).replace("\u2212", "-")


def parse_number(token: str, lang: str = "en") -> float | None:
    """One numeric token as a float, reading thousands separators and decimal marks."""
    token = token.strip()
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", token):
        return float(token.replace(",", ""))
    if lang in bd.settings()["mgsm"].get("dot_thousands", []) and re.fullmatch(
        r"-?\d{1,3}(?:\.\d{3})+(?:,\d+)?", token
    ):
        return float(token.replace(".", "").replace(",", "."))
    if re.fullmatch(r"-?\d+,\d+", token):  # a decimal comma
        return float(token.replace(",", "."))
    try:
        return float(token)
    except ValueError:
        return None


def canonical_number(value: float) -> str:
    """The form of MGSM golds and extracted answers: "18" for 18.0, else the float's repr."""
    return str(int(value)) if value == int(value) else repr(value)


def mgsm_number(raw: str, lang: str = "en", question_prefix: str = "") -> str | None:
    s = bd.settings()["mgsm"]
    q_prefix = (question_prefix or s["question_prefix"].get(lang, "")).strip()
    markers = [q_prefix] if q_prefix else []
    if lang != "en":
        markers.append(s["question_prefix"]["en"].strip())
    text = _ascii_digits(cut_continuation(raw, markers))
    # digit groups split by (narrow) no-break spaces, or by plain spaces where the locale does so
    # ("1 250" in fr/ru), are one number
    gap = "[ \u00a0\u202f]" if lang in s.get("space_thousands", []) else "[\u00a0\u202f]"
    text = re.sub(rf"(?<=\d){gap}(?=\d{{3}}(?!\d))", "", text)
    phrases = [*s["answer_phrases"].get(lang, []), "The answer is"]
    # the phrase must be followed by the number itself: Telugu's answer prefix "దశలవారీగా
    # సమాధానం:" contains the answer word too, followed by the reasoning
    best = None
    for phrase in phrases:
        m = re.search(re.escape(phrase) + r"[\s:：—$€£¥₹]*(" + _NUMBER.pattern + ")", text, re.I)
        if m and (best is None or m.start() < best.start()):
            best = m
    if best is not None:
        value = parse_number(best.group(1), lang)
        if value is not None:
            return canonical_number(value)
    numbers = _NUMBER.findall(text)
    for token in reversed(numbers):
        value = parse_number(token, lang)
        if value is not None:
            return canonical_number(value)
    return None


# ---------------------------------------------------------------------------------------------
# Dispatch


def _is_cot(setting: str) -> bool:
    return setting in COT_SETTINGS


def extract(benchmark: str, setting: str, raw: str, item: Any) -> Any:
    """The answer in the canonical form of the item's gold, or None if none can be read."""
    if raw is None:
        return None
    if benchmark == "mmlu":
        meta = _field(item, "meta", {}) or {}
        return mmlu_letter(raw, cot=_is_cot(setting), choices=meta.get("choices"))
    if benchmark == "bbh":
        meta = _field(item, "meta", {}) or {}
        subtask = _field(item, "subtask")
        info = bd.bbh_subtask_info(subtask) if subtask in bd.settings()["bbh"]["subtasks"] else {}
        kind = meta.get("kind") or info.get("kind", "free_form")
        labels = [o for o in (_field(item, "options") or []) if not re.fullmatch(r"\([A-Z]\)", o)]
        labels = labels or info.get("labels")
        return bbh_answer(raw, cot=_is_cot(setting), kind=kind, labels=labels or None,
                          option_texts=_bbh_option_texts(item))
    if benchmark == "tydiqa":
        return tydiqa_answer(raw)
    if benchmark == "mgsm":
        meta = _field(item, "meta", {}) or {}
        return mgsm_number(raw, meta.get("language") or _field(item, "subtask") or "en",
                           meta.get("question_prefix", ""))
    raise ValueError(f"unknown benchmark {benchmark!r}")


def is_correct(benchmark: str, setting: str, pred: Any, item: Any) -> bool:
    gold = _field(item, "gold")
    if pred is None:
        return False
    if benchmark == "tydiqa":
        return exact_match(pred, gold)
    if benchmark == "mgsm":
        try:
            return abs(float(pred) - bd.parse_number(str(gold))) < 1e-6
        except ValueError:
            return False
    if benchmark == "bbh":
        return " ".join(str(pred).split()) == " ".join(_strip_period(str(gold)).split())
    return str(pred) == str(gold)


def score(benchmark: str, setting: str, raw: str, item: Any) -> dict[str, Any]:
    """{"extracted", "correct"} (+ "f1" for TyDiQA) for one raw generation."""
    return score_extracted(benchmark, setting, extract(benchmark, setting, raw, item), item)


def score_extracted(benchmark: str, setting: str, pred: Any, item: Any) -> dict[str, Any]:
    """`score` of an answer already extracted (e.g. the majority vote of SC samples)."""
    out: dict[str, Any] = {"extracted": pred, "correct": is_correct(benchmark, setting, pred, item)}
    if benchmark == "tydiqa":
        out["f1"] = f1_score(pred, _field(item, "gold"))
    return out


def majority_vote(answers: Iterable[Any]) -> Any:
    """Self-consistency: the most frequent non-None answer; ties go to the earliest seen."""
    counts: Counter = Counter()
    first: dict[Any, int] = {}
    for i, a in enumerate(answers):
        if a is None:
            continue
        counts[a] += 1
        first.setdefault(a, i)
    if not counts:
        return None
    return max(counts, key=lambda a: (counts[a], -first[a]))
