"""Muffin instruction templates (issue 11 part 1): every template of every Muffin task, rendered on
a record shaped like the task's data in every format, says what to do with the record."""

from __future__ import annotations

import random
import re

import pytest

from flan_nb.data import formats, loaders, muffin_hub, registry
from flan_nb.data import templates as T
from flan_nb.data.template_audit import input_has_instruction, instruction_words

REG = registry.load_registry()
MUFFIN = sorted(t.id for t in REG.tasks.values() if t.collection == "muffin")
SPEC = muffin_hub.load_muffin_hub_spec()
TRANSLATION = [t for t in MUFFIN if REG.get(t).category == "Translation"]
# hub entries whose answer is one of a fixed list of labels (a closed set)
CLOSED = sorted(t for t in MUFFIN if isinstance(SPEC.get(t, {}).get("options"), list))


def _slice_backed(task: registry.Task) -> bool:
    return task.source.get("local_format") == "slice"


def _options(task: registry.Task, tset: T.TemplateSet, i: int) -> list[str]:
    entry = SPEC.get(task.id)
    if entry is not None and isinstance(entry.get("options"), list):
        return list(entry["options"])
    if tset.has_options:  # options read from each record (choices, endings, entities, ...)
        return [f"quokka option {i} {k}" for k in ("one", "two", "three")]
    return []


def shaped_record(task_id: str, i: int = 0) -> dict:
    """A record with the task's declared fields: the hub entry's constants where it has them,
    distinctive text for every other field, options as the task's data has them."""
    task = REG.get(task_id)
    tset = T.load_template_set(task.template_set)
    constants = (SPEC.get(task_id) or {}).get("constants") or {}
    rec = {f: constants.get(f, f"zebu {f} wombat {i}") for f in tset.fields if f != "targets"}
    rec.setdefault("inputs", f"zebu inputs wombat {i}")
    rec["options"] = _options(task, tset, i)
    rec["targets"] = rec["options"][i % len(rec["options"])] if rec["options"] else f"zebu target {i}"
    rec["rationale"] = ""
    return rec


def _values(*recs: dict) -> list[str]:
    return [str(v) for r in recs for k, v in r.items() if k != "options" and isinstance(v, str)]


def test_every_muffin_task_has_its_own_instruction_set():
    assert len(MUFFIN) == 80
    for tid in MUFFIN:
        tset = T.load_template_set(REG.get(tid).template_set)
        assert tset.name.startswith("muffin/"), tid
        assert len(tset.templates) >= 5, f"{tid}: only {len(tset.templates)} templates"
        assert len({t.input for t in tset.templates}) == len(tset.templates), tid


@pytest.mark.parametrize("task_id", MUFFIN)
def test_every_template_renders_an_instruction_in_every_format(task_id):
    tset = T.load_template_set(REG.get(task_id).template_set)
    ex, shot = shaped_record(task_id, 0), shaped_record(task_id, 1)
    values, options = _values(ex, shot), ex["options"] + shot["options"]
    for template in tset.templates:
        for fmt in T.FORMATS:
            r = T.render(ex, tset, fmt=fmt, rng=random.Random(0), template_id=template.id,
                         exemplars=[shot] if fmt.startswith("fs") else ())
            assert input_has_instruction(r.inputs, values, options), (
                f"{task_id} {template.id} {fmt}: only {instruction_words(r.inputs, values, options)} "
                f"beyond the record in:\n{r.inputs}")
            assert r.targets == ex["targets"]
            if ex["options"] and fmt.endswith("_opt"):
                assert all(f"- {o}" in r.inputs for o in ex["options"])


@pytest.mark.parametrize("task_id", TRANSLATION)
def test_translation_templates_name_both_languages(task_id):
    tset = T.load_template_set(REG.get(task_id).template_set)
    ex = shaped_record(task_id)
    for template in tset.templates:
        r = T.render(ex, tset, fmt="zs_noopt", rng=random.Random(0), template_id=template.id)
        assert ex["source_language"] in r.inputs and ex["target_language"] in r.inputs, template.id
    if task_id in SPEC:  # real language names, not placeholders
        assert SPEC[task_id]["constants"]["target_language"] == "English"
        assert SPEC[task_id]["constants"]["source_language"] in r.inputs


def _label_named(label: str, text: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(label.lower()) + r"(?!\w)", text.lower()) is not None


