"""Loaders for the Flan collection's sources, into one raw-example schema.

Every loader takes either a local path or a hub id with the same call and returns a
`datasets.Dataset` whose rows are raw training examples:
`{"task", "inputs", "targets", "rationale", "options", "example_id", "source", "provenance"}`
(+ extra fields templates may use, e.g. NIv2's `definition`). Nothing is copied from the mirror:
files are read where they are.

Malformed rows raise `DataFormatError` naming the file and line, or with `on_bad_rows="skip"`
are skipped and counted (in the optional `stats` dict and a warning), so one bad line in a
10k-line file does not cost a run but is never silent.
"""

from __future__ import annotations

import functools
import json
import random
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

RAW_COLUMNS = ("task", "inputs", "targets", "rationale", "options", "example_id", "source", "provenance")
RAW_FEATURES = datasets.Features({
    "task": datasets.Value("string"), "inputs": datasets.Value("string"),
    "targets": datasets.Value("string"), "rationale": datasets.Value("string"),
    "options": datasets.Sequence(datasets.Value("string")), "example_id": datasets.Value("string"),
    "source": datasets.Value("string"), "provenance": datasets.Value("string"),
})
BAD_ROW_POLICIES = ("raise", "skip")


class DataFormatError(ValueError):
    """A malformed row or file; the message names the file (or hub id) and the line/row."""


@dataclass
class _BadRows:
    """Counts skipped rows; raises on the first one unless the policy is skip."""

    where: str
    policy: str
    stats: dict[str, Any] | None
    count: int = 0

    def __post_init__(self) -> None:
        if self.policy not in BAD_ROW_POLICIES:
            raise ValueError(f"on_bad_rows must be one of {BAD_ROW_POLICIES}, got {self.policy!r}")

    def bad(self, line: int | str, reason: str) -> None:
        message = f"{self.where} line {line}: {reason}"
        if self.policy == "raise":
            raise DataFormatError(message)
        self.count += 1
        if self.stats is not None:
            self.stats["bad_rows"] = self.stats.get("bad_rows", 0) + 1
            self.stats.setdefault("bad_examples", [])
            if len(self.stats["bad_examples"]) < 20:
                self.stats["bad_examples"].append(message)

    def finish(self) -> None:
        if self.count:
            warnings.warn(f"{self.where}: skipped {self.count} malformed row(s)", stacklevel=3)

    def collect(self, records: Iterable[tuple[int | str, Any]],
                make_row: Callable[[int | str, Any], dict[str, Any] | None],
                max_examples: int | None, describe: Callable[[BaseException], str] = repr,
                errors: tuple[type[BaseException], ...] = (KeyError, IndexError, TypeError,
                                                           ValueError)) -> list[dict[str, Any]]:
        """Rows from `make_row(line, record)` (None = not an example). A record it cannot
        convert is a bad row, reported with its line as `describe(error)`; every loader shares
        this loop so the raise/skip policy and the max_examples cut behave the same everywhere."""
        rows: list[dict[str, Any]] = []
        for line, rec in records:
            try:
                row = make_row(line, rec)
            except errors as exc:
                self.bad(line, describe(exc))
                continue
            if row is not None:
                rows.append(row)
                if max_examples is not None and len(rows) >= max_examples:
                    break
        self.finish()
        return rows


