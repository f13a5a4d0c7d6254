"""Batched text generation with a content-addressed on-disk cache.

`generate(loaded, prompts, ...)` returns, for every prompt, a list of `num_samples` continuations.
Prompts are tokenized once, sorted by length (longest first, so a memory problem shows up in the
first batch) and generated in batches; the output order is the input order.

Decoder-only models get LEFT padding so every row's continuation starts at the same position; the
attention mask hides the pads and `generate` derives position ids from it. Encoder-decoder models
pad the encoder input on the right, which the encoder mask makes harmless.

Cache: every (model fingerprint, exact prompt text, generation settings, sample index, seed) has a
sha256 key; finished generations are appended to JSONL shards under
`artifacts/cache/generation/` (one shard file per writing process, so concurrent data-parallel
workers never interleave lines). An interrupted evaluation therefore resumes where it stopped, with
any number of processes. A torn last line (process killed mid-write) is skipped on reading.

Sampling (self-consistency) draws each row's tokens from its own `torch.Generator` seeded from the
cache key, so a sample depends on (prompt, sample index, seed) and not on which other prompts
shared its batch or which process ran it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from flan_nb.eval.decoding import (
    PrefixCache,
    _encode,
    _is_causal,
    greedy_causal,
    greedy_continuous,
    hits_stop,
    stop_index,
)
from flan_nb.eval.generation_cache import (
    GenerationCache,
    GenerationError,
    GenerationSettings,
    cache_key,
)

# --------------------------------------------------------------------------------------------
# tokenization helpers


def _ensure_pad_token(tokenizer: Any) -> None:
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise GenerationError("tokenizer has neither a pad nor an eos token; cannot batch")
        tokenizer.pad_token = tokenizer.eos_token


def format_prompt(loaded: Any, prompt: str, chat: bool = False) -> str:
    """The exact text the model sees. Plain text by default; with chat=True the tokenizer's chat
    template wraps the prompt as one user turn followed by the assistant generation prompt."""
    if not chat:
        return prompt
    tok = loaded.tokenizer
    if not getattr(tok, "chat_template", None):
        raise GenerationError(
            f"chat=True but the tokenizer of {getattr(loaded, 'fingerprint', '?')} has no chat template"
        )
    return tok.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def count_tokens(loaded: Any) -> Callable[[str], int]:
    """Token counter matching what `generate` feeds the model (for `Prompt.text(max_tokens, ...)`)."""
    tok = loaded.tokenizer

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=True)["input_ids"])

    return count


# --------------------------------------------------------------------------------------------
# generation


class _StopOnStrings(StoppingCriteria):
    """Marks a row finished once its generated text contains a stop string (`decoding.hits_stop`:
    a whitespace-only stop counts only after the first visible character).

    Only the tail of the new tokens is decoded each step: a row is marked finished the first step
    its stop string is complete, and `generate` keeps finished rows finished.
    """

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if not self.stops:
            return done
        for r in range(input_ids.shape[0]):
            done[r] = hits_stop(self.tokenizer, input_ids[r, self.prompt_len :], self.stops)
        return done


class _RowSeededSampler(LogitsProcessor):
    """Samples each row with its own generator and returns logits whose argmax is that sample.

    Running `generate` greedily on top of this gives temperature sampling whose draws depend only
    on the row's seed, never on batch composition (the global RNG is not touched).
    """

    def __init__(self, seeds: Sequence[int], temperature: float) -> None:
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature = float(temperature)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1).cpu()
        out = torch.full_like(scores, float("-inf"))
        for r, gen in enumerate(self.generators):
            token = torch.multinomial(probs[r], 1, generator=gen)
            out[r, token.to(out.device)] = 0.0
        return out


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut `text` at the earliest stop string (removed), by `decoding.stop_index`'s rule: a
    whitespace-only stop counts only after the first visible character."""
    cut = stop_index(text, stop)
    return text if cut is None else text[:cut]


