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

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flan_nb import checkpoints, config

NOTEBOOK = "02_finetune"
LOG_PREFIX = "FLAN_NB_LOG "
SUMMARY_PREFIX = "FLAN_NB_SUMMARY "
# Examples packed together at once: large enough for best-fit to find partners, small enough that
# re-deriving the data position on resume costs seconds.
PACK_WINDOW = 4096
EXIT_DIVERGED = 3
PRECISIONS = ("fp32", "bf16", "fp16")
ACCELERATE_CONFIGS = ("single_device", "ddp", "fsdp_t5", "deepspeed_zero3")


@dataclass(frozen=True)
class TrainParams:
    """The parameters cell of notebooks/02_finetune.ipynb (names and types must match)."""

    model: str                 # models.load spec: builtin:tiny-t5, a hub id, a local dir, a .gguf
    init_checkpoint: str       # "" = the spec's own weights; else a saved model / checkpoint dir
    mixture_path: str          # "" = the run's output `mixture_path` (from 01_data_mixing)
    max_examples: int          # 0 = the whole mixture
    steps: int
    batch_size: int            # GLOBAL, in packed rows (the paper's batch size)
    grad_accum: int            # micro-batches per optimizer step on each process
    lr: float                  # constant (Adafactor, no warmup, no decay)
    # Adafactor's parameter scaling (lr x RMS of each weight). T5X's default is on
    # (multiply_by_parameter_scale=True), so the paper's LRs likely assume it; off = HF's usual
    # T5 finetuning setting. The two give very different effective step sizes.
    adafactor_scale_parameter: bool
    dropout: float
    gradient_checkpointing: bool  # recompute activations per block (needed for XL/XXL at 2048)
    input_len: int             # encoder length; decoder-only: the one sequence length
    target_len: int            # decoder length (ignored for decoder-only models)
    packing: str               # packing.pack method
    truncation: str            # truncate | error, for inputs/targets longer than their length
    clip_grad_norm: float      # 0 = off (the paper does not clip)
    precision: str             # fp32 | bf16 (fp16 refused for T5: activations overflow)
    checkpoint_every: int      # 0 = only the final checkpoint
    keep_last_k: int           # 0 = keep every checkpoint
    log_every: int
    seed: int
    num_processes: int         # used by launch() (the notebook); the CLI takes it from accelerate
    accelerate_config: str     # "" | a name in params/accelerate | a yaml path
    tensorboard: bool          # also log to <run>/train/tensorboard when tensorboard is installed
    run_dir: str
    params_file: str


# Mirrors the parameters cell of notebooks/02_finetune.ipynb (tests check they agree); used when
# the CLI runs without the notebooks directory next to it.
DEFAULTS: dict[str, Any] = {
    "model": "builtin:micro-t5", "init_checkpoint": "", "mixture_path": "", "max_examples": 0,
    "steps": 30, "batch_size": 8, "grad_accum": 1, "lr": 1e-3, "adafactor_scale_parameter": False,
    "dropout": 0.05,
    "gradient_checkpointing": False,
    "input_len": 256, "target_len": 64, "packing": "best_fit", "truncation": "truncate",
    "clip_grad_norm": 0.0, "precision": "fp32", "checkpoint_every": 20, "keep_last_k": 2,
    "log_every": 1, "seed": 0, "num_processes": 1, "accelerate_config": "", "tensorboard": False,
    "run_dir": "", "params_file": "",
}

# Settings that change the trajectory: resuming under different values would silently mix runs.
TRAJECTORY_FIELDS = ("model", "init_checkpoint", "mixture_path", "max_examples", "batch_size",
                     "lr", "adafactor_scale_parameter", "dropout", "input_len", "target_len", "packing", "truncation",
                     "clip_grad_norm", "precision", "seed")


class TrainError(RuntimeError):
    """Training cannot start or failed; the message says what and where."""


class TrainingDiverged(TrainError):
    """A NaN/inf loss; a snapshot of the state before the bad step was saved."""

    def __init__(self, message: str, step: int, checkpoint: str):
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint


# ---------------------------------------------------------------------------------------------
# Validation


def _where(cfg: TrainParams) -> str:
    return f" (params file {cfg.params_file}, notebook {NOTEBOOK})" if cfg.params_file else \
        f" (notebook {NOTEBOOK})"


