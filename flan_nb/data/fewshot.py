"""Few-shot hygiene and budget: duplicate rows, exemplar choice, prompt length in model tokens.

The released Flan collection builds few-shot training prompts from up to 5 exemplars of the same
task, and a variant that packs in as many exemplars as fit a length limit (its few-shot limit is
1,920 tokens of the model's vocabulary). An exemplar is never the query itself nor a duplicate of
it: rows are compared by their normalized input text, and each task's rows are deduplicated when
loaded (the mirrored `cot_strategyqa` file holds two identical rows; with both in the pool a
few-shot prompt could show the query's own answer).
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flan_nb.data.rows import RAW_COLUMNS

MAX_EXEMPLARS = 5  # the collection's "up to 5 exemplars" few-shot prompts
FILL_DRAW = 16  # exemplars drawn for the "as many as fit" variant before pruning to the budget
DEFAULT_BUDGET = 1920  # the collection's few-shot input limit, in model tokens
WHITESPACE = "whitespace"  # explicit fallback unit: whitespace-separated words
_SPACE = re.compile(r"\s+")
# fields that are answers or bookkeeping, not part of what the model reads
_NOT_INPUT = frozenset(RAW_COLUMNS) - {"inputs", "options"}


def normalize_text(text: str) -> str:
    """Case-folded, whitespace-collapsed text (the literal `\\n` of some TSVs counts as a space)."""
    return _SPACE.sub(" ", str(text).replace("\\n", " ")).strip().casefold()


def input_key(row: Mapping[str, Any]) -> str:
    """What the model reads of a raw row (inputs, options, extra template fields), normalized."""
    parts = {k: v for k, v in row.items() if k not in _NOT_INPUT and v not in (None, "", [])}
    return normalize_text(json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str))


def dedupe_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], int]:
    """(rows with the first of each normalized input kept, number dropped); order is kept."""
    seen: set[str] = set()
    kept = []
    for row in rows:
        key = input_key(row)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept, len(rows) - len(kept)


def pick_exemplars(pool: Sequence[Mapping[str, Any]], index: int, k: int, rng: random.Random,
                   keys: Sequence[str] | None = None) -> list[Mapping[str, Any]]:
    """Up to `k` distinct exemplars from `pool`, never `pool[index]` nor a row whose normalized
    input equals the query's (`keys[i]` = input_key(pool[i]) when precomputed). Draws with a few
    retries so a pool of near-copies yields fewer exemplars rather than a leak."""
    n = len(pool)
    if n < 2 or k <= 0:
        return []
    key_of = (lambda i: keys[i]) if keys is not None else (lambda i: input_key(pool[i]))
    query = key_of(index)
    chosen: list[int] = []
    taken = {query}
    for _ in range(3 * k):
        if len(chosen) == k:
            break
        j = rng.randrange(n - 1)
        j = j + 1 if j >= index else j
        kj = key_of(j)
        if kj not in taken:
            taken.add(kj)
            chosen.append(j)
    return [pool[j] for j in chosen]


@dataclass(frozen=True)
class TokenCounter:
    """Counts prompt length in `unit` (a tokenizer's tokens, or whitespace words as a fallback)."""

    spec: str
    unit: str
    count: Callable[[str], int]


def _whitespace(text: str) -> int:
    return len(text.split())


@functools.cache
def token_counter(spec: str) -> TokenCounter:
    """The counter for a model spec (`builtin:mini-t5`, a hub id, a .gguf path, smollm2) or the
    explicit fallback `whitespace`. Special tokens are not counted. Raises ModelSpecError."""
    spec = str(spec).strip()
    if spec == WHITESPACE:
        return TokenCounter(spec, "whitespace-separated words", _whitespace)
    from flan_nb import models

    tokenizer, _ = models.load_tokenizer(spec)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return TokenCounter(spec, f"tokens of {spec} ({type(tokenizer).__name__})", count)