def _raw(task: str, inputs: str, targets: str, *, example_id: str, source: str, provenance: str,
         rationale: str = "", options: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
    return {"task": task, "inputs": inputs, "targets": targets, "rationale": rationale,
            "options": list(options), "example_id": example_id, "source": source,
            "provenance": provenance, **extra}


def _to_dataset(rows: list[dict[str, Any]], extra: Mapping[str, datasets.Value] | None = None
                ) -> datasets.Dataset:
    features = RAW_FEATURES.copy()
    for name, value in (extra or {}).items():
        features[name] = value
    if not rows:
        return datasets.Dataset.from_dict({k: [] for k in features}, features=features)
    return datasets.Dataset.from_list(rows, features=features)


def _is_local(source: str | Path) -> bool:
    return Path(source).expanduser().exists()


def _hub(hub_id: str, config: str | None, split: str) -> datasets.Dataset:
    """A hub dataset; offline machines get a clear error instead of a long retry loop."""
    import os

    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise FileNotFoundError(
            f"{hub_id!r} is not a local path and the hub is offline (HF_HUB_OFFLINE=1); pass a "
            f"local file or set data_root to the offline mirror")
    try:
        return datasets.load_dataset(hub_id, config, split=split)
    except RuntimeError as exc:
        # datasets >= 4 no longer runs loading scripts; the hub keeps a parquet conversion of
        # most script-based datasets (trec, quac, math_dataset, ...) under this revision
        if "script" not in str(exc).lower():
            raise
        return datasets.load_dataset(hub_id, config, split=split, revision="refs/convert/parquet")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\n")


# ---------------------------------------------------------------------------------------------
# CoT TSVs (Flan cot_data): question \t answer \t chain of thought


def _unescape_newlines(text: str) -> str:
    # five of the FLAN files store newlines as the two characters backslash-n
    return text.replace("\\n", "\n")


def load_cot_tsv(source: str | Path, *, task: str = "", on_bad_rows: str = "raise",
                 stats: dict[str, Any] | None = None, max_examples: int | None = None
                 ) -> datasets.Dataset:
    """A Flan CoT file `input<TAB>target<TAB>rationale` (no header) as raw examples."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"CoT file {path} does not exist (CoT data has no hub copy)")
    task = task or path.stem.replace("_train", "")
    def row(number: int | str, line: str) -> dict[str, Any] | None:
        if not line.strip():
            return None
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"expected 3 tab-separated columns (input, target, rationale), "
                             f"got {len(fields)}")
        question, answer, rationale = (_unescape_newlines(f) for f in fields)
        if not question.strip() or not answer.strip():
            raise ValueError("empty input or target")
        return _raw(task, question, answer, rationale=rationale, example_id=f"{task}:{number}",
                    source="cot", provenance=f"{path.name}:{number}")

    bad = _BadRows(str(path), on_bad_rows, stats)
    return _to_dataset(bad.collect(_lines(path), row, max_examples, describe=str))


# ---------------------------------------------------------------------------------------------
# GSM8K: {"question", "answer"}; the answer holds <<a=b>> calculator notes and "#### final"

_CALC = re.compile(r"<<[^<>]*>>")


def parse_gsm8k_answer(answer: str) -> tuple[str, str]:
    """(rationale without calculator notes, final answer after ####)."""
    if "####" not in answer:
        raise ValueError("answer has no '####' final-answer marker")
    rationale, final = answer.rsplit("####", 1)
    return _CALC.sub("", rationale).strip(), final.strip().replace(",", "")


def load_gsm8k(source: str | Path = "openai/gsm8k", *, split: str = "train", task: str = "gsm8k",
               on_bad_rows: str = "raise", stats: dict[str, Any] | None = None,
               max_examples: int | None = None) -> datasets.Dataset:
    """GSM8K from a local `{train,test}.jsonl` (a file or the folder) or the hub id."""
    if _is_local(source):
        path = Path(source)
        if path.is_dir():
            path = path / f"{split}.jsonl"
        bad = _BadRows(str(path), on_bad_rows, stats)
        records: Iterable[tuple[int, Any]] = _json_lines(path, bad)
        where = path.name
    else:
        bad = _BadRows(f"hub {source} ({split})", on_bad_rows, stats)
        records = enumerate(_hub(str(source), "main", split), start=1)
        where = f"{source}/{split}"
    def row(number: int | str, rec: Mapping[str, Any]) -> dict[str, Any]:
        rationale, final = parse_gsm8k_answer(rec["answer"])
        return _raw(task, rec["question"], final, rationale=rationale,
                    example_id=f"{task}:{split}:{number}", source="gsm8k",
                    provenance=f"{where}:{number}")

    return _to_dataset(bad.collect(records, row, max_examples,
                                   describe=lambda e: f"bad GSM8K record: {e!r}"))


def _json_lines(path: Path, bad: _BadRows) -> Iterator[tuple[int, Any]]:
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            bad.bad(number, f"invalid JSON: {exc.msg} (column {exc.colno})")


# ---------------------------------------------------------------------------------------------
# NIv2 task JSON (allenai/natural-instructions format)

NIV2_EVAL_INSTANCES = 100  # by convention the first 100 instances of a task are evaluation instances


def load_niv2(source: str | Path, *, split: str = "train", task: str = "",
              on_bad_rows: str = "raise", stats: dict[str, Any] | None = None,
              max_examples: int | None = None) -> datasets.Dataset:
    """One NIv2 task file. split: 'train' (instances after the first 100), 'eval' (first 100), 'all'.

    A hub id is read as a dataset with NIv2's field names (`definition`, `inputs`, `targets`, ...
    as in the `Muennighoff/natural-instructions` layout), filtered to `task` if given.
    """
    if split not in ("train", "eval", "all"):
        raise ValueError(f"NIv2 split must be train|eval|all, got {split!r}")
    if not _is_local(source):
        return _niv2_hub(str(source), split=split, task=task, on_bad_rows=on_bad_rows, stats=stats,
                         max_examples=max_examples)
    path = Path(source)
    task = task or path.stem
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path} line {exc.lineno}: invalid JSON: {exc.msg}") from None
    for key in ("Definition", "Instances"):
        if key not in doc:
            raise DataFormatError(f"{path}: missing field {key!r} of an NIv2 task file")
    definition = " ".join(doc["Definition"]) if isinstance(doc["Definition"], list) else str(doc["Definition"])
    positives = doc.get("Positive Examples") or []
    pos = positives[0] if positives else {}
    instances = doc["Instances"]
    start, stop = {"train": (NIV2_EVAL_INSTANCES, None), "eval": (0, NIV2_EVAL_INSTANCES),
                   "all": (0, None)}[split]
    def row(where: int | str, inst: Mapping[str, Any]) -> dict[str, Any]:
        outputs = inst["output"]
        target = outputs[0] if isinstance(outputs, list) else outputs
        if not isinstance(target, str):
            raise TypeError("output is not a string")
        return _raw(task, inst["input"], target, example_id=str(inst.get("id", f"{task}-{where}")),
                    source="niv2", provenance=f"{path.name}:{where}", definition=definition,
                    pos_input=str(pos.get("input", "")), pos_output=str(pos.get("output", "")),
                    pos_explanation=str(pos.get("explanation", "")))

    bad = _BadRows(str(path), on_bad_rows, stats)
    records = ((f"Instances[{i}]", inst) for i, inst in enumerate(instances[start:stop], start=start))
    return _to_dataset(bad.collect(records, row, max_examples, errors=(KeyError, IndexError, TypeError),
                                   describe=lambda e: f"bad NIv2 instance: {e!r}"), NIV2_EXTRA)


NIV2_EXTRA = {k: datasets.Value("string") for k in ("definition", "pos_input", "pos_output", "pos_explanation")}


def _niv2_hub(hub_id: str, *, split: str, task: str, on_bad_rows: str, stats: dict[str, Any] | None,
              max_examples: int | None) -> datasets.Dataset:
    ds = _hub(hub_id, None, "test" if split == "eval" else "train")
    if task and "task_name" in ds.column_names:
        ds = ds.filter(lambda r: r["task_name"] == task)
    def row(index: int | str, rec: Mapping[str, Any]) -> dict[str, Any]:
        return _raw(rec.get("task_name", task), rec["inputs"], rec["targets"],
                    example_id=str(rec.get("id", index)), source="niv2",
                    provenance=f"{hub_id}[{index}]", definition=rec.get("definition", ""),
                    pos_input="", pos_output="", pos_explanation="")

    bad = _BadRows(f"hub {hub_id}", on_bad_rows, stats)
    return _to_dataset(bad.collect(enumerate(ds), row, max_examples, errors=(KeyError,),
                                   describe=lambda e: f"missing field {e}"), NIV2_EXTRA)


# ---------------------------------------------------------------------------------------------
# llm-foundry slices of Muffin / T0 datasets, converted to our schema

_LETTERS = "ABCDEFGHIJ"


def _slice_row(rec: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    """(inputs, targets, options) from the four llm-foundry formats."""
    if "query" in rec:  # multiple choice: {"query", "choices", "gold"}
        choices, gold, query = list(rec["choices"]), int(rec["gold"]), str(rec["query"])
        if not 0 <= gold < len(choices):
            raise ValueError(f"gold {gold} outside {len(choices)} choices")
        if all(c in _LETTERS for c in choices) and "Choices:" in query:
            # commonsense_qa / siqa put the option texts in the query and letters in choices
            body = query.split("Choices:", 1)
            found = re.findall(r"^([A-J])\. (.*)$", body[1], flags=re.M)
            texts = [t for _, t in found][: len(choices)]
            if len(texts) != len(choices):
                raise ValueError("could not read the lettered choices out of the query")
            question = body[0].strip()
            return _strip_answer_cue(question), texts[gold], texts
        return _strip_answer_cue(query), choices[gold], choices
    if "context_options" in rec:  # winograd / winogrande: pick the context that fits
        options, gold = list(rec["context_options"]), int(rec["gold"])
        if not 0 <= gold < len(options):
            raise ValueError(f"gold {gold} outside {len(options)} options")
        cont = str(rec["continuation"]).strip()
        return f"Which is the better start of a sentence that ends with: \"{cont}\"", options[gold], options
    if "aliases" in rec:  # triviaqa
        return _strip_answer_cue(str(rec["context"])), str(rec["answer"]), []
    if "chain_of_thought" in rec:  # svamp / aqua
        return str(rec["context"]), str(rec["answer"]), []
    if "continuation" in rec:  # lambada: predict the last word
        return str(rec["context"]), str(rec["continuation"]), []
    raise KeyError(f"unknown slice format with keys {sorted(rec)}")


def _strip_answer_cue(text: str) -> str:
    text = text.strip()
    for cue in ("\nAnswer:", "Answer:"):
        if text.endswith(cue):
            text = text[: -len(cue)].rstrip()
    return text


def load_slice(source: str | Path, *, task: str = "", on_bad_rows: str = "raise",
               stats: dict[str, Any] | None = None, max_examples: int | None = None
               ) -> datasets.Dataset:
    """A llm-foundry `muffin_t0_slices/*.jsonl` file as raw examples."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"slice file {path} does not exist")
    task = task or path.stem
    def row(number: int | str, rec: Any) -> dict[str, Any]:
        inputs, targets, options = _slice_row(rec)
        rationale = str(rec.get("chain_of_thought", "")) if isinstance(rec, dict) else ""
        return _raw(task, inputs, targets, options=options, rationale=rationale,
                    example_id=f"{path.stem}:{number}", source="slice",
                    provenance=f"{path.name}:{number}")

    bad = _BadRows(str(path), on_bad_rows, stats)
    return _to_dataset(bad.collect(_json_lines(path, bad), row, max_examples,
                                   errors=(KeyError, TypeError, ValueError),
                                   describe=lambda e: f"bad slice record: {e}"))


# ---------------------------------------------------------------------------------------------
# promptsource templates (T0-SF)


def _promptsource_loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        """Safe loader that understands promptsource's !Template/!TemplateMetadata tags as maps."""

    def as_mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        return loader.construct_mapping(node, deep=True)

    Loader.add_constructor("!Template", as_mapping)
    Loader.add_constructor("!TemplateMetadata", as_mapping)
    return Loader


def read_promptsource_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_promptsource_loader())  # noqa: S506
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise DataFormatError(f"{path}{line}: invalid promptsource YAML: {exc}") from None
    if not isinstance(doc, dict) or "templates" not in doc:
        raise DataFormatError(f"{path}: no `templates` mapping")
    return doc


@dataclass(frozen=True)
class PromptTemplate:
    id: str
    name: str
    jinja: str
    answer_choices: str | None
    original_task: bool
    choices_in_prompt: bool
    file: str


def load_promptsource(path: str | Path) -> dict[str, PromptTemplate]:
    """name -> template of one promptsource templates.yaml."""
    doc = read_promptsource_yaml(path)
    out: dict[str, PromptTemplate] = {}
    for key, t in doc["templates"].items():
        if "jinja" not in t or "name" not in t:
            raise DataFormatError(f"{path}: template {key} misses `jinja` or `name`")
        meta = t.get("metadata") or {}
        out[t["name"]] = PromptTemplate(
            id=str(t.get("id", key)), name=t["name"], jinja=t["jinja"],
            answer_choices=t.get("answer_choices"), original_task=bool(meta.get("original_task")),
            choices_in_prompt=bool(meta.get("choices_in_prompt")), file=str(path))
    return out


def _jinja_env(rng: random.Random):
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # StrictUndefined: a row missing a field the template uses is a malformed row, not ''
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    # promptsource templates call these helpers
    env.globals.update(zip=zip, choice=lambda seq: rng.choice(list(seq)),
                       most_frequent=lambda seq: max(set(seq), key=list(seq).count))
    return env


def _template_renderer(template: PromptTemplate, rng: random.Random
                       ) -> Callable[[Mapping[str, Any]], tuple[str, str, list[str]] | None]:
    """`apply_template` for many rows: one Jinja environment, each source compiled once
    (compiling costs far more than rendering a row). A source that fails to compile is not
    kept, so every row it touches fails as it would alone."""
    env = _jinja_env(rng)
    compiled: dict[str, Any] = {}

    def jinja(source: str) -> Any:
        if source not in compiled:
            compiled[source] = env.from_string(source)
        return compiled[source]

    def apply(row: Mapping[str, Any]) -> tuple[str, str, list[str]] | None:
        options: list[str] = []
        if template.answer_choices:
            rendered = jinja(template.answer_choices).render(**row)
            options = [c.strip() for c in rendered.split("|||")]
        text = jinja(template.jinja).render(**row, answer_choices=options)
        parts = [p.strip() for p in text.split("|||")]
        if len(parts) < 2 or not parts[0] or not parts[1]:
            return None
        return parts[0], parts[1], options

    return apply


def apply_template(template: PromptTemplate, row: Mapping[str, Any], *, rng: random.Random | None = None
                   ) -> tuple[str, str, list[str]] | None:
    """Render `input ||| target`; None when the template yields no target (e.g. label -1)."""
    return _template_renderer(template, rng or random.Random(0))(row)


def load_t0(rows_or_source: str | Path | Iterable[Mapping[str, Any]], template: PromptTemplate, *,
            task: str, hub_config: str | None = None, split: str = "train",
            on_bad_rows: str = "raise", stats: dict[str, Any] | None = None,
            max_examples: int | None = None, seed: int = 0) -> datasets.Dataset:
    """A T0-SF task: a promptsource template applied to a dataset's rows.

    `rows_or_source` is a hub id (the promptsource dataset, e.g. "super_glue" + hub_config
    "copa"), a local JSON-lines file with the original dataset fields, or in-memory rows.
    """
    if isinstance(rows_or_source, (str, Path)):
        if _is_local(rows_or_source):
            path = Path(rows_or_source)
            bad = _BadRows(str(path), on_bad_rows, stats)
            records: Iterable[tuple[Any, Mapping[str, Any]]] = _json_lines(path, bad)
            where = path.name
        else:
            bad = _BadRows(f"hub {rows_or_source}", on_bad_rows, stats)
            records = enumerate(_hub(str(rows_or_source), hub_config, split))
            where = str(rows_or_source)
    else:
        bad = _BadRows(f"rows for {task}", on_bad_rows, stats)
        records = enumerate(rows_or_source)
        where = "rows"
    apply = _template_renderer(template, random.Random(seed))

    def row(number: int | str, rec: Mapping[str, Any]) -> dict[str, Any] | None:
        rendered = apply(rec)
        if rendered is None:
            return None
        inputs, targets, options = rendered
        return _raw(task, inputs, targets, options=options, example_id=f"{task}:{number}",
                    source="t0sf", provenance=f"{where}:{number}|{template.file}#{template.name}")

    # jinja raises many types (UndefinedError, TypeError, ...): any of them is a bad row
    return _to_dataset(bad.collect(
        records, row, max_examples, errors=(Exception,),
        describe=lambda e: f"template {template.name!r} failed: {type(e).__name__}: {e}"))


# ---------------------------------------------------------------------------------------------
# Muffin from the hub: resources/muffin_hub.yaml maps each dataset's records to raw examples.
# The mapping is data (a small pattern language, see the YAML header); this is its interpreter.

MUFFIN_HUB_FILE = Path(__file__).resolve().parent / "resources" / "muffin_hub.yaml"
_ENTRY_KEYS = {"hub", "config", "splits", "fields", "inputs", "targets", "options", "answer_index",
               "filter", "verified"}
_TARGET_KEYS = {"field", "pattern", "from_options", "label_names", "label_map", "pick", "empty", "round",
                "at_answer_index"}
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}|]*)(?:\|([^{}]*))?\}")
_PATH = re.compile(r"^[A-Za-z_]\w*(?:\[-?\d+\])*(?:\.[A-Za-z_]\w*(?:\[-?\d+\])*)*$")
_STEP = re.compile(r"([A-Za-z_]\w*)|\[(-?\d+)\]")
_PUNCT = re.compile(r"[^\w\s]")


