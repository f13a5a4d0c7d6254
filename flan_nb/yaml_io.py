"""The one YAML reader of the project: params, sweeps, mixture presets, templates, benchmark
settings and paper tables all load through `load_file` / `load_text`.

Three differences from `yaml.safe_load`, each a silent wrong result otherwise:

- Numbers follow YAML 1.2: `5e-4`, `1e-3`, `2E-5`, `1.0e99`, `-.5` are floats (PyYAML implements
  YAML 1.1, where a float needs a dot and a signed exponent, so `lr: 5e-4` was the string "5e-4").
  Words stay strings, so `lr: fast` still fails the params type check.
- A key given twice in one mapping is an error naming both lines (PyYAML keeps the last one).
- A file that is not UTF-8 is a one-line error naming the file, the byte offset and the line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

FLOAT_TAG = "tag:yaml.org,2002:float"
# The YAML 1.2 core-schema floats that YAML 1.1 reads as strings: an exponent without a dot or
# without a sign (5e-4, 1E3, 1.0e99), and a signed leading-dot number (-.5). Everything YAML 1.1
# already calls a float is still matched by PyYAML's own resolver, which is tried first.
_FLOAT_12 = re.compile(
    r"^(?:[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+"
    r"|[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?)$"
)


class YamlError(yaml.YAMLError, ValueError):
    """A YAML file is unreadable, not UTF-8, or repeats a key; the message names file and line.

    A subclass of yaml.YAMLError (so existing `except yaml.YAMLError` handlers catch it) and of
    ValueError (so command lines report it as bad input, not as a crash).
    """

    def __init__(self, message: str, *, line: int | None = None):
        super().__init__(message)
        self.line = line
        self.problem = message
        self.problem_mark = None  # the message already says where
        self.context_mark = None


class Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats and duplicate-key errors; subclass it for custom tags."""

    source_name = "<string>"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            self._check_duplicates(node)
        return super().construct_mapping(node, deep=deep)

    def _check_duplicates(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            # keys merged in with `<<` may legitimately be overridden; only explicit keys count
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                raise YamlError(
                    f"{self.source_name}: duplicate key `{key}` at line {line} (first given at "
                    f"line {seen[key]}); YAML keeps only the last, so remove one of them",
                    line=line)
            seen[key] = line


Loader.add_implicit_resolver(FLOAT_TAG, _FLOAT_12, list("-+0123456789."))


def load_text(text: str, name: str = "<string>", loader: type[Loader] = Loader) -> Any:
    """Parse one YAML document from `text`; `name` (a file path) is used in error messages."""
    instance = loader(text)
    instance.source_name = name
    instance.name = name  # PyYAML's own marks then say `in "<file>", line N`
    try:
        return instance.get_single_data()
    finally:
        instance.dispose()


def decode(data: bytes, name: str) -> str:
    """UTF-8 text of a file's bytes; raises YamlError naming the file, byte offset and line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise YamlError(
            f"{name}: not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}); "
            "save the file as UTF-8", line=line) from None


def read_text(path: str | os.PathLike[str] | Any) -> str:
    """A file's UTF-8 text (a path or an importlib.resources Traversable). Raises YamlError
    when it is not UTF-8, FileNotFoundError when it does not exist."""
    source = path if hasattr(path, "read_bytes") else Path(path)
    return decode(source.read_bytes(), str(path))


def load_file(path: str | os.PathLike[str] | Any, loader: type[Loader] = Loader) -> Any:
    """Parse a YAML file (a path or an importlib.resources Traversable) with `Loader`.

    Raises FileNotFoundError, YamlError (not UTF-8, duplicate key) or yaml.YAMLError (syntax;
    its marks name the file and line).
    """
    return load_text(read_text(path), str(path), loader)


def error_line(exc: BaseException) -> int | None:
    """1-based line of a YAML error, when it has one."""
    if isinstance(exc, YamlError):
        return exc.line
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else None