def check_params(cfg: TrainParams, *, kind: str | None = None,
                 num_processes: int | None = None) -> None:
    """Range checks the type checker cannot do; raise config.ParamsError naming the key."""
    from flan_nb.packing import METHODS, TRUNCATION

    where = _where(cfg)

    def bad(key: str, why: str) -> config.ParamsError:
        return config.ParamsError(f"parameter `{key}`{where}: {why}, got {getattr(cfg, key)!r}")

    for key in ("steps", "batch_size", "grad_accum", "input_len", "log_every", "num_processes"):
        if getattr(cfg, key) < 1:
            raise bad(key, "must be >= 1")
    for key in ("max_examples", "checkpoint_every", "keep_last_k"):
        if getattr(cfg, key) < 0:
            raise bad(key, "must be >= 0")
    if not cfg.lr > 0:
        raise bad("lr", "must be > 0")
    if not 0.0 <= cfg.dropout < 1.0:
        raise bad("dropout", "must be in [0, 1)")
    if cfg.clip_grad_norm < 0:
        raise bad("clip_grad_norm", "must be >= 0 (0 = off)")
    if cfg.truncation not in TRUNCATION:
        raise bad("truncation", f"must be one of {', '.join(TRUNCATION)}")
    if cfg.precision not in PRECISIONS:
        raise bad("precision", f"must be one of {', '.join(PRECISIONS)}")
    if cfg.packing not in METHODS:
        raise bad("packing", f"must be one of {', '.join(METHODS)}")
    if kind == "seq2seq":
        if cfg.target_len < 1:
            raise bad("target_len", "must be >= 1 for an encoder-decoder model")
        if cfg.precision == "fp16":
            raise config.ParamsError(
                f"parameter `precision`{where}: fp16 is refused for T5/encoder-decoder models: "
                "T5 activations overflow float16 (inf/NaN loss); use bf16 (or fp32)")
    n = num_processes or 1
    if cfg.batch_size % (n * cfg.grad_accum):
        raise config.ParamsError(
            f"parameter `batch_size`{where}: the global batch {cfg.batch_size} must be divisible "
            f"by processes x grad_accum = {n} x {cfg.grad_accum} = {n * cfg.grad_accum}")


def params_from_file(params_file: str | os.PathLike[str], *, run_dir: str = "") -> TrainParams:
    """The 02_finetune section of a params file over the notebook defaults, validated."""
    params_file = str(params_file)
    params = config.load_params_file(params_file)
    section = config.notebook_section(params, NOTEBOOK, params_file)
    for key in ("run_dir", "params_file"):
        if key in section:
            raise config.ParamsError(f"`{key}` in section {NOTEBOOK} of params file {params_file} "
                                     "is set by the runner; remove it")
    config.check_values(TrainParams, section, params_file=params_file, notebook=NOTEBOOK,
                        require_all=False)
    values = {**notebook_defaults(), **section, "run_dir": run_dir, "params_file": params_file}
    return TrainParams(**config.check_values(TrainParams, values, params_file=params_file,
                                             notebook=NOTEBOOK))


def notebook_defaults() -> dict[str, Any]:
    """The notebook's parameters cell when the notebook is present, else DEFAULTS."""
    path = config.project_root() / "notebooks" / f"{NOTEBOOK}.ipynb"
    if path.is_file():
        try:
            return config.parameters_cell(path)
        except config.ParamsError:
            pass
    return dict(DEFAULTS)


# ---------------------------------------------------------------------------------------------
# Data: tokenize, truncate, pack, iterate


@dataclass
class TokenizedMixture:
    inputs: list[list[int]]
    targets: list[list[int]]
    collections: list[str]
    truncated_inputs: int
    truncated_targets: int

    def __len__(self) -> int:
        return len(self.inputs)


def load_mixture(path: str | os.PathLike[str], max_examples: int = 0):
    """The mixture as a datasets.Dataset, checked for the columns and rows training needs."""
    import datasets

    path = Path(path)
    if not path.exists():
        raise TrainError(f"mixture {path} does not exist (from mixture_path / run output "
                         "`mixture_path`)")
    empty_msg = (f"mixture {path} is empty: 0 examples; check the 01_data_mixing parameters "
                 "(preset, proportions, max examples per task)")
    state = path / "state.json"
    if state.is_file() and json.loads(state.read_text(encoding="utf-8")).get("_data_files") == []:
        raise TrainError(empty_msg)  # datasets cannot even load a 0-shard dataset it saved
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - any load failure is a bad path for the user
        raise TrainError(f"mixture {path} is not a datasets directory: {exc}") from exc
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise TrainError(f"mixture {path} is a DatasetDict without a `train` split")
        ds = ds["train"]
    missing = [c for c in ("inputs", "targets") if c not in ds.column_names]
    if missing:
        raise TrainError(f"mixture {path} lacks column(s) {', '.join(missing)} "
                         f"(has {', '.join(ds.column_names)})")
    if len(ds) == 0:
        raise TrainError(empty_msg)
    if max_examples and len(ds) > max_examples:
        ds = ds.select(range(max_examples))
    return ds


def _eos_id(tokenizer: Any) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise TrainError(f"tokenizer {type(tokenizer).__name__} has no eos_token_id; packing "
                         "needs EOS between examples")
    return int(eos)


