"""muffin_hub.yaml: every entry is well-formed, and converts records in its dataset's real hub
schema (hand-written here, fed through load_muffin_hub with `load_hub` patched: no network)."""

from __future__ import annotations

import random

import pytest

from flan_nb.data import loaders as data
from flan_nb.data import muffin_hub, registry, templates
from flan_nb.data.template_audit import input_has_instruction

NLI3 = ["yes", "it is not possible to tell", "no"]
YN = ["no", "yes"]
SKIP = None  # the record is filtered out (unusable row, e.g. a test-split label -1)


def _glue_pair(a: str, b: str) -> list[dict]:
    return [{a: "The cat sat.", b: "A cat was sitting.", "label": 1, "idx": 0},
            {a: "It rained.", b: "The sun shone.", "label": 0, "idx": 1}]


def _super_glue_nli(second_label: int) -> list[dict]:
    return [{"premise": "P.", "hypothesis": "H.", "idx": 0, "label": 1},
            {"premise": "P2.", "hypothesis": "H2.", "idx": 1, "label": second_label}]


SUPER_GLUE_NLI_INPUTS = ("P.\n\nHypothesis: H.", "P2.\n\nHypothesis: H2.")


def _wmt(lang: str) -> tuple[list[dict], list]:
    recs = [{"translation": {lang: f"{lang} text one", "en": "English one"}},
            {"translation": {lang: f"{lang} text two", "en": "English two"}}]
    return recs, [(f"{lang} text one", "English one", []), (f"{lang} text two", "English two", [])]


ARC = [{"id": "Q1", "question": "Which is a gas?", "answerKey": "B",
        "choices": {"text": ["rock", "steam", "ice"], "label": ["A", "B", "C"]}},
       {"id": "Q2", "question": "What do plants need?", "answerKey": "1",
        "choices": {"text": ["light", "sand"], "label": ["1", "2"]}}]
ARC_EXP = [("Which is a gas?", "steam", ["rock", "steam", "ice"]),
           ("What do plants need?", "light", ["light", "sand"])]
ANLI = [{"uid": "a", "premise": "P one.", "hypothesis": "H one.", "label": 2, "reason": ""},
        {"uid": "b", "premise": "P two.", "hypothesis": "H two.", "label": 0, "reason": ""}]
ANLI_EXP = [("P one.\n\nHypothesis: H one.", "no", NLI3), ("P two.\n\nHypothesis: H two.", "yes", NLI3)]
MNLI = [{"premise": "A man eats.", "hypothesis": "Someone eats.", "label": 0, "idx": 0},
        {"premise": "A dog runs.", "hypothesis": "A cat runs.", "label": 1, "idx": 1}]
MNLI_EXP = [("Premise: A man eats.\nHypothesis: Someone eats.", "yes", NLI3),
            ("Premise: A dog runs.\nHypothesis: A cat runs.", "it is not possible to tell", NLI3)]
XSUM = [{"document": "Long article one.", "summary": "Short one.", "id": "1"},
        {"document": "Long article two.", "summary": "Short two.", "id": "2"}]
TQA = [{"question": "Capital of France?", "question_id": "t1", "question_source": "x",
        "entity_pages": {}, "search_results": {},
        "answer": {"aliases": ["Paris"], "normalized_aliases": ["paris"], "value": "Paris",
                   "normalized_value": "paris", "type": "WikipediaEntity"}},
       {"question": "2+2?", "question_id": "t2", "question_source": "x", "entity_pages": {},
        "search_results": {}, "answer": {"aliases": ["4"], "normalized_aliases": ["4"], "value": "Four",
                                          "normalized_value": "four", "type": "Numerical"}}]
TQA_EXP = [("Capital of France?", "Paris", []), ("2+2?", "Four", [])]
SQUAD = [{"id": "s1", "title": "T", "context": "Ctx one.", "question": "Q one?",
          "answers": {"text": ["ans one", "ans 1"], "answer_start": [0, 0]}},
         {"id": "s2", "title": "T", "context": "Ctx two.", "question": "Q two?",
          "answers": {"text": [], "answer_start": []}}]

