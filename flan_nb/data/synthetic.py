"""Built-in synthetic task suite: training families and benchmark-shaped evaluation sets.

Everything here is generated locally from a seed (no downloads), so the whole pipeline can run
on a laptop. Each *family* is a small task type with a generator; `generate` turns a family,
a count and a seed into raw training examples in the project's raw-example schema. Some
families are *held out* of training, like the paper's held-out benchmarks, and
`benchmark_data` builds clearly-synthetic evaluation sets in exactly the raw record schemas of
MMLU, BBH, TyDiQA and MGSM so the real prompt builders run on them unchanged.

Split disjointness does not rely on seeds: every example's content is hashed into a bucket
(train 70%, validation 10%, test 20%), and a split only keeps examples whose bucket it owns.
So no test item can ever appear in a train set, whatever seeds the caller uses.
"""

from __future__ import annotations

import functools
import hashlib
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flan_nb.data.synthetic_families import (
    LETTERS,
    _arithmetic_word,
    _comparison,
    _extractive_qa,
    _letter_counting,
    _list_ops,
    _object_counting,
    _parity,
    _sequence_continuation,
    _string_transform,
    _word_sorting,
)
from flan_nb.data.synthetic_heldout import (
    _boolean_logic,
    _date_shift,
    _largest_number,
    _multistep_arithmetic,
    _odd_one_out,
    _tracking_swaps,
    _unit_conversion,
    _word_category,
)

SOURCE = "synthetic"
SPLITS = ("train", "validation", "test")
# Buckets out of 100 owned by each split (see module docstring).
_SPLIT_BUCKETS = {"train": (0, 70), "validation": (70, 80), "test": (80, 100)}


class NotEnoughExamples(ValueError):
    """A family has fewer distinct items for a split than were asked for."""


@dataclass(frozen=True)
class FamilyInfo:
    """Metadata of one synthetic task family."""

    name: str
    category: str
    has_options: bool
    has_cot: bool
    held_out: bool
    fields: tuple[str, ...]  # extra per-example fields that templates may use
    description: str


# ---------------------------------------------------------------- registry

_Generator = Callable[[random.Random], dict[str, Any]]
_REGISTRY: dict[str, tuple[FamilyInfo, _Generator]] = {}


def _register(name: str, category: str, gen: _Generator, *, options: bool, cot: bool,
              held_out: bool, fields: tuple[str, ...], description: str) -> None:
    _REGISTRY[name] = (FamilyInfo(name, category, options, cot, held_out, fields, description), gen)


_register("arithmetic_word", "math word problems", _arithmetic_word, options=False, cot=True,
          held_out=False, fields=("question",), description="multi-step arithmetic stories")
_register("word_sorting", "sorting", _word_sorting, options=False, cot=True, held_out=False,
          fields=("words",), description="sort words alphabetically")
_register("object_counting", "counting", _object_counting, options=False, cot=True,
          held_out=False, fields=("question",), description="count objects of one category")
_register("list_ops", "list manipulation", _list_ops, options=False, cot=True, held_out=False,
          fields=("numbers", "op_question"), description="reverse / max / sum / nth of a list")
_register("string_transform", "string manipulation", _string_transform, options=False, cot=False,
          held_out=False, fields=("text", "op_instruction"),
          description="reverse, uppercase, remove vowels, capitalize")
_register("letter_counting", "counting", _letter_counting, options=False, cot=True,
          held_out=False, fields=("word", "letter"), description="count a letter in a word")
_register("sequence_continuation", "pattern completion", _sequence_continuation, options=False,
          cot=True, held_out=False, fields=("sequence",), description="next number of a sequence")
_register("comparison", "comparison", _comparison, options=True, cot=True, held_out=False,
          fields=("a", "b", "relation"), description="is a greater/less than b (yes/no)")
_register("extractive_qa", "extractive question answering", _extractive_qa, options=False,
          cot=False, held_out=False, fields=("context", "question"),
          description="answer is a span of a short biography")
_register("parity", "classification", _parity, options=True, cot=True, held_out=False,
          fields=("number",), description="is a number even or odd")
_register("largest_number", "multiple-choice comparison", _largest_number, options=True, cot=True,
          held_out=True, fields=("question", "choices"),
          description="pick the largest/smallest of four numbers")
