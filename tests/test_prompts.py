"""Exact prompt strings for real items of each benchmark, built by hand from the mirror's files."""

from __future__ import annotations

import json

import pytest

from flan_nb.eval import benchmarks as bd
from flan_nb.eval import prompts as P
from flan_nb.eval.benchmark_schema import BenchmarkData, BenchmarkDataError

WR_HEADER = "The following are multiple choice questions (with answers) about world religions.\n\n"
WR_DEV = [
    ("What is the sign of the covenant for Jewish males?",
     "(A) The rainbow (B) Circumcision (C) A son (D) Bar mitzvah", "B"),
    ("What is the Second Gem in Buddhism?",
     "(A) The Dharma (B) The Sangha (C) The Buddha (D) The Bodhisattva", "A"),
    ('In which dynasty was the "Mandate of Heaven" developed to legitimatize the new rulers?',
     "(A) Shang (B) Zhou (C) Han (D) Xia", "B"),
    ("Which Japanese government promoted a kind of national cult based on the emperor and his "
     "associations with kami?", "(A) Honen (B) Tanaka (C) Tokugawa (D) Meiji", "D"),
    ("How can the Upanishads be characterized?",
     "(A) Ritual texts (B) Philosophical texts (C) Hymns (D) Origin stories", "B"),
]
WR_QUERY = "Q: What can murtis be translated as?\n(A) Offerings (B) Prayers (C) Apparitions (D) Idols\nA:"


def _mmlu(data_root, subject="world_religions"):
    return bd.load("mmlu", data_root=data_root, subtasks=[subject], n_per_subtask=None)


@pytest.mark.data
def test_mmlu_direct_exact(data_root):
    item = P.build_items("mmlu", "direct", _mmlu(data_root))[0]
    blocks = [f"Q: {q}\n{opts}\nA: ({a})" for q, opts, a in WR_DEV]
    expected = WR_HEADER + "\n\n".join(blocks) + "\n\n" + WR_QUERY
    text, dropped = item.text()
    assert text == expected
    assert dropped == 0
    assert item.gold == "D" and item.item_id == "world_religions/test/0"
    assert P.max_new_tokens("mmlu", "direct") == 8


@pytest.mark.data
def test_mmlu_cot_is_the_json_prompt_verbatim(data_root):
    raw = json.loads((data_root / "mmlu" / "mmlu-cot.json").read_text(encoding="utf-8"))
    item = P.build_items("mmlu", "cot", _mmlu(data_root))[0]
    assert item.text()[0] == raw["world_religions"] + WR_QUERY + " Let's think step by step."
    assert len(item.prompt.exemplars) == 5
    # raw control characters of the file (bad LaTeX escapes) survive
    math = P.build_items("mmlu", "cot", _mmlu(data_root, "college_mathematics"))[0].text()[0]
    assert math.startswith(raw["college_mathematics"]) and "\x0c" in math and "\r" in math
    # the two prompts whose header starts with a newline stay verbatim too
    phys = P.build_items("mmlu", "cot", _mmlu(data_root, "conceptual_physics"))[0]
    assert phys.prompt.header.startswith("\nThe following")
    assert phys.text()[0].startswith(raw["conceptual_physics"])
    four = P.build_items("mmlu", "cot", _mmlu(data_root, "formal_logic"))[0]
    assert len(four.prompt.exemplars) == 4


@pytest.mark.data
def test_mmlu_zero_shot(data_root):
    zs = P.build_items("mmlu", "zs", _mmlu(data_root))[0]
    assert zs.text()[0] == WR_HEADER + WR_QUERY
    zs_cot = P.build_items("mmlu", "zs_cot", _mmlu(data_root))[0]
    assert zs_cot.text()[0] == WR_HEADER + WR_QUERY + " Let's think step-by-step."


SPORTS_DESC = ("Determine whether an artificially constructed sentence relating to sports is "
               "plausible or not.\n\n")
SPORTS_Q = [
    ('Is the following sentence plausible? "Bam Adebayo scored a reverse layup in the Western '
     'Conference Finals."', "Bam Adebayo is an American basketball player. Scoring a reverse layup "
     "in the Western Conference Finals is part of the NBA Finals.", "yes"),
    ('Is the following sentence plausible? "Santi Cazorla scored a touchdown."',
     "Santi Cazorla is a soccer player. Touchdown is part of American football and rugby.", "no"),
    ('Is the following sentence plausible? "DeMar DeRozan was called for the goal tend."',
     "DeMar DeRozan is an American basketball player. Goal tending is part of basketball.", "yes"),
]
SPORTS_ITEM = 'Q: Is the following sentence plausible? "Elias Lindholm beat the buzzer."\nA:'


