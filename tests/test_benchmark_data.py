"""Benchmark loaders: the offline mirror, validation errors, subsampling, yaml baselines."""

from __future__ import annotations

import collections
import json
import re
import shutil
import statistics

import pytest

from flan_nb.eval import benchmark_schema
from flan_nb.eval import benchmarks as bd
from flan_nb.eval.benchmark_schema import BenchmarkData, BenchmarkDataError


@pytest.mark.data
def test_offline_counts(data_root):
    mmlu = bd.load("mmlu", data_root=data_root)
    assert len(mmlu.items) == 57 and mmlu.n_items == 14042
    assert sum(len(v) for v in mmlu.exemplars.values()) == 285
    assert mmlu.meta["split"] == "test" and mmlu.meta["splits_available"] == ["dev", "test"]
    assert "validation" in mmlu.meta["note"]
    bbh = bd.load("bbh", data_root=data_root)
    assert len(bbh.items) == 27 and bbh.n_items == 6511
    assert bbh.meta["bbh_targets_not_an_option"] == [
        "movie_recommendation/163", "ruin_names/99", "ruin_names/144"]  # real quirks, kept
    ty = bd.load("tydiqa", data_root=data_root)
    assert sorted(ty.items) == sorted(["ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te"])
    assert ty.n_items == 5077 and len(ty.items["bn"]) == 113
    assert {c for c, s in ty.meta["exemplar_source"].items() if s == "train"} == {"en", "ko", "sw"}
    mgsm = bd.load("mgsm", data_root=data_root)
    assert len(mgsm.items) == 11 and all(len(v) == 250 for v in mgsm.items.values())
    assert all(len(v) == 8 for v in mgsm.exemplars.values())
    assert sum(r["answer"] == "2,125" for r in mgsm.items["en"]) == 1


@pytest.mark.data
def test_subsampling_is_deterministic(data_root):
    a = bd.load("bbh", data_root=data_root, subtasks=["navigate", "snarks"], n_per_subtask=5, seed=1)
    b = bd.load("bbh", data_root=data_root, subtasks=["navigate", "snarks"], n_per_subtask=5, seed=1)
    c = bd.load("bbh", data_root=data_root, subtasks=["navigate", "snarks"], n_per_subtask=5, seed=2)
    assert a.items == b.items and a.items != c.items
    assert all(len(v) == 5 for v in a.items.values())
    ids = [int(r["id"].split("/")[1]) for r in a.items["navigate"]]
    assert ids == sorted(ids)                              # file order kept
    assert a.meta["subsampled"] and a.meta["n_items"] == 10
    # the subsample of a subtask does not depend on which other subtasks are loaded
    solo = bd.load("bbh", data_root=data_root, subtasks=["snarks"], n_per_subtask=5, seed=1)
    assert solo.items["snarks"] == a.items["snarks"]


@pytest.mark.data
def test_bbh_baselines_in_yaml_match_the_files(data_root):
    conf = bd.settings()["bbh"]["subtasks"]
    for task, info in conf.items():
        doc = json.loads((data_root / "bbh" / "bbh" / f"{task}.json").read_text("utf-8"))
        counts = [len(benchmark_schema.bbh_options(e["input"])) for e in doc["examples"]]
        if info["kind"] == "multiple_choice":
            mode = collections.Counter(counts).most_common(1)[0][0]
            assert info["n_options"] == mode, task
            assert info.get("random_mode", info["random"]) == pytest.approx(100 / mode, abs=1e-3), task
            items_mean = statistics.mean(100 / n for n in counts)
            assert info["random"] == pytest.approx(items_mean, abs=1e-3), task
        else:
            assert not any(counts), task
            targets = {e["target"] for e in doc["examples"]}
            if info["kind"] == "labels":
                assert targets == set(info["labels"]) and info["random"] == 50.0, task
            else:
                assert len(targets) > 2 and info["random"] == 0.0, task
    groups = collections.Counter(v["group"] for v in conf.values())
    assert groups == {"nlp": 12, "alg": 15}