_register("odd_one_out", "multiple-choice categorization", _odd_one_out, options=True, cot=True,
          held_out=True, fields=("question", "choices"),
          description="pick the word from another category")
_register("word_category", "multiple-choice categorization", _word_category, options=True,
          cot=True, held_out=True, fields=("question", "category", "choices"),
          description="pick the word that belongs to a category")
_register("unit_conversion", "multiple-choice arithmetic", _unit_conversion, options=True,
          cot=True, held_out=True,
          fields=("question", "quantity", "from_unit", "to_unit", "choices"),
          description="convert between units")
_register("boolean_logic", "logic", _boolean_logic, options=False, cot=True,
          held_out=True, fields=("expression",), description="evaluate a Boolean expression")
_register("date_shift", "date arithmetic", _date_shift, options=True, cot=True, held_out=True,
          fields=("question", "date", "days", "direction"),
          description="date N days after/before a date, MM/DD/YYYY")
_register("tracking_swaps", "state tracking", _tracking_swaps, options=False, cot=True,
          held_out=True, fields=("question",), description="track objects through swaps")
_register("multistep_arithmetic", "arithmetic", _multistep_arithmetic, options=False, cot=True,
          held_out=True, fields=("expression",), description="evaluate nested integer arithmetic")

FAMILIES: tuple[str, ...] = tuple(_REGISTRY)
MMLU_SUBJECTS = ("largest_number", "odd_one_out", "word_category", "unit_conversion")
BBH_SUBTASKS = ("boolean_logic", "date_shift", "tracking_swaps", "multistep_arithmetic")
PSEUDO_LANGUAGES = ("synth_en", "synth_xx", "synth_yy")
_BBH_DESCRIPTIONS = {
    "boolean_logic": "Work out whether a Boolean expression is True or False.",
    "date_shift": "Find the date that lies a given number of days before or after another date.",
    "tracking_swaps": "Follow a series of swaps and say who ends up holding what.",
    "multistep_arithmetic": "Compute the value of a nested arithmetic expression.",
}