CASES: dict[str, tuple[list[dict], list]] = {
    "aeslc": ([{"email_body": "Please send the report.", "subject_line": "Report"},
               {"email_body": "Lunch at noon?", "subject_line": "Lunch"}],
              [("Please send the report.", "Report", []), ("Lunch at noon?", "Lunch", [])]),
    "ag_news_subset": ([{"text": "Team wins cup.", "label": 1}, {"text": "New chip.", "label": 3}],
                       [("Team wins cup.", "Sports", ...), ("New chip.", "Science/Tech", ...)]),
    "anli_r1": (ANLI, ANLI_EXP), "anli_r2": (ANLI, ANLI_EXP),
    "anli_r3": ([ANLI[0], {**ANLI[1], "label": -1}], [ANLI_EXP[0], SKIP]),
    "arc_challenge": (ARC, ARC_EXP), "arc_easy": (ARC, ARC_EXP),
    "bool_q": ([{"question": "is the sky blue", "answer": True, "passage": "The sky is blue."},
                {"question": "is fire cold", "answer": False, "passage": "Fire is hot."}],
               [("The sky is blue.\n\nis the sky blue?", "yes", YN), ("Fire is hot.\n\nis fire cold?", "no", YN)]),
    "cb": (_super_glue_nli(2), [(SUPER_GLUE_NLI_INPUTS[0], "no", ...),
                                (SUPER_GLUE_NLI_INPUTS[1], "it is not possible to tell", ...)]),
    "cnn_dailymail": ([{"article": "Art one.", "highlights": "Hi one.", "id": "a"},
                       {"article": "Art two.", "highlights": "Hi two.", "id": "b"}],
                      [("Art one.", "Hi one.", []), ("Art two.", "Hi two.", [])]),
    "cola": ([{"sentence": "Him went.", "label": 0, "idx": 0}, {"sentence": "He went.", "label": -1, "idx": 1}],
             [("Him went.", "unacceptable", ...), SKIP]),
    "common_gen": ([{"concept_set_idx": 0, "concepts": ["dog", "frisbee", "catch"], "target": "A dog catches a frisbee."},
                    {"concept_set_idx": 1, "concepts": ["ski", "mountain"], "target": ""}],
                   [("dog, frisbee, catch", "A dog catches a frisbee.", []), SKIP]),
    "copa": ([{"premise": "The man fell.", "choice1": "He slipped.", "choice2": "He sang.",
               "question": "cause", "idx": 0, "label": 0},
              {"premise": "I ate.", "choice1": "I was hungry no more.", "choice2": "I was cold.",
               "question": "effect", "idx": 1, "label": 1}],
             [("The man fell. What was the cause?", "He slipped.", ["He slipped.", "He sang."]),
              ("I ate. What was the effect?", "I was cold.", ["I was hungry no more.", "I was cold."])]),
    "coqa": ([{"source": "wikipedia", "story": "Ann had a cat.", "questions": ["Who?", "What?"],
               "answers": {"input_text": ["Ann", "a cat"], "answer_start": [0, 8], "answer_end": [3, 13]}},
              {"source": "cnn", "story": "Bob ran.", "questions": ["Who ran?"],
               "answers": {"input_text": ["Bob"], "answer_start": [0], "answer_end": [3]}}],
             [("Ann had a cat.\n\n1. Who?\n2. What?", "1. Ann\n2. a cat", []),
              ("Bob ran.\n\n1. Who ran?", "1. Bob", [])]),
    "cosmos_qa": ([{"id": "c1", "context": "Ctx.", "question": "Why?", "answer0": "a", "answer1": "b",
                    "answer2": "c", "answer3": "d", "label": 2},
                   {"id": "c2", "context": "Ctx2.", "question": "How?", "answer0": "e", "answer1": "f",
                    "answer2": "g", "answer3": "h", "label": 0}],
                  [("Ctx.\n\nQuestion: Why?", "c", ["a", "b", "c", "d"]),
                   ("Ctx2.\n\nQuestion: How?", "e", ["e", "f", "g", "h"])]),
    "dart": ([{"tripleset": [["Mars Hill", "JOINED", "1973"], ["Mars Hill", "LOCATION", "NC"]],
               "subtree_was_extended": False,
               "annotations": {"source": ["WikiSQL"], "text": ["Mars Hill joined in 1973.", "alt"]}},
              {"tripleset": [["A", "B", "C"]], "subtree_was_extended": True,
               "annotations": {"source": ["e2e"], "text": ["A B C."]}}],
             [("Mars Hill | JOINED | 1973; Mars Hill | LOCATION | NC", "Mars Hill joined in 1973.", []),
              ("A | B | C", "A B C.", [])]),
    "definite_pronoun_resolution": (
        [{"sentence": "Tom thanked Bill because he helped.", "pronoun": "he",
          "candidates": ["Tom", "Bill"], "label": 1},
         {"sentence": "Ann called Sue since she was bored.", "pronoun": "she",
          "candidates": ["Ann", "Sue"], "label": 0}],
        [('Tom thanked Bill because he helped.\n\nWho is "he" in this prior sentence?', "Bill", ["Tom", "Bill"]),
         ('Ann called Sue since she was bored.\n\nWho is "she" in this prior sentence?', "Ann", ["Ann", "Sue"])]),
    "dmcc_python": ([{"name": "1_A", "description": "Print the sum of a and b.", "source": 2, "difficulty": 7,
                      "solutions": {"language": [2, 3, 3], "solution": ["int main(){}", "print(1)", "print(2)"]},
                      "incorrect_solutions": {"language": [], "solution": []}},
                     {"name": "1_B", "description": "Only C++ here.", "source": 2, "difficulty": 7,
                      "solutions": {"language": [2], "solution": ["int main(){}"]},
                      "incorrect_solutions": {"language": [], "solution": []}}],
                    [("Print the sum of a and b.", "print(1)", []), SKIP]),
    "drop": ([{"section_id": "s", "query_id": "q1", "passage": "P.", "question": "How many?",
               "answers_spans": {"spans": ["3"], "types": ["number"]}},
              {"section_id": "s", "query_id": "q2", "passage": "P2.", "question": "Who?",
               "answers_spans": {"spans": ["Smith", "Jones"], "types": ["span", "span"]}}],
             [("P.\n\nHow many?", "3", []), ("P2.\n\nWho?", "Smith", [])]),
    "e2e_nlg": ([{"meaning_representation": "name[Aromi], eatType[pub]", "human_reference": "Aromi is a pub."},
                 {"meaning_representation": "name[Bibimbap]", "human_reference": "Bibimbap House."}],
                [("name[Aromi], eatType[pub]", "Aromi is a pub.", []), ("name[Bibimbap]", "Bibimbap House.", [])]),
    "gigaword": ([{"document": "doc one", "summary": "sum one"}, {"document": "doc two", "summary": "sum two"}],
                 [("doc one", "sum one", []), ("doc two", "sum two", [])]),
    "glue_mrpc": (_glue_pair("sentence1", "sentence2"),
                  [("The cat sat.\nA cat was sitting.", "yes", YN), ("It rained.\nThe sun shone.", "no", YN)]),
    "glue_qqp": (_glue_pair("question1", "question2"),
                 [("The cat sat.\nA cat was sitting.", "yes", YN), ("It rained.\nThe sun shone.", "no", YN)]),
    "hellaswag": ([{"ind": 4, "activity_label": "Cooking", "ctx_a": "A man", "ctx_b": "cuts", "ctx": "A man cuts",
                    "endings": ["bread.", "the sky.", "rain.", "a song."], "source_id": "x", "split": "train",
                    "split_type": "indomain", "label": "0"},
                   {"ind": 5, "activity_label": "Skiing", "ctx_a": "She", "ctx_b": "skis", "ctx": "She skis",
                    "endings": ["a", "b", "c", "d"], "source_id": "y", "split": "test",
                    "split_type": "indomain", "label": ""}],
                  [("A man cuts", "bread.", ["bread.", "the sky.", "rain.", "a song."]), SKIP]),
    "imdb_reviews": ([{"text": "Great film.", "label": 1}, {"text": "Unlabeled.", "label": -1}],
                     [("Great film.", "positive", ...), SKIP]),
    "lambada": ([{"text": "He opened the door and saw his dog"}, {"text": "She read the book  "}],
                [("He opened the door and saw his", "dog", []), ("She read the", "book", [])]),
    "math_dataset": ([{"question": "Solve 2*x = 4 for x.\n", "answer": "2\n"},
                      {"question": "Solve -3*k + 9 = 0.", "answer": "3"}],
                     [("Solve 2*x = 4 for x.", "2", []), ("Solve -3*k + 9 = 0.", "3", [])]),
    "mnli_matched": (MNLI, MNLI_EXP), "mnli_mismatched": (MNLI, MNLI_EXP),
    "multi_news": ([{"document": "Story A ||||| Story B", "summary": "– Both stories."},
                    {"document": "Story C", "summary": "– C."}],
                   [("Story A ||||| Story B", "– Both stories.", []), ("Story C", "– C.", [])]),
    "multirc": ([{"paragraph": "Para.", "question": "Q?", "answer": "A1",
                  "idx": {"paragraph": 0, "question": 0, "answer": 0}, "label": 1},
                 {"paragraph": "Para.", "question": "Q?", "answer": "A2",
                  "idx": {"paragraph": 0, "question": 0, "answer": 1}, "label": 0}],
                [("Para.\n\nQuestion: Q?\nResponse: A1", "yes", YN), ("Para.\n\nQuestion: Q?\nResponse: A2", "no", YN)]),
    "natural_questions": ([{"question": "who wrote hamlet", "answer": ["Shakespeare", "William Shakespeare"]},
                           {"question": "when was rome founded", "answer": ["753 BC"]}],
                          [("who wrote hamlet?", "Shakespeare", []), ("when was rome founded?", "753 BC", [])]),
    "openbookqa": ([{"id": "o1", "question_stem": "Sun is a", "answerKey": "D",
                     "choices": {"text": ["moon", "planet", "comet", "star"], "label": ["A", "B", "C", "D"]}},
                    {"id": "o2", "question_stem": "Ice is", "answerKey": "A",
                     "choices": {"text": ["cold", "hot", "loud", "red"], "label": ["A", "B", "C", "D"]}}],
                   [("Sun is a", "star", ["moon", "planet", "comet", "star"]),
                    ("Ice is", "cold", ["cold", "hot", "loud", "red"])]),
    "paws_wiki": ([{"id": 1, "sentence1": "S1.", "sentence2": "S2.", "label": 0},
                   {"id": 2, "sentence1": "S3.", "sentence2": "S4.", "label": 1}],
                  [("S1.\nS2.", "no", YN), ("S3.\nS4.", "yes", YN)]),
    "piqa": ([{"goal": "Open a jar", "sol1": "twist the lid", "sol2": "hit it", "label": 0},
              {"goal": "Dry hair", "sol1": "use water", "sol2": "use a towel", "label": 1}],
             [("Open a jar", "twist the lid", ["twist the lid", "hit it"]),
              ("Dry hair", "use a towel", ["use water", "use a towel"])]),
    "qnli": ([{"question": "Where?", "sentence": "In Paris.", "label": 0, "idx": 0},
              {"question": "When?", "sentence": "Blue.", "label": 1, "idx": 1}],
             [("Where?\nIn Paris.", "yes", ...), ("When?\nBlue.", "no", ...)]),
    "quac": ([{"dialogue_id": "d1", "wikipedia_page_title": "T", "background": "Bg.", "section_title": "S",
               "context": "Ctx.", "turn_ids": ["d1_q#0"], "questions": ["What happened?"], "followups": [0],
               "yesnos": [2], "answers": {"texts": [["It fell."]], "answer_starts": [[0]]},
               "orig_answers": {"texts": ["It fell."], "answer_starts": [0]}},
              {"dialogue_id": "d2", "wikipedia_page_title": "U", "background": "Bg2.", "section_title": "S",
               "context": "Ctx2.", "turn_ids": ["d2_q#0", "d2_q#1"], "questions": ["Who?", "Why?"],
               "followups": [0, 1], "yesnos": [2, 2], "answers": {"texts": [["Ann"], ["So"]], "answer_starts": [[0], [4]]},
               "orig_answers": {"texts": ["Ann", "So"], "answer_starts": [0, 4]}}],
             [("Bg.\n\nCtx.\n\nQ: What happened?", "It fell.", []), ("Bg2.\n\nCtx2.\n\nQ: Who?", "Ann", [])]),
    "record": ([{"passage": "Obama met Merkel.", "query": "@placeholder spoke.", "entities": ["Obama", "Merkel"],
                 "entity_spans": {"text": ["Obama", "Merkel"], "start": [0, 10], "end": [5, 16]},
                 "answers": ["Merkel"], "idx": {"passage": 0, "query": 0}},
                {"passage": "Test.", "query": "@placeholder.", "entities": ["X"],
                 "entity_spans": {"text": ["X"], "start": [0], "end": [1]}, "answers": [],
                 "idx": {"passage": 1, "query": 1}}],
               [("Obama met Merkel.\n\n@placeholder spoke.", "Merkel", ["Obama", "Merkel"]), SKIP]),
    "rte": (_super_glue_nli(0), [(SUPER_GLUE_NLI_INPUTS[0], "no", ...), (SUPER_GLUE_NLI_INPUTS[1], "yes", ...)]),
    "samsum": ([{"id": "1", "dialogue": "A: hi\nB: hey", "summary": "They greet."},
                {"id": "2", "dialogue": "A: bye", "summary": "A leaves."}],
               [("A: hi\nB: hey", "They greet.", []), ("A: bye", "A leaves.", [])]),
    "sentiment140": ([{"text": "love it", "date": "d", "user": "u", "sentiment": 4, "query": "NO_QUERY"},
                      {"text": "meh", "date": "d", "user": "u", "sentiment": 2, "query": "NO_QUERY"}],
                     [("love it", "positive", ...), SKIP]),
    "snli": ([{"premise": "A kid plays.", "hypothesis": "Nobody plays.", "label": 2},
              {"premise": "X.", "hypothesis": "Y.", "label": -1}],
             [("Premise: A kid plays.\nHypothesis: Nobody plays.", "no", NLI3), SKIP]),
    "squad_v1": (SQUAD[:1] * 2, [("Ctx one.\n\nQuestion: Q one?", "ans one", [])] * 2),
    "squad_v2": (SQUAD, [("Ctx one.\n\nQuestion: Q one?", "ans one", []),
                         ("Ctx two.\n\nQuestion: Q two?", "unanswerable", [])]),
    "sst2": ([{"idx": 0, "sentence": "a joy", "label": 1}, {"idx": 1, "sentence": "dull", "label": 0}],
             [("a joy", "positive", ...), ("dull", "negative", ...)]),
    "stsb": ([{"sentence1": "A.", "sentence2": "B.", "label": 3.8, "idx": 0},
              {"sentence1": "C.", "sentence2": "D.", "label": -1.0, "idx": 1}],
             [("A.\nB.", "4", ...), SKIP]),
    "trec": ([{"text": "Who killed Lincoln?", "coarse_label": 3, "fine_label": 29},
              {"text": "What does NASA stand for?", "coarse_label": 0, "fine_label": 1}],
             [("Who killed Lincoln?", "human", ...), ("What does NASA stand for?", "abbreviation", ...)]),
    "trivia_qa": (TQA, TQA_EXP), "trivia_qa_wiki_missing": (TQA, TQA_EXP),
    "web_nlg_en": ([{"category": "Airport", "size": 1, "eid": "Id1",
                     "original_triple_sets": {"otriple_set": [["Aarhus | city | Denmark"]]},
                     "modified_triple_sets": {"mtriple_set": [["Aarhus | cityServed | Denmark",
                                                               "Aarhus | elevation | 25"]]},
                     "shape": "", "shape_type": "", "lex": {"comment": ["good"], "lid": ["Id1"],
                                                            "text": ["Aarhus serves Denmark."], "lang": [""]},
                     "test_category": "", "dbpedia_links": [], "links": []},
                    {"category": "Food", "size": 1, "eid": "Id2",
                     "original_triple_sets": {"otriple_set": [["X | y | Z"]]},
                     "modified_triple_sets": {"mtriple_set": [["X | y | Z"]]}, "shape": "", "shape_type": "",
                     "lex": {"comment": [], "lid": [], "text": [], "lang": []}, "test_category": "",
                     "dbpedia_links": [], "links": []}],
                   [("Aarhus | cityServed | Denmark, Aarhus | elevation | 25", "Aarhus serves Denmark.", []), SKIP]),
    "wic": ([{"word": "bank", "sentence1": "River bank.", "sentence2": "Bank loan.", "start1": 6, "start2": 0,
              "end1": 10, "end2": 4, "idx": 0, "label": 0},
             {"word": "run", "sentence1": "I run.", "sentence2": "We run.", "start1": 2, "start2": 3,
              "end1": 5, "end2": 6, "idx": 1, "label": 1}],
            [("River bank.\nBank loan.\n\nWord: bank", "no", YN), ("I run.\nWe run.\n\nWord: run", "yes", YN)]),
    "wiki_lingua_english_en": (
        [{"url": "u1", "article": {"section_name": ["Step 1"], "document": ["Boil water for tea."],
                                   "summary": ["Boil water."]}},
         {"url": "u2", "article": {"section_name": [], "document": [], "summary": []}}],
        [("Boil water for tea.", "Boil water.", []), SKIP]),
    "winogrande": ([{"sentence": "The trophy didn't fit because _ was big.", "option1": "trophy",
                     "option2": "case", "answer": "1"},
                    {"sentence": "Ann helped Sue because _ was kind.", "option1": "Ann", "option2": "Sue",
                     "answer": ""}],
                   [("The trophy didn't fit because _ was big.", "trophy", ["trophy", "case"]), SKIP]),
    "wmt14_enfr": _wmt("fr"), "wmt16_translate_csen": _wmt("cs"), "wmt16_translate_deen": _wmt("de"),
    "wmt16_translate_fien": _wmt("fi"), "wmt16_translate_roen": _wmt("ro"),
    "wmt16_translate_ruen": _wmt("ru"), "wmt16_translate_tren": _wmt("tr"),
    "wnli": ([{"sentence1": "S.", "sentence2": "T.", "label": 1, "idx": 0},
              {"sentence1": "U.", "sentence2": "V.", "label": -1, "idx": 1}],
             [("S.\n\nHypothesis: T.", "yes", YN), SKIP]),
    "wsc": ([{"text": "Mark told Pete he was late.", "span1_index": 0, "span2_index": 3, "span1_text": "Mark",
              "span2_text": "he", "idx": 0, "label": 0},
             {"text": "The cup fell so it broke.", "span1_index": 1, "span2_index": 5, "span1_text": "cup",
              "span2_text": "it", "idx": 1, "label": 1}],
            [('Mark told Pete he was late.\n\nIn the passage above, does "he" refer to "Mark"?', "no", YN),
             ('The cup fell so it broke.\n\nIn the passage above, does "it" refer to "cup"?', "yes", YN)]),
    "xsum": (XSUM, [("Long article one.", "Short one.", []), ("Long article two.", "Short two.", [])]),
    "yelp_polarity_reviews": ([{"text": "Awful.", "label": 0}, {"text": "Tasty!", "label": 1}],
                              [("Awful.", "negative", ...), ("Tasty!", "positive", ...)]),
    "fix_punct": (XSUM, [("short one", "Short one.", []), ("short two", "Short two.", [])]),
    "true_case": (XSUM, [("short one.", "Short one.", []), ("short two.", "Short two.", [])]),
    "word_segment": (XSUM, [("Shortone.", "Short one.", []), ("Shorttwo.", "Short two.", [])]),
}

