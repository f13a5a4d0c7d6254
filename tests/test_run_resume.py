"""Issue 16 sections 1, 3 (--resume) and 5: training errors name the user's params file, a bad
`python -m flan_nb.train` leaves no folder, `flan-nb run --resume` continues a run, progress is
streamed, a failed notebook reports its exception, and recorded paths are project-relative."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from flan_nb import cli, config, pipeline, runs
from flan_nb.report import records
from flan_nb.train import __main__ as train_main
from flan_nb.train import launcher

TESTS = Path(__file__).resolve().parent


def toy_notebook(folder: Path, name: str) -> Path:
    """A notebook that prints a tqdm bar, then fails while the file `required_path` exists."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'steps: int = 2\nrate: float = 0.5\nname: str = "toy"\ntags: list = ["a"]\n'
        'fail: bool = False\nrequired_path: str = ""\nrun_dir: str = ""\nparams_file: str = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell(
            "from pathlib import Path\nfrom tqdm import tqdm\nfrom flan_nb import config, runs\n"
            "from pipeline_fixtures import ToyParams\n"
            f'cfg = config.validate(ToyParams, globals(), params_file=params_file, notebook="{name}")\n'
            f'run = runs.open_run(run_dir, notebook="{name}")\n'
            f'print("toy {name} says hello")\n'
            "for _ in tqdm(range(3), desc='toy work'):\n    pass"),
        nbformat.v4.new_code_cell(
            "if cfg.required_path and Path(cfg.required_path).exists():\n"
            "    raise RuntimeError('marker file present: ' + cfg.required_path)\n"
            f'run.write_metrics("{name}", {{"runs": 1}})'),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    return path


@pytest.fixture()
def toys(tmp_path, monkeypatch):
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    for name in ("90_toy", "91_toy"):
        toy_notebook(nb_dir, name)
        monkeypatch.setitem(pipeline.NOTEBOOK_PARAMS, name, "pipeline_fixtures:ToyParams")
    monkeypatch.setenv("PYTHONPATH", str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setattr(pipeline, "notebooks_dir", lambda: nb_dir)
    return nb_dir


@pytest.mark.slow
def test_resume_keeps_complete_notebooks_and_reruns_the_failed_one(tmp_path, toys, capfd):
    marker = tmp_path / "marker"
    marker.write_text("stop")
    params = tmp_path / "p.yaml"
    params.write_text(f"experiment: toy\nnotebooks:\n  90_toy: {{}}\n  91_toy: "
                      f"{{required_path: '{marker}'}}\n")
    results = tmp_path / "results"
    assert cli.main(["--results", str(results), "run", str(params)]) == 1
    out = capfd.readouterr()
    # the CLI message and the manifest give the exception, not a progress-bar line
    assert "RuntimeError: marker file present" in out.err
    assert "toy work" in out.err  # the notebooks' progress bars are streamed
    assert "toy 90_toy says hello" not in out.out  # printed output stays in the notebook
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["notebooks"]["91_toy"]["error"] == f"RuntimeError: marker file present: {marker}"
    def executed_at(name: str) -> str:
        return nbformat.read(str(run_dir / f"{name}.ipynb"), as_version=4).metadata.papermill.start_time

    kept, failed_at = executed_at("90_toy"), executed_at("91_toy")

    marker.unlink()
    assert cli.main(["--results", str(results), "run", "--resume", run_dir.name]) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["resumed"]) == 1
    assert set(manifest["resumed"][0]) == {"at", "git"}
    assert [p for p in results.iterdir() if p.is_dir()] == [run_dir], "no second run directory"
    assert executed_at("90_toy") == kept, "the complete notebook is kept, not re-executed"
    assert executed_at("91_toy") != failed_at
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["90_toy"]["runs"] == 1 and metrics["91_toy"]["runs"] == 1


def test_resume_refuses_changed_params_and_unknown_runs(tmp_path, toys, capsys):
    params = tmp_path / "p.yaml"
    params.write_text("experiment: toy\nnotebooks:\n  90_toy: {}\n")
    results = tmp_path / "results"
    resolved = pipeline.resolve(config.load_params_file(params), str(params))
    run = runs.create_run("toy", resolved, results)
    runs.write_json(run.path / "manifest.json", {
        "params_file": str(params), "params_sha256": runs.params_hash(resolved),
        "status": "running", "notebooks": {"90_toy": {"status": "running"}}})
    params.write_text("experiment: toy\nnotebooks:\n  90_toy: {steps: 7}\n")
    assert cli.main(["--results", str(results), "run", "--resume", run.run_id]) == 2
    assert "no longer resolves to the params of run" in capsys.readouterr().err
    assert cli.main(["--results", str(results), "run", "--resume", "nope"]) == 2
    assert cli.main(["--results", str(results), "run"]) == 2
    assert "give a params file" in capsys.readouterr().err