def _generation_config(model: Any, tokenizer: Any, settings: GenerationSettings) -> GenerationConfig:
    base = getattr(model, "generation_config", None)
    eos = getattr(base, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    extra: dict[str, Any] = {}
    start = getattr(base, "decoder_start_token_id", None)
    if start is None:
        start = getattr(model.config, "decoder_start_token_id", None)
    if start is not None:
        extra["decoder_start_token_id"] = start
    bos = getattr(base, "bos_token_id", None)
    if bos is not None:
        extra["bos_token_id"] = bos
    # A fresh config: the checkpoint's own generation_config may carry sampling or repetition
    # settings that would make results depend on where the model came from.
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos,
        pad_token_id=pad,
        **extra,
    )


ENGINES = ("flan_nb", "hf")


def generate_batch(
    loaded: Any,
    texts: Sequence[str],
    settings: GenerationSettings,
    seeds: Sequence[int] = (),
    prefix_len: int = 0,
    prefix_cache: PrefixCache | None = None,
    engine: str = "flan_nb",
    stats: dict[str, Any] | None = None,
) -> list[str]:
    """One batch of already formatted prompts (no cache): a list of continuations, row order.

    prefix_len > 0 (decoder-only only): the first `prefix_len` tokens of every row are the same
    token ids (a shared few-shot prefix). Their key/value cache is computed once at batch size 1
    (once per subtask with a `prefix_cache`) and reused by every row; the rows' differing
    suffixes are left-padded *after* the prefix, the pads masked out. Every row then sees exactly
    its own unpadded token sequence.

    engine "flan_nb" (default): greedy decoding of decoder-only models runs in our own loop
    (`decoding.greedy_causal`), where a row that has produced EOS or a stop string leaves the batch at
    once, instead of decoding padding until the longest row ends. Sampling and encoder-decoder
    models use transformers' `generate`, as does engine "hf" for everything (the reference).

    stats: if given, gets `rows`, a list of (prompt tokens, generated tokens incl. the stopping
    token) per row (for a seq2seq model: encoder tokens, decoder tokens), for the work count of
    benchmarks/eval_vs_harness.py.
    """
    if engine not in ENGINES:
        raise GenerationError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    model, tok = loaded.model, loaded.tokenizer
    causal = _is_causal(loaded)
    _ensure_pad_token(tok)
    enc, past = _encode(loaded, texts, settings, prefix_len, prefix_cache)
    prompt_len = enc["input_ids"].shape[1] if causal else 1
    gen_config = _generation_config(model, tok, settings)
    if causal and not settings.do_sample and engine == "flan_nb":
        new_ids = greedy_causal(model, tok, enc, past, gen_config, settings.stop)
        if stats is not None:
            n_prompt = enc["attention_mask"].sum(-1).tolist()
            stats.setdefault("rows", []).extend(
                (int(p), len(g)) for p, g in zip(n_prompt, new_ids, strict=True))
        texts_out = tok.batch_decode(new_ids, skip_special_tokens=True)
        return [truncate_at_stop(t, settings.stop) for t in texts_out]
    processors = LogitsProcessorList()
    if settings.do_sample:
        if len(seeds) != len(texts):
            raise GenerationError("sampling needs one seed per row")
        processors.append(_RowSeededSampler(seeds, settings.temperature))
    stopping = StoppingCriteriaList()
    if settings.stop:
        stopping.append(_StopOnStrings(tok, settings.stop, prompt_len))
    with torch.inference_mode():
        extra = {"past_key_values": past} if past is not None else {}
        out = model.generate(
            **enc,
            generation_config=gen_config,
            logits_processor=processors,
            stopping_criteria=stopping,
            **extra,
        )
    new = out[:, prompt_len:] if causal else out[:, 1:]  # seq2seq: drop the decoder start
    if stats is not None:
        stats.setdefault("rows", []).extend(zip(
            enc["attention_mask"].sum(-1).tolist(), _generated_lengths(new, tok.pad_token_id),
            strict=True))
    texts_out = tok.batch_decode(new, skip_special_tokens=True)
    return [truncate_at_stop(t, settings.stop) for t in texts_out]


