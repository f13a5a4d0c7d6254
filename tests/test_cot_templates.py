"""Chain-of-thought templates ask for reasoning (issue 11 part 2): the cue list is data, at least 8
of 10 templates per dataset carry a cue, answer endings vary, and answer-only renders never follow
a request for reasoning."""

from __future__ import annotations

import random
import re

import pytest

from flan_nb.data import templates as T

COT_SETS = ("aqua", "creak", "ecqa", "esnli", "gsm8k", "qasc", "qed", "sensemaking", "strategyqa", "cot")


def test_cue_list_is_data_and_matches_case_insensitively():
    cues = T.cot_cues()
    assert {"step by step", "rationale", "explain", "think"} <= set(cues)
    assert T.has_reasoning_cue("Let's THINK Step By Step.")
    assert not T.has_reasoning_cue("Answer the question.")


@pytest.mark.parametrize("name", COT_SETS)
def test_most_cot_templates_ask_for_reasoning(name):
    tset = T.load_template_set(name)
    cued = [t.id for t in tset.templates if T.has_reasoning_cue(t.input)]
    assert len(tset.templates) >= 10
    assert len(cued) >= 0.8 * len(tset.templates), (name, cued)
    # a zero-shot CoT trigger in the paper's style is among them
    assert any("step by step" in t.input.lower() for t in tset.templates), name
    # at least one answer-only template, used when the example is rendered without rationale
    assert len(cued) < len(tset.templates), name


@pytest.mark.parametrize("name", COT_SETS)
def test_cot_answer_endings_vary(name):
    tset = T.load_template_set(name)
    endings = {re.sub(r"\s+", " ", t.cot_target.replace("{rationale}", "")).strip() for t in tset.templates}
    assert len(endings) >= 5, endings
    assert all("{targets}" in e for e in endings)
    assert any(e.startswith("So the answer is") for e in endings) or name != "cot"


@pytest.mark.parametrize("name", COT_SETS)
def test_answer_only_renders_use_templates_without_cue(name):
    tset = T.load_template_set(name)
    ex = {"inputs": "Is water wet?", "targets": "yes", "rationale": "Water makes things wet.", "options": []}
    seen_cot, seen_plain = set(), set()
    for seed in range(60):
        plain = T.render(ex, tset, fmt="zs_noopt", cot=False, rng=random.Random(seed))
        assert not T.has_reasoning_cue(plain.inputs), plain.inputs
        seen_plain.add(plain.template_id)
        seen_cot.add(T.render(ex, tset, fmt="zs_noopt", cot=True, rng=random.Random(seed)).template_id)
    assert len(seen_cot) > len(seen_plain) >= 1


def test_real_cot_renders_carry_a_cue(data_root):
    """Rendered with CoT targets, at least 80% of real mirrored rows ask for reasoning."""
    from flan_nb.data import loaders, registry

    reg = registry.load_registry()
    for task in reg.select("cot"):
        try:
            ds = loaders.load_task(task, data_root, seed=0, max_examples=200)
        except FileNotFoundError:
            continue  # esnli and qed are not in the mirror
        tset = T.load_template_set(task.template_set)
        rng = random.Random(0)
        rows = ds.to_list()
        cued = sum(T.has_reasoning_cue(T.render(r, tset, fmt="zs_noopt", cot=True, rng=rng).inputs)
                   for r in rows)
        assert cued / len(rows) >= 0.7, (task.id, cued, len(rows))
