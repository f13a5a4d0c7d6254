"""Run directories: `results/<run-id>/` with executed notebooks, metrics.json and manifest.json.

A run directory is created exactly once and never reused, so a result notebook can always be
traced to the params, code and data that produced it. Stages talk to each other through the run
directory (outputs.json), not through kernel globals, so any notebook can be re-run on its own.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import re
import socket
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flan_nb import config

RESULTS_ENV = "FLAN_NB_RESULTS"
ARTIFACTS_ENV = "FLAN_NB_ARTIFACTS"
# The manifest status of a run whose notebooks all ran (pipeline.run writes it).
COMPLETE = "complete"
SCRATCH_ENV = "FLAN_NB_SCRATCH"
HEADLINE = (
    ("mmlu", "direct"), ("mmlu", "cot"), ("bbh", "direct"), ("bbh", "cot"),
    ("tydiqa", "direct"), ("mgsm", "cot"),
)


class MissingOutput(KeyError):
    """A stage asked for something an earlier stage should have written into the run."""

    def __str__(self) -> str:  # KeyError repr-quotes its message; show it plainly
        return str(self.args[0])


def results_root(value: str | os.PathLike[str] | None = None) -> Path:
    chosen = value or os.environ.get(RESULTS_ENV) or "results"
    return config.resolve_path(chosen)


def find_run(ref: str, root: str | os.PathLike[str] | None = None) -> Path:
    """A run dir from a path, or from a run id or a unique part of one under the results root
    `root` (default: results_root())."""
    path = Path(ref)
    if (path / "metrics.json").is_file() or (path / "manifest.json").is_file():
        return path
    base = results_root(root)
    matches = [p for p in sorted(base.iterdir()) if p.is_dir() and ref in p.name] if base.is_dir() else []
    if len(matches) != 1:
        what = "no run" if not matches else f"{len(matches)} runs ({', '.join(p.name for p in matches)})"
        raise FileNotFoundError(f"run {ref!r}: {what} match under {base}")
    return matches[0]


def artifacts_root(value: str | os.PathLike[str] | None = None) -> Path:
    chosen = value or os.environ.get(ARTIFACTS_ENV) or "artifacts"
    return config.resolve_path(chosen)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def params_hash(params: Mapping[str, Any]) -> str:
    """sha256 of the resolved params; the sweep uses it to recognise a finished grid point."""
    return hashlib.sha256(canonical_json(params).encode("utf-8")).hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file + rename so a crash never leaves a half-written file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _output_value(key: str, value: Any) -> Any:
    """A `*_path` output is recorded relative to the project (portable); hand it back as a path
    that works from any working directory (a notebook kernel runs in notebooks/)."""
    if key.endswith("_path") and isinstance(value, str) and value:
        return str(config.resolve_path(value))
    return value


# starts with a literal, so it stays linear on long base64 outputs
_KERNEL_CELL = re.compile(r"ipykernel_\d+/(\d+)\.py")


def portable(text: str) -> str:
    """`text` with this checkout's absolute location written relative to the project root:
    `<root>/x` -> `x` and `<root's parent>/y` -> `../y` (the data mirror beside the checkout).

    Everything a run records goes through this, so committed results carry no machine-specific
    paths; readers turn a relative path back into a file with `config.resolve_path`.
    """
    root = config.project_root()
    # a warning raised in a notebook cell names the kernel's temp file of that cell
    if "ipykernel_" in text:
        text = text.replace(f"{tempfile.gettempdir()}{os.sep}ipykernel_", "ipykernel_")
        text = _KERNEL_CELL.sub(r"<notebook cell \1>", text)
    text = text.replace(f"{root}{os.sep}", "")
    if root.parent != root:
        text = text.replace(f"{root.parent}{os.sep}", f"..{os.sep}")
    return text


def write_json(path: Path, obj: Any) -> None:
    """Atomic, portable JSON (see `portable`)."""
    atomic_write_text(path, portable(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
                      + "\n")


def read_jsonl(path: Path) -> list[Any]:
    """The records of a JSON-lines file; [] when it does not exist."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def train_log(run: Any) -> list[dict[str, Any]]:
    """Every record of <run>/train_log.jsonl: per-step losses and periodic evaluations."""
    return read_jsonl(Path(run.path if hasattr(run, "path") else run) / "train_log.jsonl")


def read_json(path: Path, default: Any = None) -> Any:
    if not path.is_file():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def _deep_merge(base: dict, update: Mapping) -> dict:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


