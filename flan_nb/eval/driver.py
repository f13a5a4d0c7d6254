"""The evaluation driver shared by notebooks 03-06 (MMLU, BBH, TyDiQA, MGSM).

`evaluate(benchmark, cfg, run)` does one benchmark end to end: load the model, load the data
(synthetic / offline mirror / hub), build the prompts of every setting, fit them to the context
(dropping whole exemplars from the front, counted), generate (batched, cached, data-parallel when
launched with accelerate), extract answers, score, and write `predictions/<benchmark>.jsonl` and
the benchmark's section of `metrics.json` (schema in CONTRIBUTING.md).

Scoring is generation + exact match, as the paper reports. Unparseable generations are wrong and
counted in "unparsed"; they never raise. `rescore(run_dir, benchmark)` re-extracts answers from the
stored raw generations (after an extraction fix) without touching the model.

Settings: direct, cot (few-shot), zs, zs_cot (zero-shot), cot_sc (few-shot CoT prompts with
`sc_samples` temperature samples and a majority vote: self-consistency).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flan_nb import config
from flan_nb.eval import answers, generation, scores
from flan_nb.eval import benchmarks as bd
from flan_nb.eval import prompts as pr

BENCHMARKS = bd.BENCHMARKS
DATA_SOURCES = ("synthetic", "offline", "hub")
COT_SETTINGS = answers.COT_SETTINGS
DEFAULT_SETTINGS = {"mmlu": ("direct", "cot"), "bbh": ("direct", "cot"), "tydiqa": ("direct",),
                    "mgsm": ("cot",)}
# Option-ranking diagnostic: benchmarks whose direct setting has a closed option set.
RANKABLE = ("mmlu", "bbh")


class EvalError(ValueError):
    """An evaluation request that cannot run (bad setting, no model, ...); names what and where."""


@dataclass(frozen=True)
class EvalParams:
    """Parameters of notebooks 03_eval_mmlu, 04_eval_bbh, 05_eval_tydiqa, 06_eval_mgsm."""

    model: str                 # "" = this run's finetuned checkpoint (run.output("checkpoint_path"))
    dtype: str                 # float32 | bfloat16 (T5 cannot run in float16)
    data: str                  # synthetic | offline | hub
    data_root: str             # offline mirror ("" = $FLAN_NB_DATA)
    split: str                 # "" = the benchmark default (MMLU: validation on hub, test offline)
    settings: list[str]        # [] = the paper's settings for the benchmark
    subtasks: list[str]        # [] = all subtasks / languages
    max_per_subtask: int       # 0 = full sets
    batch_size: int
    max_new_tokens_direct: int  # 0 = benchmarks.yaml default
    max_new_tokens_cot: int     # 0 = benchmarks.yaml default
    max_context: int           # 0 = the model's context length
    sc_samples: int            # self-consistency samples (setting cot_sc)
    sc_temperature: float
    chat: bool                 # wrap prompts in the tokenizer's chat template
    rank_options: bool         # also score multiple-choice items by option log-likelihood
    use_cache: bool            # content-addressed generation cache under artifacts/cache/
    seed: int
    run_dir: str
    params_file: str


@dataclass
class EvalResult:
    """What `evaluate` returns to a notebook: the metrics section and the prediction rows."""

    benchmark: str
    metrics: dict[str, Any]
    predictions: list[dict[str, Any]] = field(repr=False)
    model: str = ""
    cache_hits: int = 0
    generated: int = 0

    @property
    def settings(self) -> list[str]:
        return [k for k, v in self.metrics.items() if k != "meta" and isinstance(v, Mapping)
                and "per_subtask" in v]

    def summary(self) -> Any:
        """One row per setting: score, n, unparsed, dropped exemplars (pandas DataFrame)."""
        import pandas as pd

        rows = []
        for s in self.settings:
            m = self.metrics[s]
            row = {"setting": s, "score": m["score"], "n": m["n"], "unparsed": m["unparsed"],
                   "exemplars_dropped": m.get("n_exemplars_dropped", 0),
                   "prompts_truncated": m.get("n_prompts_truncated", 0)}
            for extra in ("f1", "bbh_nlp", "bbh_alg"):
                if extra in m:
                    row[extra] = m[extra]
            if "english" in m:
                row["english_score"] = m["english"].get("score")
            rows.append(row)
        return pd.DataFrame(rows).set_index("setting") if rows else pd.DataFrame()

    def per_subtask(self) -> Any:
        """Long table: subtask, setting, score, n, unparsed (+ f1 for TyDiQA)."""
        import pandas as pd

        rows = []
        for s in self.settings:
            for sub, m in self.metrics[s]["per_subtask"].items():
                rows.append({"subtask": sub, "setting": s, **{k: m[k] for k in m if k != "random"}})
        return pd.DataFrame(rows)

    def per_subtask_wide(self) -> Any:
        """subtask x setting score table."""
        frame = self.per_subtask()
        if frame.empty:
            return frame
        return frame.pivot(index="subtask", columns="setting", values="score")

    def examples(self, n: int = 5, setting: str | None = None) -> Any:
        """A few prediction rows (first items of distinct subtasks) for eyeballing."""
        import pandas as pd

        rows = [r for r in self.predictions if setting is None or r["setting"] == setting]
        seen: set[tuple[str, str]] = set()
        picked = []
        for r in rows:
            key = (r["setting"], r["subtask"])
            if key not in seen:
                seen.add(key)
                picked.append(r)
            if len(picked) >= n:
                break
        cols = ["setting", "subtask", "item_id", "raw", "extracted", "gold", "correct"]
        return pd.DataFrame([{c: _short(r.get(c)) for c in cols} for r in picked])

    def unparsed(self) -> Any:
        """Rows whose answer could not be extracted, per setting counts."""
        import pandas as pd

        counts = {s: self.metrics[s]["unparsed"] for s in self.settings}
        return pd.Series(counts, name="unparsed", dtype="int64")

    def unparsed_examples(self, n: int = 5) -> Any:
        """The first `n` generations no answer could be extracted from."""
        import pandas as pd

        cols = ["setting", "subtask", "item_id", "raw", "gold"]
        rows = [r for r in self.predictions if r.get("extracted") is None][:n]
        return pd.DataFrame([{c: _short(r.get(c)) for c in cols} for r in rows], columns=cols)


def _short(value: Any, width: int = 160) -> Any:
    if isinstance(value, list):
        value = " | ".join(str(v) for v in value)
    if isinstance(value, str) and len(value) > width:
        return value[: width - 3] + "..."
    return value


# ---------------------------------------------------------------------------------------------
# Checks and resolution


def check(benchmark: str, cfg: EvalParams) -> tuple[str, ...]:
    """Validate the combination of benchmark and params; return the settings to run."""
    if benchmark not in BENCHMARKS:
        raise EvalError(f"unknown benchmark {benchmark!r}; known: {', '.join(BENCHMARKS)}")
    where = f" (params file {cfg.params_file})" if cfg.params_file else ""
    if cfg.data not in DATA_SOURCES:
        raise EvalError(f"data={cfg.data!r}{where}: expected one of {', '.join(DATA_SOURCES)}")
    settings = tuple(cfg.settings) or DEFAULT_SETTINGS[benchmark]
    allowed = pr.SETTINGS[benchmark]
    for s in settings:
        if s not in allowed:
            raise EvalError(f"setting {s!r} is not defined for {benchmark}{where}; "
                            f"allowed: {', '.join(allowed)}")
    if len(set(settings)) != len(settings):
        raise EvalError(f"settings {list(settings)}{where} repeat a setting")
    for name in ("batch_size", "sc_samples"):
        if getattr(cfg, name) < 1:
            raise EvalError(f"{name}={getattr(cfg, name)}{where}: must be >= 1")
    for name in ("max_per_subtask", "max_new_tokens_direct", "max_new_tokens_cot", "max_context"):
        if getattr(cfg, name) < 0:
            raise EvalError(f"{name}={getattr(cfg, name)}{where}: must be >= 0 (0 = default)")
    if "cot_sc" in settings and cfg.sc_temperature <= 0:
        raise EvalError(f"sc_temperature={cfg.sc_temperature}{where}: must be > 0 for cot_sc")
    return settings


def model_spec(cfg: EvalParams, run: Any) -> str:
    """The model to evaluate: the `model` param, else this run's finetuned checkpoint."""
    if cfg.model:
        return cfg.model
    try:
        return str(run.output("checkpoint_path"))
    except KeyError as exc:  # runs.MissingOutput is a KeyError
        raise EvalError(
            f"model is empty, which means the checkpoint of this run's 02_finetune stage, but "
            f"{exc}. Set `model` (e.g. builtin:tiny-t5, smollm2, google/flan-t5-small)."
        ) from None