@pytest.mark.parametrize("task_id", CLOSED)
def test_closed_label_sets_are_named_without_options(task_id):
    """In *_noopt formats the instruction itself names the labels (or the numeric range)."""
    tset = T.load_template_set(REG.get(task_id).template_set)
    ex = shaped_record(task_id)
    labels = ex["options"]
    numeric = all(o.isdigit() for o in labels)
    for template in tset.templates:
        r = T.render(ex, tset, fmt="zs_noopt", rng=random.Random(0), template_id=template.id)
        if numeric:
            assert min(labels, key=int) in r.inputs and max(labels, key=int) in r.inputs, template.id
        else:
            missing = [o for o in labels if not _label_named(o, r.inputs)]
            assert not missing, f"{task_id} {template.id} does not name {missing}:\n{r.inputs}"


def test_declared_fields_are_produced_by_the_data():
    checked = 0
    for tid in MUFFIN:
        task = REG.get(tid)
        tset = T.load_template_set(task.template_set)
        if tid in SPEC:
            assert muffin_hub.check_template_fields(tid, SPEC[tid], tset) == []
            checked += 1
        if _slice_backed(task):
            assert set(tset.fields) <= loaders.SLICE_FIELDS, tid
    assert checked == len(SPEC) == 67  # the other 13 have no hub mapping


def test_hub_load_names_a_missing_template_field(monkeypatch):
    monkeypatch.setattr(muffin_hub, "load_hub", lambda *a: pytest.fail("checked before loading"))
    with pytest.raises(muffin_hub.DataFormatError) as err:
        muffin_hub.load_muffin_hub("nyu-mll/glue", task="cola", template_set="muffin/aeslc")
    msg = str(err.value)
    assert "muffin_hub.yaml" in msg and "'cola'" in msg and "'body'" in msg and "aeslc" in msg


def test_hub_entry_template_field_names_are_validated():
    entry = {"hub": "x", "fields": ["q"], "inputs": "{q}", "targets": {"field": "q"},
             "template_fields": {"inputs": "{q}", "text": "{r}"}, "constants": {"text": "a"}}
    errs = "\n".join(muffin_hub.check_muffin_hub_entry("e", entry))
    assert "bad template field name 'inputs'" in errs and "'r'" in errs
    assert "'text' is both a template field and a constant" in errs


def test_the_audit_definition_can_fail():
    bare = T.load_template_set("muffin")  # the old generic wrapper: bare {inputs}
    ex = {"inputs": "Ein Hund läuft über die Wiese.", "targets": "A dog runs.", "options": []}
    r = T.render(ex, bare, fmt="zs_noopt", rng=random.Random(0), template_id="muffin1")
    assert not input_has_instruction(r.inputs, _values(ex), [])
    # labels are removed whole-word only: "no" does not eat the "no" of "not"
    assert instruction_words("Answer yes or no, not maybe.", [], ["yes", "no"]) == ["Answer", "or",
                                                                                  "not", "maybe"]
    assert not input_has_instruction("OPTIONS:\n- yes\n- no\nzebu", ["zebu"], ["yes", "no"])


def _t0_task(collection: str) -> registry.Task:
    return registry.Task(id=f"{collection}_x", collection=collection, dataset="x", category="",
                         language="en", source={}, size=None, license="", held_out=False,
                         template_set="t0sf")


def test_t0sf_choices_already_in_the_text_are_not_repeated():
    ratios = formats.FormatRatios(fs_fraction=0.0, opt_fraction=1.0, cot_fraction=0.0,
                                  max_exemplars=0, max_input_tokens=0)
    listed = {"inputs": "Pick one: red, green or Blue. Which colour is the sky?", "targets": "blue",
              "options": ["red", "green", "blue"]}
    unlisted = {**listed, "inputs": "Which colour is the sky?"}
    renderer = formats.Renderer(ratios)
    t0 = _t0_task("t0sf")
    inputs, _, _, fmt, _ = renderer.render(t0, 0, [listed], random.Random(0))
    assert fmt == "zs_noopt" and inputs.count("green") == 1
    assert renderer.options_already_listed == {t0.id: 1}
    _, _, _, fmt, _ = renderer.render(t0, 0, [unlisted], random.Random(0))
    assert fmt == "zs_opt" and renderer.options_already_listed == {t0.id: 1}
    # only promptsource-rendered T0-SF text is checked: a Muffin field may mention a label by chance
    _, _, _, fmt, _ = renderer.render(_t0_task("muffin"), 0, [listed], random.Random(0))
    assert fmt == "zs_opt"
