"""The Flan finetuning loop (Chung et al. 2022, section 2.2 and Table 22).

Same recipe for every model: Adafactor with a constant learning rate, dropout re-enabled, packed
examples with masking across example boundaries, a global batch of packed rows. Only the learning
rate, batch size, dropout and number of steps change between model sizes (params/flan-*.yaml).

One loop serves 1..N processes: it runs under ``accelerate.Accelerator`` both as
``python -m flan_nb.train PARAMS.yaml`` and as ``accelerate launch -m flan_nb.train PARAMS.yaml``
(DDP, FSDP, DeepSpeed configs in params/accelerate/). Notebook 02 calls ``launch()``
which runs that command as a subprocess and streams its log.

Loss normalization: every process sums the token cross-entropy of its micro-batches (packed_loss
returns the sum) and divides by the number of target tokens in the whole *global* batch of the
optimizer step. Every process derives the global batch from the same seed, so it can count those
tokens itself without communication. The gradient is then exactly d(sum of token losses)/d(theta) /
(global target tokens), independent of the number of processes and of gradient accumulation --
the T5X convention (a mean over the real target tokens of the step, not a mean of per-batch means).

Data order: the mixture is tokenized once, shuffled per epoch with numpy's generator seeded by
(seed, epoch), packed in windows of PACK_WINDOW examples, the rows of each window shuffled again
(packers emit them longest first), and consumed row by row; an exhausted epoch starts the next. The data position (epoch, row in epoch) is part of every checkpoint.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flan_nb import config
from flan_nb.train import checkpoints
from flan_nb.train.model_init import load_init_checkpoint, set_dropout
from flan_nb.train.params import (
    SUMMARY_PREFIX,
    TRAJECTORY_FIELDS,
    TrainError,
    TrainingDiverged,
    TrainParams,
    check_params,
    params_where,
    resolve_precision,
)
from flan_nb.train.periodic_eval import maybe_evaluate
from flan_nb.train.stream import (
    Row,
    RowStream,
    TokenizedMixture,
    load_mixture,
    packing_preview,
    tokenize_mixture,
)
from flan_nb.train.train_log import TrainLog, emit

# ---------------------------------------------------------------------------------------------
# The loop


def _slice_batch(batch: Mapping[str, Any], start: int, stop: int) -> dict[str, Any]:
    return {k: v[start:stop] for k, v in batch.items()}


def _batch_counts(batch: Mapping[str, Any], kind: str) -> tuple[int, int, int]:
    """(target tokens, non-pad tokens, token slots) of a collated packed batch."""
    from flan_nb.train.packing import IGNORE_INDEX

    n_target = int((batch["labels"] != IGNORE_INDEX).sum())
    if kind == "seq2seq":
        enc, dec = batch["encoder_segment_ids"], batch["decoder_segment_ids"]
        return n_target, int((enc > 0).sum() + (dec > 0).sum()), int(enc.numel() + dec.numel())
    seg = batch["segment_ids"]
    return n_target, int((seg > 0).sum()), int(seg.numel())


def params_fingerprint(cfg: TrainParams) -> str:
    from flan_nb import runs

    return runs.params_hash({k: getattr(cfg, k) for k in TRAJECTORY_FIELDS})


def resolve_mixture_path(cfg: TrainParams, run: Any) -> Path:
    if cfg.mixture_path:
        return config.resolve_path(cfg.mixture_path)
    return config.resolve_path(run.output("mixture_path"))


@dataclass
class TrainState:
    """What one training run holds between optimizer steps (one per process)."""

    cfg: TrainParams
    run: Any
    accelerator: Any
    loaded: Any  # models.LoadedModel: the unwrapped model, its tokenizer and kind
    model: Any  # packed_forward.PackedLM, prepared by accelerate
    optimizer: Any
    data: TokenizedMixture
    stream: RowStream
    mixture: Path
    ckpt_root: Path
    fingerprint: str
    collate_ids: dict[str, int]
    start_step: int = 0
    step: int = 0
    position: dict[str, int] = field(default_factory=lambda: {"epoch": 0, "row_in_epoch": 0})
    resumed_from: str | None = None
    pack_preview: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    non_pad_tokens: int = 0
    token_slots: int = 0

    @property
    def main(self) -> bool:
        return bool(self.accelerator.is_main_process)

    @property
    def world(self) -> int:
        return int(self.accelerator.num_processes)

    @property
    def collections(self) -> list[str]:
        return sorted(set(self.data.collections))

    def checkpoint_meta(self, position: Mapping[str, int] | None = None) -> dict[str, Any]:
        return {"position": dict(position or self.position), "params_fingerprint": self.fingerprint,
                "model_fingerprint": self.loaded.fingerprint}


@dataclass
class StepResult:
    """One optimizer step: mean loss per target token, token counts, per-collection sums."""

    loss: float
    target_tokens: int
    non_pad_tokens: int
    token_slots: int
    collection_totals: Any  # float64 tensor [2 * collections]: loss sums, then token counts
    grad_norm: float | None
    seconds: float
    cpu_seconds: float


def train(cfg: TrainParams, run: Any, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) training in this process group; returns the summary (main process).

    Raises `TrainError` / `config.ParamsError` before any work on a bad value, and
    `TrainingDiverged` (after saving the state before the bad step) on a NaN/inf loss.
    """
    state = start(cfg, run, progress=progress)
    log = TrainLog(state, progress=progress)
    try:
        while state.step < cfg.steps:
            rows, batch, counts = next_batch(state)
            result = optimizer_step(state, rows, batch, counts)
            log.step(result)
            maybe_checkpoint(state)
            maybe_evaluate(state)
    finally:
        log.close()
    return finish(state)