@dataclass
class Run:
    """A run directory as seen by one notebook."""

    path: Path
    run_id: str
    notebook: str = ""
    artifacts_base: Path | None = None

    @property
    def artifacts(self) -> Path:
        base = self.artifacts_base or artifacts_root()
        path = base / self.run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def labelled(self, label: str) -> Run:
        """The run's labelled sub-run, <run>/<label>/ (e.g. the `before` evaluation of a
        before/after run): its own metrics.json and predictions/, the parent's outputs."""
        if not label:
            return self
        path = self.path / label
        path.mkdir(parents=True, exist_ok=True)
        return Run(path=path, run_id=f"{self.run_id}@{label}", notebook=self.notebook,
                   artifacts_base=self.artifacts_base)

    # stage outputs -------------------------------------------------------------------------
    def record_output(self, key: str, value: Any) -> None:
        outputs = read_json(self.path / "outputs.json", {})
        outputs[key] = {"value": value, "notebook": self.notebook, "at": utc_now()}
        write_json(self.path / "outputs.json", outputs)

    def output(self, key: str) -> Any:
        outputs = read_json(self.path / "outputs.json", {})
        if key not in outputs:
            producer = {
                "mixture_path": "01_data_mixing", "checkpoint_path": "02_finetune",
            }.get(key, "an earlier notebook")
            raise MissingOutput(
                f"run {self.run_id} has no output `{key}`: run {producer} in this run first, "
                f"or pass the value explicitly as a parameter"
            )
        return _output_value(key, outputs[key]["value"])

    def outputs(self) -> dict[str, Any]:
        """Every recorded output; `*_path` values as absolute paths (see `output`)."""
        return {k: _output_value(k, v["value"])
                for k, v in read_json(self.path / "outputs.json", {}).items()}

    # files ---------------------------------------------------------------------------------
    def write_json(self, rel: str, obj: Any) -> Path:
        path = self.path / rel
        write_json(path, obj)
        return path

    def write_jsonl(self, rel: str, rows: Iterable[Mapping[str, Any]]) -> Path:
        path = self.path / rel
        text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
        atomic_write_text(path, portable(text))
        return path

    def write_text(self, rel: str, text: str) -> Path:
        path = self.path / rel
        atomic_write_text(path, portable(text))
        return path

    # metrics -------------------------------------------------------------------------------
    def write_metrics(self, section: str, metrics: Mapping[str, Any]) -> None:
        current = read_json(self.path / "metrics.json", {})
        current[section] = _deep_merge(current.get(section, {}) or {}, dict(metrics))
        write_json(self.path / "metrics.json", current)

    def read_metrics(self) -> dict[str, Any]:
        return read_json(self.path / "metrics.json", {})


def open_run(run_dir: str = "", notebook: str = "") -> Run:
    """The run a notebook writes into.

    '' means interactive use (JupyterLab, nbval): every notebook then shares one scratch run,
    `artifacts/scratch/interactive` (or $FLAN_NB_SCRATCH), so 02_finetune finds the mixture that
    01_data_mixing wrote, as in a real run. Scratch runs are not results and are overwritten.
    """
    if run_dir:
        path = config.resolve_path(run_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"run directory {path} does not exist")
        return Run(path=path, run_id=path.name, notebook=notebook)
    scratch = os.environ.get(SCRATCH_ENV, "")
    path = config.resolve_path(scratch) if scratch else artifacts_root() / "scratch" / "interactive"
    path.mkdir(parents=True, exist_ok=True)
    return Run(path=path, run_id=f"scratch-{path.name}", notebook=notebook)


# -------------------------------------------------------------------------------------------
# Creation and the manifest


def make_run_id(experiment: str, params: Mapping[str, Any], when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in experiment) or "run"
    return f"{when.strftime('%Y%m%dT%H%M%SZ')}-{safe}-{params_hash(params)[:8]}"


def create_run(experiment: str, params: Mapping[str, Any], root: Path | None = None) -> Run:
    """A fresh run directory. Never reuses one: a second run of the same params in the same
    second gets the id with a suffix (-2, -3, ...)."""
    root = root or results_root()
    root.mkdir(parents=True, exist_ok=True)
    base = make_run_id(experiment, params)
    for n in range(1, 1000):
        run_id = base if n == 1 else f"{base}-{n}"
        path = root / run_id
        try:
            path.mkdir(parents=False, exist_ok=False)  # atomic: two racing runs cannot both win
        except FileExistsError:
            continue
        return Run(path=path, run_id=run_id)
    raise FileExistsError(f"{root}: 999 runs named {base}-N exist already")


