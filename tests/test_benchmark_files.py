"""Issue 16 §2: malformed benchmark files name the file and the line or item (never a bare Python
exception); on_bad_rows="skip" drops malformed scored items and counts them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flan_nb.eval import benchmarks as bd
from flan_nb.eval.benchmark_schema import BenchmarkDataError

COT = ("Evaluate the expression.\n\nQ: not True\nA: Let's think step by step.\nIt is False. "
       "So the answer is False.\n")


def _bbh(root: Path, examples: list, cot: bytes | None = None, raw: bytes | None = None) -> None:
    (root / "bbh" / "bbh").mkdir(parents=True, exist_ok=True)
    (root / "bbh" / "cot-prompts").mkdir(parents=True, exist_ok=True)
    body = raw if raw is not None else json.dumps({"examples": examples}, indent=1).encode()
    (root / "bbh" / "bbh" / "boolean_expressions.json").write_bytes(body)
    (root / "bbh" / "cot-prompts" / "boolean_expressions.txt").write_bytes(cot or COT.encode())


GOOD = [{"input": f"not {b}", "target": str(not b)} for b in (True, False, True)]


def _load(root, name, **kw):
    sub = {"bbh": ["boolean_expressions"], "tydiqa": ["en"], "mmlu": ["anatomy"], "mgsm": ["de"]}
    return bd.load(name, data_root=root, subtasks=sub[name], **kw)


BBH_CASES = {
    "example is a string": ([*GOOD[:1], "not True", *GOOD[1:]], r"examples\[1\].*expected a record"),
    "integer target": ([*GOOD, {"input": "1 + 1", "target": 2}], r"examples\[3\].*`target` must be a string"),
    "null input": ([*GOOD, {"input": None, "target": "True"}], r"examples\[3\].*missing field `input`"),
    "target not a label": ([*GOOD, {"input": "x", "target": "Maybe"}], r"not one of"),
}


@pytest.mark.parametrize("case", sorted(BBH_CASES))
def test_bbh_bad_item_is_named_or_skipped(tmp_path, case):
    examples, pattern = BBH_CASES[case]
    _bbh(tmp_path, examples)
    with pytest.raises(BenchmarkDataError, match=pattern) as err:
        _load(tmp_path, "bbh")
    assert "boolean_expressions" in str(err.value)
    data = _load(tmp_path, "bbh", on_bad_rows="skip")
    assert data.meta["bad_items"] == 1 and len(data.items["boolean_expressions"]) == 3
    assert len(data.meta["bad_item_examples"]) == 1


def test_bbh_non_utf8_byte_in_an_example(tmp_path):
    body = json.dumps({"examples": [*GOOD, {"input": "not XX", "target": "True"}]}, indent=1).encode()
    _bbh(tmp_path, [], raw=body.replace(b"XX", b"\xff\xfe"))
    with pytest.raises(BenchmarkDataError, match=r"boolean_expressions.json examples\[3\].*byte 0xff"):
        _load(tmp_path, "bbh")
    assert _load(tmp_path, "bbh", on_bad_rows="skip").meta["bad_items"] == 1


def test_bbh_file_level_errors_are_never_skipped(tmp_path):
    _bbh(tmp_path, [], raw=b'{"examples": [\n{"input": "x",\n')
    for policy in ("raise", "skip"):
        with pytest.raises(BenchmarkDataError, match=r"boolean_expressions.json line \d+: invalid JSON"):
            _load(tmp_path, "bbh", on_bad_rows=policy)
    _bbh(tmp_path, GOOD, cot=COT.encode().replace(b"Evaluate", b"Eval\xc3uate"))
    for policy in ("raise", "skip"):
        with pytest.raises(BenchmarkDataError, match=r"boolean_expressions.txt line 1: byte 0xc3"):
            _load(tmp_path, "bbh", on_bad_rows=policy)
    _bbh(tmp_path, [], raw=b'{"examples": "none"}')
    with pytest.raises(BenchmarkDataError, match="a list `examples`"):
        _load(tmp_path, "bbh")
    _bbh(tmp_path, ["a", "b"])
    with pytest.raises(BenchmarkDataError, match="all 2 items are malformed"):
        _load(tmp_path, "bbh", on_bad_rows="skip")
    with pytest.raises(BenchmarkDataError, match="on_bad_rows must be one of"):
        _load(tmp_path, "bbh", on_bad_rows="ignore")


def _tydiqa(root: Path, qas: list) -> None:
    (root / "tydiqa_goldp").mkdir(parents=True, exist_ok=True)
    ctx = "The capital of France is Paris. " * 6
    doc = {"data": [{"paragraphs": [{"context": ctx, "qas": qas}]}]}
    (root / "tydiqa_goldp" / "english_tydiqa_dev.json").write_text(json.dumps(doc), "utf-8")


def _qa(i, answers=None):
    return {"id": f"q{i}", "question": f"Capital {i}?",
            "answers": [{"text": "Paris", "answer_start": 25}] if answers is None else answers}


@pytest.mark.parametrize("bad, pattern", [
    (_qa(9, answers=[]), r"`answers` must be a non-empty list"),
    ("a string", r"expected a record"),
    (_qa(9, answers=[{"text": 5}]), r"`answers` must be a non-empty list of str"),
    ({"id": "q9", "question": None, "answers": []}, r"missing field `question`"),
])
def test_tydiqa_bad_question(tmp_path, bad, pattern):
    _tydiqa(tmp_path, [_qa(0), _qa(1), bad])
    with pytest.raises(BenchmarkDataError,
                       match=r"english_tydiqa_dev.json data\[0\].paragraphs\[0\].qas\[2\].*" + pattern):
        _load(tmp_path, "tydiqa")
    data = _load(tmp_path, "tydiqa", on_bad_rows="skip")
    assert data.meta["bad_items"] == 1 and len(data.items["en"]) == 2


def test_tydiqa_bad_structure_names_the_path(tmp_path):
    (tmp_path / "tydiqa_goldp").mkdir()
    (tmp_path / "tydiqa_goldp" / "english_tydiqa_dev.json").write_text(
        json.dumps({"data": [{"paragraphs": "oops"}]}), "utf-8")
    with pytest.raises(BenchmarkDataError, match=r"english_tydiqa_dev.json data\[0\]: expected"):
        _load(tmp_path, "tydiqa", on_bad_rows="skip")


def _mmlu(root: Path, test_rows: bytes, dev_rows: bytes | None = None) -> None:
    header = b"question,choice0,choice1,choice2,choice3,answer\n"
    good = b"".join(b"Q%d?,a,b,c,d,%d\n" % (i, i % 4) for i in range(5))
    for split, rows in (("test", test_rows), ("dev", dev_rows or good)):
        (root / "mmlu" / split).mkdir(parents=True, exist_ok=True)
        (root / "mmlu" / split / f"anatomy_{split}.csv").write_bytes(header + rows)
    (root / "mmlu" / "mmlu-cot.json").write_text(json.dumps({"anatomy": "Q: x\nA: y"}), "utf-8")


@pytest.mark.parametrize("row, pattern", [
    (b"Bad \xff byte?,a,b,c,d,1\n", r"anatomy_test.csv line 3 .*byte 0xff"),
    (b"Q?,a,b,c,d,x\n", r"anatomy_test.csv line 3 .*answer 'x' is not an int"),
    (b"Q?,a,b,c,d,7\n", r"anatomy_test.csv line 3 .*outside the options"),
    (b"Q?,a,b\n", r"anatomy_test.csv line 3 .*missing column `choice2`"),
    (b"Q?,a,b,c,d,1,extra\n", r"anatomy_test.csv line 3 .*more field"),
])
def test_mmlu_bad_row(tmp_path, row, pattern):
    _mmlu(tmp_path, b"Q0?,a,b,c,d,0\n" + row + b"Q2?,a,b,c,d,2\n")
    with pytest.raises(BenchmarkDataError, match=pattern):
        _load(tmp_path, "mmlu")
    data = _load(tmp_path, "mmlu", on_bad_rows="skip")
    assert data.meta["bad_items"] == 1 and len(data.items["anatomy"]) == 2


def test_mmlu_bad_dev_exemplar_and_csv_are_never_skipped(tmp_path):
    _mmlu(tmp_path, b"Q0?,a,b,c,d,0\n", dev_rows=b"Q\xfe?,a,b,c,d,0\n")
    with pytest.raises(BenchmarkDataError, match=r"anatomy_dev.csv line 2 .*dev exemplar 0.*byte 0xfe"):
        _load(tmp_path, "mmlu", on_bad_rows="skip")
    _mmlu(tmp_path, b'Q0?,a,b,c,d,"' + b"x" * 200_000 + b'"\n')  # over csv's field size limit
    with pytest.raises(BenchmarkDataError, match=r"anatomy_test.csv line \d+: invalid CSV"):
        _load(tmp_path, "mmlu", on_bad_rows="skip")


def _mgsm(root: Path, tsv: bytes, exemplars: object = None) -> None:
    (root / "mgsm").mkdir(parents=True, exist_ok=True)
    ex = exemplars if exemplars is not None else {"de": {str(i): {"q": f"q{i}", "a": f"a{i}"}
                                                         for i in range(1, 9)}}
    (root / "mgsm" / "exemplars.json").write_text(json.dumps({"MGSM_EXEMPLARS": ex}), "utf-8")
    (root / "mgsm" / "mgsm_de.tsv").write_bytes(tsv)


@pytest.mark.parametrize("line, pattern", [
    (b"Wie viel?\tzwei\n", r"mgsm_de.tsv line 2 .*is not a number"),
    (b"Wie \xff viel?\t3\n", r"mgsm_de.tsv line 2 .*byte 0xff"),
    (b"a\tb\tc\n", r"mgsm_de.tsv line 2 .*expected question<TAB>answer"),
])
def test_mgsm_bad_line(tmp_path, line, pattern):
    _mgsm(tmp_path, b"Eins?\t1\n" + line + b"Drei?\t3\n")
    with pytest.raises(BenchmarkDataError, match=pattern):
        _load(tmp_path, "mgsm")
    data = _load(tmp_path, "mgsm", on_bad_rows="skip")
    assert data.meta["bad_items"] == 1 and [r["answer"] for r in data.items["de"]] == ["1", "3"]


def test_mgsm_bad_exemplar_is_an_error(tmp_path):
    _mgsm(tmp_path, b"Eins?\t1\n", exemplars={"de": {"1": {"q": 3, "a": "x"}}})
    with pytest.raises(BenchmarkDataError, match=r"exemplars.json MGSM_EXEMPLARS.de.1"):
        _load(tmp_path, "mgsm", on_bad_rows="skip")
