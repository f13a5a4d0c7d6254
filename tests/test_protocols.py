"""Evaluation protocols (issue 12): resolution, recording, marking and the shipped files."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

from flan_nb import cli, config, pipeline, preview
from flan_nb.eval import protocols
from flan_nb.report import compare, sweeps, tables

PROJECT = Path(__file__).resolve().parent.parent
PARAMS = PROJECT / "params"
FIX = Path(__file__).parent / "fixtures" / "report"
EVALS = ("03_eval_mmlu", "04_eval_bbh", "05_eval_tydiqa", "06_eval_mgsm")
GPU_RECIPES = sorted(PARAMS.glob("flan-t5-*.yaml")) + [PARAMS / "flan-palm-style-smollm2.yaml"]
GPU_SWEEPS = [PARAMS / "sweeps" / "task_scaling.yaml", PARAMS / "sweeps" / "cot_ablation.yaml"]
PAPER = protocols.get("paper")


def _assert_paper(sections: dict, where: str) -> None:
    for nb in EVALS:
        sec = sections[nb]
        assert sec["protocol"] == "paper", f"{where} {nb}"
        assert {k: sec[k] for k in protocols.KEYS} == PAPER, f"{where} {nb}"
        assert protocols.overrides(sec) == {}, f"{where} {nb}"


def test_paper_protocol_values():
    assert PAPER["max_per_subtask"] == 0 and PAPER["max_context"] == 0 and PAPER["split"] == ""
    # longest official exemplar chain: 768 SmolLM2 tokens (bbh geometric_shapes); see the YAML
    assert PAPER["max_new_tokens_cot"] >= 1024
    assert protocols.get("quick")["max_per_subtask"] == 5
    assert protocols.get("quick")["max_new_tokens_cot"] == 64
    with pytest.raises(config.ParamsError, match="unknown protocol 'papr'.*paper"):
        protocols.get("papr")


@pytest.mark.parametrize("path", GPU_RECIPES, ids=lambda p: p.stem)
def test_gpu_recipes_evaluate_what_they_train_under_paper(path):
    resolved = pipeline.resolve(config.load_params_file(path), str(path))["notebooks"]
    assert list(resolved) == ["01_data_mixing", "02_finetune", *EVALS, "07_tables"]
    _assert_paper(resolved, path.name)
    assert all(resolved[nb]["model"] == "" for nb in EVALS)  # this run's checkpoint


@pytest.mark.parametrize("path", GPU_SWEEPS, ids=lambda p: p.stem)
def test_gpu_sweeps_evaluate_every_point_under_paper(path):
    points = preview.sweep_points(path)
    assert len(points) >= 9
    for point in points:
        _assert_paper(point["params"]["notebooks"], f"{path.name} {point['label']}")
    # the same through the sweep expansion the runner uses
    for point in sweeps.expand(sweeps.load_sweep(path), hash_fn=lambda p, w: ""):
        assert all(point.params["notebooks"][nb]["protocol"] == "paper" for nb in EVALS)


def test_explicit_key_overrides_one_value_and_is_recorded(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"experiment": "x", "notebooks": {
        "03_eval_mmlu": {"protocol": "paper", "max_per_subtask": 5}}}))
    sec = pipeline.resolve(config.load_params_file(path), str(path))["notebooks"]["03_eval_mmlu"]
    assert sec["max_per_subtask"] == 5
    assert {k: sec[k] for k in protocols.KEYS if k != "max_per_subtask"} == \
        {k: v for k, v in PAPER.items() if k != "max_per_subtask"}
    assert protocols.record(sec) == {"protocol": "paper", "protocol_overrides": {
        "max_per_subtask": {"protocol": 0, "used": 5}}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"experiment": "x", "notebooks": {"04_eval_bbh": {"protocol": "fast"}}}))
    with pytest.raises(config.ParamsError, match="unknown protocol 'fast'.*bad.yaml"):
        pipeline.resolve(config.load_params_file(bad), str(bad))


def test_notebook_default_is_quick():
    sec = preview.resolve_file(PARAMS / "demo.yaml")["notebooks"]["03_eval_mmlu"]
    assert sec["protocol"] == "quick" and sec["max_new_tokens_cot"] == 64
    assert sec["max_per_subtask"] == 12  # demo.yaml's own subsample: an override of quick's 5
    assert set(protocols.overrides(sec)) == {"max_per_subtask"}


def test_every_shipped_params_and_sweep_file_states_its_protocol():
    files = sorted(PARAMS.glob("*.yaml")) + sorted((PARAMS / "sweeps").glob("*.yaml"))
    assert len(files) > 20
    for path in files:
        text = path.read_text()
        raw = yaml.safe_load(text)
        base = raw.get("base") if isinstance(raw.get("base"), dict) else {}
        sections = {**(base.get("notebooks") or {}), **(raw.get("notebooks") or {})}
        evals = [nb for nb in EVALS if nb in sections]
        set_keys = raw.get("set") or {}
        if evals:
            assert all("protocol" in (sections[nb] or {}) for nb in evals), path.name
        elif any(k.endswith(".protocol") for k in set_keys):
            assert all(set_keys.get(f"notebooks.{nb}.protocol") == "paper" for nb in EVALS)
        else:
            assert "# Protocol: none" in text, path.name
    for path in sorted((PARAMS / "sweeps").glob("*_tiny.yaml")):
        points = preview.sweep_points(path)
        assert all(p["params"]["notebooks"][nb]["protocol"] == "quick"
                   for p in points for nb in EVALS if nb in p["params"]["notebooks"])


def test_deviations_name_every_departure():
    meta = {"protocol": "paper", "subsampled": False, "n_per_subtask": None, "max_context": 2048,
            "model_context": 2048, "max_new_tokens_cot": 1024, "settings": ["direct", "cot"],
            "split": "validation"}
    assert protocols.deviations(meta, "mmlu") == []
    quick = {**meta, "protocol": "quick", "subsampled": True, "n_per_subtask": 5,
             "max_context": 512, "max_new_tokens_cot": 64, "split": "test"}
    assert protocols.deviations(quick, "mmlu") == [
        "protocol quick", "subsampled", "shorter context", "shorter chains", "test split"]
    assert protocols.deviations({}, "bbh") == ["protocol not recorded"]


def _fake_run(tmp_path: Path, name: str, meta: dict) -> Path:
    run = tmp_path / name
    shutil.copytree(FIX / "run_a", run)
    metrics = json.loads((run / "metrics.json").read_text())
    for bench in ("mmlu", "bbh", "tydiqa", "mgsm"):
        metrics[bench]["meta"] = {**metrics[bench]["meta"], **meta}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


PAPER_META = {"protocol": "paper", "protocol_overrides": {}, "subsampled": False,
              "n_per_subtask": None, "max_context": 2048, "model_context": 2048,
              "max_new_tokens_cot": 1024, "split": "validation", "settings": ["direct", "cot"]}


def test_a_non_paper_row_is_marked_in_the_table(tmp_path):
    paper = _fake_run(tmp_path, "run_paper", PAPER_META)
    quick = _fake_run(tmp_path, "run_quick", {**PAPER_META, "protocol": "quick", "subsampled": True,
                                              "n_per_subtask": 5, "max_new_tokens_cot": 64})
    frame = tables.table5([paper, quick], paper="none")
    assert sorted(frame["Protocol"]) == [
        "not paper: protocol quick, subsampled, shorter chains", "paper"]
    from flan_nb.report import export

    assert any(n.startswith("not paper") for n in export.data_notes(frame))
    assert "not paper" in export.to_markdown(frame)


def test_compare_warns_on_mixed_protocols_and_subsamples(tmp_path):
    paper = _fake_run(tmp_path, "run_paper", PAPER_META)
    quick = _fake_run(tmp_path, "run_quick", {**PAPER_META, "protocol": "quick", "n_per_subtask": 5})
    text = compare.compare_runs(paper, quick).text()
    assert "warning: mmlu: runs used different protocols (A: paper; B: quick)" in text
    assert "warning: bbh: runs used different subsamples" in text
    same = compare.compare_runs(paper, paper).text()
    assert "warning:" not in same


def _cli_json(argv: list[str]) -> object:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0
    return json.loads(out.getvalue())


def test_resolve_and_dry_run_json_shapes():
    got = _cli_json(["resolve", str(PARAMS / "flan-t5-small.yaml"), "--json"])
    assert set(got) == {"notebooks"}
    assert got["notebooks"]["04_eval_bbh"]["max_new_tokens_cot"] == PAPER["max_new_tokens_cot"]
    assert got["notebooks"]["02_finetune"]["steps"] > 0
    points = _cli_json(["sweep", str(PARAMS / "sweeps" / "cot_ablation.yaml"), "--dry-run", "--json"])
    assert isinstance(points, list) and len(points) == 9
    assert all(set(p) == {"label", "params"} and set(p["params"]) == {"notebooks"} for p in points)
    assert points[0]["label"] == "model-small__variant-no-cot"
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert cli.main(["resolve", str(PARAMS / "demo.yaml")]) == 0
    assert "03_eval_mmlu  [protocol quick; overrides: max_per_subtask 5 -> 12]" in text.getvalue()


def test_cot_budget_measurement_on_the_official_exemplars():
    root = config.data_root()
    if root is None or not (root / "mmlu" / "mmlu-cot.json").is_file():
        pytest.skip("needs the offline mirror ($FLAN_NB_DATA)")
    from flan_nb import models

    rows = protocols.measure_exemplar_chains(root, models.load("builtin:micro-t5").tokenizer)
    assert len(rows) == 27 * 3 + sum(1 for r in rows if r["source"].startswith("mmlu/"))
    longest = rows[0]
    # byte-level: one token a byte; the figure documented in protocols.yaml
    assert (longest["source"], longest["tokens"], longest["words"]) == \
        ("bbh/geometric_shapes#3", 1799, 300)
    assert PAPER["max_new_tokens_cot"] > max(r["words"] for r in rows) * 3


def test_resolve_text_says_what_the_defaults_stand_for(capsys):
    """`flan-nb resolve` shows the values only the model or the data fix (issue 12: see before
    spending): a T5's 2,048 context, MMLU's validation split on the hub, this run's checkpoint."""
    from flan_nb import preview

    assert preview.main(str(PARAMS / "flan-t5-base.yaml"), sweep=False, as_json=False) == 0
    out = capsys.readouterr().out
    mmlu = out.split("03_eval_mmlu")[1].split("04_eval_bbh")[0]
    assert "max_context: 0   # = the model's real context: 2,048" in mmlu
    assert 'split: ""   # = validation' in mmlu
    assert "02_finetune checkpoint (google/t5-base-lm-adapt)" in mmlu