def _accelerator(cfg: TrainParams) -> Any:
    import torch
    from accelerate import Accelerator

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # accelerate keeps one global state per process; a second in-process train() (tests,
        # the benchmark after HF Trainer) with another precision would be refused otherwise
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision={"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[
            resolve_precision(cfg.precision)],
        # without CUDA, cpu=True is what turns a torchrun/accelerate multi-process launch into
        # gloo DDP (MULTI_CPU) instead of N independent single-process runs
        cpu=not torch.cuda.is_available(),
    )


def _load_model(cfg: TrainParams, world: int) -> Any:
    """The model to finetune, from `model` (+ `init_checkpoint`), dropout set, checks done."""
    from accelerate.utils import set_seed

    from flan_nb import models

    set_seed(cfg.seed)
    loaded = models.load(cfg.model, dtype="float32", device="cpu")
    check_params(cfg, kind=loaded.kind, num_processes=world)
    if cfg.init_checkpoint:
        load_init_checkpoint(loaded.model, cfg.init_checkpoint)
    set_dropout(loaded.model, cfg.dropout)
    if cfg.gradient_checkpointing:
        if not getattr(loaded.model, "supports_gradient_checkpointing", False):
            raise config.ParamsError(f"parameter `gradient_checkpointing`{params_where(cfg)}: "
                                     f"{type(loaded.model).__name__} does not support it")
        loaded.model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False})
    if loaded.kind == "causal" and cfg.input_len > loaded.max_context:
        raise config.ParamsError(f"parameter `input_len`{params_where(cfg)}: {cfg.input_len} "
                                 f"exceeds the model's context length {loaded.max_context}")
    return loaded


