from __future__ import annotations

import json

import pytest

from flan_nb import runs


def test_run_ids_are_unique_and_never_reused(tmp_path, monkeypatch):
    params = {"experiment": "x", "notebooks": {}}
    run = runs.create_run("x", params, tmp_path)
    assert run.run_id.endswith(runs.params_hash(params)[:8])
    # same second + same params -> same id: refuse rather than overwrite (the id is pinned so the
    # clash does not depend on both calls landing in the same second)
    monkeypatch.setattr(runs, "make_run_id", lambda *_args, **_kw: run.run_id)
    with pytest.raises(FileExistsError):
        runs.create_run("x", params, tmp_path)


def test_outputs_metrics_and_missing_output(tmp_path):
    run = runs.Run(path=tmp_path, run_id="r", notebook="01_data_mixing")
    run.record_output("mixture_path", "/m")
    assert run.output("mixture_path") == "/m"
    with pytest.raises(runs.MissingOutput, match="run 02_finetune in this run first"):
        run.output("checkpoint_path")
    run.write_metrics("mmlu", {"direct": {"score": 30.0}})
    run.write_metrics("mmlu", {"cot": {"score": 20.0}})
    assert run.read_metrics()["mmlu"] == {"direct": {"score": 30.0}, "cot": {"score": 20.0}}
    assert not list(tmp_path.glob(".*.tmp")), "atomic writes leave no temp files"


def test_index_lists_runs_with_headline_metrics(tmp_path):
    run = runs.create_run("exp", {"a": 1}, tmp_path)
    runs.write_json(run.path / "manifest.json", {"experiment": "exp", "status": "complete",
                                                 "params_sha256": "abc"})
    run.write_metrics("bbh", {"cot": {"score": 12.5}})
    index = runs.rebuild_index(tmp_path)
    lines = index.read_text().splitlines()
    assert lines[0].startswith("run_id,experiment,status")
    assert "12.5" in lines[1] and "complete" in lines[1]
    assert runs.load_run(run.path).headline["bbh_cot"] == 12.5


def test_scratch_run_is_shared_between_notebooks(tmp_path, monkeypatch):
    monkeypatch.setenv(runs.SCRATCH_ENV, str(tmp_path / "s"))
    a = runs.open_run("", notebook="01")
    a.record_output("mixture_path", "m")
    b = runs.open_run("", notebook="02")
    assert b.output("mixture_path") == "m"
    assert json.loads((tmp_path / "s" / "outputs.json").read_text())["mixture_path"]["notebook"] == "01"


def test_find_run_by_path_id_or_unique_part(tmp_path):
    for name in ("20260101T000000Z-demo-aaaa", "20260101T000100Z-demo-bbbb", "20260102T000000Z-eval-cccc"):
        (tmp_path / name).mkdir()
        runs.write_json(tmp_path / name / "manifest.json", {"run_id": name})
    assert runs.find_run("eval", tmp_path) == tmp_path / "20260102T000000Z-eval-cccc"
    assert runs.find_run(str(tmp_path / "20260101T000000Z-demo-aaaa")) == tmp_path / "20260101T000000Z-demo-aaaa"
    with pytest.raises(FileNotFoundError, match=r"2 runs \(20260101T000000Z-demo-aaaa, 20260101T000100Z-demo-bbbb\)"):
        runs.find_run("demo", tmp_path)
    with pytest.raises(FileNotFoundError, match="'nope': no run match"):
        runs.find_run("nope", tmp_path)