def tokenize_mixture(ds: Any, tokenizer: Any, *, kind: str, input_len: int, target_len: int,
                     truncation: str, chunk: int = 1000, progress: bool = True
                     ) -> TokenizedMixture:
    """Token ids with EOS, truncated (and counted) or rejected per the truncation policy.

    seq2seq: inputs+EOS (<= input_len) and targets+EOS (<= target_len); truncation keeps the
    head and re-appends EOS. causal: inputs and targets+EOS must fit input_len together; the
    input loses tokens from its *front* (instructions and few-shot exemplars come first, the
    question last), then the target is cut.
    """
    from tqdm.auto import tqdm

    eos = _eos_id(tokenizer)
    # causal rows: BOS starts each packed example, so every target has a prompt to follow
    bos_id = getattr(tokenizer, "bos_token_id", None)
    bos = [int(bos_id)] if kind == "causal" and bos_id is not None else []
    cols = ds.column_names
    inputs: list[list[int]] = []
    targets: list[list[int]] = []
    collections: list[str] = []
    n_trunc_in = n_trunc_tgt = 0
    bar = tqdm(total=len(ds), desc="tokenize mixture", unit="ex", disable=not progress,
               file=sys.stderr)
    for start in range(0, len(ds), chunk):
        part = ds[start:start + chunk]
        tgt_texts = list(part["targets"])
        if kind == "causal":
            # tokenized apart, so restore the word boundary a joint tokenization would keep
            tgt_texts = [t if (i and i[-1:].isspace()) or t[:1].isspace() else " " + t
                         for i, t in zip(part["inputs"], tgt_texts)]
        enc_in = tokenizer(list(part["inputs"]), add_special_tokens=False)["input_ids"]
        enc_tgt = tokenizer(tgt_texts, add_special_tokens=False)["input_ids"]
        for j, (inp, tgt) in enumerate(zip(enc_in, enc_tgt)):
            idx = start + j
            if kind == "seq2seq":
                inp, tgt = list(inp) + [eos], list(tgt) + [eos]
                if len(inp) > input_len:
                    _too_long(truncation, "input", len(inp), input_len, ds, idx, cols)
                    inp, n_trunc_in = inp[:input_len - 1] + [eos], n_trunc_in + 1
                if len(tgt) > target_len:
                    _too_long(truncation, "target", len(tgt), target_len, ds, idx, cols)
                    tgt, n_trunc_tgt = tgt[:target_len - 1] + [eos], n_trunc_tgt + 1
            else:
                inp, tgt = bos + list(inp), list(tgt) + [eos]
                if len(tgt) > input_len - 1:
                    _too_long(truncation, "target", len(tgt), input_len - 1, ds, idx, cols)
                    tgt, n_trunc_tgt = tgt[:input_len - 2] + [eos], n_trunc_tgt + 1
                if len(inp) + len(tgt) > input_len:
                    _too_long(truncation, "input", len(inp) + len(tgt), input_len, ds, idx, cols)
                    keep = max(0, input_len - len(tgt) - len(bos))  # prompt tokens kept
                    body = inp[len(bos):]
                    inp = bos + (body[len(body) - keep:] if keep else [])
                    n_trunc_in += 1
                if not inp:  # keep one prompt token so the target is predicted from something
                    inp, tgt = [eos], tgt[:input_len - 1]
            inputs.append(inp)
            targets.append(tgt)
        coll = part["collection"] if "collection" in cols else ["all"] * len(enc_in)
        collections.extend(str(c) for c in coll)
        bar.update(len(enc_in))
    bar.close()
    return TokenizedMixture(inputs, targets, collections, n_trunc_in, n_trunc_tgt)


def _too_long(policy: str, what: str, length: int, limit: int, ds: Any, idx: int,
              cols: Sequence[str]) -> None:
    if policy == "truncate":
        return
    row = ds[idx]
    ident = ", ".join(f"{k}={row[k]!r}" for k in ("example_id", "task", "collection") if k in cols)
    key = "input_len" if what == "input" else "target_len"
    raise TrainError(
        f"mixture example #{idx} ({ident}): {what} has {length} tokens with EOS, more than "
        f"{key}={limit}; raise {key} or set truncation: truncate")


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    import numpy as np

    return np.random.default_rng([seed, epoch]).permutation(n).tolist()


@dataclass
class Row:
    """A packed row plus which mixture examples (global indices) it holds."""

    packed: Any
    examples: list[int]


def packing_preview(data: TokenizedMixture, *, kind: str, input_len: int, target_len: int,
                    method: str, seed: int) -> dict[str, Any]:
    """pack_stats of the first packing window with `method` and with one example a row."""
    from flan_nb import packing

    win = epoch_order(len(data), seed, 0)[:PACK_WINDOW]
    pairs = [(data.inputs[i], data.targets[i]) for i in win]
    tlen = target_len if kind == "seq2seq" else None
    out = {}
    for name in dict.fromkeys((method, "none")):
        out[name] = packing.pack_stats(packing.pack(pairs, kind=kind, input_len=input_len,
                                                    target_len=tlen, method=name))
    return out


class RowStream:
    """Deterministic infinite stream of packed rows; position = (epoch, rows taken in epoch)."""

    def __init__(self, data: TokenizedMixture, *, kind: str, input_len: int, target_len: int,
                 method: str, seed: int, epoch: int = 0, row_in_epoch: int = 0,
                 window: int = PACK_WINDOW):
        self.data, self.kind, self.seed = data, kind, seed
        self.input_len, self.target_len, self.method, self.window = (
            input_len, target_len, method, window)
        self.epoch, self.row_in_epoch = epoch, 0
        self._it = self._epoch_rows(epoch)
        for _ in range(row_in_epoch):
            self._take_one()

    def _epoch_rows(self, epoch: int) -> Iterator[Row]:
        import numpy as np

        from flan_nb import packing

        order = epoch_order(len(self.data), self.seed, epoch)
        for start in range(0, len(order), self.window):
            win = order[start:start + self.window]
            pairs = [(self.data.inputs[i], self.data.targets[i]) for i in win]
            # tokenize_mixture already applied the truncation policy, so "error" here would
            # only ever fire on a bug
            rows = packing.pack(pairs, kind=self.kind, input_len=self.input_len,
                                target_len=self.target_len if self.kind == "seq2seq" else None,
                                method=self.method, truncation="error")
            # packers emit rows longest-first; shuffle so batches do not sort by length
            perm = np.random.default_rng([self.seed, epoch, start]).permutation(len(rows))
            for i in perm.tolist():
                # PackedRow.example_indices are positions in the window, not in the mixture
                yield Row(rows[i], [win[j] for j in rows[i].example_indices])

    def _take_one(self) -> Row:
        try:
            row = next(self._it)
        except StopIteration:
            if self.row_in_epoch == 0:
                raise TrainError("packing produced no rows from a non-empty mixture") from None
            self.epoch += 1
            self.row_in_epoch = 0
            self._it = self._epoch_rows(self.epoch)
            row = next(self._it)
        self.row_in_epoch += 1
        return row

    def take(self, n: int) -> list[Row]:
        return [self._take_one() for _ in range(n)]

    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "row_in_epoch": self.row_in_epoch}


