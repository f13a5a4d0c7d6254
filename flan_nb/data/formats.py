"""The four template formats of the paper's Figure 3 (zero-/few-shot x with/without answer options)
and chain of thought: how often each is drawn, and rendering one raw example in the drawn format.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flan_nb.data import fewshot, templates
from flan_nb.data.mixture_io import MixingError
from flan_nb.data.registry import Task

# ---------------------------------------------------------------------------------------------
# Rendering


@dataclass
class FormatRatios:
    """How often each format is drawn and how few-shot prompts are built.

    fs_fraction / opt_fraction / cot_fraction: shares of few-shot, with-options and CoT renders.
    max_exemplars: a few-shot render draws 1..max_exemplars exemplars (the collection uses up to
    5). fill_fraction: share of few-shot renders that instead take as many exemplars as fit
    (up to fewshot.FILL_DRAW). max_input_tokens: both kinds are pruned to this many tokens of
    `tokenizer` (a model spec, or `whitespace` as the explicit word-count fallback); 0 = no limit.
    """

    fs_fraction: float
    opt_fraction: float
    cot_fraction: float
    max_exemplars: int
    max_input_tokens: int
    fill_fraction: float = 0.0
    tokenizer: str = fewshot.WHITESPACE

    def __post_init__(self) -> None:
        for name in ("fs_fraction", "opt_fraction", "cot_fraction", "fill_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise MixingError(f"{name} must be in [0, 1], got {value}")
        if not 0 <= self.max_exemplars <= fewshot.MAX_EXEMPLARS:
            raise MixingError(f"max_exemplars must be in [0, {fewshot.MAX_EXEMPLARS}] (the collection's "
                              f"few-shot prompts hold up to 5; use fill_fraction for longer ones), "
                              f"got {self.max_exemplars}")
        if self.max_input_tokens < 0:
            raise MixingError(f"max_input_tokens must be >= 0, got {self.max_input_tokens}")


# the template set of rows rendered already (the authors' Flan Collection exports, flan_exports):
# render() returns their text, format and cot flag as they are
PRERENDERED = "prerendered"
COT_COLLECTIONS = ("cot", "synthetic")  # only these carry rationales (paper: only CoT data uses CoT formats)


class Renderer:
    """Renders raw examples with templates.render; a task without its own set uses passthrough."""

    def __init__(self, ratios: FormatRatios):
        self.ratios = ratios
        self._sets: dict[str, templates.TemplateSet] = {}
        self.fallbacks: dict[str, str] = {}
        # T0-SF renders whose promptsource text already lists every choice: drawn *_opt, rendered
        # *_noopt so the choices are not shown twice (task id -> count, this process only)
        self.options_already_listed: dict[str, int] = {}
        self.available = set(templates.available_template_sets())
        self.counter = fewshot.token_counter(ratios.tokenizer)

    def template_set(self, task: Task) -> templates.TemplateSet:
        if task.id not in self._sets:
            name = task.template_set
            if name == PRERENDERED:
                name = "passthrough"  # never rendered with: render() returns the rows' own text
            elif name not in self.available:
                name = "passthrough"
                self.fallbacks[task.id] = name
            self._sets[task.id] = templates.load_template_set(name)
        return self._sets[task.id]

    def choose(self, task: Task, example: Mapping[str, Any], rng: random.Random,
               tset: templates.TemplateSet) -> tuple[str, bool]:
        r = self.ratios
        fs = rng.random() < r.fs_fraction
        opt = rng.random() < r.opt_fraction
        has_cot = (task.collection in COT_COLLECTIONS and bool(example.get("rationale"))
                   and tset.has_cot)
        cot = has_cot and rng.random() < r.cot_fraction
        return f"{'fs' if fs else 'zs'}_{'opt' if opt else 'noopt'}", cot

    def render(self, task: Task, index: int, pool: Sequence[Mapping[str, Any]],
               rng: random.Random) -> tuple[str, str, str, str, bool]:
        """(inputs, targets, template_id, format, cot) for example `pool[index]`.

        Few-shot exemplars are other examples of the same task, never the example itself nor a
        row with the same normalized input: 1..max_exemplars of them, or (a fill_fraction share of
        few-shot renders) up to fewshot.FILL_DRAW; the template prunes them to max_input_tokens
        counted with the ratios' tokenizer.
        """
        example = pool[index]
        if task.template_set == PRERENDERED:
            return (example["inputs"], example["targets"], example["template_id"], example["format"],
                    bool(example["cot"]))
        tset = self.template_set(task)
        fmt, cot = self.choose(task, example, rng, tset)
        if (fmt.endswith("_opt") and task.collection == "t0sf"
                and templates.options_listed_in(str(example.get("inputs") or ""),
                                                example.get("options") or ())):
            fmt = fmt.removesuffix("_opt") + "_noopt"
            self.options_already_listed[task.id] = self.options_already_listed.get(task.id, 0) + 1
        exemplars: list[Mapping[str, Any]] = []
        r = self.ratios
        if fmt.startswith("fs") and r.max_exemplars > 0 and len(pool) > 1:
            fill = r.fill_fraction > 0 and rng.random() < r.fill_fraction
            k = fewshot.FILL_DRAW if fill else rng.randint(1, r.max_exemplars)
            exemplars = fewshot.pick_exemplars(pool, index, k, rng)
            if cot:  # a CoT exemplar needs a rationale too
                exemplars = [e for e in exemplars if e.get("rationale")]
        out = templates.render(example, tset, fmt=fmt, cot=cot, rng=rng, exemplars=exemplars,
                               max_input_tokens=r.max_input_tokens or None, count_tokens=self.counter.count)
        return out.inputs, out.targets, out.template_id, out.format, out.cot
