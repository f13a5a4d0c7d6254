"""Answer extraction and correctness, applied to stored raw generations so runs can be re-scored.

Nothing here relies on newlines: the T5 tokenizer has no newline piece, so a model's continuation
into the next few-shot example is cut at the next "Q:" (or the language's question prefix) too.
An unparseable output extracts to None; it is wrong and counted as "unparsed" by scores.py.

These are the flexible readers (the headline score); strict.py reads only the exemplars' format.

Answer statements (MMLU, BBH, MGSM) are one closed cue family, "[the|my|our] [qualifier ...]
NOUN VERB" with qualifiers correct/best/final/right/true/only/most likely/..., nouns answer (and
option/choice for multiple choice) and verbs is/would be/should be/must be/will be/=/":" —
"The correct answer is C.", "Answer: (B)", "so the best answer is (C)". A cue inside a clause
opened by if/whether/what/which/suppose/assume/unless is a hypothesis or a question, not a claim.
The LAST claim whose answer parses wins ("The answer is not (A) ... So the answer is (B)." ->
(B)); continuations are cut at the next question first. Emphasis and box wrappers ("**(C)**",
"$\\boxed{C}$") are removed before reading.

- MMLU: after a cue, "(X)", a bare "X" followed by anything ("C because ..."), "option C" or an
  option's text; without a cue a direct answer is its first "(X)" (also a bare "B"/"B."/"b)", or
  an exact choice text); CoT without a cue is unparsed.
- BBH: after a cue, the span up to the sentence end must open with the answer (a "not ..." span is
  none); direct without a cue, the first answer-looking span. Spans are normalized by subtask
  kind: "(X)" for multiple choice (also "X", "(x)" or the option's text), the canonical label for
  label tasks (True/False, Yes/No, valid/invalid, yes/no), whitespace-collapsed text for free form
  (cut before ", " / " because " / " since ").
- TyDiQA: the answer span, SQuAD-style normalization (lowercase, Unicode punctuation removed,
  English articles removed as the SQuAD script does for every language, whitespace collapsed —
  non-ASCII letters are kept), EM and token F1, max over gold answers.
- MGSM: the continuation normalized (numbers.py: LaTeX, markdown, native/full-width digits, group
  separators), then the number of the last claim (the language's answer phrases of
  benchmarks.yaml, or the cue family) that reads surely; claims none of which reads surely are
  unparsed; with no claim at all, the last number if it reads surely. "2,125" -> 2125, "11.0" ->
  11, "80.000" read as thousands only in languages that write it so (de, es), "1 250" only in fr
  and ru, "2,125" unparsed where the comma is the decimal mark.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from flan_nb.eval import benchmark_schema as bd
from flan_nb.eval import numbers as nums
from flan_nb.eval.numbers import canonical_number, parse_number

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
# The answer-cue grammar (MMLU, BBH, MGSM)

# One closed family of answer statements: "[so] [the|my|our] [qualifier ...] NOUN VERB", e.g.
# "the answer is", "The correct answer is", "the best option would be", "Final answer:", "Answer:".
# MMLU's and BBH's CoT prompts teach "the answer is X."; Flan's CoT targets also end "The answer:
# X" / "The final answer: X"; chat-tuned models add the qualifiers and "Answer: X".
CUE_QUALIFIERS = ("correct", "best", "final", "right", "true", "only", "most likely",
                  "most appropriate", "most accurate")
CUE_NOUNS = ("answer", "option", "choice")
CUE_VERBS = ("is", "would be", "should be", "must be", "will be", "=", ":")
# a statement inside a clause opened by one of these is a hypothesis or a question, not a claim
_NOT_A_CLAIM = re.compile(r"\b(?:if|whether|what|which|suppose|supposing|assume|assuming|unless)\b",
                          re.I)
_CLAUSE_START = re.compile(r"[.!?;,\n]")


def _words(items: Iterable[str]) -> str:
    return "|".join(r"\s+".join(map(re.escape, w.split())) for w in items)


def answer_cue(nouns: tuple[str, ...] = CUE_NOUNS) -> re.Pattern[str]:
    """The regex of the answer-cue family for the given nouns (the whole cue, trailing space and
    an optional colon included, so the answer starts at match.end())."""
    return _cue_regex(nouns)


@functools.cache
def _cue_regex(nouns: tuple[str, ...]) -> re.Pattern[str]:
    verbs = "|".join(r"\s+".join(map(re.escape, v.split())) for v in CUE_VERBS)
    return re.compile(
        rf"\b(?:(?:the|my|our)\s+)?(?:(?:{_words(CUE_QUALIFIERS)})\s+)*(?:{_words(nouns)})"
        rf"\s*(?:{verbs})\s*:?\s*", re.I)


def is_claim(text: str, start: int) -> bool:
    """False when the cue at `start` sits in an "if ..." / "whether ..." / "what ..." clause."""
    clause = text[:start]
    cut = max((m.end() for m in _CLAUSE_START.finditer(clause)), default=0)
    return not _NOT_A_CLAIM.search(clause[cut:])


def answer_statements(text: str, nouns: tuple[str, ...] = CUE_NOUNS) -> list[re.Match[str]]:
    """Every answer cue of `text` that makes a claim, in order (the last one that parses wins)."""
    return [m for m in answer_cue(nouns).finditer(text) if is_claim(text, m.start())]


_WRAPPERS = (
    (re.compile(r"\\(?:boxed|fbox|text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}"), r"\1"),
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),
    (re.compile(r"\$\s*([^$]{1,40}?)\s*\$"), r"\1"),
)


def unwrap(text: str) -> str:
    """Emphasis and box wrappers removed: "**(C)**", "$\\boxed{C}$" -> "(C)", "C"."""
    for pattern, repl in _WRAPPERS:
        text = pattern.sub(repl, text)
    return text


# ---------------------------------------------------------------------------------------------
# MMLU

_PAREN_LETTER = re.compile(r"\(([A-Za-z])\)")
_LEAD_IN = re.compile(r"(?:option|choice|letter)\s+|[\"'“‘]+", re.I)


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


def letter_after_cue(rest: str, letters: str) -> str | None:
    """The option letter an answer statement gives: "(C)", "C", "C because ...", "option (C)";
    None for "not (A)", "a bit", "I think ..." and letters outside `letters`."""
    rest = rest.lstrip()
    while (m := _LEAD_IN.match(rest)) and m.end():
        rest = rest[m.end():].lstrip()
    got = _letter_at_start(rest, letters)
    if got is None:
        m = re.match(r"([A-Z])(?![\w'’])", rest)
        if m and m.group(1) in letters and not re.match(r"I\s+[a-z]", rest):
            got = m.group(1)
    return got


def _choice_text(span: str, choices: list[str] | None, letters: str) -> str | None:
    span = _strip_period(span).casefold()
    hits = [k for k, c in enumerate(choices or []) if _strip_period(str(c)).casefold() == span]
    return letters[hits[0]] if len(hits) == 1 else None


def mmlu_letter(raw: str, *, cot: bool, choices: list[str] | None = None) -> str | None:
    """The answer letter A-D of an MMLU generation, or None (flexible reader).

    The last answer statement (answer_statements) that names a letter or an option's text wins;
    without one, a direct answer is its first "(X)", a bare opening letter or an option's text."""
    text = unwrap(cut_continuation(raw))
    for m in reversed(answer_statements(text)):
        rest = text[m.end():]
        got = letter_after_cue(rest, "ABCD")
        if got is None:
            end = _SENTENCE_END.search(rest)
            got = _choice_text(rest[: end.start()] if end else rest, choices, "ABCD")
        if got is not None:
            return got
    if cot:
        return None
    for pm in _PAREN_LETTER.finditer(text):
        if pm.group(1).upper() in "ABCD":
            return pm.group(1).upper()
    return _letter_at_start(text, "ABCD") or _choice_text(text, choices, "ABCD")


