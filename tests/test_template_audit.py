"""`flan-nb audit-templates` and the shared instruction rule (issue 11 part 7)."""

from __future__ import annotations

import json

from flan_nb import cli
from flan_nb.data import template_audit as A
from flan_nb.data import templates as T


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
