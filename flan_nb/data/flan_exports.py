"""The Flan Collection as its authors rendered it: the public per-submixture exports (issue 11 part 6).

The Flan 2022 Collection was exported to the Hugging Face hub as one dataset per submixture
(`DataProvenanceInitiative/{flan2021,t0,niv2,cot,dialog}_submix_original`, split `train`). Every
record is one example already rendered with the authors' own templates:

    {"inputs": str, "targets": str, "task_source": str, "task_name": str, "template_type": str}

`task_source` names the submixture (Flan2021, T0, NIv2, CoT, Dialog) and `template_type` the format
(zs_opt, zs_noopt, fs_opt, fs_noopt; FLAN's README names the mixtures `<submix>_{zsopt,zsnoopt,
fsopt,fsnoopt}`). This module reads such records from the hub or from local files shaped like
them, validates each one, and turns it into a raw row of our mixture schema: task = task_name,
collection = the paper collection the preset maps the export to, format = template_type, cot,
inputs, targets. Rows are rendered already, so the mixer skips our templates for them
(`formats.PRERENDERED`); everything else (caps, rates, counts, interleaving, manifest) is the
same as for our own rendering. Which export maps to which paper collection, and where the 2022
exports are a superset of the paper's mixture, is documented in
`resources/mixtures/flan_exports_proportion_b.yaml`.

Local layout (checked first, like every other source): `<data_root>/flan_exports/<submix>/` holding
`*.jsonl`, `*.json` (JSON lines or one JSON list) or `*.parquet` files, e.g. what
`huggingface-cli download --repo-type dataset <hub id> --local-dir <data_root>/flan_exports/<submix>`
writes. A preset entry's `source` may also be a local file or directory.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flan_nb.data import fewshot
from flan_nb.data import registry as registry_mod
from flan_nb.data.formats import PRERENDERED
from flan_nb.data.mixture_io import MixingError
from flan_nb.data.registry import Task
from flan_nb.data.rows import (
    BadField,
    BadRows,
    DataFormatError,
    raw_example,
    read_json_document,
    read_json_lines,
    require_text,
)

RECORD_FIELDS = ("inputs", "targets", "task_source", "task_name", "template_type")
TEMPLATE_TYPES = ("zs_opt", "zs_noopt", "fs_opt", "fs_noopt")
LOCAL_DIR = "flan_exports"  # <data_root>/flan_exports/<submix>/
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")
_ENTRY_KEYS = {"source", "task_source", "collection"}


@dataclass(frozen=True)
class ExportSource:
    """One submixture export of a preset: where it is, what its records say, where it goes."""

    submix: str  # flan2021 | t0 | niv2 | cot | dialog (the export's name)
    source: str  # hub id, or a local file / directory
    task_source: str  # the value every record's `task_source` must have (case-insensitive)
    collection: str  # our (= the paper's) collection: muffin | t0sf | niv2 | cot


def parse_exports(doc: Mapping[str, Any], where: str) -> list[ExportSource]:
    """The `exports:` mapping of a preset file as ExportSource entries, sorted by submix name.

    Raises MixingError naming the file and key for an unknown key, a missing value or an unknown
    collection."""
    if not isinstance(doc, Mapping) or not doc:
        raise MixingError(f"{where}: `exports` must map submix names to {{source, task_source, collection}}")
    out = []
    for submix, entry in sorted(doc.items()):
        if not isinstance(entry, Mapping):
            raise MixingError(f"{where}: exports.{submix} must be a mapping, got {entry!r}")
        extra = set(entry) - _ENTRY_KEYS
        missing = _ENTRY_KEYS - set(entry)
        if extra or missing:
            raise MixingError(f"{where}: exports.{submix}: unknown key(s) {sorted(extra)}, missing "
                              f"{sorted(missing)}; each entry needs exactly {sorted(_ENTRY_KEYS)}")
        if entry["collection"] not in registry_mod.COLLECTIONS:
            raise registry_mod.unknown(entry["collection"], registry_mod.COLLECTIONS,
                                       f"collection (in {where} exports.{submix})")
        out.append(ExportSource(str(submix), str(entry["source"]), str(entry["task_source"]),
                                str(entry["collection"])))
    return out


# ---------------------------------------------------------------------------------------------
# Reading records: local files or the hub


def _local_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(FILE_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"{path}: no {'/'.join(FILE_SUFFIXES)} files (expected records "
                                f"with fields {', '.join(RECORD_FIELDS)})")
    return files


def _file_records(path: Path, bad: BadRows) -> Iterator[tuple[int, Any]]:
    """(line, record) of one file; for parquet and JSON-list files `line` is the record number."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for rec in batch.to_pylist():
                number += 1
                yield number, rec
        return
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip()
    if path.suffix == ".json" and head.startswith(b"["):
        doc = read_json_document(path)
        yield from enumerate(doc, start=1)
        return
    yield from read_json_lines(path, bad)


