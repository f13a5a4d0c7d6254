"""Reading the offline benchmark files so that a malformed byte or record is named, never a bare
Python exception.

Files are decoded with ``surrogateescape``: a byte that is not UTF-8 survives as a lone surrogate
in the decoded text, so the rest of the file still parses and the record that holds the byte can
be named (``examples[12]``, ``line 7``) and, under ``on_bad_rows: skip``, skipped alone. Text that
every item needs (a CoT prompt file, an exemplar) is read strictly: a bad byte there is an error
naming the file and the line, since dropping it would change every prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flan_nb.eval.benchmark_schema import ERROR_KEY, BenchmarkDataError, bad_bytes


def read_text(path: Path) -> str:
    """The file decoded as UTF-8, undecodable bytes kept as surrogates (see bad_bytes)."""
    try:
        return Path(path).read_bytes().decode("utf-8", errors="surrogateescape")
    except FileNotFoundError:
        raise BenchmarkDataError(f"missing file {path}") from None


def read_text_strict(path: Path) -> str:
    """The whole file as UTF-8; a bad byte is an error naming the file, line and byte."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise BenchmarkDataError(f"missing file {path}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BenchmarkDataError(
            f"{path} line {line}: byte 0x{raw[exc.start]:02x} is not valid UTF-8 (re-save the "
            f"file as UTF-8)") from None


def read_json(path: Path) -> Any:
    """Parsed JSON; invalid JSON names the file and line. Strings may hold escaped bad bytes."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchmarkDataError(f"{path} line {exc.lineno}: invalid JSON: {exc.msg}") from None


def require_clean(obj: Any, where: str) -> None:
    """Raise BenchmarkDataError naming `where` when `obj` holds a byte that is not UTF-8."""
    found = bad_bytes(obj)
    if found:
        raise BenchmarkDataError(f"{where}: {found}")


def broken(reason: str, **fields: Any) -> dict[str, Any]:
    """A placeholder item the reader could not build; validate() reports `reason` for it."""
    return {ERROR_KEY: reason, **fields}
