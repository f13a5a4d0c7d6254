"""Decoding for decoder-only models: greedy decoding whose finished rows leave the batch, and the
shared few-shot prefix's key/value cache reused across the batches of a subtask.

Both exist for CPU evaluation speed (issue 14): few-shot prompts of one subtask share their long
exemplar header, and greedy rows finish at very different lengths (a direct answer after 2 tokens,
a rambling chain at the cap). `generation.generate_batch` calls these; the output is the one
transformers' `generate` gives for the same rows (tests/test_generation.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from transformers import GenerationConfig


def forward(model: Any, input_ids: torch.Tensor, *, cache: Any = None, **kw: Any
            ) -> tuple[torch.Tensor, Any]:
    """(logits, key/value cache) of one forward pass with the cache on. transformers 5.x names
    the cache argument and output `cache` (`past_key_values` before, still accepted with a
    deprecation warning); this passes whichever the model's forward declares."""
    params = inspect.signature(model.forward).parameters
    name = "cache" if "cache" in params else "past_key_values"
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
        import copy

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
    eos = gen_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
    stops = [s for s in stop if s]
    window = max((len(s) for s in stops), default=0) + 4
    mask = enc["attention_mask"]
    positions = mask.long().cumsum(-1) - 1
    positions.masked_fill_(mask == 0, 1)
    n_past = past.get_seq_length() if past is not None else 0
    ids, pos = enc["input_ids"][:, n_past:], positions[:, n_past:]
    extra = ({"logits_to_keep": 1}
             if "logits_to_keep" in inspect.signature(model.forward).parameters else {})
    alive = list(range(mask.shape[0]))
    out: list[list[int]] = [[] for _ in alive]
    with torch.inference_mode():
        for _ in range(int(gen_config.max_new_tokens)):
            logits, past = forward(model, ids, attention_mask=mask, position_ids=pos, cache=past,
                                   **extra)
            nxt = logits[:, -1, :].argmax(-1)
            keep = []
            for j, (row, token) in enumerate(zip(alive, nxt.tolist(), strict=True)):
                out[row].append(token)
                done = token in eos_ids or (bool(stops) and any(
                    s in tok.decode(out[row][-window:], skip_special_tokens=True) for s in stops))
                if not done:
                    keep.append(j)
            if not keep:
                break
            last = pos[:, -1:]
            if len(keep) < len(alive):
                idx = torch.tensor(keep, device=mask.device)
                past.batch_select_indices(idx)
                mask, nxt, last = mask[idx], nxt[idx], last[idx]
                alive = [alive[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            ids, pos = nxt[:, None], last + 1
    return out
