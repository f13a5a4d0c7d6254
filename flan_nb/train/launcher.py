"""Launching training from a notebook: the same command as a subprocess (so accelerate can start N
processes and a crash never takes the kernel with it), its streamed log, a tqdm bar and a live
loss plot. This module never imports the loop itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from flan_nb import config
from flan_nb.train.params import (
    ACCELERATE_CONFIGS,
    EXIT_DIVERGED,
    LOG_PREFIX,
    NOTEBOOK,
    SUMMARY_PREFIX,
    TrainError,
    TrainingDiverged,
    TrainParams,
    check_params,
)

# Launching from a notebook: a subprocess, so accelerate can start N processes and a crash or a
# SIGKILL never takes the kernel with it.


def accelerate_config_path(value: str) -> Path:
    """A config name in params/accelerate/ (see ACCELERATE_CONFIGS) or a yaml path."""
    bundled = config.project_root() / "params" / "accelerate" / f"{value}.yaml"
    if bundled.is_file():
        return bundled
    path = config.resolve_path(value)
    if not path.is_file():
        raise config.ParamsError(f"accelerate_config {value!r}: neither a bundled config "
                                 f"({', '.join(ACCELERATE_CONFIGS)}) nor an existing file")
    return path


def command(params_path: Path, run_dir: Path, *, num_processes: int = 1,
            accelerate_config: str | None = None, python: str | None = None,
            main_process_port: int | None = None, params_origin: str = "") -> list[str]:
    """The command line launch() runs; also what docs/README show for GPUs.

    `params_origin`: the user's params file when `params_path` is its launch copy, so errors
    from the subprocess name the file the user can fix."""
    python = python or sys.executable
    tail = ["-m", "flan_nb.train", str(params_path), "--run-dir", str(run_dir)]
    if params_origin:
        tail += ["--params-origin", params_origin]
    if num_processes <= 1 and not accelerate_config:
        return [python, *tail]
    cmd = [python, "-m", "accelerate.commands.launch"]
    if accelerate_config:
        cmd += ["--config_file", str(accelerate_config_path(accelerate_config))]
    cmd += ["--num_processes", str(num_processes)]
    if num_processes > 1:
        # `--cpu` alone starts ONE process (accelerate's simple launcher); the torchrun-based
        # launcher plus Accelerator(cpu=True) (see train()) gives N gloo processes on CPU.
        if not accelerate_config:
            cmd += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no",
                    "--dynamo_backend", "no"]
        cmd += ["--main_process_port", str(main_process_port or _free_port())]
    return [*cmd, *tail]


def _free_port() -> int:
    """A free TCP port, so concurrent runs on one machine do not fight over 29500."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_launch_params(cfg: TrainParams, run: Any) -> Path:
    """The params file the subprocess reads: this notebook's section, nothing injected."""
    import yaml

    section = config.as_dict(cfg)
    section.pop("run_dir")
    section.pop("params_file")
    path = run.path / "train" / "launch_params.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"experiment": "02_finetune", "description": f"launched from {config.project_relative(cfg.params_file) if cfg.params_file else 'a notebook'}",
            "notebooks": {NOTEBOOK: section}}
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def launch(cfg: TrainParams, run: Any, num_processes: int | None = None,
           accelerate_config: str | None = None, *, live: bool = True,
           on_log: Callable[[dict], None] | None = None, env: Mapping[str, str] | None = None
           ) -> dict[str, Any]:
    """Train in a subprocess (1..N processes), stream its log, return the final summary."""
    num_processes = num_processes or cfg.num_processes
    accelerate_config = accelerate_config if accelerate_config is not None else (
        cfg.accelerate_config or None)
    check_params(cfg, num_processes=num_processes)
    params_path = write_launch_params(cfg, run)
    cmd = command(params_path, run.path, num_processes=num_processes,
                  accelerate_config=accelerate_config,
                  params_origin=config.project_relative(cfg.params_file) if cfg.params_file else "")
    stderr_path = run.path / "train" / "stderr.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    from tqdm import tqdm  # text bar: no ipywidgets needed, papermill-friendly

    plot = _LivePlot() if live else None
    bar = tqdm(total=cfg.steps, desc="train", unit="step", mininterval=5.0)
    summary: dict[str, Any] | None = None
    with open(stderr_path, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                env=full_env, cwd=str(config.project_root()))
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(LOG_PREFIX):
                rec = json.loads(line[len(LOG_PREFIX):])
                if rec.get("event") == "start":
                    bar.n = rec.get("start_step", 0)
                    bar.refresh()
                    if rec.get("resumed_from"):
                        print(f"resuming from {rec['resumed_from']}")
                    continue
                bar.n = rec["step"]
                bar.set_postfix(loss=f"{rec['loss']:.4f}")
                if on_log is not None:
                    on_log(rec)
                if plot is not None:
                    plot.add(rec)
            elif line.startswith(SUMMARY_PREFIX):
                summary = json.loads(line[len(SUMMARY_PREFIX):])
            elif line.strip():
                print(line)
        code = proc.wait()
    bar.close()
    if plot is not None:
        plot.close()
    if code != 0 or summary is None:
        with open(stderr_path, encoding="utf-8", errors="replace") as err:
            tail = "".join(deque(err, maxlen=25))
        # the command line prints "error: <what, where>" last; lead with it, not the command
        said = [ln[len("error: "):] for ln in tail.splitlines() if ln.startswith("error: ")]
        head = said[-1] if said else f"training exited with code {code}"
        msg = f"{head}\n(command: {' '.join(cmd)}, exit code {code})\n--- stderr tail ---\n{tail}"
        if code == EXIT_DIVERGED:
            raise TrainingDiverged(msg, step=-1, checkpoint="")
        raise TrainError(msg)
    return summary


class _LivePlot:
    """A loss curve redrawn in place in Jupyter every few log lines (no-op outside IPython)."""

    def __init__(self, every: int = 5):
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.every, self.handle, self.fig = every, None, None
        try:
            from IPython import get_ipython

            self.active = get_ipython() is not None and "IPKernelApp" in get_ipython().config
        except (ImportError, AttributeError):
            self.active = False

    def add(self, rec: Mapping[str, Any]) -> None:
        self.steps.append(int(rec["step"]))
        self.losses.append(float(rec["loss"]))
        if self.active and len(self.steps) % self.every == 0:
            self._draw()

    def _draw(self) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        if self.fig is None:
            self.fig, self.ax = plt.subplots(figsize=(6, 3))
            plt.close(self.fig)
        self.ax.clear()
        self.ax.plot(self.steps, self.losses)
        self.ax.set_xlabel("step")
        self.ax.set_ylabel("loss (per target token)")
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)

    def close(self) -> None:
        if self.active and self.steps:
            self._draw()


def read_log(run: Any) -> list[dict[str, Any]]:
    """The per-step records of <run>/train_log.jsonl (periodic_eval.read_eval_scores: the
    held-out evaluations logged there too)."""
    from flan_nb import runs

    return [r for r in runs.train_log(run) if "loss" in r]


def collection_losses(log: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Long-form rows (step, collection, loss) for a seaborn plot."""
    return [{"step": r["step"], "collection": c, "loss": v}
            for r in log for c, v in (r.get("collection_loss") or {}).items()]


# ---------------------------------------------------------------------------------------------