# ---------------------------------------------------------------------------------------------
# Model set-up


def set_dropout(model: Any, p: float) -> int:
    """Set dropout everywhere: config fields (for save/reload) and the live modules.

    Setting the config alone does nothing to an already built model: nn.Dropout modules keep the
    p they were built with, and attention dropout is read from module attributes.
    """
    import torch

    cfg = getattr(model, "config", None)
    for name in ("dropout_rate", "dropout", "attention_dropout", "hidden_dropout",
                 "attention_probs_dropout_prob", "hidden_dropout_prob", "resid_pdrop",
                 "embd_pdrop", "attn_pdrop"):
        if cfg is not None and hasattr(cfg, name) and isinstance(getattr(cfg, name), float | int):
            setattr(cfg, name, float(p))
    n = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = float(p)
            n += 1
        elif isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = float(p)
            n += 1
    return n


def _weights_files(path: Path) -> list[Path]:
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index).is_file():
            shard_map = json.loads((path / index).read_text())["weight_map"]
            return [path / f for f in sorted(set(shard_map.values()))]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return [path / name]
    return []


def load_init_checkpoint(model: Any, path_value: str) -> Path:
    """Load weights from a saved model / training checkpoint dir; shapes must match the spec."""
    import torch

    path = config.resolve_path(path_value)
    if not path.exists():
        raise TrainError(f"init_checkpoint {path} does not exist")
    files = [path] if path.is_file() else _weights_files(path)
    if not files:
        raise TrainError(f"init_checkpoint {path} holds no model.safetensors / pytorch_model.bin "
                         "(nor a sharded index)")
    state: dict[str, Any] = {}
    for file in files:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state.update(load_file(str(file)))
        else:
            state.update(torch.load(file, map_location="cpu", weights_only=True))
    own = model.state_dict()
    if state and all(k.startswith("model.") for k in state) and not any(k in own for k in state):
        state = {k[len("model."):]: v for k, v in state.items()}  # a flan_nb training checkpoint
    wrong = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
             for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    unknown = [k for k in state if k not in own]
    if wrong or unknown:
        detail = "; ".join(wrong[:5] + [f"unexpected key {k}" for k in unknown[:5]])
        raise TrainError(f"init_checkpoint {path} belongs to a different model shape than "
                         f"`model`: {detail}")
    # tied weights (lm_head = shared embedding) may be stored once; anything else missing is wrong
    ptr_groups: dict[int, list[str]] = {}
    for k, v in own.items():
        ptr_groups.setdefault(v.data_ptr(), []).append(k)
    missing = [k for k in own if k not in state
               and not any(o in state for o in ptr_groups[own[k].data_ptr()])]
    if missing:
        raise TrainError(f"init_checkpoint {path} lacks {len(missing)} weight(s) of the model, "
                         f"e.g. {', '.join(missing[:5])}")
    model.load_state_dict(state, strict=False)
    return path


# ---------------------------------------------------------------------------------------------
# The loop


def _slice_batch(batch: Mapping[str, Any], start: int, stop: int) -> dict[str, Any]:
    return {k: v[start:stop] for k, v in batch.items()}


def _batch_counts(batch: Mapping[str, Any], kind: str) -> tuple[int, int, int]:
    """(target tokens, non-pad tokens, token slots) of a collated packed batch."""
    from flan_nb.packing import IGNORE_INDEX

    n_target = int((batch["labels"] != IGNORE_INDEX).sum())
    if kind == "seq2seq":
        enc, dec = batch["encoder_segment_ids"], batch["decoder_segment_ids"]
        return n_target, int((enc > 0).sum() + (dec > 0).sum()), int(enc.numel() + dec.numel())
    seg = batch["segment_ids"]
    return n_target, int((seg > 0).sum()), int(seg.numel())


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


def _emit(prefix: str, obj: Mapping[str, Any]) -> None:
    print(prefix + json.dumps(obj, default=float), flush=True)


def params_fingerprint(cfg: TrainParams) -> str:
    from flan_nb import runs

    return runs.params_hash({k: getattr(cfg, k) for k in TRAJECTORY_FIELDS})


def resolve_mixture_path(cfg: TrainParams, run: Any) -> Path:
    if cfg.mixture_path:
        return config.resolve_path(cfg.mixture_path)
    return config.resolve_path(run.output("mixture_path"))


