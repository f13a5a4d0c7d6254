"""Training checkpoints: atomic, self-validating, keep-last-k, resumable bit for bit.

Layout: ``<root>/step_000120/`` holds what ``accelerate.Accelerator.save_state`` writes (model,
optimizer, the python/numpy/torch RNG states of every process; sharded files under FSDP or
DeepSpeed) plus our ``meta.json`` (step, data position, params hash, model fingerprint).

Why atomic: a run may be SIGKILLed at any moment (preemption, OOM killer). Everything is written
into ``<root>/.tmp_step_000120`` first; ``meta.json`` is written last with ``"complete": true`` and
the directory is then renamed in one ``os.replace``. A directory is only ever taken as a
checkpoint when it is named ``step_NNNNNN`` *and* its meta.json says complete, so a kill at any
point leaves either the previous checkpoint set or the new one, never a half checkpoint.

Why checksums: a checkpoint that was complete can still go bad later (a truncated copy, bad
sectors). meta.json records the size and sha256 of every file at save time; `latest` skips a
checkpoint that no longer verifies, with a warning, so training resumes from the previous valid
one instead of loading garbage or crashing. A checkpoint saved before checksums existed has no
`files` entry and is taken as is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

META = "meta.json"
_STEP_RE = re.compile(r"^step_(\d{6,})$")
_TMP_PREFIX = ".tmp_"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used (wrong run, wrong model, unreadable)."""


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    verified: bool = False  # its file checksums were checked (by `latest`)

    def meta(self) -> dict[str, Any]:
        return read_meta(self.path)


def step_name(step: int) -> str:
    return f"step_{step:06d}"


def read_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(path) / META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: cannot read {META}: {exc}") from exc


def _complete_meta(path: Path) -> dict[str, Any] | None:
    """The meta.json of a finished checkpoint directory, None for anything else."""
    path = Path(path)
    match = _STEP_RE.match(path.name)
    if match is None or not path.is_dir():
        return None
    try:
        meta = read_meta(path)
    except CheckpointError:
        return None
    if meta.get("complete") and int(meta.get("step", -1)) == int(match.group(1)):
        return meta
    return None


def is_valid(path: Path) -> bool:
    """Named step_NNNNNN and finished (meta.json written last says complete)."""
    return _complete_meta(path) is not None


def list_checkpoints(root: Path) -> list[Checkpoint]:
    """Valid checkpoints under root, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_RE.match(child.name)
        if match and is_valid(child):
            found.append(Checkpoint(int(match.group(1)), child))
    return sorted(found, key=lambda c: c.step)


def file_checksums(path: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {"size": bytes, "sha256": hex}} of every file under `path` but meta.json."""
    out: dict[str, dict[str, Any]] = {}
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if rel == META:
            continue
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        out[rel] = {"size": file.stat().st_size, "sha256": digest.hexdigest()}
    return out


def verify(path: Path) -> str | None:
    """Why the checkpoint at `path` no longer matches the checksums of its meta.json, or None.

    Sizes are compared first (a truncated file costs no hashing)."""
    path = Path(path)
    meta = _complete_meta(path)
    if meta is None:
        return f"no complete {META}"
    recorded = meta.get("files")
    if recorded is None:
        return None  # saved before checksums existed: nothing to compare
    for rel, info in recorded.items():
        file = path / rel
        if not file.is_file():
            return f"{rel} is missing"
        if file.stat().st_size != info.get("size"):
            return f"{rel} has {file.stat().st_size} bytes, {info.get('size')} at save time"
    actual = file_checksums(path)
    for rel, info in recorded.items():
        if actual[rel]["sha256"] != info.get("sha256"):
            return f"{rel} does not match its sha256 from save time"
    return None


def latest(root: Path) -> Checkpoint | None:
    """The newest valid checkpoint whose files still verify; newer ones that do not are skipped
    with a warning (kept on disk for inspection; the next save of that step replaces them)."""
    for ckpt in reversed(list_checkpoints(root)):
        problem = verify(ckpt.path)
        if problem is None:
            return Checkpoint(ckpt.step, ckpt.path, verified=True)
        warnings.warn(f"checkpoint {ckpt.path} does not verify ({problem}); skipped, resuming "
                      f"from the previous valid checkpoint", stacklevel=2)
    return None


def clean_partial(root: Path) -> list[Path]:
    """Remove leftovers of killed saves (tmp dirs, step dirs without a complete meta.json)."""
    root = Path(root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for child in root.iterdir():
        partial = child.name.startswith(_TMP_PREFIX) or (
            _STEP_RE.match(child.name) is not None and not is_valid(child))
        if partial and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed


def _fsync(path: Path, *, strict: bool = True) -> None:
    """fsync one file or directory; ``strict=False`` for directories, which some filesystems
    cannot fsync (the rename is then as durable as that filesystem makes it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        if strict:
            raise
    finally:
        os.close(fd)


def save(accelerator: Any, root: Path, step: int, meta: dict[str, Any], *,
         keep_last_k: int = 0, name: str | None = None) -> Path:
    """Save the full training state at `step`; every process must call this.

    `name` overrides the directory name (used for a diverged-step snapshot that auto-resume must
    not pick up). keep_last_k <= 0 keeps every checkpoint.
    """
    root = Path(root)
    final = root / (name or step_name(step))
    tmp = root / f"{_TMP_PREFIX}{final.name}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    # pickle (not safetensors) because tied embeddings share storage and safetensors refuses that
    accelerator.save_state(str(tmp), safe_serialization=False)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        body = {**meta, "step": int(step), "complete": True,
                "num_processes": int(accelerator.num_processes), "files": file_checksums(tmp)}
        meta_path = tmp / META
        meta_path.write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")
        # file contents reach the disk before the rename, so a power cut cannot reorder them
        for file in sorted(p for p in tmp.rglob("*") if p.is_file()):
            _fsync(file)
        if final.exists():  # re-saving the same step (e.g. after a resume at that step)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync(root, strict=False)
        if keep_last_k > 0 and name is None:
            prune(root, keep_last_k)
    accelerator.wait_for_everyone()
    return final


def prune(root: Path, keep_last_k: int) -> list[Path]:
    """Delete all but the newest keep_last_k valid checkpoints; returns what was removed."""
    found = list_checkpoints(root)
    doomed = found[:-keep_last_k] if keep_last_k > 0 else []
    for ckpt in doomed:
        # rename first so a kill during rmtree never leaves a 'valid-looking' half directory
        trash = ckpt.path.with_name(f"{_TMP_PREFIX}del_{ckpt.path.name}")
        os.replace(ckpt.path, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return [c.path for c in doomed]


def load(accelerator: Any, ckpt: Checkpoint | Path) -> dict[str, Any]:
    """Restore model, optimizer and RNG states in place; return the checkpoint's meta."""
    path = ckpt.path if isinstance(ckpt, Checkpoint) else Path(ckpt)
    meta = _complete_meta(path)
    if meta is None:
        raise CheckpointError(f"{path} is not a complete checkpoint (no complete {META})")
    problem = None if isinstance(ckpt, Checkpoint) and ckpt.verified else verify(path)
    if problem:
        raise CheckpointError(f"checkpoint {path} does not verify: {problem}")
    accelerator.load_state(str(path))
    return meta
