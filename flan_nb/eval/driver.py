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

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flan_nb import config
from flan_nb.eval import answers, generation, protocols, scores
from flan_nb.eval import benchmarks as bd
from flan_nb.eval import prompts as pr
from flan_nb.eval.rescoring import EvalError, read_predictions, rescore  # noqa: F401 (re-exported)
from flan_nb.eval.rescoring import aggregate_rows as _aggregate
from flan_nb.eval.rescoring import score_row as _score_row
from flan_nb.eval.rescoring import update_normalized_average as _update_normalized_average

BENCHMARKS = bd.BENCHMARKS
DATA_SOURCES = ("synthetic", "offline", "hub")
COT_SETTINGS = answers.COT_SETTINGS
DEFAULT_SETTINGS = {"mmlu": ("direct", "cot"), "bbh": ("direct", "cot"), "tydiqa": ("direct",),
                    "mgsm": ("cot",)}
# Option-ranking diagnostic: benchmarks whose direct setting has a closed option set.
RANKABLE = ("mmlu", "bbh")


@dataclass(frozen=True)
class EvalParams:
    """Parameters of notebooks 03_eval_mmlu, 04_eval_bbh, 05_eval_tydiqa, 06_eval_mgsm."""

    model: str                 # "" = this run's finetuned checkpoint (run.output("checkpoint_path"))
    dtype: str                 # float32 | bfloat16 (T5 cannot run in float16)
    data: str                  # synthetic | offline | hub
    data_root: str             # offline mirror ("" = $FLAN_NB_DATA)
    protocol: str              # resources/protocols.yaml: paper | quick; fills the None keys below
    split: str | None          # "" = the benchmark default (MMLU: validation on hub, test offline)
    settings: list[str]        # [] = the paper's settings for the benchmark
    subtasks: list[str]        # [] = all subtasks / languages
    max_per_subtask: int | None  # 0 = full sets
    batch_size: int
    max_new_tokens_direct: int | None  # 0 = benchmarks.yaml default
    max_new_tokens_cot: int | None     # 0 = benchmarks.yaml default
    max_context: int | None    # 0 = the model's real context (T5 family: 2,048)
    sc_samples: int            # self-consistency samples (setting cot_sc)
    sc_temperature: float
    chat: bool                 # wrap prompts in the tokenizer's chat template
    rank_options: bool         # also score multiple-choice items by option log-likelihood
    use_cache: bool            # content-addressed generation cache under artifacts/cache/
    seed: int
    run_dir: str
    params_file: str
    on_bad_rows: str = "raise"  # raise | skip: drop malformed benchmark items, counted in metrics meta
    # set by the runner for a labelled key ("04_eval_bbh@before"): metrics and predictions go to
    # the sub-run <run>/<label>/ so one run holds a before and an after evaluation
    label: str = ""
    # chain-of-thought settings only: items per subtask, a seeded subsample of the items the
    # direct settings score (CoT decodes up to max_new_tokens_cot per item, direct a few tokens,
    # so a CPU run can afford the full direct set but not the full CoT set); 0 = as direct
    max_per_subtask_cot: int = 0


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
        """One row per setting: score (flexible reader), n, unparsed, dropped exemplars, and
        strict_score / strict_unparsed where the setting has a strict reader (pandas DataFrame)."""
        import pandas as pd

        rows = []
        for s in self.settings:
            m = self.metrics[s]
            row = {"setting": s, "score": m["score"], "n": m["n"], "unparsed": m["unparsed"],
                   "exemplars_dropped": m.get("n_exemplars_dropped", 0),
                   "prompts_truncated": m.get("n_prompts_truncated", 0)}
            for extra in ("strict_score", "strict_unparsed", "f1", "bbh_nlp", "bbh_alg"):
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
    """Validate the combination of benchmark and params (protocol filled in, see
    eval/protocols.py); return the settings to run."""
    cfg = protocols.apply(cfg)
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
    for name in ("max_per_subtask", "max_new_tokens_direct", "max_new_tokens_cot", "max_context",
                 "max_per_subtask_cot"):
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


fit_prompt = _fit  # used by train/periodic_eval.py (same fitting as the notebooks)


def _item_record(item: pr.EvalItem) -> dict[str, Any]:
    """What rescore needs to re-extract an answer without rebuilding prompts."""
    return {"options": list(item.options), "meta": dict(item.meta)}


def shared_prefixes(texts: Sequence[str], items: Sequence[pr.EvalItem]) -> list[str]:
    """Per fitted prompt, the part before its query ("" when fitting cut into the query): the
    header and exemplars every item of a subtask shares, for `generation.generate(prefixes=)`."""
    return [t[: len(t) - len(it.prompt.query)] if t.endswith(it.prompt.query) else ""
            for t, it in zip(texts, items, strict=True)]


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


