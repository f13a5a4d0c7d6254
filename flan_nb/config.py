"""Params validation into frozen dataclasses, and where the project and its data live.

Papermill only warns about unknown parameters and never checks types, so a typo in a params file
would silently run the notebook's defaults. Every notebook therefore validates its parameters into
a frozen dataclass here, and the runner checks every section before any notebook starts.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from flan_nb import yaml_io

T = TypeVar("T")

DATA_ENV = "FLAN_NB_DATA"


class ParamsError(ValueError):
    """A params file or notebook parameter is unknown, mistyped or missing."""


def project_root() -> Path:
    """The checkout holding pyproject.toml; notebooks run from notebooks/ or the root alike."""
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "flan_nb").is_dir():
            return candidate
    package_parent = Path(__file__).resolve().parent.parent
    if (package_parent / "pyproject.toml").is_file():
        return package_parent
    return here


def did_you_mean(name: str, valid: Iterable[str], *, n: int = 3, show: int = 20) -> str:
    """The tail of an unknown-name error: the closest valid names, else (some of) the valid ones."""
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=n, cutoff=0.5)
    if close:
        return f"; did you mean {', '.join(close)}?"
    more = f", ... ({len(valid)} in all)" if len(valid) > show else ""
    return f"; known: {', '.join(valid[:show])}{more}"


def resolve_path(value: str | os.PathLike[str]) -> Path:
    """Relative paths in params mean 'relative to the project root', wherever the kernel runs."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (project_root() / path).resolve()


def project_relative(value: str | os.PathLike[str]) -> str:
    """`value` relative to the project root when it is an absolute path inside it, else unchanged
    (hub ids, builtin specs, paths elsewhere), so committed tables and manifests do not carry
    the machine's checkout location."""
    text = str(value)
    if not text or not Path(text).is_absolute():
        return text
    try:
        return Path(text).resolve().relative_to(project_root()).as_posix()
    except ValueError:
        return text


def data_root(value: str = "") -> Path | None:
    """The offline data mirror: the param if set, else $FLAN_NB_DATA, else None."""
    chosen = value or os.environ.get(DATA_ENV, "")
    return resolve_path(chosen) if chosen else None


def require_data_root(value: str = "", what: str = "the offline data") -> Path:
    root = data_root(value)
    if root is None:
        raise FileNotFoundError(
            f"{what} needs the offline data mirror: set the params entry `data_root` or the "
            f"environment variable {DATA_ENV} (e.g. {DATA_ENV}=../shared/data)."
        )
    if not root.is_dir():
        raise FileNotFoundError(f"{what}: data root {root} does not exist (from data_root/{DATA_ENV}).")
    return root


