"""Template sets: loading/validation errors, the four formats, CoT, options, few-shot pruning."""

from __future__ import annotations

import csv
import random
import string
import textwrap
from pathlib import Path

import pytest

from flan_nb.data import synthetic as S
from flan_nb.data import templates as T

COT_SETS = ("aqua", "creak", "ecqa", "esnli", "gsm8k", "qasc", "qed", "sensemaking", "strategyqa")
SLICE_SETS = ("arc", "boolq", "commonsense_qa", "copa", "openbook_qa", "piqa", "siqa",
              "winogrande", "winograd", "lambada", "triviaqa", "svamp")


def _fields_of(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _sample(tset: T.TemplateSet, i: int = 0) -> dict:
    """A synthetic-family example when the set is a family's, else placeholder values."""
    if tset.name in S.FAMILIES:
        return S.generate(tset.name, 4, seed=0)[i]
    ex = {f: f"<{f} {i}>" for f in tset.fields}
    ex.update(targets=f"<answer {i}>", rationale=f"<because {i}>",
              options=[f"<answer {i}>", f"<other {i}>"] if tset.has_options else [])
    return ex


def test_available_sets_cover_the_brief():
    names = set(T.available_template_sets())
    assert set(S.FAMILIES) <= names
    assert set(COT_SETS) <= names and set(SLICE_SETS) <= names
    assert {"niv2", "passthrough"} <= names


@pytest.mark.parametrize("name", T.available_template_sets())
def test_every_set_loads_and_is_consistent(name):
    tset = T.load_template_set(name)
    assert tset is T.load_template_set(name)  # cached
    assert tset.name == name and len(set(tset.ids)) == len(tset.ids)
    allowed = set(tset.fields) | T.COMPUTED_FIELDS
    for t in tset.templates:
        for text in (t.input, t.target, t.cot_target or ""):
            assert _fields_of(text) <= allowed
        assert (t.cot_target is not None) == tset.has_cot
    if name in S.FAMILIES:
        assert 3 <= len(tset.templates) <= 5
    if name in COT_SETS:
        assert len(tset.templates) >= 10 and tset.has_cot
        endings = {t.cot_target.replace("{rationale}", "").strip() for t in tset.templates}
        assert len(endings) >= 5  # varied answer sentences
    if name == "niv2":
        inline = [t for t in tset.templates if t.inline_fs]
        assert len(inline) >= 10
        assert all({"pos_input", "pos_output"} <= _fields_of(t.input) for t in inline)


@pytest.mark.parametrize("name", T.available_template_sets())
def test_every_format_renders(name):
    tset = T.load_template_set(name)
    ex = _sample(tset, 0)
    shots = [_sample(tset, i) for i in (1, 2, 3)]
    for cot in (False, True) if tset.has_cot else (False,):
        for fmt in T.FORMATS:
            for template_id in [t.id for t in tset.templates if not t.inline_fs]:
                r = T.render(ex, tset, fmt=fmt, cot=cot, rng=random.Random(0),
                             template_id=template_id, exemplars=shots)
                assert r.template_id == template_id and r.cot == cot
                assert r.inputs.strip() and r.targets.strip()
                assert "{" not in r.inputs.replace("{{", "") or "{" in str(ex)
                opt_shown = bool(ex.get("options")) and fmt.endswith("_opt")
                assert r.format == fmt.split("_")[0] + ("_opt" if opt_shown else "_noopt")
                if opt_shown:
                    assert all(f"- {o}" in r.inputs for o in ex["options"])
                    assert any(h + "\n- " in r.inputs for h in T.OPTIONS_HEADERS)
                else:
                    assert not any(h + "\n- " in r.inputs for h in T.OPTIONS_HEADERS)
                if fmt.startswith("fs"):
                    assert r.n_exemplars == 3
                    assert str(shots[0]["targets"]) in r.inputs
                else:
                    assert r.n_exemplars == 0
                if cot:
                    rationale = ex["rationale"].strip()
                    assert r.targets.startswith(rationale)
                    assert str(ex["targets"]) in r.targets[len(rationale):]
                else:
                    assert str(ex["targets"]) in r.targets


def test_render_is_deterministic_and_randomizes():
    tset = T.load_template_set("odd_one_out")
    ex, *shots = S.generate("odd_one_out", 4, seed=1)
    a = T.render(ex, tset, fmt="fs_opt", rng=random.Random(5), exemplars=shots)
    assert a == T.render(ex, tset, fmt="fs_opt", rng=random.Random(5), exemplars=shots)
    outs = {T.render(ex, tset, fmt="fs_opt", rng=random.Random(s), exemplars=shots).inputs
            for s in range(30)}
    assert len(outs) > 5
    headers = {h for s in range(40) for h in T.OPTIONS_HEADERS
               if h + "\n" in T.render(ex, tset, fmt="zs_opt", rng=random.Random(s)).inputs}
    assert len(headers) >= 3
    ids = {T.render(ex, tset, fmt="zs_noopt", rng=random.Random(s)).template_id for s in range(30)}
    assert ids == set(tset.ids)


def test_noopt_drops_block_cleanly():
    tset = T.load_template_set("parity")
    ex = S.generate("parity", 1, seed=0)[0]
    r = T.render(ex, tset, fmt="zs_noopt", rng=random.Random(0), template_id="par1")
    assert r.inputs == f"Is {ex['number']} even or odd?"


def test_passthrough_appends_options_and_cot():
    tset = T.load_template_set("passthrough")
    ex = {"inputs": "Pick a colour.", "targets": "red", "rationale": "Roses are red.",
          "options": ["red", "blue"]}
    r = T.render(ex, tset, fmt="zs_opt", cot=True, rng=random.Random(0))
    assert r.inputs.startswith("Pick a colour.\n\n") and r.inputs.endswith("- red\n- blue")
    assert r.targets == "Roses are red. So the answer is red."


def test_sets_without_options_never_add_a_block():
    ex = {"inputs": "Is the sky green?\nOptions:\n- yes\n- no", "targets": "no",
          "rationale": "The sky is blue.", "options": ["yes", "no"]}
    r = T.render(ex, T.load_template_set("creak"), fmt="zs_opt", rng=random.Random(0),
                 template_id="creak9")  # creak9: "{inputs}" + a question, no {options_block}
    assert r.format == "zs_noopt" and r.inputs.startswith(ex["inputs"])
    # the choices the input already lists are the only ones: no second, computed block
    assert r.inputs.count("- yes") == 1 and r.inputs.count("- no") == 1
    assert not any(h in r.inputs for h in T.OPTIONS_HEADERS if h != "Options:")


def test_few_shot_pruning_respects_budget():
    tset = T.load_template_set("arithmetic_word")
    ex, *shots = S.generate("arithmetic_word", 9, seed=2)
    full = T.render(ex, tset, fmt="fs_noopt", rng=random.Random(3), exemplars=shots)
    assert full.n_exemplars == 8
    n_tokens = T.whitespace_tokens(full.inputs)
    for budget in (n_tokens - 1, n_tokens // 2, n_tokens // 4):
        r = T.render(ex, tset, fmt="fs_noopt", rng=random.Random(3), exemplars=shots,
                     max_input_tokens=budget)
        assert 0 < r.n_exemplars < 8 and T.whitespace_tokens(r.inputs) <= budget
        assert r.format == "fs_noopt" and r.targets == full.targets
        # pruned from the end: the kept exemplars are the first ones, in order
        kept = [s["targets"] for s in shots[: r.n_exemplars]]
        assert all(f"\n{t}" in r.inputs or f" {t}" in r.inputs for t in kept)

    def chars(text: str) -> int:
        return len(text)

    r = T.render(ex, tset, fmt="fs_noopt", rng=random.Random(3), exemplars=shots,
                 max_input_tokens=len(ex["question"]) + 80, count_tokens=chars)
    assert r.n_exemplars == 0 and r.format == "zs_noopt" and "\n\n\n" not in r.inputs


def test_few_shot_without_exemplars_falls_back():
    tset = T.load_template_set("word_sorting")
    ex = S.generate("word_sorting", 1, seed=0)[0]
    r = T.render(ex, tset, fmt="fs_noopt", rng=random.Random(0))
    assert r.n_exemplars == 0 and r.format == "zs_noopt"


def test_niv2_inline_patterns():
    tset = T.load_template_set("niv2")
    ex = {"definition": "Uppercase the input.", "inputs": "tea", "targets": "TEA",
          "pos_input": "cat", "pos_output": "CAT"}
    fs = T.render(ex, tset, fmt="fs_noopt", rng=random.Random(0))
    assert fs.n_exemplars == 1 and "cat" in fs.inputs and "CAT" in fs.inputs
    assert fs.format == "fs_noopt"
    zs = T.render(ex, tset, fmt="zs_noopt", rng=random.Random(0))
    assert zs.n_exemplars == 0 and "CAT" not in zs.inputs
    tight = T.render(ex, tset, fmt="fs_noopt", rng=random.Random(0), max_input_tokens=6)
    assert tight.n_exemplars == 0 and tight.format == "zs_noopt"
    with pytest.raises(T.TemplateError, match="inline_fs"):
        T.render(ex, tset, fmt="zs_noopt", rng=random.Random(0), template_id="niv2_fs1")
    no_pos = {k: v for k, v in ex.items() if not k.startswith("pos_")}
    with pytest.raises(ValueError, match=r"template 'niv2_fs1'.*'pos_input'"):
        T.render(no_pos, tset, fmt="fs_noopt", rng=random.Random(0), template_id="niv2_fs1")


def test_render_errors_name_template_and_field():
    tset = T.load_template_set("letter_counting")
    ex = S.generate("letter_counting", 1, seed=0)[0]
    del ex["letter"]
    with pytest.raises(ValueError, match=r"letter_counting.*template 'lc1'.*'letter'"):
        T.render(ex, tset, fmt="zs_noopt", rng=random.Random(0), template_id="lc1")
    with pytest.raises(ValueError, match="has_cot: false"):
        T.render(S.generate("string_transform", 1, 0)[0], T.load_template_set("string_transform"),
                 fmt="zs_noopt", cot=True, rng=random.Random(0))
    no_rationale = dict(S.generate("parity", 1, 0)[0], rationale="")
    with pytest.raises(ValueError, match="rationale"):
        T.render(no_rationale, T.load_template_set("parity"), fmt="zs_noopt", cot=True,
                 rng=random.Random(0))
    with pytest.raises(ValueError, match="unknown format"):
        T.render(ex, tset, fmt="zero_shot", rng=random.Random(0))
    with pytest.raises(ValueError, match="no template 'zz'"):
        T.render(ex, tset, fmt="zs_noopt", rng=random.Random(0), template_id="zz")
    with pytest.raises(ValueError, match="no template set 'nope'"):
        T.load_template_set("nope")


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


GOOD_HEAD = """\
    name: bad
    fields: [question, targets]
    has_options: false
    has_cot: false
    templates:
      - id: ok
        input: "{question}"
        target: "{targets}"
"""


def test_bad_templates_name_file_template_and_field(tmp_path):
    path = _write(tmp_path, "bad", GOOD_HEAD + """\
      - id: t_undeclared
        input: "Q: {question} {colour}"
        target: "{targets}"
    """)
    with pytest.raises(ValueError) as err:
        T.load_template_file(path)
    msg = str(err.value)
    assert str(path) in msg and "t_undeclared" in msg and "colour" in msg and ":9" in msg

    path = _write(tmp_path, "bad", GOOD_HEAD + """\
      - id: t_opts
        input: "{question}\\n{options_block}"
        target: "{targets}"
    """)
    with pytest.raises(ValueError, match=r"t_opts.*options_block"):
        T.load_template_file(path)

    path = _write(tmp_path, "bad", GOOD_HEAD.replace("has_cot: false", "has_cot: true"))
    with pytest.raises(ValueError, match=r"bad.yaml.*template 'ok'.*cot_target"):
        T.load_template_file(path)

    path = _write(tmp_path, "bad", GOOD_HEAD + """\
      - id: ok
        input: "{question}"
        target: "{targets}"
    """)
    with pytest.raises(ValueError, match="duplicate template id"):
        T.load_template_file(path)

    path = _write(tmp_path, "other", GOOD_HEAD)
    with pytest.raises(ValueError, match="must equal the file name"):
        T.load_template_file(path)

    path = _write(tmp_path, "bad", GOOD_HEAD.replace('"{question}"', '"{question[0]}"'))
    with pytest.raises(ValueError, match="plain field name"):
        T.load_template_file(path)

    path = _write(tmp_path, "bad", GOOD_HEAD.replace("fields:", "feilds:"))
    with pytest.raises(ValueError, match="unknown key"):
        T.load_template_file(path)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = _write(tmp_path, "broken", """\
    name: broken
    fields: [question]
    templates:
      - id: a
        input: "unterminated
      - id: b
        input: [oops
    """)
    with pytest.raises(ValueError) as err:
        T.load_template_file(path)
    assert str(path) in str(err.value) and "malformed YAML" in str(err.value)
    assert any(f"{path}:{n}" in str(err.value) for n in range(5, 9))


def test_real_cot_rows_render(data_root):
    """The first row of each mirrored FLAN CoT file renders with its set in every CoT format."""
    for path in sorted((data_root / "flan_cot").glob("*_train.tsv")):
        name = path.name.removesuffix("_train.tsv")
        with path.open(encoding="utf-8", newline="") as fh:
            rows = [r for _, r in zip(range(4), csv.reader(fh, delimiter="\t"), strict=False)]
        exs = [{"inputs": q.replace("\\n", "\n"), "targets": a, "rationale": c.replace("\\n", "\n"),
                "options": []} for q, a, c in rows]
        tset = T.load_template_set(name)
        for fmt in ("zs_noopt", "fs_noopt"):
            r = T.render(exs[0], tset, fmt=fmt, cot=True, rng=random.Random(1),
                         exemplars=exs[1:], max_input_tokens=400)
            assert exs[0]["inputs"].split("\n")[0] in r.inputs
            assert r.targets.startswith(exs[0]["rationale"][:15]) and exs[0]["targets"] in r.targets


def test_few_shot_prompts_read_cleanly():
    """Real renders (issue 11): no doubled labels ("Problem: Question: ..."), no label before an
    open slot's answer on its own line, at least a blank line between exemplars, and a task's own
    instruction (NIV2's definition) stated once above the worked examples."""
    import random as _random

    niv2 = T.load_template_set("niv2")
    rows = [{"definition": "Turn the table into a sentence.", "inputs": f"name[R{i}]",
             "targets": f"R{i} is a place.", "pos_input": "x", "pos_output": "y"} for i in range(4)]
    for seed in range(20):
        r = T.render(rows[0], niv2, fmt="fs_noopt", rng=_random.Random(seed), exemplars=rows[1:])
        if r.n_exemplars:
            assert r.inputs.count("Turn the table into a sentence.") == 1, r.inputs
    gsm = T.load_template_set("gsm8k")
    ex = [{"inputs": f"Question {i}?", "targets": str(i), "rationale": f"{i} because."}
          for i in range(4)]
    for seed in range(40):
        r = T.render(ex[0], gsm, fmt="fs_noopt", cot=True, rng=_random.Random(seed),
                     exemplars=ex[1:])
        for label in ("Question", "Problem", "Input", "Q"):
            assert f"{label}: Question:" not in r.inputs and f"{label}: Problem:" not in r.inputs
        assert "Answer:\nA:" not in r.inputs and "Output:\nOutput:" not in r.inputs
        if r.n_exemplars:
            # the worked answer of one exemplar never runs straight into the next question
            assert "\n\n" in r.inputs or "\n---\n" in r.inputs
