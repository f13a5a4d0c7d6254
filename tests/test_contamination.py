"""13-gram contamination: detection on planted leaks, none on clean data, real eval sets."""

from __future__ import annotations

from flan_nb.data import contamination

LONG = ("the quick brown fox jumps over the lazy dog while seven small birds sing loudly in the old "
        "oak tree near the river")


def test_ngrams_and_short_items():
    toks = contamination.tokens("A b, c!")
    assert toks == ["a", "b", "c"]
    assert list(contamination.ngrams(toks, 13)) == [("a", "b", "c")]
    assert len(list(contamination.ngrams(contamination.tokens(LONG), 13))) == len(LONG.split()) - 12


def test_report_finds_planted_leak_per_subtask():
    sets = {("mmlu", "anatomy"): [LONG, "completely unrelated question about bones and muscles in humans " * 2],
            ("bbh", "dates"): ["what day is it today if yesterday was monday and tomorrow is wednesday ok"]}
    rows = [{"inputs": "Answer this: " + LONG.upper(), "targets": "x", "task": "leaky_task"},
            {"inputs": "nothing to see", "targets": "here", "task": "clean_task"}]
    df = contamination.report(rows, None, sets=sets)
    anatomy = df[(df.benchmark == "mmlu") & (df.subtask == "anatomy")].iloc[0]
    assert anatomy["items"] == 2 and anatomy["contaminated"] == 1 and anatomy["pct"] == 50.0
    assert "leaky_task (1)" in anatomy["mixture_tasks"]
    dates = df[df.benchmark == "bbh"].iloc[0]
    assert dates["contaminated"] == 0
    roll = contamination.by_benchmark(df)
    assert set(roll["benchmark"]) == {"mmlu", "bbh"}


def test_synthetic_training_mixture_is_clean_against_synthetic_benchmarks():
    from flan_nb.data import synthetic

    rows = []
    for fam in synthetic.training_families():
        for ex in synthetic.generate(fam, 30, 0, "train"):
            rows.append({"inputs": ex["inputs"], "targets": ex["targets"], "task": ex["task"]})
    sets = contamination.eval_sets(None, synthetic=True, synthetic_n=20)
    df = contamination.report(rows, None, sets=sets)
    assert set(df["benchmark"]) == {"synthetic_mmlu", "synthetic_bbh", "synthetic_tydiqa", "synthetic_mgsm"}
    # The held-out families (synthetic MMLU/BBH) share no 13-gram with training data.
    assert df.loc[df.benchmark.isin(["synthetic_mmlu", "synthetic_bbh"]), "contaminated"].sum() == 0
    # synthetic TyDiQA/MGSM reuse the training generators (extractive_qa, arithmetic_word) on a
    # disjoint split: no item is copied, but templated sentences ("... shares a house with a ...")
    # share 13-grams. The check must see that (it is why the notebook shows this table), and only
    # in English: the pseudo-languages are ciphered.
    flagged = df[df.contaminated > 0]
    assert set(flagged["subtask"]) <= {"synth_en"}
    train_inputs = {r["inputs"] for r in rows}
    bench = synthetic.benchmark_data("mgsm", 20, 0)["items"]["synth_en"]
    assert not train_inputs & {b["question"] for b in bench}


def test_real_eval_sets_load(data_root):
    sets = contamination.eval_sets(data_root, synthetic=False, benchmarks=("mmlu", "mgsm"))
    mmlu = sum(len(v) for (b, _), v in sets.items() if b == "mmlu")
    assert mmlu == 14042
    assert sum(len(v) for (b, _), v in sets.items() if b == "mgsm") >= 2500
    # GSM8K test problems are MGSM-en: a mixture holding them must be flagged
    from flan_nb.data import loaders as data

    gsm_test = data.load_gsm8k(data_root / "gsm8k", split="test", max_examples=20)
    rows = [{"inputs": q, "targets": "", "task": "gsm8k_test"} for q in gsm_test["inputs"]]
    df = contamination.report(rows, None, sets={k: v for k, v in sets.items() if k[0] == "mgsm"})
    assert df.loc[df.subtask == "en", "contaminated"].iloc[0] >= 15
