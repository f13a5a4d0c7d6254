"""Few-shot prompts as in the collection (issue 11 parts 3-5): <= 5 exemplars or as many as fit a
budget in model tokens, no exemplar duplicating the query, load-time dedup, missing data,
num_examples: auto, second-pass warning."""

from __future__ import annotations

import random

import pytest

from flan_nb.data import fewshot, formats, mixing, mixture_plan, mixture_size, templates
from flan_nb.data.registry import Task


def _task(tid: str, collection: str = "cot", template_set: str = "strategyqa") -> Task:
    return Task(id=tid, collection=collection, dataset=tid, category="c", language="en", source={},
                size=None, license="", held_out=False, template_set=template_set)


def test_dedupe_rows_by_normalized_input():
    rows = [{"inputs": "Is it wet?", "targets": "yes", "example_id": "1"},
            {"inputs": "is  it WET?", "targets": "no", "example_id": "2"},
            {"inputs": "Is it dry?", "targets": "no", "example_id": "3"}]
    kept, dropped = fewshot.dedupe_rows(rows)
    assert dropped == 1 and [r["example_id"] for r in kept] == ["1", "3"]


def test_real_strategyqa_duplicate_is_dropped_and_never_an_exemplar(data_root):
    from flan_nb.data import loaders, registry

    task = registry.load_registry().get("cot_strategyqa")
    rows = loaders.load_task(task, data_root, seed=0).to_list()
    keys = [fewshot.input_key(r) for r in rows]
    dup = next(k for k in keys if keys.count(k) > 1)  # the mirror holds two identical rows
    twins = [i for i, k in enumerate(keys) if k == dup]
    # without dedup, exemplar picking must still never show the twin of the query
    rng = random.Random(0)
    for _ in range(200):
        ex = fewshot.pick_exemplars(rows, twins[0], 5, rng)
        assert all(fewshot.input_key(e) != dup for e in ex)
    kept, dropped = fewshot.dedupe_rows(rows)
    assert dropped == len(rows) - len(set(keys)) >= 1 and len(kept) == len(set(keys))


def test_renderer_uses_at_most_five_or_fills_to_the_token_budget():
    pool = [{"inputs": f"Question number {i} about things?", "targets": "yes", "rationale": f"r{i}.",
             "options": [], "example_id": str(i)} for i in range(40)]
    task = _task("t")
    with pytest.raises(Exception, match="max_exemplars"):
        formats.FormatRatios(1.0, 0.0, 0.0, 6, 0)
    few = formats.Renderer(formats.FormatRatios(1.0, 0.0, 0.0, 5, 0, 0.0, "whitespace"))
    rng = random.Random(1)
    counts = {few.render(task, 0, pool, rng)[0].count("Question number") - 1 for _ in range(200)}
    assert counts == {1, 2, 3, 4, 5}
    fill = formats.Renderer(formats.FormatRatios(1.0, 0.0, 0.0, 5, 1920, 1.0, "builtin:mini-t5"))
    for _ in range(20):
        inputs, *_ = fill.render(task, 0, pool, rng)
        assert inputs.count("Question number") - 1 == fewshot.FILL_DRAW  # all fit in 1,920 bytes
    tight = formats.Renderer(formats.FormatRatios(1.0, 0.0, 0.0, 5, 200, 1.0, "builtin:mini-t5"))
    count = fewshot.token_counter("builtin:mini-t5").count
    for _ in range(20):
        inputs, *_ = tight.render(task, 0, pool, rng)
        assert count(inputs) <= 200 and 1 <= inputs.count("Question number") - 1 < fewshot.FILL_DRAW


def test_token_counter_units():
    assert fewshot.token_counter("whitespace").count("a b  c") == 3
    byte = fewshot.token_counter("builtin:mini-t5")
    assert byte.count("abc") == 3 and "builtin:mini-t5" in byte.unit


def test_missing_is_an_error_listing_every_task_unless_allowed():
    tasks = [_task("a", "cot"), _task("b", "cot")]
    miss = mixture_plan.missing_data(["cot", "niv2"], {"cot": 0.5, "niv2": 0.5}, tasks[:1],
                                     {"b": "file b.tsv not found", "n1": "no such file"}, [],
                                     {"a": "cot", "b": "cot", "n1": "niv2"})
    assert miss["partial"] and miss["collections"] == {"niv2": "no loadable task"}
    with pytest.raises(mixing.MixingError) as err:
        mixture_plan.check_missing(miss, preset="p", allow_missing=False)
    text = str(err.value)
    assert "niv2" in text and "b" in text and "n1" in text and "allow_missing" in text
    mixture_plan.check_missing(miss, preset="p", allow_missing=True)  # no raise


