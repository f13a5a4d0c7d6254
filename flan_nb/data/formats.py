"""The four template formats of the paper's Figure 3 (zero-/few-shot x with/without answer options)
and chain of thought: how often each is drawn, and rendering one raw example in the drawn format.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flan_nb.data import templates
from flan_nb.data.mixture_io import MixingError
from flan_nb.data.registry import Task

# ---------------------------------------------------------------------------------------------
# Rendering


@dataclass
class FormatRatios:
    fs_fraction: float
    opt_fraction: float
    cot_fraction: float
    max_exemplars: int
    max_input_tokens: int

    def __post_init__(self) -> None:
        for name in ("fs_fraction", "opt_fraction", "cot_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise MixingError(f"{name} must be in [0, 1], got {value}")
        if self.max_exemplars < 0:
            raise MixingError(f"max_exemplars must be >= 0, got {self.max_exemplars}")


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

    def template_set(self, task: Task) -> templates.TemplateSet:
        if task.id not in self._sets:
            name = task.template_set
            if name not in self.available:
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

        Few-shot exemplars are other examples of the same task (never the example itself),
        1..max_exemplars of them; the template may still prune them to fit max_input_tokens.
        """
        example = pool[index]
        tset = self.template_set(task)
        fmt, cot = self.choose(task, example, rng, tset)
        if (fmt.endswith("_opt") and task.collection == "t0sf"
                and templates.options_listed_in(str(example.get("inputs") or ""),
                                                example.get("options") or ())):
            fmt = fmt.removesuffix("_opt") + "_noopt"
            self.options_already_listed[task.id] = self.options_already_listed.get(task.id, 0) + 1
        exemplars: list[Mapping[str, Any]] = []
        if fmt.startswith("fs") and self.ratios.max_exemplars > 0 and len(pool) > 1:
            k = rng.randint(1, self.ratios.max_exemplars)
            for _ in range(k):
                j = rng.randrange(len(pool) - 1)
                exemplars.append(pool[j + 1 if j >= index else j])
            if cot:  # a CoT exemplar needs a rationale too
                exemplars = [e for e in exemplars if e.get("rationale")]
        out = templates.render(example, tset, fmt=fmt, cot=cot, rng=rng, exemplars=exemplars,
                               max_input_tokens=self.ratios.max_input_tokens or None)
        return out.inputs, out.targets, out.template_id, out.format, out.cot
