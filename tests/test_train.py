"""The training loop: params, bad input, loss normalization, exact resume, multi-process equality."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from flan_nb import config, runs
from flan_nb.train import checkpoints, launcher, model_init
from flan_nb.train import loop as train
from flan_nb.train import params as train_params

PROJECT = Path(__file__).resolve().parent.parent
COLLECTIONS = ("muffin", "niv2", "cot")


def make_mixture(path: Path, n: int = 120, *, long_target_at: int | None = None) -> Path:
    import datasets

    rng = random.Random(0)
    rows = []
    for i in range(n):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        coll = COLLECTIONS[i % 3]
        target = str(a + b) if i != long_target_at else "9" * 200
        rows.append({"inputs": f"Add {a} and {b}." + " so" * rng.randint(0, 6), "targets": target,
                     "task": f"add_{coll}", "collection": coll, "format": "zs_noopt",
                     "cot": False, "template_id": "t0", "example_id": f"ex{i}"})
    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


def make_cfg(tmp_path: Path, mixture: Path, **overrides) -> train.TrainParams:
    values = {**train_params.DEFAULTS, "mixture_path": str(mixture), "steps": 4, "batch_size": 4,
              "input_len": 64, "target_len": 8, "checkpoint_every": 2, "log_every": 1,
              "dropout": 0.0, **overrides}
    return train.TrainParams(**values)


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("FLAN_NB_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("FLAN_NB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def new_run(root: Path, name: str) -> runs.Run:
    path = root / "results" / name
    path.mkdir(parents=True)
    return runs.open_run(str(path), notebook=train_params.NOTEBOOK)


def final_weights(run: runs.Run) -> dict[str, torch.Tensor]:
    final = Path(run.output("checkpoint_path"))
    files = model_init._weights_files(final)
    assert files, f"no weights in {final}"
    out: dict[str, torch.Tensor] = {}
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors.torch import load_file

            out.update(load_file(str(f)))
        else:
            out.update(torch.load(f, weights_only=True))
    return out


def write_params(path: Path, section: dict) -> Path:
    path.write_text(yaml.safe_dump({"experiment": "t", "notebooks": {"02_finetune": section}}))
    return path


def cli_env(root: Path) -> dict:
    return {**os.environ, "FLAN_NB_ARTIFACTS": str(root / "artifacts"),
            "FLAN_NB_RESULTS": str(root / "results"), "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


# ---------------------------------------------------------------------------------------------
# params


def test_notebook_parameters_equal_dataclass_fields_and_defaults():
    cell = config.parameters_cell(PROJECT / "notebooks" / "02_finetune.ipynb")
    assert list(cell) == [f.name for f in dataclasses.fields(train.TrainParams)]
    assert cell == train_params.DEFAULTS


@pytest.mark.parametrize("name", sorted(p.name for p in (PROJECT / "params").glob("flan-*.yaml")))
def test_params_files_validate(name):
    path = PROJECT / "params" / name
    cfg = train_params.params_from_file(path)
    kind = "causal" if "palm" in name else "seq2seq"
    train.check_params(cfg, kind=kind, num_processes=cfg.num_processes)
    if name.startswith("flan-t5-"):
        size = name[len("flan-t5-"):-5]
        steps = {"small": 98000, "base": 84000, "large": 64000, "xl": 38000, "xxl": 14000}[size]
        assert (cfg.batch_size, cfg.dropout, cfg.lr, cfg.steps) == (64, 0.05, 5e-4, steps)
        assert cfg.model == f"google/t5-{size}-lm-adapt"
        mixing = yaml.safe_load(path.read_text())["notebooks"]["01_data_mixing"]
        assert mixing["preset"] == "proportion_b"
    if cfg.accelerate_config:
        assert launcher.accelerate_config_path(cfg.accelerate_config).is_file()


@pytest.mark.parametrize("name", train_params.ACCELERATE_CONFIGS)
def test_accelerate_configs_load_in_accelerate(name):
    from accelerate.commands.config.config_args import load_config_from_file

    path = launcher.accelerate_config_path(name)
    assert path.parent == PROJECT / "params" / "accelerate"
    cfg = load_config_from_file(str(path))
    expected = {"single_device": "NO", "ddp": "MULTI_GPU", "fsdp_t5": "FSDP",
                "deepspeed_zero3": "DEEPSPEED"}[name]
    assert str(cfg.distributed_type).split(".")[-1] == expected
    if name == "fsdp_t5":
        assert cfg.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "T5Block"
    if name == "deepspeed_zero3":
        assert cfg.deepspeed_config["zero_stage"] == 3


def test_unknown_accelerate_config_is_named():
    with pytest.raises(config.ParamsError, match="fsdp_t6"):
        launcher.accelerate_config_path("fsdp_t6")


def test_unknown_key_in_params_file_is_named(tmp_path):
    path = write_params(tmp_path / "p.yaml", {"stepz": 3})
    with pytest.raises(config.ParamsError, match="stepz.*did you mean steps"):
        train_params.params_from_file(path)


def test_batch_not_divisible_is_refused_before_training(tmp_path):
    cfg = make_cfg(tmp_path, tmp_path / "none", batch_size=6, grad_accum=2)
    with pytest.raises(config.ParamsError, match="6 must be divisible by processes x grad_accum = 2 x 2"):
        train.check_params(cfg, num_processes=2)
    train.check_params(cfg, num_processes=1)  # 6 = 1 x 2 x 3 is fine


def test_fp16_is_refused_for_t5_with_a_reason(tmp_path):
    cfg = make_cfg(tmp_path, tmp_path / "none", precision="fp16")
    with pytest.raises(config.ParamsError, match="fp16 is refused for T5.*use bf16"):
        train.check_params(cfg, kind="seq2seq")
    train.check_params(cfg, kind="causal")


# ---------------------------------------------------------------------------------------------
# bad input, each before any step runs


def test_missing_init_checkpoint(env):
    mix = make_mixture(env / "mix", 30)
    cfg = make_cfg(env, mix, init_checkpoint=str(env / "nope"))
    with pytest.raises(train.TrainError, match="init_checkpoint .*nope does not exist"):
        train.train(cfg, new_run(env, "r"), progress=False)


def test_init_checkpoint_of_another_shape(env):
    from flan_nb import models

    other, tok = models.build_tiny_t5(d_model=64, d_kv=32)
    other.save_pretrained(str(env / "other"))
    cfg = make_cfg(env, make_mixture(env / "mix", 30), init_checkpoint=str(env / "other"))
    with pytest.raises(train.TrainError, match=r"different model shape.*checkpoint \(\d+, \d+\) vs model \(\d+, \d+\)"):
        train.train(cfg, new_run(env, "r"), progress=False)


def test_empty_mixture(env):
    import datasets

    empty = datasets.Dataset.from_dict({"inputs": [], "targets": [], "collection": []})
    empty.save_to_disk(str(env / "empty"))
    cfg = make_cfg(env, env / "empty")
    with pytest.raises(train.TrainError, match="is empty: 0 examples"):
        train.train(cfg, new_run(env, "r"), progress=False)


def test_missing_mixture_output_names_the_stage(env):
    cfg = make_cfg(env, Path(""), mixture_path="")
    with pytest.raises(runs.MissingOutput, match="01_data_mixing"):
        train.train(cfg, new_run(env, "r"), progress=False)


def test_long_target_error_or_truncate_and_count(env):
    mix = make_mixture(env / "mix", 30, long_target_at=7)
    cfg = make_cfg(env, mix, truncation="error", steps=1)
    with pytest.raises(train.TrainError, match=r"#7 \(example_id='ex7'.*target has 201 tokens.*target_len=8"):
        train.train(cfg, new_run(env, "r1"), progress=False)
    cfg = make_cfg(env, mix, truncation="truncate", steps=1, checkpoint_every=0)
    summary = train.train(cfg, new_run(env, "r2"), progress=False)
    assert summary["truncated_targets"] == 1


# ---------------------------------------------------------------------------------------------
# the loop


def test_grad_accumulation_matches_one_big_batch(env):
    """Loss normalization by global target tokens makes accumulation exact (up to float order)."""
    mix = make_mixture(env / "mix", 60)
    r1, r2 = new_run(env, "a"), new_run(env, "b")
    s1 = train.train(make_cfg(env, mix, steps=3, grad_accum=1, checkpoint_every=0), r1,
                     progress=False)
    s2 = train.train(make_cfg(env, mix, steps=3, grad_accum=4, checkpoint_every=0), r2,
                     progress=False)
    w1, w2 = final_weights(r1), final_weights(r2)
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-5
    assert s1["final_loss"] == pytest.approx(s2["final_loss"], rel=1e-6)
    log = launcher.read_log(r1)
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(0 < r["non_pad_fraction"] <= 1 and r["tokens_per_s"] > 0 for r in log)
    metrics = r1.read_metrics()["train"]
    assert metrics["steps"] == 3 and 0 < metrics["packing_efficiency"] <= 1
    assert (r1.artifacts / "checkpoint" / "final" / "config.json").is_file()


def test_loss_goes_down_and_collection_losses_are_logged(env):
    mix = make_mixture(env / "mix", 120)
    run = new_run(env, "r")
    summary = train.train(make_cfg(env, mix, steps=25, lr=3e-3, checkpoint_every=0), run,
                          progress=False)
    assert summary["final_loss_avg10"] < summary["first_loss"]
    rows = launcher.collection_losses(launcher.read_log(run))
    assert {r["collection"] for r in rows} == set(COLLECTIONS)
    assert all(r["loss"] > 0 for r in rows)


def test_decoder_only_model_trains_with_bos_and_packing(env):
    mix = make_mixture(env / "mix", 60)
    run = new_run(env, "r")
    cfg = make_cfg(env, mix, model="builtin:tiny-llama", steps=3, input_len=64, target_len=0,
                   lr=3e-3, checkpoint_every=0)
    summary = train.train(cfg, run, progress=False)
    assert summary["kind"] == "causal" and summary["steps"] == 3
    assert summary["packing_preview"]["best_fit"]["examples_per_row"] > 1.5
    assert math.isfinite(summary["final_loss"])


def test_bf16_autocast_runs_and_fp32_master_weights_stay(env):
    run = new_run(env, "r")
    cfg = make_cfg(env, make_mixture(env / "mix", 30), precision="bf16", steps=2,
                   checkpoint_every=0)
    summary = train.train(cfg, run, progress=False)
    assert math.isfinite(summary["final_loss"])
    assert all(v.dtype == torch.float32 for v in final_weights(run).values())


def test_adafactor_parameter_scaling_switch_changes_the_update(env):
    mix = make_mixture(env / "mix", 30)
    runs_ = {flag: new_run(env, f"r{flag}") for flag in (False, True)}
    for flag, run in runs_.items():
        train.train(make_cfg(env, mix, steps=1, checkpoint_every=0,
                             adafactor_scale_parameter=flag), run, progress=False)
    from flan_nb import models

    init = models.load(train_params.DEFAULTS["model"]).model.state_dict()
    key = "encoder.block.0.layer.1.DenseReluDense.wo.weight"
    step = {f: (final_weights(r)[key] - init[key]).abs().mean() for f, r in runs_.items()}
    # scaled steps are lr x RMS(weight), far smaller than lr for these small init weights
    assert 0 < step[True] < 0.5 * step[False]


def test_nan_loss_stops_saves_and_reports_step(env, monkeypatch):
    from flan_nb.train import packed_forward

    real = packed_forward.packed_segment_losses
    calls = {"n": 0}

    def flaky(model, batch):
        calls["n"] += 1
        loss, sums, counts = real(model, batch)
        return (loss * float("nan") if calls["n"] == 3 else loss), sums, counts

    monkeypatch.setattr(packed_forward, "packed_segment_losses", flaky)
    run = new_run(env, "r")
    with pytest.raises(train.TrainingDiverged, match="at step 3") as info:
        train.train(make_cfg(env, make_mixture(env / "mix", 40), steps=5, checkpoint_every=0),
                    run, progress=False)
    assert info.value.step == 3
    snap = Path(info.value.checkpoint)
    assert snap.name == "diverged_step_000003" and (snap / "meta.json").is_file()
    assert json.loads((snap / "meta.json").read_text())["step"] == 2
    assert [r["step"] for r in launcher.read_log(run)] == [1, 2]


# ---------------------------------------------------------------------------------------------
# acceptance: SIGKILL + rerun == uninterrupted; 2 processes == 1 process


def _params_for_cli(tmp: Path, mix: Path, **extra) -> dict:
    return {"mixture_path": str(mix), "steps": 20, "batch_size": 4, "input_len": 64,
            "target_len": 8, "checkpoint_every": 3, "keep_last_k": 2, "log_every": 1,
            "dropout": 0.1, "lr": 2e-3, **extra}


def test_crash_then_rerun_resumes_exactly_in_process(env, monkeypatch):
    """Fast variant of the SIGKILL test: an exception mid-run, then the same call again."""
    from flan_nb.train import packed_forward

    mix = make_mixture(env / "mix", 60)
    cfg = make_cfg(env, mix, steps=6, checkpoint_every=2, dropout=0.1, lr=2e-3)
    ref, crashed = new_run(env, "ref"), new_run(env, "crashed")
    train.train(cfg, ref, progress=False)

    real = packed_forward.packed_segment_losses
    calls = {"n": 0}

    def dying(model, batch):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated kill at step 5")
        return real(model, batch)

    monkeypatch.setattr(packed_forward, "packed_segment_losses", dying)
    with pytest.raises(KeyboardInterrupt):
        train.train(cfg, crashed, progress=False)
    assert checkpoints.latest(crashed.artifacts / "checkpoints").step == 4
    monkeypatch.setattr(packed_forward, "packed_segment_losses", real)
    summary = train.train(cfg, crashed, progress=False)
    assert summary["resumed_from"].endswith("step_000004")
    w_ref, w_crashed = final_weights(ref), final_weights(crashed)
    assert all(torch.equal(w_ref[k], w_crashed[k]) for k in w_ref)
    assert [r["loss"] for r in launcher.read_log(crashed)] == [r["loss"] for r in launcher.read_log(ref)]


def test_sigkill_then_rerun_resumes_to_identical_weights(env):
    mix = make_mixture(env / "mix", 120)
    params = write_params(env / "p.yaml", _params_for_cli(env, mix))
    ref_dir, kill_dir = env / "results" / "ref", env / "results" / "killed"
    ref_dir.mkdir(parents=True)
    kill_dir.mkdir(parents=True)
    base = [sys.executable, "-m", "flan_nb.train", str(params), "--no-progress", "--run-dir"]
    e = cli_env(env)

    done = subprocess.run(base + [str(ref_dir)], env=e, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    proc = subprocess.Popen(base + [str(kill_dir)], env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    killed_after = None
    for line in proc.stdout:
        if line.startswith(train_params.LOG_PREFIX):
            rec = json.loads(line[len(train_params.LOG_PREFIX):])
            if rec.get("step", 0) >= 7:
                os.kill(proc.pid, signal.SIGKILL)
                killed_after = rec["step"]
                break
    proc.wait(timeout=60)
    assert killed_after is not None and proc.returncode == -signal.SIGKILL
    kill_run = runs.open_run(str(kill_dir))
    ckpt = checkpoints.latest(kill_run.artifacts / "checkpoints")
    assert ckpt is not None and 6 <= ckpt.step < 20, "the kill must land mid-run"
    assert not (kill_run.artifacts / "checkpoint" / "final").exists()

    again = subprocess.run(base + [str(kill_dir)], env=e, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    start = next(json.loads(line[len(train_params.LOG_PREFIX):]) for line in again.stdout.splitlines()
                 if line.startswith(train_params.LOG_PREFIX))
    assert start["start_step"] == ckpt.step and start["resumed_from"]

    ref_run = runs.open_run(str(ref_dir))
    w_ref, w_kill = final_weights(ref_run), final_weights(kill_run)
    assert w_ref.keys() == w_kill.keys()
    for k in w_ref:
        assert torch.equal(w_ref[k], w_kill[k]), f"{k} differs after resume"
    # the log was cut back to the checkpoint and continued: one record per step, same losses
    ref_log, kill_log = launcher.read_log(ref_run), launcher.read_log(kill_run)
    assert [r["step"] for r in kill_log] == list(range(1, 21))
    assert [r["loss"] for r in kill_log] == [r["loss"] for r in ref_log]
    assert len(checkpoints.list_checkpoints(kill_run.artifacts / "checkpoints")) == 2


def test_two_processes_equal_one_process(env):
    """Same global batch and seed: 2 gloo processes and 1 process reach the same weights."""
    mix = make_mixture(env / "mix", 60)
    params = write_params(env / "p.yaml", _params_for_cli(env, mix, steps=5, dropout=0.0,
                                                          checkpoint_every=0))
    one, two = env / "results" / "one", env / "results" / "two"
    one.mkdir(parents=True)
    two.mkdir(parents=True)
    e = cli_env(env)
    t0 = time.time()
    for run_dir, n in ((one, 1), (two, 2)):
        cmd = launcher.command(params, run_dir, num_processes=n)
        if n == 2:
            assert "accelerate.commands.launch" in " ".join(cmd)
        done = subprocess.run(cmd + ["--no-progress"], env=e, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    r1, r2 = runs.open_run(str(one)), runs.open_run(str(two))
    assert json.loads((two / "train" / "summary.json").read_text())["processes"] == 2
    w1, w2 = final_weights(r1), final_weights(r2)
    diff = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    assert diff < 1e-5, diff
    print(f"2-proc vs 1-proc max |dw| = {diff:.2e} in {time.time() - t0:.0f}s")


@pytest.mark.slow
def test_launch_streams_log_and_returns_summary(env):
    mix = make_mixture(env / "mix", 60)
    run = new_run(env, "r")
    seen = []
    cfg = make_cfg(env, mix, steps=3, checkpoint_every=0)
    summary = launcher.launch(cfg, run, live=False, on_log=seen.append,
                           env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert [r["step"] for r in seen] == [1, 2, 3]
    assert summary["steps"] == 3 and run.output("checkpoint_path") == summary["checkpoint_path"]
    assert (run.path / "train" / "launch_params.yaml").is_file()
    # a finished run relaunched is a no-op resume, not a second training
    again = launcher.launch(cfg, run, live=False)
    assert again["steps"] == 3 and again["resumed_from"]


def test_launch_failure_shows_the_error(env):
    run = new_run(env, "r")
    cfg = make_cfg(env, env / "missing-mixture", steps=2)
    with pytest.raises(train.TrainError, match="mixture .*missing-mixture does not exist"):
        launcher.launch(cfg, run, live=False)


def test_precision_auto_is_fp32_without_a_bf16_gpu(monkeypatch):
    import torch

    from flan_nb.train.params import resolve_precision

    assert resolve_precision("bf16") == "bf16" and resolve_precision("fp32") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto") == "bf16"