def runner_info() -> dict[str, Any]:
    """Who runs this run: pid, host and the process start time (to tell a reused pid apart)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "pid_started": _process_start(os.getpid())}


def _process_start(pid: int) -> float | None:
    try:
        import psutil

        return round(psutil.Process(pid).create_time(), 2)
    except Exception:  # no psutil, or no such process
        return None


def _alive(pid: int, started: float | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    now = _process_start(pid)
    return started is None or now is None or abs(now - started) < 1.0


def run_status(manifest: Mapping[str, Any]) -> str:
    """The manifest's status, except that a `running` run whose runner process is gone is
    `interrupted` (killed, power loss), and one running on another host is `unknown` (its pid
    cannot be checked from here). A manifest without runner info keeps what it says."""
    status = str(manifest.get("status", "unknown"))
    runner = manifest.get("runner")
    if status != "running" or not isinstance(runner, Mapping) or not runner.get("pid"):
        return status
    if runner.get("host") != socket.gethostname():
        return "unknown"
    return "running" if _alive(int(runner["pid"]), runner.get("pid_started")) else "interrupted"


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    cwd = cwd or config.project_root()
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=20).stdout.strip()
    try:
        sha = git("rev-parse", "HEAD")
        # results/ and artifacts/ change during every run; they do not make the code dirty
        dirty = bool(git("status", "--porcelain", "--", ".", ":!results", ":!artifacts"))
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}
    return {"sha": sha or None, "dirty": dirty if sha else None}


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "transformers", "datasets", "accelerate", "papermill", "flan_nb",
                 "numpy", "pandas"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(), "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        import torch

        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def fingerprint_path(path: Path) -> dict[str, Any]:
    """A cheap, stable fingerprint of a data directory: names, sizes and a hash of both.

    Hashing every byte of the mirror on each run would cost more than the demo itself; names plus
    sizes catch a different or partial copy, which is what a reader of the manifest needs to know.
    """
    if not path.exists():
        return {"path": str(path), "exists": False}
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    total = 0
    for file in files:
        size = file.stat().st_size
        total += size
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}\0{size}\n".encode())
    return {"path": str(path), "exists": True, "files": len(files), "bytes": total,
            "sha256_names_sizes": digest.hexdigest()}


# -------------------------------------------------------------------------------------------
# Listing


@dataclass
class RunInfo:
    run_id: str
    path: Path
    experiment: str
    status: str
    started: str
    params_sha256: str
    headline: dict[str, float | None]
    normalized_average: float | None
    # kept so a caller printing more of the run does not read both files again
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)
    metrics: dict[str, Any] = field(default_factory=dict, repr=False)


def headline_metrics(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for bench, setting in HEADLINE:
        value = ((metrics.get(bench) or {}).get(setting) or {}).get("score")
        out[f"{bench}_{setting}"] = value
    return out


def load_run(path: str | os.PathLike[str]) -> RunInfo:
    path = Path(path)
    manifest = read_json(path / "manifest.json", {})
    metrics = read_json(path / "metrics.json", {})
    norm = (metrics.get("normalized_average") or {}).get("value")
    return RunInfo(
        run_id=path.name, path=path, experiment=manifest.get("experiment", ""),
        status=run_status(manifest), started=manifest.get("started", ""),
        params_sha256=manifest.get("params_sha256", ""), headline=headline_metrics(metrics),
        normalized_average=norm, manifest=manifest, metrics=metrics,
    )


def try_rebuild_index(root: str | os.PathLike[str] | None = None) -> Path | None:
    """rebuild_index, or None with a warning when it cannot be written (read-only results,
    full disk): the index is derived data and must never fail a run."""
    import warnings

    try:
        return rebuild_index(root)
    except OSError as exc:
        warnings.warn(f"results index not written ({exc}); `flan-nb runs` rebuilds it", stacklevel=2)
        return None


def list_runs(root: str | os.PathLike[str] | None = None) -> list[RunInfo]:
    root = results_root(root)
    if not root.is_dir():
        return []
    return [load_run(p) for p in sorted(root.iterdir()) if (p / "manifest.json").is_file()]


def rebuild_index(root: str | os.PathLike[str] | None = None) -> Path:
    """results/index.csv: one row a run, status and headline metrics. Derived data (git-ignored):
    rebuilt after each run and by `flan-nb runs`, so deleting it loses nothing."""
    root = results_root(root)
    rows = list_runs(root)
    cols = ["run_id", "experiment", "status", "started", "params_sha256", "normalized_average",
            *[f"{b}_{s}" for b, s in HEADLINE]]
    lines: list[list[Any]] = []
    for info in rows:
        lines.append([info.run_id, info.experiment, info.status, info.started,
                      info.params_sha256[:12], info.normalized_average,
                      *[info.headline.get(f"{b}_{s}") for b, s in HEADLINE]])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    writer.writerows(lines)
    path = root / "index.csv"
    atomic_write_text(path, buf.getvalue())
    return path