def start(cfg: TrainParams, run: Any, *, progress: bool = True) -> TrainState:
    """Accelerator, data, model and optimizer, resumed from the latest valid checkpoint."""
    from transformers.optimization import Adafactor

    from flan_nb.train import packed_forward

    check_params(cfg)  # ranges first: nothing below should start on a bad value
    accelerator = _accelerator(cfg)
    mixture = resolve_mixture_path(cfg, run)
    # cheap checks before the (possibly multi-GB) model load
    check_params(cfg, num_processes=accelerator.num_processes)
    if cfg.init_checkpoint and not config.resolve_path(cfg.init_checkpoint).exists():
        raise TrainError(f"init_checkpoint {config.resolve_path(cfg.init_checkpoint)} does not "
                         f"exist{params_where(cfg)}")
    ds = load_mixture(mixture, cfg.max_examples)
    loaded = _load_model(cfg, accelerator.num_processes)
    data = tokenize_mixture(ds, loaded.tokenizer, kind=loaded.kind, input_len=cfg.input_len,
                            target_len=cfg.target_len, truncation=cfg.truncation,
                            progress=progress and accelerator.is_main_process)
    loaded.model.train()
    # DDP/FSDP/DeepSpeed only see gradients right when *their* forward runs; packed_forward calls
    # the encoder/decoder submodules directly, so the wrapped module is the loss itself.
    model = packed_forward.PackedLM(loaded.model)
    optimizer = Adafactor(model.parameters(), lr=cfg.lr,
                          scale_parameter=cfg.adafactor_scale_parameter, relative_step=False,
                          warmup_init=False)
    model, optimizer = accelerator.prepare(model, optimizer)
    collate_ids = {"pad_token_id": int(getattr(loaded.tokenizer, "pad_token_id", None) or 0)}
    if loaded.kind == "seq2seq":
        collate_ids["decoder_start_token_id"] = int(
            getattr(loaded.model.config, "decoder_start_token_id", None) or 0)
    state = TrainState(cfg, run, accelerator, loaded, model, optimizer, data, stream=None,  # type: ignore[arg-type]
                       mixture=mixture, ckpt_root=run.artifacts / "checkpoints",
                       fingerprint=params_fingerprint(cfg), collate_ids=collate_ids)
    _resume(state)
    state.stream = RowStream(data, kind=loaded.kind, input_len=cfg.input_len,
                             target_len=cfg.target_len, method=cfg.packing, seed=cfg.seed,
                             epoch=int(state.position["epoch"]),
                             row_in_epoch=int(state.position["row_in_epoch"]))
    if state.main:
        state.pack_preview = packing_preview(data, kind=loaded.kind, input_len=cfg.input_len,
                                             target_len=cfg.target_len, method=cfg.packing,
                                             seed=cfg.seed)
    return state


def _resume(state: TrainState) -> None:
    """Load the latest complete checkpoint of this run, if any (same trajectory params only)."""
    accelerator, ckpt_root = state.accelerator, state.ckpt_root
    if state.main:
        checkpoints.clean_partial(ckpt_root)
    accelerator.wait_for_everyone()
    last = checkpoints.latest(ckpt_root)
    meta = last.meta() if last is not None else {}
    if last is not None and meta.get("params_fingerprint") != state.fingerprint \
            and str(state.run.run_id).startswith("scratch-"):
        # interactive scratch runs are overwritten by design: new params = start afresh
        accelerator.wait_for_everyone()
        if state.main:
            print(f"scratch run: params changed, discarding checkpoints in {ckpt_root}",
                  file=sys.stderr)
            shutil.rmtree(ckpt_root, ignore_errors=True)
        accelerator.wait_for_everyone()
        last = None
    if last is None:
        return
    if meta.get("params_fingerprint") != state.fingerprint:
        raise TrainError(
            f"checkpoint {last.path} was written with different training params "
            f"({', '.join(TRAJECTORY_FIELDS)} must match to resume); use another run_dir or "
            f"delete {ckpt_root}")
    checkpoints.load(accelerator, last)
    state.start_step = state.step = int(meta["step"])
    state.position, state.resumed_from = meta["position"], str(last.path)