def train(cfg: TrainParams, run: Any, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) training in this process group; returns the summary (main process)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers.optimization import Adafactor

    from flan_nb import models, packed_forward, packing

    check_params(cfg)  # ranges first: nothing below should start on a bad value
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # accelerate keeps one global state per process; a second in-process train() (tests,
        # the benchmark after HF Trainer) with another precision would be refused otherwise
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision={"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[cfg.precision],
        # without CUDA, cpu=True is what turns a torchrun/accelerate multi-process launch into
        # gloo DDP (MULTI_CPU) instead of N independent single-process runs
        cpu=not torch.cuda.is_available(),
    )
    main = accelerator.is_main_process
    world = accelerator.num_processes
    mixture = resolve_mixture_path(cfg, run)
    # cheap checks before the (possibly multi-GB) model load
    check_params(cfg, num_processes=world)
    if cfg.init_checkpoint and not config.resolve_path(cfg.init_checkpoint).exists():
        raise TrainError(f"init_checkpoint {config.resolve_path(cfg.init_checkpoint)} does not "
                         f"exist{_where(cfg)}")
    ds = load_mixture(mixture, cfg.max_examples)

    set_seed(cfg.seed)
    loaded = models.load(cfg.model, dtype="float32", device="cpu")
    check_params(cfg, kind=loaded.kind, num_processes=world)
    if cfg.init_checkpoint:
        load_init_checkpoint(loaded.model, cfg.init_checkpoint)
    set_dropout(loaded.model, cfg.dropout)
    if cfg.gradient_checkpointing:
        if not getattr(loaded.model, "supports_gradient_checkpointing", False):
            raise config.ParamsError(f"parameter `gradient_checkpointing`{_where(cfg)}: "
                                     f"{type(loaded.model).__name__} does not support it")
        loaded.model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False})
    if loaded.kind == "causal" and cfg.input_len > loaded.max_context:
        raise config.ParamsError(f"parameter `input_len`{_where(cfg)}: {cfg.input_len} exceeds "
                                 f"the model's context length {loaded.max_context}")

    data = tokenize_mixture(ds, loaded.tokenizer, kind=loaded.kind, input_len=cfg.input_len,
                            target_len=cfg.target_len, truncation=cfg.truncation,
                            progress=progress and main)
    coll_names = sorted(set(data.collections))

    loaded.model.train()
    # DDP/FSDP/DeepSpeed only see gradients right when *their* forward runs; packed_forward calls
    # the encoder/decoder submodules directly, so the wrapped module is the loss itself.
    model = packed_forward.PackedLM(loaded.model)
    optimizer = Adafactor(model.parameters(), lr=cfg.lr,
                          scale_parameter=cfg.adafactor_scale_parameter, relative_step=False,
                          warmup_init=False)
    model, optimizer = accelerator.prepare(model, optimizer)

    ckpt_root = run.artifacts / "checkpoints"
    fingerprint = params_fingerprint(cfg)

    def checkpoint_meta(position: Mapping[str, int]) -> dict[str, Any]:
        return {"position": position, "params_fingerprint": fingerprint,
                "model_fingerprint": loaded.fingerprint}

    start_step, position, resumed_from = 0, {"epoch": 0, "row_in_epoch": 0}, None
    if main:
        checkpoints.clean_partial(ckpt_root)
    accelerator.wait_for_everyone()
    last = checkpoints.latest(ckpt_root)
    meta = last.meta() if last is not None else {}
    if last is not None and meta.get("params_fingerprint") != fingerprint \
            and str(run.run_id).startswith("scratch-"):
        # interactive scratch runs are overwritten by design: new params = start afresh
        accelerator.wait_for_everyone()
        if main:
            print(f"scratch run: params changed, discarding checkpoints in {ckpt_root}",
                  file=sys.stderr)
            shutil.rmtree(ckpt_root, ignore_errors=True)
        accelerator.wait_for_everyone()
        last = None
    if last is not None:
        if meta.get("params_fingerprint") != fingerprint:
            raise TrainError(
                f"checkpoint {last.path} was written with different training params "
                f"({', '.join(TRAJECTORY_FIELDS)} must match to resume); use another run_dir or "
                f"delete {ckpt_root}")
        checkpoints.load(accelerator, last)
        start_step, position, resumed_from = int(meta["step"]), meta["position"], str(last.path)

    stream = RowStream(data, kind=loaded.kind, input_len=cfg.input_len,
                       target_len=cfg.target_len, method=cfg.packing, seed=cfg.seed,
                       epoch=int(position["epoch"]), row_in_epoch=int(position["row_in_epoch"]))

    pack_preview = packing_preview(data, kind=loaded.kind, input_len=cfg.input_len,
                                   target_len=cfg.target_len, method=cfg.packing,
                                   seed=cfg.seed) if main else {}

    log_path = run.path / "train_log.jsonl"
    history = _trim_log(log_path, start_step) if main else []
    if main and start_step == 0 and log_path.exists():
        log_path.unlink()
    tb = _open_tensorboard(run.path, cfg.tensorboard, main)
    if main:
        _emit(LOG_PREFIX, {"event": "start", "steps": cfg.steps, "start_step": start_step,
                           "resumed_from": resumed_from, "n_examples": len(data),
                           "processes": world, "collections": coll_names,
                           "truncated_inputs": data.truncated_inputs,
                           "truncated_targets": data.truncated_targets,
                           "packing": pack_preview})

    collate_ids = {"pad_token_id": int(getattr(loaded.tokenizer, "pad_token_id", None) or 0)}
    if loaded.kind == "seq2seq":
        collate_ids["decoder_start_token_id"] = int(
            getattr(loaded.model.config, "decoder_start_token_id", None) or 0)
    per_proc = cfg.batch_size // world
    micro = per_proc // cfg.grad_accum
    rank = accelerator.process_index
    autocast = accelerator.autocast
    bar = tqdm(total=cfg.steps, initial=start_step, desc="train", unit="step",
               disable=not (progress and main), file=sys.stderr)
    step = start_step
    tot_real = sum(r.get("non_pad_tokens", 0) for r in history)
    tot_slots = sum(r.get("token_slots", 0) for r in history)
    log_file = open(log_path, "a", encoding="utf-8") if main else None  # noqa: SIM115
    try:
        while step < cfg.steps:
            t0, c0 = time.perf_counter(), time.process_time()
            rows = stream.take(cfg.batch_size)
            batch = packing.collate([r.packed for r in rows], loaded.kind, **collate_ids)
            n_target, n_real, n_slots = _batch_counts(batch, loaded.kind)
            if n_target == 0:
                raise TrainError(f"step {step + 1}: the global batch has no target tokens")
            local = _slice_batch(batch, rank * per_proc, (rank + 1) * per_proc)
            local_rows = rows[rank * per_proc:(rank + 1) * per_proc]
            loss_sum_local = torch.zeros((), dtype=torch.float64)
            coll_sum = torch.zeros(len(coll_names), dtype=torch.float64)
            coll_cnt = torch.zeros(len(coll_names), dtype=torch.float64)
            want_segments = (step + 1) % cfg.log_every == 0
            for m in range(cfg.grad_accum):
                mb = {k: v.to(accelerator.device)
                      for k, v in _slice_batch(local, m * micro, (m + 1) * micro).items()}
                with accelerator.accumulate(model), autocast():
                    if want_segments:
                        loss_sum, seg_sums, seg_counts = packed_forward.packed_segment_losses(
                            model, mb)
                    else:
                        loss_sum, _ = packed_forward.packed_loss(model, mb)
                    # accelerate divides by grad_accum and DDP averages over processes: undo
                    # both so the gradient is (sum of token losses) / (global target tokens)
                    accelerator.backward(loss_sum * (world * cfg.grad_accum / n_target))
                loss_sum_local += loss_sum.detach().double().cpu()
                if want_segments:
                    _add_collection_losses(coll_sum, coll_cnt, seg_sums, seg_counts,
                                           local_rows[m * micro:(m + 1) * micro],
                                           data.collections, coll_names)
            totals = accelerator.reduce(
                torch.cat([loss_sum_local.view(1), coll_sum, coll_cnt]).to(accelerator.device),
                reduction="sum").cpu()
            loss = float(totals[0]) / n_target
            if not math.isfinite(loss):
                snap = checkpoints.save(
                    accelerator, ckpt_root, step,
                    {"position": position, "params_fingerprint": fingerprint,
                     "diverged_at_step": step + 1, "note": "state before the diverged step"},
                    name=f"diverged_step_{step + 1:06d}")
                raise TrainingDiverged(
                    f"loss is {loss} at step {step + 1}; training stopped. The state before that "
                    f"step is in {snap}. Lower lr, use fp32, or check the data of this step.",
                    step + 1, str(snap))
            grad_norm = None
            if cfg.clip_grad_norm > 0:
                grad_norm = float(accelerator.clip_grad_norm_(model.parameters(),
                                                              cfg.clip_grad_norm))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            position = stream.position()
            elapsed = time.perf_counter() - t0
            # CPU seconds of this process: a load-independent cost on shared machines
            cpu_elapsed = time.process_time() - c0
            tot_real += n_real
            tot_slots += n_slots
            if main:
                rec = {"step": step, "loss": loss, "lr": cfg.lr, "target_tokens": n_target,
                       "non_pad_tokens": n_real, "token_slots": n_slots,
                       "non_pad_fraction": n_real / n_slots, "tokens_per_s": n_real / elapsed,
                       "seconds": elapsed, "cpu_seconds": cpu_elapsed,
                       "epoch": position["epoch"]}
                if grad_norm is not None:
                    rec["grad_norm"] = grad_norm
                k = len(coll_names)
                cnt = totals[1 + k:1 + 2 * k]
                if float(cnt.sum()) > 0:
                    rec["collection_loss"] = {
                        c: float(totals[1 + i] / cnt[i]) for i, c in enumerate(coll_names)
                        if float(cnt[i]) > 0}
                history.append(rec)
                log_file.write(json.dumps(rec) + "\n")
                log_file.flush()
                if step % cfg.log_every == 0 or step == cfg.steps:
                    _emit(LOG_PREFIX, rec)
                if tb is not None:
                    for key in ("loss", "tokens_per_s", "non_pad_fraction"):
                        tb.add_scalar(f"train/{key}", rec[key], step)
                bar.set_postfix(loss=f"{loss:.4f}")
            bar.update(1)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps:
                checkpoints.save(accelerator, ckpt_root, step, checkpoint_meta(position),
                                 keep_last_k=cfg.keep_last_k)
    finally:
        bar.close()
        if log_file is not None:
            log_file.close()
        if tb is not None:
            tb.close()

    # The final step is a checkpoint too, so rerunning a finished command is a no-op resume.
    if start_step < cfg.steps or checkpoints.latest(ckpt_root) is None:
        checkpoints.save(accelerator, ckpt_root, step, checkpoint_meta(stream.position()),
                         keep_last_k=cfg.keep_last_k)
    final_dir = run.artifacts / "checkpoint" / "final"
    _save_final(accelerator, model, loaded, final_dir)
    summary: dict[str, Any] = {}
    if main:
        losses = [r["loss"] for r in history if "loss" in r]
        tail = losses[-10:]
        summary = {
            "steps": step, "final_loss": losses[-1] if losses else None,
            "final_loss_avg10": sum(tail) / len(tail) if tail else None,
            "first_loss": losses[0] if losses else None,
            "packing_efficiency": tot_real / tot_slots if tot_slots else None,
            "packing_preview": pack_preview,
            "tokens_per_s": (sum(r["non_pad_tokens"] for r in history[-20:])
                             / max(1e-9, sum(r["seconds"] for r in history[-20:])))
            if history else None,
            "n_examples": len(data), "truncated_inputs": data.truncated_inputs,
            "truncated_targets": data.truncated_targets, "epochs_started": stream.epoch + 1,
            "processes": world, "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum,
            "resumed_from": resumed_from, "checkpoint_path": str(final_dir),
            "mixture_path": str(mixture), "model": cfg.model, "kind": loaded.kind,
            "train_log": str(log_path),
        }
        run.write_json("train/summary.json", summary)
        run.record_output("checkpoint_path", str(final_dir))
        run.write_metrics("train", {k: summary[k] for k in (
            "final_loss", "final_loss_avg10", "steps", "packing_efficiency", "tokens_per_s",
            "n_examples", "truncated_inputs", "truncated_targets", "processes")})
        _emit(SUMMARY_PREFIX, summary)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def _add_collection_losses(coll_sum: Any, coll_cnt: Any, seg_sums: Any, seg_counts: Any,
                           rows: Sequence[Row], collections: Sequence[str],
                           names: Sequence[str]) -> None:
    """Attribute per-segment loss sums to the collection of the example in that segment.

    seg_sums/seg_counts are [rows, segments] with segment j = the j-th example packed in the row
    (segment id j+1), the order PackedRow lists its examples in.
    """
    index = {c: i for i, c in enumerate(names)}
    sums, counts = seg_sums.detach().double().cpu(), seg_counts.detach().double().cpu()
    for r, row in enumerate(rows):
        for j, ex in enumerate(row.examples):
            if j < sums.shape[1]:
                ci = index[collections[ex]]
                coll_sum[ci] += sums[r, j]
                coll_cnt[ci] += counts[r, j]


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


