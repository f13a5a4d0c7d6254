"""The training log: `<run>/train_log.jsonl` (one record per step), the lines the launcher reads
from stdout, the tqdm bar and optional TensorBoard scalars.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flan_nb.train.params import (
    LOG_PREFIX,
)

if TYPE_CHECKING:
    from flan_nb.train.loop import StepResult, TrainState


def _open_tensorboard(run_path: Path, enabled: bool, main: bool) -> Any:
    if not (enabled and main):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("tensorboard requested but not installed (pip install tensorboard); skipping",
              file=sys.stderr)
        return None
    return SummaryWriter(str(run_path / "train" / "tensorboard"))


def _trim_log(path: Path, last_step: int) -> list[dict]:
    """Keep log lines of steps <= last_step (a killed run may have logged past its checkpoint)."""
    from flan_nb import runs

    if not path.is_file():
        return []
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by the kill
        if rec.get("step", 0) <= last_step:
            kept.append(rec)
    runs.atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def emit(prefix: str, obj: Mapping[str, Any]) -> None:
    print(prefix + json.dumps(obj, default=float), flush=True)


class TrainLog:
    """`<run>/train_log.jsonl` (every step), the launcher's stdout lines, tqdm and TensorBoard."""

    def __init__(self, state: TrainState, *, progress: bool = True):
        from tqdm.auto import tqdm

        self.state = state
        self.path = state.run.path / "train_log.jsonl"
        main = state.main
        kept = _trim_log(self.path, state.start_step) if main else []
        state.history = [r for r in kept if "loss" in r]  # not the periodic_eval records
        if main and state.start_step == 0 and self.path.exists():
            self.path.unlink()
        state.non_pad_tokens = sum(r.get("non_pad_tokens", 0) for r in state.history)
        state.token_slots = sum(r.get("token_slots", 0) for r in state.history)
        self.tb = _open_tensorboard(state.run.path, state.cfg.tensorboard, main)
        if main:
            emit(LOG_PREFIX, {
                "event": "start", "steps": state.cfg.steps, "start_step": state.start_step,
                "resumed_from": state.resumed_from, "n_examples": len(state.data),
                "processes": state.world, "collections": state.collections,
                "truncated_inputs": state.data.truncated_inputs,
                "truncated_targets": state.data.truncated_targets,
                "packing": state.pack_preview})
        self.bar = tqdm(total=state.cfg.steps, initial=state.start_step, desc="train",
                        unit="step", disable=not (progress and main), file=sys.stderr)
        self.file = open(self.path, "a", encoding="utf-8") if main else None  # noqa: SIM115

    def step(self, result: StepResult) -> None:
        state = self.state
        state.non_pad_tokens += result.non_pad_tokens
        state.token_slots += result.token_slots
        if state.main:
            rec = self.record(result)
            state.history.append(rec)
            self.file.write(json.dumps(rec) + "\n")
            self.file.flush()
            if state.step % state.cfg.log_every == 0 or state.step == state.cfg.steps:
                emit(LOG_PREFIX, rec)
            if self.tb is not None:
                for key in ("loss", "tokens_per_s", "non_pad_fraction"):
                    self.tb.add_scalar(f"train/{key}", rec[key], state.step)
            self.bar.set_postfix(loss=f"{result.loss:.4f}")
        self.bar.update(1)

    def record(self, result: StepResult) -> dict[str, Any]:
        state = self.state
        rec: dict[str, Any] = {
            "step": state.step, "loss": result.loss, "lr": state.cfg.lr,
            "target_tokens": result.target_tokens, "non_pad_tokens": result.non_pad_tokens,
            "token_slots": result.token_slots,
            "non_pad_fraction": result.non_pad_tokens / result.token_slots,
            "tokens_per_s": result.non_pad_tokens / result.seconds, "seconds": result.seconds,
            "cpu_seconds": result.cpu_seconds, "epoch": state.position["epoch"]}
        if result.grad_norm is not None:
            rec["grad_norm"] = result.grad_norm
        names, totals = state.collections, result.collection_totals
        k = len(names)
        cnt = totals[k:2 * k]
        if float(cnt.sum()) > 0:
            rec["collection_loss"] = {c: float(totals[i] / cnt[i]) for i, c in enumerate(names)
                                      if float(cnt[i]) > 0}
        return rec

    def close(self) -> None:
        self.bar.close()
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()
