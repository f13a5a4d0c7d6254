"""Loaders: schema, format conversion, malformed-row handling, and the real mirror files."""

from __future__ import annotations

import json
import random

import pytest

from flan_nb.data import loaders as data
from flan_nb.data import promptsource, rows

SCHEMA = set(rows.RAW_COLUMNS)


def test_cot_tsv_unescapes_newlines_and_names_bad_lines(tmp_path):
    path = tmp_path / "toy_train.tsv"
    path.write_text("Q1\\nline2\tA1\tR1\\nstep\nbroken line without tabs\nQ3\tA3\tR3\n", encoding="utf-8")
    with pytest.raises(data.DataFormatError, match=r"toy_train.tsv line 2: expected 3"):
        data.load_cot_tsv(path)
    stats: dict = {}
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = data.load_cot_tsv(path, on_bad_rows="skip", stats=stats)
    assert len(ds) == 2 and stats["bad_rows"] == 1
    assert ds[0]["inputs"] == "Q1\nline2" and ds[0]["rationale"] == "R1\nstep"
    assert SCHEMA <= set(ds.column_names)


def test_bad_policy_is_rejected(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("a\tb\tc\n")
    with pytest.raises(ValueError, match="on_bad_rows"):
        data.load_cot_tsv(path, on_bad_rows="ignore")


def test_gsm8k_answer_parsing():
    rationale, final = data.parse_gsm8k_answer("She has 3+4=<<3+4=7>>7 apples.\nThen 1,000 more.\n#### 1,007")
    assert rationale == "She has 3+4=7 apples.\nThen 1,000 more."
    assert final == "1007"
    with pytest.raises(ValueError):
        data.parse_gsm8k_answer("no marker")


def test_gsm8k_invalid_json_names_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "x #### 1"}) + "\n{not json\n")
    with pytest.raises(data.DataFormatError, match=r"train.jsonl line 2: invalid JSON"):
        data.load_gsm8k(path)
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = data.load_gsm8k(tmp_path, split="train", on_bad_rows="skip")  # folder form
    assert len(ds) == 1 and ds[0]["targets"] == "1"


def test_slice_formats_convert():
    q, t, o = data._slice_row({"query": "Question: Pick?\nAnswer:", "choices": ["a", "b"], "gold": 1})
    assert (q, t, o) == ("Question: Pick?", "b", ["a", "b"])
    q, t, o = data._slice_row({"query": "Question: Where?\nChoices:\nA. bank\nB. mall\nAnswer:",
                               "choices": ["A", "B"], "gold": 1})
    assert t == "mall" and o == ["bank", "mall"] and "Choices" not in q
    _, t, o = data._slice_row({"context_options": ["x because A", "x because B"], "continuation": "ran.", "gold": 0})
    assert t == "x because A" and len(o) == 2
    _, t, _ = data._slice_row({"context": "Question: Capital?\nAnswer:", "answer": "Paris", "aliases": []})
    assert t == "Paris"
    with pytest.raises(ValueError):
        data._slice_row({"query": "q", "choices": ["a"], "gold": 3})


def test_slice_missing_field_named(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"query": "q", "choices": ["a", "b"]}) + "\n")
    with pytest.raises(data.DataFormatError, match="s.jsonl line 1"):
        data.load_slice(path)


PS_YAML = """dataset: toy
templates:
  abc: !Template
    answer_choices: no ||| yes
    id: abc
    jinja: 'Is "{{ sentence }}" positive? ||| {% if label != -1 %}{{ answer_choices[label] }}{% endif %}'
    metadata: !TemplateMetadata
      choices_in_prompt: false
      original_task: true
    name: is_positive
    reference: ''
"""