def test_build_mixture_proportion_b_offline_fails_then_runs_partial(tmp_path, monkeypatch, data_root):
    from flan_nb import runs

    monkeypatch.setenv("FLAN_NB_SCRATCH", str(tmp_path / "run"))
    monkeypatch.setenv("FLAN_NB_ARTIFACTS", str(tmp_path / "artifacts"))
    base = dict(seed=0, preset="tasks_9", num_examples=300, rates={}, caps={}, fs_fraction=0.5,
                opt_fraction=0.5, cot_fraction=1.0, max_exemplars=5, max_input_tokens=1920,
                fill_fraction=0.2, tokenizer="whitespace", allow_missing=False,
                synthetic_examples_per_family=60, max_examples_per_task=200, contamination=False,
                workers=1, data_root=str(data_root), run_dir="", params_file="")
    with pytest.raises(mixing.MixingError, match="partial"):
        mixing.build_mixture(mixing.MixingParams(**base), runs.open_run("", notebook="01_data_mixing"),
                             progress=False)
    run = runs.open_run("", notebook="01_data_mixing")
    manifest = mixing.build_mixture(mixing.MixingParams(**{**base, "allow_missing": True}), run,
                                    progress=False)
    assert manifest["partial"] and manifest["missing"]["tasks"]
    assert run.read_metrics()["mixing"]["partial"] is True


def test_auto_num_examples_from_the_training_budget(tmp_path):
    from flan_nb.data import synthetic

    params = tmp_path / "p.yaml"
    params.write_text("notebooks:\n  02_finetune: {model: 'builtin:micro-t5', steps: 10, batch_size: 4,"
                      " input_len: 256, target_len: 64, packing: best_fit}\n", encoding="utf-8")
    fams = synthetic.training_families()[:3]
    data = [mixing.TaskData(_task(f"synthetic_{f}", "synthetic", f), synthetic.generate(f, 50, 0))
            for f in fams]
    ratios = formats.FormatRatios(0.5, 0.5, 0.5, 2, 200, 0.0, "builtin:micro-t5")
    out = mixture_size.auto_num_examples(data, rates={"synthetic": 1.0}, caps={"synthetic": 1000},
                                         ratios=ratios, seed=0, params_file=str(params))
    assert out["packed_rows"] == 40 and out["examples_per_row"] > 1
    assert out["num_examples"] == pytest.approx(40 * out["examples_per_row"] * 1.1, abs=1)
    with pytest.raises(mixing.MixingError, match="params file"):
        mixture_size.train_budget("")


def test_manifest_states_expected_passes(tmp_path):
    rows = [{"inputs": f"q {i}", "targets": "a", "rationale": "r", "options": [], "example_id": str(i)}
            for i in range(50)]
    m = mixing.mix([mixing.TaskData(_task("c"), rows)], rates={"cot": 1.0}, caps={"cot": 100},
                   num_examples=120, seed=0, ratios=formats.FormatRatios(0.5, 0.0, 0.5, 2, 0),
                   out_dir=tmp_path / "m", progress=False)
    assert m["per_collection"]["cot"]["expected_passes"] == pytest.approx(120 / 50)


def test_stream_warns_on_second_pass():
    from flan_nb.train import stream

    data = stream.TokenizedMixture([[5, 1], [6, 1]], [[7, 1], [8, 1]], ["a", "a"], 0, 0)
    s = stream.RowStream(data, kind="seq2seq", input_len=8, target_len=8, method="none", seed=0)
    s.take(2)
    with pytest.warns(UserWarning, match="second pass"):
        s.take(1)
    assert s.epoch == 1


def test_templates_never_count_past_budget_with_a_tokenizer():
    tset = templates.load_template_set("gsm8k")
    ex = {"inputs": "What is 2+2?", "targets": "4", "rationale": "2+2=4.", "options": []}
    shots = [dict(ex, inputs=f"What is {i}+{i}?") for i in range(10)]
    count = fewshot.token_counter("builtin:mini-t5").count
    r = templates.render(ex, tset, fmt="fs_noopt", cot=True, rng=random.Random(0), exemplars=shots,
                         max_input_tokens=400, count_tokens=count)
    assert count(r.inputs) <= 400 and 1 <= r.n_exemplars < 10
