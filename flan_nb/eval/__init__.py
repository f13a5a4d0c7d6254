"""Stage 3, evaluation on the held-out benchmarks (paper section 2.3, appendix D): benchmark
loading, prompts, answer extraction, scores and the normalized average, batched generation and
the evaluation driver.

Entry points are imported lazily (PEP 562), so `import flan_nb.eval.<module>` stays cheap and the
stage packages never import each other through their `__init__`.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module of this package that defines it
_ENTRY_POINTS: dict[str, str] = {
    "EvalParams": "driver",
    "check": "driver",
    "evaluate": "driver",
    "rescore": "driver",
    "load": "benchmarks",
    "extract": "answers",
    "normalized_average": "scores",
}

__all__ = sorted(_ENTRY_POINTS)


def __getattr__(name: str) -> Any:
    module = _ENTRY_POINTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