# ---------------------------------------------------------------------------------------------
# Launching from a notebook: a subprocess, so accelerate can start N processes and a crash or a
# SIGKILL never takes the kernel with it.


def accelerate_config_path(value: str) -> Path:
    """A config name in params/accelerate/ (see ACCELERATE_CONFIGS) or a yaml path."""
    bundled = config.project_root() / "params" / "accelerate" / f"{value}.yaml"
    if bundled.is_file():
        return bundled
    path = config.resolve_path(value)
    if not path.is_file():
        raise config.ParamsError(f"accelerate_config {value!r}: neither a bundled config "
                                 f"({', '.join(ACCELERATE_CONFIGS)}) nor an existing file")
    return path


def command(params_path: Path, run_dir: Path, *, num_processes: int = 1,
            accelerate_config: str | None = None, python: str | None = None,
            main_process_port: int | None = None) -> list[str]:
    """The command line launch() runs; also what docs/README show for GPUs."""
    python = python or sys.executable
    tail = ["-m", "flan_nb.train", str(params_path), "--run-dir", str(run_dir)]
    if num_processes <= 1 and not accelerate_config:
        return [python, *tail]
    cmd = [python, "-m", "accelerate.commands.launch"]
    if accelerate_config:
        cmd += ["--config_file", str(accelerate_config_path(accelerate_config))]
    cmd += ["--num_processes", str(num_processes)]
    if num_processes > 1:
        # `--cpu` alone starts ONE process (accelerate's simple launcher); the torchrun-based
        # launcher plus Accelerator(cpu=True) (see train()) gives N gloo processes on CPU.
        if not accelerate_config:
            cmd += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no",
                    "--dynamo_backend", "no"]
        cmd += ["--main_process_port", str(main_process_port or _free_port())]
    return [*cmd, *tail]


