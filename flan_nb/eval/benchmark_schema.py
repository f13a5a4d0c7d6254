"""What a loaded benchmark is (paper section 2.3): the settings in `resources/benchmarks.yaml`,
`BenchmarkData`, record validation shared by every source, BBH subtask facts (answer kind, options,
random baseline) and the parsers of the official chain-of-thought prompt files.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from flan_nb import config, yaml_io

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
    return yaml_io.load_file(resources.files("flan_nb").joinpath("resources/benchmarks.yaml"))


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


BAD_ITEM_POLICIES = ("raise", "skip")
# A byte that is not UTF-8, as decoded by errors="surrogateescape" (benchmark_files.read_text).
_ESCAPED = re.compile("[\udc80-\udcff]")
# Reader-level problem of one item (a CSV row with a missing column, a TSV line with 3 fields):
# validate() reports it with the item's location like any other bad item.
ERROR_KEY = "_error"


def bad_bytes(obj: Any) -> str | None:
    """'byte 0xff is not valid UTF-8' for the first escaped byte in any string of `obj`, else None."""
    if isinstance(obj, str):
        m = _ESCAPED.search(obj)
        return f"byte 0x{ord(m.group()) - 0xDC00:02x} is not valid UTF-8" if m else None
    values: Any = ([*obj.keys(), *obj.values()] if isinstance(obj, Mapping)
                   else obj if isinstance(obj, (list, tuple)) else ())
    return next((found for v in values if (found := bad_bytes(v))), None)


def _item_where(b: str, sub: str, i: int, rec: Any, locs: Sequence[str] | None) -> str:
    where = f"{b}/{sub} item {i}"
    if locs is not None and i < len(locs):
        return f"{locs[i]} ({where})"
    if isinstance(rec, Mapping) and "id" in rec:
        return f"{where} (id {rec['id']})"
    return where


class _BadItems:
    """The on_bad_rows policy for scored items: raise on the first, or skip and count them."""

    def __init__(self, policy: str) -> None:
        if policy not in BAD_ITEM_POLICIES:
            raise BenchmarkDataError(f"on_bad_rows must be one of {BAD_ITEM_POLICIES}, got {policy!r}")
        self.policy = policy
        self.messages: list[str] = []

    def keep(self, check: Any, rec: Any, where: str) -> bool:
        try:
            check(rec, where)
        except BenchmarkDataError as exc:
            if self.policy == "raise":
                raise
            self.messages.append(str(exc))
            return False
        return True


def _check_item(b: str) -> Any:
    def check(rec: Any, where: str) -> None:
        if isinstance(rec, Mapping) and rec.get(ERROR_KEY):
            raise BenchmarkDataError(f"{where}: {rec[ERROR_KEY]}")
        found = bad_bytes(rec)
        if found:
            raise BenchmarkDataError(f"{where}: {found}")
        _VALIDATORS[b](rec, where)
    return check


def validate(data: BenchmarkData, on_bad_rows: str = "raise") -> None:
    """Raise BenchmarkDataError naming the first bad item (file and line or JSON path when the
    reader recorded them in meta["item_where"]); record tolerated quirks in meta.

    on_bad_rows="skip" drops bad scored items instead and counts them in meta["bad_items"] (with
    the first 20 messages in meta["bad_item_examples"]); exemplars and prompt texts are always
    checked strictly, since skipping one would change every prompt of the subtask.
    """
    b = data.benchmark
    bad = _BadItems(on_bad_rows)
    where_of = data.meta.pop("item_where", None) or {}
    ex_where_of = data.meta.pop("exemplar_where", None) or {}
    if not data.items:
        raise BenchmarkDataError(f"{b}: no subtasks loaded")
    check = _check_item(b)
    for sub, rows in list(data.items.items()):
        if not rows:
            raise BenchmarkDataError(f"{b}/{sub}: no items")
        locs = where_of.get(sub)
        kept = [rec for i, rec in enumerate(rows) if bad.keep(check, rec, _item_where(b, sub, i, rec, locs))]
        if not kept:
            raise BenchmarkDataError(f"{b}/{sub}: all {len(rows)} items are malformed, e.g. "
                                     f"{bad.messages[-1]}")
        data.items[sub] = kept
    if b in _EXEMPLAR_CHECKS:
        missing, noun, ex_check = _EXEMPLAR_CHECKS[b]
        for sub in data.items:
            pool = data.exemplars.get(sub)
            if not pool:
                raise BenchmarkDataError(f"{b}/{sub}: {missing}")
            for i, rec in enumerate(pool):
                where = f"{b}/{sub} {noun} {i}"
                if ex_where_of.get(sub) is not None and i < len(ex_where_of[sub]):
                    where = f"{ex_where_of[sub][i]} ({where})"
                found = bad_bytes(rec) or (rec.get(ERROR_KEY) if isinstance(rec, Mapping) else None)
                if found:
                    raise BenchmarkDataError(f"{where}: {found}")
                ex_check(rec, where)
    elif b == "bbh":
        _validate_bbh_targets(data, bad, where_of)
    data.meta["bad_items"] = len(bad.messages)
    data.meta["bad_item_examples"] = bad.messages[:20]


def _validate_bbh_targets(data: BenchmarkData, bad: _BadItems, where_of: Mapping[str, Any]) -> None:
    quirks: list[str] = []
    for sub, rows in data.items.items():
        if sub not in data.exemplars:
            raise BenchmarkDataError(f"bbh/{sub}: no cot-prompt text for this subtask")
        info = bbh_info_for(data, sub)
        # items dropped by the first pass shift positions: name the item by its id here
        data.items[sub] = [rec for i, rec in enumerate(rows) if bad.keep(
            functools.partial(_check_bbh_target, info=info, quirk=f"{sub}/{i}", quirks=quirks),
            rec, _item_where("bbh", sub, i, rec, None))]
        if not data.items[sub]:
            raise BenchmarkDataError(f"bbh/{sub}: every item has a target outside its options")
    data.meta["bbh_targets_not_an_option"] = quirks


def _check_bbh_target(rec: Any, where: str, *, info: Mapping[str, Any], quirk: str,
                      quirks: list[str]) -> None:
    target = rec["target"].strip()
    m = re.fullmatch(r"\(([A-Z])\)", target)
    if m:
        opts = bbh_options(rec["input"])
        if m.group(1) not in opts:
            raise BenchmarkDataError(f"{where}: target {target} is not among the options "
                                     f"{['(' + o + ')' for o in opts]}")
    elif info["kind"] == "labels" and target not in info["labels"]:
        raise BenchmarkDataError(f"{where}: target {target!r} is not one of {info['labels']}")
    elif info["kind"] == "multiple_choice":
        # real BBH keeps a few of these (movie_recommendation, ruin_names); kept as is
        quirks.append(quirk)


def _validate_mmlu(rec: Any, where: str) -> None:
    _require(rec, ("question", "choices", "answer"), where)
    if not isinstance(rec["question"], str):
        raise BenchmarkDataError(f"{where}: `question` must be a string, got {type(rec['question']).__name__}")
    choices = rec["choices"]
    if (not isinstance(choices, Sequence) or isinstance(choices, str) or len(choices) != 4
            or not all(isinstance(c, str) for c in choices)):
        raise BenchmarkDataError(f"{where}: `choices` must be a list of 4 strings, got {choices!r}")
    ans = rec["answer"]
    if isinstance(ans, bool) or not isinstance(ans, int) or not 0 <= ans <= 3:
        raise BenchmarkDataError(
            f"{where}: `answer` {ans!r} is outside the options (an int 0-3 indexing `choices`)"
        )


def _validate_bbh(rec: Any, where: str) -> None:
    _require(rec, ("input", "target"), where)
    for key in ("input", "target"):
        if not isinstance(rec[key], str):
            raise BenchmarkDataError(f"{where}: `{key}` must be a string, got "
                                     f"{type(rec[key]).__name__} {rec[key]!r}")
    if not rec["target"].strip():
        raise BenchmarkDataError(f"{where}: empty `target`")


def _validate_tydiqa(rec: Any, where: str) -> None:
    _require(rec, ("id", "context", "question", "answers"), where)
    for key in ("context", "question"):
        if not isinstance(rec[key], str):
            raise BenchmarkDataError(f"{where}: `{key}` must be a string, got {type(rec[key]).__name__}")
    answers = rec["answers"]
    if isinstance(answers, str) or not answers or not all(isinstance(a, str) for a in answers):
        raise BenchmarkDataError(f"{where}: `answers` must be a non-empty list of str, got {answers!r}")


def _validate_mgsm(rec: Any, where: str) -> None:
    _require(rec, ("question", "answer"), where)
    if not isinstance(rec["question"], str):
        raise BenchmarkDataError(f"{where}: `question` must be a string, got {type(rec['question']).__name__}")
    try:
        parse_number(str(rec["answer"]))
    except ValueError as exc:
        raise BenchmarkDataError(f"{where}: `answer` {rec['answer']!r} is not a number") from exc


def _validate_mgsm_exemplar(rec: Any, where: str) -> None:
    _require(rec, ("q", "a"), where)
    if not isinstance(rec["q"], str) or not isinstance(rec["a"], str):
        raise BenchmarkDataError(f"{where}: `q` and `a` must be strings")


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
    extra: list[str] = []
    if name not in settings()["bbh"]["subtasks"] and name in data.exemplars:
        extra = parse_bbh_cot_prompt(data.exemplars[name], f"bbh cot-prompt {name}").answers
    given = (data.meta.get("subtask_info") or {}).get(name)
    return bbh_subtask_info(name, data.items.get(name, ()), extra, given)


def squad_records(doc: Any, where: str, locs: list[str] | None = None) -> list[dict[str, Any]]:
    """Flatten SQuAD-1.1-form JSON into TyDiQA records; `locs` (if given) receives each record's
    JSON path. A malformed question becomes a record validate() reports (or skips); a malformed
    structure above the questions is an error naming its path."""
    def items(node: Any, key: str, path: str) -> list[Any]:
        value = node.get(key, []) if isinstance(node, Mapping) else None
        if not isinstance(value, list):
            raise BenchmarkDataError(f"{where} {path}: expected a mapping with a list `{key}`")
        return value

    out = []
    for a, article in enumerate(items(doc, "data", "(top level)")):
        for p, para in enumerate(items(article, "paragraphs", f"data[{a}]")):
            for q, qa in enumerate(items(para, "qas", f"data[{a}].paragraphs[{p}]")):
                if locs is not None:
                    locs.append(f"{where} data[{a}].paragraphs[{p}].qas[{q}]")
                if not isinstance(qa, Mapping):
                    out.append(qa)
                    continue
                answers = qa.get("answers")
                if isinstance(answers, list):
                    answers = [x.get("text") if isinstance(x, Mapping) else x for x in answers]
                out.append({"id": qa.get("id"), "context": para.get("context"),
                            "question": qa.get("question"), "answers": answers})
    return out


TYDIQA_MIN_EXEMPLAR_CONTEXT = 150


def _usable_tydiqa(rec: Any) -> bool:
    """A record that passes validation: only those can be one-shot exemplars."""
    try:
        _validate_tydiqa(rec, "")
    except BenchmarkDataError:
        return False
    return bad_bytes(rec) is None


def _exemplar_pool(rows: Sequence[Mapping[str, Any]], k: int = 2) -> list[dict[str, Any]]:
    """The `k` shortest records (by context+question+answer, ties by id) among those whose context
    has at least 150 characters: short one-shot exemplars leave room for the scored passage in
    small context windows, and the floor skips table fragments such as "The Sun 1,447,959 -7%".
    Deterministic and seed-free."""
    def length(r: Mapping[str, Any]) -> int:
        return len(r["context"]) + len(r["question"]) + len(r["answers"][0])

    rows = [r for r in rows if _usable_tydiqa(r)]
    ok = [r for r in rows if len(r["context"]) >= TYDIQA_MIN_EXEMPLAR_CONTEXT] or list(rows)
    ranked = sorted(ok, key=lambda r: (length(r), r["id"]))
    return [dict(r) for r in ranked[:k]]


# ---------------------------------------------------------------------------------------------
# The official chain-of-thought prompt files (mmlu-cot.json, BBH cot-prompts/*.txt)

def split_cot_prompt(text: str, where: str) -> tuple[str, list[str], str]:
    """Split an mmlu-cot.json / BBH cot-prompt body into (header, blocks, tail) losslessly:
    header + "\\n\\n".join(blocks) + tail == text, with tail "\\n\\n", "\\n" or ""."""
    m = re.search(r"(?:^|\n\n)(?=Q: )", text)
    if m is None:
        raise BenchmarkDataError(f"{where}: no exemplar block starting with 'Q: '")
    header, body = text[: m.end()], text[m.end():]
    tail = next((t for t in ("\n\n", "\n") if body.endswith(t)), "")
    blocks = re.split(r"\n\n(?=Q: )", body[: len(body) - len(tail)])
    return header, blocks, tail

@dataclass
class BBHPrompt:
    header: str
    questions: list[str]
    cot_blocks: list[str]
    answers: list[str]


def parse_bbh_cot_prompt(text: str, where: str = "cot-prompt") -> BBHPrompt:
    """A cot-prompts/<task>.txt text: drop the canary line and the ----- separator, keep the
    description as header and the 3 'Q: ... A: Let's think step by step. ... So the answer is X.'
    blocks."""
    lines = text.split("\n")
    if lines and "canary" in lines[0].lower():
        lines = lines[1:]
    if lines and lines[0].strip() == "-----":
        lines = lines[1:]
    header, blocks, _ = split_cot_prompt("\n".join(lines), where)
    trigger = "\nA: " + settings()["cot_trigger"]
    questions, answers = [], []
    for k, block in enumerate(blocks):
        if trigger not in block:
            raise BenchmarkDataError(f"{where} block {k + 1}: no {trigger.strip()!r} line")
        questions.append(block[len("Q: "): block.index(trigger)])
        idx = block.rfind("So the answer is ")
        if idx < 0:
            raise BenchmarkDataError(f"{where} block {k + 1}: no 'So the answer is'")
        ans = block[idx + len("So the answer is "):].strip()
        answers.append(ans[:-1] if ans.endswith(".") else ans)
    return BBHPrompt(header, questions, blocks, answers)
