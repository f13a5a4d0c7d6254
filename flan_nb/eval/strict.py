"""Strict answer reading: only the answer format the prompt's exemplars teach.

The flexible readers of answers.py are the headline; the strict reader tells how much of a score
depends on reading answers the exemplars did not show (as lm-evaluation-harness's "strict-match"
beside "flexible-extract"; behaviour reference only, the rules are ours). Strict settings are the
few-shot ones, whose exemplars show a format; zero-shot settings and TyDiQA (whose one reader is
already the exemplar's "Answer: span") have no strict score.

Formats (prompts.py builds the exemplars):
- MMLU direct "A: (X)": the continuation's first line is exactly "(X)", X in A-D.
- MMLU CoT "... The answer is (X).": the last "The answer is (X)" (case as taught).
- BBH direct "A: {target}": the first line is exactly a target-shaped answer ("(X)" for multiple
  choice, a label as the subtask writes it, any text for free form).
- BBH CoT "... So the answer is {target}.": the last "So the answer is ..." up to the sentence end,
  target-shaped as above.
- MGSM CoT "... {answer phrase} N.": the last of the language's own answer phrases followed by a
  plain number (native digits read; no LaTeX, markdown or foreign group separators).
"""

from __future__ import annotations

import re
from typing import Any

from flan_nb.eval import answers as A
from flan_nb.eval import benchmark_schema as bd
from flan_nb.eval import numbers as nums

__all__ = ["STRICT_SETTINGS", "has_strict", "extract_strict"]

STRICT_SETTINGS: dict[str, tuple[str, ...]] = {
    "mmlu": ("direct", "cot", "cot_sc"),
    "bbh": ("direct", "cot", "cot_sc"),
    "mgsm": ("cot", "cot_sc"),
}

_MMLU_COT = re.compile(r"The answer is \(([A-D])\)")
_BBH_COT = re.compile(r"So the answer is (.+?)(?:\.(?=\s|$)|\n|$)")


def has_strict(benchmark: str, setting: str) -> bool:
    """Whether the setting's exemplars teach an answer format (so a strict score exists)."""
    return setting in STRICT_SETTINGS.get(benchmark, ())


def _first_line(raw: str) -> str:
    text = A.cut_continuation(raw).strip()
    return text.split("\n", 1)[0].strip()


def _bbh_target_shaped(span: str, item: Any) -> str | None:
    span = " ".join(span.split())
    if not span:
        return None
    kind, labels = A.bbh_kind_and_labels(item)
    if kind == "multiple_choice":
        return span if re.fullmatch(r"\([A-Z]\)", span) else None
    if kind == "labels" and labels:
        return span if span in labels else None
    return span


def _mgsm_strict(raw: str, item: Any) -> str | None:
    lang, prefix = A.mgsm_language(item)
    text = nums.ascii_digits(A.cut_continuation(raw, A.mgsm_markers(lang, prefix)))
    phrases = "|".join(re.escape(p) for p in bd.settings()["mgsm"]["answer_phrases"].get(lang, []))
    hits = list(re.finditer(f"(?:{phrases}) ?(-?\\d+(?:[.,]\\d+)*)(?![\\d{{'’_\\\\]|[.,]\\d)", text)) if phrases else []
    if not hits:
        return None
    value = nums.parse_number(hits[-1].group(1), lang)
    return None if value is None else nums.canonical_number(value)


def extract_strict(benchmark: str, setting: str, raw: str | None, item: Any) -> str | None:
    """The answer in the canonical form of the gold when the generation uses the exemplars' answer
    format, else None. Raises ValueError for a benchmark/setting without a strict reader."""
    if not has_strict(benchmark, setting):
        raise ValueError(f"{benchmark}/{setting} has no strict reader (exemplar format); "
                         f"strict settings: {STRICT_SETTINGS}")
    if raw is None:
        return None
    if benchmark == "mmlu":
        if setting == "direct":
            m = re.fullmatch(r"\(([A-D])\)", _first_line(raw))
            return m.group(1) if m else None
        hits = _MMLU_COT.findall(A.cut_continuation(raw))
        return hits[-1] if hits else None
    if benchmark == "bbh":
        if setting == "direct":
            return _bbh_target_shaped(_first_line(raw), item)
        hits = _BBH_COT.findall(A.cut_continuation(raw))
        return _bbh_target_shaped(hits[-1], item) if hits else None
    return _mgsm_strict(raw, item)