def _joined(value: Any, sep: str) -> str:
    return sep.join(" ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v) for v in value)


PATTERN_FILTERS: dict[str, Callable[[Any], str]] = {
    "join": lambda v: _joined(v, ", "),
    "lines": lambda v: _joined(v, "\n"),
    "numbered": lambda v: "\n".join(f"{i}. {x}" for i, x in enumerate(v, start=1)),
    "triples": lambda v: "; ".join(" | ".join(map(str, t)) if isinstance(t, (list, tuple)) else str(t)
                                   for t in v),
    "lower": lambda v: str(v).lower(),
    "nospace": lambda v: "".join(str(v).split()),
    # fix_punct's input: punctuation gone and lower-cased, as FLAN's derived task describes
    "nopunct": lambda v: " ".join(_PUNCT.sub(" ", str(v)).lower().split()),
    "last_word": lambda v: str(v).rstrip().rsplit(None, 1)[-1],
    "but_last_word": lambda v: str(v).rstrip().rsplit(None, 1)[0],
    "strip": lambda v: str(v).strip(),
}


class MissingField(KeyError):
    """A record lacks a field (or list item) the mapping reads; a bad row naming the field."""

    def __init__(self, path: str, record: Any) -> None:
        keys = ", ".join(sorted(map(str, record))) if isinstance(record, Mapping) else type(record).__name__
        super().__init__(f"missing field {path!r} (record has: {keys})")

    def __str__(self) -> str:
        return str(self.args[0])


def field_value(record: Mapping[str, Any], path: str) -> Any:
    """`record` at a dotted path with optional [i] indexes, e.g. 'choices.text' or 'answers.text[0]'."""
    value: Any = record
    for name, index in _STEP.findall(path):
        try:
            value = value[name] if name else value[int(index)]
        except (KeyError, IndexError, TypeError):
            raise MissingField(path, record) from None
    return value


def fill_pattern(pattern: str, record: Mapping[str, Any]) -> str:
    """`pattern` with each {path} / {path|filter} replaced from the record."""
    def one(match: re.Match[str]) -> str:
        text = match.group(0)
        if text in ("{{", "}}"):
            return text[0]
        value = field_value(record, match.group(1))
        name = match.group(2)
        if name:
            return PATTERN_FILTERS[name](value)
        if isinstance(value, (list, dict)):
            raise ValueError(f"field {match.group(1)!r} is a {type(value).__name__}; give it a "
                             f"filter ({', '.join(PATTERN_FILTERS)}) or an index")
        return str(value)

    return _PLACEHOLDER.sub(one, pattern)


def _pattern_paths(pattern: str) -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(2)) for m in _PLACEHOLDER.finditer(pattern) if m.group(0) not in ("{{", "}}")]


