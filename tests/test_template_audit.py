"""`flan-nb audit-templates` and the shared instruction rule (issue 11 part 7)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from flan_nb import cli
from flan_nb.data import template_audit as A
from flan_nb.data import templates as T

template_audit = A
DATA = Path(os.environ.get("FLAN_NB_DATA", "/work/shared/data"))


def test_input_has_instruction_rule():
    fields, options = ["Guten Morgen", "Good morning"], ["yes", "no"]
    assert not A.input_has_instruction("Guten Morgen", fields, options)
    assert not A.input_has_instruction("Guten Morgen\n\nOptions:\n- yes\n- no", fields, options)
    assert not A.input_has_instruction("Input: Guten Morgen\nOutput:", fields, options)  # 2 words
    assert A.input_has_instruction("Translate this German sentence into English: Guten Morgen", fields, options)


def test_audit_set_counts_cues_and_instructions():
    cot = A.audit_set(T.load_template_set("gsm8k"))
    assert cot["templates"] == 10 and cot["cue_fraction"] >= 0.8
    bare = A.audit_set(T.load_template_set("passthrough"))
    assert bare["instruction_fraction"] < 1.0


def test_cli_json_has_the_required_keys(capsys, monkeypatch):
    monkeypatch.delenv("FLAN_NB_DATA", raising=False)
    assert cli.main(["audit-templates", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("muffin_tasks_without_instruction", "templates_per_task", "cot_cue_fraction",
                "duplicates_dropped", "missing"):
        assert key in report
    assert all(v >= 0.8 for v in report["cot_cue_fraction"].values())
    assert report["templates_per_task"]["cot_gsm8k"] == 10


def test_instruction_fields_count_as_the_instruction(tmp_path):
    # NIV2's definition and T0-SF's promptsource text are the collections' own instructions
    for name in ("niv2", "t0sf"):
        tset = T.load_template_set(name)
        assert tset.instruction_fields, name
        assert A.audit_set(tset)["instruction_fraction"] == 1.0, name
    # without the declaration, a bare "{definition}\n\n{inputs}" template is bare record content
    path = tmp_path / "bare.yaml"
    path.write_text("name: bare\nfields: [definition, inputs, targets]\nhas_options: false\n"
                    "has_cot: false\ntemplates:\n  - id: b1\n    input: \"{definition}\\n\\n{inputs}\"\n"
                    "    target: \"{targets}\"\n", encoding="utf-8")
    assert A.audit_set(T.load_template_file(path))["instruction_fraction"] == 0.0
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text(encoding="utf-8").replace("name: bare", "name: bad")
                   + "instruction_fields: [nope]\n", encoding="utf-8")
    try:
        T.load_template_file(bad)
    except T.TemplateError as exc:
        assert "nope" in str(exc) and "bad.yaml" in str(exc)
    else:
        raise AssertionError("an instruction field outside 'fields' must be refused")


def test_rendered_examples_cover_every_collection_and_format_shaped():
    df = template_audit.rendered_examples(None)
    assert set(df.collection) == {"muffin", "t0sf", "niv2", "cot"}
    for c, group in df.groupby("collection"):
        want = {"zs_noopt", "zs_opt", "fs_noopt", "fs_opt"} | ({"zs_cot", "fs_cot"} if c == "cot" else set())
        assert set(group.format) == want, c
    assert set(df.data) == {"shaped record (no local data)"}
    assert df[df.format.str.startswith("fs")].inputs.str.contains("<", regex=False).all()
    # a few-shot render shows its exemplars' answers, a zero-shot one only the query
    fs = df[(df.collection == "muffin") & (df.format == "fs_noopt")].iloc[0]
    assert "<answer 2>" in fs.inputs or "<option 2a>" in fs.inputs
    cot = df[(df.collection == "cot") & (df.format == "zs_cot")].iloc[0]
    assert cot.cot and "<rationale 1>" in cot.targets
    niv2 = df[(df.collection == "niv2") & (df.format == "fs_noopt")].iloc[0]
    assert "<definition 2>" not in niv2.inputs  # the definition is the task's, not per record


@pytest.mark.skipif(not DATA.is_dir(), reason="offline mirror not present")
def test_rendered_examples_use_real_rows_when_the_mirror_has_them():
    df = template_audit.rendered_examples(DATA)
    assert set(df.collection) == {"muffin", "t0sf", "niv2", "cot"}
    assert df.data.str.startswith("real rows").all()
    assert not df.inputs.str.contains("<inputs", regex=False).any()
