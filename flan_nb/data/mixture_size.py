"""`num_examples: auto`: a mixture just large enough that training never repeats an example.

The paper sets mixing weights so that no task is repeated more than once; a fixed-size mixture
that training cycles through breaks that. With `auto`, notebook 01 reads the training budget from
the `02_finetune` section of the same params file (steps, global batch in packed rows, lengths,
packing method, model) and sizes the mixture as

    num_examples = ceil(steps x batch_size x examples per packed row x AUTO_MARGIN)

where examples per packed row is measured by rendering a sample of this mixture, tokenizing it
with the training model's tokenizer exactly as training does (train.stream.tokenize_mixture) and
packing it with the configured lengths and method (train.packing.pack).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flan_nb.data.formats import FormatRatios, Renderer
from flan_nb.data.mixture_io import MixingError
from flan_nb.data.mixture_plan import draw_counts, plan

AUTO = "auto"
AUTO_MARGIN = 1.10  # packing of the full stream differs a little from the sample's
SAMPLE_ROWS = 2000  # rendered examples packed to measure examples per row


@dataclass(frozen=True)
class TrainBudget:
    """What notebook 02 will consume: steps x batch_size packed rows of input_len/target_len."""

    steps: int
    batch_size: int
    input_len: int
    target_len: int
    packing: str
    model: str

    @property
    def rows(self) -> int:
        return self.steps * self.batch_size


def train_budget(params_file: str) -> TrainBudget:
    """The training budget of `params_file` (its 02_finetune section over notebook 02's defaults).

    Raises MixingError when there is no params file (an interactive run must give a number).
    """
    from flan_nb import config
    from flan_nb.train.params import DEFAULTS

    if not params_file:
        raise MixingError("num_examples: auto sizes the mixture from the 02_finetune section of the "
                          "params file; this run has no params file, so give num_examples as a number")
    section = config.notebook_section(config.load_params_file(config.resolve_path(params_file)),
                                      "02_finetune", params_file)
    merged = {**DEFAULTS, **section}
    return TrainBudget(int(merged["steps"]), int(merged["batch_size"]), int(merged["input_len"]),
                       int(merged["target_len"]), str(merged["packing"]), str(merged["model"]))


def _sample_pairs(task_data: Sequence[Any], rates: Mapping[str, float], caps: Mapping[str, int],
                  ratios: FormatRatios, seed: int, n: int) -> tuple[list[str], list[str]]:
    """`n` examples rendered as the mixture would render them (same plan, formats, templates)."""
    sizes = {td.task.id: len(td.rows) for td in task_data}
    coll_of = {td.task.id: td.task.collection for td in task_data}
    counts = draw_counts(plan(sizes, coll_of, rates, caps, n)["probs"], n, seed)
    renderer = Renderer(ratios)
    rng = random.Random(f"flan_nb-auto-size-{seed}")
    inputs, targets = [], []
    for td in task_data:
        for _ in range(counts.get(td.task.id, 0)):
            inp, tgt, *_ = renderer.render(td.task, rng.randrange(len(td.rows)), td.rows, rng)
            inputs.append(inp)
            targets.append(tgt)
    return inputs, targets


def examples_per_row(inputs: Sequence[str], targets: Sequence[str], budget: TrainBudget) -> float:
    """Mean examples per packed row when these examples are tokenized and packed as in training."""
    import datasets

    from flan_nb import models
    from flan_nb.train import packing, stream

    tokenizer, kind = models.load_tokenizer(budget.model)
    ds = datasets.Dataset.from_dict({"inputs": list(inputs), "targets": list(targets)})
    data = stream.tokenize_mixture(ds, tokenizer, kind=kind, input_len=budget.input_len,
                                   target_len=budget.target_len, truncation="truncate", progress=False)
    rows = packing.pack(list(zip(data.inputs, data.targets, strict=True)), kind=kind,
                        input_len=budget.input_len,
                        target_len=budget.target_len if kind == "seq2seq" else None, method=budget.packing)
    return len(inputs) / max(1, len(rows))


def auto_num_examples(task_data: Sequence[Any], *, rates: Mapping[str, float], caps: Mapping[str, int],
                      ratios: FormatRatios, seed: int, params_file: str) -> dict[str, Any]:
    """{"num_examples", "steps", "batch_size", "examples_per_row", "margin", ...} for the manifest."""
    budget = train_budget(params_file)
    inputs, targets = _sample_pairs(task_data, rates, caps, ratios, seed, SAMPLE_ROWS)
    per_row = examples_per_row(inputs, targets, budget)
    n = math.ceil(budget.rows * per_row * AUTO_MARGIN)
    return {"num_examples": n, "steps": budget.steps, "batch_size": budget.batch_size,
            "packed_rows": budget.rows, "examples_per_row": round(per_row, 4), "margin": AUTO_MARGIN,
            "input_len": budget.input_len, "target_len": budget.target_len, "packing": budget.packing,
            "model": budget.model, "sample_size": len(inputs)}
