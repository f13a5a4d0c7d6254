"""Checks on a trained model that the loss curve alone cannot answer.

A falling training loss can come from a decoder that has only learned the targets' marginal
statistics and ignores its input. `input_dependence` tells the two apart: it scores the same
targets once with their own inputs and once with another example's input. A model that uses its
input has a clearly lower loss on the matched pairs.
"""

from __future__ import annotations

import os
from typing import Any

from flan_nb import models


def _example_loss(loaded: models.LoadedModel, src: list[int], tgt: list[int]) -> float:
    import torch

    from flan_nb.train.packing import IGNORE_INDEX

    with torch.no_grad():
        if loaded.kind == "seq2seq":
            out = loaded.model(input_ids=torch.tensor([src]), labels=torch.tensor([tgt]))
            return float(out.loss)
        ids = torch.tensor([src + tgt])
        labels = torch.tensor([[IGNORE_INDEX] * len(src) + tgt])
        return float(loaded.model(input_ids=ids, labels=labels).loss)


def input_dependence(checkpoint: str | os.PathLike[str], mixture_path: str | os.PathLike[str], *,
                     n: int = 64, input_len: int = 512, target_len: int = 128) -> dict[str, Any]:
    """Mean per-token loss of the first `n` mixture examples with matched vs mismatched inputs.

    The mismatched input of example i is example i+1's (a fixed rotation, so the check is
    deterministic). `gap` = mismatched - matched: about 0 means the model ignores its input.
    """
    from flan_nb.train.stream import load_mixture, tokenize_mixture

    loaded = models.load(str(checkpoint))
    rows = load_mixture(mixture_path, n)
    n = len(rows)  # load_mixture keeps at most the first n
    if n < 2:
        raise ValueError(f"input_dependence needs at least 2 mixture examples, {mixture_path} has {n}")
    # the same token ids training saw (EOS, BOS for causal models, truncation), each text once
    ids = tokenize_mixture(rows, loaded.tokenizer, kind=loaded.kind,
                           input_len=input_len, target_len=target_len, truncation="truncate",
                           progress=False)
    src, tgt = ids.inputs, ids.targets
    matched = [_example_loss(loaded, src[i], tgt[i]) for i in range(n)]
    mismatched = [_example_loss(loaded, src[(i + 1) % n], tgt[i]) for i in range(n)]
    m, s = sum(matched) / n, sum(mismatched) / n
    return {"n": n, "matched_loss": round(m, 4), "mismatched_loss": round(s, 4),
            "gap": round(s - m, 4)}
