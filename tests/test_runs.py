from __future__ import annotations

import json

import pytest

from flan_nb import config, runs


def test_run_ids_are_unique_and_never_reused(tmp_path, monkeypatch):
    params = {"experiment": "x", "notebooks": {}}
    run = runs.create_run("x", params, tmp_path)
    assert run.run_id.endswith(runs.params_hash(params)[:8])
    # same second + same params -> same id: refuse rather than overwrite (the id is pinned so the
    # clash does not depend on both calls landing in the same second)
    # ... the second run gets a suffix instead of a raw FileExistsError (issue 16)
    monkeypatch.setattr(runs, "make_run_id", lambda *_args, **_kw: run.run_id)
    second = runs.create_run("x", params, tmp_path)
    third = runs.create_run("x", params, tmp_path)
    assert (second.run_id, third.run_id) == (f"{run.run_id}-2", f"{run.run_id}-3")
    assert len({run.path, second.path, third.path}) == 3 and all(
        p.is_dir() for p in (run.path, second.path, third.path))


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
    # a *_path output comes back as a path that works from any working directory
    assert b.output("mixture_path") == str(config.resolve_path("m"))
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


def _manifest(path, **runner):
    runs.write_json(path / "manifest.json", {"experiment": "e", "status": "running",
                                             **({"runner": runner} if runner else {})})


def test_running_status_checks_the_runner_process(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cases = {
        "alive": dict(runs.runner_info()),
        "dead": {"pid": dead.pid, "host": socket.gethostname(), "pid_started": None},
        "elsewhere": {"pid": 1, "host": "another-host.invalid", "pid_started": None},
        "legacy": {},
    }
    for name, runner in cases.items():
        (tmp_path / name).mkdir()
        _manifest(tmp_path / name, **runner)
    status = {info.run_id: info.status for info in runs.list_runs(tmp_path)}
    assert status == {"alive": "running", "dead": "interrupted", "elsewhere": "unknown",
                      "legacy": "running"}
    # a reused pid (same number, another process start time) is not our runner
    reused = {**runs.runner_info(), "pid_started": 12.0}
    assert runs.run_status({"status": "running", "runner": reused}) == "interrupted"
    assert runs.run_status({"status": "complete", "runner": cases["dead"]}) == "complete"
    assert "interrupted" in runs.rebuild_index(tmp_path).read_text()


def test_sigkilled_runner_shows_interrupted(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    script = (f"import time; from pathlib import Path; from flan_nb import runs\n"
              f"run = runs.create_run('k', {{}}, Path({str(tmp_path)!r}))\n"
              f"runs.write_json(run.path / 'manifest.json', {{'status': 'running', "
              f"'runner': runs.runner_info()}})\nprint(run.path, flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert runs.load_run(line).status == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    time.sleep(0.05)
    assert runs.load_run(line).status == "interrupted"


def test_index_is_derived_and_never_fails_a_run(tmp_path, capsys):
    from flan_nb import cli

    run = runs.create_run("exp", {"a": 1}, tmp_path)
    runs.write_json(run.path / "manifest.json", {"experiment": "exp", "status": "complete"})
    assert not (tmp_path / "index.csv").exists()
    assert cli.main(["--results", str(tmp_path), "runs"]) == 0  # `flan-nb runs` rebuilds it
    assert run.run_id in (tmp_path / "index.csv").read_text()
    (tmp_path / "index.csv").unlink()
    (tmp_path / "index.csv").mkdir()  # cannot be written
    with pytest.warns(UserWarning, match="results index not written"):
        assert runs.try_rebuild_index(tmp_path) is None


def test_index_csv_is_git_ignored():
    import subprocess

    from flan_nb import config

    root = config.project_root()
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/index.csv"], cwd=root)
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "results/index.csv"], cwd=root,
                             capture_output=True)
    assert ignored.returncode == 0 and tracked.returncode != 0
