"""Sweep expansion, deep-set/drop, and the skip-if-complete logic, with a fake pipeline runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from flan_nb import config, pipeline, runs, value_checks
from flan_nb.report import sweeps

ROOT = Path(__file__).resolve().parent.parent

BASE = {
    "experiment": "base",
    "description": "base params",
    "notebooks": {
        "01_data_mixing": {"seed": 0, "preset": "synthetic"},
        "02_finetune": {"model": "builtin:tiny-t5", "steps": 10},
        "03_eval_mmlu": {"max_items": 4},
    },
}
SWEEP = {
    "name": "grid",
    "description": "test grid",
    "base": "base.yaml",
    "set": {"notebooks.02_finetune.steps": 5},
    "axes": [
        {"name": "tasks", "values": [
            {"label": "0", "tags": {"n_tasks": 0},
             "drop": ["notebooks.01_data_mixing", "notebooks.02_finetune"]},
            {"label": "9", "tags": {"n_tasks": 9}, "set": {"notebooks.01_data_mixing.preset": "cot"}},
            {"label": "89", "tags": {"n_tasks": 89},
             "set": {"notebooks.01_data_mixing.preset": "cot_muffin"}},
        ]},
        {"name": "model", "keys": ["notebooks.02_finetune.model", "notebooks.03_eval_mmlu.model"],
         "values": ["builtin:tiny-t5", "google/flan-t5-small"]},
    ],
}


def plain_hash(params, params_file=""):
    return runs.params_hash(params)


@pytest.fixture
def sweep_file(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(SWEEP, sort_keys=False))
    return path


class FakeRunner:
    """Writes a run dir + manifest as pipeline.run would; fails the labels in `fail`."""

    def __init__(self, fail=()):
        self.calls: list[str] = []
        self.fail = set(fail)

    def __call__(self, params_file, *, results_root):
        params = yaml.safe_load(Path(params_file).read_text())
        label = Path(params_file).stem
        self.calls.append(label)
        run_id = f"run{len(list(Path(results_root).glob('run*')))}-{label}"
        run_dir = Path(results_root) / run_id
        run_dir.mkdir(parents=True)
        status = "failed" if label in self.fail else "complete"
        runs.write_json(run_dir / "manifest.json", {
            "run_id": run_id, "experiment": params["experiment"], "status": status,
            "params": params, "params_sha256": plain_hash(params)})
        if status == "failed":
            raise pipeline.PipelineError(f"run {run_id} failed in 02_finetune", run_dir)
        return run_dir


def test_expand_grid(sweep_file):
    points = sweeps.expand(sweeps.load_sweep(sweep_file), hash_fn=plain_hash)
    assert [p.label for p in points] == [
        "tasks-0__model-tiny-t5", "tasks-0__model-flan-t5-small",
        "tasks-9__model-tiny-t5", "tasks-9__model-flan-t5-small",
        "tasks-89__model-tiny-t5", "tasks-89__model-flan-t5-small"]
    p0, p9 = points[1], points[3]
    # 0 tasks = no finetuning: mixing and finetune notebooks dropped, the eval keys still set
    assert list(p0.params["notebooks"]) == ["03_eval_mmlu"]
    assert p0.params["notebooks"]["03_eval_mmlu"] == {"max_items": 4, "model": "google/flan-t5-small"}
    assert p9.params["notebooks"]["01_data_mixing"] == {"seed": 0, "preset": "cot"}
    assert p9.params["notebooks"]["02_finetune"] == {"model": "google/flan-t5-small", "steps": 5}
    assert p9.tags == {"tasks": "9", "n_tasks": 9, "model": "flan-t5-small"}
    assert p9.params["experiment"] == "grid-tasks-9__model-flan-t5-small"
    assert len({p.params_sha256 for p in points}) == 6
    assert BASE["notebooks"]["02_finetune"]["steps"] == 10  # the base is not mutated


def test_deep_set_and_drop_errors_name_the_key():
    params = {"notebooks": {"02_finetune": {"steps": 1}}}
    sweeps.deep_set(params, "notebooks.02_finetune.lr", 0.1)
    assert params["notebooks"]["02_finetune"] == {"steps": 1, "lr": 0.1}
    with pytest.raises(sweeps.SweepError, match=r"'notebooks.02_finetuen' not in the base"):
        sweeps.deep_set(params, "notebooks.02_finetuen.steps", 2)
    with pytest.raises(sweeps.SweepError, match="drop 'notebooks.09_x'"):
        sweeps.deep_delete(params, "notebooks.09_x")


def test_bad_sweep_files(tmp_path, sweep_file):
    bad = dict(SWEEP, colour="red")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(sweeps.SweepError, match=r"unknown keys \['colour'\]"):
        sweeps.load_sweep(path)
    path.write_text(yaml.safe_dump(dict(SWEEP, axes=[{"name": "m", "values": ["a"]}])))
    with pytest.raises(sweeps.SweepError, match=r"axes\[0\].values\[0\]: a scalar value needs"):
        sweeps.load_sweep(path)


def test_run_sweep_skips_complete_points_and_retries_failed(sweep_file, tmp_path):
    results = tmp_path / "results"
    runner = FakeRunner(fail={"tasks-9__model-tiny-t5"})
    record_path = sweeps.run_sweep(sweep_file, results_root=results, runner=runner,
                                   hash_fn=plain_hash)
    assert record_path == results / "sweeps" / "grid.json"
    assert len(runner.calls) == 6
    record = json.loads(record_path.read_text())
    statuses = {p["label"]: p["status"] for p in record["points"]}
    assert statuses.pop("tasks-9__model-tiny-t5") == "failed"
    assert set(statuses.values()) == {"complete"}
    assert record["summary"] == {"complete": 5, "failed": 1}
    failed = next(p for p in record["points"] if p["status"] == "failed")
    assert "PipelineError" in failed["error"] and failed["run_id"].endswith("tasks-9__model-tiny-t5")
    assert (results / "sweeps" / "grid" / "tasks-0__model-tiny-t5.yaml").is_file()

    # second call: the five COMPLETE points are reused, only the failed one runs again
    again = FakeRunner()
    sweeps.run_sweep(sweep_file, results_root=results, runner=again, hash_fn=plain_hash)
    assert again.calls == ["tasks-9__model-tiny-t5"]
    record = json.loads(record_path.read_text())
    assert record["summary"] == {"complete": 6}
    assert sum(p["reused"] for p in record["points"]) == 5
    assert all(p["run_dir"] and Path(p["run_dir"]).is_dir() for p in record["points"])

    # a COMPLETE run made with --only (a subset of the notebooks) does not count as the point
    manifest_file = Path(record["points"][0]["run_dir"]) / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    runs.write_json(manifest_file, {**manifest, "only": ["03_eval_mmlu"]})
    partial = FakeRunner()
    sweeps.run_sweep(sweep_file, results_root=results, runner=partial, hash_fn=plain_hash)
    assert partial.calls == [record["points"][0]["label"]]

    # a changed grid value changes the hash: that point is not mistaken for the old run
    changed = dict(SWEEP, set={"notebooks.02_finetune.steps": 6})
    sweep_file.write_text(yaml.safe_dump(changed, sort_keys=False))
    third = FakeRunner()
    sweeps.run_sweep(sweep_file, results_root=results, runner=third, hash_fn=plain_hash)
    # the two 0-task points drop 02_finetune, so `steps` does not reach them: still reused
    assert sorted(third.calls) == sorted(["tasks-9__model-tiny-t5", "tasks-9__model-flan-t5-small",
                                          "tasks-89__model-tiny-t5", "tasks-89__model-flan-t5-small"])


def test_relative_results_root_means_the_same_place_as_for_pipeline_run(sweep_file, tmp_path,
                                                                      monkeypatch):
    # pipeline.run reads a relative --results against the project root; the sweep must look for
    # finished points there too, wherever it is started from
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir(), elsewhere.mkdir()
    monkeypatch.setattr(config, "project_root", lambda: project)
    monkeypatch.chdir(elsewhere)
    runner = FakeRunner()
    path = sweeps.run_sweep(sweep_file, results_root="res", runner=runner, hash_fn=plain_hash)
    assert path == project / "res" / "sweeps" / "grid.json"
    assert len(runner.calls) == 6 and not any(elsewhere.iterdir())
    again = FakeRunner()
    sweeps.run_sweep(sweep_file, results_root="res", runner=again, hash_fn=plain_hash)
    assert again.calls == []


def test_dry_run_runs_nothing(sweep_file, tmp_path):
    runner = FakeRunner()
    path = sweeps.run_sweep(sweep_file, results_root=tmp_path, runner=runner, dry_run=True,
                            hash_fn=plain_hash)
    assert runner.calls == []
    assert json.loads(path.read_text())["summary"] == {"planned": 6}


@pytest.mark.parametrize("path", sorted((ROOT / "params" / "sweeps").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_repo_sweep_files_expand(path, monkeypatch):
    if not (ROOT.parent / "shared" / "data").is_dir():  # see test_notebooks.test_params_file_validates
        monkeypatch.setattr(value_checks, "DIRECTORY_KEYS", ())
    sweep = sweeps.load_sweep(path)
    # the default hash resolves every point against the notebooks, so a mistyped leaf key (which
    # deep_set may add) fails here and not hours into the sweep
    points = sweeps.expand(sweep)
    assert points and all("notebooks" in p.params for p in points)
