"""Muffin (FLAN 2021 + Muffin additions, paper section 2.1) datasets from the Hugging Face hub.

The record mapping is data (`flan_nb/resources/muffin_hub.yaml`, a small pattern language described
in its header); this module validates it and turns one hub record into one raw example.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import datasets

from flan_nb.data.rows import BadRows, DataFormatError, load_hub, raw_example, to_dataset

# ---------------------------------------------------------------------------------------------
# Muffin from the hub: resources/muffin_hub.yaml maps each dataset's records to raw examples.
# The mapping is data (a small pattern language, see the YAML header); this is its interpreter.

MUFFIN_HUB_FILE = Path(__file__).resolve().parents[1] / "resources" / "muffin_hub.yaml"
_ENTRY_KEYS = {"hub", "config", "splits", "fields", "inputs", "targets", "options", "answer_index",
               "filter", "verified", "template_fields", "constants"}
# columns every raw example has; a template field may not reuse one of these names
_RAW_NAMES = {"task", "inputs", "targets", "rationale", "options", "example_id", "source", "provenance"}
_NAME = re.compile(r"^[A-Za-z_]\w*$")
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
        if value is None:  # never the text "None" in training data
            raise ValueError(f"field {match.group(1)!r} is null")
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
    named = entry.get("template_fields")
    if isinstance(named, Mapping):
        paths += [p for text in named.values() if isinstance(text, str) for p, _ in _pattern_paths(text)]
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
    errs += _check_named(where, entry)
    named = entry.get("template_fields")
    patterns = [entry["inputs"], *(named.values() if isinstance(named, Mapping) else ())]
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


def _check_named(where: str, entry: Mapping[str, Any]) -> list[str]:
    """Problems with an entry's template_fields (name -> pattern) and constants (name -> text)."""
    errs = []
    names: list[str] = []
    for key in ("template_fields", "constants"):
        value = entry.get(key, {})
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            errs.append(f"{where}: {key} must map field names to strings")
            continue
        names += list(value)
    for name in names:
        if not isinstance(name, str) or not _NAME.match(name) or name in _RAW_NAMES:
            errs.append(f"{where}: bad template field name {name!r} (an identifier other than "
                        f"{sorted(_RAW_NAMES)})")
    errs += [f"{where}: {n!r} is both a template field and a constant"
             for n in sorted({n for n in names if names.count(n) > 1})]
    return errs


def produced_fields(entry: Mapping[str, Any]) -> set[str]:
    """The string columns a raw example from this entry carries for templates: inputs, targets,
    the entry's template_fields and constants (options is a list, rendered as {options_block})."""
    return {"inputs", "targets", *(entry.get("template_fields") or {}), *(entry.get("constants") or {})}


def check_template_fields(task: str, entry: Mapping[str, Any], template_set: Any) -> list[str]:
    """Problems: fields `template_set` (a templates.TemplateSet) declares that the entry does not
    produce (each message names the hub file, the task, the field and the set's file)."""
    missing = sorted(set(template_set.fields) - produced_fields(entry))
    return [f"{MUFFIN_HUB_FILE}: entry {task!r} does not produce field {f!r} that its template "
            f"set {template_set.name!r} ({template_set.path}) declares; add it to the entry's "
            f"template_fields or constants" for f in missing]


def muffin_template_values(entry: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, str]:
    """The named template fields of one hub record (template_fields filled, then constants)."""
    values = {name: fill_pattern(text, record) for name, text in (entry.get("template_fields") or {}).items()}
    values.update({name: str(text) for name, text in (entry.get("constants") or {}).items()})
    return values


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

    from flan_nb import yaml_io

    try:
        doc = yaml_io.load_file(path)
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
        options = [x if x is None else str(x) for x in field_value(record, opts_spec)]
    elif isinstance(opts_spec, Mapping):
        options = [None if (v := field_value(record, p)) is None else str(v) for p in opts_spec["fields"]]
    else:
        options = list(opts_spec)
    if any(o is None for o in options):
        raise ValueError("an option is null")
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
        if value is None:
            raise ValueError(f"target field {tgt['field']!r} is null")
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
                    max_examples: int | None = None, template_set: str | None = None
                    ) -> datasets.Dataset:
    """A Muffin dataset straight from the hub (connected machines), converted to raw examples by
    its muffin_hub.yaml entry. `split` is a logical name (train/validation/test) the entry maps to
    the hub's own split name (e.g. anli's train_r1), or a hub split name used as is.

    Rows carry the entry's template_fields and constants as extra string columns. With
    `template_set` (the registry's set name) every field the set declares must be produced by
    the entry, checked before any download (DataFormatError naming file, task and field).
    """
    name, entry = muffin_hub_entry(hub_id, task=task, config=config)
    if template_set is not None:
        from flan_nb.data.templates import load_template_set

        errs = check_template_fields(name, entry, load_template_set(template_set))
        if errs:
            raise DataFormatError("\n".join(errs))
    named = sorted(produced_fields(entry) - {"inputs", "targets"})
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
        return raw_example(task, inputs, targets, options=options, example_id=f"{task}:{index}",
                    source="muffin", provenance=f"{where}:{index}|muffin_hub.yaml#{name}",
                    **muffin_template_values(entry, rec))

    bad = BadRows(f"hub {where} (task {task})", on_bad_rows, stats)
    rows = bad.collect(enumerate(load_hub(hub_id, config, hub_split)), row, max_examples,
                       describe=lambda e: f"{type(e).__name__}: {e}")
    if stats is not None and filtered:
        stats["filtered_rows"] = stats.get("filtered_rows", 0) + filtered
    return to_dataset(rows, {n: datasets.Value("string") for n in named})