def _free_port() -> int:
    """A free TCP port, so concurrent runs on one machine do not fight over 29500."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_launch_params(cfg: TrainParams, run: Any) -> Path:
    """The params file the subprocess reads: this notebook's section, nothing injected."""
    import yaml

    section = config.as_dict(cfg)
    section.pop("run_dir")
    section.pop("params_file")
    path = run.path / "train" / "launch_params.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"experiment": "02_finetune", "description": f"launched from {cfg.params_file or 'a notebook'}",
            "notebooks": {NOTEBOOK: section}}
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def launch(cfg: TrainParams, run: Any, num_processes: int | None = None,
           accelerate_config: str | None = None, *, live: bool = True,
           on_log: Callable[[dict], None] | None = None, env: Mapping[str, str] | None = None
           ) -> dict[str, Any]:
    """Train in a subprocess (1..N processes), stream its log, return the final summary."""
    num_processes = num_processes or cfg.num_processes
    accelerate_config = accelerate_config if accelerate_config is not None else (
        cfg.accelerate_config or None)
    check_params(cfg, num_processes=num_processes)
    params_path = write_launch_params(cfg, run)
    cmd = command(params_path, run.path, num_processes=num_processes,
                  accelerate_config=accelerate_config)
    stderr_path = run.path / "train" / "stderr.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    from tqdm import tqdm  # text bar: no ipywidgets needed, papermill-friendly

    plot = _LivePlot() if live else None
    bar = tqdm(total=cfg.steps, desc="train", unit="step", mininterval=5.0)
    summary: dict[str, Any] | None = None
    with open(stderr_path, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                env=full_env, cwd=str(config.project_root()))
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(LOG_PREFIX):
                rec = json.loads(line[len(LOG_PREFIX):])
                if rec.get("event") == "start":
                    bar.n = rec.get("start_step", 0)
                    bar.refresh()
                    if rec.get("resumed_from"):
                        print(f"resuming from {rec['resumed_from']}")
                    continue
                bar.n = rec["step"]
                bar.set_postfix(loss=f"{rec['loss']:.4f}")
                if on_log is not None:
                    on_log(rec)
                if plot is not None:
                    plot.add(rec)
            elif line.startswith(SUMMARY_PREFIX):
                summary = json.loads(line[len(SUMMARY_PREFIX):])
            elif line.strip():
                print(line)
        code = proc.wait()
    bar.close()
    if plot is not None:
        plot.close()
    if code != 0 or summary is None:
        with open(stderr_path, encoding="utf-8", errors="replace") as err:
            tail = "".join(deque(err, maxlen=25))
        msg = f"training exited with code {code}: {' '.join(cmd)}\n--- stderr tail ---\n{tail}"
        if code == EXIT_DIVERGED:
            raise TrainingDiverged(msg, step=-1, checkpoint="")
        raise TrainError(msg)
    return summary


