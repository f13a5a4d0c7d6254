"""Stage 1, the finetuning data (paper section 2.1, appendix E): task registry, loaders,
instruction templates, examples-proportional mixing, contamination checks, synthetic suite.

Entry points are imported lazily (PEP 562), so `import flan_nb.data.<module>` stays cheap and the
stage packages never import each other through their `__init__`.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module of this package that defines it
_ENTRY_POINTS: dict[str, str] = {
    "load_registry": "registry",
    "coverage": "registry",
    "load_task": "loaders",
    "load_template_set": "templates",
    "render": "templates",
    "MixingParams": "mixing",
    "build_mixture": "mixing",
    "load_preset": "mixing",
    "check": "contamination",
}

__all__ = sorted(_ENTRY_POINTS)


def __getattr__(name: str) -> Any:
    module = _ENTRY_POINTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
