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

import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import datasets

from flan_nb.data.muffin_hub import load_muffin_hub
from flan_nb.data.promptsource import load_promptsource, load_t0
from flan_nb.data.rows import (
    BadField,
    BadRows,
    DataFormatError,
    is_local,
    load_hub,
    raw_example,
    read_json_document,
    read_json_lines,
    read_lines,
    require_text,
    to_dataset,
)

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
        return raw_example(task, question, answer, rationale=rationale, example_id=f"{task}:{number}",
                    source="cot", provenance=f"{path.name}:{number}")

    bad = BadRows(str(path), on_bad_rows, stats)
    return to_dataset(bad.collect(read_lines(path, bad), row, max_examples, describe=str))


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
    if is_local(source):
        path = Path(source)
        if path.is_dir():
            path = path / f"{split}.jsonl"
        bad = BadRows(str(path), on_bad_rows, stats)
        records: Iterable[tuple[int, Any]] = read_json_lines(path, bad)
        where = path.name
    else:
        bad = BadRows(f"hub {source} ({split})", on_bad_rows, stats)
        records = enumerate(load_hub(str(source), "main", split), start=1)
        where = f"{source}/{split}"
    def row(number: int | str, rec: Mapping[str, Any]) -> dict[str, Any]:
        rationale, final = parse_gsm8k_answer(rec["answer"])
        return raw_example(task, rec["question"], final, rationale=rationale,
                    example_id=f"{task}:{split}:{number}", source="gsm8k",
                    provenance=f"{where}:{number}")

    return to_dataset(bad.collect(records, row, max_examples,
                                   describe=lambda e: f"bad GSM8K record: {e!r}"))




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
    if not is_local(source):
        return _niv2_hub(str(source), split=split, task=task, on_bad_rows=on_bad_rows, stats=stats,
                         max_examples=max_examples)
    path = Path(source)
    task = task or path.stem
    doc = read_json_document(path)
    if not isinstance(doc, Mapping):
        raise DataFormatError(f"{path}: an NIv2 task file is a JSON object, got {type(doc).__name__}")
    for key in ("Definition", "Instances"):
        if doc.get(key) is None:
            raise DataFormatError(f"{path}: missing or null field {key!r} of an NIv2 task file")
    if not isinstance(doc["Instances"], list):
        raise DataFormatError(f"{path}: field 'Instances' must be a list")
    try:
        definition = require_text(" ".join(doc["Definition"]) if isinstance(doc["Definition"], list)
                                  else doc["Definition"], "Definition")
    except TypeError as exc:  # a list holding null / non-text, or BadField
        raise DataFormatError(f"{path}: {exc}") from None
    positives = doc.get("Positive Examples") or []
    pos = positives[0] if positives and isinstance(positives[0], Mapping) else {}
    # optional demonstration fields: null reads as absent, never as the text "None"
    pos = {k: "" if pos.get(k) is None else str(pos[k]) for k in ("input", "output", "explanation")}
    instances = doc["Instances"]
    start, stop = {"train": (NIV2_EVAL_INSTANCES, None), "eval": (0, NIV2_EVAL_INSTANCES),
                   "all": (0, None)}[split]
    def row(where: int | str, inst: Mapping[str, Any]) -> dict[str, Any]:
        outputs = inst["output"]
        target = outputs[0] if isinstance(outputs, list) else outputs
        if not isinstance(target, str):
            raise BadField(f"field `output` must be a string, got {type(target).__name__}")
        return raw_example(task, inst["input"], target, example_id=str(inst.get("id", f"{task}-{where}")),
                    source="niv2", provenance=f"{path.name}:{where}", definition=definition,
                    pos_input=pos["input"], pos_output=pos["output"], pos_explanation=pos["explanation"])

    bad = BadRows(str(path), on_bad_rows, stats)
    records = ((f"Instances[{i}]", inst) for i, inst in enumerate(instances[start:stop], start=start))
    return to_dataset(bad.collect(records, row, max_examples, errors=(KeyError, IndexError, TypeError),
                                   describe=_describe_niv2), NIV2_EXTRA)


def _describe_niv2(exc: BaseException) -> str:
    if isinstance(exc, BadField):
        return f"bad NIv2 instance: {exc}"
    return f"bad NIv2 instance: {exc!r}"


NIV2_EXTRA = {k: datasets.Value("string") for k in ("definition", "pos_input", "pos_output", "pos_explanation")}


