"""`flan-nb audit-templates`: does every template say what to do, does CoT ask for reasoning, what
did deduplication drop, what is missing (issue 11 part 7).

Each task's template set is rendered on a record shaped like its data: every declared field gets a
distinctive value and sets with options get two option texts. A rendered input "carries an
instruction" when something beyond those values is left (input_has_instruction). The audit is
per registered (non-held-out) task; duplicate and missing counts need the data root.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from flan_nb.data import fewshot, templates
from flan_nb.data.templates import OPTIONS_HEADERS

MIN_INSTRUCTION_WORDS = 3
_WORD = re.compile(r"[^\W\d_]+")  # a run of letters


def _remove(text: str, value: str) -> str:
    value = value.strip()
    if not value:
        return text
    # whole-word removal where the value starts/ends with a word character, so a short label
    # such as "no" does not eat the "no" inside "not"
    left = r"(?<!\w)" if value[0].isalnum() else ""
    right = r"(?!\w)" if value[-1].isalnum() else ""
    return re.sub(left + re.escape(value) + right, " ", text)


def instruction_words(rendered_input: str, field_values: Iterable[str],
                      options: Iterable[str] = ()) -> list[str]:
    """The words of `rendered_input` left after removing field values, options and headers.

    Longer strings are removed first so a value that contains another is removed whole.
    """
    strings = {str(v) for v in field_values} | {str(o) for o in options} | set(OPTIONS_HEADERS)
    text = rendered_input
    for value in sorted(strings, key=len, reverse=True):
        text = _remove(text, value)
    return _WORD.findall(text)


def input_has_instruction(rendered_input: str, field_values: Iterable[str],
                          options: Iterable[str] = ()) -> bool:
    """True if at least MIN_INSTRUCTION_WORDS words remain once the record's field values, its
    option texts and the options header are removed from `rendered_input` (see module doc)."""
    return len(instruction_words(rendered_input, field_values, options)) >= MIN_INSTRUCTION_WORDS


def _record(tset: templates.TemplateSet) -> tuple[dict[str, Any], list[str]]:
    """A record shaped like the set's data; every value a distinctive token no template contains."""
    values = {f: f"Zq{f.title().replace('_', '')}Value" for f in tset.fields}
    options = ["ZqOptionAlpha", "ZqOptionBeta"] if tset.has_options else []
    values["options"] = options
    values.setdefault("rationale", "ZqRationaleValue")
    return values, options


def audit_set(tset: templates.TemplateSet) -> dict[str, Any]:
    """Per template set: n templates, fraction of rendered inputs with an instruction (every
    non-inline template in zs_noopt and, with options, zs_opt), fraction with a reasoning cue."""
    record, options = _record(tset)
    field_values = [str(v) for k, v in record.items() if k != "options"]
    fmts = ("zs_noopt", "zs_opt") if tset.has_options else ("zs_noopt",)
    with_instr = total = cued = 0
    for t in tset.templates:
        if t.inline_fs:
            continue
        # a template that renders an instruction field (NIV2's definition, T0-SF's promptsource
        # text) carries that field's instruction, whatever words it adds around it
        instructed = any("{" + f + "}" in t.input for f in tset.instruction_fields)
        for fmt in fmts:
            r = templates.render(record, tset, fmt=fmt, cot=tset.has_cot, rng=random.Random(0),
                                 template_id=t.id)
            total += 1
            with_instr += instructed or input_has_instruction(r.inputs, field_values, options)
            cued += templates.has_reasoning_cue(r.inputs)
    return {"templates": len(tset.templates), "rendered": total,
            "instruction_fraction": with_instr / total if total else 0.0,
            "cue_fraction": cued / total if total else 0.0}


def _duplicates_and_missing(tasks: Sequence[Any], data_root: Path | None, cov: Any,
                            max_examples: int) -> tuple[dict[str, int], dict[str, str]]:
    from flan_nb.data import loaders

    how = dict(zip(cov["id"], cov["how"], strict=True))
    available = dict(zip(cov["id"], cov["available"], strict=True))
    dups: dict[str, int] = {}
    missing: dict[str, str] = {}
    for task in tasks:
        if not available.get(task.id):
            missing[task.id] = how.get(task.id, "missing")
            continue
        if task.collection == "synthetic":
            continue  # generated, distinct by construction
        try:
            ds = loaders.load_task(task, data_root, seed=0, max_examples=max_examples or None,
                                   on_bad_rows="skip")
        except (FileNotFoundError, NotImplementedError) as exc:
            missing[task.id] = str(exc).splitlines()[0]
            continue
        n = fewshot.dedupe_rows(ds.to_list())[1]
        if n:
            dups[task.id] = n
    return dups, missing