def resolve_source(entry: ExportSource, data_root: Path | None) -> Path | str:
    """The local path holding `entry` (data_root/flan_exports/<submix>, or a local `source`),
    else its hub id."""
    if data_root is not None and (data_root / LOCAL_DIR / entry.submix).exists():
        return data_root / LOCAL_DIR / entry.submix
    if Path(entry.source).expanduser().exists():
        return Path(entry.source).expanduser()
    return entry.source


def _hub_records(hub_id: str, submix: str) -> Iterator[tuple[int, Any]]:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise FileNotFoundError(
            f"Flan export {hub_id!r} is not on this machine and the hub is offline (HF_HUB_OFFLINE=1). "
            f"Download it on a connected machine (huggingface-cli download --repo-type dataset {hub_id} "
            f"--local-dir DATA_ROOT/{LOCAL_DIR}/{submix}) and set data_root, or point the preset's "
            f"exports.{submix}.source at a local copy")
    import datasets

    # streamed: flan2021 alone is 5.4M records (9 GB); only the per-task sample is kept in memory
    stream = datasets.load_dataset(hub_id, split="train", streaming=True)
    yield from enumerate(stream, start=1)


# ---------------------------------------------------------------------------------------------
# Validation and the per-task sample


def to_row(rec: Any, entry: ExportSource, example_id: str) -> dict[str, Any]:
    """One export record as a raw row (+ `format`, `cot`, `template_id`); BadField (a bad row)
    when a field is missing, not text, empty, or holds a value the export cannot have."""
    if not isinstance(rec, Mapping):
        raise BadField(f"record must be a JSON object with {', '.join(RECORD_FIELDS)}, got {type(rec).__name__}")
    absent = [f for f in RECORD_FIELDS if f not in rec]
    if absent:
        raise BadField(f"record lacks field(s) {', '.join(absent)} (has {', '.join(sorted(map(str, rec)))})")
    values = {f: require_text(rec[f], f) for f in RECORD_FIELDS}
    for f in ("inputs", "targets", "task_name"):
        if not values[f].strip():
            raise BadField(f"field `{f}` is empty")
    if values["task_source"].casefold() != entry.task_source.casefold():
        raise BadField(f"task_source {values['task_source']!r} does not belong in the {entry.submix} "
                       f"export (expected {entry.task_source!r})")
    fmt = values["template_type"].strip().lower()
    fmt = {t.replace("_", ""): t for t in TEMPLATE_TYPES}.get(fmt, fmt)
    if fmt not in TEMPLATE_TYPES:
        raise BadField(f"template_type {values['template_type']!r} is not one of {', '.join(TEMPLATE_TYPES)}")
    return raw_example(values["task_name"], values["inputs"], values["targets"], example_id=example_id,
                       source=entry.source, provenance=f"flan export {entry.submix} ({values['task_source']})",
                       format=fmt, cot=entry.collection == "cot",
                       template_id=f"flan_export/{entry.submix}/{fmt}")


@dataclass
class _Sample:
    """A task's rows: the `k` with the smallest keys (a hash of the normalized input), so the sample
    is uniform, seeded and independent of file order; a repeated input is dropped and counted."""

    k: int | None
    heap: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    keys: set[int] = field(default_factory=set)
    read: int = 0
    duplicates: int = 0

    def offer(self, key: int, row: dict[str, Any]) -> None:
        self.read += 1
        if key in self.keys:
            self.duplicates += 1
        elif self.k is None or len(self.heap) < self.k:
            heapq.heappush(self.heap, (-key, row))
            self.keys.add(key)
        elif key < -self.heap[0][0]:
            old, _ = heapq.heapreplace(self.heap, (-key, row))
            self.keys.discard(-old)
            self.keys.add(key)

    def rows(self) -> list[dict[str, Any]]:
        return [row for _, row in sorted(self.heap, key=lambda kv: -kv[0])]


def _key(inputs: str, seed: int) -> int:
    digest = hashlib.blake2b(f"{seed}\0{fewshot.normalize_text(inputs)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def load_export(entry: ExportSource, data_root: Path | None, *, seed: int = 0,
                max_rows_per_task: int | None = None, on_bad_rows: str = "raise",
                stats: dict[str, Any] | None = None) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """({task_name: rows}, report) for one export, read locally if present, else from the hub.

    Each task keeps at most `max_rows_per_task` rows (a seeded uniform sample; None = all), after
    dropping rows whose normalized input repeats one already kept. A malformed record raises
    DataFormatError naming the file (or hub id) and line, or under on_bad_rows="skip" is skipped
    and counted in `stats["bad_rows"]`. Raises FileNotFoundError when the export is neither local
    nor reachable (offline hub)."""
    where = resolve_source(entry, data_root)
    samples: dict[str, _Sample] = {}
    if isinstance(where, Path):
        streams = [(str(p), p, None) for p in _local_files(where)]
    else:
        streams = [(where, None, where)]
    for label, path, hub in streams:
        bad = BadRows(label, on_bad_rows, stats)
        records = _file_records(path, bad) if path is not None else _hub_records(hub, entry.submix)
        name = path.name if path is not None else "hub"
        for line, rec in records:
            try:
                row = to_row(rec, entry, f"{entry.submix}:{name}:{line}")
            except (BadField, TypeError, ValueError) as exc:
                bad.bad(line, str(exc))
                continue
            sample = samples.setdefault(row["task"], _Sample(max_rows_per_task))
            sample.offer(_key(row["inputs"], seed), row)
        bad.finish()
    if not samples:
        raise FileNotFoundError(f"Flan export {entry.submix} ({where}): no valid records")
    report = {"source": str(where), "tasks": len(samples), "rows_read": sum(s.read for s in samples.values()),
              "rows_in_export": {t: s.read for t, s in sorted(samples.items())},
              "duplicates_dropped": {t: s.duplicates for t, s in sorted(samples.items()) if s.duplicates}}
    return {t: s.rows() for t, s in sorted(samples.items())}, report