def test_promptsource_template_application(tmp_path):
    path = tmp_path / "templates.yaml"
    path.write_text(PS_YAML)
    templates = data.load_promptsource(path)
    tmpl = templates["is_positive"]
    rows = [{"sentence": "great film", "label": 1}, {"sentence": "unlabelled", "label": -1},
            {"sentence": "bad", "label": 0}]
    ds = data.load_t0(rows, tmpl, task="toy_is_positive")
    assert len(ds) == 2  # the -1 row renders no target and is dropped
    assert ds[0]["inputs"] == 'Is "great film" positive?' and ds[0]["targets"] == "yes"
    assert ds[0]["options"] == ["no", "yes"]
    with pytest.raises(data.DataFormatError, match="rows for toy line 0"):
        data.load_t0([{"label": 1}], tmpl, task="toy")  # `sentence` missing
    stats: dict = {}
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = data.load_t0([{"label": 1}, {"sentence": "ok", "label": 0}], tmpl, task="toy",
                          on_bad_rows="skip", stats=stats)
    assert len(ds) == 1 and stats["bad_rows"] == 1


def test_niv2_splits_and_bad_file(tmp_path):
    doc = {"Definition": ["Do it."], "Positive Examples": [{"input": "i", "output": "o", "explanation": "e"}],
           "Instances": [{"id": f"t-{i}", "input": f"x{i}", "output": [f"y{i}"]} for i in range(105)]}
    path = tmp_path / "task001_toy.json"
    path.write_text(json.dumps(doc))
    assert len(data.load_niv2(path)) == 5
    assert len(data.load_niv2(path, split="eval")) == 100
    row = data.load_niv2(path, split="all")[0]
    assert row["definition"] == "Do it." and row["pos_output"] == "o" and row["task"] == "task001_toy"
    bad = tmp_path / "task002_bad.json"
    bad.write_text('{"Definition": ["x"],\n "Instances": [}')
    with pytest.raises(data.DataFormatError, match=r"task002_bad.json line 2"):
        data.load_niv2(bad)
    missing = tmp_path / "task003.json"
    missing.write_text(json.dumps({"Definition": ["x"]}))
    with pytest.raises(data.DataFormatError, match="missing or null field 'Instances'"):
        data.load_niv2(missing)


def test_offline_hub_id_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="hub is offline"):
        data.load_gsm8k("openai/gsm8k")


def test_synthetic_loader_refuses_held_out_families():
    from flan_nb.data import synthetic

    fam = synthetic.training_families()[0]
    ds = data.load_synthetic(fam, 20, seed=1)
    assert len(ds) == 20 and SCHEMA <= set(ds.column_names)
    with pytest.raises(ValueError, match="held out"):
        data.load_synthetic(synthetic.held_out_families()[0], 5)


# ---------------------------------------------------------------- the real mirror files


def test_real_cot_files(data_root):
    expected = {"aqua": 2728, "creak": 6915, "ecqa": 7112, "gsm8k": 7473, "qasc": 1084,
                "sensemaking": 6070, "strategyqa": 2061}
    for stem, n in expected.items():
        ds = data.load_cot_tsv(data_root / "flan_cot" / f"{stem}_train.tsv")
        assert len(ds) == n, stem
        assert all(ds[i]["rationale"] for i in range(5))
    assert "\\n" not in data.load_cot_tsv(data_root / "flan_cot" / "aqua_train.tsv", max_examples=50)["inputs"][0]


def test_real_gsm8k(data_root):
    ds = data.load_gsm8k(data_root / "gsm8k", split="test")
    assert len(ds) == 1319
    assert "<<" not in "".join(ds["rationale"][:50]) and "####" not in ds[0]["rationale"]
    assert ds[0]["targets"].lstrip("-").isdigit()


def test_real_slices(data_root):
    counts = {}
    for path in sorted((data_root / "muffin_t0_slices").glob("*.jsonl")):
        ds = data.load_slice(path)
        counts[path.stem] = len(ds)
        assert all(t for t in ds["targets"][:20]), path.name
    assert sum(counts.values()) == 22669


