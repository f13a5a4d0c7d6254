"""Stage 4, reporting: the paper-style tables, figures, sweeps and run comparison.

Entry points are imported lazily (PEP 562), so `import flan_nb.report.<module>` stays cheap and the
stage packages never import each other through their `__init__`.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module of this package that defines it
_ENTRY_POINTS: dict[str, str] = {
    "TablesParams": "tables",
    "table5": "tables",
    "all_tables": "tables",
    "collect_runs": "tables",
    "paper_norm_avg_check": "tables",
    "strict_flexible": "readers",
    "ScalingParams": "figures",
    "compare_runs": "compare",
    "load_sweep": "sweeps",
    "run_sweep": "sweeps",
}

__all__ = sorted(_ENTRY_POINTS)


def __getattr__(name: str) -> Any:
    module = _ENTRY_POINTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