# ---------------------------------------------------------------------------------------------
# A preset's tasks


def _excluded(task: str, collection: str, patterns: list[re.Pattern[str]]) -> str | None:
    if collection == "niv2":
        m = re.match(r"task(\d+)", task)
        if m and int(m.group(1)) in registry_mod.NIV2_MMLU_IDS:
            return "niv2_mmlu"
    if any(p.search(task) for p in patterns):
        return "pattern"
    return None


def load_for_preset(preset: Any, data_root: Path | None, *, seed: int, max_rows_per_task: int | None,
                    on_bad_rows: str) -> tuple[list[Task], dict[str, Any], list[tuple[Task, list[dict[str, Any]]]],
                                               dict[str, Any], dict[str, str]]:
    """(tasks, hygiene, [(task, rows)], load report, {missing key: collection}) for a preset with
    `exports`: the mixing.build_mixture counterpart of select_tasks + load_task_data.

    Hygiene as for our own tasks: NIV2 tasks 664-667/685-737 (MMLU) are dropped, and so is every
    task matching one of the preset's `exclude_tasks` patterns. An export that cannot be read is
    reported in `failed_to_load` (key `flan_exports/<submix>`), never silently skipped."""
    patterns = [re.compile(p) for p in preset.exclude_tasks]
    stats: dict[str, Any] = {}
    failed: dict[str, str] = {}
    coll_of: dict[str, str] = {}
    pairs: list[tuple[Task, list[dict[str, Any]]]] = []
    exports: dict[str, Any] = {}
    dropped: dict[str, list[str]] = {"niv2_mmlu": [], "pattern": []}
    dups: dict[str, int] = {}
    short: list[str] = []  # tasks whose kept sample is below their cap: their share shrinks
    for entry in parse_exports(preset.exports, preset.path):
        key = f"{LOCAL_DIR}/{entry.submix}"
        coll_of[key] = entry.collection
        if preset.rates.get(entry.collection, 0) <= 0:
            continue
        try:
            by_task, report = load_export(entry, data_root, seed=seed, max_rows_per_task=max_rows_per_task,
                                          on_bad_rows=on_bad_rows, stats=stats)
        except (FileNotFoundError, DataFormatError) as exc:
            if isinstance(exc, DataFormatError) and on_bad_rows == "raise":
                raise
            failed[key] = str(exc)
            continue
        exports[entry.submix] = {k: v for k, v in report.items() if k != "rows_in_export"}
        dups.update(report["duplicates_dropped"])
        for name, rows in by_task.items():
            reason = _excluded(name, entry.collection, patterns)
            if reason:
                dropped[reason].append(name)
                continue
            if name in coll_of:
                raise MixingError(f"{preset.path}: task {name!r} appears in two exports; task names must be unique")
            coll_of[name] = entry.collection
            task = Task(id=name, collection=entry.collection, dataset=entry.submix, category="", language="",
                        source={"flan_export": entry.source}, size=report["rows_in_export"][name], license="",
                        held_out=False, template_set=PRERENDERED)
            pairs.append((task, rows))
            if max_rows_per_task and len(rows) < min(task.size or 0, preset.caps[entry.collection]):
                short.append(name)
    if short:
        warnings.warn(f"max_examples_per_task={max_rows_per_task} keeps fewer rows than the cap for "
                      f"{len(short)} export task(s) (e.g. {short[0]}); their mixing weight is min(kept, cap)",
                      stacklevel=2)
    hygiene = {"niv2_mmlu_dropped": dropped["niv2_mmlu"], "niv2_mmlu_dropped_count": len(dropped["niv2_mmlu"]),
               "excluded_by_pattern": dropped["pattern"], "held_out_dropped": [],
               "unavailable_dropped_count": 0, "unavailable_dropped": []}
    load_report = {"failed_to_load": failed, "bad_rows": stats.get("bad_rows", 0),
                   "bad_examples": stats.get("bad_examples", []), "duplicates_dropped": dups,
                   "duplicates_dropped_total": sum(dups.values()), "exports": exports,
                   "max_rows_per_task": max_rows_per_task,
                   "below_cap": short}
    return [t for t, _ in pairs], hygiene, pairs, load_report, coll_of


__all__ = ["ExportSource", "LOCAL_DIR", "RECORD_FIELDS", "TEMPLATE_TYPES", "load_export", "load_for_preset",
           "parse_exports", "resolve_source", "to_row"]
