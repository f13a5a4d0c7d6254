"""Decoding for decoder-only models: greedy decoding whose finished rows leave the batch,
continuous batching across batches, and the shared few-shot prefix's key/value cache reused
across the batches of a subtask.

All exist for CPU evaluation speed (issue 14): few-shot prompts of one subtask share their long
exemplar header; greedy rows finish at very different lengths (a direct answer after 2 tokens,
a rambling chain at the cap); and a decoding step reads every weight once whatever the number
of rows, so a step should serve as many running rows as possible. `generation.generate` uses
`greedy_continuous` for greedy decoder-only requests, `generation.generate_batch` uses
`greedy_causal` for one batch; both give the output of transformers' greedy `generate` for the
same rows (tests/test_generation.py), up to float near-ties.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig
from transformers.cache_utils import DynamicLayer

from flan_nb.eval.generation_cache import GenerationError, GenerationSettings


def stop_index(text: str, stop: Sequence[str]) -> int | None:
    """Index of the earliest stop string in a continuation, or None.

    A stop made only of whitespace (the few-shot blank line "\\n\\n") counts only after the first
    non-whitespace character: a continuation that opens with a blank line and then answers is
    not an empty answer. Stops with visible text ("\\nQ:") count anywhere. (lm-eval's `until`
    cuts at the first occurrence anywhere, so it returns "" for such a continuation.)
    """
    lead = len(text) - len(text.lstrip())
    found = [i for s in stop if s and (i := text.find(s, lead if s.isspace() else 0)) != -1]
    return min(found) if found else None


def hits_stop(tok: Any, ids: Sequence[int] | torch.Tensor, stops: Sequence[str]) -> bool:
    """Whether generated token ids `ids` (a list or a 1-d tensor) contain a stop string under
    `stop_index`'s rule.

    Only the last few tokens (the longest stop's length + 4) are decoded each step: a row is
    checked every step, so earlier text was checked before. The whole row is decoded only when
    that tail holds a candidate, so the per-step work does not grow with the generated text."""
    window = max((len(s) for s in stops), default=0) + 4
    tail = ids[-window:]
    tail = tail.tolist() if isinstance(tail, torch.Tensor) else list(tail)
    if not any(s and s in tok.decode(tail, skip_special_tokens=True) for s in stops):
        return False
    whole = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    return stop_index(tok.decode(whole, skip_special_tokens=True), stops) is not None


@functools.cache
def _forward_params(model_type: type) -> frozenset[str]:
    """Parameter names of a model class's forward (looked up once per class, not per step)."""
    return frozenset(inspect.signature(model_type.forward).parameters)


def forward(model: Any, input_ids: torch.Tensor, *, cache: Any = None, **kw: Any
            ) -> tuple[torch.Tensor, Any]:
    """(logits, key/value cache) of one forward pass with the cache on. transformers 5.x names
    the cache argument and output `cache` (`past_key_values` before, still accepted with a
    deprecation warning); this passes whichever the model's forward declares."""
    name = "cache" if "cache" in _forward_params(type(model)) else "past_key_values"
    if cache is not None:
        kw[name] = cache
    out = model(input_ids=input_ids, use_cache=True, **kw)
    new = out.get("cache") if "cache" in out else out.get("past_key_values")
    return out.logits, new


class PrefixCache:
    """The key/value cache of the last shared few-shot prefix, at batch size 1.

    Every batch of a subtask starts with the same prefix tokens; they are computed once for the
    subtask, not once per batch, and each batch gets a copy expanded to its rows. `computed` and
    `reused` count the two cases (the throughput benchmark prints them)."""

    def __init__(self) -> None:
        self.ids: list[int] | None = None
        self.past: Any = None
        self.computed = 0
        self.reused = 0

    def expanded(self, model: Any, prefix: list[int], rows: int, device: Any) -> Any:
        """A fresh cache of `prefix` for `rows` rows (the stored one is never mutated)."""
        if self.ids != prefix:
            with torch.inference_mode():
                self.past = forward(model, torch.tensor([prefix], device=device))[1]
            self.ids = list(prefix)
            self.computed += 1
        else:
            self.reused += 1
        past = copy.deepcopy(self.past)
        if rows > 1:
            past.batch_repeat_interleave(rows)
        return past


def greedy_causal(model: Any, tok: Any, enc: dict[str, torch.Tensor], past: Any,
                   gen_config: GenerationConfig, stop: Sequence[str]) -> list[list[int]]:
    """Greedy decoding with early exit: the new token ids of every row (EOS included).

    Matches transformers' greedy `generate` for a left-padded batch (positions from the
    attention mask, the same stop rule as `_StopOnStrings`), except that a finished row is
    removed from the batch and its key/value cache, so the work per step follows the rows still
    running. Removing rows changes the matmul shapes, which can flip an argmax on a float
    near-tie; benchmarks/eval_throughput.py counts such differences against the "hf" engine.

    enc: input_ids and attention_mask (rows, prefix + padded suffix); past: the prefix's cache
    expanded to the rows, or None. Returns one list of token ids per row, in row order."""
    rows = list(range(enc["attention_mask"].shape[0]))
    out: list[list[int]] = [[] for _ in rows]
    # one batch through the continuous decoder: nothing joins, rows leave as they finish
    for row, ids, _ in greedy_continuous(model, tok, [(rows, enc, past)], gen_config, stop,
                                         refill_below=1):
        out[row] = ids
    return out


@dataclass
class _Pool:
    """Rows decoding together: the key/value cache covers each row's tokens before `nxt`;
    `mask` covers the cache and `nxt` (left padding 0); `pos` is the position id of `nxt`."""

    past: Any
    mask: torch.Tensor           # (rows, cache length + 1)
    pos: torch.Tensor            # (rows, 1)
    nxt: torch.Tensor            # (rows,)
    keys: list[Any]              # the caller's id of each row
    out: list[list[int]]         # generated token ids of each row so far
    prompt: list[int]            # prompt tokens of each row (for work counts)

    def select(self, keep: list[int]) -> None:
        """Keep rows `keep`, then drop the leading cache columns no remaining row attends to
        (left padding from merges with longer rows that have left), so the cache never grows
        beyond the longest running row."""
        idx = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        self.past.batch_select_indices(idx)
        self.mask, self.pos, self.nxt = self.mask[idx], self.pos[idx], self.nxt[idx]
        self.keys = [self.keys[j] for j in keep]
        self.out = [self.out[j] for j in keep]
        self.prompt = [self.prompt[j] for j in keep]
        if keep and _mergeable(self.past):
            start = int(self.mask.any(0).long().argmax())
            if start > 0:
                for layer in self.past.layers:
                    layer.keys = layer.keys[:, :, start:]
                    layer.values = layer.values[:, :, start:]
                self.mask = self.mask[:, start:]


def _mergeable(past: Any) -> bool:
    """Plain per-row key/value tensors (DynamicLayer), which can be padded and concatenated."""
    layers = getattr(past, "layers", None)
    return bool(layers) and all(type(layer) in (DynamicLayer, ReservedLayer)
                                and getattr(layer, "keys", None) is not None for layer in layers)


class ReservedLayer(DynamicLayer):
    """A `DynamicLayer` whose keys and values live at the start of a buffer with room for
    `headroom` more positions, so a decoding step writes its one new position in place.

    transformers' `DynamicLayer.update` concatenates: every step copies the layer's whole cache,
    work that grows with the generated text. On a CPU, for long few-shot prompts and long chains
    (MGSM's Telugu 8-shot prompts: 8 rows of 7,000-7,800 cached positions, 46 KB each for
    SmolLM2-135M), that copy is most of a decoding step's memory traffic. Here `keys` / `values` are views of the buffer
    (batch, kv heads, length, head dim; last dim contiguous, as SDPA needs); when the buffer is
    full, or something replaced the view (rows leaving, columns trimmed, a merge), the next
    update copies into a new buffer once. Attention sees the same values in the same order, so
    outputs are unchanged (tests/test_generation.py)."""

    headroom: int = 256

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized or self.keys is None or self.keys.numel() == 0:
            return super().update(key_states, value_states, *args, **kwargs)
        n, m = self.keys.shape[-2], key_states.shape[-2]
        buf_k, buf_v = getattr(self, "_buf_k", None), getattr(self, "_buf_v", None)
        if not (buf_k is not None and self._holds(buf_k, self.keys)
                and self._holds(buf_v, self.values) and n + m <= buf_k.shape[-2]):
            buf_k, buf_v = self._reserve(self.keys, n + m), self._reserve(self.values, n + m)
            self._buf_k, self._buf_v = buf_k, buf_v
        buf_k[:, :, n : n + m] = key_states
        buf_v[:, :, n : n + m] = value_states
        self.keys, self.values = buf_k[:, :, : n + m], buf_v[:, :, : n + m]
        return self.keys, self.values

    @staticmethod
    def _holds(buf: torch.Tensor, view: torch.Tensor) -> bool:
        """`view` is still the leading part of `buf` (nobody replaced it)."""
        return (view.data_ptr() == buf.data_ptr() and view.shape[:2] == buf.shape[:2]
                and view.stride() == buf.stride())

    def _reserve(self, t: torch.Tensor, need: int) -> torch.Tensor:
        buf = t.new_empty(t.shape[0], t.shape[1], need + self.headroom, t.shape[3])
        buf[:, :, : t.shape[-2]] = t
        return buf


def _reserve(past: Any, headroom: int) -> None:
    """Make every plain layer of `past` a `ReservedLayer` with `headroom` positions of room
    (the tokens a pool may still decode; capped so a long budget does not double memory)."""
    for layer in getattr(past, "layers", ()):
        if type(layer) is DynamicLayer:
            layer.__class__ = ReservedLayer
        if type(layer) is ReservedLayer:
            layer.headroom = max(1, headroom)


def _pad_left(pool: _Pool, width: int) -> None:
    """Left-pad the cache and mask of `pool` to `width` mask columns (pads masked out: each row
    still attends to exactly its own tokens)."""
    pad = width - pool.mask.shape[1]
    if pad <= 0:
        return
    for layer in pool.past.layers:
        for name in ("keys", "values"):
            t = getattr(layer, name)
            setattr(layer, name, torch.cat([t.new_zeros(t.shape[0], t.shape[1], pad, t.shape[3]),
                                            t], dim=2))
    pool.mask = torch.cat([pool.mask.new_zeros(pool.mask.shape[0], pad), pool.mask], dim=1)


def _merge(a: _Pool, b: _Pool) -> _Pool:
    width = max(a.mask.shape[1], b.mask.shape[1])
    _pad_left(a, width)
    _pad_left(b, width)
    for la, lb in zip(a.past.layers, b.past.layers, strict=True):
        la.keys = torch.cat([la.keys, lb.keys], dim=0)
        la.values = torch.cat([la.values, lb.values], dim=0)
    return _Pool(a.past, torch.cat([a.mask, b.mask]), torch.cat([a.pos, b.pos]),
                 torch.cat([a.nxt, b.nxt]), a.keys + b.keys, a.out + b.out, a.prompt + b.prompt)


def greedy_continuous(model: Any, tok: Any, batches: Iterable[tuple[list[Any], dict, Any]],
                      gen_config: GenerationConfig, stop: Sequence[str], refill_below: int
                      ) -> Iterator[tuple[Any, list[int], int]]:
    """Greedy decoding with continuous batching: yields (row key, new token ids incl. the stopping
    token, prompt tokens) as each row finishes.

    batches: (row keys, enc, prefix cache or None) in order, as `generate_batch` lays them out
    (produced lazily, so a subtask's prefix cache is reused by its consecutive batches). Each
    batch's prompt is one forward pass (prefill, as in `greedy_causal`); its unfinished rows then
    join a pool of running rows from earlier batches, padded on the left to a common cache
    length, and every decoding step advances the whole pool by one token. When fewer than
    `refill_below` rows are running, the next batch is prefilled and joins. A decoding step on a
    CPU costs about the same for 2 rows as for 16 (it reads all the weights once: memory-bound),
    so steps that would have served one straggling row of a batch now serve many. Each row still
    sees exactly its own tokens; masked pad keys only change float summation order, which can
    flip an argmax on a near-tie (benchmarks/eval_vs_harness.py counts identical outputs).
    Caches that are not plain per-layer tensors (e.g. sliding-window layers) are not merged:
    each batch then decodes on its own.
    """
    eos = gen_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
    stops = [s for s in stop if s]
    max_new = int(gen_config.max_new_tokens)
    extra = {"logits_to_keep": 1} if "logits_to_keep" in _forward_params(type(model)) else {}

    def finished(row: list[int]) -> bool:
        return (row[-1] in eos_ids or len(row) >= max_new
                or (bool(stops) and hits_stop(tok, row, stops)))

    def advance(pool: _Pool, tokens: list[int]) -> Iterator[tuple[Any, list[int], int]]:
        """Append one token per row; yield the rows that finished and drop them from the pool."""
        keep = []
        for j, token in enumerate(tokens):
            pool.out[j].append(token)
            if finished(pool.out[j]):
                yield pool.keys[j], pool.out[j], pool.prompt[j]
            else:
                keep.append(j)
        if len(keep) < len(tokens):
            pool.select(keep)

    pool: _Pool | None = None
    source = iter(batches)
    exhausted = False
    with torch.inference_mode():
        while True:
            while not exhausted and (pool is None or (len(pool.keys) < refill_below
                                                      and _mergeable(pool.past))):
                nxt_batch = next(source, None)
                if nxt_batch is None:
                    exhausted = True
                    break
                keys, enc, past = nxt_batch
                mask = enc["attention_mask"]
                positions = mask.long().cumsum(-1) - 1
                positions.masked_fill_(mask == 0, 1)
                n_past = past.get_seq_length() if past is not None else 0
                logits, past = forward(model, enc["input_ids"][:, n_past:], attention_mask=mask,
                                       position_ids=positions[:, n_past:], cache=past, **extra)
                nxt = logits[:, -1, :].argmax(-1)
                fresh = _Pool(past, torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1),
                              positions[:, -1:] + 1, nxt, list(keys), [[] for _ in keys],
                              mask.sum(-1).tolist())
                yield from advance(fresh, nxt.tolist())
                if not fresh.keys:
                    continue
                pool = fresh if pool is None or not pool.keys else _merge(pool, fresh)
                if _mergeable(pool.past):
                    _reserve(pool.past, min(max_new, 512))
            if pool is None or not pool.keys:
                if exhausted:
                    return
                pool = None
                continue
            logits, pool.past = forward(model, pool.nxt[:, None], attention_mask=pool.mask,
                                        position_ids=pool.pos, cache=pool.past, **extra)
            pool.nxt = logits[:, -1, :].argmax(-1)
            pool.mask = torch.cat([pool.mask, pool.mask.new_ones((pool.mask.shape[0], 1))], dim=1)
            pool.pos = pool.pos + 1
            yield from advance(pool, pool.nxt.tolist())


