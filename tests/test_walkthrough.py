"""The walkthrough's step functions (notebooks/00_walkthrough.ipynb) on tiny inputs."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from flan_nb import config
from flan_nb import walkthrough as wt
from flan_nb.train import packing

matplotlib.use("Agg")
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "00_walkthrough.ipynb"


class FakeRun:
    """Only what the walkthrough may touch; no record_output, so recording would fail loudly."""

    def __init__(self, path: Path):
        self.artifacts = path


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    run = FakeRun(tmp_path_factory.mktemp("wt_run"))
    manifest, table = wt.sample_mixture(run, seed=0, num_examples=60, cap=8)
    return run, manifest, table


def test_params_match_notebook_parameters_cell():
    cell = config.parameters_cell(NOTEBOOK)
    assert sorted(cell) == sorted(f.name for f in dataclasses.fields(wt.WalkthroughParams))
    cfg = config.validate(wt.WalkthroughParams, cell, notebook="00_walkthrough")
    assert cfg.run_dir == "" and cfg.params_file == ""


def test_render_formats_shows_four_formats_and_cot():
    df = wt.render_formats("comparison", 0)
    plain = df[~df["cot"]]
    assert list(plain["format"]) == ["zs_noopt", "zs_opt", "fs_noopt", "fs_opt"]
    assert len(set(df["template_id"])) == 1, "one template, so only the format changes"
    for _, row in df.iterrows():
        assert (row["n_exemplars"] > 0) == row["format"].startswith("fs")
        listed = "- yes" in row["inputs"] and "- no" in row["inputs"]
        assert listed == row["format"].endswith("_opt")
    cot = df[df["cot"]]
    assert len(cot) == 2
    assert all(len(t) > len(g) for t, g in zip(cot["targets"], plain["targets"][:2], strict=True))


def test_render_formats_rejects_unknown_family():
    with pytest.raises(wt.WalkthroughError, match="not a synthetic training family"):
        wt.render_formats("boolean_logic", 0)  # held out: a benchmark, never trained on


def test_mixture_shares_follow_capped_sizes(mixture):
    _, manifest, table = mixture
    cap = 8
    assert (table["capped"] == np.minimum(table["available"], cap)).all()
    expected = 100.0 * table["capped"] / table["capped"].sum()
    assert np.allclose(table["planned_%"], expected)
    assert table["realized"].sum() == manifest["num_examples"] == 60
    assert math.isclose(table["uncapped_%"].sum(), 100.0)
    # the cap must actually bind for the demo to show anything
    assert (table["available"] > cap).any() and (table["available"] < cap).any()
    counts = wt.format_counts(manifest)
    assert counts["rows"].sum() == 60


def test_encode_pair_truncates_keeping_eos():
    _, tok = wt.micro_t5(64, 1, 0)
    inp, tgt, cut = wt.encode_pair(tok, "x" * 50, "yy", input_len=10, target_len=5)
    assert cut and len(inp) == 10 and inp[-1] == tok.eos_token_id
    assert len(tgt) == 3 and tgt[-1] == tok.eos_token_id


def _toy_batch():
    examples = [([5] * 6, [7] * 3), ([6] * 3, [8] * 2), ([9] * 2, [4] * 1)]
    rows = packing.pack(examples, kind="seq2seq", input_len=12, target_len=8)
    return packing.collate(rows, "seq2seq")


def test_attention_masks_keep_examples_apart():
    batch = _toy_batch()
    masks = wt.attention_masks(batch, 0)
    enc = batch["encoder_segment_ids"][0].numpy()
    dec = batch["decoder_segment_ids"][0].numpy()
    e = masks["encoder self-attention"]
    d = masks["decoder self-attention (causal)"]
    c = masks["cross-attention (decoder -> encoder)"]
    for i in range(len(enc)):
        for j in range(len(enc)):
            if enc[i] > 0:
                assert e[i, j] == (enc[i] == enc[j])
    for i in range(len(dec)):
        if dec[i] == 0:
            continue
        for j in range(len(dec)):
            assert d[i, j] == (dec[i] == dec[j] and j <= i)
        for j in range(len(enc)):
            assert c[i, j] == (dec[i] == enc[j])


def test_plot_packed_batch_draws_segments_and_three_masks():
    batch = _toy_batch()
    assert wt.busiest_row(batch) == 0
    fig = wt.plot_packed_batch(batch)
    titles = [ax.get_title() for ax in fig.axes]
    assert "encoder segment ids" in titles and "decoder segment ids" in titles
    assert sum("attention" in t for t in titles) == 3
    matplotlib.pyplot.close(fig)


def test_pack_mixture_and_few_training_steps_lower_the_loss(mixture):
    run, _, _ = mixture
    torch.manual_seed(0)
    model, tok = wt.micro_t5(64, 1, 0)
    demo = wt.pack_mixture(Path(run.artifacts) / "walkthrough" / "mixture", tok, n=8,
                           input_len=384, target_len=160)
    assert demo.stats["examples"] == 8 and demo.stats["rows"] <= 8
    table = wt.packing_table(demo)
    assert table["examples"].sum() == 8
    log = wt.few_training_steps(model, demo.rows[:1], steps=6, batch_rows=1,
                                learning_rate=0.01, seed=0)
    assert list(log["step"]) == list(range(1, 7))
    assert np.isfinite(log["loss"]).all()
    assert log["loss"].iloc[-1] < log["loss"].iloc[0]
    assert not model.training
    with pytest.raises(wt.WalkthroughError):
        wt.few_training_steps(model, demo.rows, steps=0, batch_rows=1, learning_rate=0.01, seed=0)


def test_cot_item_ideal_generation_extracts_gold():
    item, rationale = wt.bbh_cot_item("multistep_arithmetic", 0)
    text, _ = item.text()
    assert text.rstrip().endswith("A: Let's think step by step.")
    assert rationale and rationale not in text  # the item's own rationale is not in its prompt
    df = wt.cot_walk(item, {"ideal": f"{rationale} So the answer is {item.gold}.",
                            "junk": "gggg"})
    ideal, junk = df.iloc[0], df.iloc[1]
    assert ideal["extracted"] == item.gold and ideal["correct"]
    assert ideal["answer_found"]
    assert junk["extracted"] == wt.NO_ANSWER and not junk["answer_found"] and not junk["correct"]
    with pytest.raises(wt.WalkthroughError, match="not a synthetic BBH subtask"):
        wt.bbh_cot_item("word_sorting", 0)


def test_greedy_generate_returns_text():
    model, tok = wt.micro_t5(64, 1, 0)
    out = wt.greedy_generate(model, tok, "Q: 1 + 1 =\nA:", 5)
    assert isinstance(out, str) and len(out.encode()) <= 5 * 4


def test_normalized_average_by_hand():
    df, summary = wt.normalized_average_by_hand("T5-Small")
    # paper_facts.md: T5-Small's MMLU CoT 5.6 normalizes to -25.9 (4-way baseline 25)
    mmlu_cot = df.set_index("component").loc["mmlu_cot"]
    assert round(mmlu_cot["normalized"], 1) == -25.9
    assert math.isclose(summary["by_hand"], df["normalized"].mean())
    assert math.isclose(summary["by_hand"], summary["scores_module"], abs_tol=1e-9)
    assert list(df["component"]) == ["mmlu_direct", "mmlu_cot", "bbh_direct", "bbh_cot",
                                      "tydiqa_direct", "mgsm_cot"]
    # Flan-T5 rows come within a few tenths of the printed value (BBH normalized in aggregate)
    for model in ("Flan-T5-Small", "Flan-T5-Base", "Flan-T5-Large", "Flan-T5-XL", "Flan-T5-XXL"):
        _, s = wt.normalized_average_by_hand(model)
        assert abs(s["difference"]) < 0.25, (model, s)
    with pytest.raises(wt.WalkthroughError, match="no row"):
        wt.normalized_average_by_hand("Flan-T5-Huge")