@pytest.mark.data
def test_mgsm_prefixes_and_phrases_match_exemplars(data_root):
    ex = json.loads((data_root / "mgsm" / "exemplars.json").read_text("utf-8"))["MGSM_EXEMPLARS"]
    conf = bd.settings()["mgsm"]
    for lang, shots in ex.items():
        for shot in shots.values():
            assert shot["q"].startswith(conf["question_prefix"][lang]), lang
            assert shot["a"].startswith(conf["answer_prefix"][lang]), lang
        # every exemplar states its answer with one of the language's phrases
        assert all(any(p in s["a"] for p in conf["answer_phrases"][lang]) for s in shots.values()), lang


def test_unknown_names_suggest_the_closest():
    with pytest.raises(BenchmarkDataError, match="did you mean logical_deduction_five_objects"):
        bd.load("bbh", data_root="/nonexistent", subtasks=["logical_deduction_five_object"])
    with pytest.raises(BenchmarkDataError, match="did you mean mmlu"):
        bd.load("mmul")
    with pytest.raises(BenchmarkDataError, match="did you mean high_school_physics"):
        bd.load("mmlu", subtasks=["highschool_physics"])


@pytest.mark.data
def test_offline_validation_split_is_refused(data_root):
    with pytest.raises(BenchmarkDataError, match="validation split is not in the offline mirror"):
        bd.load("mmlu", data_root=data_root, split="validation", subtasks=["anatomy"])


def _mmlu_rec(**kw):
    rec = {"subject": "anatomy", "question": "q?", "choices": ["a", "b", "c", "d"], "answer": 1}
    rec.update(kw)
    return rec


def test_validation_errors_name_the_item():
    good = BenchmarkData("mmlu", {"anatomy": [_mmlu_rec()]}, {"anatomy": [_mmlu_rec()]})
    bd.validate(good)
    bad = BenchmarkData("mmlu", {"anatomy": [_mmlu_rec(), _mmlu_rec(answer=4)]},
                        {"anatomy": [_mmlu_rec()]})
    with pytest.raises(BenchmarkDataError, match=r"mmlu/anatomy item 1: `answer` 4 is outside the options"):
        bd.validate(bad)
    missing = {k: v for k, v in _mmlu_rec().items() if k != "question"}
    with pytest.raises(BenchmarkDataError, match=r"mmlu/anatomy item 0: missing field `question`"):
        bd.validate(BenchmarkData("mmlu", {"anatomy": [missing]}, {"anatomy": [_mmlu_rec()]}))
    with pytest.raises(BenchmarkDataError, match=r"mmlu/anatomy: no dev exemplars"):
        bd.validate(BenchmarkData("mmlu", {"anatomy": [_mmlu_rec()]}, {}))
    with pytest.raises(BenchmarkDataError, match="list of 4 strings"):
        bd.validate(BenchmarkData("mmlu", {"x": [_mmlu_rec(choices=["a", "b"])]}, {"x": [_mmlu_rec()]}))
    cot = "desc\n\nQ: a\nA: Let's think step by step. So the answer is (A)."
    bbh = BenchmarkData("bbh", {"date_understanding": [
        {"input": "When?\nOptions:\n(A) x\n(B) y", "target": "(C)"}]}, {"date_understanding": cot})
    with pytest.raises(BenchmarkDataError, match=r"bbh/date_understanding item 0: target \(C\) is not among"):
        bd.validate(bbh)
    labels = BenchmarkData("bbh", {"navigate": [{"input": "Go?", "target": "Maybe"}]}, {"navigate": cot})
    with pytest.raises(BenchmarkDataError, match=r"bbh/navigate item 0: target 'Maybe' is not one of"):
        bd.validate(labels)
    ty = BenchmarkData("tydiqa", {"ar": [{"id": "1", "context": "c", "question": "q", "answers": []}]},
                       {"ar": [{"id": "2", "context": "c", "question": "q", "answers": ["a"]}]})
    with pytest.raises(BenchmarkDataError, match=r"tydiqa/ar item 0 \(id 1\): `answers` must be"):
        bd.validate(ty)
    mg = BenchmarkData("mgsm", {"de": [{"question": "q", "answer": "zwölf"}]}, {"de": [{"q": "", "a": ""}]})
    with pytest.raises(BenchmarkDataError, match=r"mgsm/de item 0: `answer` 'zwölf' is not a number"):
        bd.validate(mg)


