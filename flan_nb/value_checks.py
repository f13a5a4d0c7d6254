"""Value checks of every notebook section, run by the pipeline at resolve time (before a run
directory exists), so a bad value costs a second, not the mixing and training before it.

The type checks live in config.check_values; these are the range and existence checks the types
cannot express. Each stage keeps its own rules (train.params.check_params, eval.driver.check,
data.mixing's preset and rate checks); this module calls them on the resolved values and makes
every message name the params file, the notebook and the key.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
import typing
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from flan_nb import config

# keys that are paths to an existing directory whenever they are set (not "")
DIRECTORY_KEYS = ("data_root",)
# keys that are existing paths whenever they are set (a file or a directory)
PATH_KEYS = ("init_checkpoint", "mixture_path")
# keys that are model specs (models.load) whenever they are set
MODEL_KEYS = ("model", "tokenizer")  # tokenizer: 01_data_mixing's few-shot budget unit
# the learning rates any optimizer here trains with: Adafactor/AdamW finetuning uses 1e-5..1e-2;
# above 1 is a typo (1.0e+99), not a setting
LR_RANGE = (0.0, 1.0)


class Where:
    """Builds ParamsErrors that name the params file, the notebook and the key."""

    def __init__(self, cfg: Any, params_file: str, notebook: str):
        self.cfg, self.params_file, self.notebook = cfg, params_file, notebook

    def __call__(self, key: str, why: str, value: Any = dataclasses.MISSING) -> config.ParamsError:
        shown = getattr(self.cfg, key, None) if value is dataclasses.MISSING else value
        if isinstance(shown, Mapping):  # frozen configs hold mapping proxies and tuples
            shown = dict(shown)
        elif isinstance(shown, tuple):
            shown = list(shown)
        where = f"params file {self.params_file}, " if self.params_file else ""
        got = "" if re.search(r"\bgot\b", why) else f", got {shown!r}"
        return config.ParamsError(
            f"parameter `{key}` in {where}notebook {self.notebook}: {why}{got}")


def check(notebook: str, cfg: Any, params_file: str = "") -> None:
    """All value checks of one notebook's resolved frozen params; raises config.ParamsError."""
    bad = Where(cfg, params_file, notebook)
    _check_common(cfg, bad)
    per_notebook = CHECKS.get(notebook)
    if per_notebook is None and "_eval_" in notebook:
        per_notebook = _eval_check(notebook.split("_eval_", 1)[1])
    if per_notebook is not None:
        per_notebook(cfg, bad)


def _check_common(cfg: Any, bad: Where) -> None:
    """Rules that hold for every notebook: finite floats, existing paths, loadable model specs."""
    from flan_nb import models

    hints = typing.get_type_hints(type(cfg))
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if hints[field.name] is float and not math.isfinite(value):
            raise bad(field.name, "must be a finite number")
        if not isinstance(value, str) or not value:
            continue
        if field.name in DIRECTORY_KEYS and not config.resolve_path(value).is_dir():
            raise bad(field.name, f"directory {config.resolve_path(value)} does not exist")
        if field.name in PATH_KEYS and not config.resolve_path(value).exists():
            raise bad(field.name, f"path {config.resolve_path(value)} does not exist")
        if field.name in MODEL_KEYS and value != "whitespace":
            problem = models.spec_problem(value, config.project_root())
            if problem:
                raise bad(field.name, f"not a usable model spec: {problem}")


def _at_least(cfg: Any, bad: Where, minimum: int, *keys: str) -> None:
    for key in keys:
        if getattr(cfg, key) < minimum:
            raise bad(key, f"must be >= {minimum}")


def _train(cfg: Any, bad: Where) -> None:
    from flan_nb import models
    from flan_nb.train.params import check_params

    # a builtin's architecture is known without loading it (fp16 is refused for T5)
    builtin = models.BUILTIN_SIZES.get(cfg.model.removeprefix(models.BUILTIN_PREFIX))
    kind = "seq2seq" if cfg.model.startswith(models.BUILTIN_PREFIX) and builtin and \
        builtin[0] == "t5" else None
    # its messages name file, notebook and key (the file from cfg, blank while resolving)
    check_params(dataclasses.replace(cfg, params_file=bad.params_file), kind=kind)