def _generated_lengths(new: torch.Tensor, pad_id: int | None) -> list[int]:
    """Tokens each row of `generate`'s output really generated (incl. its EOS or stopping
    token): `generate` fills a finished row with pad, so the count stops at its first pad (where
    pad is EOS, the EOS itself is not counted)."""
    if pad_id is None or new.shape[1] == 0:
        return [int(new.shape[1])] * int(new.shape[0])
    is_pad = (new == pad_id).int()
    first = torch.where(is_pad.any(-1), is_pad.argmax(-1), new.shape[1])
    return first.tolist()


def shared_prefix_len(loaded: Any, texts: Sequence[str], prefix: str, chat: bool = False) -> int:
    """Number of leading tokens that every text shares with the tokenization of `prefix`
    (0 if the tokenizer merges across the boundary for some text, or the model is seq2seq)."""
    if not prefix or not _is_causal(loaded):
        return 0
    tok = loaded.tokenizer
    p_ids = tok(prefix, add_special_tokens=not chat)["input_ids"]
    # The last prefix token may merge with the suffix's first characters; stop one short.
    n = len(p_ids) - 1
    for text in texts:
        if not text.startswith(prefix):
            return 0
        ids = tok(text, add_special_tokens=not chat)["input_ids"]
        while n > 0 and ids[:n] != p_ids[:n]:
            n -= 1
        if n <= 0 or len(ids) <= n:
            return 0
    return n


def _row_seed(key: str) -> int:
    return int(key[:15], 16)


def generate(
    loaded: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    stop: Sequence[str] = (),
    do_sample: bool = False,
    temperature: float = 1.0,
    num_samples: int = 1,
    seed: int = 0,
    batch_size: int = 8,
    cache: GenerationCache | None = None,
    chat: bool = False,
    prefixes: Sequence[str] | None = None,
    progress: bool = True,
    desc: str = "generate",
    engine: str = "flan_nb",
    stats: dict[str, Any] | None = None,
) -> list[list[str]]:
    """Generate `num_samples` continuations per prompt; returns one list per prompt, input order.

    Greedy by default (then every sample is the same text, computed once). Outputs are cut at the
    first stop string. Prompts must already fit the context: see `Prompt.text(max_tokens=...)`.

    prefixes: optionally, per prompt, a leading part of it shared with other prompts (the few-shot
    header and exemplars). Decoder-only models then compute that part's key/value cache once per
    batch instead of once per row -- the main cost of few-shot evaluation on a CPU. The output is
    the same as without (every row still attends to exactly its own tokens). A subtask's
    prompts run in consecutive batches, so its prefix is computed once for all of them.

    engine: "flan_nb" (greedy decoder-only rows leave the batch when they finish) or "hf"
    (transformers' `generate` throughout); see `generate_batch`.

    stats: filled as in `generate_batch`, plus `prefixes_computed` / `prefixes_reused`.
    """
    settings = _settings(max_new_tokens, stop, do_sample, temperature, num_samples, batch_size,
                         chat)
    fingerprint = str(getattr(loaded, "fingerprint", "") or "")
    if cache is not None and not fingerprint:
        raise GenerationError("caching needs a model fingerprint (loaded.fingerprint is empty)")
    n_draws = num_samples if do_sample else 1
    results: list[list[str | None]] = [[None] * n_draws for _ in prompts]
    todo = _requests(loaded, prompts, settings, n_draws, seed, fingerprint, cache, results)
    if todo:
        batches = _batches(loaded, prompts, prefixes, todo, batch_size, chat)
        bar = tqdm(total=len(todo), desc=desc, disable=not progress, leave=False)
        prefix_cache = PrefixCache()

        def store(key: str, text: str) -> None:
            for i, s in todo[key][2]:
                results[i][s] = text
            if cache is not None:
                cache.put(key, text)

        if engine == "flan_nb" and not do_sample and _is_causal(loaded):
            for key, text in _continuous(loaded, todo, batches, settings, prefix_cache,
                                         batch_size, stats):
                store(key, text)
                bar.update(1)
            batches = []
        for bkeys, n_prefix in batches:
            extra: dict[str, Any] = ({"prefix_len": n_prefix, "prefix_cache": prefix_cache}
                                     if n_prefix else {})
            if engine != "flan_nb":
                extra["engine"] = engine
            if stats is not None:
                extra["stats"] = stats
            texts = generate_batch(loaded, [todo[k][0] for k in bkeys], settings,
                                   seeds=[todo[k][1] for k in bkeys], **extra)
            for k, text in zip(bkeys, texts, strict=True):
                store(k, text)
            bar.update(len(bkeys))
        bar.close()
        if stats is not None:
            stats["prefixes_computed"] = prefix_cache.computed
            stats["prefixes_reused"] = prefix_cache.reused
    final: list[list[str]] = []
    for row in results:
        assert all(t is not None for t in row)
        texts = [t for t in row if t is not None]
        final.append(texts if do_sample else texts * num_samples)
    return final