@pytest.mark.data
def test_mirror_file_errors(data_root, tmp_path):
    # a copy of one subject without its dev file: the error names the subject and the file
    (tmp_path / "mmlu" / "test").mkdir(parents=True)
    (tmp_path / "mmlu" / "dev").mkdir(parents=True)
    shutil.copy(data_root / "mmlu" / "test" / "anatomy_test.csv", tmp_path / "mmlu" / "test")
    shutil.copy(data_root / "mmlu" / "mmlu-cot.json", tmp_path / "mmlu")
    with pytest.raises(BenchmarkDataError, match=r"mmlu/anatomy: no dev exemplars .*anatomy_dev.csv"):
        bd.load("mmlu", data_root=tmp_path, subtasks=["anatomy"])
    (tmp_path / "mgsm").mkdir()
    (tmp_path / "mgsm" / "exemplars.json").write_text('{"MGSM_EXEMPLARS": {"de": {}}}', "utf-8")
    (tmp_path / "mgsm" / "mgsm_de.tsv").write_text("Frage ohne Antwort\n", "utf-8")
    with pytest.raises(BenchmarkDataError, match=r"mgsm_de.tsv line 1 \(mgsm/de item 0\): expected question<TAB>answer"):
        bd.load("mgsm", data_root=tmp_path, subtasks=["de"])


def test_hub_path_reports_the_dataset(monkeypatch):
    # no network here: the hub loader must fail with the hub id in the message, not hang
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def fake_load_dataset(repo, name=None, split=None):
        raise ConnectionError("offline")

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(BenchmarkDataError, match=r"juletxara/mgsm \(config de, split test\)"):
        bd.load("mgsm", source="hub", subtasks=["de"])


def test_hub_records_are_mapped_to_the_raw_schema(monkeypatch):
    import datasets

    def fake_load_dataset(repo, name=None, split=None):
        if repo == "juletxara/mgsm":
            if split == "train":
                return [{"question": "Frage: a", "answer": "Schritt-für-Schritt-Antwort: b",
                         "answer_number": 1}] * 8
            return [{"question": "Wie viel?", "answer": None, "answer_number": 18}]
        if repo == "google-research-datasets/tydiqa":
            ctx = "x" * 200
            return [{"id": f"swahili-{split}-{i}", "title": "t", "context": ctx, "question": "q",
                     "answers": {"text": ["a"], "answer_start": [0]}} for i in range(3)]
        raise AssertionError(repo)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    mg = bd.load("mgsm", source="hub", subtasks=["de"])
    assert mg.items["de"] == [{"question": "Wie viel?", "answer": "18", "id": "de/0"}]
    assert len(mg.exemplars["de"]) == 8 and mg.meta["hub_id"] == "juletxara/mgsm"
    ty = bd.load("tydiqa", source="hub", subtasks=["sw"])
    assert list(ty.items) == ["sw"] and ty.meta["exemplar_source"] == {"sw": "train"}
    assert ty.exemplars["sw"][0]["id"].startswith("swahili-train")


def test_synthetic_mapping_forms():
    data = bd.from_mapping("mgsm", {"items": {"x": [{"question": "q", "answer": "3"}]},
                                    "exemplars": {"x": {"2": {"q": "b", "a": "2"}, "1": {"q": "a", "a": "1"}}}})
    assert data.exemplars["x"] == [{"q": "a", "a": "1"}, {"q": "b", "a": "2"}]
    with pytest.raises(BenchmarkDataError, match="expected BenchmarkData or a mapping"):
        bd.from_mapping("mgsm", ["not", "a", "mapping"])
    syn = bd.load("bbh", source="synthetic", n_per_subtask=3, seed=0)
    assert syn.meta["data"] == "synthetic" and all(len(v) == 3 for v in syn.items.values())
    assert re.match(r"\w+", next(iter(syn.items)))


def test_bbh_groups_agree_with_the_paper_reference_file():
    # flan_nb/resources/paper/bbh_split.yaml is written by the report side from Suzgun et al.
    from importlib import resources

    import yaml

    path = resources.files("flan_nb").joinpath("resources/paper/bbh_split.yaml")
    if not path.is_file():
        pytest.skip("resources/paper/bbh_split.yaml not present")
    split = yaml.safe_load(path.read_text("utf-8"))
    conf = bd.settings()["bbh"]["subtasks"]
    for group in ("nlp", "alg"):
        assert sorted(split[group]) == sorted(t for t, v in conf.items() if v["group"] == group)