def _mixing(cfg: Any, bad: Where) -> None:
    from flan_nb.data import mixing, mixture_size, registry
    from flan_nb.data.formats import FormatRatios
    from flan_nb.data.mixture_io import MixingError

    if cfg.preset not in mixing.available_presets():
        raise bad("preset", "unknown mixture preset" + config.did_you_mean(
            cfg.preset, mixing.available_presets()))
    for key, loader in (("rates", lambda: mixing.normalize_rates(dict(cfg.rates), where="rates")
                         if cfg.rates else None),
                        ("preset", lambda: mixing.load_preset(cfg.preset)),
                        ("caps", lambda: mixing.resolve(cfg)),
                        ("fs_fraction", lambda: FormatRatios(cfg.fs_fraction, cfg.opt_fraction,
                                                             cfg.cot_fraction, cfg.max_exemplars,
                                                             cfg.max_input_tokens,
                                                             cfg.fill_fraction, cfg.tokenizer))):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "rates sum to 2, normalized": mix() warns
                loader()
        except (MixingError, registry.UnknownNameError) as exc:
            message = str(exc)
            named = next((k for k in ("opt_fraction", "cot_fraction", "fill_fraction",
                                      "max_exemplars", "max_input_tokens")
                          if message.startswith(k)), key)
            raise bad(named, message) from None
    if isinstance(cfg.num_examples, str):
        if cfg.num_examples != mixture_size.AUTO:
            raise bad("num_examples", f"must be a positive integer or {mixture_size.AUTO!r}")
    else:
        _at_least(cfg, bad, 1, "num_examples")
    _at_least(cfg, bad, 1, "workers")
    if cfg.on_bad_rows not in ("raise", "skip"):
        raise bad("on_bad_rows", "must be 'raise' or 'skip'")
    _at_least(cfg, bad, 0, "max_input_tokens", "synthetic_examples_per_family",
              "max_examples_per_task")


def _eval_check(benchmark: str) -> Callable[[Any, Where], None]:
    def check_eval(cfg: Any, bad: Where) -> None:
        from flan_nb.eval import driver

        if cfg.dtype not in ("float32", "bfloat16", "fp32", "bf16"):
            raise bad("dtype", "must be float32 or bfloat16 (T5 overflows in float16)")
        try:
            driver.check(benchmark, cfg)
        except driver.EvalError as exc:
            message = str(exc)
            key = next((k for k in ("settings", "data", "batch_size", "sc_samples",
                                    "max_per_subtask", "max_new_tokens_direct",
                                    "max_new_tokens_cot", "max_context", "sc_temperature")
                        if message.startswith((k + "=", f"`{k}`", k + " "))), "settings")
            raise bad(key, message) from None
    return check_eval


def _walkthrough(cfg: Any, bad: Where) -> None:
    _at_least(cfg, bad, 1, "mixture_examples", "mixture_cap", "pack_examples", "input_len",
              "target_len", "d_model", "num_layers", "train_steps", "batch_rows",
              "max_new_tokens")
    if not LR_RANGE[0] < cfg.learning_rate <= LR_RANGE[1]:
        raise bad("learning_rate", f"must be in ({LR_RANGE[0]}, {LR_RANGE[1]}]")


def _tables(cfg: Any, bad: Where) -> None:
    if cfg.paper_rows not in ("t5", "all", "matched", "none"):
        raise bad("paper_rows", "must be one of t5, all, matched, none")


def _scaling(cfg: Any, bad: Where) -> None:
    # by name, like pipeline.NOTEBOOK_PARAMS: report.figures -> report.sweeps -> pipeline -> here
    figures = importlib.import_module("flan_nb.report.figures").FIGURES

    for plot in cfg.plots:
        if plot not in figures:
            raise bad("plots", f"unknown plot {plot!r}; known: {', '.join(figures)}")


def _before_after(cfg: Any, bad: Where) -> None:
    if not 0.5 <= cfg.level < 1.0:
        raise bad("level", "must be in [0.5, 1), e.g. 0.95")
    if cfg.n_resamples < 100:
        raise bad("n_resamples", "must be >= 100 (the interval ends are quantiles of the resamples)")
    if cfg.before == cfg.after:
        raise bad("before", "before and after name the same evaluation")


CHECKS: Mapping[str, Callable[[Any, Where], None]] = {
    "00_walkthrough": _walkthrough,
    "01_data_mixing": _mixing,
    "02_finetune": _train,
    "07_tables": _tables,
    "08_scaling": _scaling,
    "09_before_after": _before_after,
}