def max_new_tokens(benchmark: str, setting: str, cfg: EvalParams) -> int:
    override = cfg.max_new_tokens_cot if setting in COT_SETTINGS else cfg.max_new_tokens_direct
    return override or pr.max_new_tokens(benchmark, setting)


def stop_strings(setting: str) -> tuple[str, ...]:
    """Where a continuation ends. Few-shot blocks are separated by a blank line and never contain
    one, so a blank line means the model is done; "\\nQ:" starts a new question in every format.
    Zero-shot answers may use blank lines, so only the new-question marker stops them. (T5's
    vocabulary has no newline; answers.extract also cuts at the next "Q:".)"""
    if setting in ("zs", "zs_cot"):
        return ("\nQ:",)
    return ("\n\n", "\nQ:")


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _fit(item: pr.EvalItem, budget: int, loaded: Any, count: Any) -> tuple[str, int, bool]:
    """(prompt text, exemplars dropped, truncated?) within `budget` tokens.

    Whole exemplars go first; if the query alone is still too long (a long TyDiQA passage on a
    512-token T5), its tokens are cut from the left so the question and answer cue survive."""
    try:
        text, dropped = item.text(budget, count)
        return text, dropped, False
    except pr.PromptTooLong:
        text = item.prompt.render(len(item.prompt.exemplars))
        ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        keep = max(1, budget - (count(text) - len(ids)) - 2)
        cut = loaded.tokenizer.decode(ids[-keep:], skip_special_tokens=True)
        return cut, len(item.prompt.exemplars), True