# ---------------------------------------------------------------------------------------------
# BBH

_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n")
# a free-form answer ends where a reason starts: "So the answer is 7 because ..."
_REASON = re.compile(r",\s|\s+(?:because|since)\s", re.I)


def bbh_normalize(span: str, kind: str, *, labels: list[str] | None = None,
                  option_texts: Mapping[str, str] | None = None,
                  anchored: bool = False) -> str | None:
    """Map an answer span to the form of BBH targets for the subtask kind.

    anchored: the span follows an answer cue, so the answer must open it ("(B) because ...",
    "no, since ..."); "not (A)" is no answer. Unanchored (a direct answer without a cue), the
    first "(X)" / label word anywhere in the span is taken."""
    span = _strip_period(span)
    if anchored:
        span = span.strip("\"'“”‘’ ")
        if re.match(r"not\b", span, re.I):
            return None
    if not span:
        return None
    if kind == "multiple_choice":
        m = _PAREN_LETTER.match(span) if anchored else _PAREN_LETTER.search(span)
        letter = m.group(1).upper() if m else None
        if letter is None:
            letter = (letter_after_cue(span, string.ascii_uppercase) if anchored
                      else _letter_at_start(span, string.ascii_uppercase))
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
        for w in words[:1] if anchored else words:
            if w.casefold() in lookup:
                return lookup[w.casefold()]
        return None
    if anchored:
        span = _REASON.split(span, 1)[0]
    return " ".join(span.split()) or None