SPEC = muffin_hub.load_muffin_hub_spec()


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _patch_hub(monkeypatch: pytest.MonkeyPatch, rows: list[dict], calls: list | None = None) -> None:
    def fake_hub(hub_id: str, config: str | None, split: str) -> list[dict]:
        if calls is not None:
            calls.append((hub_id, config, split))
        return rows

    monkeypatch.setattr(muffin_hub, "load_hub", fake_hub)


def test_every_entry_well_formed_and_has_a_case() -> None:
    assert len(SPEC) >= 60
    for name, entry in SPEC.items():
        assert muffin_hub.check_muffin_hub_entry(name, entry) == [], name
    assert set(CASES) == set(SPEC), "every YAML entry needs hand-written records here"


def test_entries_agree_with_registry() -> None:
    tasks = {t.id: t for t in registry.load_registry().tasks.values() if t.collection == "muffin"}
    derived = {"fix_punct", "true_case", "word_segment"}  # registry has no hub source for them
    for name, entry in SPEC.items():
        assert name in tasks, f"{name} is not a Muffin registry task"
        if name in derived:
            continue
        src = tasks[name].source
        assert entry["hub"] == src["hub"], name
        assert src.get("hub_config") in (None, entry.get("config")), name


@pytest.mark.parametrize("name", sorted(CASES))
def test_entry_converts_real_schema_records(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = SPEC[name]
    records, expected = CASES[name]
    calls: list = []
    _patch_hub(monkeypatch, records, calls)
    stats: dict = {}
    tset = templates.load_template_set(registry.load_registry().get(name).template_set)
    ds = muffin_hub.load_muffin_hub(entry["hub"], task=name, config=entry.get("config"), stats=stats,
                                    template_set=tset.name)
    assert calls == [(entry["hub"], entry.get("config"), entry.get("splits", {}).get("train", "train"))]
    want = [e for e in expected if e is not SKIP]
    assert len(ds) == len(want)
    assert stats.get("filtered_rows", 0) == len(expected) - len(want)
    for row, (inputs, targets, options) in zip(ds, want, strict=True):
        if options is ...:
            options = entry["options"]
        assert (row["inputs"], row["targets"], row["options"]) == (inputs, targets, options)
        assert row["task"] == name and row["source"] == "muffin"
        assert name in row["provenance"]
        if options:
            assert row["targets"] in options
        # the named template fields are columns, and the task's own templates render the row
        # with an instruction beyond the record's text
        assert all(isinstance(row[f], str) for f in tset.fields)
        for fmt in ("zs_opt", "zs_noopt"):
            r = templates.render(row, tset, fmt=fmt, rng=random.Random(0))
            values = [row[f] for f in (*tset.fields, "inputs")]
            assert input_has_instruction(r.inputs, values, row["options"]), r.inputs


def test_missing_field_is_a_bad_row_naming_row_and_field(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [ARC[0], {"id": "Q9", "question": "No choices here", "answerKey": "A"}]
    _patch_hub(monkeypatch, rows)
    with pytest.raises(data.DataFormatError, match=r"line 1: .*'choices\.text'"):
        muffin_hub.load_muffin_hub("allenai/ai2_arc", task="arc_easy", config="ARC-Easy")
    stats: dict = {}
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = muffin_hub.load_muffin_hub("allenai/ai2_arc", task="arc_easy", on_bad_rows="skip", stats=stats)
    assert len(ds) == 1 and stats["bad_rows"] == 1
    assert "line 1" in stats["bad_examples"][0] and "choices.text" in stats["bad_examples"][0]


def test_bad_label_and_answer_key_are_bad_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_hub(monkeypatch, [{"text": "x", "label": 7}])
    with pytest.raises(data.DataFormatError, match="line 0: .*label 7 outside"):
        muffin_hub.load_muffin_hub("fancyzhx/ag_news", task="ag_news_subset")
    _patch_hub(monkeypatch, [{**ARC[0], "answerKey": "Z"}])
    with pytest.raises(data.DataFormatError, match="answerKey='Z' not among"):
        muffin_hub.load_muffin_hub("allenai/ai2_arc", task="arc_easy")


def test_split_mapping_and_lookup_by_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list = []
    _patch_hub(monkeypatch, [], calls)
    muffin_hub.load_muffin_hub("facebook/anli", task="anli_r2", split="validation")
    muffin_hub.load_muffin_hub("nyu-mll/glue", task="my_mrpc", config="mrpc")  # task unknown, hub+config unique
    assert calls[0] == ("facebook/anli", None, "dev_r2")
    assert calls[1] == ("nyu-mll/glue", "mrpc", "train")


def test_unknown_or_ambiguous_names_error_with_close_names(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_hub(monkeypatch, [])
    with pytest.raises(NotImplementedError, match="close names: .*anli_r1"):
        muffin_hub.load_muffin_hub("someone/anli", task="anli_r4")
    with pytest.raises(NotImplementedError, match="entries reading nyu-mll/glue: .*cola"):
        muffin_hub.load_muffin_hub("nyu-mll/glue", task="glue_thing")
    with pytest.raises(data.DataFormatError, match="fix the registry source"):
        muffin_hub.load_muffin_hub("other/boolq", task="bool_q")


def test_offline_hub_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="offline"):
        muffin_hub.load_muffin_hub("google/boolq", task="bool_q")


def test_malformed_yaml_entries_are_reported(tmp_path) -> None:
    bad = tmp_path / "hub.yaml"
    bad.write_text(
        "datasets:\n"
        "  a: {hub: x, fields: [q], inputs: '{q} {z}', targets: {field: q}, options: [no, yes]}\n"
        "  b: {hub: x, fields: [q], inputs: '{q|shout}', targets: {from_options: true}}\n"
        "  c: {hub: x, fields: [q], inputs: '{q}', targets: {field: q}, colour: red}\n"
        "  d: {hub: x, fields: [q], inputs: '{q}', targets: q}\n", encoding="utf-8")
    with pytest.raises(data.DataFormatError) as info:
        muffin_hub.load_muffin_hub_spec(bad)
    msg = str(info.value)
    assert "'a'" in msg and "'z'" in msg and "quote yes/no" in msg
    assert "unknown filter 'shout'" in msg and "from_options needs options" in msg
    assert "unknown key 'colour'" in msg and "'d': targets must be a mapping" in msg


def test_pattern_language() -> None:
    rec = {"a": {"b": ["x", "y"]}, "n": 3}
    assert muffin_hub.fill_pattern("{{{a.b[1]}}} {n} {a.b|join}", rec) == "{y} 3 x, y"
    with pytest.raises(ValueError, match="is a list"):
        muffin_hub.fill_pattern("{a.b}", rec)
    with pytest.raises(muffin_hub.MissingField, match="'a.c'"):
        muffin_hub.field_value(rec, "a.c")


def test_load_task_reaches_the_yaml_through_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    records, expected = CASES["cb"]
    calls: list = []
    _patch_hub(monkeypatch, records, calls)
    ds = data.load_task("cb", None)
    assert calls == [("aps/super_glue", "cb", "train")]
    assert ds["targets"] == [e[1] for e in expected]
