"""Stage 3, evaluation on the held-out benchmarks (paper section 2.3, appendix D): benchmark
loading, prompts, answer extraction, scores and the normalized average, batched generation and
the evaluation driver.

Entry points (imported lazily, see flan_nb.lazy): {name: module of this package}.
"""

from flan_nb.lazy import entry_points

__getattr__, __dir__, __all__ = entry_points(__name__, {
    "EvalParams": "driver",
    "check": "driver",
    "evaluate": "driver",
    "rescore": "driver",
    "load": "benchmarks",
    "extract": "answers",
    "normalized_average": "scores",
})
