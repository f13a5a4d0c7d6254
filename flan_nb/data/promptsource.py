"""promptsource templates (the T0 / T0-SF collection, Sanh et al. 2021): reading the YAML files and
rendering records through their sandboxed jinja2 templates.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from flan_nb.data.rows import (
    BadRows,
    DataFormatError,
    is_local,
    load_hub,
    raw_example,
    read_json_lines,
    to_dataset,
)

# ---------------------------------------------------------------------------------------------
# promptsource templates (T0-SF)


def _promptsource_loader() -> type:
    import yaml

    from flan_nb import yaml_io

    class Loader(yaml_io.Loader):
        """The project loader plus promptsource's !Template/!TemplateMetadata tags as maps."""

    def as_mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        return loader.construct_mapping(node, deep=True)

    Loader.add_constructor("!Template", as_mapping)
    Loader.add_constructor("!TemplateMetadata", as_mapping)
    return Loader


def read_promptsource_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    from flan_nb import yaml_io

    path = Path(path)
    try:
        doc = yaml_io.load_file(path, _promptsource_loader())
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
        if is_local(rows_or_source):
            path = Path(rows_or_source)
            bad = BadRows(str(path), on_bad_rows, stats)
            records: Iterable[tuple[Any, Mapping[str, Any]]] = read_json_lines(path, bad)
            where = path.name
        else:
            bad = BadRows(f"hub {rows_or_source}", on_bad_rows, stats)
            records = enumerate(load_hub(str(rows_or_source), hub_config, split))
            where = str(rows_or_source)
    else:
        bad = BadRows(f"rows for {task}", on_bad_rows, stats)
        records = enumerate(rows_or_source)
        where = "rows"
    apply = _template_renderer(template, random.Random(seed))

    def row(number: int | str, rec: Mapping[str, Any]) -> dict[str, Any] | None:
        rendered = apply(rec)
        if rendered is None:
            return None
        inputs, targets, options = rendered
        return raw_example(task, inputs, targets, options=options, example_id=f"{task}:{number}",
                    source="t0sf", provenance=f"{where}:{number}|{template.file}#{template.name}")

    # jinja raises many types (UndefinedError, TypeError, ...): any of them is a bad row
    return to_dataset(bad.collect(
        records, row, max_examples, errors=(Exception,),
        describe=lambda e: f"template {template.name!r} failed: {type(e).__name__}: {e}"))
