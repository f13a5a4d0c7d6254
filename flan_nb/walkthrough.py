"""The teaching walkthrough (notebooks/00_walkthrough.ipynb): the recipe on live, tiny examples.

Each function is one step of the notebook and calls the real pipeline modules (templates,
mixing, packing, packed_forward, prompts, answers, scores) on a scale that runs in seconds on a
CPU: one task rendered in the four formats, a small examples-proportional mixture, a packed
batch and its attention masks, a few Adafactor steps of a micro T5 (builtin tiny-T5 shrunk), one BBH-shaped
CoT item from prompt to extracted answer, and the normalized average of one Table 5 row by hand.
Nothing here is used by the real pipeline; it only shows how the pieces fit.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

NOTEBOOK = "00_walkthrough"
# Few-shot inputs longer than this (whitespace words) lose exemplars, as in the real mixture; kept
# small because the tiny T5 reads bytes and the notebook must train on a CPU in seconds.
DEMO_MAX_INPUT_WORDS = 48
NO_ANSWER = "(no answer found)"
PAPER_DIR = Path(__file__).resolve().parent / "resources" / "paper"
# Table 5 column -> our component name (scores.COMPONENTS), in the paper's column order.
TABLE5_COMPONENTS = (
    ("mmlu_direct", "mmlu_direct"), ("mmlu_cot", "mmlu_cot"), ("bbh_direct", "bbh_direct"),
    ("bbh_cot", "bbh_cot"), ("tydiqa", "tydiqa_direct"), ("mgsm", "mgsm_cot"),
)


class WalkthroughError(ValueError):
    """A walkthrough parameter names something that does not exist, or a step cannot run."""


@dataclass(frozen=True)
class WalkthroughParams:
    """The parameters cell of notebooks/00_walkthrough.ipynb (no defaults: the notebook has them)."""

    seed: int
    family: str                # synthetic training family rendered in the four formats
    mixture_examples: int      # rows of the demo mixture
    mixture_cap: int           # per-task cap of examples-proportional mixing (paper App. E)
    pack_examples: int         # mixture rows tokenized and packed for the batch picture
    input_len: int             # encoder row length (bytes: the tiny T5 is byte-level)
    target_len: int            # decoder row length
    d_model: int               # width of the micro T5 trained here (heads of 64)
    num_layers: int            # encoder layers = decoder layers
    train_steps: int
    batch_rows: int            # packed rows per training step
    learning_rate: float
    bbh_subtask: str           # synthetic BBH-shaped subtask of the CoT item
    max_new_tokens: int        # generation budget of the tiny model on that item
    paper_row: str             # Table 5 model whose normalized average is recomputed
    run_dir: str
    params_file: str


# ---------------------------------------------------------------------------------------------
# Step 1: one task in the four formats (paper §2.1, Fig. 3)


def render_formats(family: str, seed: int, *, n_exemplars: int = 2,
                   template_id: str | None = None) -> pd.DataFrame:
    """One synthetic example rendered zs/fs x noopt/opt, plus the CoT target variant.

    The same template is used in every row so only the format changes; exemplars for the fs
    formats are other examples of the same task, as in the mixture.
    """
    from flan_nb.data import synthetic, templates

    if family not in synthetic.training_families():
        raise WalkthroughError(f"family {family!r} is not a synthetic training family; known: "
                               f"{', '.join(synthetic.training_families())}")
    tset = templates.load_template_set(family)
    examples = synthetic.generate(family, n_exemplars + 1, seed)
    example, shots = examples[0], examples[1:]
    tid = template_id or tset.ids[0]
    variants = [(fmt, False) for fmt in templates.FORMATS]
    if tset.has_cot and example.get("rationale"):
        variants += [("zs_noopt", True), ("fs_opt", True)]
    rows = []
    for fmt, cot in variants:
        out = templates.render(example, tset, fmt=fmt, cot=cot, rng=random.Random(seed),
                               template_id=tid, exemplars=shots if fmt.startswith("fs") else ())
        rows.append({"requested": fmt + (" + CoT" if cot else ""), "format": out.format,
                     "cot": out.cot, "template_id": out.template_id,
                     "n_exemplars": out.n_exemplars, "inputs": out.inputs,
                     "targets": out.targets})
    return pd.DataFrame(rows)


def show_text(df: pd.DataFrame, columns: Sequence[str] = ("inputs", "targets")) -> Any:
    """A Styler that keeps the line breaks of long text columns visible in the notebook."""
    return (df.style.set_properties(subset=list(columns), **{"white-space": "pre-wrap",
                                                              "text-align": "left",
                                                              "font-family": "monospace"})
            .hide(axis="index"))


# ---------------------------------------------------------------------------------------------
# Step 2: a small mixture (paper §2.1, App. E: examples-proportional mixing with caps)


def demo_task_sizes(families: Sequence[str], cap: int) -> dict[str, int]:
    """Unequal task sizes around the cap (cap/4 .. 4*cap) so capping visibly matters."""
    factors = (0.25, 0.5, 1.0, 2.0, 4.0)
    return {fam: max(2, int(round(cap * factors[i % len(factors)])))
            for i, fam in enumerate(families)}


def sample_mixture(run: Any, *, seed: int, num_examples: int, cap: int,
                   families: Sequence[str] | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """Mix synthetic training tasks of unequal sizes with one cap; return (manifest, table).

    The mixture goes to `run.artifacts/walkthrough/mixture` and is NOT recorded as the run's
    `mixture_path` (notebook 01 owns that). The table has, per task: examples available,
    the capped size, the planned share min(n, cap)/sum min(n', cap) and the realized share.
    """
    from flan_nb.data import mixing, registry, synthetic

    if cap <= 0 or num_examples <= 0:
        raise WalkthroughError(f"mixture_cap ({cap}) and mixture_examples ({num_examples}) must "
                               "be > 0")
    families = list(families or synthetic.training_families())
    by_family = {t.dataset: t for t in registry.load_registry().select("synthetic")}
    missing = [f for f in families if f not in by_family]
    if missing:
        raise WalkthroughError(f"no registry task for synthetic family {missing[0]!r}")
    sizes = demo_task_sizes(families, cap)
    task_data = [mixing.TaskData(by_family[f], synthetic.generate(f, sizes[f], seed))
                 for f in families]
    # format ratios in the spirit of the paper's mixed-format training (§2.1, Fig. 3)
    ratios = mixing.FormatRatios(fs_fraction=0.5, opt_fraction=0.5, cot_fraction=0.5,
                                 max_exemplars=2, max_input_tokens=DEMO_MAX_INPUT_WORDS)
    out_dir = Path(run.artifacts) / "walkthrough" / "mixture"
    manifest = mixing.mix(task_data, rates={"synthetic": 1.0}, caps={"synthetic": cap},
                          num_examples=num_examples, seed=seed, ratios=ratios, out_dir=out_dir,
                          progress=False)
    return manifest, mixture_table(manifest)


def mixture_table(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """Per task: available, capped, planned and realized share (%) of the mixture."""
    n = manifest["num_examples"]
    rows = []
    for task, v in manifest["per_task"].items():
        rows.append({"task": task.removeprefix("synthetic_"), "available": v["available"],
                     "capped": v["capped"], "planned_%": 100.0 * v["planned"] / n,
                     "realized_%": 100.0 * v["realized"] / n, "realized": v["realized"],
                     "epochs": v["epochs"]})
    df = pd.DataFrame(rows).sort_values("available", ascending=False).reset_index(drop=True)
    # without the cap the share would simply follow the raw size
    df.insert(3, "uncapped_%", 100.0 * df["available"] / df["available"].sum())
    return df


def plot_mixture(table: pd.DataFrame) -> Any:
    """Bars: share of each task without cap, planned with cap, and realized in the sample."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    long = table.melt(id_vars="task", value_vars=["uncapped_%", "planned_%", "realized_%"],
                      var_name="share", value_name="percent")
    fig, ax = plt.subplots(figsize=(9, 3.6))
    sns.barplot(data=long, x="task", y="percent", hue="share", ax=ax)
    ax.set_xlabel("")
    ax.set_ylabel("% of mixture")
    ax.set_title("Examples-proportional mixing: the cap flattens the big tasks")
    ax.tick_params(axis="x", rotation=35)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    fig.tight_layout()
    return fig