def bbh_answer(raw: str, *, cot: bool, kind: str, labels: list[str] | None = None,
               option_texts: Mapping[str, str] | None = None) -> str | None:
    """The answer of a BBH generation in the form of the subtask's targets, or None (flexible).

    The last answer statement whose span normalizes wins; a direct answer without one is read
    from its first sentence (then, for closed kinds, from the whole text)."""
    text = unwrap(cut_continuation(raw))
    nouns = CUE_NOUNS if kind == "multiple_choice" else ("answer",)
    for m in reversed(answer_statements(text, nouns)):
        rest = text[m.end():]
        end = _SENTENCE_END.search(rest)
        got = bbh_normalize(rest[: end.start()] if end else rest, kind, labels=labels,
                            option_texts=option_texts, anchored=True)
        if got is not None:
            return got
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

def mgsm_number(raw: str, lang: str = "en", question_prefix: str = "") -> str | None:
    """The answer number of an MGSM generation as canonical_number text, or None (flexible).

    The continuation is normalized (numbers.normalize_numbers), then the last answer statement
    (the language's answer phrases of benchmarks.yaml, or the English cue family) followed by a
    number wins if that number reads surely. Statements that exist but none of which reads surely
    give None; only a text without any answer statement falls back to its last number."""
    s = bd.settings()["mgsm"]
    text = nums.normalize_numbers(cut_continuation(raw, mgsm_markers(lang, question_prefix)), lang)
    # the phrase must be followed by the number itself: Telugu's answer prefix "దశలవారీగా
    # సమాధానం:" contains the answer word too, followed by the reasoning
    gap = r"[\s:：—=$€£¥₹]*(" + nums.NUMBER.pattern + ")"
    phrases = "|".join(re.escape(p) for p in s["answer_phrases"].get(lang, []))
    found = [m for m in re.finditer(f"(?:{phrases})" + gap, text, re.I) if is_claim(text, m.start())]
    found += [m for m in _cue_number_regex(gap).finditer(text) if is_claim(text, m.start())]
    found.sort(key=lambda m: m.start())
    # a later answer statement that names no number ("The answer is twelve.") is the last
    # statement: the reading is not sure, never an earlier number of the text
    worded = [m for m in _CUE_WORD.finditer(text) if is_claim(text, m.start())]
    if worded and (not found or worded[-1].start() > found[-1].start()):
        return None
    for m in reversed(found):
        value = nums.sure_number_at(text, m, lang, group=1)
        if value is not None:
            return nums.canonical_number(_result_of(text, m, value, lang))
    if found:
        return None
    every = list(nums.NUMBER.finditer(text))
    last = every[-1] if every else None
    value = nums.sure_number_at(text, last, lang) if last else None
    return None if value is None else nums.canonical_number(value)