def test_error_text_prefers_the_notebook_exception():
    class CellError(Exception):
        ename, evalue = "ValueError", "bad thing"

    assert pipeline._error_text(CellError("train: 100%|####| 5/5 [00:01<00:00]")) == \
        "ValueError: bad thing"
    assert pipeline._error_text(OSError("disk full")) == "OSError: disk full"
    CellError.evalue = "lr too high\n--- stderr tail ---\nwarning"
    assert pipeline._error_text(CellError()) == "ValueError: lr too high"


# ---------------------------------------------------------------------------------------------
# python -m flan_nb.train


def test_bad_train_params_leave_no_results_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLAN_NB_RESULTS", str(tmp_path / "results"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\nnotebooks:\n  02_finetune: {steps: -5}\n")
    assert train_main.main([str(bad), "--no-progress"]) == 2
    assert "`steps`" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_training_errors_name_the_users_params_file(tmp_path, monkeypatch, capsys):
    launch_copy = tmp_path / "run" / "train" / "launch_params.yaml"
    launch_copy.parent.mkdir(parents=True)
    launch_copy.write_text("experiment: 02_finetune\nnotebooks:\n  02_finetune: {dropout: 1.5}\n")
    code = train_main.main([str(launch_copy), "--run-dir", str(tmp_path / "run"),
                            "--params-origin", "params/mine.yaml", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "params file params/mine.yaml" in err and "launch_params" not in err
    cmd = launcher.command(launch_copy, tmp_path / "run", params_origin="params/mine.yaml")
    assert cmd[-2:] == ["--params-origin", "params/mine.yaml"]


# ---------------------------------------------------------------------------------------------
# paths relative to the project


def test_project_relative_paths():
    root = config.project_root()
    assert config.project_relative(str(root / "artifacts" / "r1" / "checkpoint" / "final")) == \
        "artifacts/r1/checkpoint/final"
    assert config.project_relative("google/flan-t5-small") == "google/flan-t5-small"
    assert config.project_relative("builtin:micro-t5") == "builtin:micro-t5"
    assert config.project_relative("/elsewhere/model") == "/elsewhere/model"
    metrics = {"mmlu": {"meta": {"model": str(root / "artifacts" / "r1" / "final")}}}
    assert records.model_of(metrics) == "artifacts/r1/final"


def test_manifest_params_file_is_project_relative(tmp_path, monkeypatch):
    import copy

    resolved = {"experiment": "x", "notebooks": {}}
    run, manifest = pipeline._new_run(config.project_root() / "params" / "demo.yaml",
                                      copy.deepcopy(resolved), [], None, tmp_path)
    assert manifest["params_file"] == "params/demo.yaml"


@pytest.mark.slow
def test_resume_continues_training_from_its_last_checkpoint(tmp_path, monkeypatch):
    import shutil

    from test_train import make_mixture

    from flan_nb.train import checkpoints

    monkeypatch.setenv("FLAN_NB_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    mix = make_mixture(tmp_path / "mix", 60)
    params = tmp_path / "train.yaml"
    params.write_text(
        "experiment: resume\nnotebooks:\n  02_finetune: {model: 'builtin:micro-t5', "
        f"mixture_path: '{mix}', steps: 6, batch_size: 4, input_len: 64, target_len: 8, "
        "checkpoint_every: 2, keep_last_k: 0, log_every: 1}\n")
    results = tmp_path / "results"
    assert cli.main(["--results", str(results), "run", "--no-progress", str(params)]) == 0
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    run = runs.open_run(str(run_dir))
    # make it look like the process died after the step-4 checkpoint
    ckpt_root = run.artifacts / "checkpoints"
    for ckpt in ckpt_root.iterdir():
        if ckpt.name > "step_000004":
            shutil.rmtree(ckpt)
    shutil.rmtree(run.artifacts / "checkpoint" / "final", ignore_errors=True)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["status"] = "running"
    manifest["notebooks"]["02_finetune"] = {"status": "running"}
    runs.write_json(run_dir / "manifest.json", manifest)
    assert checkpoints.latest(ckpt_root).step == 4

    assert cli.main(["--results", str(results), "run", "--no-progress", "--resume",
                     run_dir.name]) == 0
    summary = json.loads((run_dir / "train" / "summary.json").read_text())
    assert summary["resumed_from"].endswith("step_000004") and summary["steps"] == 6
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"


def _half_done_run(tmp_path: Path) -> tuple[Path, Path, runs.Run]:
    """A run of 90_toy (complete) and 91_toy (failed), as a stopped run leaves it."""
    params = tmp_path / "p.yaml"
    params.write_text("experiment: toy\nnotebooks:\n  90_toy: {}\n  91_toy: {steps: 3}\n")
    results = tmp_path / "results"
    resolved = pipeline.resolve(config.load_params_file(params), str(params))
    run = runs.create_run("toy", resolved, results)
    runs.write_json(run.path / "params.json", resolved)
    runs.write_json(run.path / "manifest.json", {
        "params_file": str(params), "params": resolved, "params_sha256": runs.params_hash(resolved),
        "status": "failed", "notebooks": {"90_toy": {"status": "complete"},
                                          "91_toy": {"status": "failed"}}})
    return params, results, run


def test_resume_amend_records_changed_params_of_unfinished_notebooks(tmp_path, toys):
    params, results, run = _half_done_run(tmp_path)
    params.write_text("experiment: toy\ndescription: smaller\nnotebooks:\n  90_toy: {}\n"
                      "  91_toy: {steps: 1}\n")
    with pytest.raises(config.ParamsError, match="add --amend"):
        pipeline._resume_run(run.run_id, None, results, toys)
    _, manifest, _ = pipeline._resume_run(run.run_id, None, results, toys, amend=True)
    (entry,) = manifest["amended"]
    assert entry["notebooks"] == {"91_toy": {"steps": {"from": 3, "to": 1}}}
    assert entry["params_sha256_before"] != entry["params_sha256"] == manifest["params_sha256"]
    assert manifest["params"]["notebooks"]["91_toy"]["steps"] == 1
    assert entry["description"] == {"from": "", "to": "smaller"}
    assert manifest["description"] == "smaller" and manifest["status"] == "running"
    on_disk = json.loads((run.path / "manifest.json").read_text())
    assert on_disk["amended"] == manifest["amended"]
    assert json.loads((run.path / "params.json").read_text())["notebooks"]["91_toy"]["steps"] == 1


@pytest.mark.parametrize("text, message", [
    ("experiment: toy\nnotebooks:\n  90_toy: {steps: 9}\n  91_toy: {steps: 3}\n",
     "notebook 90_toy is complete, but its params changed"),
    ("experiment: other\nnotebooks:\n  90_toy: {}\n  91_toy: {steps: 3}\n",
     "top-level experiment changed"),
    ("experiment: toy\nnotebooks:\n  90_toy: {}\n", "the notebook list changed"),
])
def test_resume_amend_refuses_changes_a_complete_notebook_ran_with(tmp_path, toys, text, message):
    params, results, run = _half_done_run(tmp_path)
    before = (run.path / "manifest.json").read_text()
    params.write_text(text)
    with pytest.raises(config.ParamsError, match=message):
        pipeline._resume_run(run.run_id, None, results, toys, amend=True)
    assert (run.path / "manifest.json").read_text() == before, "nothing half-written"


def test_resume_amend_of_the_description_alone_is_recorded(tmp_path, toys):
    params, results, run = _half_done_run(tmp_path)
    params.write_text("experiment: toy\ndescription: now with words\nnotebooks:\n  90_toy: {}\n"
                      "  91_toy: {steps: 3}\n")
    _, manifest, _ = pipeline._resume_run(run.run_id, None, results, toys, amend=True)
    (entry,) = manifest["amended"]
    assert entry["notebooks"] == {} and entry["description"]["to"] == "now with words"
    # the manifest took the new params: a plain resume now matches them
    manifest["status"] = "failed"
    runs.write_json(run.path / "manifest.json", manifest)
    _, again, _ = pipeline._resume_run(run.run_id, None, results, toys)
    assert len(again["amended"]) == 1 and len(again["resumed"]) == 2


def test_amend_needs_resume(tmp_path):
    with pytest.raises(config.ParamsError, match="--amend goes with --resume"):
        pipeline.run(tmp_path / "p.yaml", results_root=tmp_path / "r", amend=True)