def _bbh(data_root, task="sports_understanding"):
    return bd.load("bbh", data_root=data_root, subtasks=[task])


@pytest.mark.data
def test_bbh_direct_and_cot_exact(data_root):
    data = _bbh(data_root)
    direct = P.build_items("bbh", "direct", data)[0]
    expected = SPORTS_DESC + "\n\n".join(f"Q: {q}\nA: {a}" for q, _, a in SPORTS_Q) + "\n\n" + SPORTS_ITEM
    assert direct.text()[0] == expected
    assert direct.gold == "no" and direct.options == ["yes", "no"]
    cot = P.build_items("bbh", "cot", data)[0]
    blocks = [f"Q: {q}\nA: Let's think step by step. {r} So the answer is {a}." for q, r, a in SPORTS_Q]
    assert cot.text()[0] == SPORTS_DESC + "\n\n".join(blocks) + "\n\n" + SPORTS_ITEM + " Let's think step by step."
    assert "canary" not in cot.text()[0] and "-----" not in cot.text()[0]
    assert P.build_items("bbh", "zs", data)[0].text()[0] == SPORTS_DESC + SPORTS_ITEM
    assert (P.build_items("bbh", "zs_cot", data)[0].text()[0]
            == SPORTS_DESC + SPORTS_ITEM + " Let's think step-by-step.")


@pytest.mark.data
def test_bbh_all_cot_prompts_parse(data_root):
    data = bd.load("bbh", data_root=data_root, n_per_subtask=1)
    for task, text in data.exemplars.items():
        parsed = P.parse_bbh_cot_prompt(text, task)
        assert len(parsed.cot_blocks) == 3, task
        assert parsed.header.endswith("\n\n") and "canary" not in parsed.header, task
        assert all(a and not a.endswith(".") for a in parsed.answers), task
    dyck = P.parse_bbh_cot_prompt(data.exemplars["dyck_languages"])
    assert dyck.answers[-1] == "} ] >"
    snarks = P.parse_bbh_cot_prompt(data.exemplars["snarks"])
    assert snarks.header.startswith("Determine which of two sentences is sarcastic.\n\nAccording")
    mc = P.build_items("bbh", "direct", bd.load("bbh", data_root=data_root,
                                                subtasks=["date_understanding"]))[0]
    assert mc.prompt.exemplars[0].endswith("(F) 12/14/1988\nA: (D)")
    assert mc.options == ["(A)", "(B)", "(C)", "(D)", "(E)", "(F)"]
    assert mc.meta["option_texts"]["B"] == "12/25/1937"


@pytest.mark.data
def test_tydiqa_one_shot_exact(data_root):
    data = bd.load("tydiqa", data_root=data_root, subtasks=["en"])
    item = P.build_items("tydiqa", "direct", data)[0]
    expected = (
        "Passage: Hydrogen, being the lightest existing gas (7% the density of air), seems to be the "
        "most appropriate gas for lifting. But hydrogen has several disadvantages:\n"
        "Question: What is the lightest gas?\nAnswer: Hydrogen\n\n"
        "Passage: Wound care encourages and speeds wound healing via cleaning and protection from "
        "reinjury or infection. Depending on each patient's needs, it can range from the simplest "
        "first aid to entire nursing specialties such as wound, ostomy, and continence nursing and "
        "burn center care.\nQuestion: What is a way to increase your wound healing speed?\nAnswer:"
    )
    assert item.text()[0] == expected
    assert item.gold == ["Wound care"]
    assert data.meta["exemplar_source"] == {"en": "train"}


@pytest.mark.data
def test_tydiqa_dev_exemplar_is_never_the_item(data_root):
    data = bd.load("tydiqa", data_root=data_root, subtasks=["bn"])
    assert data.meta["exemplar_source"] == {"bn": "dev"}
    first = data.exemplars["bn"][0]["id"]
    items = P.build_items("tydiqa", "direct", data)
    assert all(it.meta["exemplar_id"] != it.item_id for it in items)
    own = next(it for it in items if it.item_id == first)
    assert own.meta["exemplar_id"] == data.exemplars["bn"][1]["id"]
    # a subsample keeps the whole dev pool, so the exemplar does not depend on the subsample
    sub = bd.load("tydiqa", data_root=data_root, subtasks=["bn"], n_per_subtask=5, seed=3)
    assert sub.exemplars == data.exemplars


