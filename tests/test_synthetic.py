"""The synthetic suite: determinism, split disjointness, per-family correctness, benchmark schemas."""

from __future__ import annotations

import datetime as dt
import random
import re

import pytest

from flan_nb.data import synthetic as S
from flan_nb.data import synthetic_families

N = 40


@pytest.fixture(scope="module")
def train_sets() -> dict[str, list[dict]]:
    return {f: S.generate(f, N, seed=3) for f in S.FAMILIES}


def test_registry_shape():
    assert len(S.FAMILIES) >= 14
    held, train = S.held_out_families(), S.training_families()
    assert len(held) >= 4 and len(train) >= 8
    assert sorted(held + train) == sorted(S.FAMILIES)
    assert sum(S.family_info(f).has_cot for f in S.FAMILIES) >= 6
    assert any(S.family_info(f).has_options for f in train)
    for subject in S.MMLU_SUBJECTS + S.BBH_SUBTASKS:
        assert S.family_info(subject).held_out, subject
    with pytest.raises(KeyError, match="unknown synthetic family 'nope'"):
        S.family_info("nope")


@pytest.mark.parametrize("family", S.FAMILIES)
def test_deterministic_and_seed_sensitive(family):
    a = S.generate(family, 15, seed=11)
    assert a == S.generate(family, 15, seed=11)
    assert a != S.generate(family, 15, seed=12)


@pytest.mark.parametrize("family", S.FAMILIES)
def test_splits_disjoint_even_across_seeds(family):
    def keys(rows):
        return {(r["inputs"], tuple(sorted(r["options"]))) for r in rows}

    train = keys(S.generate(family, 150, seed=1, split="train"))
    test = keys(S.generate(family, 60, seed=2, split="test"))
    val = keys(S.generate(family, 30, seed=1, split="validation"))
    assert len(train) == 150 and len(test) == 60 and len(val) == 30  # unique within a split
    assert not train & test and not train & val and not val & test


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown split"):
        S.generate("parity", 3, 0, split="dev")
    assert S.generate("parity", 0, 0) == []


def test_schema(train_sets):
    ids = set()
    for family, rows in train_sets.items():
        info = S.family_info(family)
        for r in rows:
            for key, typ in (("task", str), ("inputs", str), ("targets", str),
                             ("rationale", str), ("options", list), ("example_id", str)):
                assert isinstance(r[key], typ), (family, key)
            assert r["source"] == "synthetic" and r["task"] == f"synthetic_{family}"
            assert r["inputs"].strip() and r["targets"].strip()
            assert bool(r["rationale"]) == info.has_cot, family
            for field in info.fields:
                assert isinstance(r[field], str) and r[field], (family, field)
            if info.has_options:
                assert r["options"][r["answer_index"]] == r["targets"], family
                assert len(set(r["options"])) == len(r["options"]) >= 2
            else:
                assert r["options"] == [] and "answer_index" not in r
            ids.add(r["example_id"])
    assert len(ids) == sum(len(v) for v in train_sets.values())


_NUM = r"\$?-?\d+(?:\.\d+)?"
_EQ = re.compile(rf"((?:{_NUM} [-+*/] )+{_NUM}) = ({_NUM})")


def _check_equations(text: str) -> list[float]:
    """Every "a op b [op c ...] = d" in `text` must hold; returns the right-hand sides."""
    results = []
    for lhs, rhs in _EQ.findall(text):
        value = eval(lhs.replace("$", ""))  # noqa: S307 - digits and + - * / only (regex)
        c = float(rhs.replace("$", ""))
        assert abs(value - c) < 1e-9, f"bad step {lhs} = {rhs} in {text}"
        results.append(c)
    return results


def test_arithmetic_rationales_are_correct(train_sets):
    for family in ("arithmetic_word", "multistep_arithmetic", "unit_conversion", "list_ops",
                   "object_counting", "sequence_continuation"):
        for r in train_sets[family] + S.generate(family, 40, 5, "test"):
            steps = _check_equations(r["rationale"])
            if family in ("arithmetic_word", "multistep_arithmetic", "unit_conversion",
                          "object_counting"):
                assert steps and synthetic_families._fmt_num(steps[-1]) == r["targets"], r


