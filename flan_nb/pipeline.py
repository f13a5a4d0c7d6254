"""The runner: execute the notebooks a params file names, in order, into a fresh run directory.

Everything a reader needs to trust a result is recorded before and after each notebook: the
resolved params and their hash, the code version, package versions, data fingerprints, seeds,
hardware and a per-notebook status. A failing notebook keeps its executed copy (with the error)
in the run directory, the run is marked `failed`, and the runner exits non-zero.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import os
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flan_nb import config, runs, value_checks
from flan_nb.config import split_key
from flan_nb.eval import protocols

# Which frozen dataclass validates each notebook's parameters. The source notebook's parameters
# cell must declare exactly these fields (tests/test_notebooks.py checks it).
NOTEBOOK_PARAMS: dict[str, str] = {
    "00_walkthrough": "flan_nb.walkthrough:WalkthroughParams",
    "01_data_mixing": "flan_nb.data.mixing:MixingParams",
    "02_finetune": "flan_nb.train.params:TrainParams",
    "03_eval_mmlu": "flan_nb.eval.driver:EvalParams",
    "04_eval_bbh": "flan_nb.eval.driver:EvalParams",
    "05_eval_tydiqa": "flan_nb.eval.driver:EvalParams",
    "06_eval_mgsm": "flan_nb.eval.driver:EvalParams",
    "07_tables": "flan_nb.report.tables:TablesParams",
    "08_scaling": "flan_nb.report.figures:ScalingParams",
    "09_before_after": "flan_nb.report.before_after:BeforeAfterParams",
}
INJECTED = ("run_dir", "params_file")
TOP_LEVEL = {"experiment": str, "description": str, "notebooks": dict}


class PipelineError(RuntimeError):
    """A notebook failed; the run directory holds its executed copy with the error."""

    def __init__(self, message: str, run_dir: Path | None = None):
        super().__init__(message)
        self.run_dir = run_dir


def notebooks_dir() -> Path:
    return config.project_root() / "notebooks"


def section_of(params: Mapping[str, Any], key: str, params_file: str = "") -> dict[str, Any]:
    """The params file section of notebook key `key`, with the label of a labelled key set."""
    notebook, label = split_key(key, params_file)
    section = config.notebook_section(params, key, params_file)
    if not label:
        return section
    cls = params_class(notebook, params_file)
    if "label" not in {f.name for f in dataclasses.fields(cls)}:
        raise config.ParamsError(f"notebook key `{key}` in params file {params_file}: notebook "
                                 f"{notebook} has no `label` parameter, so it cannot run twice; "
                                 "only the evaluation notebooks can")
    if section.get("label", label) != label:
        raise config.ParamsError(f"section {key} of params file {params_file} sets label "
                                 f"`{section['label']}`; the key's label is `{label}`: drop the key")
    return {**section, "label": label}


def params_class(notebook: str, params_file: str = "") -> type:
    try:
        target = NOTEBOOK_PARAMS[notebook]
    except KeyError:
        where = f" in params file {params_file}" if params_file else ""
        raise config.ParamsError(f"unknown notebook `{notebook}`{where}"
                                 f"{config.did_you_mean(notebook, NOTEBOOK_PARAMS)}") from None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _check_top_level(params: Mapping[str, Any], params_file: str) -> None:
    for key in params:
        if key not in TOP_LEVEL:
            raise config.ParamsError(
                f"unknown top-level key `{key}` in params file {params_file}; "
                f"allowed: {', '.join(TOP_LEVEL)}"
            )
    for key, tp in TOP_LEVEL.items():
        if key == "description" and key not in params:
            continue
        if key not in params:
            raise config.ParamsError(f"params file {params_file} is missing `{key}`")
        if not isinstance(params[key], tp):
            raise config.ParamsError(
                f"`{key}` in params file {params_file} must be a {tp.__name__}, got "
                f"{type(params[key]).__name__}"
            )
    if not params["notebooks"]:
        raise config.ParamsError(f"params file {params_file} names no notebooks")


def resolve(params: Mapping[str, Any], params_file: str = "",
            nb_dir: Path | None = None) -> dict[str, Any]:
    """Check every section against its notebook, before anything runs; return resolved params.

    Resolved = each notebook's parameters-cell defaults overlaid with the params file section, so
    the params hash changes when a notebook default changes (a sweep never mistakes an old run).
    """
    _check_top_level(params, params_file)
    nb_dir = nb_dir or notebooks_dir()
    resolved: dict[str, Any] = {k: copy.deepcopy(v) for k, v in params.items() if k != "notebooks"}
    resolved["notebooks"] = {}
    for key in params["notebooks"]:
        notebook, _ = split_key(key, params_file)
        section = section_of(params, key, params_file)
        path = nb_dir / f"{notebook}.ipynb"
        cls = params_class(notebook, params_file)
        if not path.is_file():
            raise config.ParamsError(f"params file {params_file} names notebook {notebook}, but "
                                     f"{path} does not exist")
        for name in INJECTED:
            if name in section:
                raise config.ParamsError(
                    f"`{name}` in section {key} of params file {params_file} is set by the "
                    "runner; remove it"
                )
        defaults = config.parameters_cell(path)
        merged = {**defaults, **section}
        values = config.check_values(cls, {k: v for k, v in merged.items() if k not in INJECTED},
                                     params_file=params_file, notebook=key,
                                     require_all=False)
        if "protocol" in values:  # eval notebooks: protocol values for the keys left None
            values = protocols.fill(values, f"params file {params_file}, notebook {key}")
        cfg = cls(**{**values, **{k: "" for k in INJECTED}})
        value_checks.check(notebook, cfg, params_file)
        resolved["notebooks"][key] = config.as_dict(cfg)
        for name in INJECTED:
            resolved["notebooks"][key].pop(name)
    return resolved


def _seeds(resolved: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{nb}.{k}": v for nb, sec in resolved["notebooks"].items() for k, v in sec.items()
            if "seed" in k}


def _data_fingerprints(resolved: Mapping[str, Any]) -> dict[str, Any]:
    roots = {sec["data_root"] for sec in resolved["notebooks"].values() if sec.get("data_root")}
    if os.environ.get(config.DATA_ENV):
        roots.add(os.environ[config.DATA_ENV])
    out: dict[str, Any] = {}
    for root in sorted(roots):
        path = config.data_root(root)
        if path is not None:
            out[root] = runs.fingerprint_path(path)
    return out


def _stamp_notebook(path: Path, manifest: Mapping[str, Any]) -> None:
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["flan_nb"] = dict(manifest)
    # the injected run_dir, printed paths and warnings name the checkout: keep them relative
    runs.atomic_write_text(path, runs.portable(nbformat.writes(nb)))


def _finalize_metrics(run: runs.Run) -> None:
    """Add the paper's normalized average once the benchmark metrics exist."""
    from flan_nb.eval import scores

    labelled = [run.labelled(p.parent.name) for p in sorted(run.path.glob("*/metrics.json"))]
    for target in [run, *labelled]:
        metrics = target.read_metrics()
        if any(b in metrics for b in ("mmlu", "bbh", "tydiqa", "mgsm")):
            target.write_metrics("normalized_average", scores.normalized_average(metrics))


