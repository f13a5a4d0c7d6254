"""Before/after inside one run: labelled eval keys, the sub-run they write, 09_before_after."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from flan_nb import config, pipeline, runs
from flan_nb.report import before_after as ba

ROOT = Path(__file__).resolve().parent.parent


def test_split_key_and_bad_labels():
    assert pipeline.split_key("04_eval_bbh@before") == ("04_eval_bbh", "before")
    assert pipeline.split_key("04_eval_bbh") == ("04_eval_bbh", "")
    for bad in ("04_eval_bbh@", "04_eval_bbh@Before", "04_eval_bbh@a/b"):
        with pytest.raises(config.ParamsError, match="label after `@`"):
            pipeline.split_key(bad, "p.yaml")


def test_only_eval_notebooks_take_a_label_and_it_must_match_the_key():
    params = {"experiment": "x", "notebooks": {"02_finetune@before": {}}}
    with pytest.raises(config.ParamsError, match="cannot run twice"):
        pipeline.resolve(params, "p.yaml")
    params = {"experiment": "x", "notebooks": {
        "04_eval_bbh@before": {"model": "builtin:micro-t5", "label": "after"}}}
    with pytest.raises(config.ParamsError, match="sets label `after`"):
        pipeline.resolve(params, "p.yaml")
    params = {"experiment": "x", "notebooks": {
        "04_eval_bbh@before": {"model": "builtin:micro-t5"},
        "04_eval_bbh": {"model": "builtin:micro-t5"}}}
    resolved = pipeline.resolve(params, "p.yaml")["notebooks"]
    assert resolved["04_eval_bbh@before"]["label"] == "before"
    assert resolved["04_eval_bbh"]["label"] == ""


def test_notebook_validation_reads_the_labelled_section(tmp_path):
    from flan_nb.eval.driver import EvalParams

    path = tmp_path / "p.yaml"
    path.write_text("experiment: x\nnotebooks:\n  04_eval_bbh@before: {max_per_subtask: 3}\n"
                    "  04_eval_bbh: {nope: 1}\n")
    cell = config.parameters_cell(ROOT / "notebooks" / "04_eval_bbh.ipynb")
    ns = {**cell, "label": "before", "max_per_subtask": 3, "split": "", "max_new_tokens_direct": 0,
          "max_new_tokens_cot": 0, "max_context": 0}
    cfg = config.validate(EvalParams, ns, params_file=str(path), notebook="04_eval_bbh")
    assert cfg.label == "before" and cfg.max_per_subtask == 3
    with pytest.raises(config.ParamsError, match="nope"):  # the plain key's section is checked
        config.validate(EvalParams, {**ns, "label": ""}, params_file=str(path),
                        notebook="04_eval_bbh")


@pytest.mark.parametrize("name", ["flan_smollm2_cpu", "flan_smollm2_cpu_tiny"])
def test_before_and_after_evaluate_the_same_items_under_one_protocol(name, monkeypatch):
    from flan_nb import value_checks

    if not (config.project_root().parent / "shared" / "data").is_dir():
        monkeypatch.setattr(value_checks, "DIRECTORY_KEYS", ())
    path = ROOT / "params" / f"{name}.yaml"
    nbs = pipeline.resolve(config.load_params_file(path), str(path))["notebooks"]
    evals = [k for k in nbs if "_eval_" in k and "@" not in k]
    assert len(evals) == 4
    for key in evals:
        before, after = dict(nbs[f"{key}@before"]), dict(nbs[key])
        assert before.pop("model") == "smollm2" and after.pop("model") == ""
        assert before.pop("label") == "before" and after.pop("label") == ""
        assert before == after, key  # data, subsample, seed, protocol, budgets: all the same
    order = list(nbs)
    assert order.index("02_finetune") < min(order.index(k) for k in evals)
    assert max(order.index(f"{k}@before") for k in evals) < order.index("02_finetune")
    assert order[-1] == "09_before_after"


def _write_side(path: Path, scores: dict[str, list[int]], unparsed: int) -> None:
    """A benchmark-shaped metrics.json + predictions for BBH direct, two subtasks."""
    (path / "predictions").mkdir(parents=True, exist_ok=True)
    rows, per_sub = [], {}
    for sub, correct in scores.items():
        per_sub[sub] = {"score": 100.0 * sum(correct) / len(correct), "n": len(correct)}
        rows += [{"setting": "direct", "subtask": sub, "item_id": f"{sub}-{i}", "correct": c}
                 for i, c in enumerate(correct)]
    (path / "predictions" / "bbh.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    mean = sum(v["score"] for v in per_sub.values()) / len(per_sub)
    metrics = {"bbh": {"meta": {"protocol": "paper", "n_per_subtask": 40},
                       "direct": {"score": mean, "n": len(rows), "unparsed": unparsed,
                                  "per_subtask": per_sub}}}
    (path / "metrics.json").write_text(json.dumps(metrics))


def test_before_after_table_intervals_and_outputs(tmp_path):
    run_dir = tmp_path / "run"
    # subtask a: 10 of 40 right before, 30 after (20 flips up); b: unchanged
    before_a = [1] * 10 + [0] * 30
    after_a = [1] * 30 + [0] * 10
    same_b = [1, 0] * 20
    _write_side(run_dir / "before", {"a": before_a, "b": same_b}, unparsed=7)
    _write_side(run_dir, {"a": after_a, "b": same_b}, unparsed=1)
    run = runs.Run(path=run_dir, run_id="run")
    cfg = ba.BeforeAfterParams(before="before", after="", n_resamples=500, level=0.95, seed=0,
                               run_dir="", params_file="")
    out = ba.before_after(run, cfg)
    row = out.benchmarks.set_index("benchmark").loc["bbh"]
    # benchmark = mean over subtasks: (75 - 25) / 2 = +25 points
    assert row["before"] == pytest.approx(37.5) and row["after"] == pytest.approx(62.5)
    assert row["diff"] == pytest.approx(25.0)
    assert row["ci_low"] > 0 and row["ci_high"] < 50 and bool(row["significant"])
    assert row["n_items"] == 80
    assert out.subtasks.iloc[0]["task"] == "a" and out.subtasks.iloc[0]["diff"] == pytest.approx(50)
    assert out.unparsed.to_dict("records")[0] == {"benchmark": "bbh", "setting": "direct", "n": 80,
                                                  "unparsed_before": 7, "unparsed_after": 1}
    written = json.loads((run_dir / "metrics.json").read_text())["before_after"]
    assert written["rows"]["bbh.direct"]["diff"] == pytest.approx(25.0)
    assert written["rows"]["bbh.direct"]["significant"] is True
    assert (run_dir / "tables" / "before_after.csv").read_text().startswith("benchmark,setting")
    # the same seed gives the same interval
    again = ba.before_after(run, cfg).benchmarks.set_index("benchmark").loc["bbh"]
    assert again["ci_low"] == row["ci_low"] and again["ci_high"] == row["ci_high"]
    # no change at all: the interval collapses on 0 and is not significant
    _write_side(run_dir, {"a": before_a, "b": same_b}, unparsed=7)
    flat = ba.before_after(run, cfg).benchmarks.set_index("benchmark").loc["bbh"]
    assert flat["diff"] == 0 and not bool(flat["significant"])
    assert math.isclose(flat["ci_halfwidth"], 0.0, abs_tol=1e-9)


def test_missing_side_names_the_file(tmp_path):
    run = runs.Run(path=tmp_path, run_id="r")
    cfg = ba.BeforeAfterParams(before="before", after="", n_resamples=200, level=0.95, seed=0,
                               run_dir="", params_file="")
    with pytest.raises(ba.BeforeAfterError, match="before/metrics.json is missing"):
        ba.before_after(run, cfg)


def test_labelled_sub_run(tmp_path):
    run = runs.Run(path=tmp_path, run_id="r")
    assert run.labelled("") is run
    sub = run.labelled("before")
    assert sub.path == tmp_path / "before" and sub.path.is_dir() and sub.run_id == "r@before"
    sub.write_metrics("bbh", {"direct": {"score": 1.0}})
    assert "bbh" not in run.read_metrics() and sub.read_metrics()["bbh"]["direct"]["score"] == 1.0


def test_value_checks_of_09(tmp_path):
    params = {"experiment": "x", "notebooks": {"09_before_after": {"level": 1.5}}}
    with pytest.raises(config.ParamsError, match="level"):
        pipeline.resolve(params, "p.yaml")
    params = {"experiment": "x", "notebooks": {"09_before_after": {"after": "before"}}}
    with pytest.raises(config.ParamsError, match="same evaluation"):
        pipeline.resolve(params, "p.yaml")


def test_cli_compare_reads_a_labelled_side(tmp_path, capsys):
    from flan_nb import cli

    run_dir = tmp_path / "20261130T000000Z-x-aaaaaaaa"
    _write_side(run_dir / "before", {"a": [0, 0, 1, 1]}, unparsed=0)
    _write_side(run_dir, {"a": [1, 1, 1, 1]}, unparsed=0)
    assert cli.main(["--results", str(tmp_path), "compare", f"{run_dir.name}@before",
                     run_dir.name]) == 0
    out = capsys.readouterr().out
    assert "bbh" in out and "50.00" in out
    with pytest.raises(SystemExit, match="no evaluation labelled `after`"):
        cli.main(["--results", str(tmp_path), "compare", f"{run_dir.name}@after", run_dir.name])


def test_interval_covers_the_subtasks_the_score_averages(tmp_path):
    """TyDiQA's English is reported apart, not in the score: the bootstrap must leave it out too
    (it once gave an interval of [2.2, 10] around a difference of 1.25)."""
    run_dir = tmp_path / "run"
    for side, en in ((run_dir / "before", [0, 0, 0, 0]), (run_dir, [1, 1, 1, 1])):
        (side / "predictions").mkdir(parents=True)
        rows = [{"setting": "direct", "subtask": "en", "item_id": f"en-{i}", "correct": c}
                for i, c in enumerate(en)]
        rows += [{"setting": "direct", "subtask": "fi", "item_id": f"fi-{i}", "correct": c}
                 for i, c in enumerate([1, 0, 1, 0])]
        (side / "predictions" / "tydiqa.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows))
        per = {"en": {"score": 25.0 * sum(en), "n": 4}, "fi": {"score": 50.0, "n": 4}}
        (side / "metrics.json").write_text(json.dumps({"tydiqa": {"direct": {
            "score": 50.0, "n": 4, "unparsed": 0, "per_subtask": per}}}))
    cfg = ba.BeforeAfterParams(before="before", after="", n_resamples=300, level=0.95, seed=0,
                               run_dir="", params_file="")
    row = ba.before_after(runs.Run(path=run_dir, run_id="r"), cfg).benchmarks.set_index(
        "benchmark").loc["tydiqa"]
    assert row["diff"] == 0 and row["ci_low"] == 0 and row["ci_high"] == 0 and row["n_items"] == 4