def test_family_answers(train_sets):
    for r in train_sets["multistep_arithmetic"]:
        assert eval(r["expression"]) == int(r["targets"])  # noqa: S307 - our own expression
    for r in train_sets["boolean_logic"]:
        assert str(eval(r["expression"])) == r["targets"]  # noqa: S307
    for r in train_sets["word_sorting"]:
        assert r["targets"].split() == sorted(r["words"].split())
    for r in train_sets["letter_counting"]:
        assert int(r["targets"]) == r["word"].count(r["letter"])
    for r in train_sets["parity"]:
        assert r["targets"] == ("even" if int(r["number"]) % 2 == 0 else "odd")
    for r in train_sets["comparison"]:
        a, b = int(r["a"]), int(r["b"])
        holds = a > b if r["relation"] == "greater than" else a < b
        assert r["targets"] == ("yes" if holds else "no")
    for r in train_sets["largest_number"]:
        nums = [int(o) for o in r["options"]]
        want = max(nums) if "largest" in r["question"] else min(nums)
        assert r["targets"] == str(want)
    for r in train_sets["extractive_qa"]:
        assert r["targets"] in r["context"] and r["targets"] in r["inputs"]
    for r in train_sets["date_shift"]:
        start = dt.datetime.strptime(r["date"], "%m/%d/%Y").date()
        delta = dt.timedelta(days=int(r["days"]))
        end = start + delta if r["direction"] == "later" else start - delta
        assert r["targets"] == end.strftime("%m/%d/%Y")
    for r in train_sets["list_ops"]:
        nums = [int(x) for x in r["numbers"].split(", ")]
        q = r["op_question"]
        if "sum" in q:
            assert int(r["targets"]) == sum(nums)
        elif "largest" in q:
            assert int(r["targets"]) == max(nums)
        elif "Reverse" in q:
            assert [int(x) for x in r["targets"].split(", ")] == nums[::-1]
        else:
            k = int(re.search(r"the (\d+)", q).group(1))
            assert int(r["targets"]) == nums[k - 1]
    for r in train_sets["string_transform"]:
        text, op = r["text"], r["op_instruction"]
        if "backwards" in op:
            assert r["targets"] == text[::-1]
        elif "capital letters" in op:
            assert r["targets"] == text.upper()
    for r in train_sets["tracking_swaps"]:  # replay the swaps from the question text
        q = r["question"]
        holding = dict(re.findall(r"(\w+) has a (\w+) ", q))
        for x, y in re.findall(r"(\w+) and (\w+) swap", q):
            holding[x], holding[y] = holding[y], holding[x]
        who = re.search(r"that (\w+) holds\?$", q).group(1)
        assert len(holding) == 3 and holding[who] == r["targets"], q
    for r in train_sets["odd_one_out"] + train_sets["word_category"]:
        assert len(r["options"]) == 4


def test_date_shift_leap_day_answer_keeps_five_distractors():
    # this draw lands 15 days forward on 29 February: no year-shifted distractors, and
    # start - 15 days coincides with end - 30 days
    r = S._date_shift(random.Random(2759))
    assert r["targets"] == "02/29/1968" and r["direction"] == "later" and r["days"] == "15"
    assert len(set(r["options"])) == 6 and r["options"][r["answer_index"]] == r["targets"]


def test_as_dataset():
    ds = S.as_dataset("comparison", 12, seed=0)
    assert len(ds) == 12
    assert {"task", "inputs", "targets", "rationale", "options", "example_id", "source",
            "answer_index", "a", "b", "relation"} <= set(ds.column_names)
    assert ds[0] == S.generate("comparison", 12, seed=0)[0]
    empty_opts = S.as_dataset("word_sorting", 3, seed=0)
    assert str(empty_opts.features["options"].feature.dtype) == "string"


# ---------------------------------------------------------------- benchmark-shaped data

_MMLU_BLOCK = re.compile(r"Q: .+\n\(A\) .+ \(B\) .+ \(C\) .+ \(D\) .+\nA: Let's think step by step\. "
                         r".+ The answer is \([ABCD]\)\.")
_BBH_BLOCK = re.compile(r"Q: .+\nA: Let's think step by step\.\n.+ So the answer is .+\.", re.S)


