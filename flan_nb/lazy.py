"""Lazy entry points for the stage packages (PEP 562 module `__getattr__`).

A stage package's `__init__` names its public entry points without importing the modules that
define them, so `import flan_nb.eval.answers` stays cheap and the stage packages never import each
other through their `__init__`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def entry_points(package: str, names: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """`(__getattr__, __dir__, __all__)` for `package`; `names` maps a public name to the module
    of the package that defines it. An unknown name raises AttributeError, as for any module."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(names))

    return __getattr__, __dir__, sorted(names)
