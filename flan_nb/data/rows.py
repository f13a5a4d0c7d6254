"""The raw-example schema every Flan source is loaded into, and the bad-row policy.

Rows are `{"task", "inputs", "targets", "rationale", "options", "example_id", "source",
"provenance"}` (+ extra template fields). A malformed row raises `DataFormatError` naming the file
and line, or with `on_bad_rows="skip"` is skipped and counted.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

RAW_COLUMNS = ("task", "inputs", "targets", "rationale", "options", "example_id", "source", "provenance")
RAW_FEATURES = datasets.Features({
    "task": datasets.Value("string"), "inputs": datasets.Value("string"),
    "targets": datasets.Value("string"), "rationale": datasets.Value("string"),
    "options": datasets.Sequence(datasets.Value("string")), "example_id": datasets.Value("string"),
    "source": datasets.Value("string"), "provenance": datasets.Value("string"),
})
BAD_ROW_POLICIES = ("raise", "skip")


class DataFormatError(ValueError):
    """A malformed row or file; the message names the file (or hub id) and the line/row."""


@dataclass
class BadRows:
    """Counts skipped rows; raises on the first one unless the policy is skip."""

    where: str
    policy: str
    stats: dict[str, Any] | None
    count: int = 0

    def __post_init__(self) -> None:
        if self.policy not in BAD_ROW_POLICIES:
            raise ValueError(f"on_bad_rows must be one of {BAD_ROW_POLICIES}, got {self.policy!r}")

    def bad(self, line: int | str, reason: str) -> None:
        message = f"{self.where} line {line}: {reason}"
        if self.policy == "raise":
            raise DataFormatError(message)
        self.count += 1
        if self.stats is not None:
            self.stats["bad_rows"] = self.stats.get("bad_rows", 0) + 1
            self.stats.setdefault("bad_examples", [])
            if len(self.stats["bad_examples"]) < 20:
                self.stats["bad_examples"].append(message)

    def finish(self) -> None:
        if self.count:
            warnings.warn(f"{self.where}: skipped {self.count} malformed row(s)", stacklevel=3)

    def collect(self, records: Iterable[tuple[int | str, Any]],
                make_row: Callable[[int | str, Any], dict[str, Any] | None],
                max_examples: int | None, describe: Callable[[BaseException], str] = repr,
                errors: tuple[type[BaseException], ...] = (KeyError, IndexError, TypeError,
                                                           ValueError)) -> list[dict[str, Any]]:
        """Rows from `make_row(line, record)` (None = not an example). A record it cannot
        convert is a bad row, reported with its line as `describe(error)`; every loader shares
        this loop so the raise/skip policy and the max_examples cut behave the same everywhere."""
        rows: list[dict[str, Any]] = []
        for line, rec in records:
            try:
                row = make_row(line, rec)
            except errors as exc:
                self.bad(line, describe(exc))
                continue
            if row is not None:
                rows.append(row)
                if max_examples is not None and len(rows) >= max_examples:
                    break
        self.finish()
        return rows


class BadField(TypeError):
    """A required text field of a source record is null, not a string, or holds bad bytes.

    A TypeError so that every loader's `BadRows.collect` treats it as a bad row: a null NIV2
    input must never reach training text as the string "None"."""


def require_text(value: Any, field: str) -> str:
    """`value` if it is a str of valid UTF-8, else BadField naming `field`."""
    if value is None:
        raise BadField(f"field `{field}` is null")
    if not isinstance(value, str):
        raise BadField(f"field `{field}` must be a string, got {type(value).__name__} {value!r:.40}")
    bad = utf8_problem(value)
    if bad:
        raise BadField(f"field `{field}`: {bad}")
    return value


def utf8_problem(text: str) -> str | None:
    """'byte 0xff is not valid UTF-8' when `text` (decoded with surrogateescape) holds one."""
    for ch in text:
        if "\udc80" <= ch <= "\udcff":
            return f"byte 0x{ord(ch) - 0xDC00:02x} is not valid UTF-8"
    return None


def raw_example(task: str, inputs: str, targets: str, *, example_id: str, source: str, provenance: str,
         rationale: str = "", options: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
    """One raw row; raises BadField when inputs, targets, rationale or an option is not text."""
    # non-text options (e.g. ints of a label list) are written as text, but null is never one
    options = [require_text(o if o is None or isinstance(o, str) else str(o), f"options[{k}]")
               for k, o in enumerate(options)]
    return {"task": task, "inputs": require_text(inputs, "inputs"),
            "targets": require_text(targets, "targets"), "rationale": require_text(rationale, "rationale"),
            "options": options, "example_id": example_id, "source": source,
            "provenance": provenance, **extra}


def to_dataset(rows: list[dict[str, Any]], extra: Mapping[str, datasets.Value] | None = None
                ) -> datasets.Dataset:
    features = RAW_FEATURES.copy()
    for name, value in (extra or {}).items():
        features[name] = value
    if not rows:
        return datasets.Dataset.from_dict({k: [] for k in features}, features=features)
    return datasets.Dataset.from_list(rows, features=features)


def is_local(source: str | Path) -> bool:
    return Path(source).expanduser().exists()


def load_hub(hub_id: str, config: str | None, split: str) -> datasets.Dataset:
    """A hub dataset; offline machines get a clear error instead of a long retry loop."""
    import os

    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise FileNotFoundError(
            f"{hub_id!r} is not a local path and the hub is offline (HF_HUB_OFFLINE=1); pass a "
            f"local file or set data_root to the offline mirror")
    try:
        return datasets.load_dataset(hub_id, config, split=split)
    except RuntimeError as exc:
        # datasets >= 4 no longer runs loading scripts; the hub keeps a parquet conversion of
        # most script-based datasets (trec, quac, math_dataset, ...) under this revision
        if "script" not in str(exc).lower():
            raise
        return datasets.load_dataset(hub_id, config, split=split, revision="refs/convert/parquet")


def read_lines(path: Path, bad: BadRows | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line. A line that is not UTF-8 is a bad row of `bad` (skipped
    under on_bad_rows=skip), or without `bad` a DataFormatError naming file and line."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                reason = (f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not valid "
                          f"UTF-8 (re-save the file as UTF-8)")
                if bad is None:
                    raise DataFormatError(f"{path} line {number}: {reason}") from None
                bad.bad(number, reason)
                continue
            yield number, line.removesuffix("\n").removesuffix("\r")


def read_json_document(path: Path) -> Any:
    """A whole JSON file. Bytes that are not UTF-8 are kept as surrogates (see utf8_problem) so
    the record holding one can be named and skipped; invalid JSON names file and line."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path} line {exc.lineno}: invalid JSON: {exc.msg}") from None


def read_json_lines(path: Path, bad: BadRows) -> Iterator[tuple[int, Any]]:
    for number, line in read_lines(path, bad):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            bad.bad(number, f"invalid JSON: {exc.msg} (column {exc.colno})")