def family_info(name: str) -> FamilyInfo:
    """Metadata of a family; KeyError listing the known names otherwise."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown synthetic family {name!r}; known: {', '.join(FAMILIES)}")
    return _REGISTRY[name][0]


def training_families() -> list[str]:
    return [n for n in FAMILIES if not _REGISTRY[n][0].held_out]


def held_out_families() -> list[str]:
    return [n for n in FAMILIES if _REGISTRY[n][0].held_out]


# ---------------------------------------------------------------- generation


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _content_key(ex: dict[str, Any]) -> str:
    # Sorted options: a reordering of the same choices is the same item for disjointness.
    return ex["inputs"] + "\x1f" + "\x1f".join(sorted(ex.get("options", [])))


def _split_of(family: str, key: str) -> str:
    bucket = int(_digest(f"split|{family}|{key}")[:8], 16) % 100
    for split, (lo, hi) in _SPLIT_BUCKETS.items():
        if lo <= bucket < hi:
            return split
    raise AssertionError(bucket)  # buckets cover 0..99


def generate(family: str, n: int, seed: int, split: str = "train") -> list[dict[str, Any]]:
    """`n` unique raw examples of `family` for `split`; the same arguments give identical output."""
    info = family_info(family)
    gen = _REGISTRY[family][1]
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for synthetic family {family!r}; use {SPLITS}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n} for synthetic family {family!r}")
    rng = random.Random(int(_digest(f"{family}|{seed}|{split}")[:16], 16))
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    attempts, limit = 0, 1000 + 60 * n
    while len(out) < n:
        attempts += 1
        if attempts > limit:
            raise NotEnoughExamples(f"synthetic family {family!r}: only {len(out)} unique {split} examples "
                             f"of {n} requested after {limit} draws (seed {seed})")
        ex = gen(rng)
        key = _content_key(ex)
        if key in seen or _split_of(family, key) != split:
            continue
        seen.add(key)
        record: dict[str, Any] = {
            "task": f"synthetic_{family}",
            "inputs": ex["inputs"],
            "targets": ex["targets"],
            "rationale": ex.get("rationale", "") if info.has_cot else "",
            "options": list(ex.get("options", [])),
            "example_id": f"synthetic/{family}/{split}/{_digest(key)[:16]}",
            "source": SOURCE,
        }
        if info.has_options:
            record["answer_index"] = ex["answer_index"]
        for field in info.fields:
            record[field] = ex[field]
        out.append(record)
    return out


def as_dataset(family: str, n: int, seed: int, split: str = "train"):
    """`generate` as a `datasets.Dataset` with explicit features (stable types across families)."""
    import datasets  # heavy import, only needed here

    rows = generate(family, n, seed, split)
    info = family_info(family)
    feats = {"task": datasets.Value("string"), "inputs": datasets.Value("string"),
             "targets": datasets.Value("string"), "rationale": datasets.Value("string"),
             "options": datasets.Sequence(datasets.Value("string")),
             "example_id": datasets.Value("string"), "source": datasets.Value("string")}
    if info.has_options:
        feats["answer_index"] = datasets.Value("int64")
    for field in info.fields:
        feats[field] = datasets.Value("string")
    return datasets.Dataset.from_list(rows, features=datasets.Features(feats))


# ---------------------------------------------------------------- pseudo-languages


@functools.cache  # translate() runs per field of every item; the table is fixed per language
def _cipher_table(lang: str) -> dict[int, str] | None:
    if lang == "synth_en":
        return None
    rng = random.Random(int(_digest(f"cipher|{lang}")[:16], 16))
    lower = list(string.ascii_lowercase)
    rng.shuffle(lower)
    table = {ord(a): b for a, b in zip(string.ascii_lowercase, lower, strict=True)}
    table.update({ord(a.upper()): b.upper() for a, b in zip(string.ascii_lowercase, lower,
                                                            strict=True)})
    return table


def translate(text: str, lang: str) -> str:
    """English -> pseudo-language `lang` by a fixed letter substitution (keeps spans and digits)."""
    if lang not in PSEUDO_LANGUAGES:
        raise ValueError(f"unknown pseudo-language {lang!r}; known: {PSEUDO_LANGUAGES}")
    table = _cipher_table(lang)
    return text if table is None else text.translate(table)


# ---------------------------------------------------------------- benchmark-shaped eval sets


def _mmlu(n: int, seed: int) -> dict[str, Any]:
    test, dev, cot = {}, {}, {}
    for subject in MMLU_SUBJECTS:
        def rec(ex: dict[str, Any], subject: str = subject) -> dict[str, Any]:
            return {"subject": subject, "question": ex["question"], "choices": list(ex["options"]),
                    "answer": int(ex["answer_index"])}

        test_ex = generate(subject, n, seed, "test")
        dev_ex = generate(subject, 5, seed, "validation")
        test[subject] = [rec(e) for e in test_ex]
        dev[subject] = [rec(e) for e in dev_ex]
        blocks = []
        for e in dev_ex:
            choices = " ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(e["options"]))
            blocks.append(f"Q: {e['question']}\n{choices}\nA: Let's think step by step. "
                          f"{e['rationale']} The answer is ({LETTERS[e['answer_index']]}).")
        header = ("The following are multiple choice questions (with answers) about "
                  f"{subject.replace('_', ' ')}.\n\n")
        cot[subject] = header + "\n\n".join(blocks)
    # "items"/"exemplars" alias the same lists for flan_nb.eval.benchmarks.from_mapping.
    return {"test": test, "dev": dev, "cot_prompts": cot, "items": test, "exemplars": dev}


def _bbh_record(ex: dict[str, Any]) -> dict[str, str]:
    if ex["options"]:
        lines = "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(ex["options"]))
        return {"input": f"{ex['inputs']}\nOptions:\n{lines}",
                "target": f"({LETTERS[ex['answer_index']]})"}
    return {"input": ex["inputs"], "target": ex["targets"]}


def _bbh(n: int, seed: int) -> dict[str, Any]:
    tasks, prompts = {}, {}
    for sub in BBH_SUBTASKS:
        tasks[sub] = [_bbh_record(e) for e in generate(sub, n, seed, "test")]
        blocks = []
        for e in generate(sub, 3, seed, "validation"):
            r = _bbh_record(e)
            blocks.append(f"Q: {r['input']}\nA: Let's think step by step.\n{e['rationale']} "
                          f"So the answer is {r['target']}.")
        prompts[sub] = _BBH_DESCRIPTIONS[sub] + "\n\n" + "\n\n".join(blocks)
    return {"tasks": tasks, "cot_prompts": prompts, "items": tasks, "exemplars": prompts}


def _tydiqa(n: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"dev": {}, "train": {}}
    for part, split in (("dev", "test"), ("train", "train")):
        base = generate("extractive_qa", n, seed, split)
        for lang in PSEUDO_LANGUAGES:
            out[part][lang] = [
                {"id": f"synth-tydiqa-{lang}-{part}-{e['example_id'].rsplit('/', 1)[1]}",
                 "context": translate(e["context"], lang),
                 "question": translate(e["question"], lang),
                 "answers": [translate(e["targets"], lang)]}
                for e in base]
    out["items"] = out["dev"]
    # benchmark_data wants one-shot candidates in order of preference: shortest first.
    out["exemplars"] = {lang: sorted(rows, key=lambda r: (len(r["context"]) + len(r["question"]),
                                                          r["id"]))
                        for lang, rows in out["train"].items()}
    return out


MGSM_PREFIXES = {"question": "Question:", "answer": "Step-by-Step Answer:"}
# Kept in English in every pseudo-language: the shared answer extractor always accepts
# "The answer is", and a cipher of it would make scoring depend on per-language settings.
MGSM_ANSWER_SENTENCE = "The answer is"


def mgsm_prefixes(lang: str) -> dict[str, str]:
    """The exemplar prefixes of a pseudo-language (the real exemplars carry per-language ones)."""
    out = {k: translate(v, lang) for k, v in MGSM_PREFIXES.items()}
    out["answer_sentence"] = MGSM_ANSWER_SENTENCE
    return out


def _mgsm(n: int, seed: int) -> dict[str, Any]:
    test_ex = generate("arithmetic_word", n, seed, "test")
    shots = generate("arithmetic_word", 8, seed, "validation")
    test, exemplars = {}, {}
    prefixes = {lang: mgsm_prefixes(lang) for lang in PSEUDO_LANGUAGES}
    for lang, p in prefixes.items():
        test[lang] = [{"question": translate(e["question"], lang), "answer": e["targets"]}
                      for e in test_ex]
        exemplars[lang] = {
            str(i + 1): {"q": f"{p['question']} {translate(e['question'], lang)}",
                         "a": (f"{p['answer']} {translate(e['rationale'], lang)} "
                               f"{p['answer_sentence']} {e['targets']}.")}
            for i, e in enumerate(shots)}
    return {"test": test, "exemplars": exemplars, "prefixes": prefixes, "items": test}


_BENCHMARKS = {"mmlu": _mmlu, "bbh": _bbh, "tydiqa": _tydiqa, "mgsm": _mgsm}


def benchmark_data(benchmark: str, n_per_subtask: int = 20, seed: int = 0) -> dict[str, Any]:
    """Synthetic stand-in for a benchmark, in the raw record schema its prompt builder reads.

    Items come from the held-out families' test split (MMLU, BBH) or from the test split of a
    training family (TyDiQA from extractive_qa, MGSM from arithmetic_word, mirroring how the paper
    trains on SQuAD-like QA and GSM8K yet evaluates on held-out TyDiQA and MGSM). Exemplars and
    CoT prompts come from the validation split, so they never coincide with a test item.
    The result carries `"meta": {"synthetic": True, ...}` so it cannot pass for real data, plus
    `"items"`/`"exemplars"` keys aliasing the same lists in the form
    `flan_nb.eval.benchmarks.from_mapping` reads (scored items; dev records, cot-prompt texts,
    one-shot candidates shortest first, or the 8 MGSM exemplars).
    """
    if benchmark not in _BENCHMARKS:
        raise KeyError(f"unknown benchmark {benchmark!r}; known: {', '.join(_BENCHMARKS)}")
    data = _BENCHMARKS[benchmark](n_per_subtask, seed)
    data["meta"] = {"synthetic": True, "benchmark": benchmark, "seed": seed,
                    "n_per_subtask": n_per_subtask}
    return data