@pytest.mark.data
def test_mgsm_native_cot_exact(data_root):
    ex = json.loads((data_root / "mgsm" / "exemplars.json").read_text("utf-8"))["MGSM_EXEMPLARS"]["de"]
    data = bd.load("mgsm", data_root=data_root, subtasks=["de"])
    item = P.build_items("mgsm", "cot", data)[0]
    question = ("Janets Enten legen 16 Eier pro Tag. Sie isst drei jeden Morgen zum Frühstück und "
                "backt mit vier jeden Tag Muffins für ihre Freunde. Den Rest verkauft sie täglich "
                "auf dem Bauernmarkt für 2 US-Dollar pro frischem Entenei. Wie viel Dollar nimmt "
                "sie täglich auf dem Bauernmarkt ein?")
    shots = "\n\n".join(f"{ex[k]['q']}\n{ex[k]['a']}" for k in "12345678")
    assert item.text()[0] == shots + f"\n\nFrage: {question}\nSchritt-für-Schritt-Antwort:"
    assert item.text()[0].startswith("Frage: Roger hat 5 Tennisbälle.")
    assert item.gold == "18" and len(item.prompt.exemplars) == 8
    zh = P.build_items("mgsm", "cot", bd.load("mgsm", data_root=data_root, subtasks=["zh"]))[0]
    assert zh.prompt.query.startswith("问题：") and zh.prompt.query.endswith("\n逐步解答：")


def test_prompt_drops_exemplars_from_the_front():
    p = P.Prompt("H\n\n", ["one two", "three four", "five six"], "Q: x\nA:")
    words = lambda s: len(s.split())  # noqa: E731
    full, dropped = p.text()
    assert dropped == 0 and full == "H\n\none two\n\nthree four\n\nfive six\n\nQ: x\nA:"
    text, dropped = p.text(max_tokens=8, count_tokens=words)
    assert dropped == 1 and text == "H\n\nthree four\n\nfive six\n\nQ: x\nA:"
    text, dropped = p.text(max_tokens=7, count_tokens=words)
    assert dropped == 2 and text == "H\n\nfive six\n\nQ: x\nA:"
    text, dropped = p.text(max_tokens=4, count_tokens=words)
    assert dropped == 3 and text == "H\n\nQ: x\nA:"
    with pytest.raises(P.PromptTooLong, match="budget 3"):
        p.text(max_tokens=3, count_tokens=words)
    with pytest.raises(ValueError, match="count_tokens"):
        p.text(max_tokens=5)
    item = P.EvalItem("bbh", "t", "direct", "t/0", p, gold="x")
    with pytest.raises(P.PromptTooLong, match="bbh/t item t/0"):
        item.text(max_tokens=1, count_tokens=words)


def test_bad_setting_and_benchmark_names():
    data = BenchmarkData("bbh", {"x": [{"input": "a", "target": "b"}]}, {"x": "d\n\nQ: a\nA: Let's think step by step. So the answer is b."})
    with pytest.raises(BenchmarkDataError, match="did you mean direct"):
        P.build_items("bbh", "drect", data)
    with pytest.raises(BenchmarkDataError, match="got bbh data"):
        P.build_items("mmlu", "direct", data)
    with pytest.raises(BenchmarkDataError, match="x block 1: no .A: Let's think step by step.. line"):
        P.parse_bbh_cot_prompt("desc\n\nQ: a\nA: b", "x")


@pytest.mark.parametrize("benchmark", ["mmlu", "bbh", "tydiqa", "mgsm"])
def test_builders_accept_synthetic_sets(benchmark):
    data = bd.load(benchmark, source="synthetic", n_per_subtask=2, seed=0)
    assert data.meta["data"] == "synthetic"
    for setting in P.SETTINGS[benchmark]:
        items = P.build_items(benchmark, setting, data)
        assert len(items) == data.n_items
        assert all(it.text()[0].strip() for it in items)


def test_max_new_tokens_for_every_setting():
    for benchmark, settings in P.SETTINGS.items():
        for setting in settings:
            assert P.max_new_tokens(benchmark, setting) >= 8
    assert P.max_new_tokens("mgsm", "zs_cot") == P.max_new_tokens("mgsm", "cot")