def test_real_niv2_tasks(data_root):
    for path in sorted((data_root / "niv2" / "tasks").glob("*.json")):
        ds = data.load_niv2(path, split="all")
        assert len(ds) > 100 and ds[0]["definition"], path.name


def test_real_promptsource_on_in_memory_rows(data_root):
    templates = data.load_promptsource(data_root / "t0" / "promptsource_templates" / "super_glue" / "copa" / "templates.yaml")
    assert len(templates) >= 10
    row = {"premise": "The man fell.", "choice1": "He slipped.", "choice2": "He sang.",
           "question": "cause", "label": 0, "idx": 0}
    rendered = [promptsource.apply_template(t, row, rng=random.Random(0)) for t in templates.values()]
    ok = [r for r in rendered if r is not None]
    assert ok and all(r[1] in ("He slipped.", "He slipped") for r in ok)
    exercise = promptsource.apply_template(templates["exercise"], row)
    assert exercise[1] == "He slipped." and exercise[2] == ["He slipped.", "He sang."]
    assert "The man fell." in exercise[0]


def test_all_promptsource_files_parse(data_root):
    files = sorted((data_root / "t0" / "promptsource_templates").rglob("templates.yaml"))
    assert len(files) == 279
    assert sum(len(data.load_promptsource(f)) for f in files) == 2085


def test_load_task_dispatch(data_root):
    ds = data.load_task("cot_gsm8k", data_root, max_examples=5)
    assert len(ds) == 5 and ds[0]["task"] == "cot_gsm8k"
    ds = data.load_task("bool_q", data_root, max_examples=5)
    assert ds[0]["options"] == ["no", "yes"]
    with pytest.raises(FileNotFoundError, match="stream_esnli"):
        data.load_task("stream_esnli", data_root)


def test_load_synthetic_halves_n_only_when_a_family_runs_out_of_items(monkeypatch):
    from flan_nb.data import synthetic

    real = synthetic.as_dataset
    family = synthetic.training_families()[0]

    def capped(fam, n, seed, split):
        if n > 60:
            raise synthetic.NotEnoughExamples(f"only 60 unique {split} examples")
        return real(fam, n, seed, split)

    monkeypatch.setattr(synthetic, "as_dataset", capped)
    with pytest.warns(UserWarning) as caught:
        ds = data.load_synthetic(family, 200)
    assert len(ds) == 50
    assert [str(w.message).rsplit("retrying with ", 1)[1] for w in caught] == ["n=100", "n=50"]
    # any other ValueError is not mistaken for running out of items
    monkeypatch.setattr(synthetic, "as_dataset", lambda *a: (_ for _ in ()).throw(ValueError("unique bug")))
    with pytest.raises(ValueError, match="unique bug"):
        data.load_synthetic(family, 100)


# ---------------------------------------------------------------------------------------------
# Issue 16 §2: non-UTF-8 bytes and null fields in any loader


def _check_bad_row(load, path, pattern, n_good):
    with pytest.raises(data.DataFormatError, match=pattern):
        load(path)
    stats: dict = {}
    with pytest.warns(UserWarning, match="skipped 1 malformed"):
        ds = load(path, on_bad_rows="skip", stats=stats)
    assert len(ds) == n_good and stats["bad_rows"] == 1
    for row in ds:
        assert "None" not in (row["inputs"], row["targets"])
    return ds


def test_non_utf8_line_is_named_and_skippable(tmp_path):
    tsv = tmp_path / "cot_x_train.tsv"
    tsv.write_bytes(b"q1\ta1\tr1\nq\xff2\ta2\tr2\nq3\ta3\tr3\n")
    _check_bad_row(data.load_cot_tsv, tsv, r"cot_x_train.tsv line 2: byte 0xff at column 2", 2)
    gsm = tmp_path / "train.jsonl"
    gsm.write_bytes(b'{"question": "a", "answer": "x #### 1"}\n{"question": "\xc3(", "answer": "#### 2"}\n')
    _check_bad_row(data.load_gsm8k, gsm, r"train.jsonl line 2: byte 0xc3", 1)
    sl = tmp_path / "lambada.jsonl"
    sl.write_bytes(b'{"context": "a b", "continuation": "c"}\n{"context": "\xfe", "continuation": "d"}\n')
    _check_bad_row(data.load_slice, sl, r"lambada.jsonl line 2: byte 0xfe", 1)


