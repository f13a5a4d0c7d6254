"""What the tables read from a run directory: one `RunRecord` per run (its `metrics.json` and
`manifest.json`), the model it evaluated and where its data came from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flan_nb import config
from flan_nb.runs import COMPLETE

BENCHMARKS: tuple[str, ...] = ("mmlu", "bbh", "tydiqa", "mgsm")


class ReportError(ValueError):
    """A run dir or resource file that cannot be turned into a table; the message names file and key."""


# ---------------------------------------------------------------------------------------------
# run records


@dataclass(frozen=True)
class RunRecord:
    """What the tables need from one run dir."""

    path: Path
    run_id: str
    experiment: str
    status: str
    model: str
    metrics: dict[str, Any] = field(repr=False)
    params: dict[str, Any] = field(repr=False, default_factory=dict)
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def label(self) -> str:
        base = f"{self.experiment} / {short_model(self.model)}" if self.model else self.experiment
        return base + (" [partial mixture]" if (self.metrics.get("mixing") or {}).get("partial") else "")

    @property
    def data(self) -> str:
        return data_provenance(self.metrics)

    @property
    def evaluated(self) -> bool:
        return any(isinstance(self.metrics.get(b), dict) for b in BENCHMARKS)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from exc
    if not isinstance(obj, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def load_run(path: str | Path) -> RunRecord:
    """Read <run>/metrics.json (required) and <run>/manifest.json (optional) into a RunRecord."""
    path = Path(path)
    metrics_file = path / "metrics.json"
    if not metrics_file.is_file():
        raise ReportError(f"{metrics_file}: missing (has the run evaluated anything?)")
    metrics = _read_json(metrics_file)
    manifest_file = path / "manifest.json"
    manifest = _read_json(manifest_file) if manifest_file.is_file() else {}
    params = manifest.get("params") or {}
    return RunRecord(
        path=path,
        run_id=str(manifest.get("run_id") or path.name),
        experiment=str(manifest.get("experiment") or params.get("experiment") or path.name),
        status=str(manifest.get("status") or "unknown"),
        model=model_of(metrics, params),
        metrics=metrics,
        params=params,
        manifest=manifest,
    )


def as_records(runs: Iterable[RunRecord | str | Path]) -> list[RunRecord]:
    return [r if isinstance(r, RunRecord) else load_run(r) for r in runs]


def find_runs(
    results_root: str | Path, *, experiment: str | None = None, complete_only: bool = False
) -> list[Path]:
    """Run dirs (those with a metrics.json) under results_root, oldest run id first.

    `experiment` selects runs of that experiment and of its sweep points ("<experiment>-<label>").
    """
    root = Path(results_root)
    found = []
    for metrics_file in sorted(root.glob("*/metrics.json")):
        run_dir = metrics_file.parent
        manifest_file = run_dir / "manifest.json"
        manifest = _read_json(manifest_file) if manifest_file.is_file() else {}
        name = str(manifest.get("experiment", ""))
        # a sweep names its points "<experiment>-<label>"; the experiment selects them all
        if experiment is not None and name != experiment and not name.startswith(experiment + "-"):
            continue
        if complete_only and manifest.get("status") != COMPLETE:
            continue
        found.append(run_dir)
    return found


def model_of(metrics: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> str:
    """The evaluated model as the eval stages recorded it (metrics meta), else a `model` param."""
    for bench in BENCHMARKS:
        meta = (metrics.get(bench) or {}).get("meta") or {}
        if meta.get("model"):  # runs recorded before paths were made project-relative
            return config.project_relative(str(meta["model"]))
    for section in ((params or {}).get("notebooks") or {}).values():
        if isinstance(section, Mapping):
            for key in ("model", "eval_model", "base_model", "model_spec"):
                if section.get(key):
                    return config.project_relative(str(section[key]))
    return ""


def short_model(model: str) -> str:
    # hub ids and local paths both end in the checkpoint's own name
    return model.rstrip("/").rsplit("/", 1)[-1] if model else ""


def data_provenance(metrics: Mapping[str, Any]) -> str:
    """"hub", "offline", "synthetic" (or a mix) plus ", subsampled" from the eval metas."""
    kinds: list[str] = []
    subsampled = False
    for bench in BENCHMARKS:
        meta = (metrics.get(bench) or {}).get("meta") or {}
        kind = meta.get("data")
        if kind and kind not in kinds:
            kinds.append(str(kind))
        subsampled = subsampled or bool(meta.get("subsampled"))
    text = "+".join(kinds) if kinds else "unknown"
    return f"{text}, subsampled" if subsampled else text