def _item_record(item: pr.EvalItem) -> dict[str, Any]:
    """What rescore needs to re-extract an answer without rebuilding prompts."""
    return {"options": list(item.options), "meta": dict(item.meta)}


def _score_row(benchmark: str, setting: str, raw: str | list[str], item: Any) -> dict[str, Any]:
    """extracted / correct (/ f1, votes) of one raw generation or of a list of SC samples."""
    if isinstance(raw, list):
        votes = [answers.extract(benchmark, setting, r, item) for r in raw]
        pred = answers.majority_vote(votes)
        return {**answers.score_extracted(benchmark, setting, pred, item), "votes": votes}
    return answers.score(benchmark, setting, raw, item)


def shared_prefixes(texts: Sequence[str], items: Sequence[pr.EvalItem]) -> list[str]:
    """Per fitted prompt, the part before its query ("" when fitting cut into the query): the
    header and exemplars every item of a subtask shares, for `generation.generate(prefixes=)`."""
    return [t[: len(t) - len(it.prompt.query)] if t.endswith(it.prompt.query) else ""
            for t, it in zip(texts, items, strict=True)]


def _aggregate(benchmark: str, rows: Sequence[Mapping[str, Any]],
               baselines: Mapping[str, float] | None) -> dict[str, Any]:
    out = scores.aggregate(benchmark, rows, baselines)
    out["n_exemplars_dropped"] = sum(int(r.get("n_exemplars_dropped", 0)) for r in rows)
    out["n_items_with_dropped_exemplars"] = sum(1 for r in rows if r.get("n_exemplars_dropped"))
    out["n_prompts_truncated"] = sum(1 for r in rows if r.get("prompt_truncated"))
    return out


# ---------------------------------------------------------------------------------------------
# Option ranking (diagnostic)


def option_loglik(loaded: Any, prompt: str, options: Sequence[str]) -> list[float]:
    """Summed log-probability of each option continuation (" (A)", ...) after the prompt."""
    import torch

    tok, model = loaded.tokenizer, loaded.model
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        if loaded.kind == "seq2seq":
            enc = tok(prompt, return_tensors="pt").to(device)
            encoder_outputs = model.get_encoder()(**enc)
            for opt in options:
                labels = tok(" " + opt, return_tensors="pt", add_special_tokens=False)["input_ids"]
                res = model(encoder_outputs=encoder_outputs, attention_mask=enc["attention_mask"],
                            labels=labels.to(device))
                out.append(-float(res.loss) * labels.shape[1])
        else:
            p_ids = tok(prompt, add_special_tokens=True)["input_ids"]
            for opt in options:
                full = tok(prompt + " " + opt, add_special_tokens=True)["input_ids"]
                n_opt = max(1, len(full) - len(p_ids))
                ids = torch.tensor([full], device=device)
                logits = model(input_ids=ids).logits[0, :-1].float()
                logp = torch.log_softmax(logits, -1)
                target = ids[0, 1:]
                picked = logp[torch.arange(len(target)), target][-n_opt:]
                out.append(float(picked.sum()))
    return out


