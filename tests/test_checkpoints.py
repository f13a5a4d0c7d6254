"""Checkpoints: atomic writes, validity, retention, exact state round trip (no model download)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from flan_nb.train import checkpoints


@pytest.fixture()
def accel_setup():
    from accelerate import Accelerator
    from transformers.optimization import Adafactor

    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.3), torch.nn.Linear(16, 4))
    opt = Adafactor(model.parameters(), lr=1e-2, scale_parameter=False, relative_step=False,
                    warmup_init=False)
    model, opt = accelerator.prepare(model, opt)
    return accelerator, model, opt


def _step(model, opt) -> None:
    x = torch.randn(5, 8)
    loss = model(x).pow(2).sum()
    loss.backward()
    opt.step()
    opt.zero_grad()


def test_roundtrip_restores_weights_optimizer_and_rng_exactly(tmp_path, accel_setup):
    accelerator, model, opt = accel_setup
    _step(model, opt)
    path = checkpoints.save(accelerator, tmp_path, 1, {"position": {"epoch": 0, "row_in_epoch": 4}})
    assert path.name == "step_000001" and checkpoints.is_valid(path)
    # continue from here: the reference trajectory (dropout + data from the global RNGs)
    ref_draws = (random.random(), float(np.random.rand()))
    _step(model, opt)
    _step(model, opt)
    ref = {k: v.clone() for k, v in model.state_dict().items()}

    _step(model, opt)  # wander off, then restore
    random.random()
    meta = checkpoints.load(accelerator, checkpoints.latest(tmp_path))
    assert meta["position"] == {"epoch": 0, "row_in_epoch": 4} and meta["step"] == 1
    assert (random.random(), float(np.random.rand())) == ref_draws
    _step(model, opt)
    _step(model, opt)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_partial_checkpoints_are_never_taken_as_valid(tmp_path, accel_setup):
    accelerator, model, opt = accel_setup
    good = checkpoints.save(accelerator, tmp_path, 3, {})
    # what a SIGKILL can leave: a tmp dir being written, and a step dir without complete meta
    (tmp_path / ".tmp_step_000006").mkdir()
    (tmp_path / ".tmp_step_000006" / "pytorch_model.bin").write_bytes(b"half")
    torn = tmp_path / "step_000009"
    torn.mkdir()
    (torn / "meta.json").write_text(json.dumps({"step": 9, "complete": False}))
    bad_json = tmp_path / "step_000012"
    bad_json.mkdir()
    (bad_json / "meta.json").write_text('{"step": 12, "compl')
    assert checkpoints.latest(tmp_path).path == good
    removed = {p.name for p in checkpoints.clean_partial(tmp_path)}
    assert removed == {".tmp_step_000006", "step_000009", "step_000012"}
    assert [c.step for c in checkpoints.list_checkpoints(tmp_path)] == [3]


def test_keep_last_k_retention(tmp_path, accel_setup):
    accelerator, model, opt = accel_setup
    for step in (2, 4, 6, 8):
        checkpoints.save(accelerator, tmp_path, step, {}, keep_last_k=2)
    assert [c.step for c in checkpoints.list_checkpoints(tmp_path)] == [6, 8]
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())
    # keep_last_k 0 keeps everything
    checkpoints.save(accelerator, tmp_path, 10, {}, keep_last_k=0)
    assert [c.step for c in checkpoints.list_checkpoints(tmp_path)] == [6, 8, 10]


def test_named_snapshot_is_not_resumed_from(tmp_path, accel_setup):
    accelerator, model, opt = accel_setup
    checkpoints.save(accelerator, tmp_path, 4, {})
    checkpoints.save(accelerator, tmp_path, 5, {"diverged_at_step": 6}, name="diverged_step_000006")
    assert checkpoints.latest(tmp_path).step == 4
    assert (tmp_path / "diverged_step_000006" / "meta.json").is_file()


def test_load_rejects_incomplete(tmp_path, accel_setup):
    accelerator, _, _ = accel_setup
    (tmp_path / "step_000001").mkdir()
    with pytest.raises(checkpoints.CheckpointError, match="not a complete checkpoint"):
        checkpoints.load(accelerator, tmp_path / "step_000001")


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_checkpoint_that_no_longer_verifies_is_skipped(tmp_path, accel_setup, damage):
    """Issue 16: a complete checkpoint damaged later (truncated copy, bad sectors) is skipped with a
    warning; resuming takes the previous valid one and restores its state exactly."""
    accelerator, model, opt = accel_setup
    _step(model, opt)
    first = checkpoints.save(accelerator, tmp_path, 1, {"position": 1})
    at_first = {k: v.clone() for k, v in model.state_dict().items()}
    _step(model, opt)
    second = checkpoints.save(accelerator, tmp_path, 2, {"position": 2})
    recorded = checkpoints.read_meta(second)["files"]
    assert recorded and all(len(v["sha256"]) == 64 for v in recorded.values())
    assert checkpoints.verify(first) is None and checkpoints.verify(second) is None
    victim = max((second / rel for rel in recorded), key=lambda p: p.stat().st_size)
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        victim.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    else:
        victim.unlink()
    assert checkpoints.verify(second) is not None
    assert checkpoints.is_valid(second)  # still structurally complete: not deleted as partial
    with pytest.warns(UserWarning, match="does not verify"):
        last = checkpoints.latest(tmp_path)
    assert last.step == 1 and last.verified
    with pytest.raises(checkpoints.CheckpointError, match="does not verify"):
        checkpoints.load(accelerator, second)
    meta = checkpoints.load(accelerator, last)
    assert meta["position"] == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, at_first[k]), k
    assert second in [p for p in tmp_path.iterdir()]  # kept for inspection
    # resaving the step replaces the damaged copy with a verified one
    checkpoints.save(accelerator, tmp_path, 2, {"position": 2})
    assert checkpoints.latest(tmp_path).step == 2


def test_checkpoint_without_checksums_is_still_accepted(tmp_path, accel_setup):
    accelerator, model, opt = accel_setup
    path = checkpoints.save(accelerator, tmp_path, 3, {"position": 0})
    meta = checkpoints.read_meta(path)
    del meta["files"]
    (path / "meta.json").write_text(json.dumps(meta))
    assert checkpoints.verify(path) is None and checkpoints.latest(tmp_path).step == 3
