"""Stage 2, finetuning (paper section 2.2): packing with segment ids, the packed forward
passes, the training loop, checkpoints, the notebook launcher and diagnostics.

Entry points are imported lazily (PEP 562), so `import flan_nb.train.<module>` stays cheap and the
stage packages never import each other through their `__init__`.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module of this package that defines it
_ENTRY_POINTS: dict[str, str] = {
    "TrainParams": "params",
    "check_params": "params",
    "resolve_mixture_path": "loop",
    "load_mixture": "stream",
    "read_log": "launcher",
    "read_eval_scores": "periodic_eval",
    "collection_losses": "launcher",
    "input_dependence": "diagnostics",
    "train": "loop",
    "launch": "launcher",
    "pack": "packing",
    "collate": "packing",
    "packed_loss": "packed_forward",
}

__all__ = sorted(_ENTRY_POINTS)


def __getattr__(name: str) -> Any:
    module = _ENTRY_POINTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