def _entry_paths(entry: Mapping[str, Any]) -> list[str]:
    """Every record path an entry reads (for the fields check)."""
    paths = [p for p, _ in _pattern_paths(entry.get("inputs", ""))]
    tgt = entry.get("targets") or {}
    if isinstance(tgt, Mapping):
        paths += [tgt["field"]] if "field" in tgt else []
        paths += [p for p, _ in _pattern_paths(tgt.get("pattern", ""))]
    opts = entry.get("options")
    if isinstance(opts, str):
        paths.append(opts)
    elif isinstance(opts, Mapping):
        paths += list(opts.get("fields", []))
    ans = entry.get("answer_index") or {}
    paths += [ans[k] for k in ("field", "in") if k in ans]
    paths += [f["field"] for f in entry.get("filter") or [] if isinstance(f, Mapping) and "field" in f]
    return paths


def check_muffin_hub_entry(name: str, entry: Any) -> list[str]:
    """Problems with one YAML entry (empty list = well-formed)."""
    where = f"{MUFFIN_HUB_FILE.name} entry {name!r}"
    if not isinstance(entry, Mapping):
        return [f"{where}: not a mapping"]
    errs = [f"{where}: unknown key {k!r}" for k in entry if k not in _ENTRY_KEYS]
    errs += [f"{where}: missing key {k!r}" for k in ("hub", "fields", "inputs", "targets") if k not in entry]
    if errs:
        return errs
    fields = entry["fields"]
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        return [f"{where}: fields must be a list of field names"]
    if not isinstance(entry.get("splits", {}), Mapping):
        errs.append(f"{where}: splits must map split names to hub split names")
    patterns = [entry["inputs"]]
    if isinstance(entry["targets"], Mapping) and "pattern" in entry["targets"]:
        patterns.append(entry["targets"]["pattern"])
    for text in patterns:
        if not isinstance(text, str):
            errs.append(f"{where}: pattern {text!r} is not a string")
            continue
        for path, filt in _pattern_paths(text):
            if filt is not None and filt not in PATTERN_FILTERS:
                errs.append(f"{where}: unknown filter {filt!r} in {text!r}")
            if not _PATH.match(path):
                errs.append(f"{where}: bad field path {path!r} in {text!r}")
    tgt = entry["targets"]
    if not isinstance(tgt, Mapping):
        return errs + [f"{where}: targets must be a mapping"]
    errs += [f"{where}: unknown targets key {k!r}" for k in tgt if k not in _TARGET_KEYS]
    kinds = [k for k in ("field", "pattern", "from_options") if k in tgt]
    if len(kinds) != 1:
        errs.append(f"{where}: targets needs exactly one of field / pattern / from_options, got {kinds}")
    if "from_options" in tgt and ("options" not in entry or "answer_index" not in entry):
        errs.append(f"{where}: targets.from_options needs options and answer_index")
    if tgt.get("at_answer_index") and ("field" not in tgt or "answer_index" not in entry):
        errs.append(f"{where}: targets.at_answer_index needs targets.field and answer_index")
    for key in ("label_names",):
        if key in tgt and not all(isinstance(x, str) for x in tgt[key]):
            errs.append(f"{where}: targets.{key} must be strings")
    opts = entry.get("options")
    if isinstance(opts, list) and not all(isinstance(x, str) for x in opts):
        errs.append(f"{where}: literal options must be strings (quote yes/no in YAML)")
    elif opts is not None and not isinstance(opts, (list, str)) and not (
            isinstance(opts, Mapping) and set(opts) == {"fields"}):
        errs.append(f"{where}: options must be a list, a field path or {{fields: [...]}}")
    ans = entry.get("answer_index")
    if ans is not None and not (isinstance(ans, Mapping) and set(ans) in (
            {"field"}, {"field", "base"}, {"field", "in"}, {"value", "in"})):
        errs.append(f"{where}: answer_index must be {{field, base}}, {{field, in}} or {{value, in}}")
    for f in entry.get("filter") or []:
        if not (isinstance(f, Mapping) and "field" in f
                and set(f) - {"field"} in ({"not_in"}, {"nonempty"}, {"contains"})):
            errs.append(f"{where}: filter {f!r} must be {{field, not_in | nonempty | contains}}")
    for path in _entry_paths(entry):
        if not isinstance(path, str) or not _PATH.match(path):
            errs.append(f"{where}: bad field path {path!r}")
        elif _STEP.match(path).group(1) not in fields:  # type: ignore[union-attr]
            errs.append(f"{where}: path {path!r} reads a field not declared in fields {fields}")
    return errs