def _continuous(loaded: Any, todo: _Requests, batches: list[tuple[list[str], int]],
                settings: GenerationSettings, prefix_cache: PrefixCache, batch_size: int,
                stats: dict[str, Any] | None) -> Iterator[tuple[str, str]]:
    """(request key, continuation) of every greedy decoder-only request as it finishes, through
    `decoding.greedy_continuous` (batches prefilled in order, their running rows decoded
    together; a new batch joins when fewer than `batch_size` rows run)."""
    model, tok = loaded.model, loaded.tokenizer
    _ensure_pad_token(tok)
    gen_config = _generation_config(model, tok, settings)

    def encoded() -> Iterator[tuple[list[str], dict[str, torch.Tensor], Any]]:
        for bkeys, n_prefix in batches:
            enc, past = _encode(loaded, [todo[k][0] for k in bkeys], settings, n_prefix,
                                prefix_cache)
            yield bkeys, enc, past

    for key, ids, n_prompt in greedy_continuous(model, tok, encoded(), gen_config,
                                                settings.stop, refill_below=batch_size):
        if stats is not None:
            stats.setdefault("rows", []).append((int(n_prompt), len(ids)))
        yield key, truncate_at_stop(tok.decode(ids, skip_special_tokens=True), settings.stop)


def _settings(max_new_tokens: int, stop: Sequence[str], do_sample: bool, temperature: float,
              num_samples: int, batch_size: int, chat: bool) -> GenerationSettings:
    if max_new_tokens < 1:
        raise GenerationError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if num_samples < 1:
        raise GenerationError(f"num_samples must be >= 1, got {num_samples}")
    if batch_size < 1:
        raise GenerationError(f"batch_size must be >= 1, got {batch_size}")
    if do_sample and temperature <= 0:
        raise GenerationError(f"sampling needs temperature > 0, got {temperature}")
    return GenerationSettings(max_new_tokens=int(max_new_tokens), stop=tuple(stop),
                              do_sample=bool(do_sample), temperature=float(temperature),
                              chat=bool(chat))


# key -> (formatted text, row seed, [(prompt index, sample index), ...])
_Requests = dict[str, tuple[str, int, list[tuple[int, int]]]]