def next_batch(state: TrainState) -> tuple[list[Row], dict[str, Any], tuple[int, int, int]]:
    """The next global batch: packed rows, collated, and its (target, non-pad, slot) counts."""
    from flan_nb.train import packing

    rows = state.stream.take(state.cfg.batch_size)
    batch = packing.collate([r.packed for r in rows], state.loaded.kind, **state.collate_ids)
    counts = _batch_counts(batch, state.loaded.kind)
    if counts[0] == 0:
        raise TrainError(f"step {state.step + 1}: the global batch has no target tokens")
    return rows, batch, counts


def optimizer_step(state: TrainState, rows: Sequence[Row], batch: Mapping[str, Any],
                   counts: tuple[int, int, int]) -> StepResult:
    """Forward/backward over this process's micro-batches, then one Adafactor step.

    The gradient is (sum of token losses) / (target tokens of the global batch), whatever the
    number of processes and accumulation steps (see the module docstring).
    """
    import torch

    from flan_nb.train import packed_forward

    cfg, accelerator, model = state.cfg, state.accelerator, state.model
    t0, c0 = time.perf_counter(), time.process_time()
    n_target, world, names = counts[0], state.world, state.collections
    per_proc = cfg.batch_size // world
    micro = per_proc // cfg.grad_accum
    rank = accelerator.process_index
    local = _slice_batch(batch, rank * per_proc, (rank + 1) * per_proc)
    local_rows = rows[rank * per_proc:(rank + 1) * per_proc]
    loss_sum_local = torch.zeros((), dtype=torch.float64)
    coll = torch.zeros(2 * len(names), dtype=torch.float64)  # loss sums, then token counts
    want_segments = (state.step + 1) % cfg.log_every == 0
    for m in range(cfg.grad_accum):
        mb = {k: v.to(accelerator.device)
              for k, v in _slice_batch(local, m * micro, (m + 1) * micro).items()}
        with accelerator.accumulate(model), accelerator.autocast():
            if want_segments:
                loss_sum, seg_sums, seg_counts = packed_forward.packed_segment_losses(model, mb)
            else:
                loss_sum, _ = packed_forward.packed_loss(model, mb)
            # accelerate divides by grad_accum and DDP averages over processes: undo
            # both so the gradient is (sum of token losses) / (global target tokens)
            accelerator.backward(loss_sum * (world * cfg.grad_accum / n_target))
        loss_sum_local += loss_sum.detach().double().cpu()
        if want_segments:
            _add_collection_losses(coll, seg_sums, seg_counts,
                                   local_rows[m * micro:(m + 1) * micro],
                                   state.data.collections, names)
    totals = accelerator.reduce(torch.cat([loss_sum_local.view(1), coll]).to(accelerator.device),
                                reduction="sum").cpu()
    loss = float(totals[0]) / n_target
    if not math.isfinite(loss):
        _diverged(state, loss)
    grad_norm = None
    if cfg.clip_grad_norm > 0:
        grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm))
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.position = state.stream.position()
    return StepResult(loss, n_target, counts[1], counts[2], totals[1:], grad_norm,
                      time.perf_counter() - t0,
                      # CPU seconds of this process: a load-independent cost on shared machines
                      time.process_time() - c0)


def _diverged(state: TrainState, loss: float) -> None:
    step = state.step
    snap = checkpoints.save(
        state.accelerator, state.ckpt_root, step,
        {"position": state.position, "params_fingerprint": state.fingerprint,
         "diverged_at_step": step + 1, "note": "state before the diverged step"},
        name=f"diverged_step_{step + 1:06d}")
    raise TrainingDiverged(
        f"loss is {loss} at step {step + 1}; training stopped. The state before that "
        f"step is in {snap}. Lower lr, use fp32, or check the data of this step.",
        step + 1, str(snap))


def maybe_checkpoint(state: TrainState) -> None:
    """A checkpoint every `checkpoint_every` steps (the final step is saved by finish())."""
    cfg = state.cfg
    if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < cfg.steps:
        checkpoints.save(state.accelerator, state.ckpt_root, state.step, state.checkpoint_meta(),
                         keep_last_k=cfg.keep_last_k)