# ---------------------------------------------------------------------------------------------
# batch layout (generation.generate_batch and generation.generate build batches with these)


def _is_causal(loaded: Any) -> bool:
    kind = getattr(loaded, "kind", None)
    if kind in ("causal", "seq2seq"):
        return kind == "causal"
    return not bool(getattr(loaded.model.config, "is_encoder_decoder", False))


def _encode(loaded: Any, texts: Sequence[str], settings: GenerationSettings, prefix_len: int,
            prefix_cache: PrefixCache | None) -> tuple[dict[str, torch.Tensor], Any]:
    """input_ids/attention_mask of one batch on the model's device, and the shared prefix's
    key/value cache (None without a prefix): left padding for decoder-only models, right for
    encoder-decoders."""
    tok, causal = loaded.tokenizer, _is_causal(loaded)
    device = next(loaded.model.parameters()).device
    if prefix_len and causal:
        return _prefix_batch(loaded, texts, settings, prefix_len, device, prefix_cache)
    old_side = tok.padding_side
    tok.padding_side = "left" if causal else "right"
    try:
        enc = tok(list(texts), return_tensors="pt", padding=True,
                  add_special_tokens=not settings.chat)
    finally:
        tok.padding_side = old_side
    return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}, None


def _prefix_batch(
    loaded: Any, texts: Sequence[str], settings: GenerationSettings, prefix_len: int, device: Any,
    prefix_cache: PrefixCache | None = None,
) -> tuple[dict[str, torch.Tensor], Any]:
    """input_ids/attention_mask laid out as [shared prefix | pads | suffix] and the prefix's
    key/value cache expanded to the batch."""
    tok, model = loaded.tokenizer, loaded.model
    ids = [tok(t, add_special_tokens=not settings.chat)["input_ids"] for t in texts]
    prefix = ids[0][:prefix_len]
    if any(row[:prefix_len] != prefix or len(row) <= prefix_len for row in ids):
        raise GenerationError("rows given a shared prefix do not start with the same tokens")
    width = max(len(row) for row in ids) - prefix_len
    pad = tok.pad_token_id
    input_ids, mask = [], []
    for row in ids:
        suffix = row[prefix_len:]
        n_pad = width - len(suffix)
        input_ids.append(prefix + [pad] * n_pad + suffix)
        mask.append([1] * prefix_len + [0] * n_pad + [1] * len(suffix))
    past = (prefix_cache or PrefixCache()).expanded(model, prefix, len(texts), device)
    enc = {
        "input_ids": torch.tensor(input_ids, device=device),
        "attention_mask": torch.tensor(mask, device=device),
    }
    return enc, past