def _niv2(tmp_path, instances, name="task900_x.json", raw=None):
    doc = {"Definition": ["Do it."], "Positive Examples": [{"input": None, "output": "o"}],
           "Instances": instances}
    path = tmp_path / name
    path.write_bytes(raw if raw is not None else json.dumps(doc).encode())
    return path


@pytest.mark.parametrize("bad, pattern", [
    ({"id": "b", "input": None, "output": ["y"]}, r"Instances\[1\]: bad NIv2 instance: field `inputs` is null"),
    ({"id": "b", "input": "x", "output": [None]}, r"Instances\[1\]: .*`output` must be a string"),
    ({"id": "b", "input": 7, "output": ["y"]}, r"Instances\[1\]: .*`inputs` must be a string"),
])
def test_niv2_null_or_non_text_field_is_a_bad_row(tmp_path, bad, pattern):
    good = {"id": "g", "input": "x", "output": ["y"]}
    path = _niv2(tmp_path, [good, bad, dict(good, id="g2")])
    load = lambda p, **kw: data.load_niv2(p, split="all", **kw)  # noqa: E731
    ds = _check_bad_row(load, path, pattern, 2)
    assert ds[0]["pos_input"] == "" and ds[0]["pos_output"] == "o"  # null demo field: empty, not "None"


def test_niv2_non_utf8_byte_names_the_instance(tmp_path):
    body = json.dumps({"Definition": ["Do it."], "Instances": [
        {"id": "g", "input": "x", "output": ["y"]}, {"id": "b", "input": "XX", "output": ["y"]}]})
    path = _niv2(tmp_path, [], raw=body.encode().replace(b"XX", b"\xff"))
    load = lambda p, **kw: data.load_niv2(p, split="all", **kw)  # noqa: E731
    _check_bad_row(load, path, r"Instances\[1\]: .*byte 0xff is not valid UTF-8", 1)
    bad_def = _niv2(tmp_path, [], name="task901.json",
                    raw=b'{"Definition": ["D\xffo"], "Instances": []}')
    with pytest.raises(data.DataFormatError, match=r"task901.json: field `Definition`: byte 0xff"):
        data.load_niv2(bad_def, on_bad_rows="skip")
    null_def = _niv2(tmp_path, [], name="task902.json", raw=b'{"Definition": null, "Instances": []}')
    with pytest.raises(data.DataFormatError, match=r"task902.json: missing or null field 'Definition'"):
        data.load_niv2(null_def)


def test_slice_null_field_is_a_bad_row(tmp_path):
    sl = tmp_path / "triviaqa.jsonl"
    sl.write_text('{"context": "Q?", "answer": "A", "aliases": []}\n'
                  '{"context": "Q2?", "answer": null, "aliases": []}\n', "utf-8")
    _check_bad_row(data.load_slice, sl, r"triviaqa.jsonl line 2: .*field `answer` is null", 1)


def test_mixing_skip_counts_reach_metrics():
    from flan_nb.data import mixing

    manifest = {"preset": "p", "num_examples": 1, "per_task": {}, "fingerprint_sha256": "f",
                "per_collection": {}, "format_counts": {}, "input_length": {}, "target_length": {},
                "token_unit": "w", "loading": {"bad_rows": 3}}
    assert mixing.summary(manifest)["bad_rows"] == 3
    import dataclasses
    field = {f.name: f for f in dataclasses.fields(mixing.MixingParams)}["on_bad_rows"]
    assert field.default == "skip"