def _rank_rows(benchmark: str, items: Sequence[pr.EvalItem], texts: Sequence[str],
               loaded: Any, state: Any, progress: bool = True) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    rows = []
    mine = generation.shard_indices(len(items), state.process_index, state.num_processes)
    for i in tqdm(mine, desc=f"{benchmark} rank options", disable=not (progress and state.is_main_process),
                  leave=False):
        item = items[i]
        opts = list(item.options)
        if not opts or (benchmark == "bbh" and item.meta.get("kind") == "free_form"):
            continue
        shown = [f"({o})" if len(o) == 1 else o for o in opts]
        ll = option_loglik(loaded, texts[i], shown)
        best = shown[max(range(len(shown)), key=lambda k: ll[k])]
        pred = best.strip("()") if benchmark == "mmlu" else best
        rows.append({"i": i, "subtask": item.subtask, "extracted": pred,
                     "correct": answers.is_correct(benchmark, "direct", pred, item)})
    if state.num_processes > 1:
        from accelerate.utils import gather_object

        rows = gather_object(rows)
    return sorted(rows, key=lambda r: r["i"])


# ---------------------------------------------------------------------------------------------
# The driver


def evaluate(benchmark: str, cfg: EvalParams, run: Any, *, loaded: Any = None,
             progress: bool = True) -> EvalResult:
    """Evaluate one benchmark in every requested setting; write predictions and metrics."""
    from accelerate import PartialState

    from flan_nb import models

    settings = check(benchmark, cfg)
    spec = model_spec(cfg, run)
    state = PartialState()
    if loaded is None:
        loaded = models.load(spec, dtype=cfg.dtype)
    data = bd.load(benchmark, source=cfg.data, data_root=cfg.data_root, split=cfg.split,
                   subtasks=list(cfg.subtasks) or None,
                   n_per_subtask=cfg.max_per_subtask or None, seed=cfg.seed)
    baselines = scores.bbh_baselines(data) if benchmark == "bbh" else None
    max_context = cfg.max_context or int(loaded.max_context)
    count = generation.count_tokens(loaded)
    cache = generation.GenerationCache() if cfg.use_cache else None

    metrics: dict[str, Any] = {"meta": {
        "data": data.meta.get("data", cfg.data),
        "split": data.meta.get("split") or cfg.split or "default",
        "subsampled": bool(data.meta.get("subsampled", False)),
        "n_per_subtask": cfg.max_per_subtask or None,
        "model": config.project_relative(spec),
        "model_fingerprint": loaded.fingerprint,
        "max_context": max_context,
        "n_items": data.n_items,
        "n_subtasks": len(data.items),
        "settings": list(settings),
        "seed": cfg.seed,
        "chat": cfg.chat,
        "world_size": state.num_processes,
        **({"source_files": data.meta["source_files"]} if "source_files" in data.meta else {}),
    }}
    predictions: list[dict[str, Any]] = []
    generated = 0
    hits0 = cache.hits if cache else 0
    for setting in settings:
        items = pr.build_items(benchmark, setting, data)
        new_tokens = max_new_tokens(benchmark, setting, cfg)
        budget = max_context - new_tokens
        if budget < 16:
            raise EvalError(f"{benchmark}/{setting}: max_context {max_context} leaves {budget} "
                            f"prompt tokens after max_new_tokens {new_tokens}")
        fitted = [_fit(it, budget, loaded, count) for it in items]
        texts = [f[0] for f in fitted]
        # the shared part's key/value cache is then computed once per batch (decoder-only models)
        prefixes = shared_prefixes(texts, items)
        sc = setting == "cot_sc"
        before = cache.writes if cache else 0
        outs = generation.generate_parallel(
            loaded, texts, state=state, max_new_tokens=new_tokens, stop=stop_strings(setting),
            do_sample=sc, temperature=cfg.sc_temperature if sc else 1.0,
            num_samples=cfg.sc_samples if sc else 1, seed=cfg.seed, batch_size=cfg.batch_size,
            cache=cache, chat=cfg.chat, prefixes=prefixes,
            progress=progress and state.is_main_process,
            desc=f"{benchmark} {setting}",
        )
        # generations actually run: the cache counts each sampled chain once per distinct prompt
        generated += (cache.writes - before) if cache else len(texts) * (cfg.sc_samples if sc else 1)
        rows = []
        for item, (text, dropped, truncated), out in zip(items, fitted, outs, strict=True):
            raw: str | list[str] = out if sc else out[0]
            scored = _score_row(benchmark, setting, raw, item)
            rows.append({
                "benchmark": benchmark, "subtask": item.subtask, "setting": setting,
                "item_id": item.item_id, "prompt_hash": prompt_hash(text), "raw": raw,
                "extracted": scored["extracted"], "gold": item.gold,
                "correct": bool(scored["correct"]), "n_exemplars_dropped": dropped,
                "prompt_truncated": truncated,
                **({"f1": scored["f1"]} if "f1" in scored else {}),
                **({"votes": scored["votes"]} if "votes" in scored else {}),
                **_item_record(item),
            })
        metrics[setting] = _aggregate(benchmark, rows, baselines)
        metrics[setting]["max_new_tokens"] = new_tokens
        predictions.extend(rows)
        if cfg.rank_options and benchmark in RANKABLE and setting == "direct":
            ranked = _rank_rows(benchmark, items, texts, loaded, state, progress)
            if ranked:
                metrics["direct_ranked"] = scores.aggregate(benchmark, ranked, baselines)
                metrics["direct_ranked"]["note"] = ("diagnostic: option chosen by log-likelihood, "
                                                    "not the paper's generation metric")

    if state.is_main_process:
        run.write_jsonl(f"predictions/{benchmark}.jsonl", predictions)
        run.write_metrics(benchmark, metrics)
        _update_normalized_average(run)
    state.wait_for_everyone()
    return EvalResult(benchmark, metrics, predictions, model=spec,
                      cache_hits=(cache.hits - hits0) if cache else 0, generated=generated)


