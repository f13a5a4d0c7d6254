"""Stage 4, reporting: the paper-style tables, figures, sweeps and run comparison.

Entry points (imported lazily, see flan_nb.lazy): {name: module of this package}.
"""

from flan_nb.lazy import entry_points

__getattr__, __dir__, __all__ = entry_points(__name__, {
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
})