@dataclass
class _Session:
    """What every setting of one `evaluate` call shares."""

    benchmark: str
    cfg: EvalParams
    loaded: Any
    state: Any
    data: Any
    baselines: Mapping[str, float] | None
    max_context: int
    count: Any
    cache: Any
    progress: bool


def _open_session(benchmark: str, cfg: EvalParams, spec: str, loaded: Any,
                  progress: bool) -> _Session:
    """Load the model (unless given) and the data; fix the context budget and the cache."""
    from accelerate import PartialState

    from flan_nb import models

    state = PartialState()
    if loaded is None:
        loaded = models.load(spec, dtype=cfg.dtype)
    data = bd.load(benchmark, source=cfg.data, data_root=cfg.data_root, split=cfg.split,
                   subtasks=list(cfg.subtasks) or None,
                   n_per_subtask=cfg.max_per_subtask or None, seed=cfg.seed,
                   on_bad_rows=cfg.on_bad_rows)
    return _Session(
        benchmark, cfg, loaded, state, data,
        baselines=scores.bbh_baselines(data) if benchmark == "bbh" else None,
        max_context=cfg.max_context or int(loaded.max_context),
        count=generation.count_tokens(loaded),
        cache=generation.GenerationCache() if cfg.use_cache else None, progress=progress)


def _meta(ses: _Session, settings: Sequence[str], spec: str) -> dict[str, Any]:
    """The `meta` of a benchmark's metrics.json section: data, model, protocol and overrides,
    and the tags of every way the run departs from the paper protocol (`deviations`)."""
    data, cfg, benchmark = ses.data, ses.cfg, ses.benchmark
    meta = {
        "data": data.meta.get("data", cfg.data),
        "split": data.meta.get("split") or cfg.split or "default",
        "subsampled": bool(data.meta.get("subsampled", False)),
        "n_per_subtask": cfg.max_per_subtask or None,
        **({"n_per_subtask_cot": cfg.max_per_subtask_cot} if cfg.max_per_subtask_cot else {}),
        "model": config.project_relative(spec), "model_fingerprint": ses.loaded.fingerprint,
        "max_context": ses.max_context,
        "model_context": int(ses.loaded.max_context),
        "max_new_tokens_cot": max_new_tokens(benchmark, "cot", cfg),
        **protocols.record(dataclasses.asdict(cfg)),
        "n_items": data.n_items, "n_subtasks": len(data.items), "settings": list(settings),
        "seed": cfg.seed, "chat": cfg.chat, "world_size": ses.state.num_processes,
        "bad_items_skipped": int(data.meta.get("bad_items", 0)),
        "bad_item_examples": list(data.meta.get("bad_item_examples", [])),
        **({"source_files": data.meta["source_files"]} if "source_files" in data.meta else {}),
    }
    meta["deviations"] = protocols.deviations(meta, benchmark)
    return meta


def _generate(ses: _Session, setting: str, texts: list[str], prefixes: list[str],
              new_tokens: int) -> tuple[list[list[str]], int]:
    """(continuations per prompt, generations actually run) of one setting."""
    cfg, cache = ses.cfg, ses.cache
    sc = setting == "cot_sc"
    before = cache.writes if cache else 0
    outs = generation.generate_parallel(
        ses.loaded, texts, state=ses.state, max_new_tokens=new_tokens, stop=stop_strings(setting),
        do_sample=sc, temperature=cfg.sc_temperature if sc else 1.0,
        num_samples=cfg.sc_samples if sc else 1, seed=cfg.seed, batch_size=cfg.batch_size,
        cache=cache, chat=cfg.chat, prefixes=prefixes,
        progress=ses.progress and ses.state.is_main_process,
        desc=f"{ses.benchmark} {setting}",
    )
    # generations actually run: the cache counts each sampled chain once per distinct prompt
    generated = (cache.writes - before) if cache else len(texts) * (cfg.sc_samples if sc else 1)
    return outs, generated


_SCORED_KEYS = ("f1", "votes", "strict_extracted", "strict_correct", "strict_votes")