def _error_text(exc: BaseException) -> str:
    """`Type: message` of what failed: the notebook's own exception for a cell error (papermill's
    str() is the whole traceback, whose last line is often a progress bar), else exc itself.
    One line: details (a training stderr tail) stay in the executed notebook."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        lines = str(evalue or "").strip().splitlines()
        return f"{ename}: {lines[0] if lines else ''}".strip()
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[-1] if text else ''}"


def _select(order: list[str], only: Iterable[str] | None, params_file: str) -> list[str]:
    if not only:
        return order
    only = list(only)
    unknown = [n for n in only if n not in order]
    if unknown:
        raise config.ParamsError(f"--only names {', '.join(unknown)}, not in params file "
                                 f"{params_file} (it has {', '.join(order)})")
    return [n for n in order if n in only]


def _new_run(params_path: Path, resolved: Mapping[str, Any], order: list[str],
             only: Iterable[str] | None, root: Path) -> tuple[runs.Run, dict[str, Any]]:
    """Create the run directory and its first manifest (only after every check passed)."""
    run = runs.create_run(str(resolved["experiment"]), resolved, root)
    runs.write_json(run.path / "params.json", resolved)
    manifest: dict[str, Any] = {
        "run_id": run.run_id, "experiment": resolved["experiment"],
        "description": resolved.get("description", ""),
        "params_file": config.project_relative(params_path), "params": resolved,
        "params_sha256": runs.params_hash(resolved), "only": list(only) if only else None,
        "git": runs.git_state(), "versions": runs.package_versions(),
        "data": _data_fingerprints(resolved), "seeds": _seeds(resolved),
        # protocols: each eval notebook's protocol and every value that differs from it
        "protocols": protocols.manifest_entry(resolved),
        "hardware": runs.hardware(), "runner": runs.runner_info(), "started": runs.utc_now(),
        "ended": None,
        "status": "running", "notebooks": {n: {"status": "pending"} for n in order},
    }
    runs.write_json(run.path / "manifest.json", manifest)
    return run, manifest


def _resume_run(ref: str, params_file: str | os.PathLike[str] | None, root: Path, nb_dir: Path,
                amend: bool = False) -> tuple[runs.Run, dict[str, Any], Path]:
    """Reopen a run to continue it: its params file must still resolve to the same params.

    amend: the sections of notebooks that have not completed may differ (e.g. a smaller stated
    subsample for a benchmark that did not fit); everything a complete notebook ran with must
    still be the same. The manifest then takes the new params (hash, seeds, protocols, data
    fingerprints) and records the change under `amended`: when, at which git state, each changed
    key's old and new value, and a changed description.
    """
    try:
        path = runs.find_run(ref, root)
    except FileNotFoundError as exc:
        raise config.ParamsError(f"--resume {ref}: {exc}") from None
    manifest = runs.read_json(path / "manifest.json")
    if not isinstance(manifest, dict) or "params_sha256" not in manifest:
        raise config.ParamsError(f"--resume {ref}: {path} has no readable manifest.json")
    params_path = config.resolve_path(params_file or manifest["params_file"])
    resolved = resolve(config.load_params_file(params_path), str(params_path), nb_dir)
    amendment: dict[str, Any] | None = None
    if runs.params_hash(resolved) != manifest["params_sha256"]:
        if not amend:
            raise config.ParamsError(
                f"--resume {ref}: params file {params_path} no longer resolves to the params of "
                f"run {path.name} (hash {runs.params_hash(resolved)[:8]} != "
                f"{manifest['params_sha256'][:8]}); resuming would mix two configurations, so "
                "start a new run instead (or add --amend if only notebooks that have not "
                "completed changed)")
        amendment = {"notebooks": _amendable_changes(ref, manifest, resolved, params_path)}
        old_description = (manifest.get("params") or {}).get("description", "")
        if resolved.get("description", "") != old_description:
            amendment["description"] = {"from": old_description,
                                        "to": resolved.get("description", "")}
    if runs.run_status(manifest) == "running":
        raise config.ParamsError(f"--resume {ref}: run {path.name} is still running (runner pid "
                                 f"{(manifest.get('runner') or {}).get('pid')}); wait for it or "
                                 "stop it first")
    # the code that runs the remaining notebooks may be newer than the run's `git`
    manifest.setdefault("resumed", []).append({"at": runs.utc_now(), "git": runs.git_state()})
    if amendment is not None:
        manifest.setdefault("amended", []).append({
            "at": runs.utc_now(), "git": runs.git_state(),
            "params_sha256_before": manifest["params_sha256"],
            "params_sha256": runs.params_hash(resolved), **amendment})
        manifest.update(params=resolved, params_sha256=runs.params_hash(resolved),
                        description=resolved.get("description", ""), seeds=_seeds(resolved),
                        protocols=protocols.manifest_entry(resolved),
                        data=_data_fingerprints(resolved))
        runs.write_json(path / "params.json", resolved)
    # this process is the run's runner now, so `flan-nb runs` does not call it interrupted
    manifest.update(status="running", ended=None, runner=runs.runner_info())
    manifest.pop("error", None)
    runs.write_json(path / "manifest.json", manifest)
    return runs.Run(path=path, run_id=path.name), manifest, params_path


def _amendable_changes(ref: str, manifest: Mapping[str, Any], resolved: Mapping[str, Any],
                       params_path: Path) -> dict[str, dict[str, Any]]:
    """{notebook: {key: {"from": old, "to": new}}} between the run's params and `resolved`;
    ParamsError if anything a complete notebook ran with, the notebook list, or a top-level
    key other than the description changed."""
    old = manifest.get("params")
    where = f"--resume {ref} --amend ({params_path})"
    if not isinstance(old, Mapping):
        raise config.ParamsError(f"{where}: the run's manifest holds no params to compare with")
    top = sorted(k for k in set(old) | set(resolved)
                 if k not in ("notebooks", "description") and old.get(k) != resolved.get(k))
    if top:
        raise config.ParamsError(f"{where}: top-level {', '.join(top)} changed; only sections of "
                                 "notebooks that have not completed may change")
    if list(old["notebooks"]) != list(resolved["notebooks"]):
        raise config.ParamsError(f"{where}: the notebook list changed ({list(old['notebooks'])} -> "
                                 f"{list(resolved['notebooks'])}); start a new run instead")
    changes: dict[str, dict[str, Any]] = {}
    for notebook, section in resolved["notebooks"].items():
        before = old["notebooks"][notebook]
        diff = {k: {"from": before.get(k), "to": section.get(k)}
                for k in sorted(set(before) | set(section)) if before.get(k) != section.get(k)}
        if not diff:
            continue
        if manifest["notebooks"].get(notebook, {}).get("status") == runs.COMPLETE:
            raise config.ParamsError(
                f"{where}: notebook {notebook} is complete, but its params changed "
                f"({', '.join(diff)}); its results would no longer match the manifest, so start "
                "a new run instead")
        changes[notebook] = diff
    return changes


def _use_venv_python() -> None:
    """The kernel is started as `python`: make that the interpreter running us (the .venv)."""
    env_path = os.environ.get("PATH", "")
    bin_dir = str(Path(sys.executable).parent)
    if not env_path.startswith(bin_dir + os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + env_path


def _execute(notebook: str, run: runs.Run, params: Mapping[str, Any], params_path: Path,
             nb_dir: Path, progress: bool) -> str | None:
    """Run one notebook into the run directory; None on success, else the error text.

    With `progress`, the notebook's stderr (its tqdm bars, the training bar, warnings) streams
    to this terminal while it runs; its printed tables stay in the executed notebook.
    """
    import papermill

    section = section_of(params, notebook, str(params_path))
    parameters = {**section, "run_dir": str(run.path), "params_file": str(params_path)}
    streams = {"stderr_file": sys.stderr} if progress else {}
    source, _ = split_key(notebook)
    try:
        papermill.execute_notebook(
            str(nb_dir / f"{source}.ipynb"), str(run.path / f"{notebook}.ipynb"),
            parameters=parameters, cwd=str(config.project_root()), kernel_name="python3",
            progress_bar=False, report_mode=False, **streams,
        )
    except Exception as exc:  # papermill raises on a cell error, after saving the notebook
        return _error_text(exc)
    return None


def _run_notebooks(run: runs.Run, manifest: dict[str, Any], params: Mapping[str, Any],
                   params_path: Path, order: list[str], nb_dir: Path, log: Any,
                   progress: bool) -> str | None:
    """Each notebook in order (complete ones of a resumed run are kept); the failed one or None."""
    for notebook in order:
        if manifest["notebooks"][notebook].get("status") == runs.COMPLETE:
            log(f"  {notebook} kept (complete)")
            continue
        manifest["notebooks"][notebook] = {"status": "running", "started": runs.utc_now()}
        runs.write_json(run.path / "manifest.json", manifest)
        log(f"  {notebook} ...")
        start = time.monotonic()
        error = _execute(notebook, run, params, params_path, nb_dir, progress)
        status = "failed" if error else "complete"
        seconds = round(time.monotonic() - start, 1)
        manifest["notebooks"][notebook].update(status=status, ended=runs.utc_now(),
                                               seconds=seconds, error=error)
        runs.write_json(run.path / "manifest.json", manifest)
        log(f"  {notebook} {status} in {seconds} s" + (f": {error}" if error else ""))
        if error:
            return notebook
    return None


def _finish(run: runs.Run, manifest: dict[str, Any], order: list[str], failed: str | None,
            root: Path) -> str | None:
    """Final metrics, statuses, stamped notebooks and the index; the failed step or None."""
    if failed is None:
        try:
            _finalize_metrics(run)
        except Exception as exc:  # a scoring bug must not mark a good run complete silently
            failed = "normalized_average"
            manifest["error"] = f"normalized average: {type(exc).__name__}: {exc}"
    for notebook in order:
        if manifest["notebooks"][notebook]["status"] == "pending":
            manifest["notebooks"][notebook]["status"] = "skipped"
    manifest["status"] = "failed" if failed else runs.COMPLETE
    manifest["ended"] = runs.utc_now()
    runs.write_json(run.path / "manifest.json", manifest)
    for notebook in order:
        target = run.path / f"{notebook}.ipynb"
        if target.is_file():
            _stamp_notebook(target, manifest)
    runs.try_rebuild_index(root)
    return failed


def run(params_file: str | os.PathLike[str] | None = None, *,
        results_root: str | os.PathLike[str] | None = None, only: Iterable[str] | None = None,
        nb_dir: str | os.PathLike[str] | None = None, log=print, resume: str | None = None,
        progress: bool = False, amend: bool = False) -> Path:
    """Execute the params file's notebooks into `results/<run-id>/`; return the run directory.

    Every notebook section is type- and value-checked before the run directory exists
    (config.ParamsError). `resume` (a run id, a unique part of one, or a run dir) continues that
    run instead: complete notebooks are kept, the rest run again, and training resumes from the
    run's last checkpoint; with `amend`, the params of notebooks that have not completed may
    have changed (recorded in the manifest, see `_resume_run`). `progress` streams the notebooks' progress bars to this terminal.
    Raises PipelineError when a notebook fails (its executed copy is kept in the run dir).
    """
    nb_dir = Path(nb_dir) if nb_dir else notebooks_dir()
    root = runs.results_root(results_root)
    if resume:
        if only:
            raise config.ParamsError("--only and --resume do not combine: a resumed run keeps "
                                     "the notebooks it was started with")
        run, manifest, params_path = _resume_run(resume, params_file, root, nb_dir, amend)
        params = config.load_params_file(params_path)
        order = list(manifest["notebooks"])
        log(f"resuming run {run.run_id} -> {run.path}")
    else:
        if amend:
            raise config.ParamsError("--amend goes with --resume RUN")
        if params_file is None:
            raise config.ParamsError("give a params file (or --resume RUN)")
        params_path = Path(params_file).resolve()
        params = config.load_params_file(params_path)
        resolved = resolve(params, str(params_file), nb_dir)
        order = _select(list(resolved["notebooks"]), only, str(params_file))
        run, manifest = _new_run(params_path, resolved, order, only, root)
        log(f"run {run.run_id} -> {run.path}")
    _use_venv_python()
    failed = _run_notebooks(run, manifest, params, params_path, order, nb_dir, log, progress)
    failed = _finish(run, manifest, order, failed, root)
    if failed:
        error = manifest["notebooks"].get(failed, {}).get("error") or manifest.get("error", "")
        raise PipelineError(f"run {run.run_id} failed in {failed}: {error}; see "
                            f"{run.path / (failed + '.ipynb')}", run.path)
    log(f"run {run.run_id} complete: {run.path}")
    return run.path
