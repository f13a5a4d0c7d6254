"""The evaluation driver end to end on synthetic data with the builtin tiny T5."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from flan_nb import models, runs
from flan_nb.eval import benchmarks as benchmark_data
from flan_nb.eval import driver as evaluation
from flan_nb.eval import generation, prompts, scores

DEFAULTS = dict(
    model="builtin:tiny-t5", dtype="float32", data="synthetic", data_root="", protocol="quick",
    split="", settings=["direct", "cot"], subtasks=[], max_per_subtask=2, batch_size=8,
    max_new_tokens_direct=6, max_new_tokens_cot=8, max_context=0, sc_samples=3,
    sc_temperature=0.7, chat=False, rank_options=False, use_cache=True, seed=0, run_dir="",
    params_file="", on_bad_rows="raise", label="", max_per_subtask_cot=0,
)


def make_cfg(**overrides) -> evaluation.EvalParams:
    return evaluation.EvalParams(**{**DEFAULTS, **overrides})


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("FLAN_NB_SCRATCH", str(tmp_path / "run"))
    monkeypatch.setenv("FLAN_NB_GENERATION_CACHE", str(tmp_path / "cache"))
    return runs.open_run("", notebook="03_eval_mmlu")


@pytest.fixture(scope="module")
def tiny_t5():
    return models.load("builtin:tiny-t5")


def _read_rows(run, benchmark):
    path = run.path / "predictions" / f"{benchmark}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_params_fields_cover_the_notebook_contract():
    names = {f.name for f in dataclasses.fields(evaluation.EvalParams)}
    assert set(DEFAULTS) == names
    assert {"run_dir", "params_file", "model", "data", "settings", "sc_samples"} <= names


def test_cot_settings_score_a_seeded_subsample_of_the_direct_items(run, tiny_t5):
    evaluation.evaluate("bbh", make_cfg(max_per_subtask=3, max_per_subtask_cot=1), run,
                        loaded=tiny_t5, progress=False)
    metrics = run.read_metrics()["bbh"]
    rows = _read_rows(run, "bbh")
    direct = {(r["subtask"], r["item_id"]) for r in rows if r["setting"] == "direct"}
    cot = {(r["subtask"], r["item_id"]) for r in rows if r["setting"] == "cot"}
    subtasks = {s for s, _ in direct}
    assert len(direct) == 3 * len(subtasks) and len(cot) == len(subtasks)
    assert cot <= direct and {s for s, _ in cot} == subtasks
    assert metrics["cot"]["n"] == len(subtasks) and metrics["direct"]["n"] == len(direct)
    assert metrics["meta"]["n_per_subtask_cot"] == 1
    with pytest.raises(evaluation.EvalError, match="max_per_subtask_cot=-1"):
        evaluation.check("bbh", make_cfg(max_per_subtask_cot=-1))


def test_evaluate_end_to_end_writes_schema(run, tiny_t5):
    result = evaluation.evaluate("mmlu", make_cfg(), run, loaded=tiny_t5, progress=False)
    metrics = run.read_metrics()["mmlu"]
    meta = metrics["meta"]
    assert meta["data"] == "synthetic" and meta["model"] == "builtin:tiny-t5"
    assert meta["n_items"] == 8 and meta["subsampled"] in (True, False) and "split" in meta
    # protocol quick with the test's own smaller values, each recorded as an override
    assert meta["protocol"] == "quick" and meta["model_context"] == 2048 == meta["max_context"]
    assert meta["protocol_overrides"]["max_per_subtask"] == {"protocol": 5, "used": 2}
    assert meta["protocol_overrides"]["max_new_tokens_cot"] == {"protocol": 64, "used": 8}
    assert meta["deviations"] == ["protocol quick", "subsampled", "shorter chains", "test split"]
    assert meta["bad_items_skipped"] == 0 and meta["cache_rejected"] == 0  # issue 16 counts
    rows = _read_rows(run, "mmlu")
    assert len(rows) == 16  # 4 synthetic subjects x 2 items x 2 settings
    required = {"benchmark", "subtask", "setting", "item_id", "prompt_hash", "raw", "extracted",
                "gold", "correct", "n_exemplars_dropped"}
    assert all(required <= set(r) for r in rows)
    for setting in ("direct", "cot"):
        block = metrics[setting]
        mine = [r for r in rows if r["setting"] == setting]
        assert block["n"] == len(mine) == 8
        assert block["unparsed"] == sum(r["extracted"] is None for r in mine)
        # unweighted mean over subtasks, recomputed from the rows
        per = {}
        for r in mine:
            per.setdefault(r["subtask"], []).append(r["correct"])
        expect = sum(100 * sum(v) / len(v) for v in per.values()) / len(per)
        assert block["score"] == pytest.approx(expect)
        assert set(block["per_subtask"]) == set(per)
    assert result.summary().loc["direct", "n"] == 8
    assert not result.per_subtask_wide().empty and len(result.examples(3)) == 3


def test_second_run_is_served_from_cache(run, tiny_t5):
    cfg = make_cfg(settings=["direct"])
    first = evaluation.evaluate("bbh", cfg, run, loaded=tiny_t5, progress=False)
    assert first.generated == 8
    second = evaluation.evaluate("bbh", cfg, run, loaded=tiny_t5, progress=False)
    assert second.generated == 0 and second.cache_hits == 8
    assert second.metrics["direct"] == first.metrics["direct"]


def test_unparseable_generations_count_as_wrong(run, tiny_t5, monkeypatch):
    garbage = iter(["", "???", "The answer is", "(Z)"] * 10)
    monkeypatch.setattr(generation, "generate_batch",
                        lambda loaded, texts, settings, seeds=(): [next(garbage) for _ in texts])
    result = evaluation.evaluate("mgsm", make_cfg(settings=["cot"], use_cache=False), run,
                                 loaded=tiny_t5, progress=False)
    block = result.metrics["cot"]
    assert block["score"] == 0.0 and block["unparsed"] == block["n"] > 0


def test_self_consistency_votes(run, tiny_t5, monkeypatch):
    answers_cycle = iter(["So the answer is 7.", "The answer is 3", "The answer is 7."] * 100)
    monkeypatch.setattr(generation, "generate_batch",
                        lambda loaded, texts, settings, seeds=(): [next(answers_cycle) for _ in texts])
    result = evaluation.evaluate("mgsm", make_cfg(settings=["cot_sc"], use_cache=False), run,
                                 loaded=tiny_t5, progress=False)
    rows = [r for r in result.predictions if r["setting"] == "cot_sc"]
    assert rows and all(len(r["raw"]) == 3 and len(r["votes"]) == 3 for r in rows)
    for r in rows:
        assert r["extracted"] == max(set(r["votes"]), key=r["votes"].count)


def test_rescore_reextracts_from_raw(run, tiny_t5):
    evaluation.evaluate("mmlu", make_cfg(settings=["zs"]), run, loaded=tiny_t5, progress=False)
    rows = _read_rows(run, "mmlu")
    for r in rows:  # pretend the model had answered every item correctly
        r["raw"] = f" ({r['gold']})"
    run.write_jsonl("predictions/mmlu.jsonl", rows)
    section = evaluation.rescore(run.path, "mmlu")
    assert section["zs"]["score"] == 100.0 and section["zs"]["unparsed"] == 0
    assert run.read_metrics()["mmlu"]["zs"]["score"] == 100.0
    assert run.read_metrics()["mmlu"]["meta"]["rescored"] is True
    assert all(r["correct"] for r in _read_rows(run, "mmlu"))


def test_option_ranking_is_reported_apart(run, tiny_t5):
    result = evaluation.evaluate("mmlu", make_cfg(settings=["direct"], rank_options=True,
                                                  max_per_subtask=1), run,
                                 loaded=tiny_t5, progress=False)
    ranked = result.metrics["direct_ranked"]
    assert ranked["n"] == 4 and ranked["unparsed"] == 0 and "diagnostic" in ranked["note"]
    assert 0.0 <= ranked["score"] <= 100.0
    # per item, the option of highest log-likelihood after the prompt the model was given,
    # scored against the gold letter
    rows = {r["subtask"]: r for r in result.predictions}
    budget = result.metrics["meta"]["max_context"] - result.metrics["direct"]["max_new_tokens"]
    count = generation.count_tokens(tiny_t5)
    data = benchmark_data.load("mmlu", source="synthetic", n_per_subtask=1, seed=0)
    for item in prompts.build_items("mmlu", "direct", data):
        text = evaluation._fit(item, budget, tiny_t5, count)[0]
        assert evaluation.prompt_hash(text) == rows[item.subtask]["prompt_hash"]
        ll = evaluation.option_loglik(tiny_t5, text, ["(A)", "(B)", "(C)", "(D)"])
        best = "ABCD"[max(range(4), key=ll.__getitem__)]
        assert ranked["per_subtask"][item.subtask]["score"] == (100.0 if best == item.gold else 0.0)


def test_model_from_run_checkpoint_and_errors(run, tiny_t5, tmp_path):
    with pytest.raises(evaluation.EvalError, match="checkpoint"):
        evaluation.evaluate("mmlu", make_cfg(model=""), run, progress=False)
    ckpt = models.save(tiny_t5, tmp_path / "ckpt")
    run.record_output("checkpoint_path", str(ckpt))
    assert evaluation.model_spec(make_cfg(model=""), run) == str(ckpt)
    with pytest.raises(models.ModelSpecError, match="does-not-exist"):
        evaluation.evaluate("mmlu", make_cfg(model=str(tmp_path / "does-not-exist.gguf")), run,
                            progress=False)
    with pytest.raises(evaluation.EvalError, match="allowed"):
        evaluation.evaluate("tydiqa", make_cfg(settings=["cot"]), run, loaded=tiny_t5)
    with pytest.raises(evaluation.EvalError, match="data="):
        evaluation.evaluate("bbh", make_cfg(data="web"), run, loaded=tiny_t5)


@pytest.mark.data
def test_offline_tydiqa_keeps_english_apart(run, tiny_t5, data_root, monkeypatch):
    count = generation.count_tokens(tiny_t5)
    real = generation.generate_batch
    fed: list[int] = []

    def spy(loaded, texts, settings, seeds=(), **kw):
        fed.extend(count(t) for t in texts)
        return real(loaded, texts, settings, seeds, **kw)

    monkeypatch.setattr(generation, "generate_batch", spy)
    cfg = make_cfg(data="offline", data_root=str(data_root), settings=["direct"],
                   subtasks=["en", "fi"], max_per_subtask=1, max_new_tokens_direct=4)
    result = evaluation.evaluate("tydiqa", cfg, run, loaded=tiny_t5, progress=False)
    block = result.metrics["direct"]
    assert "english" in block and "f1" in block["english"]
    assert block["n"] == 1 and set(block["per_subtask"]) == {"en", "fi"}
    assert result.metrics["meta"]["data"] == "offline"
    # long passages on a 512-token T5: prompts are fitted, never over budget
    assert len(fed) == 2 and max(fed) <= result.metrics["meta"]["max_context"] - 4


def test_normalized_average_written_when_complete(run):
    for bench, settings in (("mmlu", ("direct", "cot")), ("bbh", ("direct", "cot")),
                            ("tydiqa", ("direct",)), ("mgsm", ("cot",))):
        run.write_metrics(bench, {s: {"score": 50.0, "per_subtask": {
            "boolean_expressions" if bench == "bbh" else "x": {"score": 50.0, "random": 50.0}}}
            for s in settings})
    evaluation._update_normalized_average(run)
    got = run.read_metrics()["normalized_average"]["value"]
    assert got == pytest.approx(scores.normalized_average(run.read_metrics())["value"])


DP_EVAL = r'''
import json, sys, torch
torch.set_num_threads(1)
from accelerate import PartialState
from flan_nb import runs
from flan_nb.eval import driver as evaluation
state = PartialState(cpu=True)
cfg = evaluation.EvalParams(model="builtin:tiny-t5", dtype="float32", data="synthetic",
    data_root="", protocol="quick", split="", settings=["direct", "cot_sc"], subtasks=[], max_per_subtask=3,
    batch_size=4, max_new_tokens_direct=6, max_new_tokens_cot=6, max_context=0, sc_samples=2,
    sc_temperature=0.7, chat=False, rank_options=True, use_cache=True, seed=0,
    run_dir=sys.argv[1], params_file="")
run = runs.open_run(sys.argv[1], notebook="04_eval_bbh")
result = evaluation.evaluate("bbh", cfg, run, progress=False)
'''


def test_data_parallel_evaluate_matches_one_process(tmp_path):
    script = tmp_path / "dp_eval.py"
    script.write_text(DP_EVAL)
    metrics = {}
    for nproc in (2, 1):
        run_dir = tmp_path / f"run{nproc}"
        run_dir.mkdir()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
               "FLAN_NB_GENERATION_CACHE": str(tmp_path / f"cache{nproc}")}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", str(script), str(run_dir)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        metrics[nproc] = json.loads((run_dir / "metrics.json").read_text())["bbh"]
        preds = (run_dir / "predictions" / "bbh.jsonl").read_text().splitlines()
        assert len(preds) == 2 * 12
    assert metrics[2]["meta"]["world_size"] == 2
    for key in ("direct", "cot_sc", "direct_ranked"):
        assert metrics[2][key] == metrics[1][key]


def test_strict_and_flexible_are_written_and_rescored(run, tiny_t5):
    """evaluate writes strict_score beside score where the exemplars teach a format (not for zs);
    rescore recomputes both from the stored raw generations."""
    evaluation.evaluate("mmlu", make_cfg(settings=["direct", "cot", "zs"]), run, loaded=tiny_t5,
                        progress=False)
    metrics = run.read_metrics()["mmlu"]
    assert {"strict_score", "strict_unparsed"} <= set(metrics["direct"]) and "strict_score" in metrics["cot"]
    assert "strict_score" not in metrics["zs"]
    assert all("strict_score" in e for e in metrics["direct"]["per_subtask"].values())
    rows = _read_rows(run, "mmlu")
    taught = {"direct": " ({})", "cot": " ... The answer is ({}).", "zs": " ({})"}
    other = {"direct": " The correct answer is {}.", "cot": " ... so the correct answer is {} because",
             "zs": " Answer: {}"}
    for k, r in enumerate(rows):  # every answer right, half of them in the exemplars' format
        r["raw"] = (taught if k % 2 == 0 else other)[r["setting"]].format(r["gold"])
    run.write_jsonl("predictions/mmlu.jsonl", rows)
    section = evaluation.rescore(run.path, "mmlu")
    for setting in ("direct", "cot"):
        block = section[setting]
        assert block["score"] == 100.0 and block["unparsed"] == 0
        assert block["strict_unparsed"] == block["n"] // 2
        assert block["strict_score"] == pytest.approx(
            sum(e["strict_score"] for e in block["per_subtask"].values()) / len(block["per_subtask"]))
        assert 0 < block["strict_score"] < 100
    assert section["zs"]["score"] == 100.0 and "strict_score" not in section["zs"]
    stored = _read_rows(run, "mmlu")
    assert all(r["correct"] for r in stored)
    assert sum(r["strict_correct"] for r in stored if r["setting"] == "direct") == 4