def _niv2_hub(hub_id: str, *, split: str, task: str, on_bad_rows: str, stats: dict[str, Any] | None,
              max_examples: int | None) -> datasets.Dataset:
    ds = load_hub(hub_id, None, "test" if split == "eval" else "train")
    if task and "task_name" in ds.column_names:
        ds = ds.filter(lambda r: r["task_name"] == task)
    def row(index: int | str, rec: Mapping[str, Any]) -> dict[str, Any]:
        return raw_example(rec.get("task_name", task), rec["inputs"], rec["targets"],
                    example_id=str(rec.get("id", index)), source="niv2",
                    provenance=f"{hub_id}[{index}]", definition=rec.get("definition", ""),
                    pos_input="", pos_output="", pos_explanation="")

    bad = BadRows(f"hub {hub_id}", on_bad_rows, stats)
    return to_dataset(bad.collect(enumerate(ds), row, max_examples, errors=(KeyError, BadField),
                                   describe=lambda e: f"missing field {e}" if isinstance(e, KeyError)
                                   else str(e)), NIV2_EXTRA)


# ---------------------------------------------------------------------------------------------
# llm-foundry slices of Muffin / T0 datasets, converted to our schema

_LETTERS = "ABCDEFGHIJ"


def _text(rec: Mapping[str, Any], key: str) -> str:
    """rec[key] as text; null is a bad row, never the text "None"."""
    value = rec[key]
    if value is None:
        raise BadField(f"field `{key}` is null")
    return str(value)


def _slice_row(rec: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    """(inputs, targets, options) from the four llm-foundry formats."""
    if "query" in rec:  # multiple choice: {"query", "choices", "gold"}
        choices, gold, query = list(rec["choices"]), int(rec["gold"]), _text(rec, "query")
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
        cont = _text(rec, "continuation").strip()
        return f"Which is the better start of a sentence that ends with: \"{cont}\"", options[gold], options
    if "aliases" in rec:  # triviaqa
        return _strip_answer_cue(_text(rec, "context")), _text(rec, "answer"), []
    if "chain_of_thought" in rec:  # svamp / aqua
        return _text(rec, "context"), _text(rec, "answer"), []
    if "continuation" in rec:  # lambada: predict the last word
        return _text(rec, "context"), _text(rec, "continuation"), []
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
        return raw_example(task, inputs, targets, options=options, rationale=rationale,
                    example_id=f"{path.stem}:{number}", source="slice",
                    provenance=f"{path.name}:{number}")

    bad = BadRows(str(path), on_bad_rows, stats)
    return to_dataset(bad.collect(read_json_lines(path, bad), row, max_examples,
                                   errors=(KeyError, TypeError, ValueError),
                                   describe=lambda e: f"bad slice record: {e}"))


# ---------------------------------------------------------------------------------------------
# Synthetic suite (flan_nb.data.synthetic): thin adapter


def load_synthetic(family: str, n: int, *, seed: int = 0, split: str = "train") -> datasets.Dataset:
    """`n` examples of a synthetic family, raw schema + the family's template fields.

    Only training families may be loaded for split='train'; held-out families (the synthetic
    benchmarks) are refused here so they can never leak into a mixture.
    """
    from flan_nb.data import registry, synthetic

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

SLICE_FIELDS = frozenset({"inputs", "targets", "rationale"})  # string columns load_slice gives


def _check_slice_fields(task: Any) -> None:
    """A slice row has only inputs/targets/options: its template set may not need more."""
    from flan_nb.data.templates import load_template_set

    tset = load_template_set(task.template_set)
    extra = sorted(set(tset.fields) - SLICE_FIELDS)
    if extra:
        raise DataFormatError(f"registry task {task.id}: its local slice {task.source.get('local')} "
                              f"has no field(s) {extra} that template set {tset.name!r} "
                              f"({tset.path}) declares; slice-backed sets may use only "
                              f"{sorted(SLICE_FIELDS)}")


def load_task(task: Any, data_root: str | Path | None, *, max_examples: int | None = None,
              on_bad_rows: str = "raise", stats: dict[str, Any] | None = None, seed: int = 0,
              synthetic_size: int = 2000, prefer_hub: bool = False) -> datasets.Dataset:
    """The raw examples of a registry task (a `registry.Task` or its id), local first, else hub."""
    from flan_nb.data import registry

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
            _check_slice_fields(task)
            return load_slice(local, task=task.id, **kw)
        raise DataFormatError(f"registry task {task.id}: unknown local_format {fmt!r}")
    hub = src.get("hub")
    if task.collection == "t0sf" and hub and data_root:
        templates = load_promptsource(Path(data_root) / src["templates"])
        return load_t0(hub, templates[src["template_name"]], task=task.id, hub_config=src.get("hub_config"),
                       seed=seed, **kw)
    if task.collection == "muffin" and hub:
        return load_muffin_hub(hub, task=task.id, config=src.get("hub_config"),
                               template_set=task.template_set, **kw)
    where = f"{local} (absent)" if local else "no local file"
    raise FileNotFoundError(f"task {task.id} ({task.collection}): {where} and no usable hub source")