def _requests(loaded: Any, prompts: Sequence[str], settings: GenerationSettings, n_draws: int,
              seed: int, fingerprint: str, cache: GenerationCache | None,
              results: list[list[str | None]]) -> _Requests:
    """Fill `results` from the cache; the rest, deduplicated: identical requests share one
    computation."""
    todo: _Requests = {}
    for i, prompt in enumerate(prompts):
        for s in range(n_draws):
            key = cache_key(fingerprint, prompt, settings, s, seed)
            hit = cache.get(key) if cache is not None else None
            if hit is not None:
                results[i][s] = hit
            elif key in todo:
                todo[key][2].append((i, s))
            else:
                todo[key] = (format_prompt(loaded, prompt, settings.chat), _row_seed(key), [(i, s)])
    return todo


def _batches(loaded: Any, prompts: Sequence[str], prefixes: Sequence[str] | None,
             todo: _Requests, batch_size: int, chat: bool) -> list[tuple[list[str], int]]:
    """(keys, shared prefix length) batches: prompts sharing a prefix batch together, longest
    first, so padding stays small and each batch computes its shared prefix once."""
    tok = loaded.tokenizer
    keys = list(todo)
    lengths = {k: len(tok(todo[k][0], add_special_tokens=not chat)["input_ids"]) for k in keys}
    groups: dict[str, list[str]] = {}
    if prefixes is not None and not chat and _is_causal(loaded):
        if len(prefixes) != len(prompts):
            raise GenerationError(f"{len(prefixes)} prefixes for {len(prompts)} prompts")
        for k in keys:
            i = todo[k][2][0][0]
            groups.setdefault(prefixes[i] or "", []).append(k)
    else:
        groups[""] = keys
    # A prefix shared by a single prompt saves nothing: pool those with the unshared ones so
    # they still batch (e.g. one item per subtask).
    for prefix in [p for p, g in groups.items() if p and len(g) < 2]:
        groups.setdefault("", []).extend(groups.pop(prefix))
    # groups longest first (a memory problem shows in the first batch); a group's batches stay
    # consecutive so its prefix key/value cache is computed once (PrefixCache)
    order = sorted(groups, key=lambda p: -max(lengths[k] for k in groups[p]))
    batches: list[tuple[list[str], int]] = []
    for prefix in order:
        gkeys = sorted(groups[prefix], key=lambda k: -lengths[k])
        for b in range(0, len(gkeys), batch_size):
            chunk = gkeys[b : b + batch_size]
            # a lone row (a group's last chunk) has no one to share its prefix with
            n = (shared_prefix_len(loaded, [todo[k][0] for k in chunk], prefix)
                 if prefix and len(chunk) > 1 else 0)
            batches.append((chunk, n))
    return batches

# --------------------------------------------------------------------------------------------
# data parallel


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Indices of the items process `rank` handles: a strided split, balanced within one item."""
    return list(range(rank, n, world_size))


def generate_parallel(
    loaded: Any, prompts: Sequence[str], *, state: Any = None, **kwargs: Any
) -> list[list[str]]:
    """`generate` with the prompts sharded by index across the accelerate processes; every process
    gets the full, ordered result. With one process this is exactly `generate`."""
    if state is None:
        from accelerate import PartialState

        state = PartialState()
    world = int(getattr(state, "num_processes", 1))
    if world <= 1:
        return generate(loaded, prompts, **kwargs)
    from accelerate.utils import gather_object

    mine = shard_indices(len(prompts), int(state.process_index), world)
    kwargs.setdefault("progress", bool(state.is_main_process))
    if kwargs.get("prefixes") is not None:
        kwargs["prefixes"] = [kwargs["prefixes"][i] for i in mine]
    local = generate(loaded, [prompts[i] for i in mine], **kwargs)
    gathered = gather_object([(i, out) for i, out in zip(mine, local, strict=True)])
    merged: list[list[str] | None] = [None] * len(prompts)
    for i, out in gathered:
        merged[i] = out
    missing = [i for i, m in enumerate(merged) if m is None]
    if missing:
        raise GenerationError(f"data-parallel gather lost prompts {missing[:10]}")
    return [m for m in merged if m is not None]
