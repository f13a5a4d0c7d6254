"""eval_every: periodic held-out evaluation during training picks a checkpoint (paper section 2.2)."""

from __future__ import annotations

import time

import pytest

from flan_nb import config, runs
from flan_nb.train import launcher, periodic_eval
from flan_nb.train import loop as train
from tests.test_train import env, make_cfg, make_mixture, new_run  # noqa: F401  (env: fixture)


def test_eval_every_logs_scores_and_keeps_the_best(env):  # noqa: F811
    mix = make_mixture(env / "mix")
    run = new_run(env / "results", "periodic")
    cfg = make_cfg(env, mix, model="builtin:micro-t5", steps=4, checkpoint_every=0,
                   eval_every=2, keep_best=True)
    t0 = time.perf_counter()
    train.train(cfg, run, progress=False)
    seconds = time.perf_counter() - t0
    evals = periodic_eval.read_eval_scores(run)
    assert [r["step"] for r in evals] == [2, 4]
    for rec in evals:
        assert 0.0 <= rec["eval_score"] <= 100.0
        assert set(rec["eval_scores"]) == set(periodic_eval.BENCHMARKS)
        assert rec["n_items"] == 55  # 5 per subtask of the synthetic MMLU (4), BBH (4), TyDiQA (3)
    # the step records stay loss-only for every reader of the log
    assert [r["step"] for r in launcher.read_log(run)] == [1, 2, 3, 4]
    metrics = runs.open_run(str(run.path), notebook="t").read_metrics()["periodic_eval"]
    assert set(metrics["scores"]) == {"2", "4"}
    best = max(evals, key=lambda r: (r["eval_score"], -r["step"]))
    assert metrics["best_step"] == best["step"]
    assert (run.artifacts / "checkpoint" / "best" / "config.json").is_file()
    assert (run.artifacts / "checkpoint" / "final" / "config.json").is_file()
    assert run.output("best_checkpoint_path") == str(run.artifacts / "checkpoint" / "best")
    assert seconds < 60


def test_eval_every_params_are_checked(tmp_path):
    mix = tmp_path / "mix"
    with pytest.raises(config.ParamsError, match="keep_best"):
        train.check_params(make_cfg(tmp_path, mix, keep_best=True))
    with pytest.raises(config.ParamsError, match="eval_data"):
        train.check_params(make_cfg(tmp_path, mix, eval_every=2, eval_data="hub"))
    with pytest.raises(config.ParamsError, match="sharded"):
        train.check_params(make_cfg(tmp_path, mix, eval_every=2, accelerate_config="fsdp_t5"))


def test_held_out_score_reaches_100_when_every_answer_is_right(monkeypatch):
    from flan_nb import models
    from flan_nb.eval import generation

    held = periodic_eval.held_out_set("synthetic")
    golds = iter([[f"({it.gold})" if bench == "mmlu" else
                   (it.gold[0] if isinstance(it.gold, list) else str(it.gold))]
                  for bench, items, _ in held for it in items])
    monkeypatch.setattr(generation, "generate", lambda loaded, texts, **kw: [next(golds) for _ in texts])
    result = periodic_eval.evaluate_model(models.load("builtin:micro-t5"), "synthetic")
    assert result["eval_scores"] == {"mmlu": 100.0, "bbh": 100.0, "tydiqa": 100.0}
    assert result["eval_score"] == 100.0