class _LivePlot:
    """A loss curve redrawn in place in Jupyter every few log lines (no-op outside IPython)."""

    def __init__(self, every: int = 5):
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.every, self.handle, self.fig = every, None, None
        try:
            from IPython import get_ipython

            self.active = get_ipython() is not None and "IPKernelApp" in get_ipython().config
        except (ImportError, AttributeError):
            self.active = False

    def add(self, rec: Mapping[str, Any]) -> None:
        self.steps.append(int(rec["step"]))
        self.losses.append(float(rec["loss"]))
        if self.active and len(self.steps) % self.every == 0:
            self._draw()

    def _draw(self) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        if self.fig is None:
            self.fig, self.ax = plt.subplots(figsize=(6, 3))
            plt.close(self.fig)
        self.ax.clear()
        self.ax.plot(self.steps, self.losses)
        self.ax.set_xlabel("step")
        self.ax.set_ylabel("loss (per target token)")
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)

    def close(self) -> None:
        if self.active and self.steps:
            self._draw()


def read_log(run: Any) -> list[dict[str, Any]]:
    """The per-step records of <run>/train_log.jsonl."""
    path = Path(run.path if hasattr(run, "path") else run) / "train_log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def collection_losses(log: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Long-form rows (step, collection, loss) for a seaborn plot."""
    return [{"step": r["step"], "collection": c, "loss": v}
            for r in log for c, v in (r.get("collection_loss") or {}).items()]


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flan_nb.train",
        description="Flan finetuning (the 02_finetune section of a params file). Under "
                    "`accelerate launch -m flan_nb.train` the same loop runs on N processes. "
                    "Rerunning the same command resumes from the latest checkpoint.")
    parser.add_argument("params_file")
    parser.add_argument("--run-dir", default="",
                        help="run directory holding the mixture output (default: "
                             "results/train-<experiment>-<params hash>, created if missing)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from flan_nb import runs

    try:
        run_dir = args.run_dir
        if not run_dir:
            params = config.load_params_file(args.params_file)
            experiment = str(params.get("experiment", "train"))
            path = runs.results_root() / (
                f"train-{experiment}-{runs.params_hash(params)[:8]}")
            path.mkdir(parents=True, exist_ok=True)
            run_dir = str(path)
        cfg = params_from_file(args.params_file, run_dir=run_dir)
        run = runs.open_run(run_dir, notebook=NOTEBOOK)
        train(cfg, run, progress=not args.no_progress)
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except (TrainError, ValueError, FileNotFoundError, checkpoints.CheckpointError,
            runs.MissingOutput) as exc:  # ValueError: ParamsError, ModelSpecError, PackingError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["TrainParams", "DEFAULTS", "TrainError", "TrainingDiverged", "check_params",
           "params_from_file", "train", "launch", "command", "read_log", "collection_losses",
           "tokenize_mixture", "RowStream", "set_dropout", "load_init_checkpoint", "main"]
