"""Grids of pipeline runs (`flan-nb sweep SWEEP.yaml`).

A sweep file names a base params file and a grid; every grid point is the base params with some
dotted keys deep-set (e.g. "notebooks.01_data_mixing.preset"). Each point is written as a resolved
params file under results/sweeps/<name>/ and run with `pipeline.run`, unless a COMPLETE run with the
same params hash already exists. The sweep is recorded in results/sweeps/<name>.json (grid point ->
run id, status), rewritten after every point so an interrupted sweep can be resumed.

Sweep file:
```yaml
name: task_scaling_tiny
description: one line
base: params/demo.yaml                    # relative to the project root, else to the sweep file
experiment: "{name}-{label}"              # optional; fields: name, label and every tag
set: {notebooks.02_finetune.steps: 20}  # applied to every point
drop: []                                  # dotted keys removed from every point
axes:                                     # the grid is the cartesian product of the axes
  - name: tasks
    values:                               # full form: label, tags (for figures), set, drop
      - {label: "0", tags: {n_tasks: 0},  # 0 tasks = no finetuning: drop the mixing/finetune
         drop: [notebooks.01_data_mixing, notebooks.02_finetune]}   # notebooks, eval the init
      - {label: "9", tags: {n_tasks: 9}, set: {notebooks.01_data_mixing.preset: cot}}
  - name: model
    keys: [notebooks.02_finetune.model]   # short form: scalar values set on every listed key
    values: [builtin:tiny-t5]
```
`base` may also be inline params (a mapping), or set per level (`base: params/flan-t5-xl.yaml` on
each model level). A whole-string value "${tag}" is replaced by that tag of the point, e.g. the
0-task point evaluates "${init_model}" given by the model axis.

The params hash of a point is `runs.params_hash(pipeline.resolve(params))`, the same hash the
runner writes into manifest.json, so a point is recognised as done whichever way it was run.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from flan_nb import config, runs, yaml_io

Runner = Callable[..., Path]


class SweepError(ValueError):
    """A sweep file that cannot be expanded; the message names file and key."""


@dataclass(frozen=True)
class Level:
    label: str
    overrides: dict[str, Any]
    tags: dict[str, Any]
    drop: tuple[str, ...] = ()
    base: Path | None = None  # a level may pick the base params file (e.g. one per model size)


@dataclass(frozen=True)
class Axis:
    name: str
    levels: tuple[Level, ...]


@dataclass(frozen=True)
class Sweep:
    name: str
    description: str
    file: Path
    base: Path | dict[str, Any]   # a params file, or params written inline in the sweep file
    experiment: str
    overrides: dict[str, Any]
    axes: tuple[Axis, ...]
    drop: tuple[str, ...] = ()


@dataclass
class GridPoint:
    label: str
    tags: dict[str, Any]
    overrides: dict[str, Any]
    params: dict[str, Any] = field(repr=False)
    params_sha256: str = ""
    drop: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# parsing


def _resolve(path_text: str, sweep_file: Path) -> Path:
    path = Path(path_text)
    if path.is_absolute():
        return path
    root = config.project_root()
    for base in (root, sweep_file.parent):
        if (base / path).is_file():
            return (base / path).resolve()
    raise SweepError(f"{sweep_file}: key 'base': params file {path_text!r} not found "
                     f"(looked under {root} and {sweep_file.parent})")  # fmt: skip


def _label(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(value)).strip("-") or "x"


def load_sweep(sweep_file: str | Path) -> Sweep:
    """Parse and check a sweep file (keys, axes, levels); does not touch the base params yet."""
    path = Path(sweep_file).resolve()
    try:
        raw = yaml_io.load_file(path)
    except FileNotFoundError as exc:
        raise SweepError(f"sweep file {path} not found") from exc
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise SweepError(f"{path}: expected a mapping at the top level")
    known = {"name", "description", "base", "experiment", "set", "drop", "axes"}
    unknown = set(raw) - known
    if unknown:
        raise SweepError(f"{path}: unknown keys {sorted(unknown)} (allowed: {sorted(known)})")
    for key in ("name", "axes"):
        if not raw.get(key):
            raise SweepError(f"{path}: missing required key {key!r}")
    name = str(raw["name"])
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SweepError(f"{path}: key 'name': {name!r} must be letters, digits, '_', '-', '.'")
    overrides = raw.get("set") or {}
    if not isinstance(overrides, Mapping):
        raise SweepError(f"{path}: key 'set': expected a mapping of dotted keys to values")
    axes = tuple(_parse_axis(ax, i, path) for i, ax in enumerate(raw["axes"]))
    base_raw = raw.get("base")
    if isinstance(base_raw, Mapping):
        base: Path | dict[str, Any] = copy.deepcopy(dict(base_raw))
    elif base_raw:
        base = _resolve(str(base_raw), path)
    elif any(all(lv.base for lv in ax.levels) for ax in axes):
        base = Path()  # every point takes its base from a level
    else:
        raise SweepError(f"{path}: missing required key 'base' (a params file or inline params)")
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise SweepError(f"{path}: axis names repeat: {names}")
    return Sweep(
        name=name,
        description=str(raw.get("description") or ""),
        file=path,
        base=base,
        experiment=str(raw.get("experiment") or "{name}-{label}"),
        overrides=dict(overrides),
        axes=axes,
        drop=tuple(_str_list(raw.get("drop"), f"{path}: key 'drop'")),
    )


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise SweepError(f"{where}: expected a list of dotted keys")
    return list(value)


def _parse_axis(raw: Any, i: int, path: Path) -> Axis:
    where = f"{path}: axes[{i}]"
    if not isinstance(raw, Mapping) or not raw.get("name") or not raw.get("values"):
        raise SweepError(f"{where}: expected a mapping with 'name' and a non-empty 'values' list")
    unknown = set(raw) - {"name", "keys", "key", "values", "labels"}
    if unknown:
        raise SweepError(f"{where}: unknown keys {sorted(unknown)}")
    keys = raw.get("keys", raw.get("key"))
    keys = [keys] if isinstance(keys, str) else list(keys or [])
    labels = list(raw.get("labels") or [])
    values = list(raw["values"])
    if labels and len(labels) != len(values):
        raise SweepError(f"{where}: {len(labels)} labels for {len(values)} values")
    levels = []
    for j, value in enumerate(values):
        if isinstance(value, Mapping) and (set(value) & {"set", "drop", "label", "base"}):
            extra = set(value) - {"label", "set", "tags", "drop", "value", "base"}
            if extra:
                raise SweepError(f"{where}.values[{j}]: unknown keys {sorted(extra)}")
            set_ = dict(value.get("set") or {})
            if "value" in value:  # the short-form keys may also be given a value in the full form
                for key in keys:
                    set_.setdefault(key, value["value"])
            label = str(value.get("label") if value.get("label") is not None else j)
            drop = tuple(_str_list(value.get("drop"), f"{where}.values[{j}].drop"))
            base = _resolve(str(value["base"]), path) if value.get("base") else None
            levels.append(Level(_label(label), set_, dict(value.get("tags") or {}), drop, base))
        else:
            if not keys:
                raise SweepError(f"{where}.values[{j}]: a scalar value needs the axis 'keys'")
            label = labels[j] if labels else short_value(value)
            levels.append(Level(_label(label), {k: value for k in keys}, {}))
    seen = [lv.label for lv in levels]
    if len(set(seen)) != len(seen):
        raise SweepError(f"{where}: level labels repeat: {seen}")
    return Axis(str(raw["name"]), tuple(levels))


def short_value(value: Any) -> str:
    text = str(value)
    return text.rstrip("/").rsplit("/", 1)[-1].replace("builtin:", "")


def deep_set(params: dict[str, Any], dotted: str, value: Any, *, where: str = "") -> None:
    """params["a"]["b"]["c"] = value for dotted "a.b.c". Every parent must already exist (a typo in
    a notebook name must not silently add a section); the leaf may be new."""
    parts = dotted.split(".")
    node: Any = params
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            have = sorted(node) if isinstance(node, dict) else type(node).__name__
            raise SweepError(f"{where}key {dotted!r}: {'.'.join(parts[: depth + 1])!r} not in the "
                             f"base params (have {have})")  # fmt: skip
        if node[part] is None:  # an empty notebook section in YAML
            node[part] = {}
        node = node[part]
    if not isinstance(node, dict):
        raise SweepError(f"{where}key {dotted!r}: parent is a {type(node).__name__}, not a mapping")
    node[parts[-1]] = value


def deep_delete(params: dict[str, Any], dotted: str, *, where: str = "") -> None:
    """Remove params["a"]["b"] for dotted "a.b"; the key must exist (typos are errors)."""
    parts = dotted.split(".")
    node: Any = params
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            raise SweepError(f"{where}drop {dotted!r}: {'.'.join(parts[: depth + 1])!r} not in "
                             "the base params")  # fmt: skip
        if depth == len(parts) - 1:
            del node[part]
            return
        node = node[part]


# ---------------------------------------------------------------------------------------------
# expansion


def resolved_hash(params: Mapping[str, Any], params_file: str = "") -> str:
    """Hash of the params as the runner resolves them (notebook defaults filled in); also checks
    every point against the notebooks before anything runs (config.ParamsError names the key)."""
    from flan_nb import pipeline

    return runs.params_hash(pipeline.resolve(params, params_file))


def expand(sweep: Sweep, *, hash_fn: Callable[..., str] | None = None) -> list[GridPoint]:
    """Every grid point with its params (base + sweep `set`/`drop` + the levels' `set`/`drop`).

    hash_fn(params, params_file) -> str; default `resolved_hash` (tests inject a plain hash)."""
    hash_fn = hash_fn or resolved_hash
    points = []
    for combo in itertools.product(*(ax.levels for ax in sweep.axes)):
        label = "__".join(f"{ax.name}-{lv.label}" for ax, lv in zip(sweep.axes, combo))
        level_bases = [lv.base for lv in combo if lv.base is not None]
        if len(level_bases) > 1:
            raise SweepError(f"{sweep.file}: point {label}: several levels set 'base'")
        base = _load_base(level_bases[0] if level_bases else sweep.base, sweep.file)
        tags: dict[str, Any] = {}
        overrides = dict(sweep.overrides)
        drop = list(sweep.drop)
        for ax, lv in zip(sweep.axes, combo):
            tags[ax.name] = lv.label
            tags.update(lv.tags)
            overrides.update(lv.overrides)
            drop += [d for d in lv.drop if d not in drop]
        params = base
        where = f"{sweep.file}: point {label}: "
        for key in drop:
            deep_delete(params, key, where=where)
        for key, value in overrides.items():
            if any(key == d or key.startswith(d + ".") for d in drop):
                continue  # a dropped notebook's keys (e.g. the no-finetuning point) are not set
            deep_set(params, key, _substitute(value, tags, where + f"key {key!r}: "), where=where)
        try:
            params["experiment"] = sweep.experiment.format(name=sweep.name, label=label, **tags)
        except KeyError as exc:
            raise SweepError(f"{sweep.file}: key 'experiment': unknown field {exc}") from exc
        params["description"] = f"{sweep.description} [{label}]".strip()
        digest = hash_fn(params, f"{sweep.file} (point {label})")
        points.append(GridPoint(label, tags, overrides, params, digest, tuple(drop)))
    return points


def _load_base(base: Path | Mapping[str, Any], sweep_file: Path) -> dict[str, Any]:
    if isinstance(base, Mapping):
        return copy.deepcopy(dict(base))
    if base == Path():
        raise SweepError(f"{sweep_file}: a point has no base params (no 'base' key, no level base)")
    try:
        loaded = yaml_io.load_file(base)
    except yaml.YAMLError as exc:
        raise SweepError(f"{base}: invalid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise SweepError(f"{base}: expected a params mapping")
    return loaded


_TAG_REF = re.compile(r"^\$\{([A-Za-z0-9_]+)\}$")


def _substitute(value: Any, tags: Mapping[str, Any], where: str) -> Any:
    """A whole-string "${tag}" value becomes that tag of the point (e.g. the 0-task point evaluates
    the model axis' init checkpoint); every other value is used as written."""
    if isinstance(value, str):
        m = _TAG_REF.match(value)
        if m:
            if m.group(1) not in tags:
                raise SweepError(f"{where}{value} names no tag of this point (tags: {sorted(tags)})")
            return tags[m.group(1)]
    if isinstance(value, Mapping):
        return {k: _substitute(v, tags, where) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------
# existing runs


def existing_runs(results_root: Path) -> dict[str, list[dict[str, Any]]]:
    """params hash -> [{run_id, run_dir, status}] over results_root/*/manifest.json, newest last.

    Keyed by the manifest's params_sha256 (the hash of the resolved params), so a run made by
    `flan-nb run` on identical params is reused too."""
    index: dict[str, list[dict[str, Any]]] = {}
    for manifest_file in sorted(Path(results_root).glob("*/manifest.json")):
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # a run being written right now; it cannot be COMPLETE yet
        entry = {"run_id": manifest.get("run_id") or manifest_file.parent.name,
                 "run_dir": str(manifest_file.parent), "status": str(manifest.get("status", "")),
                 "partial": bool(manifest.get("only"))}  # fmt: skip
        if manifest.get("params_sha256"):
            index.setdefault(str(manifest["params_sha256"]), []).append(entry)
    return index


def _complete(entries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    # a run made with `--only` ran a subset of the notebooks: complete, but not this grid point
    done = [e for e in entries
            if e["status"] == runs.COMPLETE and not e.get("partial")]  # fmt: skip
    return done[-1] if done else None


# ---------------------------------------------------------------------------------------------
# running


def _default_runner() -> Runner:
    from flan_nb import pipeline

    return pipeline.run


def record_path(name: str, results_root: str | Path | None = None) -> Path:
    return runs.results_root(results_root) / "sweeps" / f"{name}.json"


def run_sweep(
    sweep_file: str | Path,
    *,
    results_root: str | Path | None = None,
    runner: Runner | None = None,
    dry_run: bool = False,
    hash_fn: Callable[..., str] | None = None,
) -> Path:
    """Run every grid point not yet COMPLETE; returns results/sweeps/<name>.json.

    runner(params_file, results_root=...) -> run dir defaults to pipeline.run. A failing point is
    recorded as "failed" with its error and the sweep continues; dry_run writes the params files and
    the record (statuses "planned" / "complete") without running anything.
    """
    sweep = load_sweep(sweep_file)
    root = runs.results_root(results_root)
    points = expand(sweep, hash_fn=hash_fn)
    params_dir = root / "sweeps" / sweep.name
    params_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "name": sweep.name,
        "description": sweep.description,
        "sweep_file": str(sweep.file),
        "base": str(sweep.base) if isinstance(sweep.base, Path) else "inline",
        "axes": [ax.name for ax in sweep.axes],
        "results_root": str(root),
        "started": _now(),
        "points": [],
    }
    out = record_path(sweep.name, root)
    index = existing_runs(root)
    entries = []
    for p in points:
        params_file = params_dir / f"{p.label}.yaml"
        params_file.write_text(yaml.safe_dump(p.params, sort_keys=False), encoding="utf-8")
        entries.append({"label": p.label, "tags": p.tags, "overrides": p.overrides,
                        "drop": list(p.drop),
                        "params_file": str(params_file), "params_sha256": p.params_sha256,
                        "status": "planned", "run_id": None, "run_dir": None,
                        "reused": False, "error": None})  # fmt: skip
    record["points"] = entries
    for entry in entries:
        done = _complete(index.get(entry["params_sha256"], []))
        if done:
            entry.update(status="complete", run_id=done["run_id"], run_dir=done["run_dir"], reused=True)
    _finish(record, out)
    if dry_run:
        return out
    run = runner or _default_runner()
    todo = [e for e in entries if e["status"] != "complete"]
    for entry in tqdm(todo, desc=f"sweep {sweep.name}", unit="run"):
        entry["status"] = "running"
        _finish(record, out)
        try:
            run_dir = Path(run(entry["params_file"], results_root=root))
        except Exception as exc:  # noqa: BLE001 - one failed grid point must not stop the sweep
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            failed_dir = getattr(exc, "run_dir", None)  # pipeline.PipelineError carries it
            if failed_dir:
                entry.update(run_id=Path(failed_dir).name, run_dir=str(failed_dir))
            tqdm.write(f"sweep {sweep.name}: point {entry['label']} failed: {entry['error']}")
        else:
            manifest = _manifest(run_dir)
            status = str(manifest.get("status") or "complete")
            entry.update(status=status.lower(), run_id=manifest.get("run_id") or run_dir.name,
                         run_dir=str(run_dir))  # fmt: skip
        _finish(record, out)
    return out


def _manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _finish(record: dict[str, Any], out: Path) -> None:
    counts: dict[str, int] = {}
    for e in record["points"]:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    record["summary"] = counts
    record["updated"] = _now()
    # ASCII-escaped, unlike runs.write_json: the record's bytes stay as they always were
    runs.atomic_write_text(out, json.dumps(record, indent=2, default=str) + "\n")


def load_record(path_or_name: str | Path, results_root: str | Path | None = None) -> dict[str, Any]:
    """A sweep record by path or by sweep name (results/sweeps/<name>.json)."""
    path = Path(path_or_name)
    if not path.suffix:
        path = record_path(str(path_or_name), results_root)
    return json.loads(path.read_text(encoding="utf-8"))
