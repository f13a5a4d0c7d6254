"""The content-addressed generation cache: one entry per (model fingerprint, exact prompt, generation
settings), so an interrupted evaluation resumes without recomputing finished items, with any number
of processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CACHE_VERSION = 1


class GenerationError(RuntimeError):
    """A generation request that cannot be served (bad arguments, model without a tokenizer, ...)."""


@dataclass(frozen=True)
class GenerationSettings:
    """Everything besides model and prompt that changes the generated text (part of the cache key)."""

    max_new_tokens: int
    stop: tuple[str, ...] = ()
    do_sample: bool = False
    temperature: float = 1.0
    chat: bool = False

    def key_fields(self) -> dict[str, Any]:
        fields = asdict(self)
        fields["stop"] = list(self.stop)
        # Stop rule 2: a whitespace-only stop counts after the first visible character
        # (decoding.stop_index); generations cached under the old rule are not reused.
        fields["stop_rule"] = 2
        if not self.do_sample:
            # Greedy output does not depend on the temperature; keep the key stable across it.
            fields["temperature"] = None
        return fields


def cache_key(
    fingerprint: str, prompt: str, settings: GenerationSettings, sample_index: int = 0, seed: int = 0
) -> str:
    """sha256 over the model fingerprint, the exact prompt, the settings and (when sampling) the
    sample index and seed. Greedy keys ignore sample index and seed: the output is the same."""
    payload = {
        "v": CACHE_VERSION,
        "model": fingerprint,
        "prompt": prompt,
        "settings": settings.key_fields(),
        "sample": sample_index if settings.do_sample else 0,
        "seed": seed if settings.do_sample else 0,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def entry_checksum(key: str, text: str) -> str:
    """sha256 of key and text (hex, first 32 digits): a row whose text was edited, truncated or
    swapped with another row's no longer matches."""
    blob = json.dumps([CACHE_VERSION, key, text], ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:32]


def _verified(line: bytes) -> dict[str, Any] | None:
    """The row of one complete cache line, or None when it is not a verified entry."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if not isinstance(row, dict):
        return None
    key, text, checksum = row.get("key"), row.get("text"), row.get("sum")
    if not (isinstance(key, str) and key and isinstance(text, str) and isinstance(checksum, str)):
        return None
    return row if checksum == entry_checksum(key, text) else None


def default_cache_dir() -> Path:
    """`<artifacts root>/cache/generation` (env FLAN_NB_GENERATION_CACHE overrides)."""
    env = os.environ.get("FLAN_NB_GENERATION_CACHE")
    if env:
        return Path(env)
    try:
        from flan_nb import runs

        return Path(runs.artifacts_root()) / "cache" / "generation"
    except Exception:  # runs.py unusable: fall back to the repository checkout
        return Path(__file__).resolve().parents[2] / "artifacts" / "cache" / "generation"


class GenerationCache:
    """Append-only JSONL shards of `{"key", "text"}` rows; all shards are read at start.

    Each process appends to its own shard file, named by host, pid and a random suffix, so
    data-parallel workers can share one directory without locking.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, str] = {}
        self._read_offsets: dict[Path, int] = {}
        self._shard: Path | None = None
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self.rejected = 0  # rows that did not verify (see refresh); recomputed, never served
        self.refresh()

    def refresh(self) -> None:
        """Read rows that other processes appended since the last read.

        A complete row is trusted only when it is well-typed (`key` a sha256 hex, `text` a str)
        and its `sum` matches entry_checksum(key, text); anything else (an edited text, a wrong
        type, a row of an older cache version without a checksum, invalid JSON) is counted in
        `rejected` and not served, so the prompt is generated again."""
        for shard in sorted(self.root.glob("*.jsonl")):
            start = self._read_offsets.get(shard, 0)
            with open(shard, "rb") as f:
                f.seek(start)
                data = f.read()
            # Only complete lines count; a partial line is re-read once its writer finishes it.
            end = data.rfind(b"\n") + 1
            for line in data[:end].splitlines():
                row = _verified(line)
                if row is None:
                    self.rejected += 1
                    continue
                self._entries[row["key"]] = row["text"]
            self._read_offsets[shard] = start + end

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> str | None:
        text = self._entries.get(key)
        if text is None:
            self.misses += 1
        else:
            self.hits += 1
        return text

    def put(self, key: str, text: str, **meta: Any) -> None:
        self._entries[key] = text
        if self._shard is None:
            name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            self._shard = self.root / name
        if not isinstance(text, str):
            raise GenerationError(f"generation cache: text must be a str, got {type(text).__name__}")
        row = {**meta, "key": key, "text": text, "sum": entry_checksum(key, text)}
        with open(self._shard, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
        self.writes += 1
        # Our own rows are already in memory: skip them when refreshing.
        self._read_offsets[self._shard] = self._shard.stat().st_size
