"""The finetuning parameters (notebook 02's `parameters` cell, the `02_finetune` section of a params
file) and their checks, shared by the loop, the launcher and the command line.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from flan_nb import config

NOTEBOOK = "02_finetune"
LOG_PREFIX = "FLAN_NB_LOG "
SUMMARY_PREFIX = "FLAN_NB_SUMMARY "
# Examples packed together at once: large enough for best-fit to find partners, small enough that
# re-deriving the data position on resume costs seconds.
PACK_WINDOW = 4096
EXIT_DIVERGED = 3
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
# Above this a learning rate is a typo (1.0e+99), not a setting: Adafactor finetuning uses 1e-4..1e-2.
MAX_LR = 1.0
ACCELERATE_CONFIGS = ("single_device", "ddp", "fsdp_t5", "deepspeed_zero3")


def resolve_precision(precision: str) -> str:
    """`auto` -> bf16 on a CUDA device that supports it (the paper trains in bf16), else fp32
    (CPUs: bf16 autocast is slower than fp32 on most, and exact fp32 is the safe default).
    Other values are returned unchanged."""
    if precision != "auto":
        return precision
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


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
    precision: str             # fp32 | bf16 | auto (bf16 on a GPU that has it, else fp32); fp16 refused for T5
    checkpoint_every: int      # 0 = only the final checkpoint
    keep_last_k: int           # 0 = keep every checkpoint
    log_every: int
    seed: int
    num_processes: int         # used by launch() (the notebook); the CLI takes it from accelerate
    accelerate_config: str     # "" | a name in params/accelerate | a yaml path
    tensorboard: bool          # also log to <run>/train/tensorboard when tensorboard is installed
    eval_every: int            # 0 = off; else held-out score every N steps (train/periodic_eval.py)
    eval_data: str             # synthetic | offline: the held-out set of eval_every
    keep_best: bool            # also keep the best-scoring weights (checkpoint/best)
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
    "eval_every": 0, "eval_data": "synthetic", "keep_best": False,
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


def params_where(cfg: TrainParams) -> str:
    return f" (params file {cfg.params_file}, notebook {NOTEBOOK})" if cfg.params_file else \
        f" (notebook {NOTEBOOK})"


def check_params(cfg: TrainParams, *, kind: str | None = None,
                 num_processes: int | None = None) -> None:
    """Range checks the type checker cannot do; raise config.ParamsError naming the key."""
    from flan_nb.train.packing import METHODS, TRUNCATION

    where = params_where(cfg)

    def bad(key: str, why: str) -> config.ParamsError:
        return config.ParamsError(f"parameter `{key}`{where}: {why}, got {getattr(cfg, key)!r}")

    for key in ("steps", "batch_size", "grad_accum", "input_len", "log_every", "num_processes"):
        if getattr(cfg, key) < 1:
            raise bad(key, "must be >= 1")
    for key in ("max_examples", "checkpoint_every", "keep_last_k"):
        if getattr(cfg, key) < 0:
            raise bad(key, "must be >= 0")
    if not (math.isfinite(cfg.lr) and 0 < cfg.lr <= MAX_LR):
        raise bad("lr", f"must be a finite number in (0, {MAX_LR:g}] (the paper uses 1e-3 to 5e-4)")
    if not 0.0 <= cfg.dropout < 1.0:
        raise bad("dropout", "must be in [0, 1)")
    if not (math.isfinite(cfg.clip_grad_norm) and cfg.clip_grad_norm >= 0):
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
    from flan_nb.train import periodic_eval

    why = periodic_eval.check(cfg, where)
    if why:
        raise config.ParamsError(why)
    n = num_processes or 1
    if cfg.batch_size % (n * cfg.grad_accum):
        raise config.ParamsError(
            f"parameter `batch_size`{where}: the global batch {cfg.batch_size} must be divisible "
            f"by processes x grad_accum = {n} x {cfg.grad_accum} = {n * cfg.grad_accum}")


def params_from_file(params_file: str | os.PathLike[str], *, run_dir: str = "",
                     origin: str = "") -> TrainParams:
    """The 02_finetune section of a params file over the notebook defaults, validated.

    `origin` is the params file the user wrote when `params_file` is a launch copy of it
    (launcher.write_launch_params); errors and cfg.params_file then name the user's file.
    """
    params = config.load_params_file(params_file)
    params_file = origin or str(params_file)
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