def _update_normalized_average(run: Any) -> None:
    """Write the paper's normalized average once all six components are in this run."""
    result = scores.normalized_average(run.read_metrics())
    if result.get("value") is not None and math.isfinite(result["value"]):
        run.write_metrics("normalized_average", {"value": result["value"],
                                                 "components": result["components"],
                                                 "bbh_method": result["bbh_method"]})


# ---------------------------------------------------------------------------------------------
# Re-scoring stored generations


def read_predictions(run_dir: str | Path, benchmark: str) -> list[dict[str, Any]]:
    from flan_nb import config

    path = config.resolve_path(str(run_dir)) / "predictions" / f"{benchmark}.jsonl"
    if not path.is_file():
        raise EvalError(f"{path}: no stored predictions for {benchmark} (run its eval notebook)")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise EvalError(f"{path}:{n}: not JSON ({exc})") from None
    return rows


def rescore(run_dir: str | Path, benchmark: str) -> dict[str, Any]:
    """Re-extract and re-score `predictions/<benchmark>.jsonl` of a run from the raw generations,
    rewrite the predictions and the benchmark's metrics (meta kept); return the new section."""
    from flan_nb import runs

    run = runs.open_run(str(run_dir), notebook="rescore")
    rows = read_predictions(run.path, benchmark)
    by_setting: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        item = {"subtask": row["subtask"], "gold": row["gold"], "options": row.get("options", []),
                "meta": row.get("meta", {})}
        scored = _score_row(benchmark, row["setting"], row["raw"], item)
        row["extracted"], row["correct"] = scored["extracted"], bool(scored["correct"])
        for key in ("f1", "votes"):
            if key in scored:
                row[key] = scored[key]
        by_setting.setdefault(row["setting"], []).append(row)
    old = run.read_metrics().get(benchmark, {})
    baselines = None
    if benchmark == "bbh":
        baselines = {sub: m["random"] for s in by_setting
                     for sub, m in (old.get(s, {}).get("per_subtask") or {}).items()
                     if "random" in m} or None
    section: dict[str, Any] = {"meta": {**old.get("meta", {}), "rescored": True}}
    for setting, srows in by_setting.items():
        section[setting] = _aggregate(benchmark, srows, baselines)
        if "max_new_tokens" in old.get(setting, {}):
            section[setting]["max_new_tokens"] = old[setting]["max_new_tokens"]
    if "direct_ranked" in old:
        section["direct_ranked"] = old["direct_ranked"]
    run.write_jsonl(f"predictions/{benchmark}.jsonl", rows)
    metrics_all = run.read_metrics()
    metrics_all[benchmark] = section
    runs.write_json(run.path / "metrics.json", metrics_all)
    _update_normalized_average(run)
    return section