def finish(state: TrainState) -> dict[str, Any]:
    """Final checkpoint and weights, `train/summary.json` and the `train` metrics."""
    cfg, run, accelerator = state.cfg, state.run, state.accelerator
    # The final step is a checkpoint too, so rerunning a finished command is a no-op resume.
    if state.start_step < cfg.steps or checkpoints.latest(state.ckpt_root) is None:
        checkpoints.save(accelerator, state.ckpt_root, state.step,
                         state.checkpoint_meta(state.stream.position()),
                         keep_last_k=cfg.keep_last_k)
    final_dir = run.artifacts / "checkpoint" / "final"
    _save_final(accelerator, state.model, state.loaded, final_dir)
    summary: dict[str, Any] = {}
    if state.main:
        summary = _summary(state, final_dir)
        run.write_json("train/summary.json", summary)
        run.record_output("checkpoint_path", str(final_dir))
        run.write_metrics("train", {k: summary[k] for k in (
            "final_loss", "final_loss_avg10", "steps", "packing_efficiency", "tokens_per_s",
            "n_examples", "truncated_inputs", "truncated_targets", "processes")})
        emit(SUMMARY_PREFIX, summary)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def _summary(state: TrainState, final_dir: Path) -> dict[str, Any]:
    history, data, cfg = state.history, state.data, state.cfg
    losses = [r["loss"] for r in history if "loss" in r]
    tail = losses[-10:]
    recent = history[-20:]
    return {
        "steps": state.step, "final_loss": losses[-1] if losses else None,
        "final_loss_avg10": sum(tail) / len(tail) if tail else None,
        "first_loss": losses[0] if losses else None,
        "packing_efficiency": (state.non_pad_tokens / state.token_slots
                               if state.token_slots else None),
        "packing_preview": state.pack_preview,
        "tokens_per_s": (sum(r["non_pad_tokens"] for r in recent)
                         / max(1e-9, sum(r["seconds"] for r in recent))) if history else None,
        "n_examples": len(data), "truncated_inputs": data.truncated_inputs,
        "truncated_targets": data.truncated_targets, "epochs_started": state.stream.epoch + 1, "mixture_repeated": state.stream.epoch > 0,
        "processes": state.world, "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum,
        "precision": resolve_precision(cfg.precision),
        "resumed_from": state.resumed_from, "checkpoint_path": str(final_dir),
        "mixture_path": str(state.mixture), "model": cfg.model, "kind": state.loaded.kind,
        "train_log": str(state.run.path / "train_log.jsonl"),
    }


def _add_collection_losses(coll: Any, seg_sums: Any, seg_counts: Any, rows: Sequence[Row],
                           collections: Sequence[str], names: Sequence[str]) -> None:
    """Attribute per-segment loss sums to the collection of the example in that segment.

    seg_sums/seg_counts are [rows, segments] with segment j = the j-th example packed in the row
    (segment id j+1), the order PackedRow lists its examples in; `coll` holds the loss sums of
    `names` followed by their token counts.
    """
    index = {c: i for i, c in enumerate(names)}
    k = len(names)
    sums, counts = seg_sums.detach().double().cpu(), seg_counts.detach().double().cpu()
    for r, row in enumerate(rows):
        for j, ex in enumerate(row.examples):
            if j < sums.shape[1]:
                ci = index[collections[ex]]
                coll[ci] += sums[r, j]
                coll[k + ci] += counts[r, j]


def _save_final(accelerator: Any, model: Any, loaded: Any, path: Path) -> None:
    """The final weights via models.save (gathered first under FSDP/DeepSpeed)."""
    from flan_nb import models

    accelerator.wait_for_everyone()
    state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model).model
        full = {k[len("model."):]: v.detach().to("cpu") for k, v in state.items()
                if k.startswith("model.")}
        unwrapped.load_state_dict(full, strict=False)
        tmp = path.with_name(path.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        loaded.model = unwrapped
        models.save(loaded, tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    accelerator.wait_for_everyone()