def audit(data_root: str | Path | None = None, *, max_examples: int = 0) -> dict[str, Any]:
    """The audit of the default registry as one JSON-friendly object (see module doc): keys
    `collections` (per-collection table rows), `templates_per_task`, `instruction_fraction`,
    `muffin_tasks_without_instruction`, `cot_cue_fraction` (by CoT dataset), `duplicates_dropped`
    and `missing` ({task: reason}; needs `data_root`, else every non-synthetic task is missing)."""
    from flan_nb.data import registry as registry_mod
    from flan_nb.data.formats import FormatRatios, Renderer

    reg = registry_mod.load_registry()
    tasks = [t for t in reg if not t.held_out]
    renderer = Renderer(FormatRatios(0.0, 0.0, 0.0, 0, 0))
    by_set: dict[str, dict[str, Any]] = {}
    per_task: dict[str, dict[str, Any]] = {}
    for t in tasks:
        tset = renderer.template_set(t)
        if tset.name not in by_set:
            by_set[tset.name] = audit_set(tset)
        per_task[t.id] = {**by_set[tset.name], "set": tset.name, "collection": t.collection}
    root = Path(data_root) if data_root else None
    cov = registry_mod.coverage(root, reg)
    dups, missing = _duplicates_and_missing(tasks, root, cov, max_examples)
    cot_cue = {t.dataset: per_task[t.id]["cue_fraction"] for t in tasks if t.collection == "cot"}
    return {
        "collections": _collection_rows(per_task, dups, missing),
        "templates_per_task": {k: v["templates"] for k, v in per_task.items()},
        "instruction_fraction": {k: round(v["instruction_fraction"], 4) for k, v in per_task.items()},
        "muffin_tasks_without_instruction": sorted(k for k, v in per_task.items()
                                                   if v["collection"] == "muffin" and v["instruction_fraction"] < 1.0),
        "cot_cue_fraction": dict(sorted(cot_cue.items())),
        "duplicates_dropped": dict(sorted(dups.items())),
        "missing": dict(sorted(missing.items())),
        "template_fallbacks": dict(sorted(renderer.fallbacks.items())),
        "data_root": str(root) if root else None,
    }


def _collection_rows(per_task: Mapping[str, Mapping[str, Any]], dups: Mapping[str, int],
                     missing: Mapping[str, str]) -> list[dict[str, Any]]:
    acc: dict[str, dict[str, Any]] = defaultdict(lambda: {"tasks": 0, "templates": 0, "instr": 0.0,
                                                          "cue": 0.0, "dups": 0, "missing": 0})
    for task, v in per_task.items():
        a = acc[v["collection"]]
        a["tasks"] += 1
        a["templates"] += v["templates"]
        a["instr"] += v["instruction_fraction"]
        a["cue"] += v["cue_fraction"]
        a["dups"] += dups.get(task, 0)
        a["missing"] += task in missing
    return [{"collection": c, "tasks": a["tasks"], "templates_per_task": round(a["templates"] / a["tasks"], 2),
             "inputs_with_instruction": round(a["instr"] / a["tasks"], 4),
             "cot_inputs_with_cue": round(a["cue"] / a["tasks"], 4) if c == "cot" else None,
             "duplicates_dropped": a["dups"], "tasks_missing": a["missing"]}
            for c, a in sorted(acc.items())]


def audit_table(report: Mapping[str, Any]) -> Any:
    """The per-collection rows of `audit()` as a DataFrame (notebook 01, the CLI)."""
    import pandas as pd

    return pd.DataFrame(report["collections"]).set_index("collection")


# ---------------------------------------------------------------------------------------------
# One rendered example per collection and format (notebook 01)

EXAMPLE_FORMATS = (("zs_noopt", "zs_noopt", False), ("zs_opt", "zs_opt", False), ("fs_noopt", "fs_noopt", False),
                   ("fs_opt", "fs_opt", False), ("zs_cot", "zs_opt", True), ("fs_cot", "fs_opt", True))