# ---------------------------------------------------------------------------------------------
# Type checking of flat literals


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _matches(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            return False
        item_tp = args[0] if args else Any
        return all(_matches(v, item_tp) for v in value)
    if origin is dict:
        args = typing.get_args(tp)
        if not isinstance(value, Mapping):
            return False
        key_tp, val_tp = args if args else (Any, Any)
        return all(_matches(k, key_tp) and _matches(v, val_tp) for k, v in value.items())
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _coerce(value: Any, tp: Any) -> Any:
    """Freeze containers so the config is really immutable; widen ints declared as float."""
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if _matches(value, arg):
                return _coerce(value, arg)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        return tuple(_coerce(v, args[0]) if args else v for v in value)
    if origin is dict and isinstance(value, Mapping):
        args = typing.get_args(tp)
        return types.MappingProxyType(
            {k: (_coerce(v, args[1]) if args else v) for k, v in value.items()}
        )
    return value


def _where(params_file: str, notebook: str) -> str:
    parts = []
    if params_file:
        parts.append(f"params file {params_file}")
    if notebook:
        parts.append(f"notebook {notebook}")
    return " in " + ", ".join(parts) if parts else ""


def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def check_values(
    cls: type, values: Mapping[str, Any], *, params_file: str = "", notebook: str = "",
    require_all: bool = True,
) -> dict[str, Any]:
    """Check `values` against the dataclass `cls`; return them coerced. Raises ParamsError."""
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    where = _where(params_file, notebook)
    for key in values:
        if key not in hints:
            raise ParamsError(f"unknown parameter `{key}`{where}{did_you_mean(key, fields)}")
    out: dict[str, Any] = {}
    for name in fields:
        tp = hints[name]
        if name not in values:
            if require_all:
                raise ParamsError(f"missing required parameter `{name}`{where}")
            continue
        value = values[name]
        if value is None and not _optional(tp):
            raise ParamsError(
                f"missing required parameter `{name}`{where}: it has no default, give a "
                f"{_type_name(tp)}"
            )
        if not _matches(value, tp):
            raise ParamsError(
                f"parameter `{name}`{where} must be {_type_name(tp)}, got "
                f"{type(value).__name__} {value!r}"
            )
        out[name] = _coerce(value, tp)
    return out


def load_params_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a params YAML; syntax errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} does not exist")
    try:
        data = yaml_io.load_file(path)
    except yaml_io.YamlError as exc:  # not UTF-8, duplicate key: the message names file and line
        raise ParamsError(f"params file {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        # one line: PyYAML's str() spans several lines with the source quoted
        said = "; ".join(str(p) for p in (getattr(exc, "problem", None),
                                          getattr(exc, "context", None)) if p) or str(exc)
        raise ParamsError(f"params file {path}{line}: invalid YAML: {said}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"params file {path}: top level must be a mapping")
    return data


# "04_eval_bbh@before": notebook 04_eval_bbh run a second time in the same run, under the label
# "before" (its `label` parameter, set by the runner from the key); it writes its metrics and
# predictions to <run>/before/ (see runs.Run.labelled).
LABEL_SEP = "@"
_LABEL = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def split_key(key: str, params_file: str = "") -> tuple[str, str]:
    """`"04_eval_bbh@before"` -> ("04_eval_bbh", "before"); a plain notebook name -> (name, "").

    Raises ParamsError for a label that is not lowercase letters, digits, `_`, `-`."""
    notebook, sep, label = key.partition(LABEL_SEP)
    if sep and not _LABEL.match(label):
        where = f" in params file {params_file}" if params_file else ""
        raise ParamsError(f"notebook key `{key}`{where}: the label after `@` must be "
                          "lowercase letters, digits, `_` or `-` (e.g. 04_eval_bbh@before)")
    return notebook, label


def labelled_key(notebook: str, label: str) -> str:
    """The params-file key of `notebook` run under `label` (the inverse of `split_key`)."""
    return f"{notebook}{LABEL_SEP}{label}" if label else notebook


def notebook_section(params: Mapping[str, Any], notebook: str, params_file: str = "") -> dict:
    sections = params.get("notebooks") or {}
    section = sections.get(notebook, {}) if isinstance(sections, Mapping) else {}
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ParamsError(f"section `notebooks.{notebook}`{_where(params_file, '')} must be a mapping")
    return dict(section)


def validate(cls: type[T], namespace: Mapping[str, Any], *, params_file: str = "",
             notebook: str = "") -> T:
    """Build the frozen config of a notebook from its globals.

    Values come from the notebook namespace (the parameters cell plus papermill's injected cell).
    When the notebook runs from a params file, its section is re-read so a key the notebook does
    not declare is an error here and not a silently ignored papermill warning.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    if params_file:
        # a labelled run of the notebook ("04_eval_bbh@before") reads its own section
        key = labelled_key(notebook, namespace.get("label") or "")
        section = notebook_section(load_params_file(params_file), key, params_file)
        check_values(cls, section, params_file=params_file, notebook=notebook, require_all=False)
    missing = [n for n in names if n not in namespace]
    if missing:
        raise ParamsError(
            f"the parameters cell{_where('', notebook)} does not define {', '.join(missing)} "
            f"(expected by {cls.__name__})"
        )
    values = check_values(cls, {n: namespace[n] for n in names}, params_file=params_file,
                          notebook=notebook)
    return cls(**values)


def as_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-friendly view of a frozen config (tuples -> lists, mapping proxies -> dicts)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {f.name: plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


# ---------------------------------------------------------------------------------------------
# Reading a notebook's parameters cell without running it (used by the runner and tests)


def parameters_cell(notebook_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Names and default literal values of the `parameters`-tagged cell of a notebook."""
    import nbformat

    nb = nbformat.read(str(notebook_path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse(cell.source)
            out: dict[str, Any] = {}
            for node in tree.body:
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    out[node.target.id] = ast.literal_eval(node.value) if node.value else None
                elif isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            out[target.id] = ast.literal_eval(node.value)
            return out
    raise ParamsError(f"notebook {notebook_path} has no cell tagged `parameters`")
