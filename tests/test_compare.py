"""Run comparison: benchmark/task diffs, params diff, seeded paired bootstrap."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from flan_nb.report import compare

FIX = Path(__file__).parent / "fixtures" / "report"
RUN_A, RUN_B = FIX / "run_a", FIX / "run_b"


def test_benchmark_and_task_differences():
    res = compare.compare_runs(RUN_A, RUN_B)
    b = res.benchmarks.set_index(["benchmark", "setting"])
    assert b.loc[("mmlu", "direct"), ["A", "B", "diff"]].tolist() == [30.0, 40.0, 10.0]
    assert b.loc[("normalized_average", ""), "diff"] == pytest.approx(1.5)
    assert b.loc[("bbh", "direct"), "n_items"] == 40
    assert math.isnan(b.loc[("mmlu", "cot"), "B"])  # run B has no CoT evaluation
    t = res.tasks.set_index(["benchmark", "setting", "task"])["diff"]
    assert t[("mmlu", "direct", "abstract_algebra")] == 20.0
    assert t[("mmlu", "direct", "anatomy")] == 0.0


def test_bootstrap_is_seeded_and_brackets_the_difference():
    one = compare.compare_runs(RUN_A, RUN_B, seed=7).benchmarks
    two = compare.compare_runs(RUN_A, RUN_B, seed=7).benchmarks
    assert one.equals(two)
    row = one.set_index(["benchmark", "setting"]).loc[("mmlu", "direct")]
    assert row["ci_low"] <= row["diff"] <= row["ci_high"]
    assert row["ci_low"] < row["ci_high"]
    # identical predictions: every resample gives 0
    bbh = one.set_index(["benchmark", "setting"]).loc[("bbh", "direct")]
    assert (bbh["ci_low"], bbh["ci_high"]) == (0.0, 0.0)


def test_confidence_level_reaches_the_interval_and_the_text():
    wide = compare.compare_runs(RUN_A, RUN_B, seed=7)
    narrow = compare.compare_runs(RUN_A, RUN_B, seed=7, level=0.5)
    assert "95% paired bootstrap" in wide.text() and "50% paired bootstrap" in narrow.text()
    w = wide.benchmarks.dropna(subset=["ci_low"])
    n = narrow.benchmarks.dropna(subset=["ci_low"])
    assert len(w) > 0
    assert ((n["ci_high"] - n["ci_low"]).values <= (w["ci_high"] - w["ci_low"]).values).all()
    assert ((n["ci_high"] - n["ci_low"]).values < (w["ci_high"] - w["ci_low"]).values).any()


def test_bootstrap_diff_on_known_data():
    a = {"t1": {str(i): float(i < 5) for i in range(10)}, "t2": {"x": 0.0, "y": 0.0}}
    b = {"t1": {str(i): 1.0 for i in range(10)}, "t2": {"x": 1.0, "y": 0.0}}
    r1 = compare.bootstrap_diff(a, b, n_resamples=500, seed=3)
    r2 = compare.bootstrap_diff(a, b, n_resamples=500, seed=3)
    # unweighted mean over subtasks: t1 +50 points, t2 +50 points
    assert r1["diff"] == pytest.approx(50.0) and r1["paired"] and r1["n_items"] == 12
    assert r1 == r2
    # the seed is what fixes the resamples: another seed moves the interval on a larger set
    big_a = {"t": {str(i): float(i % 3 == 0) for i in range(301)}}
    big_b = {"t": {str(i): float(i % 2 == 0) for i in range(301)}}
    ci = [compare.bootstrap_diff(big_a, big_b, n_resamples=200, seed=s) for s in (3, 3, 4)]
    assert ci[0] == ci[1] and (ci[0]["low"], ci[0]["high"]) != (ci[2]["low"], ci[2]["high"])
    assert 0.0 <= r1["low"] <= 50.0 <= r1["high"] <= 100.0
    unpaired = compare.bootstrap_diff({"t": {"a": 1.0}}, {"t": {"b": 0.0}}, n_resamples=10)
    assert not unpaired["paired"] and unpaired["diff"] == -100.0


def test_params_diff_and_text():
    res = compare.compare_runs(RUN_A, RUN_B)
    assert res.params.to_dict("records") == [
        {"key": "experiment", "A": "eval_flan_t5_small", "B": "eval_flan_t5_small_seed1"},
        {"key": "notebooks.03_eval_mmlu.seed", "A": 0, "B": 1},
        {"key": "notebooks.04_eval_bbh.extra", "A": compare.ABSENT, "B": True},
    ]
    text = res.text()
    assert text == str(res)
    assert "A: 20260101-000000-eval_flan_t5_small" in text
    assert "Params diff (3 keys):" in text and "mmlu" in text
    assert compare.flatten({"a": {"b": 1, "c": [1, 2]}, "d": {}}) == {"a.b": 1, "a.c": [1, 2], "d": {}}


def test_bad_prediction_line_names_file_and_line(tmp_path):
    (tmp_path / "predictions").mkdir()
    (tmp_path / "predictions" / "mmlu.jsonl").write_text('{"setting": "direct"}\n')
    with pytest.raises(compare.CompareError, match=r"mmlu.jsonl:1"):
        compare.load_predictions(tmp_path, "mmlu")