EXAMPLE_COLLECTIONS = ("muffin", "t0sf", "niv2", "cot")
_TRIES = 6  # local tasks tried per collection for one whose rows have answer options


def _shaped_pool(tset: templates.TemplateSet, n: int = 3) -> list[dict[str, Any]]:
    """`n` records shaped like the set's data, every value a readable placeholder."""
    pool = []
    for i in range(1, n + 1):
        # an instruction field (NIV2's definition) is the task's, the same in every record
        rec: dict[str, Any] = {f: f"<{f}>" if f in tset.instruction_fields else f"<{f} {i}>" for f in tset.fields}
        rec["options"] = [f"<option {i}a>", f"<option {i}b>"] if tset.has_options else []
        rec.setdefault("inputs", f"<inputs {i}>")
        rec["targets"] = rec["options"][0] if rec["options"] else f"<answer {i}>"
        rec.setdefault("rationale", f"<rationale {i}>")
        rec["example_id"] = str(i)
        pool.append(rec)
    return pool


def _example_pool(collection: str, reg: Any, root: Path | None, cov: Any, renderer: Any
                  ) -> tuple[Any, list[dict[str, Any]], str]:
    """(task, rows, where the rows come from): real local rows of the collection's first local
    task whose rows have answer options (else its first local task), else shaped records."""
    from flan_nb.data import loaders

    tasks = [t for t in reg if t.collection == collection and not t.held_out]
    if root is not None:
        ok = set(cov.loc[cov["available"], "id"])
        how = dict(zip(cov["id"], cov["how"], strict=True))
        found = None
        for task in [t for t in tasks if t.id in ok][:_TRIES]:
            try:
                rows = loaders.load_task(task, root, max_examples=20, on_bad_rows="skip").to_list()
            except (FileNotFoundError, NotImplementedError):
                continue
            rows = fewshot.dedupe_rows(rows)[0]
            if len(rows) >= 3 and (found is None or (any(r["options"] for r in rows[:3]) and not found[3])):
                found = (task, rows, f"real rows ({how[task.id]})", any(r["options"] for r in rows[:3]))
                if found[3]:
                    break
        if found is not None:
            return found[0], found[1], found[2]
    shaped = sorted(tasks, key=lambda t: not renderer.template_set(t).has_options)
    task = shaped[0]
    return task, _shaped_pool(renderer.template_set(task)), "shaped record (no local data)"


def rendered_examples(data_root: str | Path | None = None, *,
                      collections: Sequence[str] = EXAMPLE_COLLECTIONS) -> Any:
    """One rendered example per collection in each format: zs/fs x noopt/opt, and zs/fs with a
    chain of thought where the collection has rationales (CoT). Uses real rows of one local task
    per collection when `data_root` (the offline mirror) has them, else records shaped like the
    task's data with placeholder values; the `data` column says which.

    Returns a DataFrame with columns collection, format (requested), rendered_format (after the
    fallbacks: *_opt renders *_noopt without options), cot, task, template_id, data, inputs,
    targets. Few-shot rows use two other rows of the same task as exemplars."""
    import pandas as pd

    from flan_nb.data import registry as registry_mod
    from flan_nb.data.formats import FormatRatios, Renderer

    reg = registry_mod.load_registry()
    root = Path(data_root) if data_root else None
    cov = registry_mod.coverage(root, reg) if root is not None else None
    renderer = Renderer(FormatRatios(0.0, 0.0, 0.0, 0, 0))
    out = []
    for collection in collections:
        task, pool, data = _example_pool(collection, reg, root, cov, renderer)
        tset = renderer.template_set(task)
        for label, fmt, cot in EXAMPLE_FORMATS:
            if cot and not (tset.has_cot and pool[0].get("rationale")):
                continue
            r = templates.render(pool[0], tset, fmt=fmt, cot=cot, rng=random.Random(f"{task.id}/{label}"),
                                 exemplars=pool[1:3] if fmt.startswith("fs") else ())
            out.append({"collection": collection, "format": label, "rendered_format": r.format, "cot": r.cot,
                        "task": task.id, "template_id": r.template_id, "data": data, "inputs": r.inputs,
                        "targets": r.targets})
    return pd.DataFrame(out)
