"""Checkpoint choice by periodic held-out evaluation (Chung et al. 2022, section 2.2: the step is
picked by periodic evaluation on held-out tasks).

With `eval_every` > 0 the training loop calls `maybe_evaluate(state)` after every optimizer step;
every `eval_every` steps the current weights answer a small fixed held-out set under the `quick`
protocol (flan_nb/resources/protocols.yaml): the direct setting of MMLU, BBH and TyDiQA, the quick
protocol's items per subtask (5; seeded, the same items every time) of the synthetic
benchmark-shaped sets or of the offline mirror (`eval_data`). Greedy generation, exact match, as
the evaluation notebooks; the score is the unweighted mean of the three benchmark scores (%).

Each evaluation appends {"step", "event": "eval", "eval_score", "eval_scores"} to
`<run>/train_log.jsonl` (read back with `read_eval_scores`; `read_log` keeps the step records
only) and, with `keep_best`, saves the best weights so far to `<artifacts>/checkpoint/best`
(output `best_checkpoint_path`) beside the final checkpoint. The tally lives in
`<run>/train/periodic_eval.json`, so a resumed run keeps its best.

Several processes: only the main process evaluates (on its unwrapped replica: DDP keeps a full
copy per process); the others wait at a barrier. Sharded configs (FSDP, DeepSpeed ZeRO-3) hold no
full copy on one process and are refused by `check_params`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

BENCHMARKS = ("mmlu", "bbh", "tydiqa")  # direct answers: no chains, cheap enough every N steps
SETTING = "direct"
DATA_SOURCES = ("synthetic", "offline")
SHARDED_CONFIGS = ("fsdp_t5", "deepspeed_zero3")
SEED = 0
EVENT = "eval"


@cache
def held_out_set(data: str, data_root: str = "") -> tuple[tuple[str, tuple[Any, ...], Any], ...]:
    """((benchmark, items, bbh baselines), ...): the fixed held-out items (quick protocol size)."""
    from flan_nb.eval import benchmarks as bd
    from flan_nb.eval import prompts as pr
    from flan_nb.eval import protocols, scores

    n = protocols.get("quick")["max_per_subtask"]
    out = []
    for bench in BENCHMARKS:
        loaded = bd.load(bench, source=data, data_root=data_root, n_per_subtask=n, seed=SEED)
        baselines = scores.bbh_baselines(loaded) if bench == "bbh" else None
        out.append((bench, tuple(pr.build_items(bench, SETTING, loaded)), baselines))
    return tuple(out)


def evaluate_model(loaded: Any, data: str = "synthetic", data_root: str = "",
                   batch_size: int = 16) -> dict[str, Any]:
    """{"eval_score": mean of the benchmark scores (%), "eval_scores": {benchmark: score},
    "n_items": int} of a models.LoadedModel on the held-out set (weights left in train mode if
    they were)."""
    from flan_nb.eval import answers, driver, generation, scores
    from flan_nb.eval import prompts as pr

    model = loaded.model
    was_training = bool(model.training)
    model.eval()
    count = generation.count_tokens(loaded)
    per_bench: dict[str, float] = {}
    n_items = 0
    try:
        for bench, items, baselines in held_out_set(data, data_root):
            new_tokens = pr.max_new_tokens(bench, SETTING)
            budget = loaded.max_context - (0 if loaded.kind == "seq2seq" else new_tokens)
            texts = [driver.fit_prompt(it, budget, loaded, count)[0] for it in items]
            outs = generation.generate(loaded, texts, max_new_tokens=new_tokens,
                                       stop=driver.stop_strings(SETTING), batch_size=batch_size,
                                       progress=False)
            rows = [{"subtask": it.subtask, **answers.score(bench, SETTING, out[0], it)}
                    for it, out in zip(items, outs, strict=True)]
            per_bench[bench] = float(scores.aggregate(bench, rows, baselines)["score"])
            n_items += len(items)
    finally:
        if was_training:
            model.train()
    mean = sum(per_bench.values()) / len(per_bench)
    return {"eval_score": mean, "eval_scores": per_bench, "n_items": n_items}


def _tally_path(run: Any) -> Path:
    return Path(run.path) / "train" / "periodic_eval.json"


def _read_tally(run: Any) -> dict[str, Any]:
    path = _tally_path(run)
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"scores": {}, "best_step": None, "best_score": None, "best_checkpoint": None}


def maybe_evaluate(state: Any) -> None:
    """The loop's hook: every `eval_every` steps evaluate (main process), log, keep the best."""
    cfg = state.cfg
    if not cfg.eval_every or state.step % cfg.eval_every:
        return
    if state.main:
        _evaluate_and_record(state)
    state.accelerator.wait_for_everyone()


def _evaluate_and_record(state: Any) -> None:
    from flan_nb import models, runs

    cfg, run = state.cfg, state.run
    hf_model = state.accelerator.unwrap_model(state.model).model
    loaded = dataclasses.replace(state.loaded, model=hf_model)
    start = time.perf_counter()
    result = evaluate_model(loaded, cfg.eval_data)
    rec = {"step": state.step, "event": EVENT, **result,
           "eval_seconds": time.perf_counter() - start}
    with open(run.path / "train_log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"step {state.step}: held-out score {result['eval_score']:.1f} "
          f"({', '.join(f'{b} {s:.1f}' for b, s in result['eval_scores'].items())})", flush=True)
    tally = _read_tally(run)
    tally["scores"][str(state.step)] = result["eval_score"]
    if tally["best_score"] is None or result["eval_score"] > tally["best_score"]:
        tally.update(best_step=state.step, best_score=result["eval_score"])
        if cfg.keep_best:
            best = run.artifacts / "checkpoint" / "best"
            models.save(loaded, best)
            tally["best_checkpoint"] = str(best)
            run.record_output("best_checkpoint_path", str(best))
    tally.update(data=cfg.eval_data, benchmarks=list(BENCHMARKS), setting=SETTING,
                 protocol="quick")
    runs.write_json(_tally_path(run), tally)
    run.write_metrics("periodic_eval", tally)


def read_eval_scores(run: Any) -> list[dict[str, Any]]:
    """The periodic-evaluation records of <run>/train_log.jsonl (step, eval_score, eval_scores)."""
    from flan_nb import runs

    return [r for r in runs.train_log(run) if r.get("event") == EVENT]


def check(cfg: Any, where: str, bad_config: Sequence[str] = SHARDED_CONFIGS) -> str | None:
    """Why the periodic-evaluation params of a TrainParams are invalid, or None."""
    if cfg.eval_every < 0:
        return f"parameter `eval_every`{where}: must be >= 0 (0 = off), got {cfg.eval_every}"
    if cfg.eval_data not in DATA_SOURCES:
        return (f"parameter `eval_data`{where}: must be one of {', '.join(DATA_SOURCES)}, got "
                f"{cfg.eval_data!r}")
    if cfg.keep_best and not cfg.eval_every:
        return f"parameter `keep_best`{where}: needs eval_every > 0 (the best of what?)"
    if cfg.eval_every and cfg.accelerate_config in bad_config:
        return (f"parameter `eval_every`{where}: not supported with the sharded accelerate config "
                f"{cfg.accelerate_config!r} (no process holds the full model); use 0 and evaluate "
                "saved checkpoints with notebooks 03-06")
    return None
