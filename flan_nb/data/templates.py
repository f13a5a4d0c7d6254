"""Instruction templates: load validated template sets and render examples in the four formats.

A template set is a YAML file in `flan_nb/resources/templates/<name>.yaml`:

```yaml
name: word_sorting          # must equal the file stem
fields: [words, targets]    # every placeholder the templates may use
has_options: false          # may templates use {options_block}?
has_cot: true               # does every template carry a cot_target?
templates:
  - id: ws1
    input: "Put these words in alphabetical order: {words}"
    target: "{targets}"
    cot_target: "{rationale} So the answer is {targets}."
    inline_fs: false        # optional; true = the input embeds one worked example (NIv2 style)
```

Placeholders are `str.format` names. `{options_block}` is computed: in *_opt formats it becomes
an options header drawn at random from OPTIONS_HEADERS followed by "- option" lines; in *_noopt
formats it disappears together with the whitespace before it. A template that does not name
`{options_block}` gets the block appended when an *_opt format is rendered for an example with
options, so `passthrough`-style sets still show the choices.

Format semantics (paper §2.1, Fig. 3): zs = instruction + input; fs = exemplars rendered with the
same template, joined by a randomly chosen delimiter style, then the query. `Rendered.format` is
the format actually produced: an *_opt request for an example without options (or for a set
with has_options: false, whose inputs carry any choices themselves) yields *_noopt,
and an fs request whose exemplars do not fit `max_input_tokens` (or that has none) falls back to
zs with `n_exemplars == 0`.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flan_nb import yaml_io

FORMATS = ("zs_noopt", "zs_opt", "fs_noopt", "fs_opt")
COMPUTED_FIELDS = frozenset({"options_block"})
TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "resources" / "templates"
COT_CUES_FILE = TEMPLATE_DIR.parent / "cot_cues.yaml"

# Our own candidate headers for the options block (the paper picks one at random per example).
OPTIONS_HEADERS = (
    "OPTIONS:", "Options:", "Choose from:", "Possible answers:", "Pick one of the following:",
    "Answer choices:", "Select from:", "Available choices:", "Candidates:", "Your options are:",
)


@dataclass(frozen=True)
class ExemplarStyle:
    """How one few-shot exemplar and the final query are wrapped and joined."""

    name: str
    input_prefix: str
    target_prefix: str  # between an exemplar's input and its target
    query_suffix: str  # after the final query's input (the open answer slot)
    separator: str  # between consecutive blocks


# Exemplars are always set apart by at least a blank line: a single newline between one worked
# example's answer and the next question reads as one run-on text.
EXEMPLAR_STYLES = (
    ExemplarStyle("plain2", "", "\n", "", "\n\n"),
    ExemplarStyle("plain3", "", "\n", "", "\n\n\n"),
    ExemplarStyle("qa", "Q: ", "\nA: ", "\nA:", "\n\n"),
    ExemplarStyle("question_answer", "Question: ", "\nAnswer: ", "\nAnswer:", "\n\n"),
    ExemplarStyle("input_output", "Input: ", "\nOutput: ", "\nOutput:", "\n\n"),
    ExemplarStyle("problem_solution", "Problem: ", "\nSolution: ", "\nSolution:", "\n\n\n"),
    ExemplarStyle("dashes", "", "\n", "", "\n---\n"),
)


# A rendered input that already has a labelled line ("Question: ...", "Premise: ...") or already
# ends in an open answer slot ("...\nAnswer:") gets an unlabelled style: a labelled one would
# print "Problem: Question: ..." or "Answer:\nA: ...".
_OPENING_LABEL = re.compile(r"^\s*[A-Z][A-Za-z ]{0,24}:", re.M)
_OPEN_SLOT = re.compile(r"(?:^|\n)\s*[A-Z][A-Za-z ]{0,24}:\s*$")


# after an open slot ("Output:") the worked answer follows on the same line
_SLOT_STYLES = (
    ExemplarStyle("slot2", "", " ", "", "\n\n"),
    ExemplarStyle("slot3", "", " ", "", "\n\n\n"),
    ExemplarStyle("slot_dashes", "", " ", "", "\n---\n"),
)


# a labelled query ("Question: ...", possibly with an options list) gets no second label, but its
# answer is labelled, so it cannot be read as one more option
_ANSWER_STYLES = (
    ExemplarStyle("answer2", "", "\nAnswer: ", "\nAnswer:", "\n\n"),
    ExemplarStyle("answer3", "", "\nAnswer: ", "\nAnswer:", "\n\n\n"),
    ExemplarStyle("a_dashes", "", "\nA: ", "\nA:", "\n---\n"),
)


def exemplar_styles(query: str) -> tuple[ExemplarStyle, ...]:
    """The exemplar styles that fit a rendered query (see _OPENING_LABEL)."""
    if _OPEN_SLOT.search(query):
        return _SLOT_STYLES
    if _OPENING_LABEL.search(query):
        return _ANSWER_STYLES
    return EXEMPLAR_STYLES


class TemplateError(ValueError):
    """A template file or a render request is invalid; the message names file/template/field."""


@dataclass(frozen=True)
class Template:
    id: str
    input: str
    target: str
    cot_target: str | None = None
    inline_fs: bool = False


@dataclass(frozen=True)
class TemplateSet:
    name: str
    fields: tuple[str, ...]
    has_options: bool
    has_cot: bool
    templates: tuple[Template, ...]
    path: str = ""
    # fields whose value is itself an instruction (NIV2's task definition, T0-SF's
    # promptsource-rendered text): the template audit does not count them as bare record content
    instruction_fields: tuple[str, ...] = ()

    def get(self, template_id: str) -> Template:
        for t in self.templates:
            if t.id == template_id:
                return t
        raise TemplateError(f"template set {self.name!r} ({self.path}) has no template "
                            f"{template_id!r}; ids: {self.ids}")

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.templates]


@dataclass(frozen=True)
class Rendered:
    inputs: str
    targets: str
    template_id: str
    format: str
    cot: bool
    n_exemplars: int


# ---------------------------------------------------------------- loading and validation

_TOP_KEYS = {"name", "fields", "has_options", "has_cot", "templates", "description",
             "instruction_fields"}
_TEMPLATE_KEYS = {"id", "input", "target", "cot_target", "inline_fs"}


def _placeholders(text: str, where: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:  # e.g. a lone "{" or "}"
        raise TemplateError(f"{where}: bad placeholder syntax ({exc}); write literal braces as "
                            "{{ and }}") from exc
    names = []
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            raise TemplateError(f"{where}: placeholder {{{name}}} must be a plain field name "
                                "(no indexing, conversion or format spec)")
        names.append(name)
    return names


def _template_lines(text: str) -> list[int]:
    """1-based line of each item under `templates:` (for error messages); [] if not found."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if key.value == "templates" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def load_template_file(path: str | Path) -> TemplateSet:
    """Load and validate one template YAML file (uncached; `load_template_set` caches by name)."""
    path = Path(path)
    try:
        text = yaml_io.read_text(path)
    except OSError as exc:
        raise TemplateError(f"cannot read template file {path}: {exc}") from exc
    except yaml_io.YamlError as exc:
        raise TemplateError(str(exc)) from None
    try:
        data = yaml_io.load_text(text, str(path))
    except yaml_io.YamlError as exc:
        raise TemplateError(str(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise TemplateError(f"{where}: malformed YAML: {problem}") from exc
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise TemplateError(f"{path}: unknown key(s) {sorted(unknown)}; allowed {sorted(_TOP_KEYS)}")
    for key, typ in (("name", str), ("fields", list), ("has_options", bool), ("has_cot", bool),
                     ("templates", list)):
        if not isinstance(data.get(key), typ):
            raise TemplateError(f"{path}: key {key!r} must be a {typ.__name__}, "
                                f"got {data.get(key)!r}")
    if data["name"] != path.stem:
        raise TemplateError(f"{path}: name {data['name']!r} must equal the file name {path.stem!r}")
    fields = tuple(str(f) for f in data["fields"])
    if not data["templates"]:
        raise TemplateError(f"{path}: 'templates' is empty")
    allowed = set(fields) | COMPUTED_FIELDS
    lines = _template_lines(text)
    templates, seen = [], set()
    for i, raw in enumerate(data["templates"]):
        line = f":{lines[i]}" if i < len(lines) else ""
        if not isinstance(raw, dict):
            raise TemplateError(f"{path}{line}: template #{i} must be a mapping")
        tid = str(raw.get("id", ""))
        where = f"{path}{line}: template {tid or '#' + str(i)!r}"
        if not tid:
            raise TemplateError(f"{where}: missing 'id'")
        if tid in seen:
            raise TemplateError(f"{where}: duplicate template id")
        seen.add(tid)
        bad = set(raw) - _TEMPLATE_KEYS
        if bad:
            raise TemplateError(f"{where}: unknown key(s) {sorted(bad)}")
        for key in ("input", "target"):
            if not isinstance(raw.get(key), str):
                raise TemplateError(f"{where}: {key!r} must be a string")
        cot_target = raw.get("cot_target")
        if data["has_cot"] and not isinstance(cot_target, str):
            raise TemplateError(f"{where}: set has_cot is true but the template has no cot_target")
        if not data["has_cot"] and cot_target is not None:
            raise TemplateError(f"{where}: cot_target given but the set has has_cot: false")
        for key in ("input", "target", "cot_target"):
            if raw.get(key) is None:
                continue
            for name in _placeholders(raw[key], f"{where} {key}"):
                if name not in allowed:
                    raise TemplateError(f"{where}: {key} uses field {{{name}}} which is not in "
                                        f"'fields' {list(fields)} nor computed "
                                        f"{sorted(COMPUTED_FIELDS)}")
                if name == "options_block" and (key != "input" or not data["has_options"]):
                    raise TemplateError(f"{where}: {key} uses {{options_block}} but only inputs "
                                        "of sets with has_options: true may")
        templates.append(Template(tid, raw["input"], raw["target"], cot_target,
                                  bool(raw.get("inline_fs", False))))
    instruction_fields = tuple(str(f) for f in data.get("instruction_fields") or ())
    if set(instruction_fields) - set(fields):
        raise TemplateError(f"{path}: instruction_fields {sorted(set(instruction_fields) - set(fields))} "
                            f"are not in 'fields' {list(fields)}")
    return TemplateSet(data["name"], fields, data["has_options"], data["has_cot"],
                       tuple(templates), str(path), instruction_fields)


@functools.cache
def load_template_set(name: str) -> TemplateSet:
    """The validated template set `resources/templates/<name>.yaml` (cached).

    `name` may name a set in a subfolder, e.g. "muffin/cola" (the per-task Muffin sets); the
    file's own `name` key is its stem ("cola"), the returned set's name is the qualified one.
    """
    path = TEMPLATE_DIR / f"{name}.yaml"
    if not _SET_NAME.match(name) or not path.is_file():
        raise TemplateError(f"no template set {name!r} (looked for {path}); available: "
                            f"{', '.join(available_template_sets())}")
    tset = load_template_file(path)
    return dataclasses.replace(tset, name=name) if tset.name != name else tset


_SET_NAME = re.compile(r"^[A-Za-z0-9_]+(/[A-Za-z0-9_]+)?$")


def available_template_sets() -> list[str]:
    """Every set name: top-level stems, then "<folder>/<stem>" for one level of subfolders."""
    top = [p.stem for p in TEMPLATE_DIR.glob("*.yaml")]
    sub = [f"{p.parent.name}/{p.stem}" for p in TEMPLATE_DIR.glob("*/*.yaml")]
    return sorted(top) + sorted(sub)


@functools.cache
def cot_cues() -> tuple[str, ...]:
    """The lower-cased reasoning-cue phrases of resources/cot_cues.yaml ("step by step", ...)."""
    data = yaml_io.load_file(COT_CUES_FILE) or {}
    cues = data.get("cues") if isinstance(data, dict) else None
    if not isinstance(cues, list) or not cues or not all(isinstance(c, str) and c.strip() for c in cues):
        raise TemplateError(f"{COT_CUES_FILE}: expected a non-empty list of strings under 'cues'")
    return tuple(c.strip().lower() for c in cues)


def has_reasoning_cue(text: str) -> bool:
    """True if `text` asks for reasoning: it contains one of `cot_cues()` (case-insensitive)."""
    low = text.lower()
    return any(cue in low for cue in cot_cues())


# ---------------------------------------------------------------- rendering


def whitespace_tokens(text: str) -> int:
    return len(text.split())


def options_listed_in(text: str, options: Sequence[str]) -> bool:
    """True if every (non-empty) option already appears in `text`, case-insensitively: the text
    lists its own choices (promptsource T0-SF renders do) and an options block would repeat them."""
    opts = [str(o).strip().lower() for o in options if str(o).strip()]
    lowered = text.lower()
    return bool(opts) and all(o in lowered for o in opts)


def options_block(header: str, options: Sequence[str]) -> str:
    return header + "\n" + "\n".join(f"- {o}" for o in options)


_DROP_BLOCK = re.compile(r"[ \t]*\n*[ \t]*\{options_block\}")


def _fill(text: str, values: Mapping[str, Any], tset: TemplateSet, t: Template, part: str) -> str:
    names = _placeholders(text, f"{tset.path}: template {t.id!r} {part}")
    missing = [n for n in names if n not in values]
    if missing:
        raise TemplateError(f"template set {tset.name!r}, template {t.id!r}: the example has no "
                            f"field {missing[0]!r} (needed by its {part})")
    return text.format_map({n: values[n] for n in names})


def _render_pair(example: Mapping[str, Any], tset: TemplateSet, t: Template, header: str | None,
                 cot: bool) -> tuple[str, str]:
    options = list(example.get("options") or [])
    values = dict(example)
    template_input = t.input
    if header and options:
        values["options_block"] = options_block(header, options)
        if "{options_block}" not in template_input:
            template_input = template_input.rstrip() + "\n\n{options_block}"
    else:
        template_input = _DROP_BLOCK.sub("", template_input)
    inputs = _fill(template_input, values, tset, t, "input").strip()
    if cot:
        if not str(example.get("rationale") or "").strip():
            raise TemplateError(f"template set {tset.name!r}, template {t.id!r}: cot=True needs a "
                                "non-empty field 'rationale' in the example")
        targets = _fill(t.cot_target or "", values, tset, t, "cot_target")
    else:
        targets = _fill(t.target, values, tset, t, "target")
    return inputs, targets.strip()


def _split_instruction(t: Template, tset: TemplateSet) -> tuple[str, Template]:
    """(instruction head, the rest as a template) for few-shot prompts: the head is every line
    up to the last one naming an instruction field (NIV2's `{definition}`), so a task's
    instruction is written once and not before every exemplar. ("", t) when there is none."""
    lines = t.input.split("\n")
    marks = [i for i, line in enumerate(lines)
             if any("{" + f + "}" in line for f in tset.instruction_fields)]
    rest = "\n".join(lines[marks[-1] + 1:]).strip("\n") if marks else ""
    if not marks or "{" not in rest:
        return "", t
    return "\n".join(lines[:marks[-1] + 1]), dataclasses.replace(t, input=rest)


def _fit_exemplars(shots: Sequence[tuple[str, str]], style: ExemplarStyle, query: str, budget: int,
                   count: Callable[[str], int], assemble: Callable[[int], str]) -> int:
    """The most leading exemplars whose assembled prompt counts <= budget.

    Blocks are counted one by one (a tokenizer call per block, not per candidate prompt); the
    sum is then checked on the assembled text, which can differ at block joins.
    """
    sizes = [count(style.input_prefix + i + style.target_prefix + o + style.separator) for i, o in shots]
    room = budget - count(style.input_prefix + query + style.query_suffix)
    k = 0
    while k < len(sizes) and room - sizes[k] >= 0:
        room -= sizes[k]
        k += 1
    while k > 0 and count(assemble(k)) > budget:
        k -= 1
    return k


def render(
    example: Mapping[str, Any],
    tset: TemplateSet,
    *,
    fmt: str,
    cot: bool = False,
    rng: random.Random,
    template_id: str | None = None,
    exemplars: Sequence[Mapping[str, Any]] = (),
    max_input_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> Rendered:
    """Render `example` with one template of `tset` in format `fmt` (see module docstring).

    Random choices (template, options header, exemplar style) come from `rng` in a fixed order,
    so the same rng state gives the same output. Exemplars are pruned from the end until the
    input fits `max_input_tokens` as measured by `count_tokens` (default: whitespace words).
    """
    if fmt not in FORMATS:
        raise TemplateError(f"unknown format {fmt!r}; use one of {FORMATS}")
    if cot and not tset.has_cot:
        raise TemplateError(f"template set {tset.name!r} ({tset.path}) has no chain-of-thought "
                            "targets (has_cot: false)")
    count = count_tokens or whitespace_tokens
    few_shot = fmt.startswith("fs")
    # Sets with has_options: false (e.g. CoT data whose inputs already list the choices) never
    # get a second, computed options block.
    has_opts = fmt.endswith("_opt") and bool(example.get("options")) and tset.has_options
    opt_suffix = "opt" if has_opts else "noopt"

    regular = [t for t in tset.templates if not t.inline_fs]
    if tset.has_cot and not cot and template_id is None:
        # a bare answer must not follow a request for reasoning: answer-only renders of a CoT set
        # use its templates without a reasoning cue (when it has any)
        regular = [t for t in regular if not has_reasoning_cue(t.input)] or regular
    inline = [t for t in tset.templates if t.inline_fs]
    if template_id is not None:
        template = tset.get(template_id)
        if template.inline_fs and not few_shot:
            raise TemplateError(f"template set {tset.name!r}: template {template_id!r} embeds a "
                                f"worked example (inline_fs); use an fs_* format, not {fmt!r}")
    elif few_shot and not exemplars and inline:
        template = rng.choice(inline)
    else:
        if not regular:
            raise TemplateError(f"template set {tset.name!r} has only inline few-shot templates; "
                                f"format {fmt!r} with {len(exemplars)} exemplars cannot use them")
        template = rng.choice(regular)
    header = rng.choice(OPTIONS_HEADERS) if has_opts else None

    def zero_shot(t: Template) -> Rendered:
        inp, tgt = _render_pair(example, tset, t, header, cot)
        return Rendered(inp, tgt, t.id, f"zs_{opt_suffix}", cot, 0)

    if template.inline_fs:
        inp, tgt = _render_pair(example, tset, template, header, cot)
        if max_input_tokens is None or count(inp) <= max_input_tokens or not regular:
            return Rendered(inp, tgt, template.id, f"fs_{opt_suffix}", cot, 1)
        return zero_shot(rng.choice(regular))
    if not few_shot or not exemplars:
        return zero_shot(template)

    # the task's own instruction (NIV2's definition) is stated once, above the worked examples
    head_input, block = _split_instruction(template, tset)
    head = _fill(head_input, dict(example), tset, template, "input").strip() if head_input else ""
    query, target = _render_pair(example, tset, block, header, cot)
    shots = [_render_pair(ex, tset, block, header, cot) for ex in exemplars]
    style = rng.choice(exemplar_styles(query))

    def assemble(k: int) -> str:
        blocks = [style.input_prefix + i + style.target_prefix + o for i, o in shots[:k]]
        blocks.append(style.input_prefix + query + style.query_suffix)
        text = style.separator.join(blocks)
        return f"{head}\n\n{text}" if head else text

    k = len(shots)
    if max_input_tokens is not None:
        k = _fit_exemplars(shots, style, query, max_input_tokens, count, assemble)
    if k == 0:
        return zero_shot(template)
    return Rendered(assemble(k), target, template.id, f"fs_{opt_suffix}", cot, k)