def format_counts(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """How many mixture rows came out in each format (+cot)."""
    fm = manifest["format_by_collection"]
    counts: dict[str, int] = {}
    for per in fm.values():
        for k, v in per.items():
            counts[k] = counts.get(k, 0) + int(v)
    total = sum(counts.values()) or 1
    return pd.DataFrame([{"format": k, "rows": v, "%": 100.0 * v / total}
                         for k, v in sorted(counts.items())])


# ---------------------------------------------------------------------------------------------
# Step 3: packing and its attention masks


def encode_pair(tokenizer: Any, inputs: str, targets: str, *, input_len: int,
                target_len: int) -> tuple[list[int], list[int], bool]:
    """(input ids + EOS, target ids + EOS, truncated?) exactly as training tokenizes a pair."""
    import datasets

    from flan_nb.train import loop as train

    try:
        ids = train.tokenize_mixture(datasets.Dataset.from_dict({"inputs": [inputs], "targets": [targets]}),
                                     tokenizer, kind="seq2seq", input_len=input_len,
                                     target_len=target_len, truncation="truncate", progress=False)
    except train.TrainError as exc:  # e.g. a tokenizer without EOS
        raise WalkthroughError(str(exc)) from exc
    return ids.inputs[0], ids.targets[0], bool(ids.truncated_inputs or ids.truncated_targets)


@dataclass
class PackedDemo:
    rows: list[Any]                 # packing.PackedRow
    examples: list[tuple[list[int], list[int]]]
    texts: list[dict[str, str]]     # the mixture rows behind `examples`
    n_truncated: int
    stats: dict[str, Any]
    unpacked_rows: int              # rows the same examples need one per row


def pack_mixture(mixture_dir: str | Path, tokenizer: Any, *, n: int, input_len: int,
                 target_len: int, start: int = 0) -> PackedDemo:
    """Tokenize mixture rows [start, start+n) and best-fit pack them into seq2seq rows."""
    import datasets

    from flan_nb.train import packing

    ds = datasets.load_from_disk(str(mixture_dir))
    if start >= len(ds):
        raise WalkthroughError(f"mixture {mixture_dir} has {len(ds)} rows; start={start}")
    part = ds.select(range(start, min(len(ds), start + n)))
    examples, texts, n_cut = [], [], 0
    for row in part:
        inp, tgt, cut = encode_pair(tokenizer, row["inputs"], row["targets"],
                                    input_len=input_len, target_len=target_len)
        examples.append((inp, tgt))
        texts.append({"task": row["task"], "format": row["format"] + ("+cot" if row["cot"] else ""),
                      "inputs": row["inputs"], "targets": row["targets"]})
        n_cut += int(cut)
    rows = packing.pack(examples, kind="seq2seq", input_len=input_len, target_len=target_len,
                        method="best_fit")
    return PackedDemo(rows, examples, texts, n_cut, packing.pack_stats(rows), len(examples))


def packing_table(demo: PackedDemo) -> pd.DataFrame:
    """Per packed row: examples in it and how full its encoder and decoder halves are."""
    return pd.DataFrame([{
        "row": i, "examples": r.n_segments, "tasks": ", ".join(
            demo.texts[k]["task"].removeprefix("synthetic_") for k in r.example_indices),
        "encoder_fill_%": 100.0 * r.used_input / r.input_len,
        "decoder_fill_%": 100.0 * r.used_target / (r.target_len or 1),
    } for i, r in enumerate(demo.rows)])


def attention_masks(batch: Mapping[str, Any], row: int = 0) -> dict[str, np.ndarray]:
    """Boolean (queries, keys) masks of one row, exactly as packed_forward builds them."""
    from flan_nb.train.packed_forward import allowed_pairs

    if "encoder_segment_ids" not in batch:
        raise WalkthroughError("attention_masks needs a seq2seq batch (encoder_segment_ids)")
    enc = batch["encoder_segment_ids"][row:row + 1]
    dec = batch["decoder_segment_ids"][row:row + 1]
    return {
        "encoder self-attention": allowed_pairs(enc, enc)[0].numpy(),
        "decoder self-attention (causal)": allowed_pairs(dec, dec, causal=True)[0].numpy(),
        "cross-attention (decoder -> encoder)": allowed_pairs(dec, enc)[0].numpy(),
    }


def _segment_cmap(n_segments: int) -> Any:
    import seaborn as sns
    from matplotlib.colors import ListedColormap

    colors = ["#f2f2f2", *sns.color_palette("tab10", max(1, n_segments))]
    return ListedColormap(colors[: n_segments + 1])


def _shown_length(segments: np.ndarray, margin: int = 6) -> int:
    real = np.flatnonzero(segments > 0)
    end = int(real[-1]) + 1 if real.size else 0
    return min(len(segments), end + margin)


def busiest_row(batch: Mapping[str, Any]) -> int:
    """The row holding the most examples (first one on ties)."""
    return int(batch["encoder_segment_ids"].max(dim=1).values.argmax())


def plot_packed_batch(batch: Mapping[str, Any], row: int | None = None) -> Any:
    """Segment ids of every row (encoder, decoder) and the three attention masks of one row
    (default: the row holding the most examples).

    Segment 0 (light grey) is padding. In the masks a pixel is dark where query i may attend to
    key j; padding queries see everything (their outputs never reach the loss, and an all-blocked
    softmax row would give NaN), which shows as full rows at the bottom.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    enc = batch["encoder_segment_ids"].numpy()
    dec = batch["decoder_segment_ids"].numpy()
    n_seg = int(max(enc.max(), dec.max()))
    cmap = _segment_cmap(n_seg)
    row = busiest_row(batch) if row is None else row
    masks = attention_masks(batch, row)
    fig = plt.figure(figsize=(13, 8.5))
    grid = fig.add_gridspec(2, 3, height_ratios=[1, 2.2])
    ax_enc = fig.add_subplot(grid[0, :2])
    ax_dec = fig.add_subplot(grid[0, 2])
    for ax, seg, title in ((ax_enc, enc, "encoder segment ids"),
                           (ax_dec, dec, "decoder segment ids")):
        im = ax.imshow(seg, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-0.5,
                       vmax=n_seg + 0.5)
        ax.set_title(title)
        ax.set_xlabel("position")
        ax.set_ylabel("packed row")
        ax.set_yticks(range(seg.shape[0]))
    cbar = fig.colorbar(im, ax=[ax_enc, ax_dec], ticks=range(n_seg + 1), fraction=0.02)
    cbar.set_label("segment (0 = pad)")
    # 0 blocked, 1 allowed but the query is padding (never reaches the loss), 2 allowed
    shades = ListedColormap(["white", "#d0d0d0", "black"])
    seg_of = {"encoder": enc[row], "decoder": dec[row]}
    for k, (title, mask) in enumerate(masks.items()):
        q_seg = seg_of["encoder" if title.startswith("encoder") else "decoder"]
        k_seg = seg_of["decoder" if title.startswith("decoder") else "encoder"]
        codes = np.where(mask, 2, 0)
        codes[q_seg == 0] = np.where(mask[q_seg == 0], 1, 0)
        # show the real tokens plus a little padding, not a mostly-empty full row
        q_end = _shown_length(q_seg)
        k_end = _shown_length(k_seg)
        ax = fig.add_subplot(grid[1, k])
        ax.imshow(codes[:q_end, :k_end], cmap=shades, vmin=0, vmax=2, interpolation="nearest",
                  aspect="auto")
        ax.set_title(f"row {row}: {title}", fontsize=10)
        ax.set_xlabel(f"key position (first {k_end} of {len(k_seg)})")
        ax.set_ylabel(f"query position (first {q_end} of {len(q_seg)})")
    return fig


# ---------------------------------------------------------------------------------------------
# Step 4: a few training steps


def micro_t5(d_model: int, num_layers: int, seed: int) -> tuple[Any, Any]:
    """models.build_tiny_t5 shrunk further (d_ff = 2*d_model, heads of 64) for CPU seconds.

    Same architecture family as Flan-T5 (T5 1.1: gated-GELU, untied head, relative position
    bias) and the same byte tokenizer as the pipeline's builtin:tiny-t5; only the sizes differ.
    """
    from flan_nb import models

    if d_model < 64 or d_model % 64 or num_layers < 1:
        raise WalkthroughError(f"d_model must be a positive multiple of 64 (got {d_model}) and "
                               f"num_layers >= 1 (got {num_layers})")
    return models.build_tiny_t5(seed=seed, d_model=d_model, d_ff=2 * d_model,
                                num_heads=d_model // 64, num_layers=num_layers,
                                num_decoder_layers=num_layers)


def n_parameters(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def few_training_steps(model: Any, rows: Sequence[Any], *, steps: int, batch_rows: int,
                       learning_rate: float, seed: int) -> pd.DataFrame:
    """Adafactor (constant LR, as the paper's finetuning) on packed rows; loss per step.

    The loss is sum of target-token cross-entropies / number of target tokens in the batch, so
    every target token weighs the same whichever row it was packed into (packed_forward doc).
    Rows are drawn in a seeded shuffled order and cycled, so a short demo revisits them.
    """
    from transformers.optimization import Adafactor

    from flan_nb.train import packing
    from flan_nb.train.packed_forward import packed_loss

    if steps <= 0 or batch_rows <= 0:
        raise WalkthroughError(f"train_steps ({steps}) and batch_rows ({batch_rows}) must be > 0")
    if not rows:
        raise WalkthroughError("few_training_steps needs at least one packed row")
    order = np.random.default_rng(seed).permutation(len(rows)).tolist()
    optimizer = Adafactor(model.parameters(), lr=learning_rate, scale_parameter=False,
                          relative_step=False, warmup_init=False)
    model.train()
    log = []
    try:
        for step in range(1, steps + 1):
            picks = [rows[order[(step * batch_rows + j) % len(rows)]] for j in range(batch_rows)]
            batch = packing.collate(picks, "seq2seq", trim=True)
            loss_sum, n_tokens = packed_loss(model, batch)
            loss = loss_sum / n_tokens
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            log.append({"step": step, "loss": float(loss.detach()), "target_tokens":
                        int(n_tokens), "examples": sum(r.n_segments for r in picks)})
    finally:
        model.eval()
    return pd.DataFrame(log)


def plot_loss(log: pd.DataFrame) -> Any:
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(7, 3.2))
    sns.lineplot(data=log, x="step", y="loss", marker="o", ax=ax)
    ax.set_ylabel("loss per target token (nats)")
    ax.set_title("Micro T5 on packed batches, Adafactor at a constant learning rate")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Step 5: one CoT evaluation item


def bbh_cot_item(subtask: str, seed: int, n_items: int = 3) -> tuple[Any, str]:
    """(EvalItem of the first synthetic BBH-shaped item in the CoT setting, its gold rationale).

    The synthetic set is built from the held-out family's test split; its first item comes from
    the same `synthetic.generate` call, which also gives the rationale an ideal model would write.
    """
    from flan_nb.data import synthetic
    from flan_nb.eval import benchmarks as benchmark_data
    from flan_nb.eval import prompts

    if subtask not in synthetic.BBH_SUBTASKS:
        raise WalkthroughError(f"bbh_subtask {subtask!r} is not a synthetic BBH subtask; known: "
                               f"{', '.join(synthetic.BBH_SUBTASKS)}")
    data = benchmark_data.load("bbh", source="synthetic", subtasks=[subtask],
                               n_per_subtask=n_items, seed=seed)
    item = prompts.build_items("bbh", "cot", data)[0]
    raw = {e["inputs"]: e for e in synthetic.generate(subtask, n_items, seed, "test")}
    query = item.prompt.query
    match = [e for text, e in raw.items() if query.startswith(f"Q: {text}")]
    if len(match) != 1:
        raise WalkthroughError(f"cannot find the synthetic source of {subtask} item "
                               f"{item.item_id} to read its rationale")
    return item, str(match[0]["rationale"])


def greedy_generate(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int) -> str:
    """Greedy decoding of a seq2seq model (the paper's evaluations decode greedily, App. D)."""
    import torch

    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
    return tokenizer.decode(out[0], skip_special_tokens=True)


def cot_walk(item: Any, generations: Mapping[str, str]) -> pd.DataFrame:
    """Per generation: the raw text, the answer answers.extract reads from it, gold, correct."""
    from flan_nb.eval import answers

    rows = []
    for who, raw in generations.items():
        scored = answers.score("bbh", item.setting, raw, item)
        found = scored["extracted"] is not None
        # pandas would turn None into NaN; say it in words instead
        rows.append({"generation": who, "raw": raw,
                     "extracted": str(scored["extracted"]) if found else NO_ANSWER,
                     "answer_found": found, "gold": item.gold, "correct": scored["correct"]})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Step 6: the normalized average of one Table 5 row, by hand


def paper_row(model: str, table: str = "table5") -> dict[str, Any]:
    from flan_nb.report import tables as report

    rows = report.paper_rows(table)
    for r in rows:
        if r["model"] == model:
            return r
    raise WalkthroughError(f"{PAPER_DIR / f'{table}.yaml'}: no row {model!r}; rows: "
                           f"{', '.join(r['model'] for r in rows)}")


def normalized_average_by_hand(model: str, *, bbh_random: float | None = None
                               ) -> tuple[pd.DataFrame, dict[str, float]]:
    """Each of the six Table 5 scores, its random baseline, 100*(s-r)/(100-r), and the mean.

    Table 5 prints only benchmark averages, so BBH is normalized here at the aggregate level
    with the mean per-subtask baseline (scores.mean_bbh_random); the paper normalized each BBH
    subtask first, which is why the recomputation can differ from the printed value by a little.
    """
    from flan_nb.eval import benchmark_schema as bd
    from flan_nb.eval import scores

    row = paper_row(model)
    s = bd.settings()
    rb = scores.mean_bbh_random() if bbh_random is None else float(bbh_random)
    base = {"mmlu": float(s["mmlu"]["random"]), "bbh": rb, "tydiqa": float(s["tydiqa"]["random"]),
            "mgsm": float(s["mgsm"]["random"])}
    out = []
    for column, name in TABLE5_COMPONENTS:
        score, r = float(row[column]), base[name.split("_", 1)[0]]
        out.append({"component": name, "score": score, "random": r,
                    "normalized": 100.0 * (score - r) / (100.0 - r)})
    df = pd.DataFrame(out)
    mean = float(df["normalized"].mean())
    check = scores.normalized_average_from_scores(dict(zip(df["component"], df["score"],
                                                           strict=True)), bbh_random=rb)
    summary = {"by_hand": mean, "scores_module": check, "printed": float(row["norm_avg"]),
               "difference": mean - float(row["norm_avg"])}
    return df, summary
