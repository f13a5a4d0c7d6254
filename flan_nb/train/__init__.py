"""Stage 2, finetuning (paper section 2.2): packing with segment ids, the packed forward
passes, the training loop, checkpoints, the notebook launcher and diagnostics.

Entry points (imported lazily, see flan_nb.lazy): {name: module of this package}.
"""

from flan_nb.lazy import entry_points

__getattr__, __dir__, __all__ = entry_points(__name__, {
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
})