def load_muffin_hub_spec(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The entries of muffin_hub.yaml by task id, validated (DataFormatError lists every problem).
    The packaged file is parsed once per process (a mixture loads dozens of tasks); treat the
    returned entries as read-only."""
    if path is None:
        return _packaged_muffin_hub_spec()
    return _read_muffin_hub_spec(Path(path))


@functools.lru_cache(maxsize=1)
def _packaged_muffin_hub_spec() -> dict[str, dict[str, Any]]:
    return _read_muffin_hub_spec(MUFFIN_HUB_FILE)


def _read_muffin_hub_spec(path: Path) -> dict[str, dict[str, Any]]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataFormatError(f"{path}: {exc}") from exc
    entries = doc.get("datasets") if isinstance(doc, Mapping) else None
    if not isinstance(entries, Mapping):
        raise DataFormatError(f"{path}: expected a top-level 'datasets' mapping")
    errs = [e for name, entry in entries.items() for e in check_muffin_hub_entry(name, entry)]
    if errs:
        raise DataFormatError("\n".join(errs))
    return {str(k): dict(v) for k, v in entries.items()}


def muffin_hub_entry(hub_id: str, *, task: str, config: str | None = None,
                     spec: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[str, Mapping[str, Any]]:
    """(name, entry) for a task: its own entry, else the single entry reading hub_id/config."""
    import difflib

    spec = load_muffin_hub_spec() if spec is None else spec
    if task in spec:
        entry = spec[task]
        if entry["hub"] != hub_id or (config is not None and entry.get("config") != config):
            raise DataFormatError(
                f"{MUFFIN_HUB_FILE.name} entry {task!r} reads {entry['hub']} [{entry.get('config')}], "
                f"but {hub_id} [{config}] was asked for; fix the registry source or the YAML entry")
        return task, entry
    matches = [n for n, e in spec.items() if e["hub"] == hub_id and (config is None or e.get("config") == config)]
    if len(matches) == 1:
        return matches[0], spec[matches[0]]
    close = difflib.get_close_matches(task, list(spec), n=5, cutoff=0.5)
    close += [n for n in difflib.get_close_matches(hub_id, [e["hub"] for e in spec.values()], n=3, cutoff=0.6)
              for n in [n2 for n2, e in spec.items() if e["hub"] == n][:1]]
    hint = (f"entries reading {hub_id}: {', '.join(matches)}" if matches else
            f"close names: {', '.join(dict.fromkeys(close)) or 'none'}")
    raise NotImplementedError(
        f"no {MUFFIN_HUB_FILE.name} entry for task {task!r} ({hub_id} [{config}]); {hint}. "
        f"Add one to flan_nb/resources/muffin_hub.yaml")


def _label(value: Any, tgt: Mapping[str, Any]) -> Any:
    if "label_names" in tgt:
        names = tgt["label_names"]
        index = int(value)
        if not 0 <= index < len(names):
            raise ValueError(f"label {value!r} outside label_names {names}")
        return names[index]
    if "label_map" in tgt:
        table = {str(k): v for k, v in tgt["label_map"].items()}
        if str(value) not in table:
            raise ValueError(f"label {value!r} not in label_map {sorted(table)}")
        return table[str(value)]
    return value


def _answer_index(ans: Mapping[str, Any], record: Mapping[str, Any]) -> int:
    """Position of the gold answer: a field's int (minus base), or where a field's value (or a
    literal `value`) sits in another list field."""
    if "field" in ans:
        value, what = field_value(record, ans["field"]), ans["field"]
    else:
        value, what = ans["value"], "value"
    if "in" not in ans:
        return int(value) - int(ans.get("base", 0))
    keys = list(field_value(record, ans["in"]))
    if value not in keys:
        raise ValueError(f"{what}={value!r} not among {ans['in']}={keys}")
    return keys.index(value)


def convert_muffin_record(entry: Mapping[str, Any], record: Mapping[str, Any]
                          ) -> tuple[str, str, list[str]] | None:
    """(inputs, targets, options) of one hub record, or None when a filter rejects it."""
    for cond in entry.get("filter") or []:
        value = field_value(record, cond["field"])
        if "not_in" in cond and value in cond["not_in"]:
            return None
        if cond.get("nonempty") and not value:
            return None
        if "contains" in cond and cond["contains"] not in value:
            return None
    opts_spec = entry.get("options")
    if opts_spec is None:
        options: list[str] = []
    elif isinstance(opts_spec, str):
        options = [str(x) for x in field_value(record, opts_spec)]
    elif isinstance(opts_spec, Mapping):
        options = [str(field_value(record, p)) for p in opts_spec["fields"]]
    else:
        options = list(opts_spec)
    tgt = entry["targets"]
    if tgt.get("from_options"):
        index = _answer_index(entry["answer_index"], record)
        if not 0 <= index < len(options):
            raise ValueError(f"answer index {index} outside {len(options)} options")
        targets = options[index]
    elif "pattern" in tgt:
        targets = fill_pattern(tgt["pattern"], record)
    else:
        value = field_value(record, tgt["field"])
        if tgt.get("at_answer_index"):
            index = _answer_index(entry["answer_index"], record)
            if not 0 <= index < len(value):
                raise ValueError(f"answer index {index} outside {tgt['field']!r} ({len(value)} items)")
            value = value[index]
        if isinstance(value, (list, tuple)):
            if not value and "empty" in tgt:
                value = tgt["empty"]
            elif tgt.get("pick") == "first":
                if not value:
                    raise ValueError(f"field {tgt['field']!r} is an empty list")
                value = value[0]
            else:
                raise ValueError(f"field {tgt['field']!r} is a list; set targets.pick")
        if "round" in tgt:
            value = round(float(value), int(tgt["round"]))
            value = int(value) if int(tgt["round"]) == 0 else value
        targets = str(_label(value, tgt))
    return fill_pattern(entry["inputs"], record), targets, options


def load_muffin_hub(hub_id: str, *, task: str, config: str | None = None, split: str = "train",
                    on_bad_rows: str = "raise", stats: dict[str, Any] | None = None,
                    max_examples: int | None = None) -> datasets.Dataset:
    """A Muffin dataset straight from the hub (connected machines), converted to raw examples by
    its muffin_hub.yaml entry. `split` is a logical name (train/validation/test) the entry maps to
    the hub's own split name (e.g. anli's train_r1), or a hub split name used as is."""
    name, entry = muffin_hub_entry(hub_id, task=task, config=config)
    config = config if config is not None else entry.get("config")
    hub_split = (entry.get("splits") or {}).get(split, split)
    where = f"{hub_id}/{config}/{hub_split}" if config else f"{hub_id}/{hub_split}"
    filtered = 0

    def row(index: int | str, rec: Mapping[str, Any]) -> dict[str, Any] | None:
        nonlocal filtered
        converted = convert_muffin_record(entry, rec)
        if converted is None:
            filtered += 1
            return None
        inputs, targets, options = converted
        return _raw(task, inputs, targets, options=options, example_id=f"{task}:{index}",
                    source="muffin", provenance=f"{where}:{index}|muffin_hub.yaml#{name}")

    bad = _BadRows(f"hub {where} (task {task})", on_bad_rows, stats)
    rows = bad.collect(enumerate(_hub(hub_id, config, hub_split)), row, max_examples,
                       describe=lambda e: f"{type(e).__name__}: {e}")
    if stats is not None and filtered:
        stats["filtered_rows"] = stats.get("filtered_rows", 0) + filtered
    return _to_dataset(rows)


# ---------------------------------------------------------------------------------------------
# Synthetic suite (flan_nb.synthetic): thin adapter


def load_synthetic(family: str, n: int, *, seed: int = 0, split: str = "train") -> datasets.Dataset:
    """`n` examples of a synthetic family, raw schema + the family's template fields.

    Only training families may be loaded for split='train'; held-out families (the synthetic
    benchmarks) are refused here so they can never leak into a mixture.
    """
    from flan_nb import registry, synthetic

    if family not in synthetic.FAMILIES:
        raise registry.unknown(family, synthetic.FAMILIES, "synthetic family")
    if split == "train" and synthetic.family_info(family).held_out:
        raise ValueError(f"synthetic family {family!r} is held out (a benchmark family); it is "
                         f"never training data. Training families: {', '.join(synthetic.training_families())}")
    while True:
        try:
            ds = synthetic.as_dataset(family, n, seed, split)
            break
        except synthetic.NotEnoughExamples as exc:
            # some families have only a few thousand distinct items; take what exists, loudly
            if n <= 50:
                raise
            warnings.warn(f"synthetic family {family!r}: {exc}; retrying with n={n // 2}", stacklevel=2)
            n //= 2
    return ds.add_column("provenance", [f"synthetic:{family}:{split}:seed{seed}"] * len(ds))


# ---------------------------------------------------------------------------------------------
# Dispatch by registry task


def load_task(task: Any, data_root: str | Path | None, *, max_examples: int | None = None,
              on_bad_rows: str = "raise", stats: dict[str, Any] | None = None, seed: int = 0,
              synthetic_size: int = 2000, prefer_hub: bool = False) -> datasets.Dataset:
    """The raw examples of a registry task (a `registry.Task` or its id), local first, else hub."""
    from flan_nb import registry

    if isinstance(task, str):
        task = registry.load_registry().get(task)
    src = task.source
    kw = {"on_bad_rows": on_bad_rows, "stats": stats, "max_examples": max_examples}
    if task.collection == "synthetic":
        n = synthetic_size if max_examples is None else min(max_examples, synthetic_size)
        return load_synthetic(task.dataset, n, seed=seed)
    local = registry.local_path(task, Path(data_root)) if data_root else None
    if local is not None and local.is_file() and not prefer_hub:
        fmt = src.get("local_format")
        if fmt == "cot_tsv":
            return load_cot_tsv(local, task=task.id, **kw)
        if fmt == "niv2_json":
            return load_niv2(local, task=task.id, **kw)
        if fmt == "slice":
            return load_slice(local, task=task.id, **kw)
        raise DataFormatError(f"registry task {task.id}: unknown local_format {fmt!r}")
    hub = src.get("hub")
    if task.collection == "t0sf" and hub and data_root:
        templates = load_promptsource(Path(data_root) / src["templates"])
        return load_t0(hub, templates[src["template_name"]], task=task.id, hub_config=src.get("hub_config"),
                       seed=seed, **kw)
    if task.collection == "muffin" and hub:
        return load_muffin_hub(hub, task=task.id, config=src.get("hub_config"), **kw)
    where = f"{local} (absent)" if local else "no local file"
    raise FileNotFoundError(f"task {task.id} ({task.collection}): {where} and no usable hub source")