# the English cue family followed by a word, not a number: "The answer is twelve", "Answer: none"
# (a few fillers such as "therefore" may stand between a cue and its number)
_CUE_WORD = re.compile(answer_cue(("answer",)).pattern
                       + r"[\s:]*(?!(?:therefore|thus|so|then|just|simply|exactly|about|"
                       r"approximately|around|now|clearly|indeed)\b)[^\W\d_]", re.I)


def _result_of(text: str, m: re.Match[str], value: float, lang: str) -> float:
    """The result of an expression written after the cue ("The answer is 12 - 3 = 9.": 9): the
    last number after an "=" in the same sentence, when that one reads surely."""
    chain = re.match(r"(?:\s*[-+*/×x÷]\s*" + nums.NUMBER.pattern + r")+\s*=\s*("
                     + nums.NUMBER.pattern + ")", text[m.end(1):])
    if chain is None:
        return value
    result = nums.parse_number(chain.group(1), lang)
    return value if result is None else result


@functools.cache
def _cue_number_regex(gap: str) -> re.Pattern[str]:
    return re.compile(answer_cue(("answer",)).pattern + gap, re.I)


# ---------------------------------------------------------------------------------------------
# Dispatch


def _is_cot(setting: str) -> bool:
    return setting in COT_SETTINGS


def bbh_kind_and_labels(item: Any) -> tuple[str, list[str] | None]:
    """(kind, labels) of a BBH item or stored row: from its meta/options, else benchmarks.yaml."""
    meta = _field(item, "meta", {}) or {}
    subtask = _field(item, "subtask")
    info = bd.bbh_subtask_info(subtask) if subtask in bd.settings()["bbh"]["subtasks"] else {}
    kind = meta.get("kind") or info.get("kind", "free_form")
    labels = [o for o in (_field(item, "options") or []) if not re.fullmatch(r"\([A-Z]\)", o)]
    return kind, (labels or info.get("labels")) or None


def mgsm_language(item: Any) -> tuple[str, str]:
    """(language code, question prefix or "") of an MGSM item or stored row."""
    meta = _field(item, "meta", {}) or {}
    return meta.get("language") or _field(item, "subtask") or "en", meta.get("question_prefix", "")


def mgsm_markers(lang: str, question_prefix: str = "") -> list[str]:
    """Where an MGSM continuation starts the next question (its own and the English prefix)."""
    s = bd.settings()["mgsm"]
    q_prefix = (question_prefix or s["question_prefix"].get(lang, "")).strip()
    markers = [q_prefix] if q_prefix else []
    if lang != "en":
        markers.append(s["question_prefix"]["en"].strip())
    return markers


def extract(benchmark: str, setting: str, raw: str, item: Any) -> Any:
    """The answer in the canonical form of the item's gold, or None if none can be read."""
    if raw is None:
        return None
    if benchmark == "mmlu":
        meta = _field(item, "meta", {}) or {}
        return mmlu_letter(raw, cot=_is_cot(setting), choices=meta.get("choices"))
    if benchmark == "bbh":
        kind, labels = bbh_kind_and_labels(item)
        return bbh_answer(raw, cot=_is_cot(setting), kind=kind, labels=labels,
                          option_texts=_bbh_option_texts(item))
    if benchmark == "tydiqa":
        return tydiqa_answer(raw)
    if benchmark == "mgsm":
        lang, prefix = mgsm_language(item)
        return mgsm_number(raw, lang, prefix)
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
