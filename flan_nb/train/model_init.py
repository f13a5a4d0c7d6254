"""Setting up the model to finetune: dropout re-enabled everywhere (the paper finetunes with
dropout 0.05 for T5) and initial weights from a saved model or a flan_nb training checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flan_nb import config
from flan_nb.train.params import (
    TrainError,
)

# ---------------------------------------------------------------------------------------------
# Model set-up


def set_dropout(model: Any, p: float) -> int:
    """Set dropout everywhere: config fields (for save/reload) and the live modules.

    Setting the config alone does nothing to an already built model: nn.Dropout modules keep the
    p they were built with, and attention dropout is read from module attributes.
    """
    import torch

    cfg = getattr(model, "config", None)
    for name in ("dropout_rate", "dropout", "attention_dropout", "hidden_dropout",
                 "attention_probs_dropout_prob", "hidden_dropout_prob", "resid_pdrop",
                 "embd_pdrop", "attn_pdrop"):
        if cfg is not None and hasattr(cfg, name) and isinstance(getattr(cfg, name), float | int):
            setattr(cfg, name, float(p))
    n = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = float(p)
            n += 1
        elif isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = float(p)
            n += 1
    return n


def _weights_files(path: Path) -> list[Path]:
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index).is_file():
            shard_map = json.loads((path / index).read_text())["weight_map"]
            return [path / f for f in sorted(set(shard_map.values()))]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return [path / name]
    return []


def load_init_checkpoint(model: Any, path_value: str) -> Path:
    """Load weights from a saved model / training checkpoint dir; shapes must match the spec."""
    import torch

    path = config.resolve_path(path_value)
    if not path.exists():
        raise TrainError(f"init_checkpoint {path} does not exist")
    files = [path] if path.is_file() else _weights_files(path)
    if not files:
        raise TrainError(f"init_checkpoint {path} holds no model.safetensors / pytorch_model.bin "
                         "(nor a sharded index)")
    state: dict[str, Any] = {}
    for file in files:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state.update(load_file(str(file)))
        else:
            state.update(torch.load(file, map_location="cpu", weights_only=True))
    own = model.state_dict()
    if state and all(k.startswith("model.") for k in state) and not any(k in own for k in state):
        state = {k[len("model."):]: v for k, v in state.items()}  # a flan_nb training checkpoint
    wrong = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
             for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    unknown = [k for k in state if k not in own]
    if wrong or unknown:
        detail = "; ".join(wrong[:5] + [f"unexpected key {k}" for k in unknown[:5]])
        raise TrainError(f"init_checkpoint {path} belongs to a different model shape than "
                         f"`model`: {detail}")
    # tied weights (lm_head = shared embedding) may be stored once; anything else missing is wrong
    ptr_groups: dict[int, list[str]] = {}
    for k, v in own.items():
        ptr_groups.setdefault(v.data_ptr(), []).append(k)
    missing = [k for k in own if k not in state
               and not any(o in state for o in ptr_groups[own[k].data_ptr()])]
    if missing:
        raise TrainError(f"init_checkpoint {path} lacks {len(missing)} weight(s) of the model, "
                         f"e.g. {', '.join(missing[:5])}")
    model.load_state_dict(state, strict=False)
    return path