def _prediction_rows(benchmark: str, setting: str, items: Sequence[pr.EvalItem],
                     fitted: Sequence[tuple[str, int, bool]],
                     outs: Sequence[list[str]]) -> list[dict[str, Any]]:
    """One predictions/<benchmark>.jsonl row per item: raw generation(s), both readings, gold."""
    rows = []
    for item, (text, dropped, truncated), out in zip(items, fitted, outs, strict=True):
        raw: str | list[str] = out if setting == "cot_sc" else out[0]
        scored = _score_row(benchmark, setting, raw, item)
        rows.append({
            "benchmark": benchmark, "subtask": item.subtask, "setting": setting,
            "item_id": item.item_id, "prompt_hash": prompt_hash(text), "raw": raw,
            "extracted": scored["extracted"], "gold": item.gold,
            "correct": bool(scored["correct"]), "n_exemplars_dropped": dropped,
            "prompt_truncated": truncated,
            **{k: bool(scored[k]) if k == "strict_correct" else scored[k]
               for k in _SCORED_KEYS if k in scored},
            **_item_record(item),
        })
    return rows


def _setting_data(ses: _Session, setting: str) -> bd.BenchmarkData:
    """The session's data, or for a CoT setting with `max_per_subtask_cot` its seeded
    per-subtask subsample (the same items for every CoT setting of the run)."""
    n = ses.cfg.max_per_subtask_cot
    if setting not in COT_SETTINGS or not n:
        return ses.data
    data = dataclasses.replace(ses.data, items=dict(ses.data.items), meta=dict(ses.data.meta))
    return bd.subsample(data, n, ses.cfg.seed)


def _run_setting(ses: _Session, setting: str, metrics: dict[str, Any]) -> tuple[list[dict], int]:
    """Build, fit, generate and score one setting; put its metrics (and the option-ranking
    diagnostic) into `metrics`; return (prediction rows, generations run)."""
    benchmark, cfg = ses.benchmark, ses.cfg
    items = pr.build_items(benchmark, setting, _setting_data(ses, setting))
    new_tokens = max_new_tokens(benchmark, setting, cfg)
    # an encoder-decoder reads max_context input tokens and writes its answer in the decoder, so
    # the answer budget does not eat the prompt's; a decoder-only model shares one sequence
    budget = ses.max_context if ses.loaded.kind == "seq2seq" else ses.max_context - new_tokens
    if budget < 16:
        raise EvalError(f"{benchmark}/{setting}: max_context {ses.max_context} leaves {budget} "
                        f"prompt tokens after max_new_tokens {new_tokens}")
    fitted = [_fit(it, budget, ses.loaded, ses.count) for it in items]
    texts = [f[0] for f in fitted]
    # the shared part's key/value cache is then computed once per batch (decoder-only models)
    outs, generated = _generate(ses, setting, texts, shared_prefixes(texts, items), new_tokens)
    rows = _prediction_rows(benchmark, setting, items, fitted, outs)
    metrics[setting] = _aggregate(benchmark, rows, ses.baselines)
    metrics[setting]["max_new_tokens"] = new_tokens
    if cfg.rank_options and benchmark in RANKABLE and setting == "direct":
        ranked = _rank_rows(benchmark, items, texts, ses.loaded, ses.state, ses.progress)
        if ranked:
            metrics["direct_ranked"] = scores.aggregate(benchmark, ranked, ses.baselines)
            metrics["direct_ranked"]["note"] = ("diagnostic: option chosen by log-likelihood, "
                                                "not the paper's generation metric")
    return rows, generated


def evaluate(benchmark: str, cfg: EvalParams, run: Any, *, loaded: Any = None,
             progress: bool = True) -> EvalResult:
    """Evaluate one benchmark in every requested setting under `cfg.protocol` (explicit keys
    override single values, recorded in the meta); write predictions/<benchmark>.jsonl and
    the benchmark's metrics.json section (flexible "score" and, where the setting's exemplars
    teach an answer format, "strict_score"); with `cfg.label`, into the sub-run <run>/<label>/.
    Raises EvalError for a bad request."""
    cfg = protocols.apply(cfg)
    settings = check(benchmark, cfg)
    spec = model_spec(cfg, run)
    ses = _open_session(benchmark, cfg, spec, loaded, progress)
    metrics: dict[str, Any] = {"meta": _meta(ses, settings, spec)}
    predictions: list[dict[str, Any]] = []
    generated = 0
    hits0 = ses.cache.hits if ses.cache else 0
    for setting in settings:
        rows, n = _run_setting(ses, setting, metrics)
        predictions.extend(rows)
        generated += n
    # cache rows that did not verify (edited, wrong type): generated again, never served
    metrics["meta"]["cache_rejected"] = ses.cache.rejected if ses.cache else 0
    if ses.state.is_main_process:
        target = run.labelled(cfg.label)
        target.write_jsonl(f"predictions/{benchmark}.jsonl", predictions)
        target.write_metrics(benchmark, metrics)
        _update_normalized_average(target)
    ses.state.wait_for_everyone()
    return EvalResult(benchmark, metrics, predictions, model=spec,
                      cache_hits=(ses.cache.hits - hits0) if ses.cache else 0, generated=generated)
