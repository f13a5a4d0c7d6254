"""Numbers as models write them, for MGSM (and GSM8K-style) answers.

A continuation is first normalized, then parsed. Normalization (`normalize_numbers`) undoes the
ways models dress up a number: native and full-width digits, the Unicode minus, LaTeX (`1{,}000`,
`1\\,000`, `\\boxed{12}`, `\\text{..}`, `\\$`, `\\(..\\)`), markdown wrappers (`**12**`, `` `12` ``),
and group separators other than the comma and the period (no-break, narrow and thin spaces,
apostrophes as in Swiss "1'000", underscores as in "1_000"). Plain spaces group digits only in
languages whose locale writes "1 250" (benchmarks.yaml `space_thousands`).

Parsing (`parse_number`) is sure or gives up: "2,125" is 2125 where the comma groups thousands, but
in a language whose decimal mark is the comma (benchmarks.yaml `dot_thousands` and
`space_thousands`: de, es, fr, ru) a single comma before exactly three digits may be either, so it
reads as None (unparsed), never as a different number. Indian grouping ("1,00,000") and several
dot groups ("1.234.567") are unambiguous everywhere; one dot group ("80.000") is thousands only
where the locale writes it so (de, es). A number directly followed by "/" or ":" and digits (a
fraction, a time) or by a plain space and exactly three digits where spaces do not group digits
("5 250" in English) is not sure either.

Behaviour reference: lm-evaluation-harness's GSM8K "flexible-extract" filter (last number) and
the MGSM exemplars' "The answer is N." endings (Shi et al. 2022); the code and rules are ours.
"""

from __future__ import annotations

import re
import unicodedata

from flan_nb.eval import benchmark_schema as bd

__all__ = ["normalize_numbers", "parse_number", "canonical_number", "NUMBER", "sure_number_at",
           "comma_decimal", "ascii_digits"]

NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")

# group separators that never mean anything else between a digit and three more digits
_GROUP_MARKS = "\u00a0\u202f\u2009\u2007'\u2019\u02bc_"
_LATEX_SPACE = re.compile(r"(?<=\d)(?:\\[,;:! ]|\\thinspace\s*|~)(?=\d)")
_LATEX_UNWRAP = re.compile(r"\\(?:boxed|fbox|text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_MD_WRAPPED = re.compile(r"(\*{1,2}|_{1,2}|`)([-$€£¥₹]?-?\d[\d.,]*%?)\1")


def ascii_digits(text: str) -> str:
    """Every decimal digit (Bengali, Devanagari, full-width, ...) as 0-9; U+2212 as "-"."""
    out = []
    for ch in text:
        if ch.isdigit() and not ("0" <= ch <= "9"):
            try:
                ch = str(unicodedata.decimal(ch))
            except ValueError:
                pass
        out.append(ch)
    return "".join(out).replace("\u2212", "-").replace("\uff0d", "-")


def comma_decimal(lang: str) -> bool:
    """True where the locale's decimal mark is the comma (so "2,125" may be 2.125)."""
    s = bd.settings()["mgsm"]
    return lang in s.get("dot_thousands", []) or lang in s.get("space_thousands", [])


def normalize_numbers(text: str, lang: str = "en") -> str:
    """`text` with numbers written plainly: ASCII digits, "," and "." the only marks inside them."""
    text = ascii_digits(text)
    text = text.replace("{,}", ",").replace("{.}", ".")
    text = _LATEX_SPACE.sub("\u2009", text)
    for _ in range(2):  # \boxed{\text{12}}
        text = _LATEX_UNWRAP.sub(r"\1", text)
    text = re.sub(r"\\[()\[\]]", " ", text).replace("\\$", "$").replace("$", " ")
    text = _MD_WRAPPED.sub(r"\2", text)
    gap = f"[ {_GROUP_MARKS}]" if lang in bd.settings()["mgsm"].get("space_thousands", []) \
        else f"[{_GROUP_MARKS}]"
    return re.sub(rf"(?<=\d){gap}(?=\d{{3}}(?!\d))", "", text)


def parse_number(token: str, lang: str = "en") -> float | None:
    """One numeric token as a float; None when it is not a number or its reading is not sure."""
    token = token.strip()
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", token):
        if comma_decimal(lang) and re.fullmatch(r"-?\d{1,3},\d{3}", token):
            return None  # 2,125 in German: 2.125, or an English-style 2125
        return float(token.replace(",", ""))
    if re.fullmatch(r"-?\d{1,2}(?:,\d{2})+,\d{3}(?:\.\d+)?", token):  # Indian 1,00,000
        return float(token.replace(",", ""))
    if re.fullmatch(r"-?\d{1,3}(?:\.\d{3}){2,}(?:,\d+)?", token) or (
        lang in bd.settings()["mgsm"].get("dot_thousands", [])
        and re.fullmatch(r"-?\d{1,3}(?:\.\d{3})+(?:,\d+)?", token)
    ):
        return float(token.replace(".", "").replace(",", "."))
    if re.fullmatch(r"-?\d+,\d+", token):
        # a decimal comma where the language writes one ("2,5"); elsewhere "1,23" is neither a
        # decimal nor a thousands group, so not sure
        return float(token.replace(",", ".")) if comma_decimal(lang) else None
    if re.fullmatch(r"-?\d+(?:\.\d+)?", token):
        return float(token)
    return None


def sure_number_at(text: str, m: re.Match[str], lang: str, group: int = 0) -> float | None:
    """The number of match `m` (its `group`) in normalized `text`, or None when its reading is
    not sure: a fraction or time ("12/5", "3:30"), or digit groups split by a plain space where
    the language does not group digits so ("5 250" in English)."""
    start, end = m.span(group)
    after, before = text[end:end + 5], text[max(0, start - 2):start]
    # a fraction or time ("12/5", "3:30"), a power ("10^3", "10**3", "1e3") or a magnitude
    # suffix ("1.5k", "2M"): the digits alone are not the number meant
    if re.match(r"[/:]\d|\^|\*\*|[eE][-+]?\d|[kKmMbB](?![A-Za-z])", after):
        return None
    if lang not in bd.settings()["mgsm"].get("space_thousands", []) and (
        re.match(r" \d{3}(?!\d)", after)
        or (before.endswith(" ") and before[:1].isdigit() and re.fullmatch(r"\d{3}", m.group(group)))
    ):
        return None
    return parse_number(m.group(group), lang)


def canonical_number(value: float) -> str:
    """The form of MGSM golds and extracted answers: "18" for 18.0, else the float's repr."""
    return str(int(value)) if value == int(value) else repr(value)