def test_mmlu_shape():
    d = S.benchmark_data("mmlu", 6, seed=0)
    assert len(d["test"]) >= 4 and set(d["test"]) == set(d["dev"]) == set(d["cot_prompts"])
    for subject, rows in d["test"].items():
        assert len(rows) == 6 and len(d["dev"][subject]) == 5
        for rec in rows + d["dev"][subject]:
            assert set(rec) == {"subject", "question", "choices", "answer"}
            assert rec["subject"] == subject and len(rec["choices"]) == 4
            assert isinstance(rec["answer"], int) and 0 <= rec["answer"] <= 3
        assert not {r["question"] + str(r["choices"]) for r in rows} & {
            r["question"] + str(r["choices"]) for r in d["dev"][subject]}
        prompt = d["cot_prompts"][subject]
        header = ("The following are multiple choice questions (with answers) about "
                  f"{subject.replace('_', ' ')}.\n\n")
        assert prompt.startswith(header)
        blocks = prompt[len(header):].split("\n\n")
        assert len(blocks) == 5 and all(_MMLU_BLOCK.fullmatch(b) for b in blocks), blocks
    assert d["meta"]["synthetic"] is True


def test_bbh_shape():
    d = S.benchmark_data("bbh", 5, seed=1)
    assert len(d["tasks"]) >= 4 and set(d["tasks"]) == set(d["cot_prompts"])
    with_options = 0
    for sub, rows in d["tasks"].items():
        assert len(rows) == 5
        for rec in rows:
            assert set(rec) == {"input", "target"} and rec["target"]
            if "\nOptions:\n(A) " in rec["input"]:
                with_options += 1
                letter = re.fullmatch(r"\(([A-J])\)", rec["target"]).group(1)
                assert f"\n({letter}) " in rec["input"]
        text = d["cot_prompts"][sub]
        description, rest = text.split("\n\n", 1)
        assert "\n" not in description and description.strip()
        blocks = re.split(r"\n\n(?=Q: )", rest)
        assert len(blocks) == 3 and all(_BBH_BLOCK.fullmatch(b) for b in blocks), blocks
        test_inputs = {r["input"] for r in rows}
        assert not any(b[3:].split("\nA: Let's")[0] in test_inputs for b in blocks)
    assert with_options >= 5


def test_tydiqa_shape():
    d = S.benchmark_data("tydiqa", 8, seed=2)
    langs = list(d["dev"])
    assert len(langs) >= 2 and "synth_en" in langs and set(d["train"]) == set(langs)
    for part in ("dev", "train"):
        for rows in d[part].values():
            assert len(rows) == 8
            for rec in rows:
                assert set(rec) == {"id", "context", "question", "answers"}
                assert all(a in rec["context"] for a in rec["answers"]), rec
    assert not {r["id"] for r in d["dev"]["synth_en"]} & {r["id"] for r in d["train"]["synth_en"]}
    en, xx = d["dev"]["synth_en"][0], d["dev"]["synth_xx"][0]
    assert en["context"] != xx["context"] and len(en["context"]) == len(xx["context"])
    assert S.translate("Tom, 42!", "synth_xx")[3:] == ", 42!"


def test_mgsm_shape():
    d = S.benchmark_data("mgsm", 4, seed=0)
    assert len(d["test"]) >= 2
    answers = None
    for lang, rows in d["test"].items():
        assert all(set(r) == {"question", "answer"} and r["answer"].lstrip("-").isdigit()
                   for r in rows)
        assert answers is None or [r["answer"] for r in rows] == answers
        answers = [r["answer"] for r in rows]
        ex = d["exemplars"][lang]
        assert sorted(ex, key=int) == [str(i) for i in range(1, 9)]
        pre = S.mgsm_prefixes(lang)
        for shot in ex.values():
            assert shot["q"].startswith(pre["question"] + " ")
            assert shot["a"].startswith(pre["answer"] + " ")
            assert re.search(r"The answer is -?\d+\.$", shot["a"])
    assert S.mgsm_prefixes("synth_en")["question"] == "Question:"
    assert S.mgsm_prefixes("synth_xx")["question"] != "Question:"


def test_benchmark_data_deterministic_and_unknown():
    assert S.benchmark_data("bbh", 3, seed=4) == S.benchmark_data("bbh", 3, seed=4)
    with pytest.raises(KeyError, match="unknown benchmark"):
        S.benchmark_data("hellaswag", 3, seed=0)


@pytest.mark.parametrize("family", S.FAMILIES)
def test_capacity_for_mixture_sized_requests(family):
    assert len(S.generate(family, 1000, seed=0, split="train")) == 1000


@pytest.mark.parametrize("benchmark", ["mmlu", "bbh", "tydiqa", "mgsm"])
def test_loads_through_benchmark_data(benchmark):
    """The stand-ins pass the real loader's validation."""
    from flan_nb.eval import benchmarks as bd

    data = bd.load(benchmark, source="synthetic", n_per_subtask=3, seed=0)
    assert data.meta["data"] == "synthetic" and data.n_items >= 3 * 3
